"""Lab 5's BLEU / chrF / ROUGE tab: scores against references, live or on a reference set."""

from __future__ import annotations

import streamlit as st

from llm_playground.core.errors import UserError
from llm_playground.evaluation import runs
from llm_playground.evaluation.overlap import ROUGE_TYPES, bleu_simple, ngram_counts
from llm_playground.evaluation.reference_set import ReferenceProgress, load_reference_set
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
    recorded_note(events)


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


def _your_text():
    """Hypotheses and references typed in, scored at once (nothing recorded)."""
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
            bleu, scores, _ = runs.overlap_scores(hyps, [refs])
            st.session_state["ev_bleu_result"] = (bleu, scores)
        except UserError as exc:
            st.session_state.pop("ev_bleu_result", None)
            show_user_error(exc)
    return st.session_state.get("ev_bleu_result")


def _reference_set():
    """A model answers the shipped reference set in a background job; its scores."""
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
        loaded = load_model(model)
        if loaded is not None:
            from llm_playground.generation.decoding import DecodingConfig

            config = DecodingConfig(strategy="greedy", max_new_tokens=int(max_new))
            start_job(
                "evaluator-reference",
                f"reference set with {model}",
                lambda stop: runs.reference_run(loaded, config, int(limit), stop_event=stop),
            )
    job_panel("evaluator-reference", draw=_draw_reference)
    return _reference_scores()


def overlap_tab() -> None:
    mode = st.radio(
        "Score", ["Your text", "A model on the reference set"], key="ev_ref_mode", horizontal=True
    )
    shown = _your_text() if mode == "Your text" else _reference_set()
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
    code_expander(
        "BLEU from its definition",
        [bleu_simple, ngram_counts],
        "Clipped n-gram precisions and the brevity penalty, written out. The scores above come "
        "from sacrebleu, which gives the same BLEU on the same words (a test checks it) and "
        "adds the standard tokenisers (13a by default) and the signature that makes a score "
        "reproducible.",
    )
