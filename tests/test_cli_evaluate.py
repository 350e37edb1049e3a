"""``llm-playground eval ...`` and ``llm-playground leaderboard`` end to end, as real processes."""

from __future__ import annotations

import json
import math

import pytest

from test_judge import SECRET, JudgeServer

ONE_THREAD = {"OMP_NUM_THREADS": "1"}  # a shared 2-core machine runs one thread fastest

REFS = [
    ["The dog bit the man.", "It was not unexpected.", "The man bit him first."],
    ["The dog had bit the man.", "No one was surprised.", "The man had bitten the dog."],
]
SYS = ["The dog bit the man.", "It wasn't surprising.", "The man had just bitten him."]


@pytest.fixture
def files(tmp_path):
    def write(name: str, lines: list[str]) -> str:
        path = tmp_path / name
        path.write_text("\n".join(lines) + "\n")
        return str(path)

    return write


def assert_one_line_error(proc, *needles):
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("llm-playground: error:"), proc.stderr
    assert "Traceback" not in proc.stderr
    for needle in needles:
        assert needle in lines[0]


def test_bleu_known_answer_and_it_reaches_the_leaderboard(cli, files):
    hyp, r1, r2 = files("hyp.txt", SYS), files("ref1.txt", REFS[0]), files("ref2.txt", REFS[1])
    proc = cli("eval", "bleu", "--hyp", hyp, "--ref", r1, "--ref", r2, "--json")
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout)
    assert out["bleu"] == pytest.approx(48.530827, abs=1e-6)
    assert out["signature"] == "nrefs:2|case:mixed|eff:no|tok:13a|smooth:exp|version:2.6.0"
    assert 0 < out["chrf"] < 100
    board = cli("leaderboard", "--json")
    assert board.returncode == 0, board.stderr
    rows = json.loads(board.stdout)["rows"]
    assert rows[0]["model"] == "file:hyp.txt" and rows[0]["bleu"] == pytest.approx(out["bleu"])
    assert rows[0]["bleu_data"] == "ref1.txt, ref2.txt"
    table = cli("leaderboard", "--csv")
    assert table.stdout.splitlines()[0].startswith("model,kind,token_perplexity")


def test_rouge_known_answer(cli, files):
    proc = cli(
        "eval",
        "rouge",
        "--hyp",
        files("h.txt", ["testing one"]),
        "--ref",
        files("r.txt", ["testing one two"]),
        "--json",
        "--no-record",
    )
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout)
    assert set(out) == {"rouge1", "rouge2", "rougeL", "rougeLsum"}
    assert out["rouge2"]["fmeasure"] == pytest.approx(2 / 3)
    assert out["rougeL"]["fmeasure"] == pytest.approx(4 / 5)
    assert set(out["rouge1"]) == {"precision", "recall", "fmeasure"}
    assert json.loads(cli("leaderboard", "--json").stdout)["rows"] == []  # --no-record


def test_bad_inputs_exit_2_with_one_line(cli, files, tmp_path):
    hyp = files("h.txt", SYS)
    assert_one_line_error(
        cli("eval", "bleu", "--hyp", hyp, "--ref", files("short.txt", ["one line"])), "1 lines", "3"
    )
    (tmp_path / "empty.txt").write_text("")
    assert_one_line_error(
        cli("eval", "rouge", "--hyp", str(tmp_path / "empty.txt"), "--ref", hyp), "empty"
    )
    assert_one_line_error(
        cli("eval", "bleu", "--hyp", hyp, "--ref", str(tmp_path / "missing.txt")), "not found"
    )
    assert_one_line_error(
        cli("eval", "perplexity", "--model", "no-such-model-xyz", "--data", "wikitext-2"),
        "no-such-model-xyz",
    )
    assert_one_line_error(
        cli("eval", "perplexity", "--model", "smollm2-135m-instruct", "--data", "no-such-data"),
        "unknown data set",
    )
    assert_one_line_error(
        cli("eval", "perplexity", "--checkpoint", str(tmp_path), "--data", "wikitext-2"),
        "not a model folder",
    )
    usage = cli("eval", "perplexity", "--model", "a", "--checkpoint", "b", "--data", "wikitext-2")
    assert usage.returncode == 2 and "not allowed with" in usage.stderr


