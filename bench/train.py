"""Benchmark: nanoGPT's CPU baby config against the speedrun preset, in one process.

The baseline is the loop nanoGPT runs on a CPU for ``config/train_shakespeare_char.py``
with its CPU command: the same GPT (4 layers, 4 heads, 128 wide, block 64, batch 12,
no dropout), fp32, eager, the unfused AdamW at learning rate 1e-3 (betas 0.9/0.99,
weight decay 0.1, grad clip 1.0), 100 warm-up steps and a cosine decay to 1e-4. The
contender is the playground's ``speedrun`` preset (Muon on the hidden matrices with an
fp32 Newton-Schulz where bf16 is slow, rotary positions, QK-norm, ReLU², zero-initialised
projections, an untied head, a logit soft-cap, a warm-up/stable/decay schedule), with
``dtype=auto``. Both see the same data stream and evaluation batches (same seed) and run
the same number of steps.

Printed: the CPU and its flags that matter (avx2, avx512f, avx512_bf16, amx_bf16), the
precision the measured probe picks, tokens per second of both, the training time (steps
only, evaluations excluded) each needs to reach the baseline's own final validation
loss, their ratio, and both final losses after the same number of steps.
Targets: a time ratio of at most 0.5, and a lower final loss.

    python bench/train.py                 # 2000 steps each, as nanoGPT
    python bench/train.py --iters 300     # a short sanity run
"""

from __future__ import annotations

import argparse
import json

import torch

from llm_playground.core import hardware
from llm_playground.core.events import Error
from llm_playground.training.config import preset
from llm_playground.training.engine import run_training
from llm_playground.training.events import TrainEval, TrainStarted, TrainStep


def train(name: str, config) -> dict:
    """Run ``config`` to the end; keep every evaluation with its training time."""
    out: dict = {"name": name, "evals": []}
    steps = 0
    for ev in run_training(config):
        if isinstance(ev, TrainStarted):
            out.update(dtype=ev.dtype, params=ev.parameters, tokens_per_step=ev.tokens_per_step)
            print(f"[{name}] {ev.parameters:,} parameters on {ev.device} in {ev.dtype}", flush=True)
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
    args = ap.parse_args()

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
        f"bf16 probe: {probe.speedup:.2f}x fp32's speed -> "
        f"{'bf16' if probe.faster else 'fp32'} autocast and Newton-Schulz",
        flush=True,
    )

    base = train("baseline", baseline)
    fast = train("speedrun", speedrun)

    target = base["final_val"]
    print("\n=== results ===")
    for r in (base, fast):
        reached = time_to(r, target)
        when = f"{reached[0]:.1f} s (step {reached[1]})" if reached else "not reached"
        print(
            f"{r['name']:9s} {r['tokens_per_s']:9,.0f} tok/s  ({r['dtype']})  "
            f"final val {r['final_val']:.4f} after {r['steps']} steps  "
            f"val <= {target:.4f}: {when}"
        )
    fast_reached = time_to(fast, target)
    if fast_reached:
        ratio = fast_reached[0] / base["train_time_s"]
        print(
            f"time to the baseline's final val loss {target:.4f}: {ratio:.2f}x the baseline's "
            f"(target <= 0.5)"
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
            json.dump({"baseline": base, "speedrun": fast, "machine": here.__dict__}, fh, indent=2)


if __name__ == "__main__":
    main()
