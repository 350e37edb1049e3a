"""Benchmark: the precision ``auto`` picks for Lab 2's presets, and nanoGPT's CPU baby config
against the speedrun preset, in one process.

1. Precision: for ``baby-gpt`` and ``speedrun`` (each at its own batch and block size),
   the decision ``dtype=auto`` takes (bf16's speed as a multiple of float32's on a few
   timed throwaway steps, and for the speedrun Muon's Newton-Schulz the same way) and how
   long deciding took; then three runs of the same model side by side, float32, bfloat16
   (autocast and Newton-Schulz) and auto, their steps timed in interleaved rounds (each
   one's fastest round, the one least disturbed by other work; the median is printed
   too), so a wrong choice shows at once. Target: auto within 10 % of the
   faster precision.
2. The race: the baseline is the loop nanoGPT runs on a CPU for
   ``config/train_shakespeare_char.py`` with its CPU command: the same GPT (4 layers, 4
   heads, 128 wide, block 64, batch 12, no dropout), fp32, eager, the unfused AdamW at
   learning rate 1e-3 (betas 0.9/0.99, weight decay 0.1, grad clip 1.0), 100 warm-up steps
   and a cosine decay to 1e-4. The contender is the playground's ``speedrun`` preset (Muon
   on the hidden matrices, rotary positions, QK-norm, ReLU², zero-initialised projections,
   an untied head, a logit soft-cap, a warm-up/stable/decay schedule), with
   ``dtype=auto``. Both see the same data stream and evaluation batches (same seed) and
   run the same number of steps. Printed: tokens per second of both with the precision
   each ran in, the training time (steps only, evaluations excluded) each needs to reach
   the baseline's own final validation loss, their ratio, and both final losses.
   Targets: a time ratio of at most 0.35, and a lower final loss.

The CPU and its flags that matter (avx2, avx512f, avx512_bf16, amx_bf16) are printed first.

    python bench/train.py                      # 2000 steps each, as nanoGPT
    python bench/train.py --iters 300          # a short sanity run
    python bench/train.py --precision-only     # only part 1
"""

from __future__ import annotations

import sys
from pathlib import Path

# bench/inspect.py bears the standard library's name (which torch and dataclasses import): run
# as a script, this folder must not come first on the import path.
if sys.path and Path(sys.path[0]).resolve() == Path(__file__).resolve().parent:
    sys.path.pop(0)

import argparse
import json
import os
import statistics
import tempfile
import threading
import time

import torch

from llm_playground.core import hardware
from llm_playground.core.events import Error
from llm_playground.training.config import preset
from llm_playground.training.engine import Dist, Trainer, prepare, run_training
from llm_playground.training.events import TrainEval, TrainStarted, TrainStep
from llm_playground.training.precision import decide_training_precision

#: The time ``auto`` may lose against the faster precision (the target: within 10 %).
AUTO_TOLERANCE = 1.10


def step_seconds(configs: dict, rounds: int, steps: int) -> dict[str, list[float]]:
    """Seconds per training step of each config, ``steps`` at a time in interleaved rounds
    (after three warm-up steps each), so that a change in the machine's load hits all alike."""
    trainers = {}
    for name, config in configs.items():
        config, corpus = prepare(config)
        trainers[name] = Trainer(config, corpus, Dist(), threading.Event())
    times: dict[str, list[float]] = {name: [] for name in trainers}
    for rounds_left in [None] + [rounds] * rounds:
        for name, trainer in trainers.items():
            count = 3 if rounds_left is None else steps
            start = time.perf_counter()
            for _ in range(count):
                trainer.train_step()
                trainer.step += 1
            if rounds_left is not None:
                times[name].append((time.perf_counter() - start) / count)
    return times


