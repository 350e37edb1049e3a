"""The vote store: schema and identity checks, durability, concurrency, export, ratings."""

from __future__ import annotations

import hashlib
import json
import math
import os
import random
import signal
import sqlite3
import subprocess
import sys
import threading

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from llm_playground.core.db import APPLICATION_ID, META_TABLE
from llm_playground.core.errors import UserError
from llm_playground.finetuning.outputs import OutputExists
from llm_playground.finetuning.preferences import (
    ELO_SCALE,
    SCHEMA_VERSION,
    PreferenceStore,
    Rating,
    Vote,
    compute_stats,
    elo_ratings,
    fit_bradley_terry,
    is_preference_export,
    make_pair,
    normalise_choice,
    read_preference_pairs,
    sibling_ties_path,
    win_matrix,
)


def sha256(path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture
def store(tmp_path) -> PreferenceStore:
    return PreferenceStore(tmp_path / "votes.sqlite")


def add(store, choice, model_a="m1", model_b="m2", prompt="Say hi", ra="Hello!", rb="Go away."):
    return store.add_vote(prompt, ra, rb, choice, model_a=model_a, model_b=model_b)


# --- schema, identity, refusal -------------------------------------------------------------


def test_new_database_has_versioned_schema_in_wal_mode(tmp_path):
    path = tmp_path / "new" / "folder" / "votes.sqlite"
    store = PreferenceStore(path)
    assert path.exists()  # the missing folders were created
    assert store.schema_version() == SCHEMA_VERSION
    conn = sqlite3.connect(path)
    assert conn.execute("PRAGMA application_id").fetchone()[0] == APPLICATION_ID
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    columns = [r[1] for r in conn.execute("PRAGMA table_info(votes)")]
    assert columns == [
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
    ]
    meta = dict(conn.execute(f"SELECT key, value FROM {META_TABLE}"))
    assert meta["schema:votes"] == str(SCHEMA_VERSION)  # the one database's version table
    conn.close()
    # reopening keeps the votes and the schema
    add(store, "a")
    again = PreferenceStore(path)
    assert again.count() == 1 and again.schema_version() == SCHEMA_VERSION


def test_store_sets_busy_timeout_and_synchronous(tmp_path):
    store = PreferenceStore(tmp_path / "v.sqlite", synchronous="FULL")
    conn = store.db._conn()
    assert conn.execute("PRAGMA busy_timeout").fetchone()[0] >= 1000
    assert conn.execute("PRAGMA synchronous").fetchone()[0] == 2  # FULL
    normal = PreferenceStore(tmp_path / "w.sqlite")
    assert normal.db._conn().execute("PRAGMA synchronous").fetchone()[0] == 1  # NORMAL
    with pytest.raises(UserError, match="NORMAL or FULL"):
        PreferenceStore(tmp_path / "x.sqlite", synchronous="OFF")


def test_vote_is_stored_with_every_field(store):
    vote = store.add_vote(
        "Say hi",
        "Hello!",
        "Go away.",
        "b",
        model_a="m1",
        model_b="m2",
        comment="  rude but honest ",
        session_id="s-1",
    )
    [listed] = store.list_votes()
    assert listed == vote
    assert (vote.prompt, vote.response_a, vote.response_b) == ("Say hi", "Hello!", "Go away.")
    assert (vote.model_a, vote.model_b, vote.choice) == ("m1", "m2", "b")
    assert vote.comment == "rude but honest" and vote.session_id == "s-1"
    assert vote.created_at.endswith("+00:00")  # UTC ISO 8601
    assert vote.chosen == "Go away." and vote.rejected == "Hello!" and vote.winner == "m2"


@pytest.mark.parametrize("bad", ["c", "", "A or B", "ab", "none", "1"])
def test_choice_outside_the_four_is_refused_and_nothing_stored(store, bad):
    with pytest.raises(UserError, match="choice must be one of a, b, tie, both-bad"):
        add(store, bad)
    assert store.count() == 0


@pytest.mark.parametrize(
    "given,expected",
    [("A", "a"), (" b ", "b"), ("TIE", "tie"), ("both_bad", "both-bad"), ("Both Bad", "both-bad")],
)
def test_choice_spellings_are_normalised(given, expected):
    assert normalise_choice(given) == expected


def test_check_constraint_guards_the_table_itself(store):
    conn = sqlite3.connect(store.path)
    with pytest.raises(sqlite3.IntegrityError):
        conn.execute(
            "INSERT INTO votes (uid, prompt, response_a, response_b, choice, created_at) "
            "VALUES ('x', 'p', 'a', 'b', 'maybe', 'now')"
        )
    with pytest.raises(sqlite3.IntegrityError):
        conn.execute(
            "INSERT INTO votes (uid, prompt, response_a, response_b, choice, created_at) "
            "VALUES ('y', '   ', 'a', 'b', 'a', 'now')"
        )
    conn.close()


@pytest.mark.parametrize("prompt", ["", "   ", "\n\t"])
def test_empty_prompt_is_refused(store, prompt):
    with pytest.raises(UserError, match="prompt is empty"):
        store.add_vote(prompt, "x", "y", "a")
    assert store.count() == 0


def test_foreign_sqlite_file_is_refused_and_unchanged(tmp_path):
    path = tmp_path / "shop.sqlite"
    conn = sqlite3.connect(path)
    conn.execute("CREATE TABLE customers (id INTEGER PRIMARY KEY, name TEXT)")
    conn.execute("INSERT INTO customers (name) VALUES ('Ada')")
    conn.commit()
    conn.close()
    before = sha256(path)
    with pytest.raises(UserError, match="another application.*customers"):
        PreferenceStore(path)
    assert sha256(path) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["shop.sqlite"]


def test_sqlite_file_with_another_application_id_is_refused_and_unchanged(tmp_path):
    path = tmp_path / "other.db"
    conn = sqlite3.connect(path)
    conn.execute("PRAGMA application_id = 1234")
    conn.execute("CREATE TABLE votes (x)")  # even a table of the same name
    conn.commit()
    conn.close()
    before = sha256(path)
    with pytest.raises(UserError, match="another application"):
        PreferenceStore(path)
    assert sha256(path) == before


@pytest.mark.parametrize(
    "content",
    [
        b"hello, this is a text file\n" * 20,
        b"\x00" * 4096,
        b"SQLite format 3\x00" + os.urandom(4096),  # the right magic, garbage pages
    ],
)
def test_non_sqlite_or_corrupt_file_is_refused_and_unchanged(tmp_path, content):
    path = tmp_path / "votes.sqlite"
    path.write_bytes(content)
    before = sha256(path)
    with pytest.raises(UserError) as info:
        store = PreferenceStore(path)
        store.add_vote("p", "a", "b", "a")  # must not get this far
    assert "\n" not in str(info.value)
    assert sha256(path) == before


def test_newer_schema_is_refused(tmp_path):
    path = tmp_path / "v.sqlite"
    PreferenceStore(path)
    conn = sqlite3.connect(path)
    conn.execute(
        f"UPDATE {META_TABLE} SET value = ? WHERE key = 'schema:votes'", (str(SCHEMA_VERSION + 1),)
    )
    conn.commit()
    conn.close()
    with pytest.raises(UserError, match="newer"):
        PreferenceStore(path)


# A vote database as the release before the shared database module wrote it.
LEGACY_SCHEMA = """
CREATE TABLE prefs_meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE votes (
    id INTEGER PRIMARY KEY AUTOINCREMENT, uid TEXT NOT NULL UNIQUE,
    prompt TEXT NOT NULL CHECK (length(trim(prompt)) > 0), response_a TEXT NOT NULL,
    response_b TEXT NOT NULL, model_a TEXT, model_b TEXT,
    choice TEXT NOT NULL CHECK (choice IN ('a', 'b', 'tie', 'both-bad')),
    comment TEXT NOT NULL DEFAULT '', created_at TEXT NOT NULL,
    session_id TEXT NOT NULL DEFAULT '');
CREATE INDEX votes_models ON votes (model_a, model_b);
"""


def legacy_database(path, version="1"):
    conn = sqlite3.connect(path)
    conn.execute(f"PRAGMA application_id = {APPLICATION_ID}")
    conn.execute("PRAGMA journal_mode=WAL")
    conn.executescript(LEGACY_SCHEMA)
    conn.execute("INSERT INTO prefs_meta VALUES ('schema_version', ?)", (version,))
    conn.execute("INSERT INTO prefs_meta VALUES ('application', 'llm-playground')")
    conn.execute(
        "INSERT INTO votes (uid, prompt, response_a, response_b, model_a, model_b, choice, "
        "created_at) VALUES ('old-1', 'Old prompt', 'x', 'y', 'm1', 'm2', 'b', "
        "'2026-01-01T00:00:00+00:00')"
    )
    conn.commit()
    conn.close()


def test_vote_database_of_the_earlier_release_keeps_opening(tmp_path):
    path = tmp_path / "playground.sqlite"
    legacy_database(path)
    store = PreferenceStore(path)
    [old] = store.list_votes()
    assert (old.uid, old.prompt, old.choice, old.winner) == ("old-1", "Old prompt", "b", "m2")
    add(store, "a")
    assert store.count() == 2 and store.schema_version() == SCHEMA_VERSION
    assert {r.model for r in store.ratings()} == {"m1", "m2"}
    conn = sqlite3.connect(path)
    assert conn.execute(f"SELECT value FROM {META_TABLE} WHERE key = 'schema:votes'").fetchone()
    assert conn.execute("SELECT value FROM prefs_meta").fetchall()  # left for older releases
    conn.close()
    # opened again: nothing to migrate, nothing written
    store.close()
    sqlite3.connect(path).execute("PRAGMA wal_checkpoint(TRUNCATE)").close()
    before = sha256(path)
    assert PreferenceStore(path).count() == 2
    assert sha256(path) == before


@pytest.mark.parametrize("version, message", [("2", "newer"), ("x", "no valid schema version")])
def test_earlier_release_database_with_a_bad_version_is_refused_untouched(
    tmp_path, version, message
):
    path = tmp_path / "playground.sqlite"
    legacy_database(path, version)
    sqlite3.connect(path).execute("PRAGMA wal_checkpoint(TRUNCATE)").close()
    before = sha256(path)
    with pytest.raises(UserError, match=message):
        PreferenceStore(path)
    assert sha256(path) == before


def test_folder_as_database_path_is_refused(tmp_path):
    with pytest.raises(UserError, match="folder"):
        PreferenceStore(tmp_path)
    with pytest.raises(UserError, match="empty"):
        PreferenceStore("  ")


def test_database_shared_with_other_playground_tables(tmp_path):
    """The leaderboard keeps its own tables in the same file; votes live beside them."""
    path = tmp_path / "playground.sqlite"
    store = PreferenceStore(path)
    conn = sqlite3.connect(path)
    conn.execute("CREATE TABLE leaderboard_results (model TEXT, metric TEXT, value REAL)")
    conn.commit()
    conn.close()
    add(PreferenceStore(path), "a")
    assert store.count() == 1


def test_read_only_store_does_not_create_a_file(tmp_path):
    with pytest.raises(UserError, match="no vote database"):
        PreferenceStore(tmp_path / "missing.sqlite", create=False)
    assert not (tmp_path / "missing.sqlite").exists()


# --- pairs -----------------------------------------------------------------------------------


def test_make_pair_randomises_positions_and_hides_names():
    orders = set()
    for seed in range(40):
        pair = make_pair("Q", "r1", "model-one", "r2", "model-two", random.Random(seed))
        assert {pair.response_a, pair.response_b} == {"r1", "r2"}
        assert "model-one" not in repr(pair) and "model-two" not in repr(pair)
        assert not hasattr(pair, "model_a")
        orders.add(pair.response_a)
    assert orders == {"r1", "r2"}  # both positions happen
    # the same seed gives the same order; numpy generators and int seeds work too
    assert (
        make_pair("Q", "r1", "m1", "r2", "m2", 7).response_a
        == make_pair("Q", "r1", "m1", "r2", "m2", 7).response_a
    )
    assert make_pair("Q", "r1", "m1", "r2", "m2", np.random.default_rng(0)).prompt == "Q"


def test_pair_record_reveals_names_and_is_idempotent(store):
    pair = make_pair("Q", "r1", "model-one", "r2", "model-two", random.Random(3))
    vote = pair.record(store, "a", comment="nice", session_id="tab-1")
    expected_model = "model-one" if pair.response_a == "r1" else "model-two"
    assert vote.model_a == expected_model and vote.winner == expected_model
    assert vote.response_a == pair.response_a
    again = pair.record(store, "a")  # a double click stores nothing new
    assert again.id == vote.id and store.count() == 1


# --- export -----------------------------------------------------------------------------------


@pytest.fixture
def voted(store) -> PreferenceStore:
    store.add_vote("P1", "good one", "bad one", "a", model_a="m1", model_b="m2")
    store.add_vote("P2", "meh", "better", "b", model_a="m1", model_b="m2")
    store.add_vote("P3", "same", "same-ish", "tie", model_a="m2", model_b="m1")
    store.add_vote("P4", "awful", "worse", "both-bad", model_a="m1", model_b="m2")
    store.add_vote("P5 «ü»", "ja ✓", "nein", "a")
    return store


def lines(path) -> list[str]:
    return path.read_text(encoding="utf-8").splitlines()


def test_export_drop(voted, tmp_path):
    out = tmp_path / "out" / "prefs.jsonl"
    result = voted.export_jsonl(out, ties="drop")
    assert lines(out) == [
        '{"prompt": "P1", "chosen": "good one", "rejected": "bad one"}',
        '{"prompt": "P2", "chosen": "better", "rejected": "meh"}',
        '{"prompt": "P5 «ü»", "chosen": "ja ✓", "rejected": "nein"}',
    ]
    assert (result.n_pairs, result.n_ties, result.n_both_bad, result.n_dropped) == (3, 1, 1, 2)
    assert not sibling_ties_path(out).exists()
    assert "dropped 1 tie(s) and 1 both-bad" in result.summary()


def test_export_separate(voted, tmp_path):
    out = tmp_path / "prefs.jsonl"
    result = voted.export_jsonl(out, ties="separate")
    assert result.ties_path == tmp_path / "prefs.ties.jsonl"
    assert lines(out) == [
        '{"prompt": "P1", "chosen": "good one", "rejected": "bad one"}',
        '{"prompt": "P2", "chosen": "better", "rejected": "meh"}',
        '{"prompt": "P5 «ü»", "chosen": "ja ✓", "rejected": "nein"}',
    ]
    assert lines(result.ties_path) == [
        '{"prompt": "P3", "response_a": "same", "response_b": "same-ish", "label": "tie"}',
        '{"prompt": "P4", "response_a": "awful", "response_b": "worse", "label": "both-bad"}',
    ]
    assert result.n_dropped == 0


def test_export_label(voted, tmp_path):
    out = tmp_path / "prefs.jsonl"
    voted.export_jsonl(out, ties="label")
    assert lines(out) == [
        '{"prompt": "P1", "chosen": "good one", "rejected": "bad one", "label": "preferred"}',
        '{"prompt": "P2", "chosen": "better", "rejected": "meh", "label": "preferred"}',
        '{"prompt": "P3", "chosen": "same", "rejected": "same-ish", "label": "tie"}',
        '{"prompt": "P4", "chosen": "awful", "rejected": "worse", "label": "both-bad"}',
        '{"prompt": "P5 «ü»", "chosen": "ja ✓", "rejected": "nein", "label": "preferred"}',
    ]
    # reading it back for training keeps only real preferences
    assert [r["prompt"] for r in read_preference_pairs(out)] == ["P1", "P2", "P5 «ü»"]
    assert len(read_preference_pairs(out, keep_labels=True)) == 5
    assert is_preference_export(out) and is_preference_export(sibling_ties_path(out)) is False


def test_export_replaces_only_when_allowed_atomically_and_leaves_no_temp_files(voted, tmp_path):
    out = tmp_path / "prefs.jsonl"
    out.write_text("old content\n")
    with pytest.raises(OutputExists):
        voted.export_jsonl(out, ties="drop")
    assert out.read_text() == "old content\n" and not is_preference_export(out)
    voted.export_jsonl(out, ties="drop", force=True)
    assert lines(out)[0].startswith('{"prompt": "P1"')
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".")) == []