def test_perplexity_json(cli):
    proc = cli(
        "eval",
        "perplexity",
        "--model",
        "smollm2-135m-instruct",
        "--data",
        "tinyshakespeare-val",
        "--max-tokens",
        "40",
        "--max-length",
        "24",
        "--stride",
        "12",
        "--dtype",
        "float32",
        "--json",
        env=ONE_THREAD,
    )
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout)
    assert list(out)[:5] == [
        "token_perplexity",
        "word_perplexity",
        "bits_per_byte",
        "n_tokens",
        "nll_sum",
    ]
    assert out["n_tokens"] == 40  # every token, the first after a beginning-of-text token
    assert out["token_perplexity"] == pytest.approx(math.exp(out["nll_sum"] / out["n_tokens"]))
    assert out["bits_per_byte"] == pytest.approx(out["nll_sum"] / math.log(2) / out["n_bytes"])
    rows = json.loads(cli("leaderboard", "--json").stdout)["rows"]
    assert (
        rows[0]["perplexity_data"]
        == f"tinyshakespeare-val (first 40 tokens, {out['n_bytes']} bytes)"
    )
    assert rows[0]["token_perplexity"] == pytest.approx(out["token_perplexity"])


def _judge_files(tmp_path):
    q = tmp_path / "questions.jsonl"
    q.write_text(
        '{"id": "q1", "question": "What is the capital of France?"}\n'
        '{"id": "q2", "question": "What is 2 + 2?"}\n'
    )
    a = tmp_path / "answers.jsonl"
    a.write_text('{"id": "q1", "answer": "Paris."}\n{"id": "q2", "answer": "4"}\n')
    return str(q), str(a)


def test_judge_against_a_local_chat_completions_server(cli, tmp_path, playground_home):
    q, a = _judge_files(tmp_path)
    with JudgeServer() as server:
        proc = cli(
            "-v",
            "eval",
            "judge",
            "--judge-model",
            "fake-judge",
            "--base-url",
            server.url("flaky"),
            "--questions",
            q,
            "--answers",
            a,
            "--json",
            env={"OPENAI_API_KEY": SECRET},
        )
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout)
    assert [(i["id"], i["score"]) for i in out["items"]] == [("q1", 6), ("q2", 6)]  # after a 429
    assert all(set(i) >= {"id", "score", "reason", "raw"} for i in out["items"])
    assert out["mean_score"] == 6
    assert "HTTP 429" in proc.stderr  # logged, with -v
    assert server.requests[0]["auth"] == f"Bearer {SECRET}"
    assert SECRET not in proc.stdout + proc.stderr
    for file in playground_home.rglob("*"):
        if file.is_file():
            assert SECRET.encode() not in file.read_bytes(), file
    rows = json.loads(cli("leaderboard", "--json").stdout)["rows"]
    assert rows[0]["model"] == "answers:answers.jsonl" and rows[0]["judge_score"] == 6