def precision_check(name: str, rounds: int, steps: int) -> dict:
    """``auto``'s decision for preset ``name`` and the three precisions' step times."""
    base = preset(name, device="cpu", sample_tokens=0, seed=1337)
    config, corpus = prepare(base.replace(dtype="auto"))
    hardware.clear_precision_decisions()
    start = time.perf_counter()
    decided = decide_training_precision(config, corpus, "cpu")
    deciding_s = time.perf_counter() - start
    configs = {dtype: base.replace(dtype=dtype) for dtype in ("float32", "bfloat16", "auto")}
    times = step_seconds(configs, rounds, steps)
    median = {dtype: statistics.median(values) for dtype, values in times.items()}
    best = {dtype: min(values) for dtype, values in times.items()}
    faster = min(("float32", "bfloat16"), key=best.get)
    tokens = base.batch_size * base.model.block_size
    row = {
        "preset": name,
        "auto": decided.to_dict(),
        "auto_summary": decided.summary(),
        "deciding_s": deciding_s,
        "seconds_per_step": best,
        "median_seconds_per_step": median,
        "tokens_per_s": {dtype: tokens / seconds for dtype, seconds in best.items()},
        "faster": faster,
        "auto_over_faster": best["auto"] / best[faster],
        "median_auto_over_faster": median["auto"] / median[faster],
        # a whole run of the preset's steps: auto pays for deciding once
        "run_auto_over_faster": (deciding_s + base.max_iters * best["auto"])
        / (base.max_iters * best[faster]),
    }
    print(
        f"[{name}] auto: {row['auto_summary']} (deciding took {deciding_s:.1f} s)\n"
        f"[{name}] fastest of {rounds} rounds of {steps} steps (median in brackets): "
        + ", ".join(
            f"{dtype} {1000 * best[dtype]:.1f} ms/step ({1000 * median[dtype]:.1f}), "
            f"{row['tokens_per_s'][dtype]:,.0f} tok/s"
            for dtype in ("float32", "bfloat16", "auto")
        )
        + f"\n[{name}] bf16 at {best['float32'] / best['bfloat16']:.2f}x float32's speed "
        f"({median['float32'] / median['bfloat16']:.2f}x by medians); auto at "
        f"{row['auto_over_faster']:.2f}x the faster precision's ({faster}) time per step "
        f"({row['median_auto_over_faster']:.2f}x by medians), "
        f"{row['run_auto_over_faster']:.2f}x over a {base.max_iters}-step run with the "
        f"decision (target <= {AUTO_TOLERANCE:.2f}x)",
        flush=True,
    )
    return row


def train(name: str, config) -> dict:
    """Run ``config`` to the end; keep every evaluation with its training time."""
    out: dict = {"name": name, "evals": []}
    steps = 0
    for ev in run_training(config):
        if isinstance(ev, TrainStarted):
            out.update(
                dtype=ev.dtype,
                precision=ev.precision,
                params=ev.parameters,
                tokens_per_step=ev.tokens_per_step,
            )
            print(
                f"[{name}] {ev.parameters:,} parameters on {ev.device}; precision {ev.precision}",
                flush=True,
            )
        elif isinstance(ev, TrainStep):
            steps = ev.step
        elif isinstance(ev, TrainEval):
            out["evals"].append((ev.step, ev.val_loss, ev.train_time_s))
            out["train_time_s"] = ev.train_time_s
            print(
                f"[{name}] step {ev.step:5d}  train {ev.train_loss:.4f}  val {ev.val_loss:.4f}  "
                f"train time {ev.train_time_s:7.1f} s  {ev.tokens_per_s:8,.0f} tok/s",
                flush=True,
            )
        elif isinstance(ev, Error):
            raise SystemExit(f"[{name}] failed: {ev.message}")
    out["steps"] = steps
    out["final_val"] = out["evals"][-1][1]
    out["tokens_per_s"] = steps * out["tokens_per_step"] / out["train_time_s"]
    return out


