"""Human preference votes: a durable SQLite store, TRL-ready export, win rates and ratings.

A vote records what the person saw — the prompt, response A and response B, in the
positions they were shown — which models wrote them, the choice (``a``, ``b``, ``tie``
or ``both-bad``), an optional comment, a UTC timestamp and a session id.

Storage
    One SQLite file (by default :attr:`llm_playground.core.paths.Paths.db`, shared with the
    Lab 5 leaderboard, which keeps its own tables). The file is marked as the
    playground's with ``PRAGMA application_id`` (:data:`APPLICATION_ID`) and the vote
    schema carries its version in the ``prefs_meta`` table. A file that is not SQLite,
    a SQLite file of another application, a corrupt file or one written by a newer
    schema is refused with a :class:`~llm_playground.core.errors.UserError` and never
    written to.

    The database runs in WAL mode; every write is its own ``BEGIN IMMEDIATE``
    transaction with a busy timeout and retries, so tabs, threads and processes can
    vote at once without losing or corrupting a vote. ``synchronous=NORMAL`` is the
    default: in WAL mode a commit is in the operating system's hands before
    :meth:`PreferenceStore.add_vote` returns, so an acknowledged vote survives the
    process being killed, and the database can never be corrupted; only an operating
    system crash or power cut can lose the last few votes. ``synchronous="FULL"``
    closes that gap too (an fsync per vote), at the price of a disk flush per vote —
    about 200 votes/s on a typical virtual disk instead of thousands.

Export
    :meth:`PreferenceStore.export_jsonl` writes TRL's standard preference format, one
    ``{"prompt", "chosen", "rejected"}`` object a line for each A/B vote. Ties and
    "both bad" votes carry no preference, so they are handled as the user asks:
    ``drop`` (counted in the result, not written), ``separate`` (written to a sibling
    file ``NAME.ties.jsonl`` as ``{"prompt", "response_a", "response_b", "label"}``)
    or ``label`` (kept in the main file; every line then has a ``label`` field:
    ``"preferred"`` when ``chosen`` was really preferred to ``rejected``, and
    ``"tie"`` or ``"both-bad"`` when it was not — then ``chosen`` is simply the
    response shown as A and ``rejected`` the one shown as B, and a trainer must
    filter on ``label == "preferred"``).

Ratings
    Win rates count a tie as half a win; "both bad" votes are reported apart. The
    Bradley–Terry model P(i beats j) = 1 / (1 + exp(θj − θi)) is fitted by Newton's
    method on the log-likelihood (ties as half a win to each side), shown on the Elo
    scale (1000 + 400·θ/ln 10) with 95% intervals from the observed information (or a
    bootstrap). When the maximum-likelihood estimate does not exist (a model that never
    lost or never won), a weak Gaussian prior keeps the ratings finite and the result
    says so. An online Elo view (K = 32) is given as well.
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import multiprocessing
import os
import queue
import random
import secrets
import shutil
import sqlite3
import tempfile
import threading
import time
import urllib.parse
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from numbers import Integral
from pathlib import Path
from typing import TYPE_CHECKING, Any

from llm_playground.core.errors import UserError

if TYPE_CHECKING:  # numpy is imported where ratings are computed, not to store a vote
    import numpy as np

log = logging.getLogger(__name__)

#: ``PRAGMA application_id`` of a playground database ("LLMP").
APPLICATION_ID = 0x4C4C4D50
#: Version of the vote tables; a database with a larger one is refused.
SCHEMA_VERSION = 1
CHOICES = ("a", "b", "tie", "both-bad")
TIES_MODES = ("drop", "separate", "label")
SYNCHRONOUS_MODES = ("NORMAL", "FULL")
#: Ratings are shown on the Elo scale: BASE_RATING + ELO_SCALE * theta.
BASE_RATING = 1000.0
ELO_SCALE = 400.0 / math.log(10.0)
#: Strength of the Gaussian prior used only when the plain MLE does not exist.
DEFAULT_PRIOR = 0.1
MAX_TEXT_CHARS = 1_000_000

_SQLITE_MAGIC = b"SQLite format 3\x00"
_BUSY_TIMEOUT_S = 30.0
_WRITE_ATTEMPTS = 8

_SCHEMA = """
CREATE TABLE IF NOT EXISTS prefs_meta (
    key   TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS votes (
    id         INTEGER PRIMARY KEY AUTOINCREMENT,
    uid        TEXT NOT NULL UNIQUE,
    prompt     TEXT NOT NULL CHECK (length(trim(prompt)) > 0),
    response_a TEXT NOT NULL,
    response_b TEXT NOT NULL,
    model_a    TEXT,
    model_b    TEXT,
    choice     TEXT NOT NULL CHECK (choice IN ('a', 'b', 'tie', 'both-bad')),
    comment    TEXT NOT NULL DEFAULT '',
    created_at TEXT NOT NULL,
    session_id TEXT NOT NULL DEFAULT ''
);
CREATE INDEX IF NOT EXISTS votes_models ON votes (model_a, model_b);
"""

_VOTE_COLUMNS = (
    "id",
    "uid",
    "prompt",
    "response_a",
    "response_b",
    "model_a",
    "model_b",
    "choice",
    "comment",
    "created_at",
    "session_id",
)


# --- records ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Vote:
    """One stored vote, as the person saw it (A on the left, B on the right)."""

    id: int
    uid: str
    prompt: str
    response_a: str
    response_b: str
    model_a: str | None
    model_b: str | None
    choice: str
    comment: str
    created_at: str
    session_id: str

    @property
    def winner(self) -> str | None:
        """The model that was preferred (None for a tie, both bad, or an unnamed model)."""
        return {"a": self.model_a, "b": self.model_b}.get(self.choice)

    @property
    def chosen(self) -> str | None:
        """The preferred response, or None when the vote carries no preference."""
        return {"a": self.response_a, "b": self.response_b}.get(self.choice)

    @property
    def rejected(self) -> str | None:
        return {"a": self.response_b, "b": self.response_a}.get(self.choice)


@dataclass(frozen=True)
class Pair:
    """Two responses to one prompt in randomised positions, model names hidden.

    The names are kept out of ``repr`` and out of the public fields; they become visible
    in the :class:`Vote` that :meth:`record` returns, i.e. only once the vote is stored.
    """

    prompt: str
    response_a: str
    response_b: str
    pair_id: str
    _model_a: str | None = field(default=None, repr=False, compare=False)
    _model_b: str | None = field(default=None, repr=False, compare=False)
    _swapped: bool = field(default=False, repr=False, compare=False)

    def record(
        self, store: PreferenceStore, choice: str, *, comment: str = "", session_id: str = ""
    ) -> Vote:
        """Store the vote on this pair and return it, names revealed. Recording the same
        pair twice (a double click, a rerun) stores it once and returns the first vote."""
        return store.add_vote(
            self.prompt,
            self.response_a,
            self.response_b,
            choice,
            model_a=self._model_a,
            model_b=self._model_b,
            comment=comment,
            session_id=session_id,
            uid=self.pair_id,
        )


def make_pair(
    prompt: str,
    response_1: str,
    model_1: str | None,
    response_2: str,
    model_2: str | None,
    rng: Any = None,
) -> Pair:
    """Put two responses in random positions A and B (a fair coin from ``rng``).

    ``rng`` may be a :class:`random.Random`, a numpy ``Generator``, an int seed, or None
    (operating-system randomness).
    """
    if rng is None:
        swap = secrets.randbits(1) == 1
    elif isinstance(rng, Integral) and not isinstance(rng, bool):
        swap = random.Random(int(rng)).random() < 0.5
    elif hasattr(rng, "random"):
        swap = float(rng.random()) < 0.5
    else:
        raise UserError(
            f"rng must be a random.Random, a numpy Generator, a seed or None, "
            f"not {type(rng).__name__}"
        )
    first, second = (response_1, model_1), (response_2, model_2)
    (ra, ma), (rb, mb) = (second, first) if swap else (first, second)
    return Pair(
        prompt=prompt,
        response_a=ra,
        response_b=rb,
        pair_id=uuid.uuid4().hex,
        _model_a=ma,
        _model_b=mb,
        _swapped=swap,
    )


@dataclass(frozen=True)
class Rating:
    """A model's Bradley–Terry rating on the Elo scale with its 95% interval.

    ``n_votes`` counts the votes the rating is fitted on (A/B and ties against another
    named model; "both bad" votes are not part of it)."""

    model: str
    rating: float
    ci_low: float
    ci_high: float
    n_votes: int


@dataclass(frozen=True)
class ExportResult:
    """What an export wrote. ``n_dropped`` counts ties and both-bad votes left out."""

    path: Path
    ties: str
    n_pairs: int
    n_ties: int
    n_both_bad: int
    n_dropped: int
    ties_path: Path | None = None

    def summary(self) -> str:
        text = f"{self.n_pairs} preference pair(s) -> {self.path}"
        extra = self.n_ties + self.n_both_bad
        if self.ties == "drop" and extra:
            text += f"; dropped {self.n_ties} tie(s) and {self.n_both_bad} both-bad vote(s)"
        elif self.ties == "separate":
            text += (
                f"; {self.n_ties} tie(s) and {self.n_both_bad} both-bad vote(s) -> {self.ties_path}"
            )
        elif self.ties == "label" and extra:
            text += (
                f" plus {self.n_ties} tie(s) and {self.n_both_bad} both-bad vote(s) "
                "labelled in the same file"
            )
        return text


# --- validation helpers --------------------------------------------------------------------


def normalise_choice(choice: object) -> str:
    """``a``/``b``/``tie``/``both-bad`` (case and ``_``/space tolerant) or a UserError."""
    text = str(choice).strip().lower().replace("_", "-").replace(" ", "-")
    text = {"bothbad": "both-bad", "a-is-better": "a", "b-is-better": "b"}.get(text, text)
    if text not in CHOICES:
        raise UserError(f"choice must be one of {', '.join(CHOICES)}, not {str(choice)!r}")
    return text


def _text(value: object, name: str, *, required: bool = False) -> str:
    if value is None:
        value = ""
    if not isinstance(value, str):
        raise UserError(f"{name} must be text, not {type(value).__name__}")
    if required and not value.strip():
        raise UserError(f"{name} is empty")
    if len(value) > MAX_TEXT_CHARS:
        raise UserError(
            f"{name} is too long ({len(value):,} characters; the limit is {MAX_TEXT_CHARS:,})"
        )
    return value


def _model_name(value: object, name: str) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str):
        raise UserError(f"{name} must be text, not {type(value).__name__}")
    value = value.strip()
    if len(value) > 500:
        raise UserError(f"{name} is too long")
    return value or None


def _utc_now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="microseconds")


def _is_busy(exc: sqlite3.Error) -> bool:
    text = str(exc).lower()
    return "locked" in text or "busy" in text


def sibling_ties_path(out_path: str | os.PathLike) -> Path:
    """Where ``--ties separate`` writes ties: ``prefs.jsonl`` -> ``prefs.ties.jsonl``."""
    path = Path(out_path)
    suffix = path.suffix or ".jsonl"
    return path.with_name(f"{path.stem if path.suffix else path.name}.ties{suffix}")


# --- the store -----------------------------------------------------------------------------


class PreferenceStore:
    """Votes in a SQLite database (WAL mode). Safe to share between threads; each
    thread (and each process) gets its own connection."""

    def __init__(
        self, db_path: str | os.PathLike, *, synchronous: str = "NORMAL", create: bool = True
    ) -> None:
        if str(db_path).strip() == "":
            raise UserError("the database path is empty")
        self.path = Path(db_path).expanduser()
        if not create and not self.path.exists():
            raise UserError(f"there is no vote database at {self.path}")
        sync = str(synchronous).upper()
        if sync not in SYNCHRONOUS_MODES:
            raise UserError(f"synchronous must be NORMAL or FULL, not {synchronous!r}")
        self.synchronous = sync
        self._local = threading.local()
        self._open()

    def __repr__(self) -> str:
        return f"PreferenceStore({str(self.path)!r})"

    # connection handling ------------------------------------------------------------------

    def _open(self) -> None:
        """Refuse foreign or corrupt files, then create or upgrade the vote tables."""
        path = self.path
        if path.is_dir():
            raise UserError(f"{path} is a folder; give the path of a database file")
        state = _inspect(path)
        if state == "new":
            try:
                path.parent.mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                raise UserError(
                    f"cannot create the folder {path.parent}: {exc.strerror or exc}"
                ) from None
        if state == "ready":  # nothing to create: opening writes nothing
            return
        for attempt in range(_WRITE_ATTEMPTS):
            try:
                conn = self._conn()
                if conn.execute("PRAGMA journal_mode").fetchone()[0].lower() != "wal":
                    mode = conn.execute("PRAGMA journal_mode=WAL").fetchone()[0]
                    if mode.lower() != "wal":
                        raise UserError(
                            f"{path}: cannot switch the database to WAL mode "
                            f"(the file system allows {mode!r} only)"
                        )
                conn.execute("BEGIN IMMEDIATE")
                try:
                    _check_identity(conn, path)  # again, inside the write lock
                    conn.execute(f"PRAGMA application_id = {APPLICATION_ID}")
                    for statement in _SCHEMA.strip().split(";"):
                        if statement.strip():
                            conn.execute(statement)
                    conn.execute(
                        "INSERT OR IGNORE INTO prefs_meta VALUES ('schema_version', ?)",
                        (str(SCHEMA_VERSION),),
                    )
                    conn.execute(
                        "INSERT OR IGNORE INTO prefs_meta VALUES ('application', 'llm-playground')"
                    )
                    conn.execute(
                        "INSERT OR IGNORE INTO prefs_meta VALUES ('created_at', ?)", (_utc_now(),)
                    )
                    conn.execute("COMMIT")
                except BaseException:
                    with contextlib.suppress(sqlite3.Error):
                        conn.execute("ROLLBACK")
                    raise
                return
            except sqlite3.OperationalError as exc:
                self._drop_conn()
                if _is_busy(exc) and attempt + 1 < _WRITE_ATTEMPTS:
                    time.sleep(0.01 * 2**attempt)
                    continue
                raise _db_error(path, exc) from None
            except sqlite3.DatabaseError as exc:
                self._drop_conn()
                raise _db_error(path, exc) from None

    def _conn(self) -> sqlite3.Connection:
        """This thread's connection (a forked child never reuses its parent's)."""
        local = self._local
        conn = getattr(local, "conn", None)
        if conn is not None and local.pid == os.getpid():
            return conn
        try:
            conn = sqlite3.connect(
                str(self.path),
                timeout=_BUSY_TIMEOUT_S,
                isolation_level=None,
                check_same_thread=False,
            )
        except sqlite3.Error as exc:
            raise _db_error(self.path, exc) from None
        conn.execute(f"PRAGMA busy_timeout = {int(_BUSY_TIMEOUT_S * 1000)}")
        conn.execute(f"PRAGMA synchronous = {self.synchronous}")
        local.conn, local.pid = conn, os.getpid()
        return conn

    def _drop_conn(self) -> None:
        conn = getattr(self._local, "conn", None)
        self._local.conn = None
        if conn is not None and self._local.pid == os.getpid():
            with contextlib.suppress(sqlite3.Error):
                conn.close()

    def close(self) -> None:
        """Close this thread's connection (others close when their thread ends)."""
        self._drop_conn()

    def __enter__(self) -> PreferenceStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _retrying(self, attempt_once):
        """Run ``attempt_once()``, retrying with back-off while the database is busy; other
        database errors close the connection and become one-line user errors."""
        for attempt in range(_WRITE_ATTEMPTS):
            try:
                return attempt_once()
            except sqlite3.IntegrityError as exc:
                raise UserError(f"the vote was refused by the database: {exc}") from None
            except sqlite3.OperationalError as exc:
                if _is_busy(exc) and attempt + 1 < _WRITE_ATTEMPTS:
                    log.info("database busy, retrying (%s)", exc)
                    time.sleep(0.005 * 2**attempt)
                    continue
                self._drop_conn()
                raise _db_error(self.path, exc) from None
            except sqlite3.DatabaseError as exc:
                self._drop_conn()
                raise _db_error(self.path, exc) from None
        raise AssertionError("unreachable")

    def _write(self, work):
        """Run ``work(conn)`` in a ``BEGIN IMMEDIATE`` transaction, retrying when busy."""

        def once():
            conn = self._conn()
            conn.execute("BEGIN IMMEDIATE")
            try:
                result = work(conn)
                conn.execute("COMMIT")
            except BaseException:
                with contextlib.suppress(sqlite3.Error):
                    conn.execute("ROLLBACK")
                raise
            return result

        return self._retrying(once)

    def _read(self, sql: str, params: Sequence[Any] = ()) -> list[tuple]:
        return self._retrying(lambda: self._conn().execute(sql, params).fetchall())

    # votes --------------------------------------------------------------------------------

    def add_vote(
        self,
        prompt: str,
        response_a: str,
        response_b: str,
        choice: str,
        *,
        model_a: str | None = None,
        model_b: str | None = None,
        comment: str = "",
        session_id: str = "",
        uid: str | None = None,
        created_at: str | None = None,
    ) -> Vote:
        """Validate and store one vote; return it once it is committed.

        ``uid`` makes the call idempotent: a second vote with the same uid is not stored
        again and the first one is returned."""
        row = (
            uid or uuid.uuid4().hex,
            _text(prompt, "the prompt", required=True),
            _text(response_a, "response A"),
            _text(response_b, "response B"),
            _model_name(model_a, "model A"),
            _model_name(model_b, "model B"),
            normalise_choice(choice),
            _text(comment, "the comment").strip(),
            created_at or _utc_now(),
            _text(session_id, "the session id"),
        )
        if not isinstance(row[0], str) or not row[0] or len(row[0]) > 200:
            raise UserError("a vote uid must be a short non-empty text")

        def insert(conn: sqlite3.Connection) -> tuple:
            conn.execute(
                "INSERT OR IGNORE INTO votes (uid, prompt, response_a, response_b, model_a, "
                "model_b, choice, comment, created_at, session_id) VALUES (?,?,?,?,?,?,?,?,?,?)",
                row,
            )
            return conn.execute(
                f"SELECT {', '.join(_VOTE_COLUMNS)} FROM votes WHERE uid = ?", (row[0],)
            ).fetchone()

        return Vote(*self._write(insert))

    def add_votes(self, votes: Iterable[dict]) -> int:
        """Store many votes (dicts of :meth:`add_vote`'s arguments) in one transaction;
        all or nothing. Returns how many were new."""
        rows = []
        for i, v in enumerate(votes, 1):
            try:
                rows.append(
                    (
                        v.get("uid") or uuid.uuid4().hex,
                        _text(v.get("prompt"), "the prompt", required=True),
                        _text(v.get("response_a"), "response A"),
                        _text(v.get("response_b"), "response B"),
                        _model_name(v.get("model_a"), "model A"),
                        _model_name(v.get("model_b"), "model B"),
                        normalise_choice(v.get("choice")),
                        _text(v.get("comment"), "the comment").strip(),
                        v.get("created_at") or _utc_now(),
                        _text(v.get("session_id"), "the session id"),
                    )
                )
            except UserError as exc:
                raise UserError(f"vote {i}: {exc}") from None

        def insert(conn: sqlite3.Connection) -> int:
            before = conn.total_changes
            conn.executemany(
                "INSERT OR IGNORE INTO votes (uid, prompt, response_a, response_b, model_a, "
                "model_b, choice, comment, created_at, session_id) VALUES (?,?,?,?,?,?,?,?,?,?)",
                rows,
            )
            return conn.total_changes - before

        return self._write(insert)

    def delete_vote(self, vote_id: int) -> bool:
        """Remove one vote (an undo); True when it existed."""
        return bool(
            self._write(
                lambda conn: (
                    conn.execute("DELETE FROM votes WHERE id = ?", (int(vote_id),)).rowcount
                )
            )
        )

    def count(self) -> int:
        return int(self._read("SELECT count(*) FROM votes")[0][0])

    def counts(self) -> dict[str, int]:
        """Votes by choice, with ``total``."""
        out = dict.fromkeys(CHOICES, 0)
        for choice, n in self._read("SELECT choice, count(*) FROM votes GROUP BY choice"):
            out[choice] = int(n)
        out["total"] = sum(out[c] for c in CHOICES)
        return out

    def list_votes(self, *, model: str | None = None, limit: int | None = None) -> list[Vote]:
        """Every vote in the order it was cast (optionally those involving ``model``)."""
        sql = f"SELECT {', '.join(_VOTE_COLUMNS)} FROM votes"
        params: list[Any] = []
        if model is not None:
            sql += " WHERE model_a = ? OR model_b = ?"
            params += [model, model]
        sql += " ORDER BY id"
        if limit is not None:
            sql += " LIMIT ?"
            params.append(int(limit))
        return [Vote(*row) for row in self._read(sql, params)]

    def schema_version(self) -> int:
        rows = self._read("SELECT value FROM prefs_meta WHERE key = 'schema_version'")
        return int(rows[0][0])

    # export -------------------------------------------------------------------------------

    def preference_records(self, ties: str = "separate") -> tuple[list[dict], list[dict], dict]:
        """The export as Python records: (main lines, ties-file lines, counts)."""
        if ties not in TIES_MODES:
            raise UserError(f"ties must be one of {', '.join(TIES_MODES)}, not {ties!r}")
        main: list[dict] = []
        side: list[dict] = []
        counts = {"pairs": 0, "tie": 0, "both-bad": 0}
        for v in self.list_votes():
            if v.choice in ("a", "b"):
                counts["pairs"] += 1
                record = {"prompt": v.prompt, "chosen": v.chosen, "rejected": v.rejected}
                if ties == "label":
                    record["label"] = "preferred"
                main.append(record)
                continue
            counts[v.choice] += 1
            if ties == "label":
                main.append(
                    {
                        "prompt": v.prompt,
                        "chosen": v.response_a,
                        "rejected": v.response_b,
                        "label": v.choice,
                    }
                )
            elif ties == "separate":
                side.append(
                    {
                        "prompt": v.prompt,
                        "response_a": v.response_a,
                        "response_b": v.response_b,
                        "label": v.choice,
                    }
                )
        return main, side, counts

    def jsonl_text(self, ties: str = "separate") -> tuple[str, str | None]:
        """The export as text, for a download: (main file, ties file or None)."""
        main, side, _ = self.preference_records(ties)
        return _jsonl(main), (_jsonl(side) if ties == "separate" else None)

    def export_jsonl(self, out_path: str | os.PathLike, ties: str = "separate") -> ExportResult:
        """Write the TRL preference file (see the module notes for ``ties``), atomically."""
        out = self._check_out_path(out_path)
        ties_path = sibling_ties_path(out) if ties == "separate" else None
        if ties_path is not None:
            self._check_out_path(ties_path)
        main, side, counts = self.preference_records(ties)
        if not main and not side:
            extra = counts["tie"] + counts["both-bad"]
            raise UserError(
                "there are no votes to export"
                if not extra
                else f"there are no A/B votes to export ({extra} tie/both-bad vote(s) "
                "dropped); use --ties separate or label to keep them"
            )
        files = [(out, main)] + ([(ties_path, side)] if ties_path is not None else [])
        _atomic_write_many([(p, _jsonl(records)) for p, records in files])
        result = ExportResult(
            path=out,
            ties=ties,
            n_pairs=counts["pairs"],
            n_ties=counts["tie"],
            n_both_bad=counts["both-bad"],
            n_dropped=(counts["tie"] + counts["both-bad"]) if ties == "drop" else 0,
            ties_path=ties_path,
        )
        log.info("exported %s", result.summary())
        return result

    def export_dataset(self, out_dir: str | os.PathLike, ties: str = "drop") -> ExportResult:
        """Save the A/B votes as a Hugging Face ``datasets`` Dataset (``save_to_disk``)
        with string columns ``prompt``, ``chosen``, ``rejected`` (and ``label`` when
        ``ties="label"``; ``"separate"`` saves the ties to the sibling folder
        ``DIR.ties``). ``datasets.load_from_disk(out_dir)`` reads it back."""
        out = self._check_out_dir(out_dir)
        ties_dir = out.with_name(out.name + ".ties") if ties == "separate" else None
        if ties_dir is not None:
            self._check_out_dir(ties_dir)
        main, side, counts = self.preference_records(ties)
        if not main and not side:
            raise UserError("there are no votes to export")
        main_cols = ["prompt", "chosen", "rejected"] + (["label"] if ties == "label" else [])
        _save_dataset_atomically(out, main, main_cols)
        if ties_dir is not None:
            _save_dataset_atomically(
                ties_dir, side, ["prompt", "response_a", "response_b", "label"]
            )
        return ExportResult(
            path=out,
            ties=ties,
            n_pairs=counts["pairs"],
            n_ties=counts["tie"],
            n_both_bad=counts["both-bad"],
            n_dropped=(counts["tie"] + counts["both-bad"]) if ties == "drop" else 0,
            ties_path=ties_dir,
        )

    def _protected(self) -> set[Path]:
        db = self.path.resolve()
        return {
            db,
            db.with_name(db.name + "-wal"),
            db.with_name(db.name + "-shm"),
            db.with_name(db.name + "-journal"),
        }

    def _check_out_path(self, out_path: str | os.PathLike) -> Path:
        if str(out_path).strip() == "":
            raise UserError("the output path is empty")
        out = Path(out_path).expanduser()
        if out.is_dir():
            raise UserError(f"{out} is a folder; give a file name such as {out / 'prefs.jsonl'}")
        if out.resolve() in self._protected():
            raise UserError(f"{out} is the vote database itself; choose another output file")
        return out

    def _check_out_dir(self, out_dir: str | os.PathLike) -> Path:
        if str(out_dir).strip() == "":
            raise UserError("the output folder is empty")
        out = Path(out_dir).expanduser()
        if out.exists() and not out.is_dir():
            raise UserError(f"{out} is a file; give a folder for the dataset")
        if out.is_dir() and any(out.iterdir()) and not (out / "dataset_info.json").exists():
            raise UserError(
                f"{out} is a folder with other files in it; choose an empty or "
                "new folder (a saved dataset there is replaced)"
            )
        if (
            self.path.resolve().parent == out.resolve()
            or out.resolve() in self.path.resolve().parents
        ):
            raise UserError(f"{out} holds the vote database; choose another folder")
        return out

    # statistics ---------------------------------------------------------------------------

    def stats(self, *, bootstrap: int = 0, seed: int = 0, elo_k: float = 32.0) -> dict:
        """Everything the statistics page shows, JSON-serialisable (see :func:`compute_stats`)."""
        out = compute_stats(self._vote_outcomes(), bootstrap=bootstrap, seed=seed, elo_k=elo_k)
        out["db"] = str(self.path)
        return out

    def ratings(self, *, bootstrap: int = 0, seed: int = 0) -> list[Rating]:
        """Bradley–Terry ratings per model, best first (the leaderboard's human rating)."""
        return ratings_from_votes(self._vote_outcomes(), bootstrap=bootstrap, seed=seed)

    def _vote_outcomes(self) -> list[Vote]:
        """The votes without their texts: all that statistics need, cheap to read."""
        rows = self._read(
            "SELECT id, uid, '', '', '', model_a, model_b, choice, '', created_at, "
            "session_id FROM votes ORDER BY id"
        )
        return [Vote(*row) for row in rows]


