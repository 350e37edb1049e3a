"""The judge's key stays home: real local HTTP servers, no mocks of what is checked."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from llm_playground.core.errors import UserError
from llm_playground.evaluation import judge

SECRET = "sk-test-stays-home-91f0"


class Recorder:
    """An HTTP server that records each request's headers and answers with ``reply(path)``."""

    def __init__(self, reply) -> None:
        self.seen: list[dict] = []
        recorder = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args) -> None:
                pass

            def _any(self) -> None:
                length = int(self.headers.get("Content-Length", 0) or 0)
                self.rfile.read(length)
                recorder.seen.append({"path": self.path, "auth": self.headers.get("Authorization")})
                status, headers, body = reply(self.path)
                self.send_response(status)
                for k, v in headers.items():
                    self.send_header(k, v)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            do_POST = do_GET = _any  # noqa: N815 (http.server's naming)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    @property
    def port(self) -> int:
        return self.httpd.server_address[1]

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def servers():
    made: list[Recorder] = []

    def make(reply) -> Recorder:
        made.append(Recorder(reply))
        return made[-1]

    yield make
    for s in made:
        s.close()


def ok_completion(path):
    body = {"choices": [{"message": {"content": '{"score": 7, "reason": "fine"}'}}]}
    return 200, {"Content-Type": "application/json"}, json.dumps(body).encode()


def test_a_redirect_to_another_port_never_carries_the_key(servers):
    elsewhere = servers(ok_completion)
    redirector = servers(
        lambda path: (
            302,
            {"Location": f"http://127.0.0.1:{elsewhere.port}/v1/chat/completions"},
            b"",
        )
    )
    api = judge.OpenAICompatibleJudge(
        f"http://127.0.0.1:{redirector.port}/v1", "m", SECRET, max_retries=0
    )
    with pytest.raises(UserError, match="redirect") as info:
        api.complete(judge.rubric_messages("q", "a"))
    assert SECRET not in str(info.value)
    assert redirector.seen and redirector.seen[0]["auth"] == f"Bearer {SECRET}"
    assert all(r["auth"] is None for r in elsewhere.seen)  # never reached with the key
    assert elsewhere.seen == []


def test_remote_hosts_need_https_and_loopback_may_use_http():
    with pytest.raises(UserError, match="https"):
        judge.OpenAICompatibleJudge("http://example.com/v1", "m", SECRET)
    with pytest.raises(UserError, match="user name or password"):
        judge.OpenAICompatibleJudge("https://me:pw@example.com/v1", "m", SECRET)
    for url in ("http://127.0.0.1:8000/v1", "http://localhost:11434/v1", "http://[::1]:8/v1"):
        judge.OpenAICompatibleJudge(url, "m", SECRET)
    judge.OpenAICompatibleJudge("https://api.example.com/v1", "m", SECRET)


def test_the_servers_key_goes_only_to_the_servers_base_url(monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", SECRET)
    monkeypatch.setenv("OPENAI_BASE_URL", "http://127.0.0.1:9/v1")
    with pytest.raises(UserError, match="needs its own API key"):
        judge.page_judge("https://attacker.example/v1", "m", "")
    assert judge.page_judge("", "m", "").api_key == SECRET  # the configured URL
    assert judge.page_judge("http://127.0.0.1:9/v1/", "m", None).api_key == SECRET
    typed = judge.page_judge("https://other.example/v1", "m", "sk-typed")
    assert typed.api_key == "sk-typed"
    monkeypatch.delenv("OPENAI_BASE_URL")
    with pytest.raises(UserError, match="needs its own API key"):
        judge.page_judge("http://127.0.0.1:9/v1", "m", "")  # the server's URL is OpenAI's


def test_the_leaderboard_name_holds_the_host_only():
    api = judge.OpenAICompatibleJudge("https://api.example.com:8443/v1?token=abc", "m", SECRET)
    assert api.name == "m @ api.example.com:8443"
    assert "token" not in api.name and SECRET not in repr(api)


def test_large_and_non_json_answers_are_bounded(servers):
    big = servers(lambda path: (200, {}, b"x" * (judge.MAX_RESPONSE_BYTES + 10)))
    api = judge.OpenAICompatibleJudge(f"http://127.0.0.1:{big.port}/v1", "m", SECRET)
    with pytest.raises(judge.JudgeCallFailed, match="larger than"):
        api.complete(judge.rubric_messages("q", "a"))
    html = servers(lambda path: (200, {}, b"<html>" + b"y" * 5000 + b"</html>"))
    api = judge.OpenAICompatibleJudge(f"http://127.0.0.1:{html.port}/v1", "m", SECRET)
    with pytest.raises(judge.JudgeCallFailed, match="not JSON") as info:
        api.complete(judge.rubric_messages("q", "a"))
    assert len(info.value.raw) <= 201


@pytest.mark.parametrize(
    "timeout,retries,message",
    [(-1, 1, "timeout"), (0, 1, "timeout"), (float("nan"), 1, "timeout"), (5, -3, "retries")],
)
def test_call_settings_are_validated(timeout, retries, message):
    with pytest.raises(UserError, match=message):
        judge.OpenAICompatibleJudge(
            "http://127.0.0.1:9/v1", "m", SECRET, timeout=timeout, max_retries=retries
        )
