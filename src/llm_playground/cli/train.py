"""``llm-playground train`` and ``llm-playground sample``: Lab 2 on the command line.

``train`` runs the same engine as the Training ground page, shows a progress bar on
standard error, and writes a checkpoint folder (``metrics.jsonl``, ``model.safetensors``,
``config.json``, the tokenizer, and ``hf/`` for GPT models). Launched by ``torchrun`` it
trains data-parallel; only rank 0 prints and writes. ``sample`` continues a prompt with a
saved model.
"""

from __future__ import annotations

import argparse
import math
import os
from pathlib import Path

from llm_playground.cli import example
from llm_playground.core.errors import UserError
from llm_playground.training.config import (
    DEVICES,
    DTYPES,
    MAX_SNAPSHOTS,
    PRESETS,
    TRICKS,
    Trick,
    config_from_settings,
)


def register(subparsers: argparse._SubParsersAction) -> None:
    _add_train(subparsers)
    _add_sample(subparsers)


def _add_train(subparsers: argparse._SubParsersAction) -> None:
    """``train``: the settings of a run, each one overriding the preset's."""
    p = subparsers.add_parser(
        "train",
        help="train a bigram model or a baby GPT (Lab 2)",
        description="Train a bigram model or a GPT on a text and save it.",
        **example("llm-playground train --preset baby-gpt --max-iters 200 --out runs/baby"),
    )
    p.add_argument("--preset", required=True, choices=list(PRESETS), help="starting settings")
    p.add_argument("--n-layer", type=int, metavar="N", help="transformer blocks")
    p.add_argument("--n-head", type=int, metavar="N", help="attention heads per block")
    p.add_argument("--n-embd", type=int, metavar="N", help="embedding size")
    p.add_argument("--block-size", type=int, metavar="N", help="context length in tokens")
    p.add_argument(
        "--batch-size",
        type=int,
        metavar="N",
        help="blocks per optimiser step (global, over all processes)",
    )
    p.add_argument("--lr", type=float, metavar="X", help="peak learning rate")
    p.add_argument(
        "--min-lr",
        type=float,
        metavar="X",
        help="learning rate at the end of the cosine decay (default lr/10)",
    )
    p.add_argument("--max-iters", type=int, metavar="N", help="optimiser steps")
    p.add_argument("--eval-interval", type=int, metavar="N", help="steps between evaluations")
    p.add_argument("--eval-iters", type=int, metavar="N", help="batches per loss estimate")
    p.add_argument(
        "--sample-interval", type=int, metavar="N", help="steps between samples (default 100)"
    )
    p.add_argument("--dropout", type=float, metavar="X", help="dropout probability")
    p.add_argument("--seed", type=int, metavar="N", help="random seed (same seed, same run)")
    p.add_argument(
        "--tokenizer",
        metavar="char|gpt2|FILE",
        help="char, gpt2, or the path of a saved BPE JSON file",
    )
    p.add_argument("--data", metavar="FILE", help="a UTF-8 text file (default: TinyShakespeare)")
    p.add_argument("--device", choices=DEVICES, help="auto picks a GPU when there is one")
    p.add_argument(
        "--dtype",
        choices=DTYPES,
        help="auto: time a few steps of this model in each, train in the faster",
    )
    p.add_argument("--compile", action="store_true", help="compile the model with torch.compile")
    p.add_argument("--resume", metavar="DIR", help="continue from a checkpoint folder")
    p.add_argument("--out", required=True, metavar="DIR", help="checkpoint folder to write")
    p.add_argument("--force", action="store_true", help="replace the run already in --out (if any)")
    p.add_argument(
        "--target-val-loss",
        type=float,
        metavar="X",
        help="stop at the first evaluation with validation loss at or below X",
    )
    p.add_argument("--checkpoint-interval", type=int, metavar="N", help="also save every N steps")
    p.add_argument(
        "--snapshot-interval",
        type=int,
        metavar="N",
        help=f"keep the model every N steps in snapshots/ for Lab 6 (at most {MAX_SNAPSHOTS})",
    )
    _add_recipe_switches(p)
    p.set_defaults(func=train_command)


def _add_recipe_switches(p: argparse.ArgumentParser) -> None:
    """The speedrun preset's ingredients, each one a switch of its own (as each describes
    itself in TRICKS), and the settings that go with them."""
    recipe = p.add_argument_group(
        "recipe switches", "each ingredient of the speedrun preset, to add or remove one at a time"
    )
    for trick in TRICKS.values():
        _add_trick_switch(recipe, trick)
    recipe.add_argument("--muon-lr", type=float, metavar="X", help="Muon's learning rate")
    recipe.add_argument(
        "--bias", action=argparse.BooleanOptionalAction, help="biases in linear layers and norms"
    )
    recipe.add_argument("--warmup-iters", type=int, metavar="N", help="warm-up steps")
    recipe.add_argument(
        "--decay-frac", type=float, metavar="X", help="wsd: fraction of the steps that decay"
    )


