"""Lab 5 · Evaluator: perplexity, BLEU/chrF/ROUGE, an LLM judge, benchmarks and the leaderboard.

One function per tab; every measurement and every leaderboard write is the library's
(:mod:`llm_playground.evaluation.runs`), started as a background job of this browser.
"""

from __future__ import annotations

import json

import streamlit as st

from llm_playground.core.errors import UserError
from llm_playground.evaluation import judge as judging
from llm_playground.evaluation import runs
from llm_playground.evaluation.benchmarks import READING_NOTES, published_rows
from llm_playground.evaluation.harness import HarnessConfig, parse_tasks
from llm_playground.evaluation.leaderboard import Leaderboard
from llm_playground.evaluation.local_tasks import LOCAL_TASK_INFO, LOCAL_TASKS
from llm_playground.evaluation.overlap import ROUGE_TYPES
from llm_playground.evaluation.perplexity import (
    MAX_PERPLEXITY_TOKENS,
    PerplexityConfig,
    load_eval_text,
    pasted_text,
    uploaded_text,
)
from llm_playground.evaluation.reference_set import ReferenceProgress, load_reference_set
from llm_playground.ui.components import (
    cached_model,
    current_job,
    esc,
    job_panel,
    model_picker,
    page_header,
    show_user_error,
    start_job,
)

UPLOAD_LIMIT_MB = 20
DATA_LABELS = {
    "wikitext-2": "WikiText-2 test (shipped)",
    "tinyshakespeare-val": "TinyShakespeare validation (last 10 %)",
    "pasted": "Pasted text",
    "upload": "A text file (upload)",
    "wikitext-2-raw": "WikiText-2 raw from the hub (needs a network)",
}
EXAMPLE_QUESTIONS = "\n".join(
    json.dumps(q)
    for q in [
        {"id": "q1", "question": "What is the capital of France?"},
        {"id": "q2", "question": "How many legs does a spider have?"},
        {"id": "q3", "question": "Who wrote Romeo and Juliet?"},
    ]
)
EXAMPLE_ANSWERS = "\n".join(
    json.dumps(a)
    for a in [
        {"id": "q1", "answer": "The capital of France is Paris."},
        {"id": "q2", "answer": "A spider has six legs."},
        {"id": "q3", "answer": "Romeo and Juliet was written by William Shakespeare around 1595."},
    ]
)


def _load(name: str | None):
    if not name:
        return None
    try:
        return cached_model(name)
    except UserError as exc:
        show_user_error(exc)
        return None


def _fmt(value, digits: int = 2) -> str:
    return "—" if value is None else f"{value:.{digits}f}"


def _recorded_note(events) -> None:
    """Say what became of the result in the leaderboard (a refusal as an error)."""
    outcome = runs.last_recorded(events)
    if outcome is not None and outcome.error:
        st.error(outcome.error, icon="⚠️")


# --- perplexity ---------------------------------------------------------------------------


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
        + mode
        + (
            " Stopped early: not recorded in the leaderboard."
            if r.stopped
            else " Recorded in the leaderboard."
        )
    )
    _recorded_note(events)


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
        help="auto uses bfloat16 where this CPU runs it faster (measured once).",
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
    loaded = _load(model)
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


# --- BLEU / chrF / ROUGE ------------------------------------------------------------------


def _draw_reference(job, events) -> None:
    progress = [e for e in events if isinstance(e, ReferenceProgress)]
    if progress and job.running:
        st.caption(f"Last answer: {esc(progress[-1].answer)}")
    done = runs.last_done(events)
    if done is None or job.running:
        return
    result = done.result
    st.dataframe(
        [
            {
                "question": it.prompt,
                "answer": a,
                "reference": it.reference,
                "sentence BLEU": round(s.bleu, 2),
                "chrF": round(s.chrf, 2),
            }
            for it, a, s in zip(result.items, result.answers, result.bleu.sentences, strict=True)
        ],
        hide_index=True,
        key="ev_ref_table",
    )
    st.caption(
        "Recorded in the leaderboard." if not result.stopped else "Stopped early: not recorded."
    )
    _recorded_note(events)