# --- opening and identity checks -------------------------------------------------------


def _db_error(path: Path, exc: BaseException) -> UserError:
    text = str(exc)
    low = text.lower()
    if "not a database" in low or "malformed" in low or "corrupt" in low:
        return UserError(f"{path} is not a usable SQLite database ({text}); it was left untouched")
    if "readonly" in low or "read-only" in low:
        return UserError(f"{path} is read-only here; choose a writable data folder")
    if "unable to open" in low:
        return UserError(
            f"cannot open the database {path} (check that its folder exists and is writable)"
        )
    return UserError(f"database error on {path}: {text}")


def _inspect(path: Path) -> str:
    """``"new"`` for a missing or empty file, ``"ready"`` for a playground database with
    the current vote tables, ``"ours"`` for one without them (yet);
    a UserError for anything else. Never writes to the file."""
    try:
        if not path.exists() or path.stat().st_size == 0:
            return "new"
        with open(path, "rb") as fh:
            header = fh.read(100)
    except OSError as exc:
        raise UserError(f"cannot read {path}: {exc.strerror or exc}") from None
    if not header.startswith(_SQLITE_MAGIC) or len(header) < 100:
        raise UserError(
            f"{path} is not a SQLite database; refusing to use or overwrite it "
            "(choose another database path)"
        )
    header_app_id = int.from_bytes(header[68:72], "big")
    if header_app_id not in (0, APPLICATION_ID):
        raise UserError(
            f"{path} is a SQLite database of another application (application id "
            f"{header_app_id:#x}); refusing to use or change it"
        )
    uri = f"file:{urllib.parse.quote(path.resolve().as_posix())}?mode=ro"
    try:
        conn = sqlite3.connect(uri, uri=True, timeout=_BUSY_TIMEOUT_S)
    except sqlite3.Error as exc:
        raise _db_error(path, exc) from None
    try:
        ready = _check_identity(conn, path)
    except sqlite3.DatabaseError as exc:
        raise _db_error(path, exc) from None
    finally:
        conn.close()
    return "ready" if ready else "ours"


