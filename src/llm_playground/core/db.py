"""The playground database: one SQLite file that votes, results and records share.

Every lab that keeps rows (the vote store, the leaderboard, the speedrun records) opens
it through :class:`Database` and declares its tables as a :class:`TableSet`; this module
alone decides how the file is opened:

- identity: ``PRAGMA application_id`` marks the file as the playground's; a file of
  another application, a non-SQLite file or a corrupt one is refused with one line and
  left byte for byte as it was;
- versions: each table set records its schema version in ``playground_meta``; a newer
  one than this code knows is refused ("upgrade first");
- concurrency: WAL mode, a busy timeout, one connection per thread (and per process
  after a fork), writes in ``BEGIN IMMEDIATE`` transactions retried with back-off;
- errors: every ``sqlite3`` error leaves as a :class:`UserError` naming the file.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sqlite3
import threading
import time
import urllib.parse
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

from llm_playground.core.errors import UserError

log = logging.getLogger(__name__)

#: ``PRAGMA application_id`` of a playground database ("LLMP").
APPLICATION_ID = 0x4C4C4D50
META_TABLE = "playground_meta"
SYNCHRONOUS_MODES = ("NORMAL", "FULL")

_SQLITE_MAGIC = b"SQLite format 3\x00"
_BUSY_TIMEOUT_S = 30.0
_ATTEMPTS = 8
_META_SCHEMA = (
    f"CREATE TABLE IF NOT EXISTS {META_TABLE} (key TEXT PRIMARY KEY, value TEXT NOT NULL)"
)

T = TypeVar("T")


@dataclass(frozen=True)
class TableSet:
    """The tables one module keeps: a name, a schema version and the DDL that creates them.

    ``schema`` holds ``CREATE TABLE IF NOT EXISTS`` / ``CREATE INDEX IF NOT EXISTS``
    statements separated by ``;``. ``marker_table`` is a table whose presence means the
    set exists already (older files that predate ``playground_meta``).
    """

    name: str
    version: int
    schema: str
    marker_table: str | None = None

    @property
    def meta_key(self) -> str:
        return f"schema:{self.name}"


def utc_now() -> str:
    return datetime.now(UTC).isoformat(timespec="microseconds")


def is_busy(exc: sqlite3.Error) -> bool:
    text = str(exc).lower()
    return "locked" in text or "busy" in text


def db_error(path: Path, exc: BaseException) -> UserError:
    """One line for a person about a failed database operation on ``path``."""
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


class Database:
    """The playground's SQLite file. Safe to share between threads; each thread (and
    each process) gets its own connection."""

    def __init__(
        self,
        path: str | os.PathLike | None = None,
        *,
        synchronous: str = "NORMAL",
        create: bool = True,
    ) -> None:
        if path is None:
            from llm_playground.core.paths import get_paths

            path = get_paths().db
        if str(path).strip() == "":
            raise UserError("the database path is empty")
        self.path = Path(path).expanduser()
        if self.path.is_dir():
            raise UserError(f"{self.path} is a folder; give the path of a database file")
        if not create and not self.path.exists():
            raise UserError(f"there is no playground database at {self.path}")
        sync = str(synchronous).upper()
        if sync not in SYNCHRONOUS_MODES:
            raise UserError(f"synchronous must be NORMAL or FULL, not {synchronous!r}")
        self.synchronous = sync
        self._local = threading.local()
        self._ensured: set[str] = set()

    def __repr__(self) -> str:
        return f"Database({str(self.path)!r})"

    # --- tables -------------------------------------------------------------------------

    def ensure(self, tables: TableSet) -> None:
        """Create or check ``tables`` once per object; refuse foreign, corrupt or newer files.

        Opening a file whose tables are already in place writes nothing to it.
        """
        if tables.name in self._ensured:
            return
        state = inspect(self.path, tables)
        if state == "new":
            try:
                self.path.parent.mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                raise UserError(
                    f"cannot create the folder {self.path.parent}: {exc.strerror or exc}"
                ) from None
        if state != "ready":
            self._create(tables)
        self._ensured.add(tables.name)

    def _create(self, tables: TableSet) -> None:
        def work(conn: sqlite3.Connection) -> None:
            _check_identity(conn, self.path, tables)  # again, inside the write lock
            conn.execute(f"PRAGMA application_id = {APPLICATION_ID}")
            conn.execute(_META_SCHEMA)
            for statement in tables.schema.strip().split(";"):
                if statement.strip():
                    conn.execute(statement)
            conn.execute(
                f"INSERT OR IGNORE INTO {META_TABLE} VALUES (?, ?)",
                (tables.meta_key, str(tables.version)),
            )
            conn.execute(
                f"INSERT OR IGNORE INTO {META_TABLE} VALUES ('created_at', ?)", (utc_now(),)
            )

        self._use_wal()
        self.write(work)

    def _use_wal(self) -> None:
        def once() -> None:
            conn = self._conn()
            if conn.execute("PRAGMA journal_mode").fetchone()[0].lower() != "wal":
                mode = conn.execute("PRAGMA journal_mode=WAL").fetchone()[0]
                if mode.lower() != "wal":
                    raise UserError(
                        f"{self.path}: cannot switch the database to WAL mode "
                        f"(the file system allows {mode!r} only)"
                    )

        self._retrying(once)

    def schema_version(self, tables: TableSet) -> int:
        rows = self.read(f"SELECT value FROM {META_TABLE} WHERE key = ?", (tables.meta_key,))
        return int(rows[0][0]) if rows else 0

    # --- connections --------------------------------------------------------------------

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
            conn.execute(f"PRAGMA busy_timeout = {int(_BUSY_TIMEOUT_S * 1000)}")
            conn.execute(f"PRAGMA synchronous = {self.synchronous}")
        except sqlite3.Error as exc:
            raise db_error(self.path, exc) from None
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

    def __enter__(self) -> Database:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # --- reading and writing ------------------------------------------------------------

    def _retrying(self, attempt_once: Callable[[], T], refused: str = "the database") -> T:
        """Run ``attempt_once()``, retrying with back-off while the database is busy; other
        database errors close the connection and become one-line user errors."""
        for attempt in range(_ATTEMPTS):
            try:
                return attempt_once()
            except sqlite3.IntegrityError as exc:
                raise UserError(f"the row was refused by {refused}: {exc}") from None
            except sqlite3.OperationalError as exc:
                if is_busy(exc) and attempt + 1 < _ATTEMPTS:
                    log.info("database busy, retrying (%s)", exc)
                    time.sleep(0.005 * 2**attempt)
                    continue
                self._drop_conn()
                raise db_error(self.path, exc) from None
            except sqlite3.DatabaseError as exc:
                self._drop_conn()
                raise db_error(self.path, exc) from None
        raise AssertionError("unreachable")

    def write(self, work: Callable[[sqlite3.Connection], T], refused: str = "the database") -> T:
        """Run ``work(conn)`` in a ``BEGIN IMMEDIATE`` transaction, retrying when busy."""

        def once() -> T:
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

        return self._retrying(once, refused)

    def read(self, sql: str, params: Sequence[Any] = ()) -> list[tuple]:
        return self._retrying(lambda: self._conn().execute(sql, params).fetchall())


# --- identity -----------------------------------------------------------------------------


def inspect(path: Path, tables: TableSet) -> str:
    """``"new"`` for a missing or empty file, ``"ready"`` for a playground database that
    has ``tables`` at the current version, ``"ours"`` for one without them (yet); a
    UserError for anything else. Never writes to the file."""
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
        raise db_error(path, exc) from None
    try:
        ready = _check_identity(conn, path, tables)
    except sqlite3.DatabaseError as exc:
        raise db_error(path, exc) from None
    finally:
        conn.close()
    return "ready" if ready else "ours"


def _check_identity(conn: sqlite3.Connection, path: Path, tables: TableSet) -> bool:
    """Refuse a foreign database or newer tables; True when ``tables`` are in place."""
    app_id = conn.execute("PRAGMA application_id").fetchone()[0]
    names = [
        r[0]
        for r in conn.execute(
            "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%' "
            "ORDER BY name"
        )
    ]
    if app_id == 0 and names:
        shown = ", ".join(names[:5]) + (", …" if len(names) > 5 else "")
        raise UserError(
            f"{path} is a SQLite database of another application (tables: {shown}); "
            "refusing to use or change it"
        )
    if app_id not in (0, APPLICATION_ID):
        raise UserError(
            f"{path} is a SQLite database of another application (application id "
            f"{app_id:#x}); refusing to use or change it"
        )
    version = None
    if META_TABLE in names:
        row = conn.execute(
            f"SELECT value FROM {META_TABLE} WHERE key = ?", (tables.meta_key,)
        ).fetchone()
        if row is not None:
            if not str(row[0]).isdigit():
                raise UserError(
                    f"{path}: the {tables.name} tables have no valid schema version; "
                    "refusing to use the file"
                )
            version = int(row[0])
    if version is not None and version > tables.version:
        raise UserError(
            f"{path} was written by a newer LLM Playground ({tables.name} schema "
            f"{version}, this one reads up to {tables.version}); upgrade first"
        )
    return version == tables.version
