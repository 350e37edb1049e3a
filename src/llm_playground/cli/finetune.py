"""``llm-playground sft`` and ``llm-playground dpo``: LoRA fine-tuning and preference training."""

from __future__ import annotations

import argparse
import math
import sqlite3
from collections.abc import Callable, Iterator
from functools import wraps
from pathlib import Path
from typing import Any

from llm_playground.cli import example
from llm_playground.core.errors import UserError

MAX_SEED = 2**32 - 1


def register(subparsers: argparse._SubParsersAction) -> None:
    sft = subparsers.add_parser(
        "sft",
        help="fine-tune a LoRA adapter on instructions",
        description="Train LoRA weights on instruction data and save a peft adapter. Prints the "
        "trainable parameters and the held-out loss before and after.",
        **example(
            "llm-playground sft --base smollm2-135m-instruct --data offline --max-steps 20 "
            "--out adapters/my-sft"
        ),
    )
    sft.add_argument(
        "--base", required=True, help="base model (e.g. gemma3-270m, smollm2-135m-instruct)"
    )
    sft.add_argument(
        "--data",
        required=True,
        help="alpaca, offline, or a JSONL file with instruction, input, output",
    )
    sft.add_argument("--out", required=True, type=Path, help="folder to write the adapter to")
    sft.add_argument("--lora-r", type=int, default=8)
    sft.add_argument("--lora-alpha", type=int, default=16)
    sft.add_argument("--lora-dropout", type=float, default=0.05)
    sft.add_argument(
        "--target-modules",
        default="q_proj,k_proj,v_proj,o_proj",
        help="comma-separated module names (default q_proj,k_proj,v_proj,o_proj)",
    )
    sft.add_argument("--lr", type=float, default=2e-4)
    sft.add_argument("--max-steps", type=int, default=100)
    sft.add_argument("--seq-len", type=int, default=128)
    sft.add_argument("--batch-size", type=int, default=4)
    sft.add_argument("--seed", type=int, default=0)
    sft.add_argument(
        "--heldout-max", type=int, default=64, help="held-out examples used for the loss"
    )
    sft.add_argument(
        "--dtype",
        choices=("auto", "float32", "bfloat16"),
        default="auto",
        help="number format of the frozen weights (auto: measured at start)",
    )
    sft.add_argument(
        "--merge-to",
        type=Path,
        default=None,
        help="also merge the adapter into the base and save a full model here",
    )
    sft.add_argument(
        "--force",
        action="store_true",
        help="replace an adapter (or merged model) that is already in --out (--merge-to)",
    )
    sft.set_defaults(func=sft_command)

    dpo = subparsers.add_parser(
        "dpo",
        help="train a LoRA adapter with DPO on exported preferences",
        description="Direct preference optimisation (TRL DPOTrainer) on a JSONL of prompt, chosen, "
        "rejected (as `prefs export` writes it).",
        **example(
            "llm-playground dpo --base smollm2-135m-instruct --prefs prefs.jsonl "
            "--out adapters/my-dpo"
        ),
    )
    dpo.add_argument("--base", required=True, help="base model (e.g. smollm2-135m-instruct)")
    dpo.add_argument("--prefs", required=True, type=Path, help="preference JSONL file")
    dpo.add_argument("--out", required=True, type=Path, help="folder to write the adapter to")
    dpo.add_argument("--max-steps", type=int, default=20)
    dpo.add_argument("--lr", type=float, default=5e-5)
    dpo.add_argument("--beta", type=float, default=0.1)
    dpo.add_argument("--max-length", type=int, default=256)
    dpo.add_argument("--seed", type=int, default=0)
    dpo.add_argument(
        "--force", action="store_true", help="replace an adapter that is already in --out"
    )
    dpo.set_defaults(func=dpo_command)


# --- checks shared by both commands ------------------------------------------------------


