"""Lab 5 · Evaluator: perplexity, BLEU/chrF/ROUGE, an LLM judge and the leaderboard."""

from __future__ import annotations

import json

import streamlit as st

from llm_playground.core.errors import UserError
from llm_playground.evaluation import judge as jm
from llm_playground.evaluation import metrics
from llm_playground.evaluation.leaderboard import (
    Leaderboard,
    record_bleu,
    record_judge,
    record_perplexity,
    record_rouge,
)
from llm_playground.ui.components import (
    cached_model,
    esc,
    job_manager,
    model_picker,
    page_header,
    show_user_error,
)

page_header(
    "📏 Lab 5 · Evaluator",
    "Measure models with the numbers the field uses — perplexity, BLEU, chrF, ROUGE and an "
    "LLM judge — learn what each one means and where it misleads, and see every model on one "
    "leaderboard where no number is shown without what it was measured on.",
)

state = st.session_state
manager = job_manager()
DATA_LABELS = {
    "wikitext-2": "WikiText-2 test (shipped)",
    "tinyshakespeare-val": "TinyShakespeare validation (last 10 %)",
    "pasted": "Pasted text",
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


def _job(key: str):
    return manager.get(state.get(key))


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


tab_ppl, tab_ref, tab_judge, tab_board = st.tabs(
    ["Perplexity", "BLEU / chrF / ROUGE", "LLM judge", "Leaderboard"], key="ev_tabs"
)

# --- perplexity ---------------------------------------------------------------------------

with tab_ppl:
    left, right = st.columns([1, 1])
    with left:
        ppl_model = model_picker("Model", key="ev_ppl_model", default="smollm2-135m-instruct")
        data_choice = st.radio(
            "Text to score",
            list(DATA_LABELS),
            format_func=DATA_LABELS.get,
            key="ev_ppl_data",
            horizontal=True,
        )
        if data_choice == "pasted":
            st.text_area(
                "Your text",
                key="ev_ppl_text",
                height=140,
                placeholder="Paste a few paragraphs. Longer texts give steadier numbers.",
            )
        if data_choice.startswith("wikitext-2"):
            st.caption(
                'WikiText-2 (Merity et al. 2016, "Pointer Sentinel Mixture Models") is shared '
                "under CC BY-SA 3.0; the shipped copy is the tokenized variant (`<unk>`, ` @-@ `), "
                "so its numbers differ from the raw variant's."
            )
    with right:
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
            10_000_000,
            2048,
            step=512,
            key="ev_ppl_maxtok",
            help="Score only the first N tokens for a quick run; 0 = the whole text.",
        )
        dtype = st.selectbox(
            "Precision",
            ["auto", "float32", "bfloat16"],
            key="ev_ppl_dtype",
            help="auto uses bfloat16 where this CPU runs it faster (measured once).",
        )

    job = _job("ev_ppl_job")
    running = job is not None and job.running
    if st.button(
        "Compute perplexity", key="ev_ppl_run", type="primary", disabled=running or not ppl_model
    ):
        try:
            if data_choice == "pasted":
                data = metrics.pasted_text(state.get("ev_ppl_text", ""))
            else:
                data = metrics.load_eval_text(data_choice)
            if stride > max_length:
                raise UserError(
                    f"the stride ({stride}) cannot exceed the max length ({max_length})"
                )
            loaded = _load(ppl_model)
            if loaded is not None:
                settings = {
                    "stride": int(stride),
                    "max_length": int(max_length),
                    "max_tokens": int(max_tokens) or None,
                    "dtype": dtype,
                }

                def ppl_factory(stop, loaded=loaded, data=data, kw=settings):
                    for event in metrics.perplexity_events(
                        loaded, data.text, stop_event=stop, **kw
                    ):
                        if isinstance(event, metrics.PerplexityResult):
                            record_perplexity(
                                Leaderboard(), loaded.name, loaded.info.kind, event, data.name
                            )
                            yield {"result": event, "data": data.name, "model": loaded.name}
                        else:
                            yield event

                job = manager.start(
                    "evaluator-perplexity",
                    f"perplexity of {ppl_model}",
                    ppl_factory,
                    {"model": ppl_model, "data": data.name},
                )
                state["ev_ppl_job"] = job.id
                running = True
        except UserError as exc:
            show_user_error(exc)

    @st.fragment(run_every=0.5 if running else None)
    def perplexity_output() -> None:
        current = _job("ev_ppl_job")
        if current is None:
            st.info("Pick a model and a text, then press **Compute perplexity**.")
            return
        events = current.events_since(0)
        done = next((e for e in reversed(events) if isinstance(e, dict)), None)
        if current.error:
            st.error(f"The run failed: {current.error}")
        if done is None and current.running:
            prog = next(
                (e for e in reversed(events) if isinstance(e, metrics.PerplexityProgress)), None
            )
            frac = prog.fraction if prog else 0.0
            text = (
                (
                    f"Scoring {prog.tokens_done:,} / {prog.tokens_total:,} tokens "
                    f"({prog.windows_done}/{prog.windows_total} windows)"
                )
                if prog
                else "Tokenizing…"
            )
            st.progress(frac, text=text)
            if st.button("Stop", key="ev_ppl_stop"):
                manager.stop(current.id)
            return
        if done is None:
            return
        if state.get(
            "ev_ppl_was_running"
        ):  # redraw the whole page once: the leaderboard has a new row
            state["ev_ppl_was_running"] = False
            st.rerun()
        r: metrics.PerplexityResult = done["result"]
        m1, m2, m3 = st.columns(3)
        m1.metric("Token perplexity", f"{r.token_perplexity:.2f}", help="exp(NLL sum / tokens)")
        m2.metric("Word perplexity", f"{r.word_perplexity:.2f}", help="exp(NLL sum / words)")
        m3.metric("Bits per byte", f"{r.bits_per_byte:.4f}", help="NLL sum / ln 2 / UTF-8 bytes")
        scope = f"the first {r.n_tokens:,} tokens of " if r.capped else ""
        st.caption(
            f"**{esc(done['model'])}** on {scope}**{esc(done['data'])}**: {r.n_tokens:,} scored tokens "
            "(the first token of a text has no context, so it is read but not scored), "
            f"{r.n_words:,} words, {r.n_bytes:,} bytes; stride {r.stride}, max length {r.max_length}, "
            f"{r.dtype}, {r.tokens_per_s:,.0f} tokens/s."
            + (
                " Stopped early: not recorded in the leaderboard."
                if r.stopped
                else " Recorded in the leaderboard."
            )
        )

    state["ev_ppl_was_running"] = running
    perplexity_output()

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
            "same per whitespace-separated word, the unit older papers report.\n\n"
            "The **sliding window** (the method of the transformers perplexity guide): a model "
            "sees at most *max length* tokens, so windows start every *stride* tokens and each "
            "scores only its new tokens, with up to *max length − stride* tokens of context. A "
            "smaller stride gives more context and lower perplexity, at more compute. Compare "
            "numbers only on the same text with the same window."
        )

