"""``llm-playground prefs`` end to end, as real processes."""

from __future__ import annotations

import hashlib
import json
import sqlite3

import pytest


def add(cli, db, choice, prompt="Say hi", a="Hello!", b="Go away.", ma="m1", mb="m2", *extra):
    args = [
        "prefs",
        "add",
        "--db",
        str(db),
        "--prompt",
        prompt,
        "--response-a",
        a,
        "--response-b",
        b,
        "--choice",
        choice,
    ]
    if ma:
        args += ["--model-a", ma]
    if mb:
        args += ["--model-b", mb]
    return cli(*args, *extra)


def test_add_export_stats_end_to_end(cli, tmp_path):
    db = tmp_path / "data" / "votes.sqlite"
    r = add(cli, db, "a")
    assert r.returncode == 0, r.stderr
    assert "stored vote #1" in r.stdout
    assert add(cli, db, "b", "Capital of France?", "Lyon", "Paris").returncode == 0
    assert add(cli, db, "tie", "2+2?", "4", "four").returncode == 0
    r = add(cli, db, "both-bad", "Spell cat", "dog", "cta", "m1", "m2", "--comment", "both wrong")
    assert r.returncode == 0, r.stderr

    out = tmp_path / "export" / "prefs.jsonl"
    r = cli("prefs", "export", "--db", str(db), "--out", str(out))
    assert r.returncode == 0, r.stderr
    assert out.read_text().splitlines() == [
        '{"prompt": "Say hi", "chosen": "Hello!", "rejected": "Go away."}',
        '{"prompt": "Capital of France?", "chosen": "Paris", "rejected": "Lyon"}',
    ]
    ties = tmp_path / "export" / "prefs.ties.jsonl"  # the default keeps ties apart
    assert [json.loads(line)["label"] for line in ties.read_text().splitlines()] == [
        "tie",
        "both-bad",
    ]
    assert "2 preference pair(s)" in r.stdout

    r = cli(
        "prefs",
        "export",
        "--db",
        str(db),
        "--out",
        str(out),
        "--ties",
        "label",
        "--dataset",
        str(tmp_path / "ds"),
    )
    assert r.returncode == 0, r.stderr
    assert [json.loads(line)["label"] for line in out.read_text().splitlines()] == [
        "preferred",
        "preferred",
        "tie",
        "both-bad",
    ]
    assert (tmp_path / "ds" / "dataset_info.json").exists()

    r = cli("prefs", "stats", "--db", str(db), "--json")
    assert r.returncode == 0, r.stderr
    stats = json.loads(r.stdout)
    assert stats["votes"] == {"a": 1, "b": 1, "tie": 1, "both-bad": 1, "total": 4}
    [pair] = stats["pairs"]
    assert (pair["model_1"], pair["model_2"], pair["n_votes"]) == ("m1", "m2", 4)
    assert (pair["wins_1"], pair["wins_2"], pair["ties"], pair["both_bad"]) == (1, 1, 1, 1)
    assert {r["model"] for r in stats["ratings"]} == {"m1", "m2"}
    assert all(r["ci_low"] <= r["rating"] <= r["ci_high"] for r in stats["ratings"])

    r = cli("prefs", "stats", "--db", str(db))
    assert r.returncode == 0, r.stderr
    assert "4 vote(s)" in r.stdout and "Bradley-Terry" in r.stdout and "m1" in r.stdout


def test_default_database_is_in_the_playground_home(cli, playground_home):
    r = cli(
        "prefs", "add", "--prompt", "p", "--response-a", "x", "--response-b", "y", "--choice", "tie"
    )
    assert r.returncode == 0, r.stderr
    assert (playground_home / "playground.sqlite").exists()
    r = cli("prefs", "stats", "--json")
    assert json.loads(r.stdout)["votes"]["tie"] == 1