def test_export_refuses_bad_targets_and_writes_nothing(voted, tmp_path, store):
    with pytest.raises(UserError, match="ties must be one of"):
        voted.export_jsonl(tmp_path / "x.jsonl", ties="keep")
    with pytest.raises(UserError, match="folder"):
        voted.export_jsonl(tmp_path, ties="drop")
    with pytest.raises(UserError, match="database itself"):
        voted.export_jsonl(voted.path, ties="drop")
    assert not (tmp_path / "x.jsonl").exists()


def test_export_of_an_empty_store_is_refused(tmp_path):
    store = PreferenceStore(tmp_path / "v.sqlite")
    with pytest.raises(UserError, match="no votes"):
        store.export_jsonl(tmp_path / "o.jsonl")
    add(store, "tie")
    with pytest.raises(UserError, match="no A/B votes"):
        store.export_jsonl(tmp_path / "o.jsonl", ties="drop")
    assert not (tmp_path / "o.jsonl").exists()


def test_dataset_round_trip(voted, tmp_path):
    from datasets import load_from_disk

    out = tmp_path / "dataset"
    result = voted.export_dataset(out)
    ds = load_from_disk(str(out))
    assert ds.column_names == ["prompt", "chosen", "rejected"]
    assert ds.to_list() == [json.loads(line) for line in voted_lines(voted, tmp_path)]
    assert result.n_pairs == 3
    # saving again replaces the dataset when allowed; a folder with other files is not touched
    with pytest.raises(OutputExists):
        voted.export_dataset(out, ties="label")
    voted.export_dataset(out, ties="label", force=True)
    assert load_from_disk(str(out))["label"] == [
        "preferred",
        "preferred",
        "tie",
        "both-bad",
        "preferred",
    ]
    other = tmp_path / "mine"
    other.mkdir()
    (other / "notes.txt").write_text("keep me")
    with pytest.raises(UserError, match="other files"):
        voted.export_dataset(other)
    assert (other / "notes.txt").read_text() == "keep me"