# --- BLEU / chrF / ROUGE ------------------------------------------------------------------

with tab_ref:
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
                state["ev_bleu_result"] = (
                    metrics.bleu_chrf(hyps, [refs]),
                    metrics.rouge(hyps, refs),
                )
            except UserError as exc:
                state.pop("ev_bleu_result", None)
                show_user_error(exc)
        shown = state.get("ev_bleu_result")
    else:
        c1, c2, c3 = st.columns([2, 1, 1])
        with c1:
            ref_model = model_picker("Model", key="ev_ref_model", default="smollm2-135m-instruct")
        limit = c2.number_input(
            "Items", 1, len(metrics.load_reference_set()), 5, key="ev_ref_limit"
        )
        max_new = c3.number_input("Max new tokens", 4, 256, 40, key="ev_ref_maxnew")
        st.caption(
            f"The shipped reference set: {len(metrics.load_reference_set())} short factual "
            "questions with one-sentence reference answers, answered greedily (Lab 3's decoding)."
        )
        job = _job("ev_ref_job")
        ref_running = job is not None and job.running
        if st.button(
            "Generate and score",
            key="ev_ref_run",
            type="primary",
            disabled=ref_running or not ref_model,
        ):
            loaded = _load(ref_model)
            if loaded is not None:
                from llm_playground.generation.decoding import DecodingConfig

                config = DecodingConfig(strategy="greedy", max_new_tokens=int(max_new))

                def ref_factory(stop, loaded=loaded, config=config, limit=int(limit)):
                    for event in metrics.reference_set_events(
                        loaded, config, limit=limit, stop_event=stop
                    ):
                        if isinstance(event, metrics.ReferenceResult) and not event.stopped:
                            board = Leaderboard()
                            name = f"reference set ({len(event.items)} items)"
                            record_bleu(
                                board,
                                loaded.name,
                                loaded.info.kind,
                                event.bleu,
                                name,
                                event.settings,
                            )
                            record_rouge(
                                board,
                                loaded.name,
                                loaded.info.kind,
                                event.rouge,
                                name,
                                len(event.items),
                                event.settings,
                            )
                        yield event

                job = manager.start(
                    "evaluator-reference", f"reference set with {ref_model}", ref_factory
                )
                state["ev_ref_job"] = job.id
                ref_running = True

        @st.fragment(run_every=0.5 if ref_running else None)
        def reference_progress() -> None:
            current = _job("ev_ref_job")
            if current is None:
                return
            events = current.events_since(0)
            if current.error:
                st.error(f"The run failed: {current.error}")
            if current.running:
                prog = [e for e in events if isinstance(e, metrics.ReferenceProgress)]
                total = prog[-1].total if prog else int(limit)
                st.progress(len(prog) / max(total, 1), text=f"Answered {len(prog)} / {total}")
                if prog:
                    st.caption(f"Last answer: {esc(prog[-1].answer)}")
                if st.button("Stop", key="ev_ref_stop"):
                    manager.stop(current.id)
            elif state.get("ev_ref_was_running"):
                state["ev_ref_was_running"] = False
                st.rerun()

        state["ev_ref_was_running"] = ref_running
        reference_progress()
        job = _job("ev_ref_job")
        result = None
        if job is not None and not job.running:
            result = next(
                (e for e in job.events_since(0) if isinstance(e, metrics.ReferenceResult)), None
            )
        shown = (result.bleu, result.rouge) if result else None
        if result:
            st.dataframe(
                [
                    {
                        "question": it.prompt,
                        "answer": a,
                        "reference": it.reference,
                        "sentence BLEU": round(s.bleu, 2),
                        "chrF": round(s.chrf, 2),
                    }
                    for it, a, s in zip(
                        result.items, result.answers, result.bleu.sentences, strict=True
                    )
                ],
                hide_index=True,
                key="ev_ref_table",
            )
            st.caption(
                "Recorded in the leaderboard."
                if not result.stopped
                else "Stopped early: not recorded."
            )

    if shown:
        bleu, rouge_scores = shown
        m = st.columns(6)
        m[0].metric("BLEU (corpus)", f"{bleu.bleu:.2f}")
        m[1].metric("chrF (corpus)", f"{bleu.chrf:.2f}")
        for col, name in zip(m[2:], metrics.ROUGE_TYPES, strict=True):
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

