"""Lab 4 · Fine-tuner: a pretrained base beside its LoRA adapter, training adapters, votes and DPO.
Layout and state only: training, data and decoding come from llm_playground.finetuning.sft, .dpo,
.instructions and .decoding; the voting screens from ui/prefs_view."""

from __future__ import annotations

import altair as alt
import pandas as pd
import streamlit as st

from llm_playground.core.errors import UserError
from llm_playground.core.paths import unique_name
from llm_playground.finetuning.events import (
    SFTDone,
    SFTEval,
    SFTStarted,
    SFTStep,
)
from llm_playground.finetuning.instructions import (
    load_examples,
    parse_instructions,
    prompt_for_model,
    split_heldout,
)
from llm_playground.finetuning.lora import (
    DEFAULT_TARGETS,
    LoRALinear,
    adapter_details,
    heldout_figure,
)
from llm_playground.finetuning.outputs import MAX_UPLOAD_BYTES
from llm_playground.finetuning.preferences.ratings import bradley_terry_simple
from llm_playground.finetuning.sft import AdapterNotes, SFTConfig, train_sft
from llm_playground.generation.decoding import DecodingConfig, generate
from llm_playground.generation.registry import list_models
from llm_playground.ui.components import (
    cached_model,
    code_expander,
    current_job,
    esc,
    job_panel,
    machine_load_caption,
    page_header,
    show_user_error,
    start_job,
)
from llm_playground.ui.finetuner import best_of_tab, dpo_tab, reward_tab, rl_tab
from llm_playground.ui.finetuner.common import adapter_out, uploaded_text

DEFAULT_BASE = "gemma3-270m"
DEFAULT_ADAPTER = "gemma3-270m-instruct"
EXAMPLES = {
    "Capital of France": ("What is the capital of France?", ""),
    "Uppercase a line": (
        "Convert the following line to uppercase.",
        "To be, or not to be, that is the question.",
    ),
    "A small sum": ("What is 12 plus 30?", ""),
    "First word": (
        "What is the first word of the following line?",
        "Now is the winter of our discontent",
    ),
    "Who wrote it": ("Who wrote Romeo and Juliet?", ""),
    "Small talk": ("How are you today?", ""),
}
TARGET_CHOICES = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")

page_header(
    "🎛️ Lab 4 · Fine-tuner",
    "A pretrained base model only continues text. Instruction tuning teaches it to answer: a "
    "LoRA adapter trains under 1 % of the weights on (instruction, response) pairs. Compare the "
    "base with the base + adapter on the same prompt and settings, train your own adapter, vote "
    "on pairs of answers, and turn those votes into a preference-tuned (DPO) adapter, or into "
    "a reward model that picks the best of n answers and steers reinforcement learning (GRPO).",
)

state = st.session_state


# --- helpers ------------------------------------------------------------------------------


def _models() -> dict:
    return {i.name: i for i in list_models(include_hub=False) if i.available}


def _decoding_settings(prefix: str) -> DecodingConfig | None:
    c1, c2, c3, c4 = st.columns(4)
    strategy = c1.selectbox(
        "Decoding", ("greedy", "top-p", "top-k", "beam"), key=f"{prefix}_strategy"
    )
    temperature = c2.slider(
        "Temperature",
        0.0,
        1.5,
        0.7,
        0.05,
        key=f"{prefix}_temperature",
        disabled=strategy in ("greedy", "beam"),
        help="Used by top-p and top-k sampling only.",
    )
    max_new = c3.number_input("Max new tokens", 1, 512, 48, 8, key=f"{prefix}_max_new")
    seed = c4.number_input(
        "Seed", 0, 2**31 - 1, 0, 1, key=f"{prefix}_seed", help="The same seed for both models."
    )
    try:
        return DecodingConfig(
            strategy=strategy,
            temperature=temperature,
            max_new_tokens=int(max_new),
            seed=int(seed),
            num_beams=3,
        )
    except UserError as exc:
        show_user_error(exc)
        return None


