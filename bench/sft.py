"""Lab 4 benchmark: LoRA against full fine-tuning of the offline default base on this CPU.

For the base (``gemma3-270m`` by default), in this one run and on the same batches of the
offline instruction set, each in its own process (so that peak memory is its own):

1. LoRA (r=8 on q, k, v, o; frozen float32 weights): seconds per step and tokens/s;
2. full fine-tuning of every weight (AdamW): the same figures.

Memory: the peak resident set size of each process (``ru_maxrss``), and the bytes held by
trainable weights, their gradients and the AdamW state (computed from the parameter counts).
Then, where the preference store offers it, the throughput of ``prefs add`` with 4 concurrent
writer processes (target: 1,000 votes/s, no vote lost).

The machine's other work shows in the timings: run it on an idle machine, or more than once.

Run: ``python bench/sft.py [--base NAME] [--steps N] [--batch N] [--seq-len N] [--skip-full] [--json]``.
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
import multiprocessing as mp
import os
import resource
import sys
import tempfile
import time


def _run(mode: str, base: str, steps: int, batch: int, seq_len: int, queue) -> None:
    """One training set-up in a fresh process; puts its figures on ``queue``."""
    import torch

    from llm_playground.finetuning.instructions import load_offline, split_heldout
    from llm_playground.finetuning.lora import LoRAConfig, add_adapter, count_trainable
    from llm_playground.finetuning.sft import collate, encode_all, response_loss
    from llm_playground.generation.registry import load_model

    torch.manual_seed(0)
    loaded = load_model(base, dtype=torch.float32)
    rss_loaded = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    train, _ = split_heldout(load_offline())
    enc = encode_all(loaded.tokenizer, train[: batch * (steps + 1)], seq_len)
    pad = loaded.tokenizer.pad_token_id or 0
    if mode == "lora":
        model = add_adapter(
            loaded.model,
            LoRAConfig(
                r=8, alpha=16, dropout=0.0, target_modules=("q_proj", "k_proj", "v_proj", "o_proj")
            ),
        )
    else:
        model = loaded.model
        for p in model.parameters():
            p.requires_grad_(True)
    trainable, total = count_trainable(model)
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=1e-5)
    model.train()
    times, tokens = [], []
    for i in range(steps + 1):  # the first step warms up and is not timed
        b = collate(enc[i * batch : (i + 1) * batch], pad)
        t = time.perf_counter()
        loss, n = response_loss(model, b)
        (loss / max(n, 1)).backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
        if i:
            times.append(time.perf_counter() - t)
            tokens.append(int(b["attention_mask"].sum()))
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    state_bytes = trainable * 4 * 3  # weights' gradients + AdamW's two moments, float32
    queue.put(
        {
            "mode": mode,
            "base": base,
            "trainable": trainable,
            "total": total,
            "share_percent": round(100 * trainable / total, 4),
            "steps": steps,
            "batch": batch,
            "seq_len": seq_len,
            "s_per_step": round(sum(times) / len(times), 3),
            "tokens_per_s": round(sum(tokens) / sum(times), 1),
            "peak_rss_gib": round(peak / 2**30, 3),
            "rss_after_load_gib": round(rss_loaded / 2**30, 3),
            "grad_and_adam_gib": round(state_bytes / 2**30, 3),
            "threads": torch.get_num_threads(),
        }
    )


def measure(mode: str, base: str, steps: int, batch: int, seq_len: int) -> dict:
    ctx = mp.get_context("spawn")
    queue = ctx.Queue()
    proc = ctx.Process(target=_run, args=(mode, base, steps, batch, seq_len, queue))
    proc.start()
    proc.join()
    if proc.exitcode != 0:
        return {"mode": mode, "error": f"exit code {proc.exitcode} (out of memory?)"}
    return queue.get()


def prefs_throughput() -> dict | None:
    """The vote store's concurrent-writer benchmark (bench/prefs.py)."""
    from prefs import bench_concurrent_writes  # bench/prefs.py, beside this script

    with tempfile.TemporaryDirectory() as tmp:
        return bench_concurrent_writes(
            os.path.join(tmp, "votes.sqlite"), writers=4, votes_per_writer=250
        )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--base", default="gemma3-270m")
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--seq-len", type=int, default=128)
    parser.add_argument("--skip-full", action="store_true")
    parser.add_argument("--skip-prefs", action="store_true")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    rows = [measure("lora", args.base, args.steps, args.batch, args.seq_len)]
    if not args.skip_full:
        rows.append(measure("full", args.base, args.steps, args.batch, args.seq_len))
    prefs = None if args.skip_prefs else prefs_throughput()
    if args.json:
        print(json.dumps({"sft": rows, "prefs": prefs}, indent=2))
        return 0
    print(
        f"{'mode':<6} {'trainable':>12} {'share %':>8} {'s/step':>8} {'tokens/s':>9} "
        f"{'peak RSS GiB':>13} {'grads+Adam GiB':>15}"
    )
    for r in rows:
        if "error" in r:
            print(f"{r['mode']:<6} {r['error']}")
            continue
        print(
            f"{r['mode']:<6} {r['trainable']:>12,} {r['share_percent']:>8.3f} {r['s_per_step']:>8.2f} "
            f"{r['tokens_per_s']:>9.1f} {r['peak_rss_gib']:>13.2f} {r['grad_and_adam_gib']:>15.3f}"
        )
    ok = [r for r in rows if "error" not in r]
    if len(ok) == 2:
        print(
            f"LoRA step is {ok[1]['s_per_step'] / ok[0]['s_per_step']:.2f}x faster than a full step "
            f"({args.base}, batch {args.batch}, up to {args.seq_len} tokens, {ok[0]['threads']} threads)"
        )
    if args.skip_prefs:
        print("prefs add throughput: skipped (--skip-prefs)")
    elif prefs is not None:
        print("prefs add, 4 concurrent writers:", json.dumps(prefs))
    else:
        print(
            "prefs add throughput: the preference store's benchmark is not available in this build"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