with tab_judge:
    kind = st.radio(
        "Judge",
        ["Offline local judge", "OpenAI-compatible API"],
        key="ev_judge_kind",
        horizontal=True,
    )
    judge = None
    if kind == "OpenAI-compatible API":
        c1, c2, c3 = st.columns([2, 1, 1])
        base_url = c1.text_input(
            "Base URL",
            "https://api.openai.com/v1",
            key="ev_judge_url",
            help="OpenAI, Gemini (…/v1beta/openai), vLLM, llama.cpp or Ollama "
            "(http://localhost:11434/v1)",
        )
        api_model = c2.text_input("Model", "gpt-4o-mini", key="ev_judge_api_model")
        api_key = c3.text_input(
            "API key",
            type="password",
            key="ev_judge_key",
            help="Kept in this browser session's memory only; never written to disk "
            "or logs. Empty: OPENAI_API_KEY from the environment.",
        )
        try:
            judge = jm.OpenAICompatibleJudge.from_settings(
                base_url, api_model, api_key or None, timeout=60.0, max_retries=4
            )
        except UserError as exc:
            st.info(str(exc))
    else:
        local_name = model_picker(
            "Local judge model", key="ev_judge_local", default=jm.DEFAULT_LOCAL_JUDGE
        )
        st.caption(
            "A 135M model is a weak judge; it shows how judge scores behave offline. "
            "Use a strong API model for numbers you trust."
        )
        loaded = _load(local_name)
        judge = jm.LocalJudge(loaded) if loaded is not None else None

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
    job = _job("ev_judge_job")
    judge_running = job is not None and job.running
    if st.button("Judge the answers", key="ev_judge_run", type="primary", disabled=judge_running):
        try:
            pairs = jm.pair_questions(
                jm.parse_jsonl(questions_text, ("id", "question"), "questions"),
                jm.parse_jsonl(answers_text, ("id", "answer"), "answers"),
            )
            if judge is None:
                raise UserError(
                    "set up the judge first (a key for the API judge, or a local model)"
                )
            if not label.strip():
                raise UserError("name the answers (the leaderboard row they are recorded under)")

            row_name = label.strip()

            def judge_factory(stop, judge=judge, pairs=pairs, label=row_name):
                for event in jm.judge_events(judge, pairs, stop_event=stop):
                    if (
                        isinstance(event, jm.JudgeResult)
                        and event.mean_score is not None
                        and not event.stopped
                    ):
                        record_judge(
                            Leaderboard(),
                            label,
                            "answers",
                            event.mean_score,
                            event.ci,
                            event.n_scored,
                            dataset="judge questions (page)",
                            settings={"judge": judge.name, "n_items": len(event.items)},
                        )
                    yield event

            job = manager.start("evaluator-judge", f"judge with {judge.name}", judge_factory)
            state["ev_judge_job"] = job.id
            judge_running = True
        except UserError as exc:
            show_user_error(exc)

    @st.fragment(run_every=0.5 if judge_running else None)
    def judge_output() -> None:
        current = _job("ev_judge_job")
        if current is None:
            return
        events = current.events_since(0)
        if current.error:
            st.error(current.error)
        result = next((e for e in events if isinstance(e, jm.JudgeResult)), None)
        items = (
            result.items if result else [e.item for e in events if isinstance(e, jm.JudgeProgress)]
        )
        if current.running:
            total = events[-1].total if events else 0
            st.progress(len(items) / max(total, 1), text=f"Judged {len(items)} / {total or '…'}")
        if items:
            st.dataframe(
                [
                    {
                        "id": i.id,
                        "score": i.score,
                        "reason": i.reason or i.error or "",
                        "raw": i.raw,
                    }
                    for i in items
                ],
                hide_index=True,
                key="ev_judge_table",
            )
        if result and state.get("ev_judge_was_running"):
            state["ev_judge_was_running"] = False
            st.rerun()
        if result:
            ci = f" (95 % CI {result.ci[0]:.2f} – {result.ci[1]:.2f})" if result.ci else ""
            st.metric("Mean judge score", _fmt(result.mean_score) + ci)
            st.caption(
                f"{result.n_scored} of {len(result.items)} answers scored by {esc(result.judge)}; "
                "unscored items keep the judge's raw answer."
            )

    state["ev_judge_was_running"] = judge_running
    judge_output()

    st.subheader("Judge against people")
    votes = []
    try:
        from llm_playground.finetuning.preferences import PreferenceStore

        if Leaderboard().has_votes():
            votes = PreferenceStore(Leaderboard().path).list_votes()
    except ImportError:
        pass
    except UserError as exc:
        show_user_error(exc)
    if not votes:
        st.caption(
            "No Lab 4 votes yet: vote on some pairs in the Fine-tuner, then let the judge "
            "decide the same pairs to see how often it agrees with people."
        )
    else:
        n_agree = st.number_input(
            "Pairs to judge", 1, len(votes), min(20, len(votes)), key="ev_agree_limit"
        )
        swap = st.checkbox(
            "Ask twice, with A and B swapped",
            value=True,
            key="ev_agree_swap",
            help="LLM judges tend to prefer one position (often the first answer). "
            "A verdict that flips when the answers swap places counts as a tie.",
        )
        job = _job("ev_agree_job")
        agree_running = job is not None and job.running
        if st.button(
            f"Judge {int(n_agree)} of the {len(votes)} voted pairs",
            key="ev_agree_run",
            disabled=agree_running or judge is None,
        ):

            def agree_factory(stop, judge=judge, votes=votes[: int(n_agree)], swap=swap):
                yield from jm.judge_pairs(judge, votes, stop_event=stop, swap=swap)

            job = manager.start("evaluator-agreement", "judge vs people", agree_factory)
            state["ev_agree_job"] = job.id
            agree_running = True

        @st.fragment(run_every=0.5 if agree_running else None)
        def agreement_output() -> None:
            current = _job("ev_agree_job")
            if current is None:
                return
            events = current.events_since(0)
            if current.error:
                st.error(current.error)
            result = next((e for e in events if isinstance(e, jm.Agreement)), None)
            if result is None:
                st.progress(len(events) / max(int(n_agree), 1), text=f"Judged {len(events)} pairs")
                return
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

        agreement_output()

