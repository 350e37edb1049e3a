"""Lab 5's Perplexity tab: a text, the window settings, and a perplexity run."""

from __future__ import annotations

import streamlit as st

from llm_playground.core.errors import UserError
from llm_playground.evaluation import runs
from llm_playground.evaluation.perplexity import (
    MAX_PERPLEXITY_TOKENS,
    PerplexityConfig,
    load_eval_text,
    pasted_text,
    perplexity_simple,
    uploaded_text,
)
from llm_playground.ui.components import (
    code_expander,
    current_job,
    esc,
    job_panel,
    model_picker,
    show_user_error,
    start_job,
)
from llm_playground.ui.evaluator.common import load_model, recorded_note

UPLOAD_LIMIT_MB = 20
DATA_LABELS = {
    "wikitext-2": "WikiText-2 test (shipped)",
    "tinyshakespeare-val": "TinyShakespeare validation (last 10 %)",
    "pasted": "Pasted text",
    "upload": "A text file (upload)",
    "wikitext-2-raw": "WikiText-2 raw from the hub (needs a network)",
}


def _perplexity_text(choice: str):
    if choice == "pasted":
        return pasted_text(st.session_state.get("ev_ppl_text", ""))
    if choice == "upload":
        upload = st.session_state.get("ev_ppl_upload")
        if upload is None:
            raise UserError("choose a text file to upload first")
        if upload.size > UPLOAD_LIMIT_MB * 1024 * 1024:
            raise UserError(f"the file is larger than {UPLOAD_LIMIT_MB} MB")
        return uploaded_text(upload.getvalue(), upload.name)
    return load_eval_text(choice)


def _draw_perplexity(job, events) -> None:
    done = runs.last_done(events)
    if done is None:
        return
    r = done.result
    m1, m2, m3 = st.columns(3)
    m1.metric("Token perplexity", f"{r.token_perplexity:.2f}", help="exp(NLL sum / tokens)")
    m2.metric("Word perplexity", f"{r.word_perplexity:.2f}", help="exp(NLL sum / words)")
    m3.metric("Bits per byte", f"{r.bits_per_byte:.4f}", help="NLL sum / ln 2 / UTF-8 bytes")
    scope = f"the first {r.n_tokens:,} tokens of " if r.capped else ""
    mode = (
        " Cached mode: keys and values reused across chunks, not the windows' number."
        if r.mode == "cached"
        else ""
    )
    st.caption(
        f"**{esc(job.params.get('model'))}** on {scope}**{esc(job.params.get('data'))}**: "
        f"{r.n_tokens:,} scored tokens (the first after a beginning-of-text token, as "
        f"lm-evaluation-harness scores it), {r.n_words:,} words, {r.n_bytes:,} bytes; "
        f"stride {r.stride}, max length {r.max_length}, {r.dtype}, {r.tokens_per_s:,.0f} "
        "tokens/s."
        + (f" Precision: {esc(r.precision)}." if r.precision else "")
        + mode
        + (
            " Stopped early: not recorded in the leaderboard."
            if r.stopped
            else " Recorded in the leaderboard."
        )
    )
    recorded_note(events)


def _text_picker() -> tuple[str | None, str]:
    """The model and the text to score (the tab's left column)."""
    model = model_picker("Model", key="ev_ppl_model", default="smollm2-135m-instruct")
    choice = st.radio(
        "Text to score",
        list(DATA_LABELS),
        format_func=DATA_LABELS.get,
        key="ev_ppl_data",
        horizontal=True,
    )
    if choice == "pasted":
        st.text_area(
            "Your text",
            key="ev_ppl_text",
            height=140,
            placeholder="Paste a few paragraphs. Longer texts give steadier numbers.",
        )
    if choice == "upload":
        st.file_uploader(
            f"A UTF-8 text file (at most {UPLOAD_LIMIT_MB} MB)",
            type=["txt", "md"],
            key="ev_ppl_upload",
        )
    if choice.startswith("wikitext-2"):
        st.caption(
            'WikiText-2 (Merity et al. 2016, "Pointer Sentinel Mixture Models") is shared '
            "under CC BY-SA 3.0; the shipped copy is the tokenized variant (`<unk>`, ` @-@ `), "
            "so its numbers differ from the raw variant's."
        )
    return model, choice


