"""Benchmark: the baby-gpt preset trained twice, a plain fp32 eager baseline and the fast path.

The baseline is the loop nanoGPT runs on a CPU for this config: fp32, eager, the unfused
AdamW, learning rate 1e-3 with 100 warm-up steps and cosine decay to 1e-4. The fast path
is the project's: the single-kernel (fused) AdamW, ``torch.compile``, the number format a
measured probe picks (bf16 only where the hardware is fast at it), and a higher peak
learning rate that this small model tolerates. Both see the same data stream (same seed).

Printed: tokens per second of both and their ratio, the model FLOPs utilisation (MFU)
against a matrix-multiplication peak measured here, and the training time (evaluations
excluded, compilation included) each needs to reach validation loss 1.88.
Targets: at least 1.5x the baseline's tokens/s; 1.88 reached in at most half the
baseline's time; a final validation loss no worse.

    python bench/train.py                 # 2000 iterations each (about 2 x 2 minutes on 2 fast cores)
    python bench/train.py --iters 300     # a short run
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import time

import torch

from llm_playground.core.events import Error
from llm_playground.training.config import preset
from llm_playground.training.engine import cpu_has_bf16, resolve_dtype, run_training
from llm_playground.training.events import TrainDone, TrainEval, TrainStarted, TrainStep
from llm_playground.training.model import flops_per_token

TARGET = 1.88


def gemm_peak(dtype: torch.dtype, n: int = 1024, seconds: float = 1.0) -> float:
    """FLOP/s of an n x n matrix product in ``dtype``, best of repeated timings."""
    a, b = torch.randn(n, n, dtype=dtype), torch.randn(n, n, dtype=dtype)
    for _ in range(3):
        a @ b
    best, end = 0.0, time.perf_counter() + seconds
    while time.perf_counter() < end:
        t0 = time.perf_counter()
        for _ in range(4):
            a @ b
        dt = time.perf_counter() - t0
        best = max(best, 4 * 2 * n**3 / dt)
    return best


def train(name: str, config) -> dict:
    t0 = time.perf_counter()
    out = {"name": name, "reached_s": None, "reached_step": None, "final_val": None, "evals": []}
    steps = 0
    for ev in run_training(config):
        if isinstance(ev, TrainStarted):
            out.update(dtype=ev.dtype, params=ev.parameters, tokens_per_step=ev.tokens_per_step)
            print(f"[{name}] {ev.parameters:,} parameters on {ev.device} in {ev.dtype}", flush=True)
        elif isinstance(ev, TrainStep):
            steps = ev.step
        elif isinstance(ev, TrainEval):
            out["evals"].append(ev.metrics())
            out["final_val"] = ev.val_loss
            out["train_time_s"] = ev.train_time_s
            if ev.val_loss <= TARGET and out["reached_s"] is None:
                out["reached_s"], out["reached_step"] = ev.train_time_s, ev.step
            print(
                f"[{name}] step {ev.step:5d}  train {ev.train_loss:.4f}  val {ev.val_loss:.4f}  "
                f"train time {ev.train_time_s:7.1f} s  {ev.tokens_per_s:8,.0f} tok/s",
                flush=True,
            )
        elif isinstance(ev, Error):
            raise SystemExit(f"[{name}] failed: {ev.message}")
        elif isinstance(ev, TrainDone):
            pass
    out["steps"] = steps
    out["wall_s"] = time.perf_counter() - t0
    out["tokens_per_s"] = steps * out["tokens_per_step"] / out["train_time_s"]
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument(
        "--iters", type=int, default=2000, help="iterations of each run (2000 as nanoGPT)"
    )
    ap.add_argument("--eval-interval", type=int, default=100)
    ap.add_argument("--eval-iters", type=int, default=20)
    ap.add_argument(
        "--fast-lr", type=float, default=2e-3, help="peak learning rate of the fast path"
    )
    ap.add_argument(
        "--fast-iters", type=int, help="length of the fast path's schedule (default: --iters)"
    )
    ap.add_argument(
        "--no-compile", action="store_true", help="leave torch.compile out of the fast path"
    )
    ap.add_argument("--only", choices=["baseline", "fast"], help="run one of the two")
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
    fast = preset(
        "baby-gpt",
        **{**common, "max_iters": args.fast_iters or args.iters},
        dtype="auto",
        fused_adamw=True,
        compile=not args.no_compile,
        lr=args.fast_lr,
        min_lr=args.fast_lr / 10,
        label="fast",
    )
    fast_dtype = resolve_dtype("auto", "cpu", fast.replace(vocab_size=65))
    print(
        f"torch {torch.__version__}, {torch.get_num_threads()} threads, CPU capability "
        f"{torch.backends.cpu.get_cpu_capability()}, bf16 instructions: {cpu_has_bf16()}, "
        f"fast path dtype by probe: {str(fast_dtype).replace('torch.', '')}",
        flush=True,
    )
    peak32 = gemm_peak(torch.float32)
    peak16 = gemm_peak(torch.bfloat16) if cpu_has_bf16() else float("nan")
    print(
        f"measured GEMM peak: fp32 {peak32 / 1e9:,.1f} GFLOP/s, bf16 {peak16 / 1e9:,.1f} GFLOP/s",
        flush=True,
    )

    results = {}
    if args.only != "fast":
        results["baseline"] = train("baseline", baseline)
    if args.only != "baseline":
        results["fast"] = train("fast", fast)

    print("\n=== results ===")
    for name, r in results.items():
        peak = peak16 if r["dtype"] == "bfloat16" else peak32
        fpt = flops_per_token(dataclasses.replace(baseline.model, vocab_size=65), r["params"])
        r["mfu"] = fpt * r["tokens_per_s"] / peak
        reached = (
            f"{r['reached_s']:.1f} s (step {r['reached_step']})"
            if r["reached_s"] is not None
            else f"not reached in {r['steps']} steps"
        )
        print(
            f"{name:9s} {r['tokens_per_s']:9,.0f} tok/s  MFU {100 * r['mfu']:5.1f} %  "
            f"({r['dtype']})  final val {r['final_val']:.4f}  val <= {TARGET}: {reached}"
        )
    if len(results) == 2:
        b, f = results["baseline"], results["fast"]
        ratio = f["tokens_per_s"] / b["tokens_per_s"]
        print(f"speed-up: {ratio:.2f}x tokens/s (target >= 1.5x)")
        if b["reached_s"] and f["reached_s"]:
            print(
                f"time to val {TARGET}: {f['reached_s'] / b['reached_s']:.2f} of the baseline's (target <= 0.5)"
            )
        elif f["reached_s"] and not b["reached_s"]:
            print(
                f"time to val {TARGET}: the fast path reached it in {f['reached_s']:.1f} s, the baseline never did"
            )
        print(
            f"final val loss: baseline {b['final_val']:.4f}, fast {f['final_val']:.4f} "
            f"({'no worse' if f['final_val'] <= b['final_val'] + 1e-3 else 'WORSE'})"
        )
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(
                {
                    k: {
                        kk: vv
                        for kk, vv in v.items()
                        if not (isinstance(vv, float) and math.isnan(vv))
                    }
                    for k, v in results.items()
                },
                fh,
                indent=2,
            )


if __name__ == "__main__":
    main()
