"""``llm-playground generate``: decode a prompt with a model and a strategy (Lab 3)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from llm_playground.core.errors import UserError


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "generate",
        help="generate text with greedy, beam, top-k or top-p decoding",
        description="Generate text from a prompt with the project's decoding loop. "
        "Temperature 0 means greedy.",
    )
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument(
        "--model",
        metavar="NAME",
        help="a registry model (e.g. smollm2-135m-instruct), a Lab 2 run or a hub id",
    )
    source.add_argument(
        "--checkpoint",
        metavar="DIR",
        help="a Lab 2 run folder (its hf/ export) or any Hugging Face model folder",
    )
    parser.add_argument("--prompt", required=True, metavar="TEXT")
    parser.add_argument("--strategy", required=True, choices=("greedy", "beam", "top-k", "top-p"))
    parser.add_argument("--temperature", type=float, default=1.0, metavar="X")
    parser.add_argument("--top-k", type=int, default=50, metavar="N")
    parser.add_argument("--top-p", type=float, default=0.9, metavar="X")
    parser.add_argument("--num-beams", type=int, default=4, metavar="N")
    parser.add_argument("--length-penalty", type=float, default=1.0, metavar="X")
    parser.add_argument("--no-repeat-ngram-size", type=int, default=0, metavar="N")
    parser.add_argument("--repetition-penalty", type=float, default=1.0, metavar="X")
    parser.add_argument("--max-new-tokens", type=int, default=64, metavar="N")
    parser.add_argument("--seed", type=int, default=0, metavar="N")
    parser.add_argument(
        "--no-chat-template",
        action="store_true",
        help="feed the prompt as raw text even to a chat model",
    )
    parser.add_argument(
        "--candidates",
        type=int,
        default=0,
        metavar="K",
        help="with --json, list each step's K most likely tokens",
    )
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.set_defaults(func=run)


def _model_info(args: argparse.Namespace):
    from llm_playground.generation.registry import (
        OFFLINE_MODELS,
        hub_reachable,
        info_for_dir,
        resolve,
    )

    if args.checkpoint is not None:
        folder = Path(args.checkpoint).expanduser()
        if not folder.is_dir():
            raise UserError(f"checkpoint folder {folder} does not exist")
        return info_for_dir(folder)
    info = resolve(args.model)
    if info.kind == "hub" and info.reason == "needs network" and not hub_reachable():
        raise UserError(
            f"unknown model '{args.model}': it is not an offline model "
            f"({', '.join(OFFLINE_MODELS)}) or a Lab 2 run, and a hub model needs network"
        )
    return info


def run(args: argparse.Namespace) -> int:
    from llm_playground.generation.decoding import DecodingConfig, generate

    config = DecodingConfig(
        strategy=args.strategy,
        temperature=args.temperature,
        top_k=args.top_k,
        top_p=args.top_p,
        num_beams=args.num_beams,
        length_penalty=args.length_penalty,
        no_repeat_ngram_size=args.no_repeat_ngram_size,
        repetition_penalty=args.repetition_penalty,
        max_new_tokens=args.max_new_tokens,
        seed=args.seed,
    )
    if args.candidates < 0:
        raise UserError(f"--candidates must be 0 or more, got {args.candidates}")
    if not args.prompt.strip():
        raise UserError("the prompt is empty")
    from transformers.utils import logging as hf_logging

    from llm_playground.generation.registry import load_model

    hf_logging.disable_progress_bar()
    loaded = load_model(_model_info(args))
    result = generate(
        loaded,
        args.prompt,
        config,
        chat_template=False if args.no_chat_template else None,
        candidates=args.candidates,
    )
    if args.json:
        print(json.dumps(result.to_dict(with_steps=args.candidates > 0), ensure_ascii=False))
    else:
        print(result.text)
    return 0
