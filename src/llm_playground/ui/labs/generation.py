"""Lab 3 · Generation: every decoding strategy at work, step by step, on real models.
Layout and state only: the decoding loop and its records come from llm_playground.generation.decoding."""

from __future__ import annotations

import altair as alt
import pandas as pd
import streamlit as st

from llm_playground.core.errors import UserError
from llm_playground.generation.decoding import (
    STRATEGIES,
    DecodingConfig,
    GenerationResult,
    StepRecord,
    candidate_rows,
    has_chat_template,
    iter_strategies,
    prepare,
    stream,
    visible,
)
from llm_playground.ui.components import (
    cached_model,
    esc,
    job_manager,
    model_picker,
    page_header,
    show_user_error,
)

EXAMPLES = {
    "Question": "What is the capital of France, and what is it famous for?",
    "Story opening": "Write the first two sentences of a story about a lighthouse keeper.",
    "Haiku": "Write a haiku about the sea.",
    "List": "Give three tips for learning to cook.",
    "Explain": "Explain in one paragraph why the sky is blue.",
    "Continue (raw text)": "Once upon a time, in a small village by the sea,",
}
STRATEGY_LABELS = {
    "greedy": "Greedy",
    "beam": "Beam search",
    "top-k": "Top-k sampling",
    "top-p": "Top-p (nucleus) sampling",
}
SHORT_LABELS = {"greedy": "Greedy", "beam": "Beam search", "top-k": "Top-k", "top-p": "Top-p"}
CANDIDATES = 15
COLOURS = alt.Scale(domain=["picked", "kept", "cut"], range=["#e4572e", "#4c78a8", "#c7c7c7"])

page_header(
    "🎲 Lab 3 · Generation",
    "A language model gives a probability for every possible next token; a decoding strategy "
    "decides which one to write. Pick a model, a prompt and a strategy, watch the text appear, "
    "then step through it: which tokens were likely, what temperature did to them, what top-k "
    "and top-p cut away, and which one was picked. Beam search shows its live beams and the winner.",
)

state = st.session_state
state.setdefault("gen_prompt", EXAMPLES["Question"])


def _load_example() -> None:
    state["gen_prompt"] = EXAMPLES[state["gen_example"]]


# --- model, prompt, settings ------------------------------------------------------------

left, right = st.columns([3, 2], gap="large")
with left:
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
        help="Generation stops here or at the end-of-text token.",
    )

with right:
    strategy = st.radio(
        "Strategy", STRATEGIES, key="gen_strategy", horizontal=True, format_func=STRATEGY_LABELS.get
    )
    samp, beam, common = st.tabs(["Sampling", "Beams", "Penalties"])
    with samp:
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
            help="Top-k sampling keeps the k most likely tokens (k ≥ 1).",
        )
        top_p = st.slider(
            "Top-p",
            0.0,
            1.0,
            0.9,
            0.01,
            key="gen_top_p",
            help="Nucleus sampling keeps the most likely tokens until their "
            "probabilities add up to p (0 < p ≤ 1).",
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
    with beam:
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
    with common:
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
            help="Makes tokens already in the text less likely (1 = off).",
        )

config = None
try:
    config = DecodingConfig(
        strategy=strategy,
        temperature=temperature,
        top_k=int(top_k),
        top_p=top_p,
        num_beams=num_beams,
        length_penalty=length_penalty,
        no_repeat_ngram_size=no_repeat,
        repetition_penalty=repetition,
        max_new_tokens=int(max_new),
        seed=int(seed),
    )
    if loaded is not None:
        prepare(loaded, prompt, config, use_chat)
except UserError as exc:
    show_user_error(exc)
    config = None
else:
    st.caption(
        f"Will run: {esc(config.describe())}"
        + (
            " — temperature 0, so this is greedy."
            if config.strategy in ("top-k", "top-p") and config.temperature == 0
            else ""
        )
    )

manager = job_manager()
job = manager.get(state.get("gen_job"))
running = job is not None and job.running

b1, b2, _ = st.columns([1, 2, 2])
if b1.button(
    "Generate", key="gen_run", type="primary", disabled=config is None or loaded is None or running
):
    params = {"model": model_name, "prompt": prompt, "config": config, "chat": use_chat}

    def factory(stop, loaded=loaded, prompt=prompt, config=config, chat=use_chat):
        return stream(loaded, prompt, config, chat, candidates=CANDIDATES, stop_event=stop)

    job = manager.start(
        "generation", f"generate with {model_name}", factory, params, exclusive=False
    )
    state["gen_job"] = job.id
    state["gen_step"] = 0
    running = True
compare_clicked = b2.button(
    "Compare all strategies",
    key="gen_compare",
    disabled=config is None or loaded is None or running,
    help="Runs greedy, beam, top-k and top-p with your settings, side by side.",
)


# --- output (streams while the job runs) ------------------------------------------------


def _records(job) -> tuple[list[StepRecord], GenerationResult | None]:
    events = job.events_since(0)
    result = events[-1] if events and isinstance(events[-1], GenerationResult) else None
    return [e for e in events if isinstance(e, StepRecord)], result