def _window_settings() -> dict:
    """Stride, max length, max tokens, precision and mode (the tab's right column)."""
    c1, c2, c3 = st.columns(3)
    stride = c1.number_input(
        "Stride",
        1,
        8192,
        512,
        key="ev_ppl_stride",
        help="Tokens between window starts. Smaller = more context per token, slower.",
    )
    max_length = c2.number_input(
        "Max length",
        2,
        8192,
        1024,
        key="ev_ppl_maxlen",
        help="Window length in tokens, capped at the model's context.",
    )
    max_tokens = c3.number_input(
        "Max tokens",
        0,
        MAX_PERPLEXITY_TOKENS,
        2048,
        step=512,
        key="ev_ppl_maxtok",
        help="Score only the first N tokens for a quick run; 0 = the whole text.",
    )
    c4, c5 = st.columns(2)
    dtype = c4.selectbox(
        "Precision",
        ["auto", "float32", "bfloat16"],
        key="ev_ppl_dtype",
        help="auto times a window of the text in float32 and bfloat16 and scores in the "
        "faster (once per model on this machine).",
    )
    mode = c5.selectbox(
        "Mode",
        ["windows", "cached"],
        key="ev_ppl_mode",
        help="windows: the sliding windows, exactly. cached: each chunk of *stride* tokens "
        "reuses the key/value cache of the tokens before it: more context, about one pass "
        "over the text, a different number from the windows'.",
    )
    return {
        "stride": int(stride),
        "max_length": int(max_length),
        "max_tokens": int(max_tokens) or None,
        "dtype": dtype,
        "mode": mode,
    }


def _start_perplexity(model: str | None, choice: str, settings: dict) -> None:
    """Check the settings, load the model and start the run as a background job."""
    data = _perplexity_text(choice)
    if settings["stride"] > settings["max_length"]:
        raise UserError(
            f"the stride ({settings['stride']}) cannot exceed the max length "
            f"({settings['max_length']})"
        )
    config = PerplexityConfig(**settings)
    config.check()
    loaded = load_model(model)
    if loaded is not None:
        start_job(
            "evaluator-perplexity",
            f"perplexity of {model}",
            lambda stop: runs.perplexity_run(loaded, data, config, stop_event=stop),
            params={"model": model, "data": data.name},
        )


def perplexity_tab() -> None:
    left, right = st.columns([1, 1])
    with left:
        model, choice = _text_picker()
    with right:
        settings = _window_settings()
    job = current_job("evaluator-perplexity")
    running = job is not None and job.running
    if st.button("Compute perplexity", key="ev_ppl_run", type="primary", disabled=running):
        try:
            _start_perplexity(model, choice, settings)
        except UserError as exc:
            show_user_error(exc)
    if current_job("evaluator-perplexity") is None:
        st.info("Pick a model and a text, then press **Compute perplexity**.")
    job_panel("evaluator-perplexity", draw=_draw_perplexity)

    with st.expander("Why three numbers? Tokens, words and bytes", expanded=True):
        st.markdown(
            "**Token perplexity** is exp of the average negative log-likelihood *per token*. "
            "A tokenizer that cuts text into more, smaller tokens makes each token easier to "
            "guess, so its perplexity looks better even if the model is not: SmolLM2 (49k "
            "vocabulary), Gemma 3 (262k) and a Lab 2 character model (65 symbols) predict "
            "*different units*, and their token perplexities do not compare.\n\n"
            "**Bits per byte** divides the same total by the text's UTF-8 bytes instead: how many "
            "bits the model needs to encode the text, whatever its tokenizer. Lower is better, "
            "and it compares across tokenizers on the same text. **Word perplexity** does the "
            "same per word (counted as lm-evaluation-harness counts them), the unit older "
            "papers report. Both follow the harness's definitions, so they match its "
            "`word_perplexity` and `bits_per_byte` on the same text.\n\n"
            "The **sliding window** (the method of the transformers perplexity guide): a model "
            "sees at most *max length* tokens, so windows start every *stride* tokens and each "
            "scores only its new tokens, with up to *max length − stride* tokens of context. A "
            "smaller stride gives more context and lower perplexity, at more compute. Compare "
            "numbers only on the same text with the same window."
        )
    code_expander(
        "the sliding-window loop",
        [perplexity_simple],
        "The loop of the transformers perplexity guide, one window at a time. The run above "
        "gives the same number (a test checks it) but runs the windows of one shape as one "
        "batch and sends only the scored positions through the output layer, which is most of "
        "the work with a large vocabulary; a stride of at least *max length* uses "
        "lm-evaluation-harness's rolling windows instead.",
    )
