"""The leaderboard: stored results, the pivot to one row per model, exports, the shared database."""

from __future__ import annotations

import csv
import io
import json
import sqlite3

import pytest

from llm_playground.core.db import APPLICATION_ID
from llm_playground.core.errors import UserError
from llm_playground.evaluation import leaderboard as lb
from llm_playground.evaluation.metrics import PerplexityResult, bleu_chrf, rouge
from llm_playground.evaluation.runs import Entry, bleu_run, overlap_scores, rouge_run
from llm_playground.finetuning.preferences import PreferenceStore


def ppl_result(token=20.0, word=60.0, bpb=1.1, stopped=False, capped=False) -> PerplexityResult:
    return PerplexityResult(
        token_perplexity=token,
        word_perplexity=word,
        bits_per_byte=bpb,
        n_tokens=100,
        nll_sum=300.0,
        n_words=70,
        n_bytes=400,
        stride=512,
        max_length=1024,
        n_windows=1,
        dtype="float32",
        batch_size=8,
        time_s=1.0,
        capped=capped,
        stopped=stopped,
    )


def test_schema_version_wal_and_the_shared_mark(playground_home):
    board = lb.Leaderboard()
    assert board.path == playground_home / "playground.sqlite"
    with sqlite3.connect(board.path) as con:
        assert con.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        version = con.execute(
            "SELECT value FROM playground_meta WHERE key = 'schema:leaderboard'"
        ).fetchone()[0]
        assert version == str(lb.SCHEMA_VERSION)
        assert con.execute("PRAGMA application_id").fetchone()[0] == APPLICATION_ID


def test_a_leaderboard_file_of_the_previous_layout_is_read_and_kept(tmp_path):
    """Files written before the one database module (eval_meta, schema 1) still open."""
    old = tmp_path / "old.sqlite"
    with sqlite3.connect(old) as con:
        con.execute(f"PRAGMA application_id = {APPLICATION_ID}")
        con.executescript(
            "CREATE TABLE eval_meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);"
            "INSERT INTO eval_meta VALUES ('schema_version', '1');"
            "CREATE TABLE eval_results (id INTEGER PRIMARY KEY AUTOINCREMENT, run_id TEXT NOT "
            "NULL, model TEXT NOT NULL, kind TEXT NOT NULL, metric TEXT NOT NULL, value REAL NOT "
            "NULL, ci_low REAL, ci_high REAL, n INTEGER, dataset TEXT NOT NULL, settings TEXT "
            "NOT NULL, created_at TEXT NOT NULL);"
            "INSERT INTO eval_results (run_id, model, kind, metric, value, dataset, settings, "
            "created_at) VALUES ('r1', 'old-model', 'offline', 'bleu', 12.5, 'ref', '{}', "
            "'2026-01-01T00:00:00+00:00');"
        )
    board = lb.Leaderboard(old)
    assert [(r.model, r.value) for r in board.results()] == [("old-model", 12.5)]
    assert board.benchmarks() == []


def test_newer_schema_and_foreign_files_are_refused(tmp_path):
    board = lb.Leaderboard(tmp_path / "a.sqlite")
    with sqlite3.connect(board.path) as con:
        con.execute("UPDATE playground_meta SET value = '99' WHERE key = 'schema:leaderboard'")
    with pytest.raises(UserError, match="schema 99"):
        lb.Leaderboard(board.path)
    foreign = tmp_path / "other.sqlite"
    with sqlite3.connect(foreign) as con:
        con.execute("CREATE TABLE customers (id INTEGER)")
    before = foreign.read_bytes()
    with pytest.raises(UserError, match="another application"):
        lb.Leaderboard(foreign)
    assert foreign.read_bytes() == before
    text = tmp_path / "notes.sqlite"
    text.write_text("hello")
    with pytest.raises(UserError, match="not a SQLite database"):
        lb.Leaderboard(text)


