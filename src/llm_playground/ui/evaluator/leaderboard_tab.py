"""Lab 5's Leaderboard tab: every recorded result, filtered and charted."""

from __future__ import annotations

import streamlit as st

from llm_playground.core.errors import UserError
from llm_playground.evaluation.leaderboard import Leaderboard
from llm_playground.ui.components import (
    show_user_error,
)

COLUMN_LABELS = {
    "token_perplexity": ("token ppl", "%.2f"),
    "word_perplexity": ("word ppl", "%.2f"),
    "bits_per_byte": ("bits/byte", "%.4f"),
    "bleu": ("BLEU", "%.2f"),
    "chrf": ("chrF", "%.2f"),
    "rouge1": ("ROUGE-1", "%.3f"),
    "rouge2": ("ROUGE-2", "%.3f"),
    "rougeL": ("ROUGE-L", "%.3f"),
    "rougeLsum": ("ROUGE-Lsum", "%.3f"),
    "judge_score": ("judge", "%.2f"),
    "judge_ci_low": ("judge CI low", "%.2f"),
    "judge_ci_high": ("judge CI high", "%.2f"),
    "human_rating": ("human rating", "%.0f"),
    "human_ci_low": ("human CI low", "%.0f"),
    "human_ci_high": ("human CI high", "%.0f"),
}
TEXT_LABELS = {
    "perplexity_data": "perplexity on",
    "bleu_data": "BLEU/chrF on",
    "rouge_data": "ROUGE on",
    "judge_n": "judged",
    "judge_data": "judged on",
    "human_votes": "votes",
}
CHART_METRICS = {
    "bits_per_byte": ("perplexity_data", "bits per byte (lower is better)"),
    "token_perplexity": ("perplexity_data", "token perplexity (lower is better)"),
    "bleu": ("bleu_data", "BLEU"),
    "chrf": ("bleu_data", "chrF"),
    "rougeL": ("rouge_data", "ROUGE-L F"),
    "judge_score": ("judge_data", "mean judge score"),
    "human_rating": ("kind", "human rating (Lab 4)"),
}


def _leaderboard_chart(df) -> None:
    import altair as alt

    available = [m for m in CHART_METRICS if m in df.columns and df[m].notna().any()]
    if not available:
        return
    metric = st.selectbox(
        "Chart", available, format_func=lambda m: CHART_METRICS[m][1], key="ev_lb_metric"
    )
    data_col, title = CHART_METRICS[metric]
    chart = (
        alt.Chart(df[df[metric].notna()])
        .mark_bar()
        .encode(
            x=alt.X(f"{metric}:Q", title=title),
            y=alt.Y("model:N", sort="x", title=None, axis=alt.Axis(labelLimit=260)),
            color=alt.Color(f"{data_col}:N", title="measured on"),
            tooltip=[
                "model",
                "kind",
                alt.Tooltip(f"{metric}:Q", format=".3f"),
                data_col,
                "updated",
            ],
        )
    )
    st.altair_chart(chart, width="stretch")


def leaderboard_tab() -> None:
    try:
        board = Leaderboard()
        datasets = sorted({r.dataset for r in board.results() if r.metric == "token_perplexity"})
        c1, c2, c3 = st.columns([2, 2, 1])
        ppl_filter = c1.selectbox(
            "Perplexity measured on",
            ["latest of each model", *datasets],
            key="ev_lb_data",
            help="Pick one data set to compare perplexities like with like.",
        )
        name_filter = c2.text_input(
            "Filter models", key="ev_lb_filter", placeholder="part of a name"
        )
        rows = board.leaderboard(
            perplexity_data=None if ppl_filter.startswith("latest") else ppl_filter
        )
        if name_filter.strip():
            rows = [r for r in rows if name_filter.strip().lower() in r["model"].lower()]
        c3.download_button(
            "Download CSV",
            board.to_csv(rows),
            file_name="leaderboard.csv",
            mime="text/csv",
            key="ev_lb_csv",
        )
    except UserError as exc:
        show_user_error(exc)
        rows = []
    if not rows:
        st.info(
            "No results yet: every evaluation on this page (and `llm-playground eval …`) adds a row."
        )
        return
    import pandas as pd

    df = pd.DataFrame(rows)
    df = df[[c for c in df.columns if c in ("model", "kind") or df[c].notna().any()]]
    num = st.column_config.NumberColumn
    config = {k: num(label, format=fmt) for k, (label, fmt) in COLUMN_LABELS.items()}
    st.dataframe(df, hide_index=True, key="ev_lb_table", column_config=config | TEXT_LABELS)
    st.caption(
        "Click a column header to sort. Every metric column has a column beside it naming "
        "the data it was measured on; perplexities on different texts do not compare."
    )
    _leaderboard_chart(df)
