"""The server guard of `llm-playground serve` (ui/server_guard.py): the names it answers
to (DNS rebinding), uploads and messages before the access code, the metrics endpoint, and
no server path or traceback in anything a browser gets before the code. The rules in
process first, then the same attacks against a real server started by serve's command
line on 127.0.0.1 (one for the module)."""

from __future__ import annotations

import asyncio
import concurrent.futures
import os
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
from streamlit.proto.BackMsg_pb2 import BackMsg
from streamlit.proto.ForwardMsg_pb2 import ForwardMsg
from streamlit.proto.WidgetStates_pb2 import WidgetState
from websockets.exceptions import InvalidStatus

from llm_playground.core.net import HostRule, parse_host, public_name
from llm_playground.ui.server_guard import (
    MAX_GATE_MESSAGE_BYTES,
    MAX_GATE_VALUE_CHARS,
    MAX_GATE_WIDGETS,
    Admissions,
    ServerGuard,
    _without_script_folder,
    gate_message,
)
from streamlit_wire import Session, elements, http_request, page_hash, texts, widget_id

ROOT = Path(__file__).resolve().parents[1]
CODE = "violet-harbour-42"
FOREIGN = "attacker-rebind.example"
PUBLIC = "playground.example"
MB = 1024 * 1024


# --- the names a server answers to ----------------------------------------------------------


def test_loopback_server_answers_to_loopback_names_on_its_port_only():
    rule = HostRule("127.0.0.1", 8501)
    for host in ("localhost:8501", "127.0.0.1:8501", "[::1]:8501", "LOCALHOST:8501"):
        assert rule.allows_host(host), host
    for host in (
        f"{FOREIGN}:8501",  # DNS rebinding: a foreign name that resolves to 127.0.0.1
        "localhost:8502",
        "localhost",  # port 80
        "127.0.0.2:8501",
        "localhost.localdomain:8501",
        "user@localhost:8501",
        "localhost:8501/x",
        "",
        None,
    ):
        assert not rule.allows_host(host), host
    assert rule.allows_origin(None)  # a program, not a page
    assert rule.allows_origin("http://localhost:8501")
    for origin in (f"http://{FOREIGN}:8501", "null", "file://", "http://localhost:9999"):
        assert not rule.allows_origin(origin), origin


def test_other_addresses_and_public_names():
    wildcard = HostRule("0.0.0.0", 8501, (PUBLIC,))
    assert wildcard.allows_host("192.168.1.20:8501") and wildcard.allows_host("[fe80::1]:8501")
    assert wildcard.allows_host("localhost:8501") and not wildcard.allows_host(f"{FOREIGN}:8501")
    # a public name on any port (the reverse proxy's), and as the page's origin over https
    assert wildcard.allows_host(PUBLIC) and wildcard.allows_host(f"{PUBLIC.upper()}.:443")
    assert wildcard.allows_origin(f"https://{PUBLIC}")
    assert not wildcard.allows_host(f"sub.{PUBLIC}")
    lan = HostRule("192.168.1.20", 8501)
    assert lan.allows_host("192.168.1.20:8501") and not lan.allows_host("192.168.1.21:8501")
    assert not lan.allows_host("localhost:8501")  # it does not listen there
    ipv6 = HostRule("::1", 8501)
    assert ipv6.allows_host("[::1]:8501") and ipv6.allows_host("[0:0::1]:8501")
    assert parse_host("[::1]:8501") == ("::1", 8501) and parse_host("x:99999") is None


def test_the_running_server_takes_its_rule_from_streamlit_and_serve(monkeypatch):
    from streamlit import config

    from llm_playground.core.net import ENV_PUBLIC_NAMES
    from llm_playground.ui.server_guard import rule_from_streamlit_config

    monkeypatch.setattr(
        config, "get_option", {"server.address": "::1", "server.port": 8600}.__getitem__
    )
    monkeypatch.setenv(ENV_PUBLIC_NAMES, f"{PUBLIC},http://bad/,")
    rule = rule_from_streamlit_config()
    assert rule == HostRule("::1", 8600, (PUBLIC,))  # a malformed name is left out