def _check_identity(conn: sqlite3.Connection, path: Path) -> bool:
    """Refuse a foreign or newer database; True when the vote tables are in place."""
    app_id = conn.execute("PRAGMA application_id").fetchone()[0]
    tables = [
        r[0]
        for r in conn.execute(
            "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%' "
            "ORDER BY name"
        )
    ]
    if app_id == 0 and tables:
        shown = ", ".join(tables[:5]) + (", …" if len(tables) > 5 else "")
        raise UserError(
            f"{path} is a SQLite database of another application (tables: {shown}); "
            "refusing to use or change it"
        )
    if app_id not in (0, APPLICATION_ID):
        raise UserError(
            f"{path} is a SQLite database of another application (application id "
            f"{app_id:#x}); refusing to use or change it"
        )
    if "prefs_meta" in tables:
        row = conn.execute("SELECT value FROM prefs_meta WHERE key = 'schema_version'").fetchone()
        version = int(row[0]) if row and str(row[0]).isdigit() else None
        if version is None:
            raise UserError(
                f"{path}: the vote tables have no valid schema version; refusing to use the file"
            )
        if version > SCHEMA_VERSION:
            raise UserError(
                f"{path} was written by a newer LLM Playground (vote schema "
                f"{version}, this one reads up to {SCHEMA_VERSION}); upgrade first"
            )
        return version == SCHEMA_VERSION and "votes" in tables
    return False


