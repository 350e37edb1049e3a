"""Lab 6, Logit lens: each layer's top guess for the next token at every position, and
the rank of the token that actually comes next, layer by layer."""

from __future__ import annotations

import altair as alt
import pandas as pd
import streamlit as st

from llm_playground.generation.decoding import shown_token
from llm_playground.ui.components import esc
from llm_playground.ui.inside.common import colour, ink, layer_name, token_labels

INTRO = (
    "The logit lens reads the model's running sum (the residual stream) after every layer "
    "as if that layer were the last: the final norm and the output head turn it into a guess "
    "for the next token. Each cell is that guess, darker when the layer is surer; the bottom "
    'row is the model\'s real prediction. Try a fact ("The Eiffel Tower is in the city of") '
    "and see at which layer the answer first appears."
)
MAX_COLUMNS = 32


def render(result) -> None:
    st.markdown(INTRO)
    if result is None:
        return
    inspection = result.prompt
    T = inspection.n_tokens
    start = 0
    if T > MAX_COLUMNS:
        start = st.slider(
            "First position shown",
            0,
            T - MAX_COLUMNS,
            T - MAX_COLUMNS,
            key="inside_lens_start",
            help=f"The grid shows {MAX_COLUMNS} positions at a time.",
        )
    st.html(grid_html(inspection, range(start, min(T, start + MAX_COLUMNS))))
    _next_token_rank(inspection)


def grid_html(inspection, positions) -> str:
    """Rows: lens entries (embeddings at the top, the output at the bottom); columns: positions."""
    n = inspection.n_layers
    header = "".join(
        f"<th title='position {i}'>{esc(shown_token(inspection.tokens[i]))}</th>" for i in positions
    )
    rows = [f"<tr><th class='lens-row'>input token →</th>{header}</tr>"]
    for entry in range(n + 1):
        cells = []
        for i in positions:
            guesses = inspection.lens_top(entry, i)
            _, text, p = guesses[0]
            hover = " · ".join(f"{shown_token(t)} {q:.2f}" for _, t, q in guesses)
            cells.append(
                f"<td style='background:{colour(p)};color:{ink(p)}' title='{esc(hover)}'>"
                f"{esc(shown_token(text))}</td>"
            )
        rows.append(
            f"<tr><th class='lens-row'>{esc(layer_name(entry, n))}</th>{''.join(cells)}</tr>"
        )
    actual = "".join(
        f"<td class='lens-actual'>{esc(shown_token(inspection.tokens[i + 1]))}</td>"
        if i + 1 < inspection.n_tokens
        else "<td class='lens-actual'>?</td>"
        for i in positions
    )
    rows.append(f"<tr><th class='lens-row'>actual next token</th>{actual}</tr>")
    return (
        "<style>.lens-grid td,.lens-grid th{border:1px solid #e3e3e3;padding:2px 4px;"
        "font-family:monospace;font-size:0.8em;text-align:center;white-space:pre;max-width:7em;"
        "overflow:hidden}.lens-grid .lens-row{text-align:right;font-family:sans-serif;"
        "color:#555;font-weight:normal;max-width:none}.lens-grid .lens-actual{font-weight:bold;"
        "background:#fff6e0}</style><div style='overflow-x:auto'><table class='lens-grid'>"
        + "".join(rows)
        + "</table></div>"
    )


def _next_token_rank(inspection) -> None:
    """For one position: the rank of the actual next token at every lens entry."""
    T = inspection.n_tokens
    if T < 2:
        return
    labels = token_labels(inspection.tokens)
    position = st.select_slider(
        "Position",
        options=list(range(T - 1)),
        value=T - 2,
        key="inside_lens_position",
        format_func=lambda i: f"{labels[i]} → {shown_token(inspection.tokens[i + 1])}",
        help="The token after this position is the one whose rank is drawn.",
    )
    n = inspection.n_layers
    rows = [
        {
            "entry": entry,
            "layer": layer_name(entry, n),
            "rank": int(inspection.next_rank[entry, position]) + 1,
            "probability": float(inspection.next_prob[entry, position]),
        }
        for entry in range(n + 1)
    ]
    target = shown_token(inspection.tokens[position + 1])
    st.markdown(
        f"**Where the actual next token <code>{esc(target)}</code> ranks, layer by layer** "
        "(1 = the top guess; a log scale)",
        unsafe_allow_html=True,
    )
    chart = (
        alt.Chart(pd.DataFrame(rows))
        .mark_line(point=True)
        .encode(
            x=alt.X("entry:O", title="lens entry (0 = embeddings, last = output)"),
            y=alt.Y("rank:Q", scale=alt.Scale(type="log", reverse=True), title="rank"),
            tooltip=["layer", "rank", alt.Tooltip("probability:Q", format=".3f")],
        )
        .properties(height=260)
    )
    st.altair_chart(chart, width="stretch", key="inside_lens_rank")
    st.dataframe(pd.DataFrame(rows), hide_index=True, key="inside_lens_rank_table")
