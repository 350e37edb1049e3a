"""Evaluate, then record on the leaderboard: the one path the CLI and the Evaluator page share.

Each ``*_run`` function yields the events of its measurement (:mod:`llm_playground.core.events`)
and records the result when the run ends without being stopped. Recording never loses a
result: when the database refuses it (a corrupt or foreign file, a full disk), the run's
:class:`Recorded` event (just before the final ``Done`` event that carries the result)
says why in one line, and the caller shows the score first, then that line.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from llm_playground.core.errors import UserError
from llm_playground.core.events import Done, Metric, RunEvent


@dataclass(frozen=True, kw_only=True)
class Recorded(Metric):
    """What became of the result in the leaderboard: a run id, or the one-line reason it was not."""

    step: int = 0
    run_id: str | None = None
    error: str | None = None
    skipped: bool = False  # stopped early, or recording was not asked for


def _board(db_path: str | Path | None):
    from llm_playground.evaluation.leaderboard import Leaderboard

    return Leaderboard(db_path)


def record_safely(store: Callable[[], str | None]) -> Recorded:
    """Run ``store()``; a refusal of the database becomes a :class:`Recorded` with the reason."""
    try:
        run_id = store()
    except UserError as exc:
        return Recorded(error=f"the result was not recorded in the leaderboard: {exc}")
    except OSError as exc:
        return Recorded(
            error=f"the result was not recorded in the leaderboard: {exc.strerror or exc}"
        )
    return Recorded(run_id=run_id, skipped=run_id is None)


def _with_record(
    events: Iterator[RunEvent], record: bool, store: Callable[[Done], str | None]
) -> Iterator[RunEvent]:
    """Pass ``events`` through; at the ``Done`` event, record its result (unless stopped)
    and yield the outcome just before it."""
    for event in events:
        if isinstance(event, Done):
            if not record or event.stopped:
                yield Recorded(skipped=True)
            else:
                yield record_safely(lambda event=event: store(event))
        yield event


def perplexity_run(
    model,
    data,
    config,
    *,
    record: bool = True,
    db_path: str | Path | None = None,
    stop_event: threading.Event | None = None,
) -> Iterator[RunEvent]:
    """Perplexity of ``data`` (an :class:`~.perplexity.EvalText`), recorded under its name."""
    from llm_playground.evaluation.leaderboard import record_perplexity
    from llm_playground.evaluation.perplexity import perplexity_events
    from llm_playground.evaluation.scoring import scorer_for

    scorer = scorer_for(model)
    dataset = data.name + (" (cached mode)" if config.mode == "cached" else "")

    def store(done) -> str | None:
        return record_perplexity(_board(db_path), scorer.name, scorer.kind, done.result, dataset)

    events = perplexity_events(scorer, data.text, config, stop_event=stop_event)
    yield from _with_record(events, record, store)


def reference_run(
    loaded,
    decoding,
    limit: int | None = None,
    *,
    record: bool = True,
    db_path: str | Path | None = None,
    stop_event: threading.Event | None = None,
) -> Iterator[RunEvent]:
    """The shipped reference set answered by ``loaded``; BLEU/chrF and ROUGE recorded."""
    from llm_playground.evaluation.leaderboard import record_bleu, record_rouge
    from llm_playground.evaluation.reference_set import reference_set_events

    def store(done) -> str:
        result = done.result
        board = _board(db_path)
        dataset = reference_dataset_name(len(result.items), limit)
        kind = loaded.info.kind
        record_bleu(board, loaded.name, kind, result.bleu, dataset, result.settings)
        return record_rouge(
            board, loaded.name, kind, result.rouge, dataset, len(result.items), result.settings
        )

    events = reference_set_events(loaded, decoding, limit=limit, stop_event=stop_event)
    yield from _with_record(events, record, store)


def reference_dataset_name(n_items: int, limit: int | None) -> str:
    return "reference set" + (f" (first {n_items})" if limit else "")


def judge_run(
    judge,
    pairs,
    label: str,
    dataset: str,
    *,
    record: bool = True,
    db_path: str | Path | None = None,
    stop_event: threading.Event | None = None,
) -> Iterator[RunEvent]:
    """Judge ``pairs`` (id, question, answer); the mean score recorded under ``label``."""
    from llm_playground.evaluation.judge import judge_events
    from llm_playground.evaluation.leaderboard import record_judge

    if not label or not label.strip():
        raise UserError("name the answers (the leaderboard row they are recorded under)")

    def store(done) -> str | None:
        result = done.result
        if result.mean_score is None:
            return None
        return record_judge(
            _board(db_path),
            label.strip(),
            "answers",
            result.mean_score,
            result.ci,
            result.n_scored,
            dataset=dataset,
            settings={"judge": judge.name, "n_items": len(result.items)},
        )

    yield from _with_record(judge_events(judge, pairs, stop_event=stop_event), record, store)


def harness_run(
    model,
    config,
    *,
    record: bool = True,
    db_path: str | Path | None = None,
    stop_event: threading.Event | None = None,
) -> Iterator[RunEvent]:
    """lm-evaluation-harness tasks on ``model``; every metric recorded with task and version,
    shots, limit and standard error."""
    from llm_playground.evaluation.harness import harness_events

    def store(done) -> str:
        return _board(db_path).record_benchmarks(done.result)

    yield from _with_record(harness_events(model, config, stop_event=stop_event), record, store)


@dataclass(frozen=True)
class Entry:
    """Where a score goes on the leaderboard: the row's name and kind, the data it was
    measured on, and the database (``record`` False: the score alone, nothing stored)."""

    label: str
    kind: str
    dataset: str
    record: bool = True
    db_path: str | Path | None = None

    def store(self, write: Callable[[Any], str | None]) -> Recorded:
        """``write(board)`` unless recording is off; a refusal becomes the reason."""
        if not self.record:
            return Recorded(skipped=True)
        return record_safely(lambda: write(_board(self.db_path)))


#: Scores shown, not stored (text pasted into the page).
NOT_RECORDED = Entry(label="", kind="", dataset="", record=False)


def bleu_run(
    hyps: list[str],
    refs: list[list[str]],
    entry: Entry,
    *,
    tokenize: str = "13a",
    sentences: bool = True,
) -> tuple[Any, Recorded]:
    """Corpus BLEU and chrF of ``hyps`` against the reference streams ``refs``, recorded
    with their signatures as ``entry`` says: (the BleuResult, what became of the record)."""
    from llm_playground.evaluation.leaderboard import record_bleu
    from llm_playground.evaluation.overlap import bleu_chrf

    result = bleu_chrf(hyps, refs, tokenize=tokenize, sentences=sentences)
    recorded = entry.store(
        lambda board: record_bleu(board, entry.label, entry.kind, result, entry.dataset)
    )
    return result, recorded


def rouge_run(
    hyps: list[str], refs: list[str], entry: Entry, *, use_stemmer: bool = False
) -> tuple[dict[str, dict[str, float]], Recorded]:
    """ROUGE-1/2/L/Lsum of ``hyps`` against ``refs``, recorded as ``entry`` says: (the
    scores, what became of the record)."""
    from llm_playground.evaluation.leaderboard import record_rouge
    from llm_playground.evaluation.overlap import rouge

    scores = rouge(hyps, refs, use_stemmer=use_stemmer)
    settings = {"stemmer": use_stemmer}
    recorded = entry.store(
        lambda board: record_rouge(
            board, entry.label, entry.kind, scores, entry.dataset, len(hyps), settings
        )
    )
    return scores, recorded


def overlap_scores(
    hyps: list[str], refs: list[list[str]], entry: Entry = NOT_RECORDED, *, tokenize: str = "13a"
) -> tuple[Any, dict[str, dict[str, float]], Recorded]:
    """BLEU/chrF and ROUGE of ``hyps`` (ROUGE against the first reference stream), each
    recorded as :func:`bleu_run` and :func:`rouge_run` record it; the last outcome."""
    bleu, recorded = bleu_run(hyps, refs, entry, tokenize=tokenize)
    if recorded.error:  # the database refused the first: do not try the second
        entry = replace(entry, record=False)
    scores, rouge_recorded = rouge_run(hyps, refs[0], entry)
    return bleu, scores, recorded if recorded.error else rouge_recorded


def last_done(events: list[Any]) -> Done | None:
    return next((e for e in reversed(events) if isinstance(e, Done)), None)


def last_recorded(events: list[Any]) -> Recorded | None:
    return next((e for e in reversed(events) if isinstance(e, Recorded)), None)