def resolve_db_path(text: str | os.PathLike) -> Path:
    """A database file as given, or, for an existing data folder, its ``playground.sqlite``."""
    text = str(text or "").strip()
    if not text:
        raise UserError("give a database file or a data folder")
    path = Path(text).expanduser()
    return path / "playground.sqlite" if path.is_dir() else path


def open_store(db_path: str | os.PathLike | None = None, **kwargs: Any) -> PreferenceStore:
    """The store at ``db_path``, or at the playground's default database."""
    if db_path is None:
        from llm_playground.core.paths import get_paths

        db_path = get_paths().db
    return PreferenceStore(db_path, **kwargs)


# --- atomic files ---------------------------------------------------------------------------


def _jsonl(records: Iterable[dict]) -> str:
    return "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records)


def _atomic_write_many(files: Sequence[tuple[Path, str]]) -> None:
    """Write every file to a temporary sibling, fsync, then rename all into place."""
    temps: list[tuple[str, Path]] = []
    try:
        for path, text in files:
            try:
                path.parent.mkdir(parents=True, exist_ok=True)
                fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
            except OSError as exc:
                raise UserError(f"cannot write {path}: {exc.strerror or exc}") from None
            temps.append((tmp, path))
            with os.fdopen(fd, "w", encoding="utf-8", newline="\n") as fh:
                fh.write(text)
                fh.flush()
                os.fsync(fh.fileno())
        for tmp, path in temps:
            os.replace(tmp, path)
    except BaseException:
        for tmp, _ in temps:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
        raise