def _reference_scores():
    job = current_job("evaluator-reference")
    done = runs.last_done(job.snapshot()) if job is not None and not job.running else None
    return (done.result.bleu, done.result.rouge) if done else None


def _show_overlap(shown, mode: str) -> None:
    if not shown:
        return
    bleu, rouge_scores = shown
    m = st.columns(6)
    m[0].metric("BLEU (corpus)", f"{bleu.bleu:.2f}")
    m[1].metric("chrF (corpus)", f"{bleu.chrf:.2f}")
    for col, name in zip(m[2:], ROUGE_TYPES, strict=True):
        col.metric(f"{name} F", f"{rouge_scores[name]['fmeasure']:.3f}")
    st.caption(
        f"sacrebleu signatures — BLEU `{bleu.signature}` · chrF `{bleu.chrf_signature}`. "
        f"ROUGE: rouge-score, F-measure averaged over {bleu.n_segments} segment(s); "
        "ROUGE-Lsum splits each segment into sentences on newlines."
    )
    zero = [(i + 1, s) for i, s in enumerate(bleu.sentences) if s.bleu_zero_on_short]
    if zero:
        st.warning(
            "Sentence BLEU is 0 on short line(s) "
            + ", ".join(f"{i} (chrF {s.chrf:.1f})" for i, s in zero)
            + ": BLEU needs matching word n-grams and a short string has few of them, so one "
            "wrong word zeroes it. chrF counts character n-grams and still sees the overlap."
        )
    if mode == "Your text":
        st.dataframe(
            [
                {
                    "line": i + 1,
                    "hypothesis": s.hypothesis,
                    "sentence BLEU": round(s.bleu, 2),
                    "chrF": round(s.chrf, 2),
                }
                for i, s in enumerate(bleu.sentences)
            ],
            hide_index=True,
            key="ev_bleu_table",
        )


def overlap_tab() -> None:
    mode = st.radio(
        "Score", ["Your text", "A model on the reference set"], key="ev_ref_mode", horizontal=True
    )
    if mode == "Your text":
        c1, c2 = st.columns(2)
        hyp_text = c1.text_area(
            "Hypotheses (one segment a line)",
            key="ev_bleu_hyp",
            height=130,
            value="The dog bit the man.\nIt wasn't surprising.\nFour",
        )
        ref_text = c2.text_area(
            "References (one segment a line)",
            key="ev_bleu_ref",
            height=130,
            value="The dog bit the man.\nIt was not unexpected.\nTwo plus two is four.",
        )
        if st.button("Score", key="ev_bleu_run", type="primary"):
            try:
                hyps = hyp_text.rstrip("\n").split("\n") if hyp_text.strip() else []
                refs = ref_text.rstrip("\n").split("\n") if ref_text.strip() else []
                if not hyps or not refs:
                    raise UserError("type at least one hypothesis and one reference")
                bleu, scores, _ = runs.overlap_scores(hyps, [refs], "", "", "", record=False)
                st.session_state["ev_bleu_result"] = (bleu, scores)
            except UserError as exc:
                st.session_state.pop("ev_bleu_result", None)
                show_user_error(exc)
        shown = st.session_state.get("ev_bleu_result")
    else:
        n_items = len(load_reference_set())
        c1, c2, c3 = st.columns([2, 1, 1])
        with c1:
            model = model_picker("Model", key="ev_ref_model", default="smollm2-135m-instruct")
        limit = c2.number_input("Items", 1, n_items, 5, key="ev_ref_limit")
        max_new = c3.number_input("Max new tokens", 4, 256, 40, key="ev_ref_maxnew")
        st.caption(
            f"The shipped reference set: {n_items} short factual questions with one-sentence "
            "reference answers, answered greedily (Lab 3's decoding)."
        )
        job = current_job("evaluator-reference")
        if st.button(
            "Generate and score",
            key="ev_ref_run",
            type="primary",
            disabled=(job is not None and job.running) or not model,
        ):
            loaded = _load(model)
            if loaded is not None:
                from llm_playground.generation.decoding import DecodingConfig

                config = DecodingConfig(strategy="greedy", max_new_tokens=int(max_new))
                start_job(
                    "evaluator-reference",
                    f"reference set with {model}",
                    lambda stop: runs.reference_run(loaded, config, int(limit), stop_event=stop),
                )
        job_panel("evaluator-reference", draw=_draw_reference)
        shown = _reference_scores()
    _show_overlap(shown, mode)
    with st.expander("What these numbers reward"):
        st.markdown(
            "**BLEU** counts word n-grams (1–4) shared with the references, with a penalty for "
            "short output; corpus BLEU pools the counts of all lines, so it is *not* the mean of "
            "sentence BLEUs. **chrF** does the same with character n-grams and is kinder to "
            "morphology and short strings. **ROUGE** (recall-oriented) counts shared unigrams, "
            "bigrams and the longest common subsequence. All three reward *wording*: a correct "
            "answer phrased differently scores low, which is why the judge tab exists."
        )