def _add_trick_switch(group: argparse._ArgumentGroup, trick: Trick) -> None:
    """One trick's switch: a choice, words that stand for values, yes/no, or a number."""
    if trick.choices or trick.flag_values:
        choices = tuple(trick.flag_values or trick.choices)
        group.add_argument(trick.flag, dest=trick.setting, choices=choices, help=trick.help)
    elif isinstance(trick.on, bool):
        group.add_argument(
            trick.flag,
            dest=trick.setting,
            action=argparse.BooleanOptionalAction,
            help=trick.help,
        )
    else:
        group.add_argument(
            trick.flag, dest=trick.setting, type=type(trick.on), metavar="X", help=trick.help
        )


def _trick_settings(args: argparse.Namespace) -> dict:
    """The tricks' settings from their switches (None where a switch is absent: the preset's)."""
    settings = {}
    for trick in TRICKS.values():
        value = getattr(args, trick.setting)
        if trick.flag_values and value is not None:
            value = trick.flag_values[value]
        settings[trick.setting] = value
    return settings


def _add_sample(subparsers: argparse._SubParsersAction) -> None:
    """``sample``: continue a prompt with a trained model."""
    s = subparsers.add_parser(
        "sample",
        help="continue a prompt with a trained model (Lab 2)",
        description="Print a trained model's continuation of a prompt.",
        **example("llm-playground sample --checkpoint runs/baby --prompt 'ROMEO:' --seed 1"),
    )
    s.add_argument("--checkpoint", required=True, metavar="DIR", help="a folder written by train")
    s.add_argument(
        "--prompt", default="\n", metavar="TEXT", help="text to continue (default: a newline)"
    )
    s.add_argument(
        "--max-new-tokens", type=int, metavar="N", default=200, help="tokens to generate"
    )
    s.add_argument("--temperature", type=float, metavar="X", default=1.0, help="0 means greedy")
    s.add_argument(
        "--top-k", type=int, metavar="K", help="sample only among the k likeliest tokens"
    )
    s.add_argument("--seed", type=int, metavar="N", default=1337, help="random seed")
    s.set_defaults(func=sample_command)


def build_config(args: argparse.Namespace):
    """The run's config, built by the library from the flags given (absent flags: preset)."""
    config = config_from_settings(
        args.preset,
        n_layer=args.n_layer,
        n_head=args.n_head,
        n_embd=args.n_embd,
        block_size=args.block_size,
        batch_size=args.batch_size,
        lr=args.lr,
        min_lr=args.min_lr,
        max_iters=args.max_iters,
        eval_interval=args.eval_interval,
        eval_iters=args.eval_iters,
        sample_interval=args.sample_interval,
        dropout=args.dropout,
        seed=args.seed,
        tokenizer=args.tokenizer,
        data=args.data,
        device=args.device,
        dtype=args.dtype,
        resume=args.resume,
        out_dir=args.out,
        compile=True if args.compile else None,
        target_val_loss=args.target_val_loss,
        checkpoint_interval=args.checkpoint_interval,
        snapshot_interval=args.snapshot_interval,
        muon_lr=args.muon_lr,
        bias=args.bias,
        warmup_iters=args.warmup_iters,
        decay_frac=args.decay_frac,
        **_trick_settings(args),
    )
    return config.validate()


def _check_output(args: argparse.Namespace) -> None:
    """``--out`` may not hold a run already, unless it is resumed there or ``--force`` is given."""
    from llm_playground.training.checkpoints import OutputExists, prepare_output

    same = (
        args.resume
        and Path(args.resume).expanduser().resolve() == Path(args.out).expanduser().resolve()
    )
    if same or int(os.environ.get("RANK", "0")) != 0:
        return
    try:
        prepare_output(args.out, replace=args.force)
    except OutputExists as exc:
        raise UserError(
            f"{exc}: pass --force to replace it, or --resume {args.out} to continue it"
        ) from None


def _gib(n_bytes: float) -> str:
    return f"{n_bytes / 1024**3:,.1f} GB"


def available_memory(device: str) -> int | None:
    """Bytes free for a new run on ``device`` now: the GPU's free memory, or the machine's
    available memory (``MemAvailable``); None when it cannot be told."""
    if device.startswith("cuda"):
        import torch

        index = torch.device(device).index  # "cuda": this process's GPU under torchrun
        index = int(os.environ.get("LOCAL_RANK", "0") or 0) if index is None else index
        return int(torch.cuda.mem_get_info(index)[0])
    try:
        with open("/proc/meminfo", encoding="ascii") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return None