def test_public_names_are_names_alone():
    assert public_name(" Playground.Example. ") == "playground.example"
    assert public_name("[2001:db8::1]") == "2001:db8::1"
    for bad in ("http://playground.example", "playground.example:443", "a/b", "a b", ""):
        with pytest.raises(ValueError, match="--public-name"):
            public_name(bad)


# --- the middleware, in process ---------------------------------------------------------------


def _scope(kind: str, path: str, host: str = "127.0.0.1:8501", **extra) -> dict:
    headers = [(b"host", host.encode())] + [
        (k.encode(), v.encode()) for k, v in extra.pop("headers", {}).items()
    ]
    return {"type": kind, "path": path, "headers": headers, "query_string": b"", **extra}


def _call(app, scope: dict, body: bytes = b"") -> list[dict]:
    """Run one ASGI request through ``app``; the messages it sent."""
    sent: list[dict] = []

    async def receive():
        if scope["type"] == "websocket":
            return {"type": "websocket.connect"}
        return {"type": "http.request", "body": body, "more_body": False}

    async def send(message):
        sent.append(message)

    # a thread of its own: the browser tests' driver may hold this thread's event loop
    with concurrent.futures.ThreadPoolExecutor(1) as worker:
        worker.submit(asyncio.run, app(scope, receive, send)).result()
    return sent


class _Inner:
    """An app behind the guard that records whether a request reached it."""

    def __init__(self):
        self.calls = 0

    async def __call__(self, scope, receive, send):
        self.calls += 1
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"ok"})


def _guard(inner, **kw) -> ServerGuard:
    kw.setdefault("rule", HostRule("127.0.0.1", 8501))
    kw.setdefault("code_required", True)
    kw.setdefault("admitted", Admissions())
    kw.setdefault("file_cap_mb", 64)
    return ServerGuard(inner, **kw)


def test_foreign_host_or_origin_never_reaches_the_app():
    inner = _Inner()
    guard = _guard(inner)
    refused = _call(guard, _scope("http", "/", f"{FOREIGN}:8501", method="GET"))
    assert refused[0]["status"] == 403 and inner.calls == 0
    closed = _call(guard, _scope("websocket", "/_stcore/stream", f"{FOREIGN}:8501"))
    assert closed == [{"type": "websocket.close", "code": 1008}]  # uvicorn answers 403
    origin = {"origin": f"http://{FOREIGN}:8501"}
    assert _call(guard, _scope("http", "/", headers=origin, method="GET"))[0]["status"] == 403
    assert _call(guard, _scope("http", "/", method="GET"))[0]["status"] == 200
    assert inner.calls == 1


def test_metrics_are_not_served():
    inner = _Inner()
    for path in ("/_stcore/metrics", "/_stcore/metrics/", "//_stcore//metrics"):
        sent = _call(_guard(inner), _scope("http", path, method="GET"))
        assert sent[0]["status"] == 404 and b"cache" not in sent[1]["body"]
    assert inner.calls == 0


def _multipart(data: bytes) -> tuple[bytes, str]:
    boundary = "guardtestboundary"
    head = (
        f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="a.txt"\r\n'
        "Content-Type: text/plain\r\n\r\n"
    ).encode()
    return head + data + f"\r\n--{boundary}--\r\n".encode(), boundary


@pytest.fixture
def upload_app(monkeypatch):
    """Streamlit's own upload route and in-memory file store, behind the guard."""
    from starlette.applications import Starlette
    from streamlit.runtime.memory_uploaded_file_manager import MemoryUploadedFileManager
    from streamlit.web.server.starlette import starlette_routes

    monkeypatch.setattr(starlette_routes, "is_xsrf_enabled", lambda: False)

    class Runtime:
        def is_active_session(self, session_id):
            return True

    store = MemoryUploadedFileManager("/_stcore/upload_file")
    routes = starlette_routes.create_upload_routes(Runtime(), store, None)

    def stored(session_id):
        return sum(len(f.data) for f in store.file_storage.get(session_id, {}).values())

    admitted = Admissions()
    guard = _guard(
        Starlette(routes=routes),
        file_cap_mb=1,
        session_cap_mb=2,
        stored_bytes=stored,
        admitted=admitted,
    )

    def put(session_id: str, file_id: str, size: int, **extra: str) -> tuple[int, bytes]:
        body, boundary = _multipart(b"x" * size)
        headers = {
            "content-type": f"multipart/form-data; boundary={boundary}",
            "content-length": str(len(body)),
            **extra,
        }
        path = f"/_stcore/upload_file/{session_id}/{file_id}"
        sent = _call(guard, _scope("http", path, method="PUT", headers=headers), body)
        return sent[0]["status"], b"".join(m.get("body", b"") for m in sent[1:])

    return put, store, admitted


