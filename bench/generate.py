"""Lab 3 benchmark on SmolLM2-135M-Instruct, every figure a ratio measured in this one run.

1. exact greedy: the project's loop (static KV cache, own Llama forward, weights laid
   out and one-row products split across threads as the hardware probes decide) against
   ``transformers`` ``generate`` on the same prompt, 128 new tokens, at 1 and 2 threads
   (target: >= 1.5x tokens/s, identical tokens);
2. prompt lookup on an input-grounded prompt (repeat a paragraph with one word changed)
   against plain greedy (target: >= 2x, identical tokens), and on a looser rewrite prompt
   that the model answers with a paraphrase (fewer drafts survive; no target);
3. the per-token overhead of attribution (the sampler chain with top-10 candidates and
   what each stage did to them) against the same chain without it (target: <= 1.3x);
4. int8 weight-only against fp32: speed-up, and WikiText-2 perplexity of both;
   precision ``auto`` (a few decoding steps timed in fp32 and bf16, the faster kept) beside
   greedy decoding in fp32 (the own loop) and in bf16 (bfloat16 weights, the general
   runner), so a wrong choice shows at once;
5. the machine's memory bandwidth, and tokens/s against the bandwidth limit (bytes of
   weights read per token);
6. the KV cache against recomputing the whole prefix at every step.

Timings take the best of a few repeats, their runs interleaved so that a change in the
machine's load affects them alike. The CPU flags that matter are printed first. Every
precision decision is measured in this run (a fresh playground home: no machine cache).

Run: ``python bench/generate.py [--quick] [--tokens N] [--repeats N] [--json]``.
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
import sys
import tempfile
import time

import torch

from llm_playground.core.hardware import cpu_flags, probe_cpu_layout, probe_cpu_split
from llm_playground.generation.decoding import DecodingConfig, generate, prepare
from llm_playground.generation.registry import load_model
from llm_playground.generation.runner import (
    at_precision,
    memory_bandwidth,
    weight_bytes_per_token,
)

PROMPT = (
    "The history of the printing press begins in the fifteenth century, when Johannes "
    "Gutenberg, a goldsmith from Mainz,"
)
PARAGRAPH = (
    "The old lighthouse stood on the rocky cliff above the harbour. Every night its keeper "
    "climbed the spiral stairs, lit the great lamp and watched the ships pass safely through "
    "the narrow channel. In winter the storms were fierce and the waves broke over the rocks, "
    "but the light never failed, and the fishermen of the village trusted it with their lives."
)
# The input-grounded prompt of the target: the answer copies the paragraph. SmolLM2-135M
# repeats it (without making the change), as small models do.
REWRITE = "Repeat this paragraph exactly, but with 'old' replaced by 'ancient':\n\n" + PARAGRAPH
# Also reported: a looser instruction that SmolLM2-135M answers with a paraphrase, where
# fewer drafts survive.
PARAPHRASE = (
    "Rewrite this paragraph with the word 'old' changed to 'ancient', keeping everything "
    "else the same:\n\n" + PARAGRAPH
)


def best_of(repeats: int, *fns):
    """Best time of each function and its last output, the runs interleaved."""
    best = [float("inf")] * len(fns)
    outs: list = [None] * len(fns)
    for _ in range(repeats):
        for i, fn in enumerate(fns):
            start = time.perf_counter()
            outs[i] = fn()
            best[i] = min(best[i], time.perf_counter() - start)
    return list(zip(best, outs, strict=True))


def greedy_against_transformers(loaded, stock, tokens: int, repeats: int, threads: int) -> dict:
    """``stock``: the same model loaded separately and left exactly as ``transformers``
    loads it (the own loop may store ``loaded``'s weights in another layout)."""
    torch.set_num_threads(threads)
    config = DecodingConfig("greedy", max_new_tokens=tokens)
    ids = torch.tensor([prepare(loaded, PROMPT, config, chat_template=False)])
    mask = torch.ones_like(ids)

    def hf():
        with torch.inference_mode():
            return stock.model.generate(
                ids,
                attention_mask=mask,
                max_new_tokens=tokens,
                min_new_tokens=tokens,
                do_sample=False,
            )

    def ours():
        return generate(loaded, PROMPT, config, chat_template=False)

    hf(), ours()  # warm-up
    (t_hf, hf_out), (t_ours, ours_out) = best_of(repeats, hf, ours)
    hf_ids = hf_out[0, ids.shape[1] :].tolist()
    return {
        "threads": threads,
        "new_tokens": len(ours_out.ids),
        "hf_tokens_per_s": len(hf_ids) / t_hf,
        "own_tokens_per_s": len(ours_out.ids) / t_ours,
        "speedup": (len(ours_out.ids) / t_ours) / (len(hf_ids) / t_hf),
        "same_tokens": hf_ids[: len(ours_out.ids)] == ours_out.ids,
    }


def prompt_lookup(loaded, tokens: int, repeats: int, prompt: str = REWRITE) -> dict:
    plain = DecodingConfig("greedy", max_new_tokens=tokens)
    lookup = DecodingConfig("greedy", max_new_tokens=tokens, speculative="prompt-lookup")
    (t_plain, plain_out), (t_lookup, lookup_out) = best_of(
        repeats, lambda: generate(loaded, prompt, plain), lambda: generate(loaded, prompt, lookup)
    )
    return {
        "new_tokens": plain_out.new_tokens,
        "speedup": t_plain / t_lookup * lookup_out.new_tokens / max(plain_out.new_tokens, 1),
        "same_tokens": plain_out.ids == lookup_out.ids,
        "forward_passes": lookup_out.forward_passes,
        "accepted_draft_tokens": lookup_out.accepted_draft_tokens,
        "tokens_per_pass": lookup_out.tokens_per_pass,
    }


def attribution_overhead(loaded, tokens: int, repeats: int, candidates: int) -> dict:
    config = DecodingConfig(
        "sample", temperature=0.8, top_k=40, top_p=0.95, min_p=0.05, max_new_tokens=tokens
    )
    (t_plain, plain), (t_attr, attributed) = best_of(
        repeats,
        lambda: generate(loaded, PROMPT, config, chat_template=False),
        lambda: generate(loaded, PROMPT, config, chat_template=False, candidates=candidates),
    )
    per_token = (t_attr / attributed.new_tokens) / (t_plain / plain.new_tokens)
    return {
        "candidates": candidates,
        "per_token_ratio": per_token,
        "same_tokens": plain.ids == attributed.ids,
    }


def int8_trade(loaded, tokens: int, repeats: int, ppl_tokens: int) -> dict:
    from llm_playground.evaluation.metrics import load_eval_text, perplexity

    quantized = at_precision(loaded, "int8")
    config = DecodingConfig("greedy", max_new_tokens=tokens)
    (t_fp32, fp32_out), (t_int8, int8_out) = best_of(
        repeats,
        lambda: generate(loaded, PROMPT, config, chat_template=False),
        lambda: generate(quantized, PROMPT, config, chat_template=False),
    )
    text = load_eval_text("wikitext-2").text
    ppl = {}
    for name, model in (("fp32", loaded), ("int8", quantized)):
        result = perplexity(model, text, max_tokens=ppl_tokens, max_length=512, dtype="float32")
        ppl[name] = result.token_perplexity
    return {
        "fp32_tokens_per_s": fp32_out.new_tokens / t_fp32,
        "int8_tokens_per_s": int8_out.new_tokens / t_int8,
        "speedup": (int8_out.new_tokens / t_int8) / (fp32_out.new_tokens / t_fp32),
        "same_tokens_as_fp32": sum(
            a == b for a, b in zip(fp32_out.ids, int8_out.ids, strict=False)
        ),
        "wikitext2_tokens": ppl_tokens,
        "fp32_perplexity": ppl["fp32"],
        "int8_perplexity": ppl["int8"],
        "perplexity_change": ppl["int8"] / ppl["fp32"] - 1,
        "fp32_bytes_per_token": weight_bytes_per_token(loaded.model),
        "int8_bytes_per_token": weight_bytes_per_token(quantized.model),
        "quantized": quantized,
    }


def precision_trade(loaded, tokens: int, repeats: int) -> dict:
    """``auto``'s decision for decoding, and greedy tokens/s in fp32, bf16 and auto."""
    from llm_playground.core import hardware
    from llm_playground.generation.runner import decoding_precision

    hardware.clear_precision_decisions()
    start = time.perf_counter()
    choice = decoding_precision(loaded)
    deciding_s = time.perf_counter() - start
    bf16 = at_precision(loaded, "bf16")
    auto = at_precision(loaded, "auto")  # the decision above, kept for the process
    config = DecodingConfig("greedy", max_new_tokens=tokens)
    generate(bf16, PROMPT, config, chat_template=False)  # warm-up
    runs = best_of(
        repeats,
        lambda: generate(loaded, PROMPT, config, chat_template=False),
        lambda: generate(bf16, PROMPT, config, chat_template=False),
        lambda: generate(auto, PROMPT, config, chat_template=False),
    )
    speed = {
        name: out.new_tokens / seconds
        for name, (seconds, out) in zip(("fp32", "bf16", "auto"), runs, strict=True)
    }
    return {
        "auto": choice.to_dict(),
        "auto_summary": choice.summary(),
        "deciding_s": deciding_s,
        "tokens_per_s": speed,
        "auto_over_faster": speed["auto"] / max(speed["fp32"], speed["bf16"]),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer tokens and repeats")
    parser.add_argument("--tokens", type=int, default=None, help="new tokens (default 128)")
    parser.add_argument("--repeats", type=int, default=None)
    parser.add_argument("--candidates", type=int, default=10)
    parser.add_argument("--ppl-tokens", type=int, default=None, help="WikiText-2 tokens scored")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    os.environ["LLM_PLAYGROUND_HOME"] = tempfile.mkdtemp(prefix="bench-generate-")
    tokens = args.tokens or (32 if args.quick else 128)
    repeats = args.repeats or (1 if args.quick else 3)
    ppl_tokens = args.ppl_tokens or (2048 if args.quick else 16384)

    loaded = load_model("smollm2-135m-instruct")
    stock = load_model("smollm2-135m-instruct")
    layout = probe_cpu_layout()
    report: dict = {
        "model": "smollm2-135m-instruct",
        "cpu_flags": cpu_flags(),
        "tokens": tokens,
        "input_major_probe_speedup": layout.speedup,
        "input_major_weights": layout.faster,
    }
    report["greedy"] = [
        greedy_against_transformers(loaded, stock, tokens, repeats, threads) for threads in (1, 2)
    ]
    del stock
    torch.set_num_threads(2)
    split = probe_cpu_split(2)  # measured when the 2-thread runner was built
    report["split_probe_speedup_2_threads"] = split.speedup
    report["split_products_2_threads"] = split.faster
    report["prompt_lookup"] = prompt_lookup(loaded, tokens, repeats)
    report["prompt_lookup_paraphrase"] = prompt_lookup(loaded, tokens, repeats, PARAPHRASE)
    report["attribution"] = attribution_overhead(loaded, tokens, repeats, args.candidates)
    int8 = int8_trade(loaded, tokens, repeats, ppl_tokens)
    int8.pop("quantized")
    report["int8"] = int8
    report["precision"] = precision_trade(loaded, tokens, repeats)
    bandwidth = memory_bandwidth()
    report["memory_bandwidth_gb_s"] = bandwidth / 1e9
    report["fp32_limit_tokens_per_s"] = bandwidth / int8["fp32_bytes_per_token"]
    report["int8_limit_tokens_per_s"] = bandwidth / int8["int8_bytes_per_token"]
    cache = DecodingConfig("greedy", max_new_tokens=tokens)
    (t_kv, kv), (t_re, re_) = best_of(
        1,
        lambda: generate(loaded, PROMPT, cache, chat_template=False),
        lambda: generate(loaded, PROMPT, cache, chat_template=False, use_cache=False),
    )
    report["kv_cache_speedup"] = t_re / t_kv
    report["kv_cache_same_tokens"] = kv.ids == re_.ids
    if args.json:
        print(json.dumps(report, indent=2))
        return 0
    flags = ", ".join(f"{k} {'yes' if v else 'no'}" for k, v in report["cpu_flags"].items())
    print(f"SmolLM2-135M-Instruct, {tokens} new tokens, best of {repeats}; CPU flags: {flags}")
    print(
        f"layout probe: one-row products {report['input_major_probe_speedup']:.2f}x faster "
        f"with weights stored [in, out] -> "
        f"{'input-major' if report['input_major_weights'] else 'nn.Linear'} layout"
    )
    print(
        f"split probe: one-row products {report['split_probe_speedup_2_threads']:.2f}x faster "
        f"cut into 2 slices run as one batched product -> "
        f"{'split across threads' if report['split_products_2_threads'] else 'whole'} at 2 threads"
    )
    for row in report["greedy"]:
        print(
            f"greedy, {row['threads']} thread(s): transformers {row['hf_tokens_per_s']:6.1f} "
            f"tokens/s, own loop {row['own_tokens_per_s']:6.1f} tokens/s, "
            f"{row['speedup']:.2f}x (target >= 1.5x), identical tokens: {row['same_tokens']}"
        )
    for key, what, target in (
        ("prompt_lookup", "a repeat-with-one-change prompt", " (target >= 2x)"),
        ("prompt_lookup_paraphrase", "a prompt answered by a paraphrase", ""),
    ):
        lookup = report[key]
        print(
            f"prompt lookup on {what}: {lookup['speedup']:.2f}x plain greedy{target}, "
            f"identical tokens: {lookup['same_tokens']}, {lookup['new_tokens']} new tokens, "
            f"{lookup['tokens_per_pass']:.2f} tokens per forward pass, "
            f"{lookup['accepted_draft_tokens']} drafts accepted"
        )
    attribution = report["attribution"]
    print(
        f"attribution with top-{attribution['candidates']} candidates: "
        f"{attribution['per_token_ratio']:.2f}x per token (target <= 1.3x)"
    )
    print(
        f"int8 weight-only: {int8['speedup']:.2f}x fp32 tokens/s "
        f"({int8['int8_tokens_per_s']:.1f} vs {int8['fp32_tokens_per_s']:.1f}); WikiText-2 "
        f"perplexity over {ppl_tokens} tokens {int8['fp32_perplexity']:.2f} -> "
        f"{int8['int8_perplexity']:.2f} ({100 * int8['perplexity_change']:+.1f}%)"
    )
    trade = report["precision"]
    speed = trade["tokens_per_s"]
    print(
        f"precision auto: {trade['auto_summary']} (deciding took {trade['deciding_s']:.1f} s); "
        f"greedy fp32 {speed['fp32']:.1f}, bf16 {speed['bf16']:.1f}, auto {speed['auto']:.1f} "
        f"tokens/s: auto at {trade['auto_over_faster']:.2f}x the faster precision's speed"
    )
    print(
        f"memory bandwidth {report['memory_bandwidth_gb_s']:.1f} GB/s: weights per token "
        f"{int8['fp32_bytes_per_token'] / 1e6:.0f} MB fp32 -> limit "
        f"{report['fp32_limit_tokens_per_s']:.1f} tokens/s (own loop at 2 threads: "
        f"{report['greedy'][1]['own_tokens_per_s']:.1f}); "
        f"{int8['int8_bytes_per_token'] / 1e6:.0f} MB int8 -> limit "
        f"{report['int8_limit_tokens_per_s']:.1f} tokens/s"
    )
    print(
        f"KV cache vs recomputing the prefix: {report['kv_cache_speedup']:.2f}x "
        f"(identical tokens: {report['kv_cache_same_tokens']})"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
