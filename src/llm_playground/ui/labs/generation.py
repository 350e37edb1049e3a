"""Lab 3 · Generation: every decoding strategy at work, step by step, on real models.
Layout and state only: decoding, samplers, speculative decoding and runners come from
llm_playground.generation."""

from __future__ import annotations

import streamlit as st

from llm_playground.core.errors import UserError
from llm_playground.generation.config import COMPARED_STRATEGIES, MAX_NEW_TOKENS, STRATEGIES
from llm_playground.generation.decoding import (
    DecodingConfig,
    GenerationResult,
    StepRecord,
    decode_simple,
    has_chat_template,
    iter_strategies,
    prepare,
    stream,
)
from llm_playground.generation.penalties import PENALTY_SETTINGS
from llm_playground.generation.runner import (
    at_precision,
    bandwidth_limit,
    memory_bandwidth,
    weight_bytes_per_token,
)
from llm_playground.generation.samplers import (
    CHAIN_SETTINGS,
    ORDER_PRESETS,
    SAMPLER_CLASSES,
    TRANSFORMERS_ORDER,
    Setting,
)
from llm_playground.generation.speculative import draft_models_for
from llm_playground.ui.components import (
    cached_model,
    code_expander,
    current_job,
    esc,
    job_panel,
    model_picker,
    page_header,
    show_user_error,
    start_job,
)
from llm_playground.ui.step_view import step_by_step

EXAMPLES = {
    "Question": "What is the capital of France, and what is it famous for?",
    "Story opening": "Write the first two sentences of a story about a lighthouse keeper.",
    "Haiku": "Write a haiku about the sea.",
    "List": "Give three tips for learning to cook.",
    "Explain": "Explain in one paragraph why the sky is blue.",
    "Rewrite (for prompt lookup)": "Rewrite this paragraph with the word 'old' changed to "
    "'ancient', keeping everything else the same:\n\nThe old lighthouse stood on the rocky "
    "cliff above the harbour. Every night its keeper climbed the spiral stairs, lit the great "
    "lamp and watched the ships pass safely through the narrow channel.",
    "Continue (raw text)": "Once upon a time, in a small village by the sea,",
}
STRATEGY_LABELS = {
    "greedy": "Greedy",
    "beam": "Beam search",
    "top-k": "Top-k sampling",
    "top-p": "Top-p (nucleus) sampling",
    "sample": "Sampler chain",
}
SHORT_LABELS = {"greedy": "Greedy", "beam": "Beam search", "top-k": "Top-k", "top-p": "Top-p"}
# What each sampler stage does, as the stage describes itself (the Order tab's rows).
STAGE_SOURCES = {stage.name: stage.summary for stage in SAMPLER_CLASSES}
CANDIDATES = 15
GEN_SLOT, COMPARE_SLOT = "gen", "gen_compare"

page_header(
    "🎲 Lab 3 · Generation",
    "A language model gives a probability for every possible next token; a decoding strategy "
    "decides which one to write. Pick a model, a prompt and a strategy, watch the text appear, "
    "then step through it: which tokens were likely, what each stage of the sampler chain did "
    "to them, and which one was picked. Beam search shows its live beams; speculative decoding "
    "shows which drafted tokens the model accepted.",
)

state = st.session_state
state.setdefault("gen_prompt", EXAMPLES["Question"])
state.setdefault("gen_order", list(TRANSFORMERS_ORDER))


@st.cache_resource(max_entries=2, show_spinner="Making the int8 copy…")
def _int8_model(name: str):
    return at_precision(cached_model(name), "int8")


@st.cache_resource(show_spinner="Measuring the memory bandwidth once…")
def _bandwidth() -> float:
    return memory_bandwidth()


@st.cache_data(ttl=120, show_spinner=False)
def _draft_choices(name: str) -> list[str]:
    return draft_models_for(name)


def _load_example() -> None:
    state["gen_prompt"] = EXAMPLES[state["gen_example"]]


def _apply_preset() -> None:
    state["gen_order"] = list(ORDER_PRESETS[state["gen_order_preset"]])


def _move(index: int, offset: int) -> None:
    order = state["gen_order"]
    other = index + offset
    if 0 <= other < len(order):
        order[index], order[other] = order[other], order[index]


# --- model, prompt, settings ------------------------------------------------------------