@st.fragment(run_every=0.5 if running else None)
def live_output() -> None:
    current = manager.get(state.get("gen_job"))
    if current is None:
        st.info("Pick a strategy and press **Generate**.")
        return
    steps, result = _records(current)
    st.subheader("Output")
    text = result.text if result else (steps[-1].text if steps else "")
    st.markdown(
        f"<div class='gen-output' style='white-space: pre-wrap; border: 1px solid #ddd; "
        f"border-radius: 6px; padding: 0.8em; min-height: 3em'>{esc(text)}"
        f"{'' if result else ' ▌'}</div>",
        unsafe_allow_html=True,
    )
    if current.error:
        st.error(f"Generation failed: {current.error}")
    if result is None and current.running:
        if st.button("Stop", key="gen_stop"):
            manager.stop(current.id)
        st.caption(f"Generating… {len(steps)} tokens so far")
        return
    if result is not None:
        m1, m2, m3, m4 = st.columns(4)
        m1.metric("New tokens", result.new_tokens)
        m2.metric("Time", f"{result.time_s:.2f} s")
        m3.metric("Tokens/s", f"{result.tokens_per_s:.1f}")
        m4.metric(
            "Ended by",
            {"eos": "end of text", "length": "token limit", "stopped": "Stop"}[
                result.finish_reason
            ],
        )
    if state.get("gen_was_running") and not current.running:
        state["gen_was_running"] = False
        st.rerun()  # redraw the whole page once: the step-by-step view below needs the result


state["gen_was_running"] = running
live_output()


# --- step by step -----------------------------------------------------------------------

job = manager.get(state.get("gen_job"))
result = None
if job is not None and not job.running:
    result = _records(job)[1]

if result is not None and result.steps:
    st.subheader("Step by step")
    n = len(result.steps)
    if state.get("gen_step", 0) >= n:
        state["gen_step"] = 0
    labels = {i: f"{i + 1}: {visible(s.token)}" for i, s in enumerate(result.steps)}
    index = (
        st.select_slider("Step", options=list(range(n)), key="gen_step", format_func=labels.get)
        if n > 1
        else 0
    )
    step = result.steps[index]
    cfg: DecodingConfig = job.params["config"]
    so_far = "".join(s.token for s in result.steps[:index])
    st.markdown(
        f"Text before this step: <code>{esc(so_far[-200:]) or '(start)'}</code> → picked "
        f"<b>{esc(visible(step.token))}</b> (id {step.token_id}) with probability "
        f"{step.prob:.3f}",
        unsafe_allow_html=True,
    )
    if cfg.samples:
        rule = (
            f"top-k keeps the {cfg.top_k} most likely"
            if cfg.strategy == "top-k"
            else f"top-p keeps the most likely tokens until they add up to {cfg.top_p:g}"
        )
        st.caption(
            f"Temperature {cfg.temperature:g}, then {rule}: {step.kept_count} token(s) were "
            "left to sample from; the picked token's probability is among those."
        )
    elif result.strategy == "beam":
        st.caption("Beam search: 'kept' marks the tokens that extended a beam at this step.")
    else:
        st.caption(
            "Greedy: the most likely token is picked; nothing is sampled"
            + (" (temperature 0 means greedy)." if cfg.strategy != "greedy" else ".")
        )
    rows = candidate_rows(step)
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
                    "fate", help="picked; kept by top-k/top-p; or cut away"
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
                ],
            )
            .properties(height=34 * len(rows)),
            width="stretch",
            key="gen_chart",
        )

    if result.strategy == "beam" and result.beam_steps:
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
            st.caption(
                f"The search ran {len(result.beam_steps)} steps; the winner finished after {n}."
            )
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


# --- comparison grid --------------------------------------------------------------------

if compare_clicked and config is not None and loaded is not None:

    def compare_factory(stop, loaded=loaded, prompt=prompt, config=config, chat=use_chat):
        return iter_strategies(loaded, prompt, config, chat, stop_event=stop)

    job = manager.start(
        "comparison",
        f"compare strategies with {model_name}",
        compare_factory,
        {"prompt": prompt},
        exclusive=False,
    )
    state["gen_compare_job"] = job.id
    state["gen_compare_was_running"] = True


@st.fragment(run_every=0.5 if state.get("gen_compare_was_running") else None)
def comparison_grid() -> None:
    current = manager.get(state.get("gen_compare_job"))
    if current is None:
        return
    results = current.events_since(0)
    st.subheader("Every strategy, same prompt")
    st.caption(f"Prompt: {esc(str(current.params.get('prompt', ''))[:200])}")
    if current.error:
        st.error(f"Comparison failed: {current.error}")
    if current.running:
        if st.button("Stop the comparison", key="gen_compare_stop"):
            manager.stop(current.id)
        st.caption(
            f"Running {SHORT_LABELS[STRATEGIES[min(len(results), len(STRATEGIES) - 1)]]}… "
            f"{len(results)} of {len(STRATEGIES)} strategies done"
        )
    elif state.get("gen_compare_was_running"):
        state["gen_compare_was_running"] = False
        st.rerun()  # a full run ends the polling
    cols = st.columns(len(STRATEGIES))
    for col, name, res in zip(cols, STRATEGIES, results, strict=False):
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


comparison_grid()