def _save_dataset_atomically(out: Path, records: list[dict], columns: list[str]) -> None:
    from datasets import Dataset, Features, Value

    features = Features({c: Value("string") for c in columns})
    data = {c: [r[c] for r in records] for c in columns}
    dataset = Dataset.from_dict(data, features=features)
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(dir=out.parent, prefix=f".{out.name}.", suffix=".tmp"))
    except OSError as exc:
        raise UserError(f"cannot write {out}: {exc.strerror or exc}") from None
    old = None
    try:
        _quiet_save(dataset, tmp)
        if out.exists():
            old = out.with_name(f".{out.name}.old-{uuid.uuid4().hex[:8]}")
            os.replace(out, old)
        os.replace(tmp, out)
    except BaseException:
        if old is not None and not out.exists():
            os.replace(old, out)
            old = None
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    finally:
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)


def _quiet_save(dataset, folder: Path) -> None:
    """``save_to_disk`` without its progress bar (the bar setting is restored after)."""
    from datasets.utils import logging as ds_logging

    was_enabled = ds_logging.is_progress_bar_enabled()
    ds_logging.disable_progress_bar()
    try:
        dataset.save_to_disk(str(folder))
    finally:
        if was_enabled:
            ds_logging.enable_progress_bar()


def read_preferences_jsonl(path: str | os.PathLike, *, keep_labels: bool = False) -> list[dict]:
    """Read a preference JSONL file back (the DPO input): ``prompt``, ``chosen``,
    ``rejected`` strings on every line. Lines labelled ``tie``/``both-bad`` are skipped
    unless ``keep_labels``. A malformed line raises a UserError with its line number."""
    from llm_playground.core.jsonl import read_jsonl

    path = Path(path)
    out = [
        record
        for _, record in read_jsonl(
            path, "preferences file", text_fields=("prompt", "chosen", "rejected")
        )
        if keep_labels or record.get("label", "preferred") == "preferred"
    ]
    if not out:
        raise UserError(f"{path} holds no preference pairs")
    return out


