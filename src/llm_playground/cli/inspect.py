"""``llm-playground inspect``: inside a model on one prompt or the induction probe (Lab 6)."""

from __future__ import annotations

import argparse
import json
import sys

from llm_playground.cli import example, int_at_least


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "inspect",
        help="attention maps, the logit lens, head roles and ablations of a model",
        description="Run a prompt (or the induction probe) through a model once and show "
        "every head's attention, each layer's guess for the next token (the logit lens) "
        "and the heads' roles. Layers and heads count from 0.",
        **example("llm-playground inspect --model smollm2-135m-instruct --induction-probe 16"),
    )
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument(
        "--model",
        metavar="NAME",
        help="a registry model (e.g. smollm2-135m-instruct), a Lab 2 run, an adapter or a "
        "hub id (`llm-playground models` lists them)",
    )
    source.add_argument(
        "--checkpoint", metavar="DIR", help="a Lab 2 run folder or any Hugging Face model folder"
    )
    text = parser.add_mutually_exclusive_group(required=True)
    text.add_argument("--prompt", metavar="TEXT", help="the text to inspect (up to 128 tokens)")
    text.add_argument(
        "--induction-probe",
        type=int,
        metavar="N",
        help="instead of a prompt: N random tokens, then the same N again (N from 4 to 512), "
        "and every head's induction score",
    )
    parser.add_argument(
        "--seed",
        type=int_at_least(0),
        default=0,
        metavar="S",
        help="the probe's random tokens (default 0)",
    )
    parser.add_argument(
        "--no-chat-template",
        action="store_true",
        help="feed the prompt as raw text even to a chat model",
    )
    parser.add_argument(
        "--top-k",
        type=int_at_least(1),
        default=5,
        metavar="K",
        help="the logit lens' guesses per layer and position (default 5)",
    )
    parser.add_argument(
        "--step", type=int_at_least(0), metavar="S", help="the snapshot of step S of a Lab 2 run"
    )
    parser.add_argument(
        "--ablate",
        action="append",
        default=[],
        metavar="SPEC",
        help="knock out a head (L.H), a layer's attention (L.attn) or its MLP (L.mlp); repeatable",
    )
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.set_defaults(func=inspect_command)


def inspect_command(args: argparse.Namespace) -> int:
    from transformers.utils import logging as hf_logging

    from llm_playground.inspection import (
        encode_prompt,
        induction_probe,
        inspect,
        open_model,
        parse_ablation,
    )

    hf_logging.disable_progress_bar()
    model = open_model(args.model, args.checkpoint, step=args.step)
    ablations = [parse_ablation(spec, model.n_layers, model.n_heads) for spec in args.ablate]
    if args.induction_probe is not None:
        result = induction_probe(
            model, args.induction_probe, args.seed, top_k=args.top_k, ablations=ablations
        )
    else:
        chat = False if args.no_chat_template else None
        ids = encode_prompt(model, args.prompt, chat_template=chat)
        result = inspect(model, ids, top_k=args.top_k, ablations=ablations)
    if args.json:
        result.write_json(sys.stdout)
    else:
        print("\n".join(describe(result)))
    return 0


def _shown(token: str) -> str:
    """A token quoted on one line (newlines and tabs written as escapes)."""
    return json.dumps(token, ensure_ascii=False)


def describe(result) -> list[str]:
    """The readable report: the input, the loss, the top heads of each role and the logit
    lens' top guess at the last position, layer by layer."""
    lines = [
        f"{result.label}: {result.n_tokens} tokens, {result.n_layers} layers x "
        f"{result.n_heads} heads (layers and heads count from 0)"
    ]
    if result.probe is not None:
        probe = result.probe
        lines.append(
            f"induction probe: {probe.prefix} start token(s), then {probe.n} random tokens "
            f"(seed {probe.seed}) twice"
        )
    if result.ablated:
        lines.append(
            f"ablated {', '.join(result.ablated)}: mean next-token loss {result.base_loss:.4f} "
            f"-> {result.loss:.4f}"
        )
    elif result.loss is not None:
        lines.append(f"mean next-token loss over the input: {result.loss:.4f}")
    lines.append("")
    lines.append("top heads:")
    for role in result.head_scores:
        words = "; ".join(
            f"layer {h.layer}, head {h.head}: {h.score:.2f}" for h in result.top_heads(role, 3)
        )
        lines.append(f"  {role.replace('_', '-')}: {words}")
    last = result.n_tokens - 1
    lines.append("")
    lines.append(f"logit lens after the last token {_shown(result.tokens[last])}: top guess")
    for entry in range(result.n_layers + 1):
        token_id, token, p = result.lens_top(entry, last)[0]
        where = "embeddings" if entry == 0 else f"after layer {entry - 1}"
        if entry == result.n_layers:
            where += " (the output)"
        lines.append(f"  {where:<28} {_shown(token):<20} p={p:.3f}")
    return lines