def test_every_number_is_stored_with_data_settings_and_date(tmp_path):
    board = lb.Leaderboard(tmp_path / "db.sqlite")
    lb.record_perplexity(board, "smollm2-135m-instruct", "offline", ppl_result(), "wikitext-2")
    rows = board.results(model="smollm2-135m-instruct")
    assert {r.metric for r in rows} == {"token_perplexity", "word_perplexity", "bits_per_byte"}
    for r in rows:
        assert r.dataset == "wikitext-2" and r.kind == "offline"
        assert r.settings["stride"] == 512 and r.settings["dtype"] == "float32"
        assert r.created_at[:4].isdigit() and "T" in r.created_at
    assert len({r.run_id for r in rows}) == 1


def test_pivot_latest_run_per_family(tmp_path):
    board = lb.Leaderboard(tmp_path / "db.sqlite")
    lb.record_perplexity(board, "m1", "offline", ppl_result(token=30.0), "wikitext-2")
    lb.record_perplexity(
        board, "m1", "offline", ppl_result(token=25.0, word=70.0), "tinyshakespeare-val"
    )
    b = bleu_chrf(["The cat sat."], [["The cat sat on the mat."]])
    r = rouge(["The cat sat."], ["The cat sat on the mat."])
    lb.record_bleu(board, "m1", "offline", b, "reference set")
    lb.record_rouge(board, "m1", "offline", r, "reference set", n=1)
    lb.record_judge(
        board,
        "m1",
        "offline",
        7.5,
        (6.5, 8.5),
        20,
        "reference set",
        settings={"judge": "gpt-4o-mini @ https://api.openai.com/v1"},
    )
    lb.record_perplexity(board, "m2", "checkpoint", ppl_result(token=90.0), "wikitext-2")
    rows = {row["model"]: row for row in board.leaderboard(human_ratings=[])}
    m1 = rows["m1"]
    assert m1["token_perplexity"] == 25.0 and m1["word_perplexity"] == 70.0
    assert m1["perplexity_data"] == "tinyshakespeare-val"
    assert m1["bleu"] == pytest.approx(b.bleu) and m1["chrf"] == pytest.approx(b.chrf)
    assert m1["rougeL"] == pytest.approx(r["rougeL"]["fmeasure"])
    assert m1["bleu_data"] == m1["rouge_data"] == "reference set"
    assert (m1["judge_score"], m1["judge_ci_low"], m1["judge_ci_high"], m1["judge_n"]) == (
        7.5,
        6.5,
        8.5,
        20,
    )
    assert "gpt-4o-mini" in m1["judge_data"]
    assert rows["m2"]["kind"] == "checkpoint" and rows["m2"]["bleu"] is None
    # Like with like: only perplexities on one data set.
    same = {
        row["model"]: row
        for row in board.leaderboard(perplexity_data="wikitext-2", human_ratings=[])
    }
    assert same["m1"]["token_perplexity"] == 30.0 and same["m1"]["perplexity_data"] == "wikitext-2"


def test_stopped_runs_are_not_recorded_and_capped_runs_say_so(tmp_path):
    board = lb.Leaderboard(tmp_path / "db.sqlite")
    assert (
        lb.record_perplexity(board, "m", "offline", ppl_result(stopped=True), "wikitext-2") is None
    )
    assert board.results() == []
    lb.record_perplexity(board, "m", "offline", ppl_result(capped=True), "wikitext-2")
    assert (
        board.leaderboard(human_ratings=[])[0]["perplexity_data"]
        == "wikitext-2 (first 100 tokens, 400 bytes)"
    )


def test_bad_records_are_user_errors(tmp_path):
    board = lb.Leaderboard(tmp_path / "db.sqlite")
    with pytest.raises(UserError, match="data set"):
        board.record("m", "offline", {"bleu": 1.0}, dataset="")
    with pytest.raises(UserError, match="no metric"):
        board.record("m", "offline", {"bleu": None}, dataset="x")