def test_dataset_separate_mode_writes_ties_beside(voted, tmp_path):
    from datasets import load_from_disk

    voted.export_dataset(tmp_path / "ds", ties="separate")
    ties = load_from_disk(str(tmp_path / "ds.ties"))
    assert ties["label"] == ["tie", "both-bad"]


def voted_lines(store, tmp_path) -> list[str]:
    out = tmp_path / "check.jsonl"
    store.export_jsonl(out, ties="drop", force=True)
    return lines(out)


def test_read_preference_pairs_reports_the_bad_line(tmp_path):
    path = tmp_path / "p.jsonl"
    path.write_text('{"prompt": "p", "chosen": "c", "rejected": "r"}\n{"prompt": "p", \n')
    with pytest.raises(UserError, match="line 2"):
        read_preference_pairs(path)
    path.write_text('{"prompt": "p", "chosen": "c"}\n')
    with pytest.raises(UserError, match=r"line 1: missing text field\(s\) 'rejected'"):
        read_preference_pairs(path)


# --- statistics and ratings ----------------------------------------------------------------


def votes_from(spec) -> list[Vote]:
    """(model_a, model_b, choice) triples as Vote records."""
    return [
        Vote(i, str(i), "p", "x", "y", ma, mb, c, "", "t", "")
        for i, (ma, mb, c) in enumerate(spec, 1)
    ]


