"""Lab 4 benchmark: GRPO on ``arithmetic`` with SmolLM2-135M-Instruct, and the reward model.

1. GRPO with the defaults of ``RLConfig`` (the defaults of ``llm-playground rl``):
   held-out accuracy on 200 fixed problems (greedy) before and after the run. Targets: the
   run finishes within 15 minutes on 2 cores, and accuracy rises by at least 15 points.
   Printed: seconds a step, generated tokens per second, the time of the run.
2. The reward model on the shipped offline preference set (``reward train --prefs
   offline`` defaults): held-out pairwise accuracy, target at least 0.8.

The CPU flags are printed with the figures; timings on a machine shared with other work
are slower than on an idle one (the ratio of CPU time to wall time is printed as a hint).

Run: ``python bench/rl.py [--steps N] [--skip-reward] [--skip-rl] [--json]``.
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
import resource
import time
from dataclasses import replace

from llm_playground.core.hardware import machine


def _cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def bench_rl(steps: int | None, eval_problems: int) -> dict:
    from llm_playground.finetuning.rl import RLConfig, RLDone, RLEval, RLStep, train_rl

    config = RLConfig(eval_every=0, eval_problems=eval_problems)
    if steps is not None:
        config = replace(config, steps=steps)
    wall, cpu = time.perf_counter(), _cpu_seconds()
    done = None
    for event in train_rl(config):
        if isinstance(event, RLStep):
            print(
                f"  step {event.step}/{event.total}: reward {event.reward_mean:.3f} "
                f"± {event.reward_std:.3f}, kl {event.kl:.4f}, "
                f"length {event.completion_length:.1f}, {event.elapsed_s:.0f} s",
                file=sys.stderr,
                flush=True,
            )
        elif isinstance(event, RLEval):
            print(
                f"  held-out accuracy at step {event.step}: {event.accuracy:.3f}", file=sys.stderr
            )
        elif isinstance(event, RLDone):
            done = event
    wall, cpu = time.perf_counter() - wall, _cpu_seconds() - cpu
    assert done is not None
    rise = 100 * ((done.accuracy_after or 0) - (done.accuracy_before or 0))
    return {
        "settings": config.settings(),
        "accuracy_before": done.accuracy_before,
        "accuracy_after": done.accuracy_after,
        "rise_points": round(rise, 1),
        "target_rise_points": 15,
        "steps": done.step,
        "s_per_step": round(done.s_per_step, 2),
        "generated_tokens_per_s": round(done.tokens_per_s, 1),
        "training_s": round(done.elapsed_s, 1),
        "total_s_with_evaluations": round(wall, 1),
        "target_total_s": 900,
        "cpu_s_per_wall_s": round(cpu / wall, 2),
    }


def bench_reward() -> dict:
    from llm_playground.finetuning.reward import (
        RewardDone,
        RewardModelConfig,
        load_pairs,
        train_reward_model,
    )

    pairs, name = load_pairs("offline")
    wall = time.perf_counter()
    done = None
    for event in train_reward_model(RewardModelConfig(), pairs, data_name=name):
        if isinstance(event, RewardDone):
            done = event
    assert done is not None
    return {
        "train_pairs": done.train_pairs,
        "eval_pairs": done.eval_pairs,
        "eval_accuracy": round(done.eval_accuracy, 4),
        "target_eval_accuracy": 0.8,
        "eval_margin": round(done.eval_margin, 4),
        "steps": done.step,
        "seconds": round(time.perf_counter() - wall, 1),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=None, help="GRPO steps (default: RLConfig)")
    parser.add_argument("--eval-problems", type=int, default=200)
    parser.add_argument("--skip-rl", action="store_true")
    parser.add_argument("--skip-reward", action="store_true")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    import torch

    result = {
        "machine": machine().describe(),
        "cpu_flags": machine().flags_line(),
        "torch_threads": torch.get_num_threads(),
        "cpu_count": os.cpu_count(),
    }
    print(f"{result['machine']}\n{result['cpu_flags']}", file=sys.stderr)
    if not args.skip_rl:
        result["grpo"] = bench_rl(args.steps, args.eval_problems)
        print(json.dumps(result["grpo"], indent=2), file=sys.stderr)
    if not args.skip_reward:
        result["reward_model"] = bench_reward()
        print(json.dumps(result["reward_model"], indent=2), file=sys.stderr)
    print(json.dumps(result, indent=2) if args.json else json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