def _prompt_column() -> tuple[str | None, str, object, bool, int]:
    """The model, the prompt, the chat template and the length: (model name, prompt, loaded
    model or None, whether to use the chat template, max new tokens)."""
    model_name = model_picker("Model", key="gen_model", default="smollm2-135m-instruct")
    st.selectbox(
        "Example prompt",
        list(EXAMPLES),
        key="gen_example",
        on_change=_load_example,
        help="Loads a ready prompt into the box; edit it freely.",
    )
    prompt = st.text_area("Prompt", key="gen_prompt", height=110)
    loaded = None
    if model_name:
        try:
            loaded = cached_model(model_name)
        except UserError as exc:
            show_user_error(exc)
    can_chat = loaded is not None and has_chat_template(loaded)
    use_chat = st.toggle(
        "Use the chat template",
        value=can_chat,
        key="gen_chat",
        disabled=not can_chat,
        help="Instruct models expect the prompt wrapped in their chat template "
        "(a user turn, then the assistant's turn opened). Off: the raw text "
        "is continued as it is.",
    )
    use_chat = use_chat and can_chat
    if loaded is not None and not can_chat:
        st.caption(f"{esc(loaded.info.name)} has no chat template: it continues the raw text.")
    max_new = st.number_input(
        "Max new tokens",
        min_value=0,
        max_value=100_000,
        value=48,
        step=8,
        key="gen_max_new",
        help=f"Generation stops here or at the end-of-text token (at most {MAX_NEW_TOKENS:,}).",
    )
    return model_name, prompt, loaded, use_chat, int(max_new)


def _sampling_tab(strategy: str) -> dict:
    """Temperature, top-k, top-p and the seed, as DecodingConfig settings."""
    temperature = st.slider(
        "Temperature",
        0.0,
        2.0,
        1.0,
        0.05,
        key="gen_temperature",
        help="Divides the logits before softmax: below 1 sharpens the "
        "distribution, above 1 flattens it.",
    )
    st.caption("**Temperature 0 means greedy**: the most likely token every time.")
    top_k = st.number_input(
        "Top-k",
        min_value=0,
        max_value=1000,
        value=50,
        step=1,
        key="gen_top_k",
        help="Keeps the k most likely tokens (k ≥ 1; 0 leaves it out of the sampler chain).",
    )
    top_p = st.slider(
        "Top-p",
        0.0,
        1.0,
        0.9,
        0.01,
        key="gen_top_p",
        help="Keeps the most likely tokens until their probabilities add up to p "
        "(0 < p ≤ 1; 1 = off).",
    )
    seed = st.number_input(
        "Seed",
        min_value=0,
        max_value=2**31 - 1,
        value=0,
        step=1,
        key="gen_seed",
        help="The same seed gives the same sample.",
    )
    return {
        "temperature": temperature,
        "top_k": int(top_k) if (top_k or strategy == "top-k") else None,
        "top_p": top_p if (top_p or strategy == "top-p") else None,
        "seed": int(seed),
    }


def _setting_widget(setting: Setting) -> float:
    """A slider (or a number box, for fine steps) for a setting a stage describes."""
    low, high = setting.page_range or (setting.low, setting.high)
    number = int if setting.whole else float
    bounds = (number(low), number(high), number(setting.default), number(setting.step))
    key = f"gen_{setting.field}"
    if setting.number_box:
        decimals = len(f"{setting.step:g}".split(".")[-1])
        return st.number_input(
            setting.label, *bounds, format=f"%.{decimals}f", key=key, help=setting.help
        )
    return st.slider(setting.label, *bounds, key=key, help=setting.help)


def _chain_tab() -> dict:
    """The further sampler stages (min-p, typical-p, ε, η, top-nσ, XTC), one widget per
    setting they describe."""
    st.caption(
        "Used by **Sampler chain** (and on top of top-k / top-p sampling). "
        "0 (or 1 for typical-p) leaves a stage out."
    )
    return {setting.field: _setting_widget(setting) for setting in CHAIN_SETTINGS}


def _order_tab() -> None:
    """The order of the sampler stages: a preset, then one row per stage with ↑ and ↓."""
    st.selectbox(
        "Preset",
        list(ORDER_PRESETS),
        key="gen_order_preset",
        on_change=_apply_preset,
        help="transformers runs temperature first; llama.cpp runs it last, so its "
        "truncation stages see the temperature-1 probabilities.",
    )
    for index, name in enumerate(state["gen_order"]):
        c1, c2, c3 = st.columns([6, 1, 1])
        c1.markdown(f"{index + 1}. `{name}` — {STAGE_SOURCES[name]}")
        c2.button("↑", key=f"gen_up_{name}", on_click=_move, args=(index, -1))
        c3.button("↓", key=f"gen_down_{name}", on_click=_move, args=(index, 1))
    st.caption("Penalties and DRY always come first.")


