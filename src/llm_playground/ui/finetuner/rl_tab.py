"""Lab 4 · RL (GRPO) tab: settings, then the run as it happens: mean reward ± std, held-out
accuracy, KL to the start, completion length, each step's group with its rewards and
advantages, the answers to fixed prompts before and after; stop and resume."""

from __future__ import annotations

import altair as alt
import pandas as pd
import streamlit as st

from llm_playground.core.errors import UserError
from llm_playground.core.paths import unique_name
from llm_playground.finetuning.lora import check_adapter_dir, default_adapter_dir
from llm_playground.finetuning.outputs import OutputExists
from llm_playground.finetuning.rewards import BUILT_IN, group_advantages
from llm_playground.finetuning.rl import (
    RLAnswers,
    RLConfig,
    RLDone,
    RLEval,
    RLGroup,
    RLStarted,
    RLStep,
    train_rl,
)
from llm_playground.ui.components import (
    code_expander,
    current_job,
    esc,
    job_panel,
    machine_load_caption,
    show_user_error,
    start_job,
)
from llm_playground.ui.finetuner.common import base_models, default_index, reward_model_names

SLOT = "rl"
state = st.session_state
DEFAULTS = RLConfig()
REWARD_HELP = {
    "arithmetic": "1 when the answer the reply ends with is the exact value of a+b, a−b or a×b",
    "format": "1 when the reply puts its answer inside <answer>…</answer>",
    "length": "−|50 − characters|: pays for length alone (watch it hack)",
}
HACKING_STORY = (
    "**A story about reward hacking.** The length reward pays −|50 − characters|: it "
    "never reads the words. A policy that learns to say *anything* in about fifty characters "
    "(a padded phrase, a repeated word, a question sent back) earns as much as a good "
    "answer, and GRPO will find that shortcut because it is easier than being helpful. "
    "Watch the reward climb while the answers below get no better, or worse. Real reward "
    "models have subtler holes of the same kind (length, confident tone, flattery), which "
    "is why RLHF keeps a KL penalty to the start (beta) and people read the samples."
)


# --- the live view --------------------------------------------------------------------------


def _reward_chart(steps: list[RLStep]) -> None:
    df = pd.DataFrame(
        {
            "step": [s.step for s in steps],
            "mean reward": [s.reward_mean for s in steps],
            "low": [s.reward_mean - s.reward_std for s in steps],
            "high": [s.reward_mean + s.reward_std for s in steps],
        }
    )
    band = alt.Chart(df).mark_area(opacity=0.25).encode(x="step:Q", y="low:Q", y2="high:Q")
    line = alt.Chart(df).mark_line(point=len(df) < 40).encode(x="step:Q", y="mean reward:Q")
    st.altair_chart(band + line, width="stretch")


def _small_charts(steps: list[RLStep], evals: list[RLEval]) -> None:
    c1, c2, c3 = st.columns(3)
    with c1:
        if evals:
            df = pd.DataFrame(
                {"step": [e.step for e in evals], "accuracy": [e.accuracy for e in evals]}
            )
            st.altair_chart(
                alt.Chart(df, title="held-out accuracy (greedy)")
                .mark_line(point=True)
                .encode(x="step:Q", y=alt.Y("accuracy:Q", scale=alt.Scale(domain=[0, 1]))),
                width="stretch",
            )
    for column, name, field in (
        (c2, "KL to the start", "kl"),
        (c3, "completion length", "completion_length"),
    ):
        with column:
            df = pd.DataFrame(
                {"step": [s.step for s in steps], name: [getattr(s, field) for s in steps]}
            )
            st.altair_chart(
                alt.Chart(df, title=name).mark_line().encode(x="step:Q", y=f"{name}:Q"),
                width="stretch",
            )


def _group_table(group: RLGroup) -> None:
    st.markdown(f"**Step {group.step}: one prompt's group** — {esc(group.prompt)}")
    st.dataframe(
        pd.DataFrame(
            {
                "completion": group.completions,
                "reward": [round(r, 3) for r in group.rewards],
                "advantage (r − mean) / std": [round(a, 3) for a in group.advantages],
            }
        ),
        hide_index=True,
        key=f"ft_rl_group_{group.step}",
    )


