"""Lab 6, Training timeline: a run's snapshots one after another: the loss at each step,
attention, lens and head scores at that step, and the best induction score per step."""

from __future__ import annotations

import altair as alt
import pandas as pd
import streamlit as st

from llm_playground.inspection.runs import Timeline, timeline_run
from llm_playground.ui.components import current_job, job_panel, start_job
from llm_playground.ui.inside import heads_tab, lens_tab
from llm_playground.ui.inside.common import TIMELINE_SLOT, attention_grid_html, run_snapshots

INTRO = (
    "A run trained with snapshots kept its model every few steps. Here every snapshot gets "
    "your prompt and the induction probe, so you can scrub through training and watch the "
    "attention maps sharpen and the lens' guesses turn from noise into letters and words "
    "while the loss drops. Do induction heads appear? Olsson et al. saw them form suddenly, "
    "in a narrow window early in training, as the loss on repeated text fell."
)
NO_SNAPSHOTS = (
    "This model has no training snapshots. In Lab 2, set **Keep a snapshot every N steps** "
    "(under *Hardware, repeatability and a target*) before training, save the run, and pick "
    "it here; or on the command line: `llm-playground train --preset baby-gpt "
    "--snapshot-interval 50 --out ~/.llm-playground/runs/my-run`."
)
THRESHOLD = 0.3


def render(name: str, model, ids) -> None:
    st.markdown(INTRO)
    steps = run_snapshots(name)
    if not steps:
        st.info(NO_SNAPSHOTS)
        return
    job = current_job(TIMELINE_SLOT)
    busy = job is not None and job.running
    if st.button(
        f"Compute the timeline ({len(steps)} snapshots and the final model)",
        key="inside_timeline_run",
        disabled=ids is None or busy,
    ):
        start_job(
            TIMELINE_SLOT,
            f"timeline of {name}",
            timeline_run(name, steps, ids),
            params={"model": name},
        )
        st.rerun()
    job_panel(TIMELINE_SLOT, stop_label="Stop the timeline")
    job = current_job(TIMELINE_SLOT)
    if job is None or job.running:
        return
    timeline = next((e for e in reversed(job.snapshot()) if isinstance(e, Timeline)), None)
    if timeline is None or not timeline.points:
        return
    if job.params.get("model") != name:
        st.warning(f"This timeline is of {job.params.get('model')}; compute it again for {name}.")
    _charts(timeline.points)
    _one_step(timeline.points)


def _charts(points) -> None:
    """The best score of each role per step, and the losses."""
    rows, losses = [], []
    for point in points:
        best = {
            "induction (probe)": point.probe.head_scores["induction"].max(),
            "previous-token (prompt)": point.prompt.head_scores["previous_token"].max(),
            "first-token (prompt)": point.prompt.head_scores["first_token"].max(),
        }
        rows += [{"step": point.step, "role": r, "best head": float(v)} for r, v in best.items()]
        if point.val_loss is not None:
            losses.append({"step": point.eval_step, "loss": point.val_loss, "data": "validation"})
        if point.batch_loss is not None:
            losses.append({"step": point.step, "loss": point.batch_loss, "data": "training batch"})
    first = next((p for p in points if p.probe.head_scores["induction"].max() > THRESHOLD), None)
    if first is not None:
        head = first.probe.top_heads("induction", 1)[0]
        st.success(
            f"The first snapshot with an induction head above {THRESHOLD}: step {first.step:,} "
            f"({head.describe()})."
        )
    else:
        st.info(f"No snapshot has a head with an induction score above {THRESHOLD}.")
    left, right = st.columns(2)
    with left:
        rule = (
            alt.Chart(pd.DataFrame([{"y": THRESHOLD}])).mark_rule(strokeDash=[4, 4]).encode(y="y:Q")
        )
        lines = (
            alt.Chart(pd.DataFrame(rows))
            .mark_line(point=True)
            .encode(
                x=alt.X("step:Q", title="training step"),
                y=alt.Y("best head:Q", scale=alt.Scale(domain=[0, 1]), title="best head's score"),
                color=alt.Color("role:N", legend=alt.Legend(orient="bottom", labelLimit=260)),
                tooltip=["step", "role", alt.Tooltip("best head:Q", format=".3f")],
            )
        )
        st.altair_chart(
            alt.layer(lines, rule).properties(
                height=300, title=f"The best head of each role (dashed: {THRESHOLD})"
            ),
            width="stretch",
            key="inside_timeline_scores",
        )
    with right:
        if losses:
            chart = (
                alt.Chart(pd.DataFrame(losses))
                .mark_line(point=True)
                .encode(
                    x=alt.X("step:Q", title="training step"),
                    y=alt.Y("loss:Q", scale=alt.Scale(zero=False), title="loss"),
                    color=alt.Color("data:N", legend=alt.Legend(orient="bottom")),
                    tooltip=["step", "data", alt.Tooltip("loss:Q", format=".4f")],
                )
                .properties(height=300, title="The loss")
            )
            st.altair_chart(chart, width="stretch", key="inside_timeline_loss")


def _one_step(points) -> None:
    """One snapshot: its losses, head scores, attention maps and lens."""
    labels = {i: f"step {p.step:,}" + (" (final)" if p.final else "") for i, p in enumerate(points)}
    index = st.select_slider(
        "Snapshot",
        options=list(range(len(points))),
        value=len(points) - 1,
        key="inside_timeline_step",
        format_func=labels.get,
    )
    point = points[index]
    m1, m2, m3 = st.columns(3)
    m1.metric("Step", f"{point.step:,}")
    m2.metric(
        "Training batch loss",
        "–" if point.batch_loss is None else f"{point.batch_loss:.4f}",
        help="the loss on the batch of that very step",
    )
    m3.metric(
        "Validation loss",
        "–" if point.val_loss is None else f"{point.val_loss:.4f}",
        help=f"at the evaluation of step {point.eval_step}, the last one up to this snapshot",
    )
    columns = st.columns(3)
    scores = heads_tab.scores_of(point.prompt, point.probe)
    for column, (role, values) in zip(columns, scores.items(), strict=True):
        with column:
            heatmap_title = heads_tab.ROLES[role]
            heads_tab.heatmap(values, heatmap_title, key=f"inside_timeline_{role}", height=160)
    st.markdown("**Attention at this step** (your prompt)")
    st.html(attention_grid_html(point.prompt.attention))
    st.markdown("**The logit lens at this step** (the last positions of your prompt)")
    T = point.prompt.n_tokens
    st.html(lens_tab.grid_html(point.prompt, range(max(0, T - lens_tab.MAX_COLUMNS), T)))
