"""Lab 2's race view: several recipes trained one after another as one background job,
their validation curves on one chart, the records table and what each trick bought."""

from __future__ import annotations

import altair as alt
import pandas as pd
import streamlit as st

from llm_playground.core.errors import UserError
from llm_playground.training.config import TRICKS
from llm_playground.training.events import RecipeDone, RecipeEval
from llm_playground.training.records import (
    BASELINE,
    DEFAULT_TARGET,
    SPEEDRUN,
    RaceSettings,
    race_recipes,
    records,
    run_race,
    trick_table,
)
from llm_playground.ui.components import current_job, esc, job_panel, show_user_error, start_job

RACE_SLOT = "train_race"


def draw_race(job, events: list) -> None:
    """Every recipe's validation curve on one chart, and the tables the race fills."""
    rows = [
        {"recipe": e.recipe, "step": e.step, "seconds": e.elapsed_s, "val_loss": e.val_loss}
        for e in events
        if isinstance(e, RecipeEval)
    ]
    results = {e.recipe: e for e in events if isinstance(e, RecipeDone)}
    target = job.params.get("target")
    if rows:
        axis = st.radio(
            "Horizontal axis", ["wall seconds", "steps"], horizontal=True, key="race_axis"
        )
        x = alt.X("seconds:Q", title="wall seconds") if axis == "wall seconds" else "step:Q"
        chart = (
            alt.Chart(pd.DataFrame(rows))
            .mark_line(point=True, strokeWidth=2.5)
            .encode(
                x=x,
                y=alt.Y("val_loss:Q", title="validation loss", scale=alt.Scale(zero=False)),
                color=alt.Color("recipe:N", legend=alt.Legend(orient="bottom", labelLimit=400)),
                tooltip=["recipe", "step", alt.Tooltip("seconds:Q", format=".1f"), "val_loss"],
            )
        )
        layers = [chart]
        if target:
            rule = alt.Chart(pd.DataFrame([{"target": target}])).mark_rule(strokeDash=[4, 4])
            layers.append(rule.encode(y="target:Q"))
        st.altair_chart(
            alt.layer(*layers).properties(height=360), width="stretch", key="race_chart"
        )
    if results:
        st.dataframe(
            pd.DataFrame(
                [
                    {
                        "recipe": r.recipe,
                        "steps": r.steps,
                        "final val loss": r.final_val_loss,
                        f"time to {target:g}" if target else "time to target": (
                            f"{r.time_to_target_s:.1f} s" if r.time_to_target_s else "not reached"
                        ),
                        "seconds": round(r.seconds, 1),
                    }
                    for r in results.values()
                ]
            ),
            hide_index=True,
            key="race_results",
        )
        bought = trick_table(results)
        if bought:
            st.markdown(
                "**What each trick bought** (the speedrun's final loss with and without it)"
            )
            st.dataframe(pd.DataFrame(bought), hide_index=True, key="race_tricks")


def race_tab() -> None:
    st.markdown(
        "Pick two to four recipes: they train **one after another** on the same data with the "
        "same seed and the same number of steps, and their validation curves land on one chart. "
        "`speedrun - X` is the speedrun without trick X, so the race shows what X buys."
    )
    names = list(race_recipes())
    c1, c2, c3 = st.columns([3, 1, 1])
    chosen = c1.multiselect(
        "Recipes", names, default=[BASELINE, SPEEDRUN], key="race_recipes", max_selections=4
    )
    steps = c2.number_input("Steps each", 20, 2000, 300, step=20, key="race_steps")
    target = c3.number_input(
        "Target val loss", 0.0, 10.0, DEFAULT_TARGET, step=0.01, key="race_target"
    )
    running = current_job(RACE_SLOT)
    if st.button(
        "🏁 Start the race",
        key="race_start",
        type="primary",
        disabled=len(chosen) < 2 or (running is not None and running.running),
        help="two to four recipes",
    ):
        recipes, budget, goal = list(chosen), int(steps), float(target) or None
        start_job(
            RACE_SLOT,
            "race: " + " vs ".join(recipes),
            lambda stop: run_race(
                recipes,
                stop,
                settings=RaceSettings(
                    max_iters=budget, eval_interval=max(10, budget // 10), target=goal
                ),
            ),
            params={"target": goal, "recipes": recipes},
        )
        st.rerun()
    job_panel(RACE_SLOT, draw=draw_race, stop_label="Stop the race", run_every=2.0)
    st.subheader("Records on this machine and others")
    try:
        rows = records()
    except UserError as exc:
        show_user_error(exc)
        rows = []
    if rows:
        st.dataframe(pd.DataFrame(rows), hide_index=True, key="race_records")
    else:
        st.caption("No records yet: finish a race to add one row per recipe.")
    with st.expander("Why each trick helps"):
        for trick in TRICKS.values():
            st.markdown(f"- **{esc(trick.title)}**: {esc(trick.why)} ([source]({trick.source}))")