def one_line_errors(command: Callable[[argparse.Namespace], int]):
    """File-system and database failures become the CLI's one-line error, not a traceback."""

    @wraps(command)
    def run(args: argparse.Namespace) -> int:
        try:
            return command(args)
        except OSError as exc:
            where = f" {exc.filename}" if getattr(exc, "filename", None) else ""
            raise UserError(f"cannot read or write{where}: {exc.strerror or exc}") from None
        except sqlite3.Error as exc:
            raise UserError(f"database error: {exc}") from None

    return run


def check_numbers(args: argparse.Namespace, rules: dict[str, tuple[float, float | None, str]]):
    """Each flag ``name: (low, high, words)``: a finite number in [low, high]; one line else."""
    for name, (low, high, words) in rules.items():
        value = getattr(args, name.lstrip("-").replace("-", "_"))
        if isinstance(value, float) and not math.isfinite(value):
            raise UserError(f"{name} must be a finite number, not {value}")
        if value < low or (high is not None and value > high):
            raise UserError(f"{name} must be {words}")


def check_out(flag: str, out: Path, force: bool, check: Callable[[Path, bool], Path]) -> None:
    """An output folder: refused when it holds something else, or, without --force, when
    it holds an earlier output; messages name the flag."""
    from llm_playground.finetuning.outputs import OutputExists

    try:
        check(out, force)
    except OutputExists as exc:
        raise UserError(f"{flag} {exc.path} exists already: add --force to replace it") from None
    except UserError as exc:
        raise UserError(f"{flag} {exc}") from None


def _quiet_libraries() -> None:
    """Keep stderr to our own progress bar and messages (no per-file loading bars)."""
    import warnings

    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()
    hf_logging.set_verbosity_error()
    warnings.filterwarnings("ignore", category=FutureWarning)
    warnings.filterwarnings("ignore", category=UserWarning, module="peft")


def _stdout(lines: Callable[[Any], list[str]], events: Iterator[Any]) -> Iterator[Any]:
    """Pass ``events`` on, printing the result lines some of them carry on stdout."""
    for event in events:
        for line in lines(event):
            print(line, flush=True)
        yield event


# --- sft ----------------------------------------------------------------------------------

SFT_NUMBERS = {
    "--lora-r": (1, 4096, "at least 1 (and at most 4096)"),
    "--lora-alpha": (1, None, "at least 1"),
    "--lora-dropout": (0.0, 0.999, "in [0, 1)"),
    "--lr": (1e-12, 10.0, "a positive number (at most 10)"),
    "--max-steps": (1, 10_000_000, "at least 1"),
    "--seq-len": (8, 1_000_000, "at least 8"),
    "--batch-size": (1, 100_000, "at least 1"),
    "--seed": (0, MAX_SEED, f"between 0 and {MAX_SEED}"),
    "--heldout-max": (1, 1_000_000, "at least 1"),
}


def _sft_lines(event: Any) -> list[str]:
    from llm_playground.finetuning.events import SFTEval, SFTStarted

    if isinstance(event, SFTStarted):
        return [
            f"trainable parameters: {event.trainable:,} of {event.total_parameters:,} "
            f"({event.share:.3f} %)",
            f"data: {event.n_train} training / {event.n_heldout} held-out examples; "
            f"frozen weights in {event.dtype}",
        ]
    if isinstance(event, SFTEval) and event.step == 0:
        return [f"held-out loss before: {event.heldout_loss:.4f}"]
    return []