def test_an_upload_before_the_code_is_refused_and_nothing_is_stored(upload_app):
    put, store, admitted = upload_app
    status, message = put("s1", "f1", 1000)
    assert status == 403 and b"access code" in message
    assert "s1" not in store.file_storage and store._total_bytes == 0
    admitted.admit("s1")
    assert put("s1", "f1", 1000)[0] == 204  # the same upload once the session typed the code
    assert len(store.file_storage["s1"]["f1"].data) == 1000


def test_uploads_are_capped_per_file_and_per_session_with_the_cap_named(upload_app):
    put, store, admitted = upload_app
    admitted.admit("s2")
    status, message = put("s2", "big", 2 * MB)
    assert status == 413 and b"1 MB a file" in message and "s2" not in store.file_storage
    assert put("s2", "a", MB - 4096)[0] == 204
    assert put("s2", "b", MB - 4096)[0] == 204
    status, message = put("s2", "c", MB - 4096)
    assert status == 413 and b"2 MB for one browser session" in message
    assert set(store.file_storage["s2"]) == {"a", "b"}


def test_a_chunked_upload_is_refused_whatever_size_it_states(upload_app):
    """A small Content-Length beside ``Transfer-Encoding: chunked`` (which the server reads
    instead): each such upload reserved a few bytes and stored a whole file, so one session
    went past its cap."""
    put, store, admitted = upload_app
    admitted.admit("s4")
    for file_id in ("a", "b", "c"):
        status, message = put(
            "s4", file_id, MB - 4096, **{"content-length": "100", "transfer-encoding": "chunked"}
        )
        assert status == 411 and b"not be sent in chunks" in message
    assert "s4" not in store.file_storage


def test_an_upload_must_state_its_size():
    inner = _Inner()
    admitted = Admissions()
    admitted.admit("s3")
    guard = _guard(inner, admitted=admitted, stored_bytes=lambda s: 0)
    sent = _call(guard, _scope("http", "/_stcore/upload_file/s3/f", method="PUT"))
    assert sent[0]["status"] == 411 and inner.calls == 0


def _rerun(*widgets: WidgetState) -> bytes:
    msg = BackMsg()
    msg.rerun_script.widget_states.widgets.extend(widgets)
    return msg.SerializeToString()


def test_messages_before_the_code_carry_only_what_the_gate_has():
    clear = BackMsg(clear_cache=True).SerializeToString()
    assert gate_message(clear, admitted=False) is None
    assert gate_message(clear, admitted=True) is None  # nobody clears everyone's caches
    git = BackMsg(load_git_info=True).SerializeToString()
    assert gate_message(git, admitted=False) is None and gate_message(git, admitted=True) == git
    code = WidgetState(id="code", string_value="a guess")
    press = WidgetState(id="enter", trigger_value=True)
    crafted = [
        WidgetState(id="j", json_value="{not json"),
        WidgetState(id="i", int_value=7),
        WidgetState(id="long", string_value="x" * (MAX_GATE_VALUE_CHARS + 1)),
    ]
    plain = _rerun(code, press)
    assert gate_message(plain, admitted=False) == plain
    kept = BackMsg()
    kept.ParseFromString(gate_message(_rerun(code, *crafted, press), admitted=False))
    assert [w.id for w in kept.rerun_script.widget_states.widgets] == ["code", "enter"]
    everything = _rerun(code, *crafted, press)
    assert gate_message(everything, admitted=True) == everything


