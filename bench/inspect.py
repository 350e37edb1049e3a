"""Lab 6 benchmark on SmolLM2-135M-Instruct: what looking inside costs, as ratios
measured in this one run.

1. ``inspect`` on a 64-token prompt (every layer's and head's attention through eager
   attention, the residual stream, the logit lens with its top 5 and the next token's
   rank at every layer and position, the head scores) against its floor: one plain forward
   pass (the model's own attention implementation) plus the lens products (the final norm
   and the output head on the residual stream after every block, as one product).
   Target: at most 2x.
2. The whole call the page makes for its grids (``encode_prompt`` + ``inspect``) in
   seconds (target: within 2 s on 2 cores), and the induction probe at N = 64.

Timings take the best of a few repeats, their runs interleaved so that a change in the
machine's load affects them alike; the CPU time of this process is printed beside the
wall-clock time, since it barely moves with other programs' load. The CPU flags that
matter are printed first.

Run: ``python bench/inspect.py [--repeats N] [--tokens T] [--json]``.
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
import time

import torch

from llm_playground.core.hardware import machine
from llm_playground.inspection import (
    encode_prompt,
    induction_probe,
    inspect,
    open_model,
)
from llm_playground.inspection.capture import capture, final_logits, parts_of

TEXT = (
    "The history of the printing press begins in the fifteenth century, when Johannes "
    "Gutenberg, a goldsmith from Mainz, combined movable metal type, an oil-based ink and a "
    "wooden press adapted from those used to make wine. Within fifty years presses were "
    "running in more than two hundred cities across Europe, and the price of books fell."
)


def best_of(repeats: int, *fns):
    """Best wall-clock time and best CPU time (this process, all threads) of each
    function, the runs interleaved."""
    wall = [float("inf")] * len(fns)
    cpu = [float("inf")] * len(fns)
    for _ in range(repeats):
        for i, fn in enumerate(fns):
            start, start_cpu = time.perf_counter(), time.process_time()
            fn()
            wall[i] = min(wall[i], time.perf_counter() - start)
            cpu[i] = min(cpu[i], time.process_time() - start_cpu)
    return wall, cpu


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--tokens", type=int, default=64)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()

    hardware = machine()
    print(hardware.flags_line())
    print(f"torch threads: {torch.get_num_threads()}")
    model = open_model("smollm2-135m-instruct")
    ids = encode_prompt(model, TEXT, chat_template=False)[: args.tokens]
    assert len(ids) == args.tokens, f"the text is only {len(ids)} tokens"
    parts = parts_of(model)
    residual = capture(model, ids).residual  # (L + 1, T, d), for the lens products alone

    def plain_forward_and_lens_products():
        final_logits(model, ids)  # one plain forward pass
        with torch.inference_mode():  # the lens products: ((L + 1) * T, d) x (d, vocab)
            parts.head(parts.norm(residual.reshape(-1, residual.shape[-1])))

    def page_call():
        inspect(model, encode_prompt(model, TEXT, chat_template=False)[: args.tokens])

    (baseline, inspected, probe), (baseline_cpu, inspected_cpu, _) = best_of(
        args.repeats,
        plain_forward_and_lens_products,
        page_call,
        lambda: induction_probe(model, 64, seed=0),
    )
    ratio = inspected / baseline
    figures = {
        "model": model.label,
        "tokens": len(ids),
        "layers": model.n_layers,
        "heads": model.n_heads,
        "plain_forward_plus_lens_s": round(baseline, 4),
        "inspect_s": round(inspected, 4),
        "ratio": round(ratio, 3),
        "target_ratio": 2.0,
        "cpu_ratio": round(inspected_cpu / baseline_cpu, 3),
        "inspect_cpu_s": round(inspected_cpu, 4),
        "threads": torch.get_num_threads(),
        "induction_probe_64_s": round(probe, 4),
        "page_target_s": 2.0,
        "cpu": hardware.flags_line(),
    }
    if args.json:
        print(json.dumps(figures))
        return
    print(f"{model.label}: {len(ids)} tokens, {model.n_layers} layers x {model.n_heads} heads")
    print(f"plain forward + lens products: {baseline:.3f} s")
    print(
        f"inspect (attention, residual, lens top-5 and ranks, head scores): {inspected:.3f} s "
        f"= {ratio:.2f}x the floor (target <= 2x)"
    )
    print(
        f"CPU time (all threads; other programs' load does not count): inspect "
        f"{inspected_cpu:.3f} s, {inspected_cpu / baseline_cpu:.2f}x the floor's"
    )
    print(
        f"the page's call for its grids: {inspected:.3f} s (target <= 2 s on 2 cores; on a "
        f"quiet machine about its CPU time / {torch.get_num_threads()} threads = "
        f"{inspected_cpu / torch.get_num_threads():.3f} s)"
    )
    print(f"induction probe, N = 64 (128 tokens): {probe:.3f} s")


if __name__ == "__main__":
    main()