def _beam_tab() -> dict:
    """The number of beams and the length penalty."""
    num_beams = st.slider("Number of beams", 1, 8, 4, key="gen_beams")
    length_penalty = st.slider(
        "Length penalty",
        -2.0,
        3.0,
        1.0,
        0.1,
        key="gen_length_penalty",
        help="Finished beams are scored by log-probability / length^penalty: "
        "above 0 favours longer outputs, below 0 shorter ones.",
    )
    return {"num_beams": num_beams, "length_penalty": length_penalty}


def _penalties_tab() -> dict:
    """The penalties that act on every strategy: no-repeat n-gram, repetition, presence,
    frequency and DRY."""
    no_repeat = st.slider(
        "No-repeat n-gram size",
        0,
        6,
        0,
        key="gen_ngram",
        help="Forbids repeating any n-gram of this size (0 = off).",
    )
    repetition = st.slider(
        "Repetition penalty",
        1.0,
        2.0,
        1.0,
        0.05,
        key="gen_repetition",
        help="Makes tokens already in the text less likely (1 = off; CTRL, Keskar et al. 2019).",
    )
    settings = {"no_repeat_ngram_size": no_repeat, "repetition_penalty": repetition}
    for setting in PENALTY_SETTINGS:
        settings[setting.field] = _setting_widget(setting)
    return settings


def _speed_tab(model_name: str | None) -> tuple[dict, str]:
    """Speculative decoding and the precision: (DecodingConfig settings, precision)."""
    speculative = st.radio(
        "Speculative decoding",
        ["off", "prompt-lookup", "draft"],
        key="gen_speculative",
        horizontal=True,
        help="Draft several tokens cheaply and let the model check them in one forward pass.",
    )
    draft_tokens = st.slider("Draft tokens", 1, 32, 10, key="gen_draft_tokens")
    draft_name = None
    if speculative == "draft" and model_name:
        choices = _draft_choices(model_name)
        if choices:
            draft_name = st.selectbox("Draft model", choices, key="gen_draft_model")
        else:
            st.info(
                f"No smaller model with the tokenizer of {model_name} is available here. "
                "Train two Lab 2 runs on the same tokenizer to get a pair, or use prompt "
                "lookup."
            )
    precision = st.radio(
        "Precision",
        ["fp32", "int8"],
        key="gen_precision",
        horizontal=True,
        help="int8: the linear layers keep int8 weights (4x fewer bytes to read per token).",
    )
    settings = {
        "speculative": None if speculative == "off" else speculative,
        "draft_tokens": draft_tokens,
        "draft_model": draft_name,
    }
    return settings, precision


def _settings_column(model_name: str | None) -> tuple[str, dict, str]:
    """The strategy and its settings, one tab each: (strategy, DecodingConfig settings,
    precision)."""
    strategy = st.radio(
        "Strategy", STRATEGIES, key="gen_strategy", horizontal=True, format_func=STRATEGY_LABELS.get
    )
    samp, chain_tab, order_tab, beam, common, speed = st.tabs(
        ["Sampling", "Sampler chain", "Order", "Beams", "Penalties", "Speed"]
    )
    settings: dict = {}
    with samp:
        settings |= _sampling_tab(strategy)
    with chain_tab:
        settings |= _chain_tab()
    with order_tab:
        _order_tab()
    with beam:
        settings |= _beam_tab()
    with common:
        settings |= _penalties_tab()
    with speed:
        speed_settings, precision = _speed_tab(model_name)
        settings |= speed_settings
    return strategy, settings, precision


def _checked_config(strategy, settings, max_new, loaded, prompt, use_chat):
    """The DecodingConfig of these settings, checked against the model and the prompt; None
    (with the reason beside the widgets) when a setting is out of range."""
    try:
        config = DecodingConfig(
            strategy=strategy,
            sampler_order=tuple(state["gen_order"]),
            max_new_tokens=max_new,
            **settings,
        )
        if loaded is not None:
            prepare(loaded, prompt, config, use_chat)
    except UserError as exc:
        show_user_error(exc)
        return None
    st.caption(
        f"Will run: {esc(config.describe())}"
        + (
            " — temperature 0, so this is greedy."
            if config.strategy in ("top-k", "top-p", "sample") and config.temperature == 0
            else ""
        )
    )
    return config


