"""``llm-playground sft`` and ``llm-playground dpo``: LoRA fine-tuning and preference training."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from llm_playground.core.errors import UserError


def register(subparsers: argparse._SubParsersAction) -> None:
    sft = subparsers.add_parser(
        "sft",
        help="fine-tune a LoRA adapter on instructions",
        description="Train LoRA weights on instruction data and save a peft adapter. Prints the "
        "trainable parameters and the held-out loss before and after.",
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
    sft.set_defaults(func=_sft)

    dpo = subparsers.add_parser(
        "dpo",
        help="train a LoRA adapter with DPO on exported preferences",
        description="Direct preference optimisation (TRL DPOTrainer) on a JSONL of prompt, chosen, "
        "rejected (as `prefs export` writes it).",
    )
    dpo.add_argument("--base", required=True, help="base model (e.g. smollm2-135m-instruct)")
    dpo.add_argument("--prefs", required=True, type=Path, help="preference JSONL file")
    dpo.add_argument("--out", required=True, type=Path, help="folder to write the adapter to")
    dpo.add_argument("--max-steps", type=int, default=20)
    dpo.add_argument("--lr", type=float, default=5e-5)
    dpo.add_argument("--beta", type=float, default=0.1)
    dpo.add_argument("--max-length", type=int, default=256)
    dpo.add_argument("--seed", type=int, default=0)
    dpo.set_defaults(func=_dpo)


def _quiet_libraries() -> None:
    """Keep stderr to our own progress bar and messages (no per-file loading bars)."""
    import warnings

    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()
    hf_logging.set_verbosity_error()
    warnings.filterwarnings("ignore", category=FutureWarning)
    warnings.filterwarnings("ignore", category=UserWarning, module="peft")


def _check_out(out: Path) -> None:
    if out.exists() and not out.is_dir():
        raise UserError(f"--out {out} is a file, not a folder")
    if out.is_dir() and any(out.iterdir()) and not (out / "adapter_config.json").exists():
        raise UserError(
            f"--out {out} is a non-empty folder that holds no adapter: pick a new folder"
        )


def _sft(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from llm_playground.finetuning.instructions import load_examples, split_heldout
    from llm_playground.finetuning.sft import (
        SFTConfig,
        SFTDone,
        SFTEval,
        SFTStarted,
        SFTStep,
        load_base,
        merge_and_save,
        pick_dtype,
        train_sft,
    )

    _quiet_libraries()
    targets = tuple(m.strip() for m in args.target_modules.split(",") if m.strip())
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
    _check_out(args.out)
    examples = load_examples(args.data)  # bad data fails before the model loads
    train, heldout = split_heldout(examples)
    loaded = load_base(args.base, pick_dtype(config.dtype))
    data_name = args.data if args.data in ("alpaca", "offline") else Path(args.data).name
    bar = None
    done = None
    for ev in train_sft(
        config, train, heldout, out_dir=args.out, loaded=loaded, data_name=data_name
    ):
        if isinstance(ev, SFTStarted):
            print(
                f"trainable parameters: {ev.trainable:,} of {ev.total:,} ({ev.share:.3f} %)",
                flush=True,
            )
            print(
                f"data: {ev.n_train} training / {ev.n_heldout} held-out examples; "
                f"frozen weights in {ev.dtype}",
                flush=True,
            )
            bar = tqdm(total=ev.max_steps, unit="step", file=sys.stderr, desc="sft")
        elif isinstance(ev, SFTStep) and bar is not None:
            bar.update(1)
            bar.set_postfix(loss=f"{ev.loss:.3f}", s_step=f"{ev.s_per_step:.2f}")
        elif isinstance(ev, SFTEval) and ev.step == 0:
            print(f"held-out loss before: {ev.heldout_loss:.4f}", flush=True)
        elif isinstance(ev, SFTDone):
            done = ev
    if bar is not None:
        bar.close()
    assert done is not None
    print(
        f"held-out loss after:  {done.heldout_loss_after:.4f} "
        f"({done.step} steps, {done.s_per_step:.2f} s/step)"
    )
    print(f"adapter written to {done.out_dir}")
    if args.merge_to:
        merged = merge_and_save(done.out_dir, args.merge_to)
        print(f"merged model written to {merged}")
    return 0


def _dpo(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from llm_playground.finetuning.dpo import (
        DPODone,
        DPOSettings,
        DPOStarted,
        DPOStep,
        load_preferences,
        train_dpo,
    )
    from llm_playground.finetuning.sft import load_base

    _quiet_libraries()
    settings = DPOSettings(
        base=args.base,
        max_steps=args.max_steps,
        lr=args.lr,
        beta=args.beta,
        max_length=args.max_length,
        seed=args.seed,
    ).validate()
    _check_out(args.out)
    rows = load_preferences(args.prefs)  # a malformed line fails before the model loads
    import torch

    loaded = load_base(args.base, torch.float32)
    bar = None
    done = None
    for ev in train_dpo(
        settings,
        rows,
        out_dir=args.out,
        loaded=loaded,
        description=f"DPO LoRA adapter on {args.base} from {args.prefs.name}",
        data_name=str(args.prefs),
    ):
        if isinstance(ev, DPOStarted):
            print(
                f"preference pairs: {ev.n_pairs}; trainable parameters: {ev.trainable:,} "
                f"of {ev.total:,} ({ev.share:.3f} %)",
                flush=True,
            )
            bar = tqdm(total=ev.max_steps, unit="step", file=sys.stderr, desc="dpo")
        elif isinstance(ev, DPOStep) and bar is not None:
            bar.n = ev.step
            bar.refresh()
            bar.set_postfix(loss=f"{ev.loss:.4f}")
        elif isinstance(ev, DPODone):
            done = ev
    if bar is not None:
        bar.close()
    assert done is not None
    if done.final_loss is not None:
        print(f"final DPO loss: {done.final_loss:.4f} after {done.step} steps")
    print(f"adapter written to {done.out_dir}")
    return 0
