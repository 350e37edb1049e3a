"""Lab 6, Head roles: previous-token, first-token and induction scores of every head, as
heatmaps and as the top heads in words."""

from __future__ import annotations

import altair as alt
import numpy as np
import pandas as pd
import streamlit as st

INTRO = (
    "Three jobs a head can do, each scored from 0 to 1 by how much attention goes where the "
    "job needs it (Olsson et al. 2022). **Previous-token** heads look at the token just "
    "before; **first-token** heads park their attention on the first token when they have "
    "nothing to do; **induction** heads, shown a random sequence twice, look at the token "
    "that followed the current one last time, which lets a model copy a pattern it has seen "
    "once. Compare SmolLM2 with your own baby GPT: did it grow any induction heads?"
)
ROLES = {
    "previous_token": "previous-token (on your prompt)",
    "first_token": "first-token (on your prompt)",
    "induction": "induction (on the probe)",
}


def scores_of(result) -> dict[str, np.ndarray]:
    """The three (layers, heads) score arrays: two on the prompt, induction on the probe."""
    return {
        "previous_token": result.prompt.head_scores["previous_token"],
        "first_token": result.prompt.head_scores["first_token"],
        "induction": result.probe.head_scores["induction"],
    }


def heatmap(scores: np.ndarray, title: str, key: str, height: int | None = None) -> None:
    """A (layers, heads) array as a heatmap, layer 0 at the top."""
    n_layers, n_heads = scores.shape
    rows = [
        {"layer": layer, "head": head, "score": float(scores[layer, head])}
        for layer in range(n_layers)
        for head in range(n_heads)
    ]
    chart = (
        alt.Chart(pd.DataFrame(rows))
        .mark_rect()
        .encode(
            x=alt.X("head:O", title="head"),
            y=alt.Y("layer:O", title="layer"),
            color=alt.Color(
                "score:Q", scale=alt.Scale(domain=[0, 1], scheme="blues"), title="score"
            ),
            tooltip=["layer", "head", alt.Tooltip("score:Q", format=".3f")],
        )
        .properties(title=title, height=height or min(520, max(120, 16 * n_layers)))
    )
    st.altair_chart(chart, width="stretch", key=key)


def top_lines(result, k: int = 3) -> list[str]:
    """The best heads of each role in words: "layer 4, head 2: induction 0.71"."""
    lines = []
    for inspection, role in (
        (result.prompt, "previous_token"),
        (result.prompt, "first_token"),
        (result.probe, "induction"),
    ):
        lines += [score.describe() for score in inspection.top_heads(role, k)]
    return lines


def render(result) -> None:
    st.markdown(INTRO)
    if result is None:
        return
    probe = result.probe.probe
    st.caption(
        f"The induction probe: {probe.n} random tokens (seed {probe.seed}), then the same "
        f"{probe.n} again"
        + (", after the beginning-of-text token" if probe.prefix else "")
        + "; a head's induction score is its mean attention, in the second copy, on the "
        "token after the current token's first occurrence."
    )
    columns = st.columns(3)
    for column, (role, scores) in zip(columns, scores_of(result).items(), strict=True):
        with column:
            heatmap(scores, ROLES[role], key=f"inside_heads_{role}")
    st.markdown("**The top heads of each role**")
    st.markdown("\n".join(f"- {line}" for line in top_lines(result)))
    best = result.probe.top_heads("induction", 1)[0]
    if best.score > 0.3:
        st.success(
            f"This model has induction heads: the strongest is layer {best.layer}, head "
            f"{best.head} ({best.score:.2f}). Knock it out in the Ablation tab and watch the "
            "loss on a repeated sentence."
        )
    else:
        st.info(
            f"No head scores above 0.3 for induction here (the best: layer {best.layer}, head "
            f"{best.head}, {best.score:.2f})."
        )
