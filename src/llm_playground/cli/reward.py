"""``llm-playground reward train`` and ``reward score``: a reward model from preference pairs."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from llm_playground.cli import example
from llm_playground.cli.finetune import (
    MAX_SEED,
    check_numbers,
    check_out,
    one_line_errors,
)
from llm_playground.cli.finetune import _quiet_libraries as quiet_libraries


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "reward",
        help="train a reward model on preference pairs, or score answers with one",
        description="A LoRA reward model (TRL RewardTrainer, Bradley-Terry loss) on the pairs "
        "`prefs export` writes, or on the shipped offline set; and scoring with it.",
        **example(
            "llm-playground reward train --base smollm2-135m-instruct --prefs offline "
            "--out runs/reward"
        ),
    )
    actions = parser.add_subparsers(dest="reward_command", metavar="ACTION", required=True)

    train = actions.add_parser(
        "train",
        help="train a reward model",
        **example(
            "llm-playground reward train --base smollm2-135m-instruct --prefs offline "
            "--out runs/reward",
            description="Train a LoRA reward model on preference pairs (Bradley-Terry loss).",
        ),
    )
    train.add_argument("--base", required=True, help="base model (e.g. smollm2-135m-instruct)")
    train.add_argument(
        "--prefs", required=True, help="a preference JSONL (prompt, chosen, rejected) or offline"
    )
    train.add_argument("--out", required=True, type=Path, help="folder to write the model to")
    train.add_argument("--max-steps", type=int, default=60, metavar="N")
    train.add_argument("--lr", type=float, default=2e-4, metavar="X")
    train.add_argument("--lora-r", type=int, default=8, metavar="R")
    train.add_argument(
        "--eval-frac", type=float, default=0.2, metavar="F", help="share of pairs held out"
    )
    train.add_argument("--seed", type=int, default=0, metavar="S")
    train.add_argument("--force", action="store_true", help="replace a reward model in --out")
    train.add_argument("--json", action="store_true", help="print one JSON object")
    train.set_defaults(func=train_command)

    score = actions.add_parser(
        "score",
        help="score responses to a prompt",
        **example(
            "llm-playground reward score --reward runs/reward --prompt 'What is 2 + 2?' "
            "--response 4 --response 5",
            description="Score responses to a prompt with a trained reward model.",
        ),
    )
    score.add_argument("--reward", required=True, type=Path, help="a reward model folder")
    score.add_argument("--prompt", required=True, metavar="TEXT")
    score.add_argument(
        "--response", required=True, action="append", metavar="TEXT", help="repeat for more"
    )
    score.add_argument("--json", action="store_true", help="print one JSON object")
    score.set_defaults(func=score_command)


TRAIN_NUMBERS = {
    "--max-steps": (1, 10_000_000, "at least 1"),
    "--lr": (1e-12, 10.0, "a positive number (at most 10)"),
    "--lora-r": (1, 4096, "at least 1 (and at most 4096)"),
    "--eval-frac": (0.001, 0.999, "between 0 and 1"),
    "--seed": (0, MAX_SEED, f"between 0 and {MAX_SEED}"),
}


def _lines(event: Any) -> list[str]:
    from llm_playground.finetuning.reward import RewardStarted

    if isinstance(event, RewardStarted):
        return [
            f"pairs: {event.train_pairs} training / {event.eval_pairs} held out; trainable "
            f"parameters: {event.trainable:,} of {event.total_parameters:,}"
        ]
    return []


@one_line_errors
def train_command(args: argparse.Namespace) -> int:
    from llm_playground.cli.finetune import _stdout
    from llm_playground.cli.progress import Wording, render
    from llm_playground.finetuning.lora import check_adapter_dir
    from llm_playground.finetuning.reward import (
        RewardModelConfig,
        load_pairs,
        split_pairs,
        train_reward_model,
    )

    check_numbers(args, TRAIN_NUMBERS)
    config = RewardModelConfig(
        base=args.base,
        max_steps=args.max_steps,
        lr=args.lr,
        lora_r=args.lora_r,
        lora_alpha=2 * args.lora_r,
        eval_frac=args.eval_frac,
        seed=args.seed,
    )
    check_out("--out", args.out, args.force, check_adapter_dir)
    pairs, name = load_pairs(args.prefs)
    split_pairs(pairs, config.eval_frac, config.seed)  # too few pairs fail before loading
    quiet_libraries()
    run = train_reward_model(config, pairs, out_dir=args.out, data_name=name, force=args.force)
    wording = Wording(desc="reward", postfix=lambda e: {"loss": f"{e.loss:.4f}"})
    events = run if args.json else _stdout(_lines, run)
    done = render(events, wording, show=not args.json)
    assert done is not None
    if args.json:
        print(
            json.dumps(
                {
                    "train_pairs": done.train_pairs,
                    "eval_pairs": done.eval_pairs,
                    "eval_accuracy": done.eval_accuracy,
                    "eval_margin": done.eval_margin,
                    "steps": done.step,
                    "out": done.out_dir,
                }
            )
        )
        return 0
    print(
        f"held-out pairwise accuracy: {done.eval_accuracy:.3f}, mean margin r+ - r-: "
        f"{done.eval_margin:.3f} ({done.eval_pairs} pairs, {done.step} steps)"
    )
    print(f"reward model written to {done.out_dir}")
    return 0


@one_line_errors
def score_command(args: argparse.Namespace) -> int:
    from llm_playground.core.errors import UserError
    from llm_playground.finetuning.reward import check_reward_dir, load_reward_model

    if not args.prompt.strip():
        raise UserError("the prompt is empty")
    check_reward_dir(args.reward)
    quiet_libraries()
    scores = load_reward_model(args.reward).score(args.prompt, args.response)
    if args.json:
        print(json.dumps({"scores": scores}))
    else:
        for score, response in zip(scores, args.response, strict=True):
            print(f"{score:+.4f}  {response}")
    return 0


__all__ = ["register", "score_command", "train_command"]
