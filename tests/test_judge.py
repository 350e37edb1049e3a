"""The judge against a real HTTP server on 127.0.0.1 speaking the chat completions format."""

from __future__ import annotations

import json
import logging
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from llm_playground.core.errors import UserError
from llm_playground.core.events import Started
from llm_playground.evaluation import judge

SECRET = "sk-test-DO-NOT-LEAK-4c1b2f"


def completion(content: str) -> bytes:
    return json.dumps(
        {
            "id": "chatcmpl-1",
            "object": "chat.completion",
            "created": 0,
            "model": "fake",
            "choices": [
                {
                    "index": 0,
                    "finish_reason": "stop",
                    "message": {"role": "assistant", "content": content},
                }
            ],
            "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2},
        }
    ).encode()


def scenario_reply(scenario: str, n: int) -> tuple[int, bytes, dict]:
    """The status, body and headers a scenario answers its ``n``-th request with."""
    if scenario == "slow":
        time.sleep(2.0)
    refused = {"error": {"message": f"Incorrect API key provided: {SECRET}"}}
    replies = {
        "ok": (200, completion('{"score": 8, "reason": "Correct and clear."}')),
        "flaky": (429, b'{"error": "rate limited"}', {"Retry-After": "0"})
        if n == 1
        else (200, completion("Score: 6\nMostly right.")),
        "down": (503, b"busy") if n == 1 else (200, completion("I would give it 9/10, well done.")),
        "slow": (200, completion('{"score": 5, "reason": "late"}')),
        "garbage": (200, b"<html>\x00 upstream exploded " + SECRET.encode()),
        "rambling": (200, completion("What a lovely answer! I enjoyed reading it.")),
        "refused": (401, json.dumps(refused).encode()),
        "pairwise": (200, completion('{"winner": "A", "reason": "more accurate"}')),
    }
    status, payload, *headers = replies.get(scenario, (500, b"unknown scenario"))
    return status, payload, headers[0] if headers else {}


class JudgeServer:
    """A chat completions server; the first path segment picks the behaviour.

    ``/ok/v1``: a JSON verdict; ``/flaky/v1``: 429 (Retry-After 0) then 200;
    ``/down/v1``: 503 then 200; ``/slow/v1``: answers after 2 s; ``/garbage/v1``: not JSON;
    ``/rambling/v1``: a completion with no score; ``/refused/v1``: 401;
    ``/pairwise/v1``: a verdict "A".
    """

    def __init__(self) -> None:
        self.requests: list[dict] = []
        self.counts: dict[str, int] = {}
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args) -> None:  # keep the test output clean
                pass

            def do_POST(self) -> None:  # noqa: N802 (http.server's naming)
                length = int(self.headers.get("Content-Length", 0))
                body = json.loads(self.rfile.read(length) or b"{}")
                scenario = self.path.strip("/").split("/")[0]
                n = server.counts[scenario] = server.counts.get(scenario, 0) + 1
                server.requests.append(
                    {"path": self.path, "auth": self.headers.get("Authorization"), "body": body}
                )
                if not self.path.endswith("/v1/chat/completions"):
                    return self._send(404, b'{"error": "not found"}')
                return self._send(*scenario_reply(scenario, n))

            def _send(self, status: int, payload: bytes, headers: dict | None = None) -> None:
                try:
                    self.send_response(status)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(payload)))
                    for k, v in (headers or {}).items():
                        self.send_header(k, v)
                    self.end_headers()
                    self.wfile.write(payload)
                except (BrokenPipeError, ConnectionResetError):  # the client gave up (timeout test)
                    pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def __enter__(self) -> JudgeServer:
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()

    def url(self, scenario: str) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}/{scenario}/v1"


@pytest.fixture
def server():
    with JudgeServer() as s:
        yield s


def api_judge(server: JudgeServer, scenario: str, **kwargs) -> judge.OpenAICompatibleJudge:
    kwargs.setdefault("sleep", lambda s: None)
    return judge.OpenAICompatibleJudge(server.url(scenario), "fake-judge", SECRET, **kwargs)


PAIR = [("q1", "What is the capital of France?", "Paris is the capital of France.")]


# --- the client against the server ------------------------------------------------------


