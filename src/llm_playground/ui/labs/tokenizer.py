"""Lab 1 · Tokenizer: how text becomes tokens, side by side, before and after cleaning,
and a BPE tokenizer of your own, merge by merge. Layout and state only: the work is
done by llm_playground.tokenization.tokenizer, .cleaning, .bpe and .tokenviz."""

from __future__ import annotations

import json

import streamlit as st

from llm_playground.core.errors import UserError
from llm_playground.core.paths import package_data
from llm_playground.tokenization.bpe import (
    MAX_TOKENIZER_FILE_BYTES,
    MAX_VOCAB_SIZE,
    BPEDone,
    BPEProgress,
    BPETokenizer,
    parse_tokenizer_json,
    piece_text,
    train_events,
    train_simple,
)
from llm_playground.tokenization.cleaning import clean, token_diff
from llm_playground.tokenization.tokenizer import (
    BPE_PREFIX,
    BPEAdapter,
    available_tokenizers,
    describe,
    get_tokenizer,
    pieces_of,
    save_bpe,
    saved_tokenizers,
    tokenize_with_pieces,
)
from llm_playground.tokenization.view import render_tokens_html, visible
from llm_playground.ui.components import (
    code_expander,
    current_job,
    esc,
    job_panel,
    machine_load_caption,
    page_header,
    show_user_error,
    start_job,
    uploaded_bytes,
)

EXAMPLES = {
    "Prose": "The quick brown fox jumps over the lazy dog. Tokenizers split text into pieces "
    "that are often whole words, sometimes parts of words, and occasionally single letters.",
    "Python code": 'def fibonacci(n: int) -> list[int]:\n    """The first n Fibonacci numbers."""\n'
    "    a, b = 0, 1\n    out = []\n    for _ in range(n):\n        out.append(a)\n"
    "        a, b = b, a + b\n    return out\n",
    "Numbers": "In 2024 the population was 8,118,835,999; pi is 3.14159265358979 and 1234567 + 7654321 = 8888888.",
    "HTML": '<html><head><style>p { color: red; }</style><script>alert("hi")</script></head>\n'
    "<body>\n  <h1>Caf&eacute; menu</h1>\n  <p>Fish &amp; chips &mdash; &euro;12</p>\n"
    "  <ul>\n    <li>Tea</li>\n    <li>Coffee</li>\n  </ul>\n</body></html>",
    "Emoji": "I love pizza 🍕🍕 and cats 🐈‍⬛! Family: 👨‍👩‍👧‍👦 Flags: 🇫🇷 🇯🇵 Thumbs: 👍🏽",
    "Chinese and Japanese": "我喜欢学习机器学习。東京は日本の首都です。ひらがなとカタカナ。",
    "Arabic": "مرحبا بالعالم. اللغة العربية تكتب من اليمين إلى اليسار.",
    "Hebrew": "שלום עולם. עברית נכתבת מימין לשמאל.",
    "Several languages": "Hello, world! Bonjour le monde ! Привет, мир! 你好，世界！ "
    "مرحبا بالعالم! שלום עולם! नमस्ते दुनिया! 🌍",
}
DEFAULT_TOKENIZERS = ["gpt2", "cl100k_base", "o200k_base"]
SESSION_BPE = "bpe (trained here, not saved)"
PER_ROW = 3
REPLAY_CHARS = 600
MAX_TEXT_CHARS = 1_000_000  # the text box: a million characters is plenty to see tokens

page_header(
    "🔤 Lab 1 · Tokenizer",
    "A language model never sees letters: it sees token ids. Type or pick a text and compare how "
    "tokenizers cut it into pieces, hover a piece for its id and bytes, see what cleaning the text "
    "changes, then train a BPE tokenizer of your own and watch its merges fuse pairs step by step.",
)

state = st.session_state
state.setdefault("tok_text", EXAMPLES["Prose"])


def _load_example() -> None:
    state["tok_text"] = EXAMPLES[state["tok_example"]]


# --- the text and the tokenizers --------------------------------------------------------


def _text_box() -> str:
    """The example picker and the text box."""
    st.selectbox(
        "Example",
        list(EXAMPLES),
        key="tok_example",
        on_change=_load_example,
        help="Loads a ready text into the box; edit it freely.",
    )
    text = st.text_area(
        "Text",
        key="tok_text",
        height=180,
        max_chars=MAX_TEXT_CHARS,
        help="Ctrl+Enter (or clicking outside the box) updates the tokens.",
    )
    return text


