"""Lab 5 benchmark: perplexity throughput (scored tokens/s) on WikiText-2 with SmolLM2-135M.

For strides 512 and 1024 (max length 1024), in this one run:

1. the plain loop of the transformers perplexity guide: one window per forward pass,
   full logits of every position, the loss through ``labels``, float32;
2. the library (:func:`llm_playground.evaluation.metrics.perplexity`): windows of the same shape
   batched, logits only for the scored positions, no gradients, bfloat16 autocast where
   this CPU runs it faster (measured), and float32 batched as a control.

Target: the library at least 2x the plain loop. Both paths score the same tokens; their
perplexities are printed side by side (float32 agrees to rounding; bfloat16 to ~1 %).

Run: ``python bench/eval.py [--max-tokens N] [--threads N] [--json]``.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time

import torch


def plain_loop(loaded, ids: list[int], max_length: int, stride: int) -> tuple[float, int, float]:
    """The guide's loop, one window at a time; returns (nll_sum, n_tokens, seconds)."""
    enc = torch.tensor([ids])
    seq_len = enc.size(1)
    nll_sum, n_tokens, prev_end = 0.0, 0, 0
    t0 = time.perf_counter()
    for begin in range(0, seq_len, stride):
        end = min(begin + max_length, seq_len)
        trg_len = end - prev_end
        input_ids = enc[:, begin:end]
        target_ids = input_ids.clone()
        target_ids[:, :-trg_len] = -100
        with torch.no_grad():
            loss = loaded.model(input_ids, labels=target_ids).loss
        n_valid = int((target_ids[:, 1:] != -100).sum())
        nll_sum += loss.item() * n_valid
        n_tokens += n_valid
        prev_end = end
        if end == seq_len:
            break
    return nll_sum, n_tokens, time.perf_counter() - t0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--max-tokens", type=int, default=8192, help="tokens of WikiText-2 to score (default 8192)"
    )
    parser.add_argument(
        "--threads", type=int, default=None, help="torch threads (default: torch's choice)"
    )
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)

    from llm_playground.evaluation import metrics
    from llm_playground.generation.registry import load_model

    if args.threads:
        torch.set_num_threads(args.threads)
    loaded = load_model("smollm2-135m-instruct")
    text = metrics.load_eval_text("wikitext-2").text
    ids = loaded.tokenizer(text[: args.max_tokens * 8], verbose=False)["input_ids"][
        : args.max_tokens
    ]
    bf16 = metrics.bf16_is_faster()
    rows = []
    # Warm-up: one small forward pass of each kind.
    metrics.perplexity(loaded, text[:2000], stride=128, max_length=256, dtype="auto")
    for stride in (512, 1024):
        nll, n, secs = plain_loop(loaded, ids, 1024, stride)
        row = {
            "stride": stride,
            "max_length": 1024,
            "tokens": n,
            "plain_tokens_per_s": n / secs,
            "plain_ppl": math.exp(nll / n),
        }
        for dtype in ("float32", "auto"):
            r = metrics.perplexity(
                loaded,
                text[: args.max_tokens * 8],
                stride=stride,
                max_length=1024,
                max_tokens=args.max_tokens,
                batch_size=args.batch_size,
                dtype=dtype,
            )
            assert r.n_tokens == n, (r.n_tokens, n)
            key = "batched_fp32" if dtype == "float32" else "library"
            row[f"{key}_tokens_per_s"] = r.tokens_per_s
            row[f"{key}_ppl"] = r.token_perplexity
            row[f"{key}_dtype"] = r.dtype
        row["speedup"] = row["library_tokens_per_s"] / row["plain_tokens_per_s"]
        row["speedup_fp32"] = row["batched_fp32_tokens_per_s"] / row["plain_tokens_per_s"]
        rows.append(row)
    info = {
        "threads": torch.get_num_threads(),
        "cpu": torch.backends.cpu.get_cpu_capability(),
        "bf16_faster": bf16,
        "rows": rows,
    }
    if args.json:
        print(json.dumps(info, indent=2))
        return 0
    print(
        f"SmolLM2-135M on WikiText-2 (first {args.max_tokens} tokens), {info['threads']} threads, "
        f"{info['cpu']}, bf16 faster here: {bf16}"
    )
    for r in rows:
        print(
            f"stride {r['stride']:>4}: plain {r['plain_tokens_per_s']:7.1f} tok/s (ppl {r['plain_ppl']:.3f}) | "
            f"batched fp32 {r['batched_fp32_tokens_per_s']:7.1f} tok/s ({r['speedup_fp32']:.2f}x, "
            f"ppl {r['batched_fp32_ppl']:.3f}) | library {r['library_dtype']} "
            f"{r['library_tokens_per_s']:7.1f} tok/s ({r['speedup']:.2f}x, ppl {r['library_ppl']:.3f})"
        )
    ok = all(r["speedup"] >= 2 for r in rows)
    print("target >= 2x:", "met" if ok else "not met")
    return 0


if __name__ == "__main__":
    sys.exit(main())
