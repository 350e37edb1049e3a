"""Lab 5's LLM judge tab: a local or API judge scores answers, and agrees (or not) with
people's votes from Lab 4."""

from __future__ import annotations

import json

import streamlit as st

from llm_playground.core.errors import UserError
from llm_playground.evaluation import judge as judging
from llm_playground.evaluation import runs
from llm_playground.evaluation.leaderboard import Leaderboard
from llm_playground.ui.components import (
    current_job,
    esc,
    job_panel,
    model_picker,
    show_user_error,
    start_job,
)
from llm_playground.ui.evaluator.common import load_model, recorded_note

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


def _fmt(value, digits: int = 2) -> str:
    return "—" if value is None else f"{value:.{digits}f}"


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
    loaded = load_model(name)
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
    recorded_note(events)


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


def _judge_answers(judge) -> None:
    """Questions and answers pasted in, judged in a background job and recorded."""
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


def _judge_against_people(judge) -> None:
    """The judge decides pairs people voted on in Lab 4: how often does it agree?"""
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


def judge_tab() -> None:
    judge = _judge_setup()
    _judge_answers(judge)
    st.subheader("Judge against people")
    _judge_against_people(judge)