# --- the judge ----------------------------------------------------------------------------


def _judge_setup():
    """The judge the widgets describe, or None (with a note saying what is missing)."""
    kind = st.radio(
        "Judge",
        ["Offline local judge", "OpenAI-compatible API"],
        key="ev_judge_kind",
        horizontal=True,
    )
    if kind == "OpenAI-compatible API":
        c1, c2, c3 = st.columns([2, 1, 1])
        base_url = c1.text_input(
            "Base URL",
            "",
            key="ev_judge_url",
            placeholder=judging.server_base_url(),
            help="Empty: the server's configured API. Another URL needs your own key. "
            "https:// for remote hosts; http:// only on this machine (Ollama: "
            "http://localhost:11434/v1).",
        )
        api_model = c2.text_input("Model", "gpt-4o-mini", key="ev_judge_api_model")
        api_key = c3.text_input(
            "API key",
            type="password",
            key="ev_judge_key",
            help="Kept in this browser session's memory only; never written to disk or logs.",
        )
        try:
            return judging.page_judge(base_url, api_model, api_key, timeout=60.0, max_retries=4)
        except UserError as exc:
            st.info(str(exc))
            return None
    name = model_picker(
        "Local judge model", key="ev_judge_local", default=judging.DEFAULT_LOCAL_JUDGE
    )
    st.caption(
        "A 135M model is a weak judge; it shows how judge scores behave offline. "
        "Use a strong API model for numbers you trust."
    )
    loaded = _load(name)
    return judging.LocalJudge(loaded) if loaded is not None else None


def _draw_judge(job, events) -> None:
    done = runs.last_done(events)
    items = (
        done.result.items
        if done
        else [e.item for e in events if isinstance(e, judging.JudgeProgress)]
    )
    if items:
        st.dataframe(
            [
                {"id": i.id, "score": i.score, "reason": i.reason or i.error or "", "raw": i.raw}
                for i in items
            ],
            hide_index=True,
            key="ev_judge_table",
        )
    if done:
        result = done.result
        ci = f" (95 % CI {result.ci[0]:.2f} – {result.ci[1]:.2f})" if result.ci else ""
        st.metric("Mean judge score", _fmt(result.mean_score) + ci)
        st.caption(
            f"{result.n_scored} of {len(result.items)} answers scored by {esc(result.judge)}; "
            "unscored items keep the judge's raw answer."
        )
    _recorded_note(events)


def _draw_agreement(job, events) -> None:
    done = runs.last_done(events)
    if done is None:
        return
    result = done.agreement
    rate = "—" if result.rate is None else f"{result.rate:.0%}"
    st.metric(
        "Agreement with people",
        rate,
        help="Share of pairs where the judge picked the same answer as the voter "
        "(Lab 4's 'both bad' counts as a tie).",
    )
    st.caption(
        f"{result.n_agree} of {result.n_decided} pairs the judge decided "
        f"({result.n_pairs - result.n_decided} unreadable verdicts)."
    )
    flips = sum(1 for d in result.decisions if d.consistent is False)
    if any(d.consistent is not None for d in result.decisions):
        st.caption(
            f"Position bias: {flips} verdict(s) flipped when A and B swapped places "
            "and were counted as ties."
        )
    st.dataframe(
        [
            {
                "prompt": d.prompt,
                "people": d.human,
                "judge": d.judge or "unreadable",
                "same after swap": d.consistent,
                "agree": d.agrees,
            }
            for d in result.decisions
        ],
        hide_index=True,
        key="ev_agree_table",
    )