def test_two_models_closed_form():
    # 6 wins, 2 losses and 2 ties (half each): 7 against 3
    spec = [("x", "y", "a")] * 6 + [("y", "x", "a")] * 2 + [("x", "y", "tie")] * 2
    stats = compute_stats(votes_from(spec))
    by = {r["model"]: r for r in stats["ratings"]}
    diff = by["x"]["rating"] - by["y"]["rating"]
    assert diff == pytest.approx(400 * math.log10(7 / 3), abs=1e-2)
    assert by["x"]["rating"] + by["y"]["rating"] == pytest.approx(2000, abs=1e-2)
    # standard error: var(θx − θy) = 1 / (n p (1 − p)), with θx = −θy = d/2
    p = 0.7
    se_diff = 1 / math.sqrt(10 * p * (1 - p))
    assert by["x"]["se"] == pytest.approx(ELO_SCALE * se_diff / 2, rel=1e-3)
    assert by["x"]["ci_high"] - by["x"]["rating"] == pytest.approx(
        1.959964 * ELO_SCALE * se_diff / 2, rel=1e-3
    )
    assert stats["bradley_terry"]["regularized"] is False


def hunter_mm(w: np.ndarray, iterations: int = 20000) -> np.ndarray:
    """Zermelo/Hunter's MM iteration for Bradley–Terry, as an independent check."""
    n = len(w)
    games = w + w.T
    p = np.ones(n)
    for _ in range(iterations):
        denom = (games / (p[:, None] + p[None, :])).sum(axis=1)
        p = w.sum(axis=1) / denom
        p /= np.exp(np.log(p).mean())
    return np.log(p)


