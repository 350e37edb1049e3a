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


class Trickler:
    """A loopback server that answers every request one byte at a time, ``gap`` seconds
    apart: the status line and headers (``part="headers"``), or quick headers and then a
    body that never ends (``part="body"``). Each connection stops by itself after
    ``limit`` seconds or when the client hangs up."""

    def __init__(self, part: str, gap: float = 0.1, limit: float = 20.0) -> None:
        import socket

        self.part, self.gap, self.limit = part, gap, limit
        self.connections = 0
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.listener.settimeout(0.2)
        self.stopped = threading.Event()
        threading.Thread(target=self._accept, daemon=True).start()

    @property
    def port(self) -> int:
        return self.listener.getsockname()[1]

    def _accept(self) -> None:
        while not self.stopped.is_set():
            try:
                conn, _ = self.listener.accept()
            except OSError:
                continue
            self.connections += 1
            threading.Thread(target=self._answer, args=(conn,), daemon=True).start()

    def _answer(self, conn) -> None:
        import time

        with conn:
            conn.settimeout(5)
            request = b""
            while b"\r\n\r\n" not in request:  # the headers; the body is not waited for
                data = conn.recv(65536)
                if not data:
                    return
                request += data
            head = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
            if self.part == "body":
                conn.sendall(head + b"Content-Length: 100000\r\n\r\n")
                drip = b"{" + b" " * 99_999
            else:
                drip = head + b"X-Slow: " + b"x" * 10_000 + b"\r\n\r\n"
            started = time.monotonic()
            for i in range(len(drip)):
                if self.stopped.is_set() or time.monotonic() - started > self.limit:
                    return
                try:
                    conn.sendall(drip[i : i + 1])
                except OSError:
                    return  # the client hung up: what the deadline should do
                time.sleep(self.gap)

    def close(self) -> None:
        self.stopped.set()
        self.listener.close()


@pytest.mark.parametrize("part", ["headers", "body"])
def test_a_server_that_trickles_its_answer_is_cut_at_the_deadline(part):
    import time

    server = Trickler(part)
    try:
        # one request: its deadline runs from connect to the last byte
        api = judge.OpenAICompatibleJudge(
            f"http://127.0.0.1:{server.port}/v1", "m", SECRET, timeout=0.5, max_retries=0
        )
        started = time.monotonic()
        with pytest.raises(judge.JudgeCallFailed, match="no answer within 0.5 s"):
            api.complete(judge.rubric_messages("q", "a"))
        assert time.monotonic() - started < 0.5 + 1.0
        assert server.connections == 1
        # with a retry: two attempts, each cut at its own deadline, the call within 2 x 0.5 s
        api = judge.OpenAICompatibleJudge(
            f"http://127.0.0.1:{server.port}/v1",
            "m",
            SECRET,
            timeout=0.5,
            max_retries=1,
            sleep=lambda s: None,
        )
        started = time.monotonic()
        with pytest.raises(judge.JudgeCallFailed, match="after 2 attempt"):
            api.complete(judge.rubric_messages("q", "a"))
        assert time.monotonic() - started < 2 * 0.5 + 1.0
        assert server.connections == 3
    finally:
        server.close()
