"""Lab 5's Benchmarks tab: lm-evaluation-harness tasks, beside the model cards' figures."""

from __future__ import annotations

import streamlit as st

from llm_playground.core.errors import UserError
from llm_playground.evaluation import runs
from llm_playground.evaluation.benchmarks import READING_NOTES, published_rows
from llm_playground.evaluation.harness import HarnessConfig, parse_tasks
from llm_playground.evaluation.leaderboard import Leaderboard
from llm_playground.evaluation.local_tasks import LOCAL_TASK_INFO, LOCAL_TASKS
from llm_playground.ui.components import (
    current_job,
    esc,
    job_panel,
    model_picker,
    show_user_error,
    start_job,
)
from llm_playground.ui.evaluator.common import load_model, recorded_note


def _draw_harness(job, events) -> None:
    done = runs.last_done(events)
    if done is None:
        return
    lines = []
    for score in done.result.scores:
        err = f" ± {score.stderr:.4f}" if score.stderr is not None else ""
        lines.append(
            f"- `{score.task}` v{score.version}, {score.num_fewshot}-shot: "
            f"**{score.metric}** {score.value:.4f}{err}"
        )
    st.markdown("\n".join(lines))
    limit = done.result.limit
    st.caption(
        f"**{esc(done.result.model)}**"
        + (f", the first {limit} documents of each task" if limit else ", every document")
        + ". Recorded in the leaderboard with task version, shots and standard error."
    )
    recorded_note(events)


def _published_beside_yours() -> None:
    """The model cards' figures on the left, this playground's harness runs on the right."""
    left, right = st.columns(2)
    with left:
        st.markdown("**Published (model cards)**")
        st.dataframe(
            [
                {
                    "model": p["model"],
                    "benchmark": p["benchmark"],
                    "shots": p["shots"],
                    "published %": p["value"],
                    "note": p["note"],
                }
                for p in published_rows()
            ],
            hide_index=True,
            key="ev_bench_published",
        )
        st.caption("Sources: SmolLM2-135M and Gemma 3 270M model cards.")
    with right:
        st.markdown("**Yours (this playground)**")
        try:
            mine = Leaderboard().benchmarks()
        except UserError as exc:
            show_user_error(exc)
            mine = []
        if mine:
            st.dataframe(
                [
                    {
                        "model": b["model"],
                        "task": f"{b['task']} v{b['task_version']}",
                        "shots": b["num_fewshot"],
                        "documents": b["limit"] or "all",
                        "metric": b["metric"],
                        "%": round(100 * b["value"], 1),
                        "± stderr %": None if b["stderr"] is None else round(100 * b["stderr"], 1),
                    }
                    for b in mine
                    if b["metric"] in ("acc", "acc_norm")
                ],
                hide_index=True,
                key="ev_bench_mine",
            )
        else:
            st.caption("No benchmark run yet: run one above.")


def benchmarks_tab() -> None:
    st.markdown(
        "The numbers model cards cite come from **lm-evaluation-harness** (or lighteval). "
        "Run its tasks here: the three shipped tasks work offline; the harness's own "
        "(hellaswag, arc_easy, piqa, winogrande, …) download their data and need a network."
    )
    c1, c2 = st.columns([2, 3])
    with c1:
        model = model_picker("Model", key="ev_bench_model", default="smollm2-135m-instruct")
    with c2:
        local = st.multiselect(
            "Shipped tasks",
            list(LOCAL_TASKS),
            default=[LOCAL_TASKS[0]],
            key="ev_bench_tasks",
            format_func=lambda t: f"{t} — {LOCAL_TASK_INFO[t]}",
        )
    c3, c4, c5 = st.columns([2, 1, 1])
    more = c3.text_input(
        "Other harness tasks (comma-separated, need a network)",
        "",
        key="ev_bench_more",
        placeholder="hellaswag, piqa",
    )
    shots = c4.number_input("Shots", 0, 25, 0, key="ev_bench_shots")
    limit = c5.number_input("Documents per task", 1, 100_000, 20, key="ev_bench_limit")
    job = current_job("evaluator-harness")
    if st.button(
        "Run the benchmark",
        key="ev_bench_run",
        type="primary",
        disabled=(job is not None and job.running) or not model,
    ):
        try:
            config = HarnessConfig(
                tasks=tuple(local) + parse_tasks(more), num_fewshot=int(shots), limit=int(limit)
            )
            config.check()
            loaded = load_model(model)
            if loaded is not None:
                start_job(
                    "evaluator-harness",
                    f"{', '.join(config.tasks)} with {model}",
                    lambda stop: runs.harness_run(loaded, config, stop_event=stop),
                    params={"model": model},
                )
        except UserError as exc:
            show_user_error(exc)
    job_panel("evaluator-harness", draw=_draw_harness)

    _published_beside_yours()
    for title, text in READING_NOTES.items():
        with st.expander(title):
            st.markdown(text)
