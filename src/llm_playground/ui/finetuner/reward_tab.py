"""Lab 4 · Reward model tab: train a LoRA reward model on the votes or the offline set,
read its held-out accuracy and margin, and rank the voted models by it beside
Bradley–Terry."""

from __future__ import annotations

import altair as alt
import pandas as pd
import streamlit as st

from llm_playground.core.errors import UserError
from llm_playground.core.paths import unique_name
from llm_playground.finetuning.lora import check_adapter_dir
from llm_playground.finetuning.outputs import OutputExists
from llm_playground.finetuning.preferences import read_preference_pairs
from llm_playground.finetuning.preferences.export import saved_exports
from llm_playground.finetuning.reward import (
    RewardDone,
    RewardEval,
    RewardModelConfig,
    RewardStarted,
    RewardStep,
    bradley_terry_loss,
    default_reward_dir,
    load_pairs,
    model_ranking,
    split_pairs,
    train_reward_model,
)
from llm_playground.ui.components import (
    code_expander,
    current_job,
    esc,
    job_panel,
    show_user_error,
    start_job,
)
from llm_playground.ui.finetuner.common import (
    base_models,
    cached_reward_model,
    default_index,
    reward_model_names,
)

SLOT = "reward"
SOURCE_OFFLINE = "offline set (shipped)"


def _draw(job, events: list) -> None:
    """Pairs, the loss curve, then the held-out accuracy and margin."""
    started = next((e for e in events if isinstance(e, RewardStarted)), None)
    steps = [e for e in events if isinstance(e, RewardStep)]
    done = next((e for e in events if isinstance(e, RewardDone)), None)
    if started:
        st.caption(
            f"{started.train_pairs} training pairs, {started.eval_pairs} held out · "
            f"{started.trainable:,} trainable parameters (LoRA + the score head)"
        )
    elif job.running:
        st.caption("Loading the base with a new score head…")
    if steps:
        df = pd.DataFrame({"step": [s.step for s in steps], "loss": [s.loss for s in steps]})
        chart = (
            alt.Chart(df)
            .mark_line(point=len(df) < 40)
            .encode(x="step:Q", y=alt.Y("loss:Q", title="Bradley–Terry loss −log σ(r⁺ − r⁻)"))
        )
        st.altair_chart(chart, width="stretch")
    evaluation = next((e for e in events if isinstance(e, RewardEval)), None)
    if evaluation is not None:
        m1, m2 = st.columns(2)
        m1.metric("Held-out pairwise accuracy", f"{evaluation.accuracy:.3f}")
        m2.metric("Mean margin r⁺ − r⁻", f"{evaluation.margin:.3f}")
    if done:
        if done.out_dir:
            st.success(f"Reward model saved to `{esc(done.out_dir)}`.")
        else:
            st.warning("Stopped before the first step: nothing was saved.")


def _pairs(source: str) -> tuple[list[dict], str]:
    if source == SOURCE_OFFLINE:
        return load_pairs("offline")
    exports = {p.name: p for p in saved_exports()}
    if source not in exports:
        raise UserError("pick a saved export (Preferences → Export for DPO saves one)")
    return read_preference_pairs(exports[source]), source


def _start(base: str, source: str, steps: int, lr: float, name: str, replace: bool) -> None:
    config = RewardModelConfig(base=base, max_steps=int(steps), lr=float(lr))
    pairs, data_name = _pairs(source)
    split_pairs(pairs, config.eval_frac, config.seed)  # too few pairs: say so at once
    out = default_reward_dir(name)
    try:
        check_adapter_dir(out, force=replace)
    except OutputExists:
        raise UserError(
            f"a reward model named '{name}' exists already: pick another name or tick "
            "'Replace an existing reward model'"
        ) from None

    def factory(stop):
        return train_reward_model(
            config, pairs, out_dir=out, stop_event=stop, data_name=data_name, force=replace
        )

    start_job(SLOT, f"reward model on {base}, {data_name} → {out.name}", factory, heavy=True)


