"""``llm-playground models``: every model the labs can use, with its kind and availability."""

from __future__ import annotations

import argparse
import json

from llm_playground.cli import example


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "models",
        help="list every model: offline models, Lab 2 runs, adapters, hub models",
        description="List every model the labs can use, with its kind and whether it can be "
        "loaded here (and why not).",
        **example("llm-playground models --offline"),
    )
    parser.add_argument(
        "--offline",
        action="store_true",
        help="do not check whether the Hugging Face hub is reachable",
    )
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.set_defaults(func=models_command)


def models_command(args: argparse.Namespace) -> int:
    from llm_playground.generation.registry import list_models

    infos = list_models(include_hub=not args.offline)
    if args.json:
        rows = [
            {
                "name": i.name,
                "kind": i.kind,
                "available": i.available,
                "reason": i.reason,
                "description": i.description,
                "base": i.base,
                "chat": i.chat,
            }
            for i in infos
        ]
        print(json.dumps({"models": rows}, ensure_ascii=False))
        return 0
    width = max([len(i.name) for i in infos] + [4])
    print(f"{'name':<{width}}  {'kind':<10}  available")
    for info in infos:
        status = "yes" if info.available else f"no: {info.reason}"
        print(f"{info.name:<{width}}  {info.kind:<10}  {status}")
    return 0