def test_normal_answer_is_scored_and_the_request_is_a_chat_completion(server):
    result = judge.judge_answers(api_judge(server, "ok"), PAIR)
    item = result.items[0]
    assert (item.id, item.score, item.reason) == ("q1", 8, "Correct and clear.")
    assert result.mean_score == 8 and result.n_scored == 1
    request = server.requests[0]
    assert request["path"] == "/ok/v1/chat/completions"
    assert request["auth"] == f"Bearer {SECRET}"
    assert request["body"]["model"] == "fake-judge"
    roles = [m["role"] for m in request["body"]["messages"]]
    assert roles == ["system", "user"] and "1 to 10" in request["body"]["messages"][0]["content"]
    assert "Paris is the capital" in request["body"]["messages"][1]["content"]


def test_429_then_200_is_retried_honouring_retry_after(server):
    waits: list[float] = []
    result = judge.judge_answers(api_judge(server, "flaky", sleep=waits.append), PAIR)
    assert server.counts["flaky"] == 2
    assert waits == [0.0]  # Retry-After: 0
    assert result.items[0].score == 6


def test_5xx_is_retried_with_exponential_backoff(server):
    waits: list[float] = []
    result = judge.judge_answers(api_judge(server, "down", sleep=waits.append, backoff=0.5), PAIR)
    assert server.counts["down"] == 2 and result.items[0].score == 9
    assert len(waits) == 1 and 0.25 <= waits[0] < 0.75  # backoff x 2^0 x jitter in [0.5, 1.5)


def test_backoff_grows_exponentially_and_is_capped():
    j = judge.OpenAICompatibleJudge(
        "http://127.0.0.1:9/v1", "m", SECRET, backoff=1.0, max_backoff=5.0
    )
    for attempt in range(6):
        delay = j._delay(attempt, None)
        assert min(5.0, 0.5 * 2**attempt) <= delay <= min(5.0, 1.5 * 2**attempt)
    assert j._delay(0, 120.0) == 5.0  # a long Retry-After is capped too


def test_a_timeout_leaves_the_item_unscored_after_retries(server):
    result = judge.judge_answers(api_judge(server, "slow", timeout=0.3, max_retries=1), PAIR)
    item = result.items[0]
    assert item.score is None and "no answer within 0.3 s" in item.error
    assert server.counts["slow"] == 2
    assert result.mean_score is None


def test_garbage_is_unscored_with_the_raw_answer_kept_and_the_key_redacted(server):
    item = judge.judge_answers(api_judge(server, "garbage"), PAIR).items[0]
    assert item.score is None and "not JSON" in item.error
    assert "upstream exploded" in item.raw and len(item.raw) <= 201  # reported, not echoed
    assert SECRET not in item.raw


def test_an_answer_without_a_score_is_unscored_with_raw_kept(server):
    item = judge.judge_answers(api_judge(server, "rambling"), PAIR).items[0]
    assert item.score is None and item.raw == "What a lovely answer! I enjoyed reading it."


def test_401_gives_a_clear_message_without_the_key(server):
    with pytest.raises(UserError, match=r"refused the key \(HTTP 401\)") as info:
        judge.judge_answers(api_judge(server, "refused"), PAIR)
    assert SECRET not in str(info.value)
    assert server.counts["refused"] == 1  # a refused key is not retried


def test_wrong_path_gives_a_base_url_hint(server):
    j = judge.OpenAICompatibleJudge(server.url("ok").removesuffix("/v1"), "m", SECRET)
    with pytest.raises(UserError, match="check the base URL"):
        j.complete([{"role": "user", "content": "hi"}])


def test_missing_key_message(monkeypatch):
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    with pytest.raises(UserError, match="no API key: set OPENAI_API_KEY or type the key"):
        judge.OpenAICompatibleJudge.from_settings("http://127.0.0.1:9/v1", "m", None)
    monkeypatch.setenv("OPENAI_API_KEY", "  ")
    with pytest.raises(UserError, match="no API key"):
        judge.resolve_api_key("")
    monkeypatch.setenv("OPENAI_API_KEY", "sk-from-env")
    assert judge.resolve_api_key(None) == "sk-from-env"
    assert judge.resolve_api_key("sk-typed") == "sk-typed"


def test_bad_base_url():
    with pytest.raises(UserError, match="http:// or https://"):
        judge.OpenAICompatibleJudge("localhost:8000/v1", "m", SECRET)