def _votes() -> list:
    try:
        from llm_playground.finetuning.preferences import PreferenceStore

        board = Leaderboard()
        return PreferenceStore(board.path).list_votes() if board.has_votes() else []
    except ImportError:
        return []
    except UserError as exc:
        show_user_error(exc)
        return []


def judge_tab() -> None:
    judge = _judge_setup()
    c1, c2 = st.columns(2)
    questions_text = c1.text_area(
        'Questions (JSONL: {"id", "question"})',
        EXAMPLE_QUESTIONS,
        key="ev_judge_questions",
        height=140,
    )
    answers_text = c2.text_area(
        'Answers (JSONL: {"id", "answer"})', EXAMPLE_ANSWERS, key="ev_judge_answers", height=140
    )
    label = st.text_input(
        "Whose answers are these? (the leaderboard row)", "example answers", key="ev_judge_label"
    )
    job = current_job("evaluator-judge")
    if st.button(
        "Judge the answers",
        key="ev_judge_run",
        type="primary",
        disabled=job is not None and job.running,
    ):
        try:
            pairs = judging.pair_questions(
                judging.parse_rows(questions_text, ("id", "question"), "questions"),
                judging.parse_rows(answers_text, ("id", "answer"), "answers"),
            )
            if judge is None:
                raise UserError(
                    "set up the judge first (a key for the API judge, or a local model)"
                )
            if not label.strip():
                raise UserError("name the answers (the leaderboard row they are recorded under)")
            start_job(
                "evaluator-judge",
                f"judge with {judge.name}",
                lambda stop: runs.judge_run(
                    judge, pairs, label, "judge questions (page)", stop_event=stop
                ),
                heavy=isinstance(judge, judging.LocalJudge),
            )
        except UserError as exc:
            show_user_error(exc)
    job_panel("evaluator-judge", draw=_draw_judge)

    st.subheader("Judge against people")
    votes = _votes()
    if not votes:
        st.caption(
            "No Lab 4 votes yet: vote on some pairs in the Fine-tuner, then let the judge "
            "decide the same pairs to see how often it agrees with people."
        )
        return
    n_pairs = st.number_input(
        "Pairs to judge", 1, len(votes), min(20, len(votes)), key="ev_agree_limit"
    )
    swap = st.checkbox(
        "Ask twice, with A and B swapped",
        value=True,
        key="ev_agree_swap",
        help="LLM judges tend to prefer one position (often the first answer). "
        "A verdict that flips when the answers swap places counts as a tie.",
    )
    job = current_job("evaluator-agreement")
    if st.button(
        f"Judge {int(n_pairs)} of the {len(votes)} voted pairs",
        key="ev_agree_run",
        disabled=(job is not None and job.running) or judge is None,
    ):
        chosen = votes[: int(n_pairs)]
        start_job(
            "evaluator-agreement",
            "judge vs people",
            lambda stop: judging.judge_pairs(judge, chosen, stop_event=stop, swap=swap),
        )
    job_panel("evaluator-agreement", draw=_draw_agreement)


# --- benchmarks ---------------------------------------------------------------------------


def _draw_harness(job, events) -> None:
    done = runs.last_done(events)
    if done is None:
        return
    lines = []
    for score in done.result.scores:
        err = f" ± {score.stderr:.4f}" if score.stderr is not None else ""
        lines.append(
            f"- `{score.task}` v{score.version}, {score.num_fewshot}-shot: "
            f"**{score.metric}** {score.value:.4f}{err}"
        )
    st.markdown("\n".join(lines))
    limit = done.result.limit
    st.caption(
        f"**{esc(done.result.model)}**"
        + (f", the first {limit} documents of each task" if limit else ", every document")
        + ". Recorded in the leaderboard with task version, shots and standard error."
    )
    _recorded_note(events)


