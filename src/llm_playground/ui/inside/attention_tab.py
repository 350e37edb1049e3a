"""Lab 6, Attention: every head's map, one map large with the tokens on both axes, and one
query token's attention drawn over the text."""

from __future__ import annotations

import altair as alt
import pandas as pd
import streamlit as st

from llm_playground.generation.decoding import shown_token
from llm_playground.ui.inside.common import attention_grid_html, text_heat_html, token_labels

INTRO = (
    "Each small square is one attention head: row *i* is the token at position *i* looking "
    "back at the tokens before it (column *j*), darker meaning more attention; nothing lies "
    "above the diagonal because a token cannot see the future. Look for heads with a dark "
    "line just below the diagonal (they read the previous token), heads with a dark first "
    "column (they park their attention on the first token), and, in a repeated sentence, "
    "heads that look at the token *after* the earlier copy of the current one."
)


def render(result) -> None:
    st.markdown(INTRO)
    if result is None:
        return
    inspection = result.prompt
    attention = inspection.attention  # (layers, heads, T, T)
    n_layers, n_heads = attention.shape[:2]
    st.markdown(f"**Every head** ({n_layers} layers × {n_heads} heads; hover a map for its name)")
    st.html(attention_grid_html(attention))
    c1, c2 = st.columns(2)
    layer = c1.number_input("Layer", 0, n_layers - 1, 0, key="inside_attn_layer")
    head = c2.number_input("Head", 0, n_heads - 1, 0, key="inside_attn_head")
    weights = attention[int(layer), int(head)]
    labels = token_labels(inspection.tokens)
    _large_map(weights, labels, int(layer), int(head))
    _query_over_text(inspection.tokens, weights, labels, int(layer), int(head))


def _large_map(weights, labels: list[str], layer: int, head: int) -> None:
    """One head's map with the tokens on both axes (query down, key across)."""
    T = len(labels)
    rows = [
        {"query": labels[i], "key": labels[j], "weight": float(weights[i, j])}
        for i in range(T)
        for j in range(i + 1)
    ]
    cell = max(8, min(36, 560 // T))  # pixels per token: the map stays within ~560 px
    chart = (
        alt.Chart(pd.DataFrame(rows))
        .mark_rect()
        .encode(
            x=alt.X(
                "key:N",
                sort=labels,
                title="key: the token looked at",
                axis=alt.Axis(labelAngle=-60),
            ),
            y=alt.Y("query:N", sort=labels, title="query: the token looking"),
            color=alt.Color(
                "weight:Q", scale=alt.Scale(domain=[0, 1], scheme="blues"), title="attention"
            ),
            tooltip=["query", "key", alt.Tooltip("weight:Q", format=".3f")],
        )
        .properties(
            width=alt.Step(cell), height=alt.Step(cell), title=f"layer {layer}, head {head}"
        )
    )
    st.altair_chart(chart, width="content", key="inside_attn_chart")


def _query_over_text(tokens: list[str], weights, labels: list[str], layer: int, head: int) -> None:
    """Where one token looks, as the text with each token shaded by its weight."""
    T = len(tokens)
    query = st.select_slider(
        "Query token",
        options=list(range(T)),
        value=T - 1,
        key="inside_attn_query",
        format_func=lambda i: labels[i],
        help="The token whose attention is drawn over the text below.",
    )
    top = sorted(range(query + 1), key=lambda j: -weights[query, j])[:3]
    st.caption(
        f"Layer {layer}, head {head}: token {query} ({shown_token(tokens[query])}) looks most at "
        + ", ".join(f"{j} ({shown_token(tokens[j])}) {weights[query, j]:.2f}" for j in top)
    )
    row = weights[query].copy()
    row[query + 1 :] = 0.0
    st.html(text_heat_html(tokens, row, query))