def _answer(name: str, instruction: str, extra: str, wrap: bool, config: DecodingConfig) -> dict:
    infos = _models()
    info = infos.get(name)
    if info is None:
        raise UserError(f"model '{name}' is not available")
    loaded = cached_model(name)
    has_template = bool(getattr(loaded.tokenizer, "chat_template", None)) and bool(info.chat)
    prompt, chat = prompt_for_model(
        instruction, extra, adapter_meta=adapter_details(info), chat=has_template, wrap=wrap
    )
    result = generate(loaded, prompt, config, chat_template=chat)
    return {
        "name": name,
        "prompt": prompt,
        "chat": chat,
        "text": result.text,
        "time_s": result.time_s,
        "new_tokens": result.new_tokens,
        "tokens_per_s": result.tokens_per_s,
        "finish": result.finish_reason,
    }


def _output_box(text: str, key: str) -> None:
    """The raw text a model wrote. One line of HTML, so Markdown never formats it
    ('### Input:' stays text, not a heading); newlines become <br>."""
    body = esc(text).replace("\n", "<br>") or "<i>(empty)</i>"
    st.markdown(
        f"<div class='ft-output' id='{esc(key)}' style='white-space: pre-wrap; font-family: "
        f"monospace; font-size: 0.9em; border: 1px solid #ddd; border-radius: 6px; padding: 0.8em; "
        f"min-height: 4em'>{body}</div>",
        unsafe_allow_html=True,
    )


# --- side by side -------------------------------------------------------------------------


def _load_example() -> None:
    state["ft_instruction"], state["ft_input"] = EXAMPLES[state["ft_example"]]


def _pick_pair(infos: dict) -> tuple[str, str]:
    """The two models to compare: by default a base on the left, its adapter on the right."""
    names = list(infos)
    adapters = [n for n, i in infos.items() if i.kind == "adapter"]
    default_right = (
        DEFAULT_ADAPTER if DEFAULT_ADAPTER in adapters else (adapters[0] if adapters else names[0])
    )
    default_left = (
        infos[default_right].base
        if default_right in infos and infos[default_right].base in names
        else (DEFAULT_BASE if DEFAULT_BASE in names else names[0])
    )
    labels = {n: infos[n].label for n in names}
    c1, c2 = st.columns(2)
    left = c1.selectbox(
        "Left: a base model (or an adapter)",
        names,
        index=names.index(default_left),
        key="ft_left",
        format_func=labels.get,
    )
    right = c2.selectbox(
        "Right: an adapter (or any model)",
        names,
        index=names.index(default_right),
        key="ft_right",
        format_func=labels.get,
    )
    if not adapters:
        st.info("No adapter yet: train one in **Train an adapter**.")
    return left, right


def _prompt_inputs() -> tuple[str, str, bool]:
    """The instruction, its optional input, and whether to wrap them in the instruction format."""
    state.setdefault("ft_instruction", EXAMPLES["Capital of France"][0])
    state.setdefault("ft_input", EXAMPLES["Capital of France"][1])
    st.selectbox("Example", list(EXAMPLES), key="ft_example", on_change=_load_example)
    instruction = st.text_area("Instruction", key="ft_instruction", height=80)
    extra = st.text_input(
        "Input (optional)",
        key="ft_input",
        help="Text the instruction works on, e.g. the line to convert.",
    )
    wrap = st.toggle(
        "Wrap in the instruction format",
        value=True,
        key="ft_wrap",
        help="Both models get `### Instruction: … ### Response:` (the format the "
        "adapter was trained with). Off: a base model gets the raw text. "
        "Chat models use their chat template.",
    )
    return instruction, extra, wrap


