"""The leaderboard: every evaluation result, kept in SQLite, and one row per model.

Results live in the playground database (:mod:`llm_playground.core.db`, the same file
as the Lab 4 votes) in tables of their own: ``eval_results`` holds one row per number
(model, kind, metric, value, confidence interval, data set, settings as JSON, date, and
the id of the evaluation run it came from) and ``eval_benchmarks`` one row per
lm-evaluation-harness metric (task and version, shots, limit, value, standard error).
A number is never stored without what it was measured on.

:func:`leaderboard` pivots the latest run of each metric family per model into one
row: perplexity (token, word, bits per byte, with the data set), BLEU/chrF/ROUGE on the
reference set, the mean judge score with its 95 % confidence interval, and the human
rating of Lab 4 when its vote store is present.
"""

from __future__ import annotations

import csv
import io
import json
import logging
import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from llm_playground.core.db import Database, TableSet
from llm_playground.core.errors import UserError

log = logging.getLogger(__name__)

SCHEMA_VERSION = 2  # 2: the eval_benchmarks table (lm-evaluation-harness results)

# Metric families: all the metrics of one family come from the same evaluation run.
FAMILIES: dict[str, tuple[str, ...]] = {
    "perplexity": ("token_perplexity", "word_perplexity", "bits_per_byte"),
    "bleu": ("bleu", "chrf"),
    "rouge": ("rouge1", "rouge2", "rougeL", "rougeLsum"),
    "judge": ("judge_score",),
}
METRIC_FAMILY = {m: fam for fam, metrics in FAMILIES.items() for m in metrics}
DATA_COLUMN = {
    "perplexity": "perplexity_data",
    "bleu": "bleu_data",
    "rouge": "rouge_data",
    "judge": "judge_data",
}

# The leaderboard's columns, in order; every metric column has a column naming its data.
COLUMNS = (
    "model",
    "kind",
    "token_perplexity",
    "word_perplexity",
    "bits_per_byte",
    "perplexity_data",
    "bleu",
    "chrf",
    "bleu_data",
    "rouge1",
    "rouge2",
    "rougeL",
    "rougeLsum",
    "rouge_data",
    "judge_score",
    "judge_ci_low",
    "judge_ci_high",
    "judge_n",
    "judge_data",
    "human_rating",
    "human_ci_low",
    "human_ci_high",
    "human_votes",
    "updated",
)

TABLES = TableSet(
    name="leaderboard",
    version=SCHEMA_VERSION,
    marker_table="eval_results",
    schema="""
CREATE TABLE IF NOT EXISTS eval_results (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    run_id TEXT NOT NULL,
    model TEXT NOT NULL,
    kind TEXT NOT NULL,
    metric TEXT NOT NULL,
    value REAL NOT NULL,
    ci_low REAL,
    ci_high REAL,
    n INTEGER,
    dataset TEXT NOT NULL,
    settings TEXT NOT NULL,
    created_at TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS eval_results_model_metric ON eval_results (model, metric, created_at);
CREATE TABLE IF NOT EXISTS eval_benchmarks (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    run_id TEXT NOT NULL,
    model TEXT NOT NULL,
    kind TEXT NOT NULL,
    task TEXT NOT NULL,
    task_version TEXT NOT NULL,
    num_fewshot INTEGER NOT NULL,
    doc_limit INTEGER,
    metric TEXT NOT NULL,
    value REAL NOT NULL,
    stderr REAL,
    n INTEGER,
    created_at TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS eval_benchmarks_model ON eval_benchmarks (model, task, created_at)
""",
)
BENCHMARK_COLUMNS = (
    "model",
    "kind",
    "task",
    "task_version",
    "num_fewshot",
    "limit",
    "metric",
    "value",
    "stderr",
    "n",
    "created_at",
)


@dataclass(frozen=True)
class Result:
    """One stored number and what it was measured on."""

    run_id: str
    model: str
    kind: str
    metric: str
    value: float
    dataset: str
    settings: dict[str, Any]
    created_at: str
    ci_low: float | None = None
    ci_high: float | None = None
    n: int | None = None