def training_bytes(config) -> int:
    """The memory a run needs at least, estimated from its settings before anything is
    allocated: the model's parameters are counted on PyTorch's meta device (one and two
    layers, the rest extrapolated, so a huge depth costs nothing to count), then
    :func:`~llm_playground.training.model.training_memory` adds gradients, AdamW's moments
    and the activations (at 2 bytes a value, the smallest of the precisions)."""
    from dataclasses import replace

    from llm_playground.training.model import model_summary, training_memory

    model = config.model
    if model.kind == "gpt" and model.n_layer > 2:
        one = model_summary(replace(model, n_layer=1)).total_parameters
        two = model_summary(replace(model, n_layer=2)).total_parameters
        parameters = one + (model.n_layer - 1) * (two - one)
    else:
        parameters = model_summary(model).total_parameters
    return sum(training_memory(model, parameters, config.batch_size, bytes_per_value=2).values())


def check_memory(config) -> None:
    """Refuse at once, with the estimate, a run whose model cannot fit in the memory this
    machine has free (rather than an out-of-memory error after a long allocation)."""
    from llm_playground.core.hardware import resolve_device

    device = resolve_device(config.device)
    needed = training_bytes(config)
    if not device.startswith("cuda"):  # processes started by torchrun share the memory
        needed *= max(1, int(os.environ.get("LOCAL_WORLD_SIZE", "1") or 1))
    free = available_memory(device)
    if free is not None and needed > free:
        where = "the GPU" if device.startswith("cuda") else "this machine"
        raise UserError(
            f"this run needs about {_gib(needed)} of memory (weights, gradients, AdamW state "
            f"and activations at batch size {config.batch_size}) but {where} has "
            f"{_gib(free)} free: lower --n-layer, --n-embd, --block-size or --batch-size"
        )


def train_command(args: argparse.Namespace) -> int:
    from llm_playground.cli.progress import Wording, render
    from llm_playground.training.engine import run_training
    from llm_playground.training.events import TrainEval

    config = build_config(args)
    check_memory(config)
    _check_output(args)

    def metric_line(e) -> str:
        if isinstance(e, TrainEval):
            return f"step {e.step}: train loss {e.train_loss:.4f}, val loss {e.val_loss:.4f}"
        return (
            f"reached val loss {e.target:g} at step {e.step} "
            f"({e.val_loss:.4f}, {e.elapsed_s:.1f} s)"
        )

    wording = Wording(
        headline=lambda e: (
            f"training {e.label}: {e.parameters:,} parameters, vocabulary "
            f"{e.vocab_size}, {e.device} {e.dtype}"
            + (f", {e.world_size} processes" if e.world_size > 1 else "")
            + (f"\nprecision: {e.precision}" if e.precision else "")
        ),
        postfix=lambda e: {"loss": f"{e.loss:.4f}", "tok_s": f"{e.tokens_per_s:,.0f}"},
        metric_line=metric_line,
        sample_line=(lambda e: f"--- sample at step {e.step} ---\n{e.text}")
        if args.verbose
        else None,
    )
    main_rank = int(os.environ.get("RANK", "0")) == 0
    done = render(run_training(config), wording, show=main_rank)
    if main_rank and done is not None:
        val = "n/a" if done.val_loss is None else f"{done.val_loss:.4f}"
        print(
            f"saved {config.out_dir} after {done.step} steps (val loss {val}, "
            f"{done.elapsed_s:.1f} s)"
        )
        if config.target_val_loss is not None:
            if done.target_reached_s is not None:
                print(
                    f"reached val loss {config.target_val_loss:g} in {done.target_reached_s:.1f} s"
                )
            else:
                print(f"did not reach val loss {config.target_val_loss:g}")
    return 0


def sample_command(args: argparse.Namespace) -> int:
    import torch

    from llm_playground.generation.config import MAX_NEW_TOKENS
    from llm_playground.training.checkpoints import load_checkpoint

    if args.max_new_tokens is None or args.max_new_tokens < 0:
        raise UserError(f"--max-new-tokens must be 0 or more, not {args.max_new_tokens}")
    if args.max_new_tokens > MAX_NEW_TOKENS:  # the same limit as generate's
        raise UserError(
            f"--max-new-tokens must be at most {MAX_NEW_TOKENS:,}, not {args.max_new_tokens:,}"
        )
    if not math.isfinite(args.temperature) or args.temperature < 0:
        raise UserError(f"--temperature must be 0 (greedy) or more, not {args.temperature}")
    if args.top_k is not None and args.top_k <= 0:
        raise UserError(f"--top-k must be positive, not {args.top_k}")
    if not 0 <= args.seed < 2**63:
        raise UserError(f"--seed must be from 0 to 2^63 - 1, not {args.seed}")
    ckpt = load_checkpoint(args.checkpoint)
    ids = list(ckpt.tokenizer.encode(args.prompt))
    if not ids:
        raise UserError("the prompt is empty: give at least one character")
    torch.manual_seed(args.seed)
    gen = torch.Generator().manual_seed(args.seed)
    out = ckpt.model.generate(
        torch.tensor([ids]),
        args.max_new_tokens,
        temperature=args.temperature,
        top_k=args.top_k,
        generator=gen,
    )
    print(ckpt.tokenizer.decode(out[0, len(ids) :].tolist()))
    return 0