# --- statistics -----------------------------------------------------------------------------


def _none_if_nan(x: float | None, digits: int = 6) -> float | None:
    if x is None or not math.isfinite(x):
        return None
    return round(float(x), digits)


def _rated_votes(votes: Iterable[Vote]) -> tuple[list[tuple[str, str, str]], dict[str, int]]:
    """(model_a, model_b, choice) of votes that inform a rating, and what was left out."""
    rated = []
    skipped = {"unnamed": 0, "same_model": 0}
    for v in votes:
        if not v.model_a or not v.model_b:
            skipped["unnamed"] += 1
        elif v.model_a == v.model_b:
            skipped["same_model"] += 1
        else:
            rated.append((v.model_a, v.model_b, v.choice))
    return rated, skipped


def win_matrix(models: Sequence[str], rated: Iterable[tuple[str, str, str]]) -> np.ndarray:
    """W[i, j]: wins of model i over model j, a tie counting half to each; both-bad left out."""
    import numpy as np

    index = {m: i for i, m in enumerate(models)}
    w = np.zeros((len(models), len(models)))
    for ma, mb, choice in rated:
        a, b = index[ma], index[mb]
        if choice == "a":
            w[a, b] += 1
        elif choice == "b":
            w[b, a] += 1
        elif choice == "tie":
            w[a, b] += 0.5
            w[b, a] += 0.5
    return w


def _strongly_connected(w: np.ndarray) -> bool:
    """True when every model has beaten (or tied), directly or through others, every other:
    the condition for the Bradley–Terry maximum-likelihood estimate to exist."""
    import numpy as np

    n = len(w)
    if n <= 1:
        return True
    reach = (w > 0) | np.eye(n, dtype=bool)
    for k in range(n):  # transitive closure (Warshall)
        reach |= reach[:, [k]] & reach[[k], :]
    return bool(reach.all())


@dataclass(frozen=True)
class BTFit:
    """A Bradley–Terry fit: log-strengths (mean zero), their covariance, and how."""

    theta: np.ndarray
    cov: np.ndarray
    prior: float
    iterations: int
    converged: bool