def test_a_large_message_before_the_code_keeps_only_what_the_gate_needs():
    """Streamlit keeps a run's page address (``context_info``) for the life of a session:
    20 MB addresses from five sessions grew the server by 230 MiB before anyone typed the
    code. Before the code a message over the cap keeps only the gate's widget values (the
    gate still answers), a run keeps few widgets, and what cannot be made small is dropped."""
    big = BackMsg()
    big.rerun_script.context_info.url = "x" * (MAX_GATE_MESSAGE_BYTES + 1)
    big.rerun_script.query_string = "q=" + "x" * MAX_GATE_MESSAGE_BYTES
    big.rerun_script.cached_message_hashes.extend(f"h{i}" for i in range(20_000))
    big.rerun_script.widget_states.widgets.append(WidgetState(id="code", string_value="a"))
    data = big.SerializeToString()
    assert gate_message(data, admitted=True) == data  # after the code, Streamlit's own cap
    small = gate_message(data, admitted=False)
    assert small is not None and len(small) < 100
    kept = BackMsg()
    kept.ParseFromString(small)
    assert not kept.rerun_script.HasField("context_info") and not kept.rerun_script.query_string
    assert [w.string_value for w in kept.rerun_script.widget_states.widgets] == ["a"]
    many = _rerun(*(WidgetState(id=f"w{i}", string_value="z") for i in range(5000)))
    kept.ParseFromString(gate_message(many, admitted=False))
    assert len(kept.rerun_script.widget_states.widgets) == MAX_GATE_WIDGETS
    long_id = _rerun(WidgetState(id="i" * (MAX_GATE_MESSAGE_BYTES + 1), string_value="a"))
    assert gate_message(long_id, admitted=False) is None
    beat = BackMsg(app_heartbeat=True).SerializeToString() + b"\x9a\x06\x80\x80\x04" + b"u" * 65536
    assert gate_message(beat, admitted=False) is None  # a keep-alive padded with unknown bytes


def test_new_sessions_name_the_script_without_its_folder():
    msg = ForwardMsg()
    msg.new_session.main_script_path = str(ROOT / "src/llm_playground/ui/app.py")
    msg.new_session.initialize.session_id = "abc"
    data, session_id = _without_script_folder(msg.SerializeToString())
    assert session_id == "abc" and str(ROOT).encode() not in data and b"app.py" in data


# --- a real server ------------------------------------------------------------------------------


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """`serve --public-name playground.example` on 127.0.0.1 with an access code (and
    Streamlit's agent API asked for in the environment, which serve keeps off)."""
    tmp_path = tmp_path_factory.mktemp("guarded")
    port = _free_port()
    env = {
        **os.environ,
        "LLM_PLAYGROUND_HOME": str(tmp_path / "home"),
        "LLM_PLAYGROUND_ACCESS_CODE": CODE,
        "STREAMLIT_SERVER_ENABLE_AGENT_API": "true",
    }
    log_path = tmp_path / "serve.log"
    with open(log_path, "w") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "llm_playground", "serve", "--port", str(port)]
            + ["--no-browser", "--public-name", PUBLIC],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            cwd=tmp_path,
        )
    try:
        deadline = time.time() + 90
        while True:
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{port}/_stcore/health", timeout=1)
                break
            except OSError:
                if proc.poll() is not None or time.time() > deadline:
                    pytest.fail("serve did not start: " + log_path.read_text()[-2000:])
                time.sleep(0.2)
        yield port, log_path
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()


def _gate_session(port: int, **kw) -> tuple[Session, str, str]:
    session = Session(port, **kw)
    page = session.run()
    assert "Type the access code" in texts(page)
    assert not [m for m in page if m.WhichOneof("type") == "navigation"]  # no lab is sent
    return session, widget_id(page, "text_input"), widget_id(page, "button")