def _train_form() -> None:
    bases = base_models()
    c1, c2, c3 = st.columns(3)
    base = c1.selectbox("Base model", bases, index=default_index(bases), key="ft_rm_base")
    sources = [SOURCE_OFFLINE] + [p.name for p in saved_exports()]
    source = c2.selectbox(
        "Preference pairs",
        sources,
        key="ft_rm_source",
        help="The offline set pairs answers of the instruction data with cut, shuffled or "
        "off-topic copies; saved exports are your votes.",
    )
    st.session_state.setdefault("ft_rm_name", unique_name("reward"))  # one per person
    name = c3.text_input("Reward model name", key="ft_rm_name")
    c4, c5, c6 = st.columns(3)
    steps = c4.number_input("Steps", 1, 5000, 60, key="ft_rm_steps")
    lr = c5.number_input("Learning rate", 1e-6, 1e-1, 2e-4, format="%.0e", key="ft_rm_lr")
    replace = c6.checkbox("Replace an existing reward model", key="ft_rm_replace")
    job = current_job(SLOT)
    if st.button(
        "Train the reward model",
        key="ft_rm_start",
        type="primary",
        disabled=job is not None and job.running,
    ):
        try:
            _start(base, source, steps, lr, name, replace)
            st.rerun()
        except UserError as exc:
            show_user_error(exc)
    job_panel(SLOT, draw=_draw)


def _ranking(store) -> None:
    """The voted models ranked by mean reward, beside their Bradley–Terry rating."""
    models = reward_model_names()
    if not models:
        st.caption("Train a reward model above to rank the voted models by it.")
        return
    picked = st.selectbox("Reward model", list(models), key="ft_rm_rank_model")
    if store is None:
        st.caption("Choose a vote database in **Vote** to rank its models.")
        return
    if not st.button("Rank the voted models", key="ft_rm_rank"):
        return
    try:
        votes = store.list_votes(limit=200)
        with st.spinner("Scoring every voted answer…"):
            rows = model_ranking(cached_reward_model(models[picked]), votes)
        ratings = {r.model: r.rating for r in store.ratings()}
    except UserError as exc:
        show_user_error(exc)
        return
    if not rows:
        st.info("No vote names its models yet.")
        return
    by_bt = sorted(ratings, key=lambda m: -ratings[m])
    table = pd.DataFrame(
        [
            {
                "model": r["model"],
                "reward-model rank": r["rank"],
                "mean reward": round(r["mean_reward"], 3),
                "answers": r["answers"],
                "Bradley–Terry rank": by_bt.index(r["model"]) + 1 if r["model"] in by_bt else None,
                "Bradley–Terry rating": round(ratings[r["model"]], 1)
                if r["model"] in ratings
                else None,
            }
            for r in rows
        ]
    )
    st.dataframe(table, hide_index=True, key="ft_rm_rank_table")
    st.caption(
        "Bradley–Terry rates models from who won each vote; the reward model scores each "
        "answer on its own. Where the ranks differ, the reward model has learnt something "
        "other than what the votes say (or has not seen enough of them)."
    )


def render_reward_tab(store=None) -> None:
    st.caption(
        "A reward model reads a prompt and an answer and gives one number. It is trained on "
        "pairs (chosen, rejected) so that the chosen answer scores higher: the Bradley–Terry "
        "loss −log σ(r⁺ − r⁻), with TRL's RewardTrainer, a LoRA adapter and a new score head."
    )
    _train_form()
    st.divider()
    st.markdown("**The voted models, ranked by the reward model and by Bradley–Terry**")
    _ranking(store)
    code_expander(
        "the reward model's loss",
        [bradley_terry_loss],
        "TRL's `RewardTrainer` computes this loss on the rewards of each batch's chosen and "
        "rejected answers; a test checks it against the formula by hand.",
    )