def _tokenizers_and_cleaning() -> tuple[list[str], list[str]]:
    """The tokenizers to compare and the cleaning steps switched on: (names, steps)."""
    options = available_tokenizers()
    if state.get("bpe_tok") is not None:
        options.append(SESSION_BPE)
    state.setdefault("tok_names", [n for n in DEFAULT_TOKENIZERS if n in options])
    state["tok_names"] = [n for n in state["tok_names"] if n in options]
    chosen = st.multiselect(
        "Tokenizers",
        options,
        key="tok_names",
        help="Pick several to compare them side by side on the same text.\n\n"
        + "\n".join(f"- **{n}**: {describe(n)}" for n in options if n != SESSION_BPE),
    )
    st.markdown("**Clean the text first**")
    strip = st.toggle(
        "Strip HTML",
        key="tok_clean_html",
        help="A real HTML parser: entities decoded, script/style dropped, blocks become lines.",
    )
    space = st.toggle(
        "Normalise whitespace",
        key="tok_clean_ws",
        help="Runs of spaces and tabs become one space; lines trimmed; at most one blank line.",
    )
    fold = st.toggle(
        "Unicode NFKC",
        key="tok_clean_nfkc",
        help="Compatibility forms become plain ones: ﬁ → fi, ① → 1, Ｈ → H.",
    )
    return chosen, [s for s, on in (("html", strip), ("whitespace", space), ("nfkc", fold)) if on]


def _show_cleaning(text: str, cleaned: str, steps: list[str]) -> None:
    """The text before and after cleaning, side by side."""
    before_col, after_col = st.columns(2)
    before_col.caption(f"Before cleaning · {len(text):,} characters")
    before_col.code(text[:5000] or " ", language=None, wrap_lines=True)
    after_col.caption(f"After cleaning ({', '.join(steps)}) · {len(cleaned):,} characters")
    after_col.code(cleaned[:5000] or " ", language=None, wrap_lines=True)
    if len(text) > 5000:
        st.caption(
            "The boxes show the first 5,000 characters; the tokens below cover the whole text."
        )


def _tokenizer(name: str):
    if name == SESSION_BPE:
        return state["bpe_tok"]
    return get_tokenizer(name)


def _show_tokenizer(name: str, text: str, cleaned: str, steps: list[str]) -> None:
    st.markdown(f"#### {esc(name)}", unsafe_allow_html=True)
    try:
        tok = _tokenizer(name)
        result = tokenize_with_pieces(tok, cleaned)
        raw = tokenize_with_pieces(tok, text) if steps else None
    except UserError as exc:
        show_user_error(exc)
        return
    st.caption(f"{tok.description} · vocabulary {tok.vocab_size:,}")
    m1, m2 = st.columns(2)
    delta = None if raw is None else f"{result.n_tokens - raw.n_tokens:+,} after cleaning"
    m1.metric("Tokens", f"{result.n_tokens:,}", delta=delta, delta_color="inverse")
    m2.markdown(
        f"**{result.n_chars:,}** characters  \n**{result.chars_per_token:.2f}** chars / token  \n"
        f"**{result.n_bytes:,}** UTF-8 bytes"
    )
    highlight = None
    if raw is not None:
        diff = token_diff(raw.ids, result.ids)
        highlight = diff.changed_after()
        note = " (first 20,000 tokens compared)" if diff.truncated else ""
        st.caption(
            f"Cleaning: {raw.n_tokens:,} → {result.n_tokens:,} tokens; {diff.unchanged:,} unchanged, "
            f"{diff.removed:,} gone, {diff.added:,} new (outlined in red){note}."
        )
    st.html(render_tokens_html(result, token_bytes=tok.token_bytes, highlight=highlight))
    with st.expander("Token ids"):
        ids = result.ids[:5000]
        st.code(
            json.dumps(ids) + (" …" if len(result.ids) > len(ids) else ""),
            language=None,
            wrap_lines=True,
        )


def _compare_tokenizers(chosen: list[str], text: str, cleaned: str, steps: list[str]) -> None:
    """One box per tokenizer, PER_ROW to a row."""
    if not chosen:
        st.info("Pick at least one tokenizer above.")
    for row_start in range(0, len(chosen), PER_ROW):
        row = chosen[row_start : row_start + PER_ROW]
        for col, name in zip(st.columns(PER_ROW), row, strict=False):
            with col, st.container(border=True):
                _show_tokenizer(name, text, cleaned, steps)
    st.caption(
        "Hover a piece to see its id and bytes. A dashed, italic piece such as `\\xe4\\xbd` is part of "
        "a character whose UTF-8 bytes were split across tokens."
    )


# --- train your own BPE -----------------------------------------------------------------


def _bpe_settings() -> None:
    """What to train on, the target vocabulary and the pre-split (read back from the session)."""
    t1, t2, t3 = st.columns(3)
    t1.radio("Train on", ["TinyShakespeare", "The text box"], key="bpe_source", horizontal=True)
    t2.number_input(
        "Target vocabulary size",
        min_value=257,
        max_value=min(20_000, MAX_VOCAB_SIZE),
        value=512,
        step=64,
        key="bpe_vocab",
    )
    t3.selectbox(
        "Pre-split",
        ["gpt4", "gpt2", "none"],
        key="bpe_pattern",
        format_func={
            "gpt4": "GPT-4 regex (merges stay inside words)",
            "gpt2": "GPT-2 regex",
            "none": "none (merges may cross words)",
        }.get,
    )