def test_human_ratings_join_the_rows(tmp_path):
    board = lb.Leaderboard(tmp_path / "db.sqlite")
    lb.record_judge(board, "m1", "offline", 6.0, None, 1, "q.jsonl")
    rows = {
        r["model"]: r
        for r in board.leaderboard(
            human_ratings=[("m1", 1040.0, 1000.0, 1080.0, 12), ("m9", 960.0, 900.0, 1020.0, 12)]
        )
    }
    assert (rows["m1"]["human_rating"], rows["m1"]["human_votes"]) == (1040.0, 12)
    assert rows["m9"]["kind"] == "votes" and rows["m9"]["judge_score"] is None


def test_bleu_and_rouge_record_through_the_one_evaluate_then_record_path(tmp_path):
    """The CLI's eval bleu / eval rouge and the page's scores go through runs.bleu_run and
    runs.rouge_run: scores, then the leaderboard row (or the reason there is none)."""
    db = tmp_path / "db.sqlite"
    hyps, refs = ["The cat sat on the mat today."], ["The cat sat on the mat today."]
    entry = Entry(label="m1", kind="file", dataset="refs.txt", db_path=db)
    bleu, recorded = bleu_run(hyps, [refs], entry)
    assert bleu.bleu == pytest.approx(100.0) and recorded.run_id and not recorded.error
    scores, recorded = rouge_run(hyps, refs, entry)
    assert scores["rouge1"]["fmeasure"] == pytest.approx(1.0) and recorded.run_id
    row = {r["model"]: r for r in lb.Leaderboard(db).leaderboard(human_ratings=[])}["m1"]
    assert row["bleu"] == pytest.approx(100.0) and row["rougeL"] == pytest.approx(1.0)
    assert row["bleu_data"] == row["rouge_data"] == "refs.txt"
    # not asked to record: the scores alone; a refused database: the reason, scores kept
    off = Entry(label="m2", kind="file", dataset="x", record=False, db_path=db)
    *_, skipped = overlap_scores(hyps, [refs], off)
    assert skipped.skipped and "m2" not in {r["model"] for r in lb.Leaderboard(db).leaderboard()}
    foreign = tmp_path / "foreign.sqlite"
    foreign.write_bytes(b"not a database" * 100)
    bleu, refused = bleu_run(
        hyps, [refs], Entry(label="m3", kind="file", dataset="x", db_path=foreign)
    )
    assert bleu.bleu == pytest.approx(100.0) and refused.error and not refused.run_id


def test_human_ratings_from_lab_4_votes_in_the_same_database():
    board = lb.Leaderboard()
    lb.record_judge(board, "m1", "offline", 6.0, None, 1, "q.jsonl")
    store = PreferenceStore(board.path)  # the vote store accepts the shared file
    for choice in ("a", "a", "b", "a"):
        store.add_vote("p", "x", "y", choice, model_a="m1", model_b="m2")
    rows = {r["model"]: r for r in lb.Leaderboard().leaderboard()}
    assert rows["m1"]["human_votes"] == 4 and rows["m2"]["human_votes"] == 4
    assert rows["m1"]["human_rating"] > rows["m2"]["human_rating"]
    assert rows["m1"]["judge_score"] == 6.0


def test_csv_and_json_exports(tmp_path):
    board = lb.Leaderboard(tmp_path / "db.sqlite")
    lb.record_perplexity(board, "m1", "offline", ppl_result(), "wikitext-2")
    table = list(csv.DictReader(io.StringIO(board.to_csv())))
    assert list(table[0]) == list(lb.COLUMNS)
    assert table[0]["model"] == "m1" and float(table[0]["token_perplexity"]) == 20.0
    assert table[0]["bleu"] == ""
    data = json.loads(board.to_json())
    assert (
        data["version"] == lb.SCHEMA_VERSION and data["rows"][0]["perplexity_data"] == "wikitext-2"
    )