def _answers(events: list) -> None:
    answers = {e.when: e for e in events if isinstance(e, RLAnswers)}
    if "before" not in answers:
        return
    before = answers["before"]
    after = answers.get("after")
    rows = [
        {"prompt": p, "before": b.strip(), "after": after.answers[i].strip() if after else "…"}
        for i, (p, b) in enumerate(zip(before.prompts, before.answers, strict=True))
    ]
    st.markdown("**The policy's answers to fixed prompts (greedy)**")
    st.dataframe(pd.DataFrame(rows), hide_index=True, key="ft_rl_answers")


def _draw(job, events: list) -> None:
    started = next((e for e in events if isinstance(e, RLStarted)), None)
    steps = [e for e in events if isinstance(e, RLStep)]
    evals = [e for e in events if isinstance(e, RLEval)]
    groups = [e for e in events if isinstance(e, RLGroup)]
    done = next((e for e in events if isinstance(e, RLDone)), None)
    if started:
        st.caption(
            f"reward {started.reward} · {started.prompts_per_step} prompts × {started.group} "
            f"completions a step · {started.trainable:,} trainable parameters"
            + (" · chat template" if started.chat else "")
        )
    elif job.running:
        st.caption("Loading the model and measuring the starting accuracy…")
    if steps:
        last = steps[-1]
        m1, m2, m3, m4 = st.columns(4)
        m1.metric("Mean reward", f"{last.reward_mean:.3f}", help=f"± {last.reward_std:.3f}")
        m2.metric("Held-out accuracy", f"{evals[-1].accuracy:.3f}" if evals else "—")
        m3.metric("KL to the start", f"{last.kl:.4f}")
        m4.metric("Completion length", f"{last.completion_length:.1f}")
        _reward_chart(steps)
        _small_charts(steps, evals)
    elif evals:
        st.metric("Held-out accuracy at the start", f"{evals[0].accuracy:.3f}")
    if groups:
        _group_table(groups[-1])
    _answers(events)
    if done:
        _done_message(done)


def _done_message(done: RLDone) -> None:
    figures = (
        f"Held-out accuracy {done.accuracy_before:.3f} → {done.accuracy_after:.3f}. "
        if done.accuracy_before is not None and done.accuracy_after is not None
        else ""
    )
    if done.out_dir:
        what = "Stopped" if done.stopped else "Done"
        st.success(
            f"{what} after {done.step} steps ({done.s_per_step:.1f} s/step). {figures}"
            f"Adapter saved to `{esc(done.out_dir)}`: it is listed in Labs 3–5."
        )
        if done.stopped:
            state["ft_rl_resumable"] = done.out_dir
    else:
        st.warning("Stopped before the first step: nothing was saved.")


# --- settings and start ---------------------------------------------------------------------


