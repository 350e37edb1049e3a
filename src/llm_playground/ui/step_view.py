"""Lab 3's step-by-step view of a finished generation (a view only: the steps and their
candidates come from :mod:`llm_playground.generation.records`)."""

from __future__ import annotations

import altair as alt
import pandas as pd
import streamlit as st

from llm_playground.generation.records import candidate_rows, shown_token, stage_table
from llm_playground.ui.components import esc

# the bar colours of a candidate's fate
COLOURS = alt.Scale(domain=["picked", "kept", "cut"], range=["#e4572e", "#4c78a8", "#c7c7c7"])


def step_by_step(result, cfg) -> None:
    """The steps of a finished generation, one at a time: the text so far, the pick, what
    the sampler chain did (a table, a chart and the distribution after each stage), and
    for beam search the live beams and the finished hypotheses."""
    st.subheader("Step by step")
    n = len(result.steps)
    if st.session_state.get("gen_step", 0) >= n:
        st.session_state["gen_step"] = 0
    labels = {i: f"{i + 1}: {shown_token(s.token)}" for i, s in enumerate(result.steps)}
    index = (
        st.select_slider("Step", options=list(range(n)), key="gen_step", format_func=labels.get)
        if n > 1
        else 0
    )
    step = result.steps[index]
    so_far = "".join(s.token for s in result.steps[:index])
    st.markdown(
        f"Text before this step: <code>{esc(so_far[-200:]) or '(start)'}</code> → picked "
        f"<b>{esc(shown_token(step.token))}</b> (id {step.token_id}) with probability "
        f"{step.prob:.3f}",
        unsafe_allow_html=True,
    )
    _how_it_was_picked(result, cfg, step)
    _look_inside_link(so_far)
    rows = candidate_rows(step)
    reasons = [f"<b>{esc(r['token'])}</b> {esc(r['why'])}" for r in rows if r["why"]]
    if reasons:
        st.markdown(
            "<div class='gen-why'>Why not these: " + "; ".join(reasons[:8]) + "</div>",
            unsafe_allow_html=True,
        )
    _candidates(rows)
    if step.stages:
        _stage_table(step)
    if result.strategy == "beam" and result.beam_steps:
        _beams(result, index, n)


def _look_inside_link(so_far: str) -> None:
    """A link to Lab 6 with the same model and the text before this step, so that the logit
    lens there shows how the layers arrive at this step's pick. With the chat template on,
    Lab 6 gets the prompt in its template (the answer so far is left out)."""
    from streamlit.errors import StreamlitAPIException

    state = st.session_state
    model, prompt = state.get("gen_model"), state.get("gen_prompt", "")
    if not model:
        return
    chat = bool(state.get("gen_chat"))
    params = {"model": model, "text": prompt if chat else prompt + so_far, "chat": int(chat)}
    label = "🔬 Look inside the model at this step (Lab 6)"
    try:
        st.page_link("labs/inside.py", label=label, query_params=params)
    except StreamlitAPIException:  # the page run on its own, without the app's navigation
        st.caption(label + ": open Lab 6 from the app's menu.")


def _how_it_was_picked(result, cfg, step) -> None:
    """One line on what chose this token: the chain's stages, plain sampling, beams or greedy."""
    if cfg.samples and step.stages:
        chain = " → ".join(
            f"{name} ({kept:,} left)"
            for name, kept in zip(step.stages, step.kept_after, strict=True)
        )
        st.caption(
            f"The chain at this step: {chain}. {step.kept_count} token(s) were left to sample "
            "from; the picked token's probability is among those."
        )
    elif cfg.samples:
        st.caption("Sampling from the full distribution: no stage is set.")
    elif result.strategy == "beam":
        st.caption("Beam search: 'kept' marks the tokens that extended a beam at this step.")
    else:
        st.caption(
            "Greedy: the most likely token is picked; nothing is sampled"
            + (" (temperature 0 means greedy)." if cfg.strategy != "greedy" else ".")
        )


def _candidates(rows: list[dict]) -> None:
    """The top candidates as a table and as bars coloured by their fate."""
    table, chart = st.columns([5, 4])
    with table:
        st.dataframe(
            pd.DataFrame(rows).drop(columns=["id"]),
            key="gen_candidates",
            hide_index=True,
            width="stretch",
            height=35 * (len(rows) + 1) + 3,
            column_config={
                "rank": st.column_config.NumberColumn("#", width="small"),
                "prob before temperature": st.column_config.NumberColumn(
                    "p before T", format="%.4f", help="softmax of the logits at temperature 1"
                ),
                "prob after temperature": st.column_config.NumberColumn(
                    "p after T", format="%.4f", help="softmax of the logits / temperature"
                ),
                "status": st.column_config.TextColumn(
                    "fate", help="picked; kept by the sampler chain; or cut away"
                ),
                "why": st.column_config.TextColumn(
                    "why", help="the stage that removed the token, or the penalties that lowered it"
                ),
            },
        )
    with chart:
        df = pd.DataFrame(rows)
        df["label"] = [f"{r['rank']}. {r['token']}" for r in rows]
        st.altair_chart(
            alt.Chart(df)
            .mark_bar()
            .encode(
                x=alt.X("prob after temperature:Q", title="probability (after temperature)"),
                y=alt.Y("label:N", sort=None, title=None, axis=alt.Axis(labelLimit=160)),
                color=alt.Color("status:N", scale=COLOURS, title=None),
                tooltip=[
                    "token",
                    "id",
                    alt.Tooltip("prob before temperature:Q", format=".4f"),
                    alt.Tooltip("prob after temperature:Q", format=".4f"),
                    "status",
                    "why",
                ],
            )
            .properties(height=34 * len(rows)),
            width="stretch",
            key="gen_chart",
        )


def _stage_table(step) -> None:
    """The distribution after each stage of the chain."""
    st.markdown("**The distribution after each stage** (empty once a stage cut the token)")
    st.dataframe(
        pd.DataFrame(stage_table(step)),
        hide_index=True,
        width="stretch",
        key="gen_stage_table",
        column_config={
            name: st.column_config.NumberColumn(name, format="%.4f") for name in step.stages
        },
    )


def _beams(result, index: int, n: int) -> None:
    """Beam search's live beams after this step and its finished hypotheses."""
    st.markdown("**Live beams after this step** (score = sum of log-probabilities)")
    live = result.beam_steps[min(index, len(result.beam_steps) - 1)]
    st.dataframe(
        pd.DataFrame(
            [
                {
                    "beam": i + 1,
                    "text": b.text,
                    "tokens": len(b.ids),
                    "score": round(b.score, 3),
                }
                for i, b in enumerate(live)
            ]
        ),
        hide_index=True,
        width="stretch",
        key="gen_beams_table",
    )
    if len(result.beam_steps) > n:
        st.caption(f"The search ran {len(result.beam_steps)} steps; the winner finished after {n}.")
    st.markdown(
        "**Finished hypotheses** (score = log-probability / length^length penalty), "
        "the winner first"
    )
    st.dataframe(
        pd.DataFrame(
            [
                {
                    "": "🏆 winner" if i == 0 else "",
                    "text": b.text,
                    "tokens": len(b.ids),
                    "score": round(b.score, 3),
                }
                for i, b in enumerate(result.beams)
            ]
        ),
        hide_index=True,
        width="stretch",
        key="gen_finals_table",
    )
