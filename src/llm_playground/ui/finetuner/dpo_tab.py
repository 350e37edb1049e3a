"""Lab 4's DPO tab: train a LoRA adapter with TRL's DPOTrainer on saved or uploaded
preference pairs (layout only; the training is llm_playground.finetuning.dpo)."""

from __future__ import annotations

import altair as alt
import pandas as pd
import streamlit as st

from llm_playground.core.errors import UserError
from llm_playground.core.paths import unique_name
from llm_playground.finetuning.dpo import DPOConfig, dpo_loss, train_dpo
from llm_playground.finetuning.events import DPODone, DPOStarted, DPOStep
from llm_playground.finetuning.outputs import MAX_UPLOAD_BYTES
from llm_playground.finetuning.preferences import parse_preference_pairs, read_preference_pairs
from llm_playground.finetuning.preferences.export import saved_exports
from llm_playground.ui.components import (
    code_expander,
    current_job,
    esc,
    job_panel,
    show_user_error,
    start_job,
)
from llm_playground.ui.finetuner.common import (
    adapter_out,
    base_models,
    default_index,
    uploaded_text,
)


def _dpo_draw(job, events: list) -> None:
    """What the page shows of a DPO run: the pairs, the size, the loss curve, the result."""
    started = next((e for e in events if isinstance(e, DPOStarted)), None)
    steps = [e for e in events if isinstance(e, DPOStep)]
    done = next((e for e in events if isinstance(e, DPODone)), None)
    if started:
        st.caption(
            f"{started.n_pairs} preference pairs · {started.trainable:,} trainable parameters "
            f"({started.share:.3f} %)"
        )
    elif job.running:
        st.caption("Loading the model and tokenizing the pairs…")
    if steps:
        df = pd.DataFrame({"step": [s.step for s in steps], "DPO loss": [s.loss for s in steps]})
        st.altair_chart(
            alt.Chart(df).mark_line(point=True).encode(x="step:Q", y="DPO loss:Q"), width="stretch"
        )
    if done:
        st.success(
            f"DPO adapter saved to `{esc(done.out_dir)}` after {done.step} steps: it is listed "
            "among the models now."
            if done.out_dir
            else "Stopped before the first step: nothing saved."
        )


SOURCE_SAVED = "a saved export"
SOURCE_UPLOAD = "upload a JSONL file"


def _dpo_pairs(source: str, saved: str | None, upload) -> tuple[list[dict], str]:
    """The preference pairs chosen in the page, and a name for them."""
    if source == SOURCE_UPLOAD:
        rows = parse_preference_pairs(uploaded_text(upload, "JSONL file"), upload.name)
        return rows, upload.name
    exports = {p.name: p for p in saved_exports()}
    if not saved or saved not in exports:
        raise UserError("there is no saved export yet: save one in Preferences, or upload a file")
    return read_preference_pairs(exports[saved]), saved


def _dpo_source() -> tuple[str, str | None, object]:
    """Where the preference pairs come from: (source, saved export name, upload)."""
    source = st.radio(
        "Preference pairs", (SOURCE_SAVED, SOURCE_UPLOAD), key="ft_dpo_source", horizontal=True
    )
    saved_name = None
    dpo_upload = None
    if source == SOURCE_SAVED:
        names = [p.name for p in saved_exports()]
        saved_name = st.selectbox(
            "Saved export (in the playground home)",
            names,
            key="ft_dpo_saved",
            help="The files that **Preferences → Export for DPO** saves.",
        )
        if not names:
            st.caption("No export saved yet.")
    else:
        dpo_upload = st.file_uploader(
            f"Preference JSONL (up to {MAX_UPLOAD_BYTES // 10**6} MB)",
            type=["jsonl", "json"],
            key="ft_dpo_upload",
        )
    return source, saved_name, dpo_upload


def _start_dpo(dpo_base, dpo_steps, dpo_beta, pairs, dpo_name, dpo_replace) -> None:
    """Check the settings, read the pairs and start the DPO run (UserError when one is wrong)."""
    config = DPOConfig(base=dpo_base, max_steps=int(dpo_steps), beta=float(dpo_beta))
    config.validate()
    rows, data_name = _dpo_pairs(*pairs)
    out = adapter_out(dpo_name, dpo_replace)

    def dpo_factory(
        stop, config=config, rows=rows, out=out, data_name=data_name, force=dpo_replace
    ):
        return train_dpo(
            config, rows, out_dir=out, stop_event=stop, data_name=data_name, force=force
        )

    start_job(
        "dpo",
        f"DPO on {dpo_base} with {len(rows)} pairs → {out.name}",
        dpo_factory,
        heavy=True,
        params={"out": str(out)},
    )


def render_dpo_tab() -> None:
    """Train a DPO adapter on saved or uploaded preference pairs."""
    st.caption(
        "Direct preference optimisation: TRL's DPOTrainer makes the chosen answers more likely "
        "than the rejected ones, relative to the base model, by training a LoRA adapter. "
        "Save your votes in **Preferences → Export for DPO** (a JSONL of prompt, chosen, "
        "rejected), or upload such a file, then train here."
    )
    bases = base_models()
    c1, c2 = st.columns(2)
    dpo_base = c1.selectbox(
        "Base model",
        bases,
        key="ft_dpo_base",
        index=default_index(bases),
    )
    with c2:
        pairs = _dpo_source()
    c3, c4, c5 = st.columns(3)
    dpo_steps = c3.number_input("Steps", 1, 1000, 10, key="ft_dpo_steps")
    dpo_beta = c4.number_input(
        "Beta",
        0.01,
        5.0,
        0.1,
        0.05,
        key="ft_dpo_beta",
        help="How far the adapter may move from the base model.",
    )
    st.session_state.setdefault("ft_dpo_name", unique_name("dpo"))
    dpo_name = c5.text_input("Adapter name", key="ft_dpo_name")
    dpo_replace = c5.checkbox(
        "Replace an existing adapter of that name", key="ft_dpo_replace", value=False
    )
    dpo_job = current_job("dpo")
    dpo_busy = dpo_job is not None and dpo_job.running
    if st.button("Train with DPO", key="ft_dpo_start", type="primary", disabled=dpo_busy):
        try:
            _start_dpo(dpo_base, dpo_steps, dpo_beta, pairs, dpo_name, dpo_replace)
            st.rerun()
        except UserError as exc:
            show_user_error(exc)
    job_panel("dpo", draw=_dpo_draw)
    code_expander(
        "the DPO loss",
        [dpo_loss],
        "The loss of each pair from the four log-probabilities. TRL's DPOTrainer, which "
        "trains here, computes the same loss (a test checks it on the same numbers); the work "
        "it adds is getting those log-probabilities: both answers of a batch in one forward "
        "pass, the reference being the base model with the adapter switched off.",
    )