def fit_bradley_terry(
    w: np.ndarray, *, prior: float | None = None, max_iter: int = 200, tol: float = 1e-10
) -> BTFit:
    """Maximise sum_ij W_ij log sigmoid(θi − θj) − prior/2·|θ|² by Newton's method.

    With ``prior=None`` the plain maximum-likelihood fit is used when it exists and
    :data:`DEFAULT_PRIOR` otherwise. The covariance is the inverse of the observed
    information on the mean-zero subspace.
    """
    import numpy as np

    w = np.asarray(w, dtype=float)
    n = len(w)
    if prior is None:
        prior = 0.0 if _strongly_connected(w) else DEFAULT_PRIOR
    games = w + w.T
    wins = w.sum(axis=1)
    theta = np.zeros(n)
    ones = np.ones((n, n)) / n

    def loglik(t: np.ndarray) -> float:
        d = t[:, None] - t[None, :]
        return float(-(w * np.logaddexp(0.0, -d)).sum() - prior / 2 * (t @ t))

    def information(t: np.ndarray) -> np.ndarray:
        d = t[:, None] - t[None, :]
        p = 1.0 / (1.0 + np.exp(-d))
        q = games * p * (1.0 - p)
        info = -q
        np.fill_diagonal(info, q.sum(axis=1) - np.diag(q))
        return info + prior * np.eye(n)

    converged = n <= 1
    iterations = 0
    current = loglik(theta)
    for iterations in range(1, max_iter + 1):  # noqa: B007
        d = theta[:, None] - theta[None, :]
        p = 1.0 / (1.0 + np.exp(-d))
        grad = wins - (games * p).sum(axis=1) - prior * theta
        info = information(theta)
        step = np.linalg.solve(info + ones, grad)
        scale = 1.0
        while True:  # backtracking keeps every step an ascent step
            candidate = theta + scale * step
            value = loglik(candidate)
            if value >= current - 1e-12 or scale < 1e-8:
                break
            scale /= 2
        theta, current = candidate - candidate.mean(), value
        if np.max(np.abs(scale * step)) < tol:
            converged = True
            break
    info = information(theta)
    cov = np.linalg.pinv(info, hermitian=True) if prior == 0 else np.linalg.inv(info)
    if prior == 0 and n > 0:  # project onto the mean-zero subspace
        c = np.eye(n) - ones
        cov = c @ cov @ c
    return BTFit(theta=theta, cov=cov, prior=prior, iterations=iterations, converged=converged)


def _rating(theta: float) -> float:
    return BASE_RATING + ELO_SCALE * theta


def ratings_from_votes(votes: Iterable[Vote], *, bootstrap: int = 0, seed: int = 0) -> list[Rating]:
    """Bradley–Terry ratings (Elo scale, 95% CI) of every named model, best first."""
    table = _bt_table(list(votes), bootstrap=bootstrap, seed=seed)[0]
    return [
        Rating(
            model=r["model"],
            rating=r["rating"],
            ci_low=r["ci_low"],
            ci_high=r["ci_high"],
            n_votes=r["n_votes"],
        )
        for r in table
    ]


def _bt_table(votes: list[Vote], *, bootstrap: int, seed: int) -> tuple[list[dict], dict]:
    import numpy as np

    rated, _ = _rated_votes(votes)
    rated_bt = [r for r in rated if r[2] != "both-bad"]
    models = sorted({m for r in rated_bt for m in r[:2]})
    info: dict[str, Any] = {
        "prior": 0.0,
        "regularized": False,
        "iterations": 0,
        "converged": True,
        "method": "hessian" if not bootstrap else "bootstrap",
        "confidence": 0.95,
    }
    if not models:
        return [], info
    w = win_matrix(models, rated_bt)
    fit = fit_bradley_terry(w)
    info.update(
        prior=fit.prior,
        regularized=fit.prior > 0,
        iterations=fit.iterations,
        converged=fit.converged,
    )
    se = np.sqrt(np.clip(np.diag(fit.cov), 0.0, None))
    low = fit.theta - 1.959964 * se
    high = fit.theta + 1.959964 * se
    if bootstrap:
        rng = np.random.default_rng(seed)
        samples = np.empty((int(bootstrap), len(models)))
        for b in range(int(bootstrap)):
            picks = rng.integers(0, len(rated_bt), len(rated_bt))
            sample = [rated_bt[i] for i in picks]
            samples[b] = fit_bradley_terry(
                win_matrix(models, sample),
                prior=max(fit.prior, DEFAULT_PRIOR)
                if not _strongly_connected(win_matrix(models, sample))
                else fit.prior,
            ).theta
        low, high = np.percentile(samples, [2.5, 97.5], axis=0)
        se = samples.std(axis=0, ddof=1) if bootstrap > 1 else np.zeros(len(models))
    n_votes = dict.fromkeys(models, 0)
    for ma, mb, _ in rated_bt:
        n_votes[ma] += 1
        n_votes[mb] += 1
    rows = [
        {
            "model": m,
            "rating": round(float(_rating(fit.theta[i])), 3),
            "ci_low": round(float(_rating(low[i])), 3),
            "ci_high": round(float(_rating(high[i])), 3),
            "se": round(float(ELO_SCALE * se[i]), 3),
            "n_votes": n_votes[m],
        }
        for i, m in enumerate(models)
    ]
    rows.sort(key=lambda r: (-r["rating"], r["model"]))
    return rows, info


def elo_ratings(votes: Iterable[Vote], *, k: float = 32.0) -> list[dict]:
    """Online Elo in vote order (start 1000, ties 0.5, both-bad skipped), best first."""
    rated, _ = _rated_votes(votes)
    rating: dict[str, float] = {}
    games: dict[str, int] = {}
    for ma, mb, choice in rated:
        if choice == "both-bad":
            continue
        ra, rb = rating.setdefault(ma, BASE_RATING), rating.setdefault(mb, BASE_RATING)
        expected_a = 1.0 / (1.0 + 10 ** ((rb - ra) / 400.0))
        score_a = {"a": 1.0, "b": 0.0, "tie": 0.5}[choice]
        rating[ma] = ra + k * (score_a - expected_a)
        rating[mb] = rb - k * (score_a - expected_a)
        games[ma] = games.get(ma, 0) + 1
        games[mb] = games.get(mb, 0) + 1
    rows = [{"model": m, "rating": round(r, 3), "n_votes": games[m]} for m, r in rating.items()]
    rows.sort(key=lambda r: (-r["rating"], r["model"]))
    return rows


