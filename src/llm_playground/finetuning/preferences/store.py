"""The vote store: human preference votes as tables of the playground database.

A vote records what the person saw — the prompt, response A and response B, in the
positions they were shown — which models wrote them, the choice (``a``, ``b``, ``tie``
or ``both-bad``), an optional comment, a UTC timestamp and a session id.

The votes live in the one playground database (:class:`llm_playground.core.db.Database`,
by default the home's ``playground.sqlite``, shared with the Lab 5 leaderboard). That
module decides how the file is opened: identity check, WAL mode, busy timeout, schema
versions, retries, and a one-line refusal of foreign, corrupt or newer files, which are
never written to. Every vote is its own ``BEGIN IMMEDIATE`` transaction, so tabs, threads
and processes can vote at once without losing or corrupting a vote.

``synchronous=NORMAL`` is the default: in WAL mode a commit is in the operating system's
hands before :meth:`PreferenceStore.add_vote` returns, so an acknowledged vote survives
the process being killed; only an operating-system crash or a power cut can lose the
last few votes. ``synchronous="FULL"`` closes that gap too, at the price of one disk flush
per vote.

Vote databases written before the shared database module (their version in a
``prefs_meta`` table) open as they are: the vote tables are the same, their version is
checked from ``prefs_meta`` and recorded in ``playground_meta`` on first use.
"""

from __future__ import annotations

import os
import random
import secrets
import sqlite3
import urllib.parse
import uuid
from dataclasses import dataclass, field
from numbers import Integral
from pathlib import Path
from typing import Any

from llm_playground.core.db import Database, TableSet, db_error, inspect, utc_now
from llm_playground.core.errors import UserError
from llm_playground.finetuning.preferences import export, ratings
from llm_playground.finetuning.preferences.votes import CHOICES, SCHEMA_VERSION, Vote

MAX_TEXT_CHARS = 1_000_000
#: The table where vote databases of earlier releases kept their schema version.
LEGACY_META_TABLE = "prefs_meta"

VOTE_TABLES = TableSet(
    name="votes",
    version=SCHEMA_VERSION,
    marker_table="votes",
    schema="""
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
CREATE INDEX IF NOT EXISTS votes_models ON votes (model_a, model_b)
""",
)

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
_INSERT = (
    "INSERT OR IGNORE INTO votes (uid, prompt, response_a, response_b, model_a, "
    "model_b, choice, comment, created_at, session_id) VALUES (?,?,?,?,?,?,?,?,?,?)"
)


# --- records ------------------------------------------------------------------------------


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


# --- validation -------------------------------------------------------------------------


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


def vote_row(v: dict[str, Any]) -> tuple:
    """The validated database row of one vote (a dict of :meth:`PreferenceStore.add_vote`'s
    arguments)."""
    uid = v.get("uid") or uuid.uuid4().hex
    if not isinstance(uid, str) or len(uid) > 200:
        raise UserError("a vote uid must be a short non-empty text")
    return (
        uid,
        _text(v.get("prompt"), "the prompt", required=True),
        _text(v.get("response_a"), "response A"),
        _text(v.get("response_b"), "response B"),
        _model_name(v.get("model_a"), "model A"),
        _model_name(v.get("model_b"), "model B"),
        normalise_choice(v.get("choice")),
        _text(v.get("comment"), "the comment").strip(),
        v.get("created_at") or utc_now(),
        _text(v.get("session_id"), "the session id"),
    )


# --- opening ------------------------------------------------------------------------------


def check_legacy_version(path: Path) -> None:
    """Refuse a vote database of an earlier release whose ``prefs_meta`` names a newer or
    no valid schema version. Read-only; nothing to do for new-style or new files."""
    uri = f"file:{urllib.parse.quote(path.resolve().as_posix())}?mode=ro"
    try:
        conn = sqlite3.connect(uri, uri=True, timeout=30.0)
        try:
            has_meta = conn.execute(
                "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?",
                (LEGACY_META_TABLE,),
            ).fetchone()
            row = (
                conn.execute(
                    f"SELECT value FROM {LEGACY_META_TABLE} WHERE key = 'schema_version'"
                ).fetchone()
                if has_meta
                else None
            )
        finally:
            conn.close()
    except sqlite3.DatabaseError as exc:
        raise db_error(path, exc) from None
    if not has_meta:
        return
    if row is None or not str(row[0]).isdigit():
        raise UserError(
            f"{path}: the vote tables have no valid schema version; refusing to use the file"
        )
    if int(row[0]) > SCHEMA_VERSION:
        raise UserError(
            f"{path} was written by a newer LLM Playground (vote schema {row[0]}, "
            f"this one reads up to {SCHEMA_VERSION}); upgrade first"
        )