def _start_training() -> None:
    from_shakespeare = state["bpe_source"] == "TinyShakespeare"
    corpus = (
        package_data("tinyshakespeare.txt").read_text(encoding="utf-8")
        if from_shakespeare
        else state["tok_text"]
    )
    if not corpus:
        state["bpe_error"] = "the text box is empty: there is nothing to train on"
        return
    label = "TinyShakespeare" if from_shakespeare else "the text box"
    size, split = int(state["bpe_vocab"]), state["bpe_pattern"]
    start_job(
        "bpe",
        f"BPE {size} on {label}",
        lambda stop: train_events(
            corpus, size, pattern=split, name="my-bpe", stop=stop, source=label
        ),
        params={"vocab_size": size},
    )
    state.pop("bpe_error", None)


def _draw_training(job, events) -> None:
    last = next((e for e in reversed(events) if isinstance(e, BPEProgress)), None)
    if last is not None and job.running:
        st.caption(
            f"Merge {last.step:,} of {last.total:,}: {last.pair} → {last.new_id} "
            f"(seen {last.count:,} times)"
        )


def _take_result(job) -> None:
    """Once per finished job: its tokenizer becomes this session's BPE."""
    if job is None or job.running or state.get("bpe_result_of") == job.id:
        return
    state["bpe_result_of"] = job.id
    done = next((e for e in reversed(job.snapshot()) if isinstance(e, BPEDone)), None)
    if done is None:
        return
    state["bpe_tok"] = BPEAdapter(done.tokenizer, name=SESSION_BPE)
    state["bpe_done_note"] = (
        f"Trained {done.tokenizer.vocab_size:,} tokens in {done.elapsed:.1f} s"
        + (f" (stopped early: {done.reason})" if done.reason else "")
        + "."
    )
    state["bpe_step"] = None


def _train_row() -> None:
    """The Train button, the machine's load and the running job."""
    running = current_job("bpe")
    b1, b2 = st.columns([1, 5])
    b1.button(
        "Train",
        key="bpe_train",
        type="primary",
        on_click=_start_training,
        disabled=running is not None and running.running,
    )
    with b2:
        machine_load_caption()
    if state.get("bpe_error"):
        st.error(state["bpe_error"], icon="⚠️")
    _take_result(job_panel("bpe", draw=_draw_training, stop_label="Stop"))


def _load_saved() -> None:
    """Load a tokenizer saved earlier, or open a tokenizer JSON file."""
    with st.expander("Load a saved tokenizer"):
        l1, l2 = st.columns(2)
        saved = saved_tokenizers()
        pick = l1.selectbox(
            "Saved in your tokenizers folder",
            saved,
            key="bpe_load_name",
            placeholder="none saved yet",
            index=0 if saved else None,
        )
        if l1.button("Load", key="bpe_load", disabled=not saved):
            try:
                state["bpe_tok"] = BPEAdapter(get_tokenizer(pick).bpe, name=SESSION_BPE)
                state["bpe_done_note"] = f"Loaded {pick}."
                st.rerun()
            except (UserError, AttributeError) as exc:
                st.error(str(exc))
        upload = l2.file_uploader(
            "Or open a tokenizer JSON file",
            type=["json"],
            key="bpe_upload",
            help=f"At most {MAX_TOKENIZER_FILE_BYTES // (1024 * 1024)} MB.",
        )
        if upload is not None and l2.button("Open", key="bpe_open"):
            try:
                raw = uploaded_bytes(upload, MAX_TOKENIZER_FILE_BYTES, "tokenizer file")
                data = parse_tokenizer_json(raw, upload.name)
                state["bpe_tok"] = BPEAdapter(
                    BPETokenizer.from_dict(data, source=upload.name), name=SESSION_BPE
                )
                state["bpe_done_note"] = f"Opened {upload.name}."
                st.rerun()
            except UserError as exc:
                show_user_error(exc)


def _merges_table(bpe) -> None:
    """Every merge in order: the two pieces and the token they became."""
    st.subheader(f"Merges in order ({len(bpe.merges):,})")
    rows = [
        {
            **r,
            "left": visible(r["left"]),
            "right": visible(r["right"]),
            "token": visible(r["token"]),
        }
        for r in bpe.merges_table()
    ]
    st.dataframe(
        rows,
        key="bpe_merges_table",
        hide_index=True,
        height=360,
        column_order=["rank", "left", "right", "token", "new_id"],
    )
    st.caption("␣ is a space, ↵ a line break.")


