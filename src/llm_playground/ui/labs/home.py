"""Home page: what the playground is and what each lab teaches."""

from pathlib import Path

import streamlit as st

HERE = Path(__file__).resolve().parent

st.title("🧪 LLM Playground")
st.markdown(
    "A hands-on workbench for seeing how large language models work — from raw text to "
    "tokens, from random weights to Shakespeare, from logits to words, from a base model to "
    "an assistant, and from outputs to numbers. Everything here runs on your machine, "
    "offline, on models and data that the playground installs itself."
)


def lab_cards() -> list[tuple[str, str, str]]:
    """(title, page, what the lab teaches) for each lab, in order."""
    return [
        (
            "🔤 Lab 1 · Tokenizer",
            "tokenizer",
            "Type text and watch it become token ids. Compare GPT-2, cl100k, o200k, a character "
            "tokenizer and SmolLM2's side by side, see what HTML stripping and whitespace "
            "normalisation change, and train a BPE tokenizer of your own, merge by merge.",
        ),
        (
            "🏋️ Lab 2 · Training ground",
            "training",
            "Train a bigram model or a baby GPT on TinyShakespeare live: a loss chart and samples "
            "that turn from noise into verse. Then race nanoGPT's recipe against today's speedrun "
            "(Muon, rotary positions, QK-norm...) and see what each trick buys.",
        ),
        (
            "🎲 Lab 3 · Generation",
            "generation",
            "Greedy, beam search and today's sampler chain (min-p, top-nσ, DRY, XTC...), step by "
            "step: which stage cut each candidate, which token wins, and speculative decoding.",
        ),
        (
            "🎛️ Lab 4 · Fine-tuner",
            "finetuner",
            "A pretrained base model beside the same model with a LoRA instruction adapter; then "
            "vote on pairs of answers and train the next model with DPO, or a reward model for "
            "best-of-n; then watch reinforcement learning (GRPO) teach it arithmetic, group by group.",
        ),
        (
            "📏 Lab 5 · Evaluator",
            "evaluator",
            "Perplexity (per token, per word, bits per byte), BLEU, chrF and ROUGE, an LLM judge "
            "that scores 1–10, standard benchmarks through lm-evaluation-harness, and a "
            "leaderboard of every model you have built.",
        ),
        (
            "🔬 Lab 6 · Inside the model",
            "inside",
            "Open a model up: what each attention head looks at, what every layer would predict "
            "(the logit lens), which heads copy patterns (induction heads), what breaks when one "
            "is knocked out, and how your own baby GPT's heads formed while it trained.",
        ),
    ]


def show_cards(per_row: int = 3) -> None:
    """The lab cards, ``per_row`` to a row, each with a link to its page."""
    cards = lab_cards()
    for first in range(0, len(cards), per_row):
        row = cards[first : first + per_row]
        for col, (title, url, text) in zip(st.columns(per_row), row, strict=False):
            with col, st.container(border=True):
                st.markdown(f"#### {title}")
                st.write(text)
                if (HERE / f"{url}.py").exists():
                    st.page_link(f"labs/{url}.py", label="Open the lab", icon="➡️")


show_cards()