def _show_outputs(outputs: list[dict], infos: dict) -> None:
    """The two answers side by side, each with its time, length and held-out loss."""
    cols = st.columns(2)
    for col, out, side in zip(cols, outputs, ("left", "right"), strict=True):
        with col:
            info = infos.get(out["name"])
            kind = "LoRA adapter" if info is not None and info.kind == "adapter" else "base model"
            st.markdown(f"**{esc(out['name'])}** · {kind}")
            _output_box(out["text"].strip(), f"ft-output-{side}")
            loss, where = heldout_figure(out["name"], infos)
            m1, m2, m3 = st.columns(3)
            m1.metric("Time", f"{out['time_s']:.2f} s")
            m2.metric(
                "New tokens",
                out["new_tokens"],
                help="Stopped at end of text" if out["finish"] == "eos" else "Hit max new tokens",
            )
            m3.metric(
                "Held-out loss",
                f"{loss:.3f}" if loss is not None else "—",
                help=f"Mean loss per response token on the fixed held-out slice ({where})"
                if loss is not None
                else "No held-out figure recorded for this model",
            )
            st.caption(
                "Stopped by itself (end-of-text token)."
                if out["finish"] == "eos"
                else "Still going: cut at max new tokens."
            )
            with st.expander("Exact prompt"):
                st.code(
                    out["prompt"] + ("\n(wrapped in the chat template)" if out["chat"] else ""),
                    language=None,
                )
    st.caption("Same prompt, decoding settings and seed for both. Held-out loss: lower is better.")


def _side_by_side_tab() -> None:
    """A base model and an adapter answer the same prompt with the same settings."""
    infos = _models()
    if not infos:
        st.warning("No model is available. Run `make install` to install the offline models.")
        return
    left, right = _pick_pair(infos)
    instruction, extra, wrap = _prompt_inputs()
    config = _decoding_settings("ft")
    if st.button(
        "Generate both",
        key="ft_generate",
        type="primary",
        disabled=config is None or not instruction.strip(),
    ):
        try:
            with st.spinner("Generating with both models…"):
                state["ft_outputs"] = [
                    _answer(n, instruction, extra, wrap, config) for n in (left, right)
                ]
        except UserError as exc:
            show_user_error(exc)
    outputs = state.get("ft_outputs")
    if outputs:
        _show_outputs(outputs, infos)


# --- training ----------------------------------------------------------------------------


def _sft_draw(job, events: list) -> None:
    """What the page shows of an SFT run: size, losses, the loss curve, the result."""
    started = next((e for e in events if isinstance(e, SFTStarted)), None)
    steps = [e for e in events if isinstance(e, SFTStep)]
    evals = [e for e in events if isinstance(e, SFTEval)]
    done = next((e for e in events if isinstance(e, SFTDone)), None)
    if started:
        m1, m2, m3 = st.columns(3)
        m1.metric("Trainable parameters", f"{started.trainable:,}")
        m2.metric("Share of the model", f"{started.share:.3f} %")
        m3.metric("Held-out loss before", f"{evals[0].heldout_loss:.3f}" if evals else "measuring…")
    elif job.running:
        st.caption("Loading the base model…")
    if steps:
        df = pd.DataFrame({"step": [s.step for s in steps], "loss": [s.loss for s in steps]})
        chart = (
            alt.Chart(df)
            .mark_line(point=len(df) < 40)
            .encode(
                x=alt.X("step:Q", title="step"),
                y=alt.Y("loss:Q", title="training loss (response tokens)"),
            )
        )
        st.altair_chart(chart, width="stretch")
        st.caption(f"{steps[-1].s_per_step:.2f} s/step, {steps[-1].tokens_per_s:.0f} tokens/s")
    if done and done.step == 0:
        st.warning("Stopped before the first step: nothing was saved.")
    elif done:
        msg = (
            f"Held-out loss {done.heldout_loss_before:.3f} → {done.heldout_loss_after:.3f} "
            f"after {done.step} steps."
        )
        if done.out_dir:
            st.success(
                msg + f" Adapter saved to `{esc(done.out_dir)}`: it is listed in Labs 3–5 now."
            )
        else:
            st.warning(msg + " Nothing was saved.")


def _start_sft(form: dict) -> None:
    config = SFTConfig(
        base=form["base"],
        lora_r=int(form["r"]),
        lora_alpha=int(form["alpha"]),
        lora_dropout=float(form["dropout"]),
        target_modules=tuple(form["targets"]),
        lr=float(form["lr"]),
        max_steps=int(form["max_steps"]),
        seq_len=int(form["seq_len"]),
        batch_size=int(form["batch"]),
    ).validate()
    if form["data"] == "upload a JSONL file":
        upload = form["upload"]
        examples = parse_instructions(uploaded_text(upload, "JSONL file"), upload.name)
        data_name = upload.name
    else:
        examples = load_examples(form["data"])
        data_name = form["data"]
    train, heldout = split_heldout(examples)
    out = adapter_out(form["name"], form["replace"])
    force = form["replace"]

    def factory(stop):
        return train_sft(
            config,
            train,
            heldout,
            out_dir=out,
            stop_event=stop,
            notes=AdapterNotes(data_name=data_name),
            force=force,
        )

    start_job(
        "sft",
        f"LoRA r={config.lora_r} on {config.base}, {data_name} → {out.name}",
        factory,
        heavy=True,
        params={"config": config.settings(), "out": str(out)},
    )