@one_line_errors
def sft_command(args: argparse.Namespace) -> int:
    from llm_playground.cli.progress import Wording, render
    from llm_playground.finetuning.instructions import load_examples, split_heldout
    from llm_playground.finetuning.lora import check_adapter_dir, check_model_dir, merge_and_save
    from llm_playground.finetuning.sft import (
        AdapterNotes,
        SFTConfig,
        load_base,
        pick_dtype,
        train_sft,
    )

    check_numbers(args, SFT_NUMBERS)
    targets = tuple(m.strip() for m in args.target_modules.split(",") if m.strip())
    if not targets:
        raise UserError("--target-modules needs at least one module name")
    config = SFTConfig(
        base=args.base,
        lora_r=args.lora_r,
        lora_alpha=args.lora_alpha,
        lora_dropout=args.lora_dropout,
        target_modules=targets,
        lr=args.lr,
        max_steps=args.max_steps,
        seq_len=args.seq_len,
        batch_size=args.batch_size,
        seed=args.seed,
        heldout_max=args.heldout_max,
        dtype=args.dtype,
    ).validate()
    check_out("--out", args.out, args.force, check_adapter_dir)
    if args.merge_to:
        check_out("--merge-to", args.merge_to, args.force, check_model_dir)
    _quiet_libraries()
    examples = load_examples(args.data)  # bad data fails before the model loads
    train, heldout = split_heldout(examples)
    loaded = load_base(args.base, pick_dtype(config.dtype))
    data_name = args.data if args.data in ("alpaca", "offline") else Path(args.data).name
    run = train_sft(
        config,
        train,
        heldout,
        out_dir=args.out,
        loaded=loaded,
        notes=AdapterNotes(data_name=data_name),
        force=args.force,
    )
    wording = Wording(
        desc="sft",
        postfix=lambda e: {"loss": f"{e.loss:.3f}", "s_step": f"{e.s_per_step:.2f}"},
        metric_line=lambda e: None,  # the losses before and after are printed on stdout
    )
    done = render(_stdout(_sft_lines, run), wording)
    assert done is not None
    print(
        f"held-out loss after:  {done.heldout_loss_after:.4f} "
        f"({done.step} steps, {done.s_per_step:.2f} s/step)"
    )
    print(f"adapter written to {done.out_dir}")
    if args.merge_to:
        merged = merge_and_save(done.out_dir, args.merge_to, force=args.force)
        print(f"merged model written to {merged}")
    return 0


# --- dpo ----------------------------------------------------------------------------------

DPO_NUMBERS = {
    "--max-steps": (1, 10_000_000, "at least 1"),
    "--lr": (1e-12, 10.0, "a positive number (at most 10)"),
    "--beta": (1e-9, 1000.0, "a positive number (at most 1000)"),
    "--max-length": (16, 1_000_000, "at least 16"),
    "--seed": (0, MAX_SEED, f"between 0 and {MAX_SEED}"),
}


def _dpo_lines(event: Any) -> list[str]:
    from llm_playground.finetuning.events import DPOStarted

    if isinstance(event, DPOStarted):
        return [
            f"preference pairs: {event.n_pairs}; trainable parameters: {event.trainable:,} "
            f"of {event.total_parameters:,} ({event.share:.3f} %)"
        ]
    return []


@one_line_errors
def dpo_command(args: argparse.Namespace) -> int:
    import torch

    from llm_playground.cli.progress import Wording, render
    from llm_playground.finetuning.dpo import DPOConfig, train_dpo
    from llm_playground.finetuning.lora import check_adapter_dir
    from llm_playground.finetuning.preferences import read_preference_pairs
    from llm_playground.finetuning.sft import load_base

    check_numbers(args, DPO_NUMBERS)
    config = DPOConfig(
        base=args.base,
        max_steps=args.max_steps,
        lr=args.lr,
        beta=args.beta,
        max_length=args.max_length,
        seed=args.seed,
    ).validate()
    check_out("--out", args.out, args.force, check_adapter_dir)
    rows = read_preference_pairs(args.prefs)  # a malformed line fails before the model loads
    _quiet_libraries()
    loaded = load_base(args.base, torch.float32)
    run = train_dpo(
        config,
        rows,
        out_dir=args.out,
        loaded=loaded,
        description=f"DPO LoRA adapter on {args.base} from {args.prefs.name}",
        data_name=str(args.prefs),
        force=args.force,
    )
    wording = Wording(desc="dpo", postfix=lambda e: {"loss": f"{e.loss:.4f}"})
    done = render(_stdout(_dpo_lines, run), wording)
    assert done is not None
    if done.final_loss is not None:
        print(f"final DPO loss: {done.final_loss:.4f} after {done.step} steps")
    print(f"adapter written to {done.out_dir}")
    return 0


__all__ = ["dpo_command", "register", "sft_command"]