def test_the_key_never_reaches_logs_repr_or_files(server, caplog, playground_home: Path, tmp_path):
    caplog.set_level(logging.DEBUG)
    for scenario in ("ok", "flaky", "down", "garbage", "rambling"):
        judge.judge_answers(api_judge(server, scenario), PAIR)
    with pytest.raises(UserError):
        judge.judge_answers(api_judge(server, "refused"), PAIR)
    judge.judge_answers(api_judge(server, "slow", timeout=0.2, max_retries=0), PAIR)
    from llm_playground.evaluation.leaderboard import Leaderboard, record_judge

    record_judge(
        Leaderboard(),
        "answers",
        "answers",
        8.0,
        None,
        1,
        "q.jsonl",
        settings={"judge": api_judge(server, "ok").name},
    )
    assert caplog.records, "the client logs its retries"
    assert SECRET not in caplog.text
    assert SECRET not in repr(api_judge(server, "ok"))
    for folder in (playground_home, tmp_path):
        for file in folder.rglob("*"):
            if file.is_file():
                assert SECRET.encode() not in file.read_bytes(), file


# --- parsing -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "raw,score",
    [
        ('{"score": 7, "reason": "ok"}', 7),
        ('Sure!\n```json\n{"score": "9", "reason": "good"}\n```', 9),
        ('{"Score": 10}', 10),
        ("Score: 7\nThe answer is right but terse.", 7),
        ("I give it a score of 4 because it is vague.", 4),
        ("Rating: 3", 3),
        ("7/10 - decent", 7),
        ("Overall 8 out of 10.", 8),
        ('{"score": 11, "reason": "too high"}', None),
        ('{"score": 7.5}', None),
        ("Score: 0", None),
        ("A fine answer.", None),
        ("", None),
    ],
)
def test_parse_judgement(raw, score):
    assert judge.parse_judgement(raw)[0] == score


def test_parse_judgement_keeps_the_reason():
    assert judge.parse_judgement('{"score": 7, "reason": "Right, terse."}') == (7, "Right, terse.")


@pytest.mark.parametrize(
    "raw,winner",
    [
        ('{"winner": "A", "reason": "x"}', "a"),
        ('{"winner": "b"}', "b"),
        ('{"winner": "tie"}', "tie"),
        ("Answer B is better.", "b"),
        ("B", "b"),
        ("They are equally good: a tie.", "tie"),
        ('{"winner": "A" | "B" | "tie", "reason": "..."}', None),
        ("no idea", None),
    ],
)
def test_parse_preference(raw, winner):
    assert judge.parse_preference(raw)[0] == winner


# --- statistics and agreement -------------------------------------------------------------


def test_mean_ci_is_the_t_interval():
    mean, (lo, hi) = judge.mean_ci([1, 2, 3, 4, 5])
    half = 2.776 * (2.5**0.5) / (5**0.5)  # t(0.975, 4) x s / sqrt(n)
    assert mean == 3 and lo == pytest.approx(3 - half) and hi == pytest.approx(3 + half)
    assert judge.mean_ci([7]) == (7, None)
    assert judge.mean_ci([]) == (None, None)
    assert judge.mean_ci([6, 6, 6]) == (6, (6, 6))


class FixedJudge:
    name = "fixed"

    def __init__(self, answers):
        self.answers = list(answers)

    def complete(self, messages, max_tokens=200):
        return self.answers.pop(0)


def test_pairwise_agreement_with_human_votes():
    votes = [
        {
            "prompt": "p1",
            "response_a": "x",
            "response_b": "y",
            "model_a": "m1",
            "model_b": "m2",
            "choice": "a",
        },
        {
            "prompt": "p2",
            "response_a": "x",
            "response_b": "y",
            "model_a": "m1",
            "model_b": "m2",
            "choice": "b",
        },
        {
            "prompt": "p3",
            "response_a": "x",
            "response_b": "y",
            "model_a": "m1",
            "model_b": "m2",
            "choice": "both-bad",
        },
        {
            "prompt": "p4",
            "response_a": "x",
            "response_b": "y",
            "model_a": "m1",
            "model_b": "m2",
            "choice": "a",
        },
    ]
    fixed = FixedJudge(['{"winner": "A"}', '{"winner": "A"}', '{"winner": "tie"}', "unreadable"])
    events = list(judge.judge_pairs(fixed, votes))
    assert isinstance(events[0], Started) and events[0].total == 4
    assert isinstance(events[-1], judge.AgreementDone)
    result = events[-1].agreement
    assert isinstance(result, judge.Agreement)
    assert [e.decision.judge for e in events[1:-1]] == ["a", "a", "tie", None]
    assert [e.step for e in events[1:-1]] == [1, 2, 3, 4]
    assert (result.n_pairs, result.n_decided, result.n_agree) == (4, 3, 2)
    assert result.rate == pytest.approx(2 / 3)


