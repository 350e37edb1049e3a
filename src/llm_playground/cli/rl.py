"""``llm-playground rl``: reinforcement learning with GRPO on a LoRA adapter (Lab 4)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from llm_playground.cli import example
from llm_playground.cli.finetune import MAX_SEED, check_numbers, check_out, one_line_errors
from llm_playground.cli.finetune import _quiet_libraries as quiet_libraries
from llm_playground.finetuning.rl import RLConfig

DEFAULTS = RLConfig.__dataclass_fields__


def _default(name: str) -> Any:
    return DEFAULTS[name].default


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "rl",
        help="reinforcement learning (GRPO) on a LoRA adapter with a verifiable or learnt reward",
        description="GRPO (TRL GRPOTrainer): sample a group of completions per prompt, score "
        "them, and make the better-than-average ones more likely. Writes the adapter, "
        "metrics.jsonl and samples.jsonl to --out.",
        **example(
            "llm-playground rl --base smollm2-135m-instruct --reward arithmetic --out runs/grpo"
        ),
    )
    parser.add_argument("--base", required=True, help="base model (e.g. smollm2-135m-instruct)")
    parser.add_argument("--adapter", type=Path, default=None, help="start from this LoRA adapter")
    parser.add_argument(
        "--reward",
        required=True,
        help="arithmetic, format, length, or the folder of a reward model",
    )
    parser.add_argument("--out", required=True, type=Path, help="folder to write the run to")
    parser.add_argument("--steps", type=int, default=_default("steps"), metavar="N")
    parser.add_argument(
        "--group", type=int, default=_default("group"), metavar="G", help="completions per prompt"
    )
    parser.add_argument(
        "--prompts-per-step", type=int, default=_default("prompts_per_step"), metavar="P"
    )
    parser.add_argument(
        "--max-completion-tokens", type=int, default=_default("max_completion_tokens"), metavar="T"
    )
    parser.add_argument(
        "--beta", type=float, default=_default("beta"), metavar="B", help="KL weight to the start"
    )
    parser.add_argument("--lr", type=float, default=_default("lr"), metavar="X")
    parser.add_argument("--seed", type=int, default=_default("seed"), metavar="S")
    parser.add_argument(
        "--eval-every",
        type=int,
        default=_default("eval_every"),
        metavar="K",
        help="held-out accuracy every K steps (0: before and after only)",
    )
    parser.add_argument("--eval-problems", type=int, default=_default("eval_problems"), metavar="M")
    parser.add_argument("--force", action="store_true", help="replace a run already in --out")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.set_defaults(func=rl_command)


NUMBERS = {
    "--steps": (1, 1_000_000, "at least 1"),
    "--group": (2, 1024, "at least 2 (GRPO compares the completions of a group)"),
    "--prompts-per-step": (1, 1024, "at least 1"),
    "--max-completion-tokens": (1, 4096, "between 1 and 4096"),
    "--beta": (0.0, 100.0, "zero or a positive number (at most 100)"),
    "--lr": (1e-12, 10.0, "a positive number (at most 10)"),
    "--seed": (0, MAX_SEED, f"between 0 and {MAX_SEED}"),
    "--eval-every": (0, 1_000_000, "0 or more"),
    "--eval-problems": (1, 10_000, "between 1 and 10000"),
}


def _lines(event: Any) -> list[str]:
    from llm_playground.finetuning.rl import RLAnswers, RLEval, RLStarted

    if isinstance(event, RLStarted):
        return [
            f"reward {event.reward}; {event.prompts_per_step} prompts x {event.group} "
            f"completions a step; trainable parameters {event.trainable:,} of "
            f"{event.total_parameters:,}" + ("; chat template" if event.chat else "")
        ]
    if isinstance(event, RLEval):
        return [f"step {event.step}: held-out accuracy {event.accuracy:.3f} ({event.n_problems})"]
    if isinstance(event, RLAnswers):
        return [
            f"{event.when}: {p!r} -> {a.strip()!r}"
            for p, a in zip(event.prompts, event.answers, strict=True)
        ]
    return []


@one_line_errors
def rl_command(args: argparse.Namespace) -> int:
    from llm_playground.cli.finetune import _stdout
    from llm_playground.cli.progress import Wording, render
    from llm_playground.core.errors import UserError
    from llm_playground.finetuning.lora import PEFT_FILE, check_adapter_dir
    from llm_playground.finetuning.rl import train_rl

    check_numbers(args, NUMBERS)
    if args.adapter is not None and not (args.adapter / PEFT_FILE).exists():
        raise UserError(f"--adapter {args.adapter} holds no LoRA adapter")
    config = RLConfig(
        base=args.base,
        reward=args.reward,
        adapter=str(args.adapter) if args.adapter else None,
        steps=args.steps,
        group=args.group,
        prompts_per_step=args.prompts_per_step,
        max_completion_tokens=args.max_completion_tokens,
        beta=args.beta,
        lr=args.lr,
        seed=args.seed,
        eval_every=args.eval_every,
        eval_problems=args.eval_problems,
    )
    check_out("--out", args.out, args.force, check_adapter_dir)
    quiet_libraries()
    run = train_rl(config, out_dir=args.out, force=args.force)
    wording = Wording(
        desc="rl",
        postfix=lambda e: {
            "reward": f"{e.reward_mean:.3f}±{e.reward_std:.3f}",
            "kl": f"{e.kl:.4f}",
            "len": f"{e.completion_length:.1f}",
        },
        metric_line=lambda e: None,  # evaluations are printed on stdout
    )
    events = run if args.json else _stdout(_lines, run)
    done = render(events, wording, show=not args.json)
    assert done is not None
    if args.json:
        print(
            json.dumps(
                {
                    "steps": done.step,
                    "accuracy_before": done.accuracy_before,
                    "accuracy_after": done.accuracy_after,
                    "out": done.out_dir,
                    "s_per_step": round(done.s_per_step, 3),
                }
            )
        )
        return 0
    if done.accuracy_before is not None:
        print(
            f"held-out accuracy {done.accuracy_before:.3f} -> {done.accuracy_after:.3f} "
            f"after {done.step} steps ({done.s_per_step:.1f} s/step)"
        )
    print(f"adapter, metrics.jsonl and samples.jsonl written to {done.out_dir}")
    return 0


__all__ = ["register", "rl_command"]
