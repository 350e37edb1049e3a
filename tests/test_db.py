"""The one playground database module: identity, versions, concurrency, clear refusals."""

from __future__ import annotations

import sqlite3
import threading

import pytest

from llm_playground.core.db import APPLICATION_ID, Database, TableSet
from llm_playground.core.errors import UserError

NOTES = TableSet(
    "notes", 1, "CREATE TABLE IF NOT EXISTS notes (id INTEGER PRIMARY KEY, text TEXT NOT NULL)"
)


def test_creates_marks_and_versions_a_new_file(tmp_path):
    db = Database(tmp_path / "sub" / "p.sqlite")
    db.ensure(NOTES)
    db.write(lambda c: c.execute("INSERT INTO notes (text) VALUES ('hi')"))
    assert db.read("SELECT text FROM notes") == [("hi",)]
    assert db.schema_version(NOTES) == 1
    con = sqlite3.connect(db.path)
    assert con.execute("PRAGMA application_id").fetchone()[0] == APPLICATION_ID
    assert con.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_two_table_sets_share_one_file(tmp_path):
    other = TableSet("other", 3, "CREATE TABLE IF NOT EXISTS other (x INTEGER)")
    db = Database(tmp_path / "p.sqlite")
    db.ensure(NOTES)
    db.ensure(other)
    assert db.schema_version(NOTES) == 1 and db.schema_version(other) == 3


def test_foreign_text_and_newer_files_are_refused_untouched(tmp_path):
    text = tmp_path / "notes.txt"
    text.write_text("not a database at all, just words\n" * 10)
    foreign = tmp_path / "foreign.sqlite"
    con = sqlite3.connect(foreign)
    con.execute("CREATE TABLE t (x)")
    con.commit()
    con.close()
    for path, words in ((text, "not a SQLite database"), (foreign, "another application")):
        before = path.read_bytes()
        with pytest.raises(UserError, match=words):
            Database(path).ensure(NOTES)
        assert path.read_bytes() == before
    newer = tmp_path / "newer.sqlite"
    Database(newer).ensure(NOTES)
    Database(newer).write(
        lambda c: c.execute("UPDATE playground_meta SET value = '9' WHERE key = 'schema:notes'")
    )
    with pytest.raises(UserError, match="newer LLM Playground"):
        Database(newer).ensure(NOTES)


def test_concurrent_writers_lose_nothing(tmp_path):
    db = Database(tmp_path / "p.sqlite")
    db.ensure(NOTES)

    def writer(n: int) -> None:
        for i in range(50):
            db.write(lambda c, i=i: c.execute("INSERT INTO notes (text) VALUES (?)", (f"{n}-{i}",)))

    threads = [threading.Thread(target=writer, args=(n,)) for n in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert db.read("SELECT count(*) FROM notes") == [(200,)]


def test_a_folder_or_empty_path_is_one_clear_line(tmp_path):
    with pytest.raises(UserError, match="is a folder"):
        Database(tmp_path)
    with pytest.raises(UserError, match="empty"):
        Database("  ")
