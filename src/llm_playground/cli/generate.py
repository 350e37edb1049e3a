"""``llm-playground generate``: decode a prompt with a model and a strategy (Lab 3)."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from llm_playground.cli import example
from llm_playground.core.errors import UserError
from llm_playground.generation.penalties import PENALTY_SETTINGS
from llm_playground.generation.samplers import CHAIN_SETTINGS

# The settings the stages describe themselves: one flag each (--min-p, --dry-base, ...).
STAGE_SETTINGS = (*CHAIN_SETTINGS, *PENALTY_SETTINGS)


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "generate",
        help="generate text with greedy, beam, top-k, top-p or a sampler chain",
        description="Generate text from a prompt with the project's decoding loop. "
        "Temperature 0 means greedy.",
        **example(
            "llm-playground generate --model smollm2-135m-instruct --prompt 'The sky is' "
            "--strategy top-p --top-p 0.9 --temperature 0.8 --seed 1"
        ),
    )
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument(
        "--model",
        metavar="NAME",
        help="a registry model (e.g. smollm2-135m-instruct), a Lab 2 run or a hub id "
        "(`llm-playground models` lists them)",
    )
    source.add_argument(
        "--checkpoint",
        metavar="DIR",
        help="a Lab 2 run folder (its hf/ export) or any Hugging Face model folder",
    )
    parser.add_argument("--prompt", required=True, metavar="TEXT")
    parser.add_argument(
        "--strategy", required=True, choices=("greedy", "beam", "top-k", "top-p", "sample")
    )
    parser.add_argument("--temperature", type=float, default=1.0, metavar="X")
    parser.add_argument(
        "--top-k", type=int, default=None, metavar="N", help="top-k (default 50 for top-k)"
    )
    parser.add_argument(
        "--top-p", type=float, default=None, metavar="X", help="top-p (default 0.9 for top-p)"
    )
    chain = parser.add_argument_group("sampler chain (with --strategy sample, or any sampling)")
    for setting in STAGE_SETTINGS:
        chain.add_argument(
            setting.flag,
            dest=setting.field,
            type=int if setting.whole else float,
            default=None,
            metavar="N" if setting.whole else "X",
            help=setting.help,
        )
    chain.add_argument(
        "--sampler-order",
        metavar="A,B,C",
        help="the order of the sampler stages: top_k,top_p,min_p,typical_p,epsilon,eta,"
        "top_n_sigma,xtc,temperature (penalties and DRY always come first; "
        "default: the transformers order)",
    )
    parser.add_argument("--num-beams", type=int, default=4, metavar="N")
    parser.add_argument("--length-penalty", type=float, default=1.0, metavar="X")
    parser.add_argument("--no-repeat-ngram-size", type=int, default=0, metavar="N")
    parser.add_argument("--repetition-penalty", type=float, default=1.0, metavar="X")
    parser.add_argument("--max-new-tokens", type=int, default=64, metavar="N")
    parser.add_argument("--seed", type=int, default=0, metavar="N")
    parser.add_argument(
        "--speculative",
        choices=("prompt-lookup", "draft"),
        help="draft tokens by prompt lookup or with --draft-model, checked in one pass",
    )
    parser.add_argument("--draft-tokens", type=int, default=10, metavar="N")
    parser.add_argument("--draft-model", metavar="NAME", help="a smaller model, same tokenizer")
    parser.add_argument(
        "--precision",
        choices=("fp32", "int8", "bf16", "auto"),
        default="fp32",
        help="int8: weight-only int8 linear layers (faster on a CPU, slightly less exact); "
        "bf16: bfloat16 weights; auto: time a few decoding steps in fp32 and bf16, take the "
        "faster (printed on stderr)",
    )
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
        help="with --json, list each step's K most likely tokens and what removed them",
    )
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.add_argument(
        "--best-of",
        type=int,
        default=0,
        metavar="N",
        help="sample N answers (seeds SEED, SEED+1, ...) and keep the one --reward scores highest",
    )
    parser.add_argument("--reward", metavar="DIR", help="the reward model folder of --best-of")
    parser.set_defaults(func=generate_command)


def decoding_config(args: argparse.Namespace):
    """The decoding settings from the flags (a bad value raises UserError, one line)."""
    from llm_playground.generation.config import DecodingConfig

    settings = {
        setting.field: getattr(args, setting.field)
        for setting in STAGE_SETTINGS
        if getattr(args, setting.field) is not None
    }
    if args.sampler_order is not None:
        settings["sampler_order"] = args.sampler_order
    if args.speculative is None and args.draft_model is not None:
        raise UserError("--draft-model needs --speculative draft")
    sample = args.strategy == "sample"
    return DecodingConfig(
        strategy=args.strategy,
        temperature=args.temperature,
        top_k=args.top_k if args.top_k is not None or sample else 50,
        top_p=args.top_p if args.top_p is not None or sample else 0.9,
        num_beams=args.num_beams,
        length_penalty=args.length_penalty,
        no_repeat_ngram_size=args.no_repeat_ngram_size,
        repetition_penalty=args.repetition_penalty,
        max_new_tokens=args.max_new_tokens,
        seed=args.seed,
        speculative=args.speculative,
        draft_tokens=args.draft_tokens,
        draft_model=args.draft_model,
        **settings,
    )


def generate_command(args: argparse.Namespace) -> int:
    from llm_playground.generation.decoding import generate

    config = decoding_config(args)
    if args.candidates < 0:
        raise UserError(f"--candidates must be 0 or more, got {args.candidates}")
    if args.candidates > 1000:
        raise UserError(f"--candidates must be at most 1000, got {args.candidates}")
    if not args.prompt.strip():
        raise UserError("the prompt is empty")
    _check_best_of(args, config)
    from transformers.utils import logging as hf_logging

    from llm_playground.generation.registry import find_model, load_model
    from llm_playground.generation.runner import at_precision

    hf_logging.disable_progress_bar()
    bigram = _bigram_run(args.model, args.checkpoint)
    if bigram is not None:
        loaded = _load_bigram(bigram)
    else:
        loaded = load_model(find_model(args.model, args.checkpoint))
    if args.precision == "auto":  # decided once here, then kept for the process
        from llm_playground.generation.runner import decoding_precision

        print(f"precision: {decoding_precision(loaded).summary()}", file=sys.stderr)
    loaded = at_precision(loaded, args.precision)
    draft = None
    if config.speculative == "draft":
        draft = at_precision(load_model(find_model(config.draft_model)), args.precision)
    if args.best_of:
        return _best_of(args, loaded, config)
    result = generate(
        loaded,
        args.prompt,
        config,
        chat_template=False if args.no_chat_template else None,
        candidates=args.candidates,
        draft=draft,
    )
    if args.json:
        print(json.dumps(result.to_dict(with_steps=args.candidates > 0), ensure_ascii=False))
    else:
        print(result.text)
    return 0


def _bigram_run(model: str | None, checkpoint: str | None) -> Path | None:
    """The folder of a Lab 2 bigram run named by ``--checkpoint`` or ``--model``, else None.

    A bigram run has no Hugging Face export; it decodes through the playground's own
    forward pass (:mod:`llm_playground.training.causal_lm`)."""
    from llm_playground.core.paths import get_paths, named_file
    from llm_playground.training.checkpoints import read_meta

    try:
        folder = (
            Path(checkpoint).expanduser()
            if checkpoint is not None
            else named_file(get_paths().runs, model or "")
        )
        meta = read_meta(folder)
    except (UserError, OSError):
        return None  # not a Lab 2 run: the registry explains what it is
    kind = meta.get("model", {}).get("kind") if isinstance(meta.get("model"), dict) else None
    return folder if kind == "bigram" else None


def _load_bigram(folder: Path):
    from llm_playground.generation.registry import LoadedModel, ModelInfo
    from llm_playground.training.causal_lm import load_causal_lm

    model, tokenizer = load_causal_lm(folder, allow_bigram=True)
    info = ModelInfo(
        name=folder.name,
        kind="checkpoint",
        description=f"Lab 2 bigram run in {folder}",
        path=folder,
    )
    return LoadedModel(info=info, model=model, tokenizer=tokenizer)


def _check_best_of(args: argparse.Namespace, config) -> None:
    """--best-of and --reward go together; bad values fail before any model loads."""
    if not args.best_of and args.reward is None:
        return
    if not args.best_of or args.reward is None:
        raise UserError("--best-of N and --reward DIR go together")
    from llm_playground.finetuning.best_of import check_best_of
    from llm_playground.finetuning.reward import check_reward_dir

    try:
        check_best_of(args.best_of, config.strategy)
    except UserError as exc:
        raise UserError(f"--best-of: {exc}") from None
    check_reward_dir(args.reward)


def _best_of(args: argparse.Namespace, loaded, config) -> int:
    """Sample --best-of answers, score them with --reward, print the best (and all with --json)."""
    from llm_playground.finetuning.best_of import best_of_n
    from llm_playground.finetuning.reward import load_reward_model

    reward_model = load_reward_model(args.reward)
    chat = False if args.no_chat_template else None
    outcome = best_of_n(loaded, args.prompt, args.best_of, reward_model, config, chat_template=chat)
    if args.json:
        record = outcome.results[outcome.best_index].to_dict()
        record["best_of"] = [{"text": c.text, "score": c.score} for c in outcome.candidates]
        record["text"] = outcome.best.text
        print(json.dumps(record, ensure_ascii=False))
    else:
        print(outcome.best.text)
    return 0