def _published_beside_yours() -> None:
    """The model cards' figures on the left, this playground's harness runs on the right."""
    left, right = st.columns(2)
    with left:
        st.markdown("**Published (model cards)**")
        st.dataframe(
            [
                {
                    "model": p["model"],
                    "benchmark": p["benchmark"],
                    "shots": p["shots"],
                    "published %": p["value"],
                    "note": p["note"],
                }
                for p in published_rows()
            ],
            hide_index=True,
            key="ev_bench_published",
        )
        st.caption("Sources: SmolLM2-135M and Gemma 3 270M model cards.")
    with right:
        st.markdown("**Yours (this playground)**")
        try:
            mine = Leaderboard().benchmarks()
        except UserError as exc:
            show_user_error(exc)
            mine = []
        if mine:
            st.dataframe(
                [
                    {
                        "model": b["model"],
                        "task": f"{b['task']} v{b['task_version']}",
                        "shots": b["num_fewshot"],
                        "documents": b["limit"] or "all",
                        "metric": b["metric"],
                        "%": round(100 * b["value"], 1),
                        "± stderr %": None if b["stderr"] is None else round(100 * b["stderr"], 1),
                    }
                    for b in mine
                    if b["metric"] in ("acc", "acc_norm")
                ],
                hide_index=True,
                key="ev_bench_mine",
            )
        else:
            st.caption("No benchmark run yet: run one above.")


def benchmarks_tab() -> None:
    st.markdown(
        "The numbers model cards cite come from **lm-evaluation-harness** (or lighteval). "
        "Run its tasks here: the three shipped tasks work offline; the harness's own "
        "(hellaswag, arc_easy, piqa, winogrande, …) download their data and need a network."
    )
    c1, c2 = st.columns([2, 3])
    with c1:
        model = model_picker("Model", key="ev_bench_model", default="smollm2-135m-instruct")
    with c2:
        local = st.multiselect(
            "Shipped tasks",
            list(LOCAL_TASKS),
            default=[LOCAL_TASKS[0]],
            key="ev_bench_tasks",
            format_func=lambda t: f"{t} — {LOCAL_TASK_INFO[t]}",
        )
    c3, c4, c5 = st.columns([2, 1, 1])
    more = c3.text_input(
        "Other harness tasks (comma-separated, need a network)",
        "",
        key="ev_bench_more",
        placeholder="hellaswag, piqa",
    )
    shots = c4.number_input("Shots", 0, 25, 0, key="ev_bench_shots")
    limit = c5.number_input("Documents per task", 1, 100_000, 20, key="ev_bench_limit")
    job = current_job("evaluator-harness")
    if st.button(
        "Run the benchmark",
        key="ev_bench_run",
        type="primary",
        disabled=(job is not None and job.running) or not model,
    ):
        try:
            config = HarnessConfig(
                tasks=tuple(local) + parse_tasks(more), num_fewshot=int(shots), limit=int(limit)
            )
            config.check()
            loaded = _load(model)
            if loaded is not None:
                start_job(
                    "evaluator-harness",
                    f"{', '.join(config.tasks)} with {model}",
                    lambda stop: runs.harness_run(loaded, config, stop_event=stop),
                    params={"model": model},
                )
        except UserError as exc:
            show_user_error(exc)
    job_panel("evaluator-harness", draw=_draw_harness)

    _published_beside_yours()
    for title, text in READING_NOTES.items():
        with st.expander(title):
            st.markdown(text)


# --- the leaderboard ----------------------------------------------------------------------

COLUMN_LABELS = {
    "token_perplexity": ("token ppl", "%.2f"),
    "word_perplexity": ("word ppl", "%.2f"),
    "bits_per_byte": ("bits/byte", "%.4f"),
    "bleu": ("BLEU", "%.2f"),
    "chrf": ("chrF", "%.2f"),
    "rouge1": ("ROUGE-1", "%.3f"),
    "rouge2": ("ROUGE-2", "%.3f"),
    "rougeL": ("ROUGE-L", "%.3f"),
    "rougeLsum": ("ROUGE-Lsum", "%.3f"),
    "judge_score": ("judge", "%.2f"),
    "judge_ci_low": ("judge CI low", "%.2f"),
    "judge_ci_high": ("judge CI high", "%.2f"),
    "human_rating": ("human rating", "%.0f"),
    "human_ci_low": ("human CI low", "%.0f"),
    "human_ci_high": ("human CI high", "%.0f"),
}
TEXT_LABELS = {
    "perplexity_data": "perplexity on",
    "bleu_data": "BLEU/chrF on",
    "rouge_data": "ROUGE on",
    "judge_n": "judged",
    "judge_data": "judged on",
    "human_votes": "votes",
}
CHART_METRICS = {
    "bits_per_byte": ("perplexity_data", "bits per byte (lower is better)"),
    "token_perplexity": ("perplexity_data", "token perplexity (lower is better)"),
    "bleu": ("bleu_data", "BLEU"),
    "chrf": ("bleu_data", "chrF"),
    "rougeL": ("rouge_data", "ROUGE-L F"),
    "judge_score": ("judge_data", "mean judge score"),
    "human_rating": ("kind", "human rating (Lab 4)"),
}


