"""Lab 5 · Evaluator: perplexity, BLEU/chrF/ROUGE, an LLM judge, benchmarks and the leaderboard.

The page lays out the five tabs; each tab is a module of :mod:`llm_playground.ui.evaluator`.
"""

from __future__ import annotations

import streamlit as st

from llm_playground.ui.components import page_header
from llm_playground.ui.evaluator.benchmarks_tab import benchmarks_tab
from llm_playground.ui.evaluator.judge_tab import judge_tab
from llm_playground.ui.evaluator.leaderboard_tab import leaderboard_tab
from llm_playground.ui.evaluator.overlap_tab import overlap_tab
from llm_playground.ui.evaluator.perplexity_tab import perplexity_tab


def main() -> None:
    page_header(
        "📏 Lab 5 · Evaluator",
        "Measure models with the numbers the field uses — perplexity, BLEU, chrF, ROUGE, an "
        "LLM judge and the standard benchmarks — learn what each one means and where it "
        "misleads, and see every model on one leaderboard where no number is shown without "
        "what it was measured on.",
    )
    tabs = st.tabs(
        ["Perplexity", "BLEU / chrF / ROUGE", "LLM judge", "Benchmarks", "Leaderboard"],
        key="ev_tabs",
    )
    for tab, draw in zip(
        tabs,
        (perplexity_tab, overlap_tab, judge_tab, benchmarks_tab, leaderboard_tab),
        strict=True,
    ):
        with tab:
            draw()


main()