def _replay(adapter, bpe, cleaned: str) -> None:
    """Replay the merges on the text box's text, one step at a time."""
    st.subheader("Replay on the text box")
    sample = cleaned[:REPLAY_CHARS]
    states = bpe.replay(sample)
    if len(states) == 1:
        st.info("None of the merges occurs in the text box's text.")
    last_step = len(states) - 1
    if (
        state.get("bpe_step") is None
        or state["bpe_step"] > last_step
        or state.get("bpe_step_max") != last_step
    ):
        state["bpe_step"] = last_step  # a new text or tokenizer: start from the fully merged view
    state["bpe_step_max"] = last_step
    step = (
        st.slider(
            "Replay step",
            0,
            last_step,
            key="bpe_step",
            help="Step 0 is the raw bytes; each step applies the next merge that changes "
            "this text (merges that do not occur in it are skipped).",
        )
        if last_step
        else 0
    )
    current = states[step]
    if current.pair is None:
        st.caption(f"Raw bytes: {len(current.ids):,} tokens.")
    else:
        a, b = current.pair
        times = "1 time" if current.fused == 1 else f"{current.fused} times"
        st.caption(
            f"Merge #{current.step}: {visible(piece_text(bpe.vocab[a]))} + "
            f"{visible(piece_text(bpe.vocab[b]))} → {visible(piece_text(bpe.vocab[current.new_id]))} "
            f"(token {current.new_id}), fused {times} here · {len(current.ids):,} tokens now."
        )
    fused_here = (
        {i for i, t in enumerate(current.ids) if t == current.new_id} if current.new_id else None
    )
    st.html(
        render_tokens_html(
            pieces_of(adapter, current.ids, sample),
            token_bytes=adapter.token_bytes,
            highlight=fused_here,
        )
    )
    if len(cleaned) > REPLAY_CHARS:
        st.caption(f"The replay uses the first {REPLAY_CHARS} characters of the text.")


def _save_row(bpe) -> None:
    """Save the tokenizer in the tokenizers folder, or download it as JSON."""
    s1, s2 = st.columns([2, 1])
    name = s1.text_input(
        "Save as",
        value=bpe.name if bpe.name != "my-bpe" else "my-bpe",
        key="bpe_save_name",
        max_chars=81,
        help="Letters, digits, '.', '_' or '-': a name in your tokenizers folder, not a path. "
        f"Saved tokenizers appear in the list above as {BPE_PREFIX}NAME and can be picked "
        "in Lab 2.",
    )
    replace = s1.checkbox(
        "Replace a saved tokenizer of the same name", key="bpe_save_replace", value=False
    )
    if s2.button("Save", key="bpe_save"):
        try:
            path = save_bpe(bpe, name, overwrite=replace)
        except UserError as exc:
            show_user_error(exc)
        else:  # rerun so that the tokenizer list at the top offers it at once
            state["bpe_done_note"] = (
                f"Saved {BPE_PREFIX}{path.stem} to {path}: pick it in the tokenizer "
                "list above, or in Lab 2 to train on its tokens."
            )
            st.rerun()
    st.download_button(
        "Download JSON",
        json.dumps(bpe.to_dict(), ensure_ascii=False),
        file_name=f"{bpe.name}.json",
        mime="application/json",
        key="bpe_download",
    )


def _trained_tokenizer(cleaned: str) -> None:
    """This session's BPE: its merges, a replay, and saving it."""
    adapter = state.get("bpe_tok")
    if adapter is None:
        return
    bpe = adapter.bpe
    if state.get("bpe_done_note"):
        st.success(state["bpe_done_note"])
    merges_col, replay_col = st.columns([2, 3])
    with merges_col:
        _merges_table(bpe)
    with replay_col:
        _replay(adapter, bpe, cleaned)
    _save_row(bpe)


# --- the page ---------------------------------------------------------------------------

left, right = st.columns([3, 2])
with left:
    text = _text_box()
with right:
    chosen, steps = _tokenizers_and_cleaning()
cleaned = clean(text, steps) if steps else text
if steps:
    _show_cleaning(text, cleaned, steps)
_compare_tokenizers(chosen, text, cleaned, steps)

st.divider()
st.header("Train your own BPE")
st.caption(
    "Byte-level BPE starts from the 256 byte values and repeatedly fuses the most frequent "
    "adjacent pair into a new token (ties go to the pair seen first). Each merge adds one token."
)
_bpe_settings()
_train_row()
_load_saved()
_trained_tokenizer(cleaned)
code_expander(
    "BPE training",
    [train_simple],
    "The textbook trainer: recount every pair of the whole text after each merge. The Train "
    "button learns exactly the same merges (a test checks it) but counts each distinct word "
    "once and, after a merge, recounts only the words that held the merged pair, so 512 "
    "tokens on TinyShakespeare take seconds instead of minutes.",
)