def _sft_data_and_name(bases: list[str]) -> dict:
    """The base model, the data, and the adapter's name."""
    base = st.selectbox(
        "Base model",
        bases,
        key="ft_train_base",
        index=bases.index("smollm2-135m-instruct") if "smollm2-135m-instruct" in bases else 0,
        help="gemma3-270m is a pretrained base: the clearest lesson, but about twice "
        "as slow per step as SmolLM2-135M (already instruction-tuned).",
    )
    data_choice = st.radio(
        "Data",
        ("offline", "alpaca", "upload a JSONL file"),
        key="ft_train_data",
        horizontal=True,
        help="offline: chatterbot-corpus Q/A pairs + exact derived tasks (ships "
        "with the app); alpaca: tatsu-lab/alpaca (needs network); or your "
        "own JSONL with instruction, input, output.",
    )
    upload = None
    if data_choice == "upload a JSONL file":
        upload = st.file_uploader(
            f"Instruction JSONL (up to {MAX_UPLOAD_BYTES // 10**6} MB)",
            type=["jsonl", "json"],
            key="ft_train_upload",
        )
    state.setdefault("ft_train_name", unique_name("my-adapter"))
    name = st.text_input(
        "Adapter name",
        key="ft_train_name",
        help="Saved under the playground home's adapters/ folder.",
    )
    replace = st.checkbox(
        "Replace an existing adapter of that name", key="ft_train_replace", value=False
    )
    return {"base": base, "data": data_choice, "upload": upload, "name": name, "replace": replace}


def _lora_settings() -> dict:
    """LoRA's rank, alpha, dropout and the modules it adapts."""
    r = st.slider("LoRA rank r", 1, 64, 8, key="ft_train_r")
    alpha = st.slider(
        "LoRA alpha",
        1,
        128,
        16,
        key="ft_train_alpha",
        help="The update is scaled by alpha / r.",
    )
    dropout = st.slider("LoRA dropout", 0.0, 0.5, 0.05, 0.01, key="ft_train_dropout")
    targets = st.multiselect(
        "Target modules", TARGET_CHOICES, default=list(DEFAULT_TARGETS), key="ft_train_targets"
    )
    return {"r": r, "alpha": alpha, "dropout": dropout, "targets": targets}


def _sft_form(infos: dict) -> dict:
    """The adapter's data, name and LoRA settings, and the training length."""
    bases = [n for n, i in infos.items() if i.kind in ("offline", "checkpoint")]
    c1, c2 = st.columns(2)
    with c1:
        form = _sft_data_and_name(bases)
    with c2:
        form |= _lora_settings()
    c3, c4, c5, c6 = st.columns(4)
    lr = c3.number_input("Learning rate", 1e-6, 1e-1, 5e-4, format="%.0e", key="ft_train_lr")
    max_steps = c4.number_input("Steps", 1, 10_000, 30, key="ft_train_steps")
    seq_len = c5.number_input("Sequence length", 16, 2048, 128, 16, key="ft_train_seq")
    batch = c6.number_input("Batch size", 1, 64, 4, key="ft_train_batch")
    return form | {"lr": lr, "max_steps": max_steps, "seq_len": seq_len, "batch": batch}


def _saved_adapters_table() -> None:
    """The adapters saved so far, with their held-out losses before and after."""
    saved = [i for i in _models().values() if i.kind == "adapter"]
    if saved:
        st.markdown("**Saved adapters** (listed in Labs 3–5)")
        st.dataframe(
            pd.DataFrame(
                [
                    {
                        "adapter": i.name,
                        "base": i.base,
                        "held-out loss before": (i.details or {}).get("heldout_loss_before"),
                        "after": (i.details or {}).get("heldout_loss_after"),
                        "trainable": (i.details or {}).get("trainable_parameters"),
                        "data": (i.details or {}).get("data"),
                        "folder": str(i.path),
                    }
                    for i in saved
                ]
            ),
            hide_index=True,
            key="ft_saved_table",
        )