class Leaderboard:
    """The results tables in the playground database (``paths.db`` by default)."""

    def __init__(self, db_path: str | Path | None = None):
        self.db = Database(db_path)
        self.db.ensure(TABLES)
        self.path = self.db.path

    # --- writing ------------------------------------------------------------------------

    def record(
        self,
        model: str,
        kind: str,
        metrics: Mapping[str, float],
        dataset: str,
        settings: Mapping[str, Any] | None = None,
        intervals: Mapping[str, tuple[float | None, float | None]] | None = None,
        n: int | None = None,
        created_at: str | None = None,
    ) -> str:
        """Store the numbers of one evaluation run; returns its run id."""
        if not model:
            raise UserError("a result needs a model name")
        if not dataset:
            raise UserError("a result needs the data set it was measured on")
        run_id = uuid.uuid4().hex[:12]
        when = created_at or datetime.now(UTC).isoformat(timespec="seconds")
        blob = json.dumps(dict(settings or {}), sort_keys=True, default=str)
        rows = []
        for metric, value in metrics.items():
            if value is None:
                continue
            lo, hi = (intervals or {}).get(metric, (None, None))
            rows.append((run_id, model, kind, metric, float(value), lo, hi, n, dataset, blob, when))
        if not rows:
            raise UserError("nothing to record: no metric has a value")
        self.db.write(
            lambda con: con.executemany(
                "INSERT INTO eval_results (run_id, model, kind, metric, value, ci_low, ci_high, n, "
                "dataset, settings, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                rows,
            )
        )
        log.info("recorded %d results for %s on %s", len(rows), model, dataset)
        return run_id

    def record_benchmarks(self, result, created_at: str | None = None) -> str:
        """Store every metric of a harness run (:class:`~.harness.HarnessResult`): task and
        version, shots, limit, metric, value and standard error."""
        run_id = uuid.uuid4().hex[:12]
        when = created_at or datetime.now(UTC).isoformat(timespec="seconds")
        rows = [
            (
                run_id,
                result.model,
                result.kind,
                s.task,
                s.version,
                s.num_fewshot,
                result.limit,
                s.metric,
                float(s.value),
                s.stderr,
                result.n_samples.get(s.task),
                when,
            )
            for s in result.scores
        ]
        if not rows:
            raise UserError("nothing to record: the harness returned no metric")
        self.db.write(
            lambda con: con.executemany(
                "INSERT INTO eval_benchmarks (run_id, model, kind, task, task_version, "
                "num_fewshot, doc_limit, metric, value, stderr, n, created_at) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                rows,
            )
        )
        return run_id

    def benchmarks(self, model: str | None = None) -> list[dict[str, Any]]:
        """Every stored benchmark number, newest first, with task version, shots and limit."""
        query = (
            "SELECT model, kind, task, task_version, num_fewshot, doc_limit, metric, value, "
            "stderr, n, created_at FROM eval_benchmarks"
        )
        args: tuple = ()
        if model:
            query += " WHERE model = ?"
            args = (model,)
        rows = self.db.read(query + " ORDER BY created_at DESC, id DESC", args)
        return [dict(zip(BENCHMARK_COLUMNS, r, strict=True)) for r in rows]

    def delete_model(self, model: str) -> int:
        def work(con) -> int:
            n = con.execute("DELETE FROM eval_results WHERE model = ?", (model,)).rowcount
            return n + con.execute("DELETE FROM eval_benchmarks WHERE model = ?", (model,)).rowcount

        return self.db.write(work)

    # --- reading ------------------------------------------------------------------------

    def results(self, model: str | None = None, metric: str | None = None) -> list[Result]:
        """Every stored number, newest first."""
        query = (
            "SELECT run_id, model, kind, metric, value, dataset, settings, created_at, ci_low, "
            "ci_high, n FROM eval_results"
        )
        where, args = [], []
        if model:
            where.append("model = ?")
            args.append(model)
        if metric:
            where.append("metric = ?")
            args.append(metric)
        if where:
            query += " WHERE " + " AND ".join(where)
        query += " ORDER BY created_at DESC, id DESC"
        rows = self.db.read(query, args)
        return [
            Result(
                r[0],
                r[1],
                r[2],
                r[3],
                r[4],
                r[5],
                json.loads(r[6] or "{}"),
                r[7],
                r[8],
                r[9],
                r[10],
            )
            for r in rows
        ]

    def leaderboard(
        self, perplexity_data: str | None = None, human_ratings: Iterable[tuple] | None = None
    ) -> list[dict[str, Any]]:
        """One row per model: the latest run of each metric family, with the data it used.

        ``perplexity_data`` keeps only perplexities measured on that data set (so the
        column compares like with like). ``human_ratings`` are Lab 4's
        ``(model, rating, ci_low, ci_high, n_votes)``; by default they are read from its
        vote store in the same database when it exists.
        """
        rows: dict[str, dict[str, Any]] = {}
        latest_run: dict[tuple[str, str], str] = {}
        for r in self.results():  # newest first
            family = METRIC_FAMILY.get(r.metric)
            if family is None:
                continue
            if family == "perplexity" and perplexity_data and r.dataset != perplexity_data:
                continue
            key = (r.model, family)
            run = latest_run.setdefault(key, r.run_id)
            if run != r.run_id:
                continue
            row = rows.setdefault(
                r.model, {c: None for c in COLUMNS} | {"model": r.model, "kind": r.kind}
            )
            row[r.metric] = r.value
            row[DATA_COLUMN[family]] = r.dataset
            if family == "judge":
                row["judge_ci_low"], row["judge_ci_high"], row["judge_n"] = r.ci_low, r.ci_high, r.n
                judge = r.settings.get("judge")
                row["judge_data"] = f"{r.dataset} (judge: {judge})" if judge else r.dataset
            if row["updated"] is None or r.created_at > row["updated"]:
                row["updated"] = r.created_at
        ratings = human_ratings if human_ratings is not None else self._human_ratings()
        for rating in ratings or ():
            if hasattr(rating, "rating"):
                model, value, lo, hi, n = (
                    rating.model,
                    rating.rating,
                    rating.ci_low,
                    rating.ci_high,
                    rating.n_votes,
                )
            else:
                model, value, lo, hi, n = tuple(rating)[:5]
            row = rows.setdefault(
                model, {c: None for c in COLUMNS} | {"model": model, "kind": "votes"}
            )
            row.update(human_rating=value, human_ci_low=lo, human_ci_high=hi, human_votes=n)
        return sorted(rows.values(), key=lambda r: r["model"])

    def has_votes(self) -> bool:
        """Whether Lab 4's vote tables are in this database."""
        return bool(
            self.db.read("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'votes'")
        )

    def _human_ratings(self) -> list:
        if not self.has_votes():
            return []
        try:
            from llm_playground.finetuning.preferences import PreferenceStore
        except ImportError:  # Lab 4 not part of this build
            return []
        try:
            return list(PreferenceStore(self.path).ratings())
        except Exception as exc:  # no votes table yet, or an older vote store
            log.info("no human ratings: %s", exc)
            return []

    # --- export -------------------------------------------------------------------------

    def to_csv(self, rows: list[dict[str, Any]] | None = None) -> str:
        rows = self.leaderboard() if rows is None else rows
        out = io.StringIO()
        writer = csv.DictWriter(out, fieldnames=list(COLUMNS), extrasaction="ignore")
        writer.writeheader()
        for row in rows:
            writer.writerow({k: ("" if v is None else v) for k, v in row.items()})
        return out.getvalue()

    def to_json(self, rows: list[dict[str, Any]] | None = None) -> str:
        rows = self.leaderboard() if rows is None else rows
        data = {"version": SCHEMA_VERSION, "columns": list(COLUMNS), "rows": rows}
        benchmarks = self.benchmarks()
        if benchmarks:
            data["benchmarks"] = benchmarks
        return json.dumps(data, indent=2)