def compute_stats(
    votes: Sequence[Vote], *, bootstrap: int = 0, seed: int = 0, elo_k: float = 32.0
) -> dict:
    """Counts, votes per pair of models, win rates, Bradley–Terry and Elo ratings.

    Win rate = (wins + ties/2) / (wins + losses + ties); "both bad" votes are counted
    apart (``both_bad`` and ``both_bad_rate`` over all of a model's votes)."""
    votes = list(votes)
    counts = dict.fromkeys(CHOICES, 0)
    for v in votes:
        counts[v.choice] += 1
    rated, skipped = _rated_votes(votes)

    pairs: dict[tuple[str, str], dict] = {}
    per_model: dict[str, dict] = {}
    for ma, mb, choice in rated:
        first, second = sorted((ma, mb))
        p = pairs.setdefault(
            (first, second),
            {
                "model_1": first,
                "model_2": second,
                "n_votes": 0,
                "wins_1": 0,
                "wins_2": 0,
                "ties": 0,
                "both_bad": 0,
            },
        )
        p["n_votes"] += 1
        winner = {"a": ma, "b": mb}.get(choice)
        if winner is not None:
            p["wins_1" if winner == first else "wins_2"] += 1
        elif choice == "tie":
            p["ties"] += 1
        else:
            p["both_bad"] += 1
        for me in (ma, mb):
            s = per_model.setdefault(
                me, {"model": me, "n_votes": 0, "wins": 0, "losses": 0, "ties": 0, "both_bad": 0}
            )
            s["n_votes"] += 1
            if winner is None:
                s["ties" if choice == "tie" else "both_bad"] += 1
            elif winner == me:
                s["wins"] += 1
            else:
                s["losses"] += 1
    for p in pairs.values():
        decided = p["wins_1"] + p["wins_2"] + p["ties"]
        p["win_rate_1"] = _none_if_nan((p["wins_1"] + p["ties"] / 2) / decided) if decided else None
        p["win_rate_2"] = _none_if_nan((p["wins_2"] + p["ties"] / 2) / decided) if decided else None
    bt_rows, bt_info = _bt_table(votes, bootstrap=bootstrap, seed=seed)
    bt = {r["model"]: r for r in bt_rows}
    models = []
    for name, s in per_model.items():
        decided = s["wins"] + s["losses"] + s["ties"]
        s["win_rate"] = _none_if_nan((s["wins"] + s["ties"] / 2) / decided) if decided else None
        s["both_bad_rate"] = _none_if_nan(s["both_bad"] / s["n_votes"]) if s["n_votes"] else None
        r = bt.get(name)
        s.update(
            rating=r["rating"] if r else None,
            ci_low=r["ci_low"] if r else None,
            ci_high=r["ci_high"] if r else None,
            se=r["se"] if r else None,
        )
        models.append(s)
    models.sort(
        key=lambda s: (-(s["rating"] if s["rating"] is not None else -math.inf), s["model"])
    )
    return {
        "schema_version": SCHEMA_VERSION,
        "votes": {**counts, "total": len(votes)},
        "excluded_from_ratings": skipped,
        "pairs": sorted(pairs.values(), key=lambda p: (-p["n_votes"], p["model_1"], p["model_2"])),
        "models": models,
        "ratings": bt_rows,
        "bradley_terry": {
            "scale": "elo",
            "base_rating": BASE_RATING,
            "scale_factor": round(ELO_SCALE, 6),
            "ties": "half a win each",
            "both_bad": "excluded",
            **bt_info,
        },
        "elo": {"k": elo_k, "ratings": elo_ratings(votes, k=elo_k)},
    }


# --- benchmark ------------------------------------------------------------------------------


def _bench_writer(
    db_path: str, synchronous: str, writer: int, n: int, tag: str, start, results
) -> None:
    store = PreferenceStore(db_path, synchronous=synchronous)
    start.wait()
    t0 = time.time()
    acknowledged = 0
    for i in range(n):
        store.add_vote(
            f"prompt {i} from writer {writer}",
            f"response a {i}",
            f"response b {i}",
            CHOICES[i % 4],
            model_a=f"model-{writer % 3}",
            model_b="model-x",
            session_id=tag,
            uid=f"{tag}-{writer}-{i}",
        )
        acknowledged += 1
    results.put((writer, acknowledged, t0, time.time()))
    store.close()


def bench_concurrent_writes(
    db_path: str | os.PathLike,
    writers: int = 4,
    votes_per_writer: int = 250,
    synchronous: str = "NORMAL",
) -> dict:
    """``writers`` processes each store ``votes_per_writer`` votes (one transaction per
    vote) into ``db_path`` at the same time; then count what arrived.

    Returns votes/s (all acknowledged votes over the wall time from the common start to
    the last writer's end), and lost and duplicated votes (both must be 0)."""
    if writers < 1 or votes_per_writer < 1:
        raise UserError("writers and votes_per_writer must be at least 1")
    store = PreferenceStore(db_path, synchronous=synchronous)  # create and check once
    tag = f"bench-{uuid.uuid4().hex[:12]}"
    ctx = multiprocessing.get_context("spawn")
    start = ctx.Event()
    results = ctx.Queue()
    procs = [
        ctx.Process(
            target=_bench_writer,
            args=(str(store.path), store.synchronous, w, votes_per_writer, tag, start, results),
        )
        for w in range(writers)
    ]
    for p in procs:
        p.start()
    time.sleep(0.2)
    start.set()
    reports = []
    while len(reports) < len(procs):
        try:
            reports.append(results.get(timeout=0.5))
        except queue.Empty:
            if not any(p.is_alive() for p in procs) and results.empty():
                break  # a writer died before reporting
    for p in procs:
        p.join(timeout=60)
    failed = sum(1 for p in procs if p.exitcode != 0)
    acknowledged = sum(r[1] for r in reports)
    seconds = (max(r[3] for r in reports) - min(r[2] for r in reports)) if reports else float("nan")
    rows = store._read(
        "SELECT count(*), count(DISTINCT uid) FROM votes WHERE session_id = ?", (tag,)
    )[0]
    expected = {f"{tag}-{w}-{i}" for w, n_ack, _, _ in reports for i in range(n_ack)}
    stored_uids = {r[0] for r in store._read("SELECT uid FROM votes WHERE session_id = ?", (tag,))}
    store.close()
    return {
        "writers": writers,
        "votes_per_writer": votes_per_writer,
        "synchronous": store.synchronous,
        "acknowledged": acknowledged,
        "stored": int(rows[0]),
        "distinct": int(rows[1]),
        "lost": len(expected - stored_uids),
        "duplicates": int(rows[0]) - int(rows[1]),
        "failed_writers": failed,
        "seconds": round(seconds, 4),
        "votes_per_second": round(acknowledged / seconds, 1) if seconds and seconds > 0 else None,
    }


__all__ = [
    "APPLICATION_ID",
    "CHOICES",
    "SCHEMA_VERSION",
    "TIES_MODES",
    "BTFit",
    "ExportResult",
    "Pair",
    "PreferenceStore",
    "Rating",
    "Vote",
    "bench_concurrent_writes",
    "compute_stats",
    "elo_ratings",
    "fit_bradley_terry",
    "make_pair",
    "normalise_choice",
    "open_store",
    "ratings_from_votes",
    "read_preferences_jsonl",
    "resolve_db_path",
    "sibling_ties_path",
    "win_matrix",
]