def test_bradley_terry_matches_mm_algorithm_and_gradient_is_zero():
    rng = random.Random(1)
    strengths = {"m1": 1.0, "m2": 0.3, "m3": -0.4, "m4": -1.0}
    spec = []
    for _ in range(400):
        a, b = rng.sample(sorted(strengths), 2)
        p = 1 / (1 + math.exp(strengths[b] - strengths[a]))
        r = rng.random()
        spec.append((a, b, "tie" if r < 0.1 else ("a" if r < 0.1 + 0.9 * p else "b")))
    models = sorted(strengths)
    w = win_matrix(models, spec)
    fit = fit_bradley_terry(w)
    assert fit.converged and fit.prior == 0
    np.testing.assert_allclose(fit.theta, hunter_mm(w), atol=1e-6)
    d = fit.theta[:, None] - fit.theta[None, :]
    grad = w.sum(1) - ((w + w.T) / (1 + np.exp(-d))).sum(1)
    np.testing.assert_allclose(grad, 0, atol=1e-8)
    # the recovered order is the true one
    assert [models[i] for i in np.argsort(-fit.theta)] == ["m1", "m2", "m3", "m4"]


def test_symmetric_cycle_gives_equal_ratings():
    spec = [("a", "b", "a"), ("b", "c", "a"), ("c", "a", "a")] * 3
    ratings = compute_stats(votes_from(spec))["ratings"]
    assert [r["rating"] for r in ratings] == pytest.approx([1000, 1000, 1000], abs=1e-6)


