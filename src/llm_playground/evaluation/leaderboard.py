"""The leaderboard: every evaluation result, kept in SQLite, and one row per model.

Results live in the playground database (``paths.db``, the same file as the Lab 4
votes, in WAL mode) in two tables of their own: ``eval_results`` holds one row per
number (model, kind, metric, value, confidence interval, data set, settings as JSON,
date, and the id of the evaluation run it came from) and ``eval_meta`` the schema
version. A number is never stored without what it was measured on.

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
import sqlite3
import uuid
from collections.abc import Iterable, Mapping
from contextlib import closing
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from llm_playground.core.errors import UserError
from llm_playground.core.paths import get_paths

log = logging.getLogger(__name__)

SCHEMA_VERSION = 1
# The playground database's mark (``PRAGMA application_id``), shared with Lab 4's vote store.
APPLICATION_ID = 0x4C4C4D50
OWN_TABLES = {"eval_meta", "eval_results"}

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

_SCHEMA = """
CREATE TABLE IF NOT EXISTS eval_meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
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
"""


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
    """The results table in one SQLite file (``paths.db`` by default)."""

    def __init__(self, db_path: str | Path | None = None):
        self.path = Path(db_path).expanduser() if db_path else get_paths().db
        if self.path.is_dir():
            raise UserError(f"{self.path} is a folder; give the path of a database file")
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._check_file()
        with closing(self._connect()) as con, con:
            con.execute(f"PRAGMA application_id = {APPLICATION_ID}")
            con.executescript(_SCHEMA)
            row = con.execute("SELECT value FROM eval_meta WHERE key = 'schema_version'").fetchone()
            if row is None:
                con.execute(
                    "INSERT INTO eval_meta (key, value) VALUES ('schema_version', ?)",
                    (str(SCHEMA_VERSION),),
                )
            elif int(row[0]) > SCHEMA_VERSION:
                raise UserError(
                    f"{self.path} holds leaderboard schema version {row[0]}, newer than "
                    f"this version of LLM Playground reads ({SCHEMA_VERSION})"
                )

    def _check_file(self) -> None:
        """Refuse a file that is not this playground's database (never writes to it)."""
        if not self.path.exists() or self.path.stat().st_size == 0:
            return
        with self.path.open("rb") as fh:
            header = fh.read(100)
        if not header.startswith(b"SQLite format 3\x00"):
            raise UserError(
                f"{self.path} is not a SQLite database; refusing to use or overwrite it"
            )
        app_id = int.from_bytes(header[68:72], "big")
        if app_id not in (0, APPLICATION_ID):
            raise UserError(
                f"{self.path} is a SQLite database of another application; refusing to use it"
            )
        if app_id == 0:
            try:
                with closing(sqlite3.connect(f"file:{self.path}?mode=ro", uri=True)) as con:
                    tables = {
                        r[0]
                        for r in con.execute(
                            "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%'"
                        )
                    }
            except sqlite3.DatabaseError as exc:
                raise UserError(f"{self.path} is not a usable SQLite database ({exc})") from None
            if tables - OWN_TABLES:
                raise UserError(
                    f"{self.path} is a SQLite database of another application (tables: "
                    f"{', '.join(sorted(tables)[:5])}); refusing to use it"
                )

    def _connect(self) -> sqlite3.Connection:
        con = sqlite3.connect(self.path, timeout=30)
        con.execute("PRAGMA journal_mode=WAL")
        con.execute("PRAGMA busy_timeout=30000")
        return con

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
        with closing(self._connect()) as con, con:
            con.executemany(
                "INSERT INTO eval_results (run_id, model, kind, metric, value, ci_low, ci_high, n, "
                "dataset, settings, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                rows,
            )
        log.info("recorded %d results for %s on %s", len(rows), model, dataset)
        return run_id

    def delete_model(self, model: str) -> int:
        with closing(self._connect()) as con, con:
            return con.execute("DELETE FROM eval_results WHERE model = ?", (model,)).rowcount

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
        with closing(self._connect()) as con:
            rows = con.execute(query, args).fetchall()
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
        with closing(self._connect()) as con:
            return (
                con.execute(
                    "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'votes'"
                ).fetchone()
                is not None
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
        return json.dumps(
            {"version": SCHEMA_VERSION, "columns": list(COLUMNS), "rows": rows}, indent=2
        )


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