@pytest.mark.parametrize("choice", ["c", "A-ish", "none"])
def test_bad_choice_exits_2_and_writes_nothing(cli, tmp_path, choice):
    db = tmp_path / "votes.sqlite"
    r = add(cli, db, choice)
    assert r.returncode == 2
    assert len(r.stderr.strip().splitlines()) == 1 and "choice must be one of" in r.stderr
    assert "Traceback" not in r.stderr
    assert not db.exists()  # nothing written, not even an empty database


def test_bad_choice_on_existing_database_adds_nothing(cli, tmp_path):
    db = tmp_path / "votes.sqlite"
    assert add(cli, db, "a").returncode == 0
    assert add(cli, db, "maybe").returncode == 2
    assert sqlite3.connect(db).execute("SELECT count(*) FROM votes").fetchone()[0] == 1


def test_empty_prompt_exits_2(cli, tmp_path):
    db = tmp_path / "votes.sqlite"
    r = add(cli, db, "a", prompt="  ")
    assert r.returncode == 2 and "prompt is empty" in r.stderr
    assert not db.exists()


def test_foreign_and_non_sqlite_files_are_refused_untouched(cli, tmp_path):
    foreign = tmp_path / "foreign.sqlite"
    conn = sqlite3.connect(foreign)
    conn.execute("CREATE TABLE invoices (id INTEGER)")
    conn.commit()
    conn.close()
    text = tmp_path / "notes.txt"
    text.write_text("not a database\n")
    for path in (foreign, text):
        before = hashlib.sha256(path.read_bytes()).hexdigest()
        for args in (
            [
                "add",
                "--db",
                str(path),
                "--prompt",
                "p",
                "--response-a",
                "x",
                "--response-b",
                "y",
                "--choice",
                "a",
            ],
            ["stats", "--db", str(path), "--json"],
            ["export", "--db", str(path), "--out", str(tmp_path / "o.jsonl")],
        ):
            r = cli("prefs", *args)
            assert r.returncode == 2, (args, r.stdout, r.stderr)
            assert len(r.stderr.strip().splitlines()) == 1 and "Traceback" not in r.stderr
        assert hashlib.sha256(path.read_bytes()).hexdigest() == before
    assert not (tmp_path / "o.jsonl").exists()


def test_export_and_stats_of_a_missing_database_create_nothing(cli, tmp_path):
    db = tmp_path / "typo.sqlite"
    r = cli("prefs", "export", "--db", str(db), "--out", str(tmp_path / "o.jsonl"))
    assert r.returncode == 2 and "no vote database" in r.stderr
    r = cli("prefs", "stats", "--db", str(db), "--json")
    assert r.returncode == 2
    assert sorted(p.name for p in tmp_path.iterdir()) == []


def test_export_with_bad_ties_option_or_dataset_folder_writes_nothing(cli, tmp_path):
    db = tmp_path / "votes.sqlite"
    assert add(cli, db, "a").returncode == 0
    out = tmp_path / "o.jsonl"
    r = cli("prefs", "export", "--db", str(db), "--out", str(out), "--ties", "keep")
    assert r.returncode == 2 and len(r.stderr.strip().splitlines()) == 1
    busy = tmp_path / "busy"
    busy.mkdir()
    (busy / "thesis.tex").write_text("mine")
    r = cli("prefs", "export", "--db", str(db), "--out", str(out), "--dataset", str(busy))
    assert r.returncode == 2 and "other files" in r.stderr
    assert not out.exists()


def test_db_may_be_a_data_folder(cli, tmp_path):
    folder = tmp_path / "my-data"
    folder.mkdir()
    r = cli(
        "prefs",
        "add",
        "--db",
        str(folder),
        "--prompt",
        "p",
        "--response-a",
        "x",
        "--response-b",
        "y",
        "--choice",
        "a",
    )
    assert r.returncode == 0, r.stderr
    assert (folder / "playground.sqlite").exists()
    assert (
        json.loads(cli("prefs", "stats", "--db", str(folder), "--json").stdout)["votes"]["a"] == 1
    )