# --- recording helpers for each kind of evaluation ----------------------------------------


def record_perplexity(
    board: Leaderboard, model: str, kind: str, result, dataset: str
) -> str | None:
    """Store a :class:`~llm_playground.evaluation.metrics.PerplexityResult` (not when it was stopped early)."""
    if getattr(result, "stopped", False):
        return None
    # A capped run covers a different span of text for each tokenizer: name the bytes too.
    name = dataset + (
        f" (first {result.n_tokens:,} tokens, {result.n_bytes:,} bytes)" if result.capped else ""
    )
    return board.record(
        model,
        kind,
        {
            "token_perplexity": result.token_perplexity,
            "word_perplexity": result.word_perplexity,
            "bits_per_byte": result.bits_per_byte,
        },
        dataset=name,
        settings=result.settings(),
        n=result.n_tokens,
    )


def record_bleu(
    board: Leaderboard,
    model: str,
    kind: str,
    bleu,
    dataset: str,
    settings: Mapping[str, Any] | None = None,
) -> str:
    """Store corpus BLEU and chrF (a :class:`~llm_playground.evaluation.metrics.BleuResult`) with signatures."""
    blob = {"bleu_signature": bleu.signature, "chrf_signature": bleu.chrf_signature} | dict(
        settings or {}
    )
    return board.record(
        model,
        kind,
        {"bleu": bleu.bleu, "chrf": bleu.chrf},
        dataset=dataset,
        settings=blob,
        n=bleu.n_segments,
    )


def record_rouge(
    board: Leaderboard,
    model: str,
    kind: str,
    rouge: Mapping[str, Any],
    dataset: str,
    n: int,
    settings: Mapping[str, Any] | None = None,
) -> str:
    """Store ROUGE F-measures averaged over segments."""
    blob = {"rouge": "F-measure averaged over segments"} | dict(settings or {})
    return board.record(
        model,
        kind,
        {t: v["fmeasure"] for t, v in rouge.items()},
        dataset=dataset,
        settings=blob,
        n=n,
    )


def record_judge(
    board: Leaderboard,
    model: str,
    kind: str,
    mean: float,
    ci: tuple[float, float] | None,
    n: int,
    dataset: str,
    settings: Mapping[str, Any] | None = None,
) -> str:
    lo, hi = ci if ci else (None, None)
    return board.record(
        model,
        kind,
        {"judge_score": mean},
        dataset=dataset,
        settings=settings,
        intervals={"judge_score": (lo, hi)},
        n=n,
    )