def test_judge_garbage_is_unscored_and_key_problems_exit_2(cli, tmp_path, monkeypatch):
    q, a = _judge_files(tmp_path)
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    with JudgeServer() as server:
        garbage = cli(
            "eval",
            "judge",
            "--judge-model",
            "m",
            "--base-url",
            server.url("rambling"),
            "--questions",
            q,
            "--answers",
            a,
            "--json",
            env={"OPENAI_API_KEY": SECRET},
        )
        refused = cli(
            "eval",
            "judge",
            "--judge-model",
            "m",
            "--base-url",
            server.url("refused"),
            "--questions",
            q,
            "--answers",
            a,
            env={"OPENAI_API_KEY": SECRET},
        )
        missing = cli(
            "eval",
            "judge",
            "--judge-model",
            "m",
            "--base-url",
            server.url("ok"),
            "--questions",
            q,
            "--answers",
            a,
        )
    assert garbage.returncode == 0, garbage.stderr
    out = json.loads(garbage.stdout)
    assert [i["score"] for i in out["items"]] == [None, None] and out["mean_score"] is None
    assert out["items"][0]["raw"] == "What a lovely answer! I enjoyed reading it."
    assert_one_line_error(refused, "refused the key (HTTP 401)")
    assert SECRET not in refused.stderr
    assert_one_line_error(missing, "OPENAI_API_KEY")
    (tmp_path / "bad.jsonl").write_text('{"id": "q9", "answer": "x"}\n')
    assert_one_line_error(
        cli(
            "eval",
            "judge",
            "--judge-model",
            "m",
            "--questions",
            q,
            "--answers",
            str(tmp_path / "bad.jsonl"),
        ),
        "no question",
    )


@pytest.mark.slow
def test_local_judge_without_base_url(cli, tmp_path):
    q, a = _judge_files(tmp_path)
    proc = cli(
        "eval",
        "judge",
        "--judge-model",
        "smollm2-135m-instruct",
        "--questions",
        q,
        "--answers",
        a,
        "--json",
        env=ONE_THREAD,
    )
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout)
    assert len(out["items"]) == 2
    for item in out["items"]:
        assert item["raw"].startswith('{"score":')
        assert item["score"] is None or 1 <= item["score"] <= 10


def test_help_says_results_are_recorded(cli):
    proc = cli("eval", "perplexity", "--help")
    assert proc.returncode == 0 and "recorded in the leaderboard" in " ".join(proc.stdout.split())


def test_every_numeric_flag_is_checked_with_one_line(cli, files, tmp_path):
    q = files("q.jsonl", ['{"id": "1", "question": "q"}'])
    a = files("a.jsonl", ['{"id": "1", "answer": "a"}'])
    judge = ["eval", "judge", "--judge-model", "m", "--base-url", "http://127.0.0.1:9/v1"]
    judge += ["--questions", q, "--answers", a]
    assert_one_line_error(cli(*judge, "--timeout", "-1"), "--timeout")
    assert_one_line_error(cli(*judge, "--retries", "-3"), "--retries")
    ppl = ["eval", "perplexity", "--model", "smollm2-135m-instruct", "--data", "wikitext-2"]
    assert_one_line_error(cli(*ppl, "--stride", "0"), "--stride")
    assert_one_line_error(cli(*ppl, "--max-tokens", "999999999"), "--max-tokens", "2,000,000")
    ref = ["eval", "reference", "--model", "smollm2-135m-instruct"]
    assert_one_line_error(cli(*ref, "--max-new-tokens", "0"), "--max-new-tokens")


@pytest.mark.slow
@pytest.mark.parametrize(
    "flag,value",
    [("--max-length", "1"), ("--max-tokens", "1"), ("--batch-size", "0"), ("--batch-size", "999")],
)
def test_perplexity_numeric_flags(cli, flag, value):
    ppl = ["eval", "perplexity", "--model", "smollm2-135m-instruct", "--data", "wikitext-2"]
    assert_one_line_error(cli(*ppl, flag, value), flag)


def test_a_corrupt_database_keeps_the_score_and_says_so_in_one_line(cli, files, playground_home):
    db = playground_home / "playground.sqlite"
    db.write_bytes(b"SQLite format 3\x00" + b"\x00" * 84 + b"garbage" * 500)
    before = db.read_bytes()
    proc = cli("eval", "bleu", "--hyp", files("h.txt", SYS), "--ref", files("r.txt", REFS[0]))
    assert proc.stdout.startswith("BLEU ")  # the computed score is printed first
    assert_one_line_error(proc, "not recorded")
    assert db.read_bytes() == before  # left as it was