def test_a_foreign_host_gets_403_for_a_page_and_a_websocket(server):
    port, log_path = server
    for host in (f"localhost:{port}", f"127.0.0.1:{port}", f"[::1]:{port}"):
        assert http_request(port, "/", host=host)[0] == 200, host
    assert http_request(port, "/", host=f"{FOREIGN}:{port}")[0] == 403
    assert http_request(port, "/_stcore/health", host=f"{FOREIGN}:{port}")[0] == 403
    for host, origin in (
        (f"{FOREIGN}:{port}", f"http://{FOREIGN}:{port}"),  # the audit's rebinding page
        (f"127.0.0.1:{port}", f"http://{FOREIGN}:{port}"),  # a foreign page, our Host
    ):
        with pytest.raises(InvalidStatus) as refused:
            Session(port, host=host, origin=origin)
        assert refused.value.response.status_code == 403
    session, _, _ = _gate_session(port, origin=f"http://localhost:{port}")
    session.close()
    assert FOREIGN in log_path.read_text()  # refusals are logged


def test_no_other_site_may_frame_the_app(server):
    """A page of another site could show the app in a frame (its Host and Origin are then
    the app's own) and lay itself over its buttons: every answer now forbids that."""
    port, _ = server
    for path in ("/", "/tokenizer", "/_stcore/health", "/static/index.html"):
        _, _, headers = http_request(port, path)
        assert headers.get("x-frame-options") == "SAMEORIGIN", path
        assert headers.get("content-security-policy") == "frame-ancestors 'self'", path


def test_a_public_name_is_answered(server):
    port, _ = server
    assert http_request(port, "/", host=PUBLIC)[0] == 200
    assert http_request(port, "/", host=f"{PUBLIC}:443")[0] == 200
    session, _, _ = _gate_session(port, host=PUBLIC, origin=f"https://{PUBLIC}")
    session.close()


def test_the_app_cannot_be_driven_over_plain_http(server):
    """Streamlit's agent API runs the script from an HTTP request, past the guard's checks of
    WebSocket messages (it served the gate's form when the environment turned it on)."""
    port, _ = server
    for path in ("/_stcore/agent/interact", "/_stcore/agent/mcp"):
        status, body, _ = http_request(
            port, path, method="POST", body=b"{}", headers={"Content-Type": "application/json"}
        )
        assert status in (400, 403) and b"not_available" in body and b"gate_code" not in body


def test_metrics_are_refused_before_the_code(server):
    port, _ = server
    status, body, _ = http_request(port, "/_stcore/metrics")
    assert status == 404 and b"cache" not in body.lower()


def _xsrf_headers(port: int) -> dict[str, str]:
    """The XSRF cookie and header a page of this server sends with an upload."""
    _, _, headers = http_request(port, "/_stcore/health")  # sets the XSRF cookie
    xsrf = headers["set-cookie"].split("_streamlit_xsrf=")[1].split(";")[0]
    return {"Cookie": f"_streamlit_xsrf={xsrf}", "X-Xsrftoken": xsrf}


def test_an_upload_before_the_code_is_refused_by_the_server(server):
    """The audit's upload: a valid session id and XSRF token, no code typed."""
    port, _ = server
    session, _, _ = _gate_session(port)
    try:
        session_id = next(
            m.new_session.initialize.session_id
            for m in map(_parsed, session.raw)
            if m.WhichOneof("type") == "new_session"
        )
        body, boundary = _multipart(b"x" * MB)
        status, message, _ = http_request(
            port,
            f"/_stcore/upload_file/{session_id}/f1",
            method="PUT",
            body=body,
            headers={
                "Content-Type": f"multipart/form-data; boundary={boundary}",
                **_xsrf_headers(port),
            },
        )
        assert status == 403 and b"access code" in message
    finally:
        session.close()


def _parsed(data: bytes) -> ForwardMsg:
    msg = ForwardMsg()
    msg.ParseFromString(data)
    return msg