def test_undefeated_model_gets_a_finite_regularised_rating():
    spec = [("x", "y", "a")] * 5 + [("y", "z", "a")] * 3
    stats = compute_stats(votes_from(spec))
    ratings = {r["model"]: r for r in stats["ratings"]}
    assert stats["bradley_terry"]["regularized"] is True
    assert all(
        math.isfinite(r["rating"]) and r["ci_low"] < r["rating"] < r["ci_high"]
        for r in ratings.values()
    )
    assert ratings["x"]["rating"] > ratings["y"]["rating"] > ratings["z"]["rating"]


def test_win_rates_count_ties_half_and_both_bad_apart():
    spec = (
        [("x", "y", "a")] * 3
        + [("x", "y", "b")]
        + [("y", "x", "tie")] * 2
        + [("x", "y", "both-bad")] * 4
        + [(None, "y", "a"), ("x", "x", "b")]
    )
    stats = compute_stats(votes_from(spec))
    [pair] = stats["pairs"]
    assert pair == {
        "model_1": "x",
        "model_2": "y",
        "n_votes": 10,
        "wins_1": 3,
        "wins_2": 1,
        "ties": 2,
        "both_bad": 4,
        "win_rate_1": round(4 / 6, 6),
        "win_rate_2": round(2 / 6, 6),
    }
    x = next(m for m in stats["models"] if m["model"] == "x")
    assert (x["wins"], x["losses"], x["ties"], x["both_bad"]) == (3, 1, 2, 4)
    assert x["win_rate"] == round(4 / 6, 6) and x["both_bad_rate"] == 0.4
    assert stats["excluded_from_ratings"] == {"unnamed": 1, "same_model": 1}
    assert stats["votes"] == {"a": 4, "b": 2, "tie": 2, "both-bad": 4, "total": 12}
    # ratings count the votes they are fitted on (both-bad votes are not)
    assert {r["model"]: r["n_votes"] for r in stats["ratings"]} == {"x": 6, "y": 6}
    json.dumps(stats, allow_nan=False)  # JSON-serialisable, no NaN


def test_elo_view_known_update():
    [x, y] = elo_ratings(votes_from([("x", "y", "a")]))
    assert (x["model"], x["rating"], y["rating"]) == ("x", 1016.0, 984.0)