def _settings() -> dict:
    bases = base_models()
    rewards = list(BUILT_IN) + list(reward_model_names())
    c1, c2, c3 = st.columns(3)
    base = c1.selectbox("Base model", bases, index=default_index(bases), key="ft_rl_base")
    reward = c2.selectbox(
        "Reward",
        rewards,
        key="ft_rl_reward",
        format_func=lambda r: r if r in BUILT_IN else f"reward model: {r}",
        help="; ".join(f"{k}: {v}" for k, v in REWARD_HELP.items()),
    )
    state.setdefault("ft_rl_name", unique_name("grpo"))  # never two people's in one minute
    name = c3.text_input("Adapter name", key="ft_rl_name")
    c4, c5, c6, c7 = st.columns(4)
    form = {
        "base": base,
        "reward": reward,
        "name": name,
        "steps": c4.number_input("Steps", 1, 10_000, DEFAULTS.steps, key="ft_rl_steps"),
        "group": c5.number_input("Group size G", 2, 64, DEFAULTS.group, key="ft_rl_group"),
        "prompts": c6.number_input(
            "Prompts per step", 1, 64, DEFAULTS.prompts_per_step, key="ft_rl_prompts"
        ),
        "tokens": c7.number_input(
            "Completion tokens", 1, 512, DEFAULTS.max_completion_tokens, key="ft_rl_tokens"
        ),
    }
    c8, c9, c10, c11 = st.columns(4)
    form["beta"] = c8.number_input(
        "β (KL to the start)", 0.0, 10.0, DEFAULTS.beta, 0.01, format="%.3f", key="ft_rl_beta"
    )
    form["lr"] = c9.number_input(
        "Learning rate", 1e-7, 1e-1, DEFAULTS.lr, format="%.0e", key="ft_rl_lr"
    )
    form["eval_every"] = c10.number_input(
        "Accuracy every K steps", 0, 1000, DEFAULTS.eval_every, key="ft_rl_eval_every"
    )
    form["eval_problems"] = c11.number_input(
        "Held-out problems", 1, 1000, DEFAULTS.eval_problems, key="ft_rl_eval_problems"
    )
    form["replace"] = st.checkbox("Replace an existing adapter of that name", key="ft_rl_replace")
    return form


def _start(form: dict) -> None:
    names = reward_model_names()
    reward = str(names[form["reward"]]) if form["reward"] in names else form["reward"]
    config = RLConfig(
        base=form["base"],
        reward=reward,
        steps=int(form["steps"]),
        group=int(form["group"]),
        prompts_per_step=int(form["prompts"]),
        max_completion_tokens=int(form["tokens"]),
        beta=float(form["beta"]),
        lr=float(form["lr"]),
        eval_every=int(form["eval_every"]),
        eval_problems=int(form["eval_problems"]),
    )
    out = default_adapter_dir(form["name"].strip())
    try:
        check_adapter_dir(out, force=form["replace"])
    except OutputExists:
        raise UserError(
            f"an adapter named '{form['name'].strip()}' exists already: pick another name or "
            "tick 'Replace an existing adapter'"
        ) from None
    force = bool(form["replace"])

    def factory(stop):
        return train_rl(config, out_dir=out, stop_event=stop, force=force)

    state.pop("ft_rl_resumable", None)
    start_job(SLOT, f"GRPO on {config.base}, reward {form['reward']} → {out.name}", factory)


def _resume(folder: str) -> None:
    def factory(stop):
        return train_rl(RLConfig(), out_dir=folder, stop_event=stop, resume=True)

    state.pop("ft_rl_resumable", None)
    start_job(SLOT, f"GRPO resumed → {folder.rsplit('/', 1)[-1]}", factory)


def _buttons(form: dict) -> None:
    job = current_job(SLOT)
    busy = job is not None and job.running
    c1, c2 = st.columns(2)
    if c1.button("Start GRPO", key="ft_rl_start", type="primary", disabled=busy):
        try:
            _start(form)
            st.rerun()
        except UserError as exc:
            show_user_error(exc)
    resumable = state.get("ft_rl_resumable")
    if resumable and c2.button("Resume the stopped run", key="ft_rl_resume", disabled=busy):
        try:
            _resume(resumable)
            st.rerun()
        except UserError as exc:
            show_user_error(exc)


def render_rl_tab() -> None:
    st.caption(
        "Reinforcement learning with GRPO (TRL's GRPOTrainer) on a LoRA adapter: for each "
        "prompt, sample a group of G completions, score them, and push up the ones better "
        "than their group's mean. Arithmetic and format rewards are checked by a program; "
        "length is the reward-hacking demo; a reward model is RLHF."
    )
    form = _settings()
    if form["reward"] == "length":
        st.info(HACKING_STORY, icon="🎣")
    _buttons(form)
    machine_load_caption()
    job_panel(SLOT, draw=_draw, run_every=1.0)
    code_expander(
        "GRPO's advantages",
        [group_advantages],
        "TRL's `GRPOTrainer` computes the same advantages for every group of each step "
        "(`scale_rewards='group'`); a test checks them against this function and by hand.",
    )