# --- the run ----------------------------------------------------------------------------


def _busy() -> bool:
    """Whether a generation or a comparison of this session is still running."""
    gen_job = current_job(GEN_SLOT)
    compare_job = current_job(COMPARE_SLOT)
    return (gen_job is not None and gen_job.running) or (
        compare_job is not None and compare_job.running
    )


def _start_generation(model_name, loaded, prompt, config, use_chat, precision) -> None:
    """Load the model at the chosen precision (and the draft model) and start the run."""
    try:
        model = _int8_model(model_name) if precision == "int8" else loaded
        draft = None
        if config.speculative == "draft":
            draft = cached_model(config.draft_model)
            draft = at_precision(draft, precision)
    except UserError as exc:
        show_user_error(exc)
        return

    def factory(stop, model=model, prompt=prompt, config=config, chat=use_chat, draft=draft):
        return stream(
            model, prompt, config, chat, candidates=CANDIDATES, stop_event=stop, draft=draft
        )

    start_job(
        GEN_SLOT,
        f"generate with {model_name}",
        factory,
        heavy=False,
        params={"model": model_name, "config": config, "precision": precision},
    )
    state["gen_step"] = 0


# --- output (streams while the job runs) ------------------------------------------------


def _records(events: list) -> tuple[list[StepRecord], GenerationResult | None]:
    result = next((e for e in reversed(events) if isinstance(e, GenerationResult)), None)
    return [e for e in events if isinstance(e, StepRecord)], result


def _speculative_html(steps: list[StepRecord]) -> str:
    """The text token by token: accepted drafts in green, rejected drafts struck out in red."""
    parts = []
    for step in steps:
        for rejected in step.rejected[:1]:
            parts.append(
                f"<span class='spec-rejected' title='draft token rejected' style='color:#b00020;"
                f"text-decoration:line-through'>{esc(rejected)}</span>"
            )
        style = "background:#c8efc8" if step.source == "draft" else ""
        kind = "spec-accepted" if step.source == "draft" else "spec-model"
        parts.append(
            f"<span class='{kind}' title='pass {step.forward_pass}' style='{style}'>"
            f"{esc(step.token)}</span>"
        )
    return "".join(parts)


def _draw_output(job, events) -> None:
    steps, result = _records(events)
    st.subheader("Output")
    text = result.text if result else (steps[-1].text if steps else "")
    st.markdown(
        f"<div class='gen-output' style='white-space: pre-wrap; border: 1px solid #ddd; "
        f"border-radius: 6px; padding: 0.8em; min-height: 3em'>{esc(text)}"
        f"{'' if result else ' ▌'}</div>",
        unsafe_allow_html=True,
    )
    if job.running:
        st.caption(f"Generating… {len(steps)} tokens so far")
    if result is None:
        return
    m1, m2, m3, m4 = st.columns(4)
    m1.metric("New tokens", result.new_tokens)
    m2.metric("Time", f"{result.time_s:.2f} s")
    m3.metric("Tokens/s", f"{result.tokens_per_s:.1f}")
    m4.metric(
        "Ended by",
        {"eos": "end of text", "length": "token limit", "stopped": "Stop"}[result.finish_reason],
    )
    if result.speculative:
        st.markdown("**Speculative decoding**: green = drafted and accepted, red = rejected")
        st.markdown(
            f"<div class='spec-view' style='white-space: pre-wrap; border: 1px solid #ddd; "
            f"border-radius: 6px; padding: 0.8em'>{_speculative_html(result.steps)}</div>",
            unsafe_allow_html=True,
        )
        s1, s2, s3 = st.columns(3)
        s1.metric("Forward passes", result.forward_passes)
        s2.metric("Tokens per pass", f"{result.tokens_per_pass:.2f}")
        s3.metric("Accepted drafts", f"{result.accepted_draft_tokens} of {result.drafted_tokens}")


# --- step by step -----------------------------------------------------------------------