def resolve_db_path(text: str | os.PathLike) -> Path:
    """A database file as given, or, for an existing data folder, its ``playground.sqlite``."""
    text = str(text or "").strip()
    if not text:
        raise UserError("give a database file or a data folder")
    path = Path(text).expanduser()
    return path / "playground.sqlite" if path.is_dir() else path


# --- the store -----------------------------------------------------------------------------


class PreferenceStore:
    """Votes in the playground database. Safe to share between threads; each thread
    (and each process) gets its own connection."""

    def __init__(
        self,
        db_path: str | os.PathLike | None = None,
        *,
        synchronous: str = "NORMAL",
        create: bool = True,
    ) -> None:
        if db_path is not None and str(db_path).strip() == "":
            raise UserError("the database path is empty")
        if db_path is not None and not create and not Path(db_path).expanduser().exists():
            raise UserError(f"there is no vote database at {Path(db_path).expanduser()}")
        self.db = Database(db_path, synchronous=synchronous, create=create)
        self.path = self.db.path
        self.synchronous = self.db.synchronous
        if inspect(self.path, VOTE_TABLES) != "new":  # refuses foreign and corrupt files
            check_legacy_version(self.path)
        self.db.ensure(VOTE_TABLES)

    def __repr__(self) -> str:
        return f"PreferenceStore({str(self.path)!r})"

    def close(self) -> None:
        """Close this thread's connection (others close when their thread ends)."""
        self.db.close()

    def __enter__(self) -> PreferenceStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def schema_version(self) -> int:
        return self.db.schema_version(VOTE_TABLES)

    # votes --------------------------------------------------------------------------------

    # one argument per field of the vote, the optional ones by keyword: a record type here
    # would only repeat Vote's fields
    def add_vote(  # noqa: PLR0913
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
        row = vote_row(
            {
                "uid": uid,
                "prompt": prompt,
                "response_a": response_a,
                "response_b": response_b,
                "model_a": model_a,
                "model_b": model_b,
                "choice": choice,
                "comment": comment,
                "created_at": created_at,
                "session_id": session_id,
            }
        )

        def insert(conn: sqlite3.Connection) -> tuple:
            conn.execute(_INSERT, row)
            return conn.execute(
                f"SELECT {', '.join(_VOTE_COLUMNS)} FROM votes WHERE uid = ?", (row[0],)
            ).fetchone()

        return Vote(*self.db.write(insert, refused="the vote table"))

    def delete_vote(self, vote_id: int) -> bool:
        """Remove one vote (an undo); True when it existed."""
        return bool(
            self.db.write(
                lambda conn: (
                    conn.execute("DELETE FROM votes WHERE id = ?", (int(vote_id),)).rowcount
                )
            )
        )

    def count(self) -> int:
        return int(self.db.read("SELECT count(*) FROM votes")[0][0])

    def counts(self) -> dict[str, int]:
        """Votes by choice, with ``total``."""
        out = dict.fromkeys(CHOICES, 0)
        for choice, n in self.db.read("SELECT choice, count(*) FROM votes GROUP BY choice"):
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
        return [Vote(*row) for row in self.db.read(sql, params)]

    def vote_outcomes(self) -> list[Vote]:
        """The votes without their texts: all that statistics need, cheap to read."""
        rows = self.db.read(
            "SELECT id, uid, '', '', '', model_a, model_b, choice, '', created_at, "
            "session_id FROM votes ORDER BY id"
        )
        return [Vote(*row) for row in rows]

    # export and statistics (see .export and .ratings) -------------------------------------

    def preference_records(self, ties: str = "separate") -> tuple[list[dict], list[dict], dict]:
        return export.preference_records(self.list_votes(), ties)

    def jsonl_text(self, ties: str = "separate") -> tuple[str, str | None]:
        return export.jsonl_text(self, ties)

    def export_jsonl(
        self, out_path: str | os.PathLike, ties: str = "separate", *, force: bool = False
    ):
        return export.export_jsonl(self, out_path, ties, force=force)

    def export_dataset(
        self, out_dir: str | os.PathLike, ties: str = "drop", *, force: bool = False
    ):
        return export.export_dataset(self, out_dir, ties, force=force)

    def stats(self, *, bootstrap: int = 0, seed: int = 0, elo_k: float = 32.0) -> dict:
        """Everything the statistics page shows, JSON-serialisable (see
        :func:`llm_playground.finetuning.preferences.ratings.compute_stats`)."""
        out = ratings.compute_stats(
            self.vote_outcomes(), bootstrap=bootstrap, seed=seed, elo_k=elo_k
        )
        out["db"] = str(self.path)
        return out

    def ratings(self, *, bootstrap: int = 0, seed: int = 0) -> list:
        """Bradley–Terry ratings per model, best first (the leaderboard's human rating)."""
        return ratings.ratings_from_votes(self.vote_outcomes(), bootstrap=bootstrap, seed=seed)