def test_store_stats_and_ratings(voted):
    stats = voted.stats()
    json.dumps(stats, allow_nan=False)
    assert stats["votes"]["total"] == 5 and stats["db"] == str(voted.path)
    ratings = voted.ratings()
    assert all(isinstance(r, Rating) for r in ratings)
    assert {r.model for r in ratings} == {"m1", "m2"}
    assert all(type(r.rating) is float and r.ci_low <= r.rating <= r.ci_high for r in ratings)
    boot = voted.ratings(bootstrap=50, seed=1)
    assert [r.model for r in boot] == [r.model for r in ratings]


def test_list_votes_for_judge_agreement(voted):
    votes = voted.list_votes()
    assert [v.prompt for v in votes][:2] == ["P1", "P2"]
    assert [v.choice for v in votes] == ["a", "b", "tie", "both-bad", "a"]
    assert [v.id for v in voted.list_votes(model="m2")] == [1, 2, 3, 4]
    assert voted.delete_vote(votes[-1].id) and voted.count() == 4


# --- concurrency and durability ---------------------------------------------------------


WRITER = """
import sys
from llm_playground.finetuning.preferences import PreferenceStore
store = PreferenceStore(sys.argv[1])
for i in range(250):
    store.add_vote(f"prompt {i}", "x", "y", "ab"[i % 2], model_a=f"m{sys.argv[2]}",
                   model_b="m", uid=f"w{sys.argv[2]}-{i}")
"""


def test_four_processes_write_1000_votes_none_lost(tmp_path):
    """Four writer processes at once (bench/prefs.py measures the rate of the same)."""
    db = tmp_path / "bench.sqlite"
    PreferenceStore(db)
    procs = [
        subprocess.Popen([sys.executable, "-c", WRITER, str(db), str(w)], stderr=subprocess.PIPE)
        for w in range(4)
    ]
    errors = [p.communicate()[1] for p in procs]
    assert [p.returncode for p in procs] == [0, 0, 0, 0], errors
    store = PreferenceStore(db)
    assert store.count() == 1000
    assert {v.uid for v in store.list_votes()} == {
        f"w{w}-{i}" for w in range(4) for i in range(250)
    }
    assert sqlite3.connect(store.path).execute("PRAGMA integrity_check").fetchone()[0] == "ok"


def test_threads_share_one_store(store):
    errors = []

    def work(t):
        try:
            for i in range(40):
                store.add_vote(f"p{t}-{i}", "x", "y", "a", model_a="m1", model_b="m2")
        except Exception as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(t,)) for t in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert store.count() == 240
    assert len({v.prompt for v in store.list_votes()}) == 240


CHILD = """
import sys
from llm_playground.finetuning.preferences import PreferenceStore
store = PreferenceStore(sys.argv[1])
i = 0
while True:
    vote = store.add_vote(f"prompt {i}", "x", "y", "a", model_a="m1", model_b="m2")
    print(vote.uid, flush=True)   # acknowledged only after the commit returned
    i += 1
"""


def test_acknowledged_votes_survive_sigkill(tmp_path):
    db = tmp_path / "kill.sqlite"
    PreferenceStore(db)
    proc = subprocess.Popen(
        [sys.executable, "-c", CHILD, str(db)], stdout=subprocess.PIPE, text=True
    )
    acknowledged = [proc.stdout.readline().strip() for _ in range(60)]
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    acknowledged += [line.strip() for line in proc.stdout.read().splitlines() if line.strip()]
    assert proc.returncode == -signal.SIGKILL
    stored = {v.uid for v in PreferenceStore(db).list_votes()}
    assert len(acknowledged) >= 60
    assert set(acknowledged) <= stored
    assert sqlite3.connect(db).execute("PRAGMA integrity_check").fetchone()[0] == "ok"


def test_damaged_playground_database_is_refused_with_one_line(tmp_path):
    path = tmp_path / "v.sqlite"
    store = PreferenceStore(path)
    for i in range(300):
        store.add_vote(f"prompt {i} " + "x" * 500, "a" * 300, "b" * 300, "a")
    store.close()
    sqlite3.connect(path).execute("PRAGMA wal_checkpoint(TRUNCATE)").close()
    data = bytearray(path.read_bytes())
    page = 4096
    data[page:] = b"\xff" * (len(data) - page)  # every page after the first is garbage
    path.write_bytes(bytes(data))
    before = sha256(path)
    with pytest.raises(UserError) as info:
        PreferenceStore(path).list_votes()
    assert "not a usable SQLite database" in str(info.value) and "\n" not in str(info.value)
    assert sha256(path) == before