def test_crafted_gate_values_give_no_error_page_and_nothing_leaks(server):
    port, _ = server
    session, code_id, enter_id = _gate_session(port)
    try:
        for crafted in (
            WidgetState(id=code_id, int_value=5),  # a password field sending a number
            WidgetState(id=code_id, json_value="{not json"),
            WidgetState(id=code_id, string_value="x" * 100_000),
        ):
            page = session.run([crafted, WidgetState(id=enter_id, trigger_value=True)])
            kinds = [e.WhichOneof("type") for e in elements(page)]
            assert "exception" not in kinds and "text_input" in kinds, kinds
            assert "That is not the code" in texts(page) or "wait" in texts(page)
        session.send_raw(BackMsg(clear_cache=True))  # dropped: nothing happens
        session.send_raw(BackMsg(load_git_info=True))
        assert "text_input" in [e.WhichOneof("type") for e in elements(session.run())]
        answers = [b"".join(session.raw)]
    finally:
        session.close()
    for path in (
        "/",
        "/tokenizer",
        "/_stcore/host-config",
        "/_stcore/health",
        "/_stcore/agent/openapi.json",
        "/nowhere",
    ):
        answers.append(http_request(port, path)[1])
    for answer in answers:
        for leak in (str(ROOT).encode(), b"site-packages", b"Traceback", b"/usr/lib/python"):
            assert leak not in answer, leak


def _server_memory_mib(port: int) -> float:
    """The resident memory of the server listening on ``port``."""
    import psutil

    for connection in psutil.net_connections(kind="inet"):
        if connection.laddr.port == port and connection.status == psutil.CONN_LISTEN:
            return psutil.Process(connection.pid).memory_info().rss / MB
    raise AssertionError(f"no server on port {port}")


def test_large_messages_before_the_code_store_nothing(server):
    """The memory attack live: sessions that send an 8 MB page address before the code and
    hang up. The gate still answers each, and the server keeps none of the addresses
    (before, each one stayed after its session had gone: 72 MiB for these six)."""
    port, _ = server
    warm, _, _ = _gate_session(port)
    warm.close()
    before = _server_memory_mib(port)
    for _ in range(6):
        session, code_id, enter_id = _gate_session(port)
        try:
            big = BackMsg()
            big.rerun_script.context_info.url = "x" * (8 * MB)
            big.rerun_script.widget_states.widgets.extend(
                [
                    WidgetState(id=code_id, string_value="a wrong guess"),
                    WidgetState(id=enter_id, trigger_value=True),
                ]
            )
            session.send_raw(big)
            assert "not the code" in texts(session.until_finished())
        finally:
            session.close()
    time.sleep(0.5)  # the server lets go of each connection
    grown = _server_memory_mib(port) - before
    assert grown < 40, f"the server grew by {grown:.0f} MiB for 48 MB sent before the code"


def test_the_code_opens_the_labs_uploads_and_errors_stay_in_the_log(server):
    port, log_path = server
    session, code_id, enter_id = _gate_session(port)
    try:
        page = session.run(
            [
                WidgetState(id=code_id, string_value=CODE),
                WidgetState(id=enter_id, trigger_value=True),
            ]
        )
        navigation = [m.navigation for m in page if m.WhichOneof("type") == "navigation"]
        assert "Lab 1 · Tokenizer" in [p.page_name for p in navigation[-1].app_pages]
        session_id = next(
            m.new_session.initialize.session_id
            for m in map(_parsed, session.raw)
            if m.WhichOneof("type") == "new_session"
        )
        body, boundary = _multipart(b"x" * 1000)
        status, message, _ = http_request(
            port,
            f"/_stcore/upload_file/{session_id}/f1",
            method="PUT",
            body=body,
            headers={
                "Content-Type": f"multipart/form-data; boundary={boundary}",
                **_xsrf_headers(port),
            },
        )
        assert status == 204, message
        # a page that fails (a crafted value Streamlit itself cannot read) says so briefly;
        # the traceback goes to the server's log only
        lab1 = page_hash(page, "Lab 1 · Tokenizer")
        tokenizer = session.run(page=lab1)
        example = widget_id(tokenizer, "selectbox")
        failed = session.run([WidgetState(id=example, json_value="{not json")], page=lab1)
        assert [e.WhichOneof("type") for e in elements(failed)] == ["alert"]
        assert "Something went wrong on the server" in texts(failed)
        for leak in (str(ROOT).encode(), b"site-packages", b"Traceback", b"JSONDecodeError"):
            assert leak not in b"".join(session.raw), leak
        assert "JSONDecodeError" in log_path.read_text()
    finally:
        session.close()
