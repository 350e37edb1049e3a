"""Lab 4 · Best-of-n tab: n sampled answers, each scored by a reward model; the best kept,
and the best score against n."""

from __future__ import annotations

import altair as alt
import pandas as pd
import streamlit as st

from llm_playground.core.errors import UserError
from llm_playground.finetuning.best_of import best_of_n, best_so_far
from llm_playground.generation.config import DecodingConfig
from llm_playground.generation.registry import list_models
from llm_playground.ui.components import cached_model, esc, show_user_error
from llm_playground.ui.finetuner.common import cached_reward_model, reward_model_names

state = st.session_state


def _settings():
    models = [i.name for i in list_models(include_hub=False) if i.available]
    rms = reward_model_names()
    c1, c2 = st.columns(2)
    model = c1.selectbox(
        "Model that answers",
        models,
        index=models.index("smollm2-135m-instruct") if "smollm2-135m-instruct" in models else 0,
        key="ft_bon_model",
    )
    reward = c2.selectbox("Reward model that scores", list(rms), key="ft_bon_reward")
    prompt = st.text_area(
        "Prompt", "What is the capital of France?", key="ft_bon_prompt", height=70
    )
    c3, c4, c5, c6 = st.columns(4)
    n = c3.slider("n answers", 1, 16, 4, key="ft_bon_n")
    temperature = c4.slider("Temperature", 0.1, 1.5, 0.9, 0.05, key="ft_bon_temperature")
    max_new = c5.number_input("Max new tokens", 1, 256, 32, key="ft_bon_max_new")
    seed = c6.number_input("First seed", 0, 2**31 - 1, 0, key="ft_bon_seed")
    return model, rms.get(reward) if reward else None, prompt, n, temperature, max_new, seed


def _run(model, reward_dir, prompt, n, temperature, max_new, seed) -> None:
    if reward_dir is None:
        raise UserError("no reward model yet: train one in the Reward model tab")
    if not prompt.strip():
        raise UserError("the prompt is empty")
    config = DecodingConfig(
        strategy="top-p",
        temperature=float(temperature),
        top_p=0.95,
        max_new_tokens=int(max_new),
        seed=int(seed),
    )
    with st.spinner(f"Sampling {n} answers and scoring them…"):
        outcome = best_of_n(
            cached_model(model), prompt, int(n), cached_reward_model(reward_dir), config
        )
    state["ft_bon_result"] = {
        "texts": [c.text for c in outcome.candidates],
        "scores": [c.score for c in outcome.candidates],
        "seeds": [c.seed for c in outcome.candidates],
        "best": outcome.best_index,
    }


def _show(result: dict) -> None:
    best = result["best"]
    st.success(f"Kept answer {best + 1} (reward {result['scores'][best]:+.3f}).")
    st.markdown(
        "<div id='ft-bon-best' style='white-space: pre-wrap; font-family: monospace; border: "
        f"2px solid #2e7d32; border-radius: 6px; padding: 0.6em'>{esc(result['texts'][best])}"
        "</div>",
        unsafe_allow_html=True,
    )
    table = pd.DataFrame(
        {
            "answer": list(range(1, len(result["texts"]) + 1)),
            "seed": result["seeds"],
            "reward": [round(s, 4) for s in result["scores"]],
            "kept": ["✓" if i == best else "" for i in range(len(result["texts"]))],
            "text": result["texts"],
        }
    )
    st.dataframe(table, hide_index=True, key="ft_bon_table")
    curve = pd.DataFrame(
        {
            "n": list(range(1, len(result["scores"]) + 1)),
            "best reward among the first n": best_so_far(result["scores"]),
        }
    )
    st.altair_chart(
        alt.Chart(curve)
        .mark_line(point=True)
        .encode(x="n:Q", y=alt.Y("best reward among the first n:Q")),
        width="stretch",
    )
    st.caption(
        "Each extra answer can only raise the best score, by less and less: best-of-n buys "
        "quality with n times the sampling, and the reward model's taste decides what 'best' is."
    )


def render_best_of_tab() -> None:
    st.caption(
        "Best-of-n uses a reward model without any training: sample n answers, score each, "
        "keep the highest."
    )
    settings = _settings()
    if st.button("Sample and score", key="ft_bon_start", type="primary"):
        try:
            _run(*settings)
        except UserError as exc:
            show_user_error(exc)
    result = state.get("ft_bon_result")
    if result:
        _show(result)