def test_pairwise_through_the_api(server):
    vote = {
        "prompt": "p",
        "response_a": "Paris",
        "response_b": "Rome",
        "model_a": "m1",
        "model_b": "m2",
        "choice": "a",
    }
    result = list(judge.judge_pairs(api_judge(server, "pairwise"), [vote]))[-1].agreement
    assert result.rate == 1.0
    assert "Answer A:\nParis" in server.requests[0]["body"]["messages"][1]["content"]


def test_jsonl_inputs_and_pairing(tmp_path):
    q = tmp_path / "q.jsonl"
    q.write_text('{"id": 1, "question": "Q1"}\n\n{"id": "2", "question": "Q2"}\n')
    a = tmp_path / "a.jsonl"
    a.write_text('{"id": "2", "answer": "A2"}\n')
    pairs = judge.pair_questions(
        judge.read_rows(q, ("id", "question"), "questions"),
        judge.read_rows(a, ("id", "answer"), "answers"),
    )
    assert pairs == [("2", "Q2", "A2")]
    a.write_text('{"id": "3", "answer": "A3"}\n')
    with pytest.raises(UserError, match="answer id '3' has no question"):
        judge.pair_questions(
            judge.read_rows(q, ("id", "question"), "q"), judge.read_rows(a, ("id", "answer"), "a")
        )
    a.write_text("not json\n")
    with pytest.raises(UserError, match="line 1: not valid JSON"):
        judge.read_rows(a, ("id", "answer"), "answers")
    a.write_text('{"id": 1}\n')
    with pytest.raises(UserError, match=r"line 1: missing field\(s\) .answer."):
        judge.read_rows(a, ("id", "answer"), "answers")
    a.write_text("\n")
    with pytest.raises(UserError, match="is empty"):
        judge.read_rows(a, ("id", "answer"), "answers")


# --- the local judge ----------------------------------------------------------------------


def test_local_judge_answers_in_the_rubric_form():
    import torch

    from llm_playground.generation.registry import load_model

    try:
        loaded = load_model(judge.DEFAULT_LOCAL_JUDGE)
    except UserError as exc:
        pytest.skip(f"offline model not installed: {exc}")
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        local = judge.LocalJudge(loaded, max_new_tokens=24)
        raw = local.complete(judge.rubric_messages("What is 2 + 2?", "4"))
        verdict = local.complete(judge.pairwise_messages("What is 2 + 2?", "4", "5"))
    finally:
        torch.set_num_threads(threads)
    assert raw.startswith('{"score":')
    score, _ = judge.parse_judgement(raw)
    assert score is None or 1 <= score <= 10
    assert judge.parse_preference(verdict)[0] in ("a", "b", "tie")


def test_swapping_positions_turns_a_position_bias_into_a_tie():
    votes = [
        {
            "prompt": "p1",
            "response_a": "x",
            "response_b": "y",
            "model_a": "m1",
            "model_b": "m2",
            "choice": "a",
        },
        {
            "prompt": "p2",
            "response_a": "x",
            "response_b": "y",
            "model_a": "m1",
            "model_b": "m2",
            "choice": "b",
        },
    ]
    # Pair 1: "A" both times, i.e. always the first answer shown: a position bias, so a tie.
    # Pair 2: "B", then "A" once swapped: the same answer (y) both times, so b.
    fixed = FixedJudge(['{"winner": "A"}', '{"winner": "A"}', '{"winner": "B"}', '{"winner": "A"}'])
    events = list(judge.judge_pairs(fixed, votes, swap=True))
    decisions = [e.decision for e in events[1:-1]]
    result = events[-1].agreement
    assert [(d.judge, d.consistent) for d in decisions] == [("tie", False), ("b", True)]
    assert "swapped" in decisions[0].raw
    assert (result.n_decided, result.n_agree) == (2, 1)
    assert fixed.answers == []  # four calls: each pair asked in both orders
