"""Lab 6, Head roles: previous-token, first-token and induction scores of every head, as
heatmaps and as the top heads in words."""

from __future__ import annotations

import altair as alt
import numpy as np
import pandas as pd
import streamlit as st

from llm_playground.inspection.runs import Probed, probe_run
from llm_playground.ui.components import current_job, job_panel, start_job
from llm_playground.ui.inside.common import PROBE_SLOT

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


def scores_of(prompt, probe) -> dict[str, np.ndarray]:
    """The (layers, heads) score arrays: two on the prompt, induction on the probe (if run)."""
    scores = {
        "previous_token": prompt.head_scores["previous_token"],
        "first_token": prompt.head_scores["first_token"],
    }
    if probe is not None:
        scores["induction"] = probe.head_scores["induction"]
    return scores


def start_probe(name: str, model) -> None:
    """Start the induction probe on ``model`` (after the prompt's job, or from the button)."""
    start_job(
        PROBE_SLOT,
        f"induction probe on {model.label}",
        probe_run(model),
        heavy=False,
        params={"model": name, "step": model.step},
    )


def ensure_probe(name: str, model) -> None:
    """Start the probe unless this model's has run or is running."""
    job = current_job(PROBE_SLOT)
    if probe_of(name, model) is None and (job is None or not job.running):
        start_probe(name, model)


def probe_of(name: str, model):
    """The finished induction probe of this model, or None."""
    job = current_job(PROBE_SLOT)
    if job is None or job.running:
        return None
    if (job.params.get("model"), job.params.get("step")) != (name, model.step):
        return None
    done = next((e for e in reversed(job.snapshot()) if isinstance(e, Probed)), None)
    return done.probe if done is not None else None


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


def top_lines(prompt, probe, k: int = 3) -> list[str]:
    """The best heads of each role in words: "layer 4, head 2: induction 0.71"."""
    lines = []
    for inspection, role in (
        (prompt, "previous_token"),
        (prompt, "first_token"),
        (probe, "induction"),
    ):
        if inspection is not None:
            lines += [score.describe() for score in inspection.top_heads(role, k)]
    return lines


def render(result, name: str, model) -> None:
    st.markdown(INTRO)
    probe = probe_of(name, model)
    _probe_controls(name, model, probe)
    if result is None:
        return
    columns = st.columns(3)
    for column, (role, scores) in zip(
        columns, scores_of(result.prompt, probe).items(), strict=False
    ):
        with column:
            heatmap(scores, ROLES[role], key=f"inside_heads_{role}")
    st.markdown("**The top heads of each role**")
    st.markdown("\n".join(f"- {line}" for line in top_lines(result.prompt, probe)))
    if probe is None:
        return
    best = probe.top_heads("induction", 1)[0]
    if best.score > 0.3:
        st.success(
            f"This model has induction heads: the strongest is layer {best.layer}, head "
            f"{best.head} ({best.score:.2f}). In the Ablation tab, knock it out on the example "
            "'A passage, repeated' and watch the loss rise (on SmolLM2: 2.20 to 2.35; the top "
            "three together: 2.42; three heads of layer 0: 2.23)."
        )
    else:
        st.info(
            f"No head scores above 0.3 for induction here (the best: layer {best.layer}, head "
            f"{best.head}, {best.score:.2f})."
        )


def _probe_controls(name: str, model, probe) -> None:
    """The probe's description, its job while it runs, or a button when it has not run."""
    if probe is not None:
        info = probe.probe
        st.caption(
            f"The induction probe: {info.n} random tokens (seed {info.seed}), then the same "
            f"{info.n} again"
            + (", after the beginning-of-text token" if info.prefix else "")
            + "; a head's induction score is its mean attention, in the second copy, on the "
            "token after the current token's first occurrence."
        )
        return
    job = current_job(PROBE_SLOT)
    if job is not None and job.running:
        job_panel(PROBE_SLOT)
    elif st.button("Run the induction probe", key="inside_probe_run"):
        start_probe(name, model)
        st.rerun()