def _step_by_step_section() -> None:
    """After a finished run: its speed against the memory-bandwidth limit, then each step."""
    gen_job = current_job(GEN_SLOT)
    result = None
    if gen_job is not None and not gen_job.running:
        result = _records(gen_job.snapshot())[1]
    if result is None or not result.steps:
        return
    cfg: DecodingConfig = gen_job.params["config"]
    with st.expander("Speed against the memory-bandwidth limit"):
        if st.button("Measure", key="gen_measure"):
            name = gen_job.params["model"]
            int8 = gen_job.params.get("precision") == "int8"
            model = _int8_model(name) if int8 else cached_model(name)
            bandwidth = _bandwidth()
            limit = bandwidth_limit(model.model, bandwidth)
            st.caption(
                f"Weights read per token: {weight_bytes_per_token(model.model) / 1e6:,.0f} MB; "
                f"memory bandwidth {bandwidth / 1e9:.1f} GB/s; so at most {limit:.1f} tokens/s. "
                f"This run: {result.tokens_per_s:.1f} tokens/s "
                f"({100 * result.tokens_per_s / limit:.0f}% of the limit)."
            )
    step_by_step(result, cfg)


# --- comparison grid --------------------------------------------------------------------


def _start_comparison(model_name, loaded, prompt, config, use_chat) -> None:
    """Run the classic four strategies with these settings, one after the other."""

    def compare_factory(stop, loaded=loaded, prompt=prompt, config=config, chat=use_chat):
        return iter_strategies(loaded, prompt, config, chat, stop_event=stop)

    start_job(
        COMPARE_SLOT,
        f"compare strategies with {model_name}",
        compare_factory,
        heavy=True,
        params={"prompt": prompt},
    )


def _draw_grid(job, results) -> None:
    st.subheader("Every strategy, same prompt")
    st.caption(f"Prompt: {esc(str(job.params.get('prompt', ''))[:200])}")
    if job.running and not job.queued:
        current = COMPARED_STRATEGIES[min(len(results), len(COMPARED_STRATEGIES) - 1)]
        st.caption(
            f"Running {SHORT_LABELS[current]}… {len(results)} of {len(COMPARED_STRATEGIES)} "
            "strategies done"
        )
    cols = st.columns(len(COMPARED_STRATEGIES))
    for col, name, res in zip(cols, COMPARED_STRATEGIES, results, strict=False):
        with col:
            st.markdown(
                f"**{SHORT_LABELS[name]}**"
                + (" (temperature 0: greedy)" if res.strategy != name else "")
            )
            st.markdown(
                f"<div style='white-space: pre-wrap; font-size: 0.9em; border: 1px solid #ddd; "
                f"border-radius: 6px; padding: 0.5em; min-height: 6em'>{esc(res.text)}</div>",
                unsafe_allow_html=True,
            )
            st.caption(
                f"{res.new_tokens} tokens · {res.time_s:.2f} s · {res.tokens_per_s:.1f} tokens/s"
            )


# --- the page ---------------------------------------------------------------------------

left, right = st.columns([3, 2], gap="large")
with left:
    model_name, prompt, loaded, use_chat, max_new = _prompt_column()
with right:
    strategy, settings, precision = _settings_column(model_name)
config = _checked_config(strategy, settings, max_new, loaded, prompt, use_chat)
ready = config is not None and loaded is not None and not _busy()

b1, b2, _ = st.columns([1, 2, 2])
if b1.button("Generate", key="gen_run", type="primary", disabled=not ready):
    _start_generation(model_name, loaded, prompt, config, use_chat, precision)
compare_clicked = b2.button(
    "Compare all strategies",
    key="gen_compare",
    disabled=not ready,
    help="Runs greedy, beam, top-k and top-p with your settings, side by side.",
)

job_panel(GEN_SLOT, draw=_draw_output, progress=False)
if current_job(GEN_SLOT) is None:
    st.info("Pick a strategy and press **Generate**.")
_step_by_step_section()
if compare_clicked and ready:
    _start_comparison(model_name, loaded, prompt, config, use_chat)
job_panel(COMPARE_SLOT, draw=_draw_grid, progress=False, stop_label="Stop the comparison")
code_expander(
    "the decoding loop",
    [decode_simple],
    "One step per token, top to bottom: logits, penalties, temperature, filters, sample, "
    "append. **Generate** picks the same tokens (a test checks it, greedy and seeded "
    "sampling) but keeps the keys and values of earlier tokens in a cache instead of reading "
    "the whole text again at every step, runs the model's layers fused for this CPU, stops at "
    "the end-of-text token, lets you reorder the samplers, and records what each stage did "
    "for the step-by-step view.",
)