def _leaderboard_chart(df) -> None:
    import altair as alt

    available = [m for m in CHART_METRICS if m in df.columns and df[m].notna().any()]
    if not available:
        return
    metric = st.selectbox(
        "Chart", available, format_func=lambda m: CHART_METRICS[m][1], key="ev_lb_metric"
    )
    data_col, title = CHART_METRICS[metric]
    chart = (
        alt.Chart(df[df[metric].notna()])
        .mark_bar()
        .encode(
            x=alt.X(f"{metric}:Q", title=title),
            y=alt.Y("model:N", sort="x", title=None, axis=alt.Axis(labelLimit=260)),
            color=alt.Color(f"{data_col}:N", title="measured on"),
            tooltip=[
                "model",
                "kind",
                alt.Tooltip(f"{metric}:Q", format=".3f"),
                data_col,
                "updated",
            ],
        )
    )
    st.altair_chart(chart, width="stretch")


def leaderboard_tab() -> None:
    try:
        board = Leaderboard()
        datasets = sorted({r.dataset for r in board.results() if r.metric == "token_perplexity"})
        c1, c2, c3 = st.columns([2, 2, 1])
        ppl_filter = c1.selectbox(
            "Perplexity measured on",
            ["latest of each model", *datasets],
            key="ev_lb_data",
            help="Pick one data set to compare perplexities like with like.",
        )
        name_filter = c2.text_input(
            "Filter models", key="ev_lb_filter", placeholder="part of a name"
        )
        rows = board.leaderboard(
            perplexity_data=None if ppl_filter.startswith("latest") else ppl_filter
        )
        if name_filter.strip():
            rows = [r for r in rows if name_filter.strip().lower() in r["model"].lower()]
        c3.download_button(
            "Download CSV",
            board.to_csv(rows),
            file_name="leaderboard.csv",
            mime="text/csv",
            key="ev_lb_csv",
        )
    except UserError as exc:
        show_user_error(exc)
        rows = []
    if not rows:
        st.info(
            "No results yet: every evaluation on this page (and `llm-playground eval …`) adds a row."
        )
        return
    import pandas as pd

    df = pd.DataFrame(rows)
    df = df[[c for c in df.columns if c in ("model", "kind") or df[c].notna().any()]]
    num = st.column_config.NumberColumn
    config = {k: num(label, format=fmt) for k, (label, fmt) in COLUMN_LABELS.items()}
    st.dataframe(df, hide_index=True, key="ev_lb_table", column_config=config | TEXT_LABELS)
    st.caption(
        "Click a column header to sort. Every metric column has a column beside it naming "
        "the data it was measured on; perplexities on different texts do not compare."
    )
    _leaderboard_chart(df)


# --- the page -----------------------------------------------------------------------------


def main() -> None:
    page_header(
        "📏 Lab 5 · Evaluator",
        "Measure models with the numbers the field uses — perplexity, BLEU, chrF, ROUGE, an "
        "LLM judge and the standard benchmarks — learn what each one means and where it "
        "misleads, and see every model on one leaderboard where no number is shown without "
        "what it was measured on.",
    )
    tabs = st.tabs(
        ["Perplexity", "BLEU / chrF / ROUGE", "LLM judge", "Benchmarks", "Leaderboard"],
        key="ev_tabs",
    )
    for tab, draw in zip(
        tabs,
        (perplexity_tab, overlap_tab, judge_tab, benchmarks_tab, leaderboard_tab),
        strict=True,
    ):
        with tab:
            draw()


main()