def time_to(result: dict, target: float) -> tuple[float, int] | None:
    """Training seconds and step of the first evaluation at or below ``target``."""
    return next(((t, s) for s, v, t in result["evals"] if v <= target), None)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--iters", type=int, default=2000, help="steps of each run (nanoGPT: 2000)")
    ap.add_argument("--eval-interval", type=int, default=100)
    ap.add_argument("--eval-iters", type=int, default=20)
    ap.add_argument("--json", help="also write the results to this file")
    ap.add_argument("--rounds", type=int, default=10, help="precision part: timed rounds")
    ap.add_argument("--steps", type=int, default=5, help="precision part: steps per round")
    ap.add_argument("--precision-only", action="store_true", help="skip the race")
    args = ap.parse_args()
    # a fresh playground home: every decision is measured here, none read from a cache
    os.environ["LLM_PLAYGROUND_HOME"] = tempfile.mkdtemp(prefix="bench-train-")

    common = dict(
        max_iters=args.iters,
        eval_interval=args.eval_interval,
        eval_iters=args.eval_iters,
        sample_tokens=0,
        device="cpu",
        seed=1337,
    )
    baseline = preset(
        "baby-gpt", **common, dtype="float32", fused_adamw=False, compile=False, label="baseline"
    )
    speedrun = preset("speedrun", **common, dtype="auto", label="speedrun")
    here = hardware.machine("cpu")
    probe = hardware.probe_cpu_bf16()
    print(
        f"{here.describe()}; {here.flags_line()}; torch {torch.__version__}, "
        f"{torch.get_num_threads()} threads, capability {torch.backends.cpu.get_cpu_capability()}",
        flush=True,
    )
    print(
        f"for comparison, the old proxy (one {hardware.PROBE_SHAPE} matrix product): bf16 at "
        f"{probe.speedup:.2f}x fp32's speed",
        flush=True,
    )
    checks = [precision_check(name, args.rounds, args.steps) for name in ("baby-gpt", "speedrun")]
    for row in checks:
        met = row["run_auto_over_faster"] <= AUTO_TOLERANCE
        print(
            f"precision target, {row['preset']}: auto {row['run_auto_over_faster']:.2f}x the "
            f"faster precision's time -> {'met' if met else 'NOT met'}"
        )
    if args.precision_only:
        if args.json:
            with open(args.json, "w") as fh:
                json.dump({"precision": checks, "machine": here.__dict__}, fh, indent=2)
        return

    base = train("baseline", baseline)
    fast = train("speedrun", speedrun)

    target = base["final_val"]
    print("\n=== results ===")
    for r in (base, fast):
        reached = time_to(r, target)
        when = f"{reached[0]:.1f} s (step {reached[1]})" if reached else "not reached"
        print(
            f"{r['name']:9s} {r['tokens_per_s']:9,.0f} tok/s  ({r['precision']})  "
            f"final val {r['final_val']:.4f} after {r['steps']} steps  "
            f"val <= {target:.4f}: {when}"
        )
    fast_reached = time_to(fast, target)
    if fast_reached:
        ratio = fast_reached[0] / base["train_time_s"]
        print(
            f"time to the baseline's final val loss {target:.4f}: {ratio:.2f}x the baseline's "
            f"(target <= 0.35)"
        )
    else:
        print(f"the speedrun never reached the baseline's final val loss {target:.4f}")
    print(
        f"final val loss after {args.iters} steps: baseline {base['final_val']:.4f}, "
        f"speedrun {fast['final_val']:.4f} "
        f"({'lower' if fast['final_val'] < base['final_val'] else 'NOT lower'})"
    )
    print(f"tokens/s: speedrun {fast['tokens_per_s'] / base['tokens_per_s']:.2f}x the baseline's")
    if args.json:
        with open(args.json, "w") as fh:
            results = {"baseline": base, "speedrun": fast, "precision": checks}
            json.dump({**results, "machine": here.__dict__}, fh, indent=2)


if __name__ == "__main__":
    main()