# --- the leaderboard ----------------------------------------------------------------------

with tab_board:
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
    else:
        import altair as alt
        import pandas as pd

        df = pd.DataFrame(rows)
        df = df[
            [c for c in df.columns if c in ("model", "kind") or df[c].notna().any()]
        ]  # no empty columns
        num = st.column_config.NumberColumn
        st.dataframe(
            df,
            hide_index=True,
            key="ev_lb_table",
            column_config={
                "token_perplexity": num("token ppl", format="%.2f"),
                "word_perplexity": num("word ppl", format="%.2f"),
                "bits_per_byte": num("bits/byte", format="%.4f"),
                "perplexity_data": "perplexity on",
                "bleu": num("BLEU", format="%.2f"),
                "chrf": num("chrF", format="%.2f"),
                "bleu_data": "BLEU/chrF on",
                "rouge1": num("ROUGE-1", format="%.3f"),
                "rouge2": num("ROUGE-2", format="%.3f"),
                "rougeL": num("ROUGE-L", format="%.3f"),
                "rougeLsum": num("ROUGE-Lsum", format="%.3f"),
                "rouge_data": "ROUGE on",
                "judge_score": num("judge", format="%.2f"),
                "judge_ci_low": num("judge CI low", format="%.2f"),
                "judge_ci_high": num("judge CI high", format="%.2f"),
                "judge_n": "judged",
                "judge_data": "judged on",
                "human_rating": num("human rating", format="%.0f"),
                "human_ci_low": num("human CI low", format="%.0f"),
                "human_ci_high": num("human CI high", format="%.0f"),
                "human_votes": "votes",
            },
        )
        st.caption(
            "Click a column header to sort. Every metric column has a column beside it naming "
            "the data it was measured on; perplexities on different texts do not compare."
        )
        chart_metrics = {
            "bits_per_byte": ("perplexity_data", "bits per byte (lower is better)"),
            "token_perplexity": ("perplexity_data", "token perplexity (lower is better)"),
            "bleu": ("bleu_data", "BLEU"),
            "chrf": ("bleu_data", "chrF"),
            "rougeL": ("rouge_data", "ROUGE-L F"),
            "judge_score": ("judge_data", "mean judge score"),
            "human_rating": ("kind", "human rating (Lab 4)"),
        }
        available = [m for m in chart_metrics if m in df.columns and df[m].notna().any()]
        if available:
            metric = st.selectbox(
                "Chart", available, format_func=lambda m: chart_metrics[m][1], key="ev_lb_metric"
            )
            data_col, title = chart_metrics[metric]
            sub = df[df[metric].notna()]
            chart = (
                alt.Chart(sub)
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