def _train_tab() -> None:
    """Train a LoRA adapter on instruction data, then list the saved adapters."""
    form = _sft_form(_models())
    sft_job = current_job("sft")
    busy = sft_job is not None and sft_job.running
    if st.button("Train", key="ft_train_start", type="primary", disabled=busy):
        try:
            _start_sft(form)
            st.rerun()
        except UserError as exc:
            show_user_error(exc)
    machine_load_caption()
    job_panel("sft", draw=_sft_draw)
    _saved_adapters_table()
    code_expander(
        "a LoRA layer",
        [LoRALinear],
        "The adapter on one linear layer: the frozen W x plus (alpha / r) · B A x. Training "
        "here wraps the model's layers with peft's LoRA layers, which compute the same output "
        "(a test checks it with the same A and B) and add dropout, several adapters per "
        "layer, and merging B A into W for a model that runs as fast as the base.",
    )


# --- votes and preferences ------------------------------------------------------------------

try:
    from llm_playground.ui import prefs_view
except ImportError:  # the preference screens are not installed in this build
    prefs_view = None


def _generate_pair(prompt: str):
    """Two responses to the prompt: the models picked in Side by side, same settings and seed."""
    left_name = state.get("ft_left") or DEFAULT_BASE
    right_name = state.get("ft_right") or DEFAULT_ADAPTER
    config = DecodingConfig(
        strategy=state.get("ft_strategy", "greedy"),
        temperature=float(state.get("ft_temperature", 0.7)),
        max_new_tokens=int(state.get("ft_max_new", 48)),
        seed=int(state.get("ft_seed", 0)),
    )
    wrap = bool(state.get("ft_wrap", True))
    a = _answer(left_name, prompt, "", wrap, config)
    b = _answer(right_name, prompt, "", wrap, config)
    return (a["text"].strip(), left_name), (b["text"].strip(), right_name)


def _vote_tab():
    """Vote on two answers; returns the preference store chosen (None without the screens)."""
    if prefs_view is None:
        st.info("The voting screen is not available in this build.")
        return None
    st.caption(
        "Two answers to your prompt from the models picked in **Side by side** (same "
        "decoding settings), in random positions; the names show after your vote."
    )
    store = prefs_view.store_chooser()
    prefs_view.render_voting(store, _generate_pair)
    return store


def _preferences_tab(store) -> None:
    """The votes so far: tallies, ratings and the export for DPO."""
    if prefs_view is None:
        st.info("Preference statistics are not available in this build.")
    else:
        prefs_view.render_stats(store)
    code_expander(
        "Bradley–Terry ratings",
        [bradley_terry_simple],
        "The textbook fit, one simple update repeated until the strengths settle. The ratings "
        "above come from Newton's method, which reaches the same strengths (a test checks it) "
        "in a handful of steps instead of hundreds, gives the 95 % intervals from its "
        "curvature, and adds a weak prior when a model never lost or never won.",
    )


# --- DPO ------------------------------------------------------------------------------------


# --- the page ---------------------------------------------------------------------------

tab_side, tab_train, tab_vote, tab_prefs, tab_dpo, tab_reward, tab_best, tab_rl = st.tabs(
    [
        "Side by side",
        "Train an adapter",
        "Vote",
        "Preferences",
        "DPO",
        "Reward model",
        "Best-of-n",
        "RL (GRPO)",
    ]
)
with tab_side:
    _side_by_side_tab()
with tab_train:
    _train_tab()
with tab_vote:
    store = _vote_tab()
with tab_prefs:
    _preferences_tab(store)
with tab_dpo:
    dpo_tab.render_dpo_tab()
with tab_reward:
    reward_tab.render_reward_tab(store)
with tab_best:
    best_of_tab.render_best_of_tab()
with tab_rl:
    rl_tab.render_rl_tab()