RACER = """
import sys, time
from llm_playground.finetuning.preferences import PreferenceStore
time.sleep(max(0.0, float(sys.argv[2]) - time.time()))
store = PreferenceStore(sys.argv[1])
for i in range(25):
    store.add_vote(f"p{sys.argv[3]}-{i}", "x", "y", "tie", model_a="m1", model_b="m2")
"""


def test_processes_creating_the_same_new_database_at_once(tmp_path):
    import time

    db = tmp_path / "fresh" / "votes.sqlite"
    start = time.time() + 2.0
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", RACER, str(db), str(start), str(w)],
            stderr=subprocess.PIPE,
            text=True,
        )
        for w in range(4)
    ]
    errors = [p.communicate()[1] for p in procs]
    assert [p.returncode for p in procs] == [0, 0, 0, 0], errors
    store = PreferenceStore(db)
    assert store.count() == 100 and len({v.prompt for v in store.list_votes()}) == 100
    assert store.schema_version() == SCHEMA_VERSION


# --- properties over random vote sequences --------------------------------------------------

vote_spec = st.lists(
    st.tuples(
        st.sampled_from(["m1", "m2", "m3", None]),
        st.sampled_from(["m1", "m2", "m3"]),
        st.sampled_from(["a", "b", "tie", "both-bad"]),
    ),
    max_size=40,
)


@settings(max_examples=60, deadline=None)
@given(vote_spec)
def test_stats_invariants(spec):
    votes = votes_from(spec)
    stats = compute_stats(votes)
    json.dumps(stats, allow_nan=False)
    assert stats["votes"]["total"] == len(spec)
    ratings = stats["ratings"]
    if ratings:  # centred on the base rating, every interval around its estimate
        assert sum(r["rating"] for r in ratings) / len(ratings) == pytest.approx(1000, abs=0.01)
        assert all(r["ci_low"] <= r["rating"] <= r["ci_high"] for r in ratings)
    for p in stats["pairs"]:
        assert p["wins_1"] + p["wins_2"] + p["ties"] + p["both_bad"] == p["n_votes"]
        if p["win_rate_1"] is not None:
            assert p["win_rate_1"] + p["win_rate_2"] == pytest.approx(1.0)


@settings(max_examples=25, deadline=None)
@given(st.lists(st.sampled_from(["a", "b", "tie", "both-bad"]), min_size=1, max_size=15))
def test_export_line_counts_in_every_mode(choices):
    import tempfile
    from pathlib import Path

    with tempfile.TemporaryDirectory() as tmp:
        store = PreferenceStore(Path(tmp) / "v.sqlite")
        for i, c in enumerate(choices):
            store.add_vote(f"p{i}", f"a{i}", f"b{i}", c)
        n_ab = sum(c in "ab" for c in choices)
        n_other = len(choices) - n_ab
        main, side = store.jsonl_text("separate")
        assert len(main.splitlines()) == n_ab and len(side.splitlines()) == n_other
        assert len(store.jsonl_text("label")[0].splitlines()) == len(choices)
        assert len(store.jsonl_text("drop")[0].splitlines()) == n_ab
        for line in main.splitlines():
            record = json.loads(line)
            assert set(record) == {"prompt", "chosen", "rejected"}
            j = int(record["prompt"][1:])
            expected = (f"a{j}", f"b{j}") if choices[j] == "a" else (f"b{j}", f"a{j}")
            assert (record["chosen"], record["rejected"]) == expected
        store.close()


def test_export_is_what_trl_reads_as_standard_preference_data(voted, tmp_path):
    from datasets import load_dataset
    from trl.data_utils import is_conversational, maybe_extract_prompt

    out = tmp_path / "prefs.jsonl"
    voted.export_jsonl(out, ties="drop")
    ds = load_dataset("json", data_files=str(out), split="train")
    assert ds.column_names == ["prompt", "chosen", "rejected"] and ds.num_rows == 3
    for example in ds:
        assert not is_conversational(example)  # the standard (plain text) format
        assert maybe_extract_prompt(example) == example  # explicit prompt already
