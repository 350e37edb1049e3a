"""`llm-playground serve`: loopback by default, other addresses only with an access code of
10 characters or more, one line and exit 2 for a bad address or a port in use, and the
gate that code puts before every page with its limiter of wrong tries (AppTest and a real
Chromium). The server guard in front of it has tests/test_server_guard.py."""

from __future__ import annotations

import os
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import psutil
import pytest
from streamlit.testing.v1 import AppTest

from llm_playground.cli.serve import WORDS, check_serving, is_loopback
from llm_playground.core.errors import UserError
from llm_playground.ui import gate
from llm_playground.ui.gate import (
    FREE_TRIES,
    Gatekeeper,
    Tries,
    WrongTryLimiter,
    code_matches,
)

ROOT = Path(__file__).resolve().parents[1]
APP = ROOT / "src/llm_playground/ui/app.py"
CODE = "violet-harbour-42"
ENV_CODE = "LLM_PLAYGROUND_ACCESS_CODE"


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _start_serve(
    tmp_path: Path, *args: str, code: str | None, address: str = "127.0.0.1"
) -> tuple[subprocess.Popen, int]:
    port = _free_port()
    env = {**os.environ, "LLM_PLAYGROUND_HOME": str(tmp_path / "home")}
    env.pop(ENV_CODE, None)
    if code is not None:
        env[ENV_CODE] = code
    log = open(tmp_path / f"serve-{port}.log", "w")  # noqa: SIM115 - closed with the process
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "llm_playground",
            "serve",
            "--port",
            str(port),
            "--no-browser",
            *args,
        ],
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        cwd=tmp_path,  # away from the repository's .streamlit/config.toml: serve alone decides
    )
    deadline = time.time() + 90
    while time.time() < deadline:
        try:
            shown = f"[{address}]" if ":" in address else address
            urllib.request.urlopen(f"http://{shown}:{port}/_stcore/health", timeout=1)
            return proc, port
        except OSError:
            if proc.poll() is not None:
                break
            time.sleep(0.3)
    proc.kill()
    pytest.fail("serve did not start: " + (tmp_path / f"serve-{port}.log").read_text()[-2000:])


def _stop(proc: subprocess.Popen) -> None:
    proc.terminate()
    try:
        proc.wait(10)
    except subprocess.TimeoutExpired:
        proc.kill()


def _listening(proc: subprocess.Popen, port: int) -> set[str]:
    """The addresses the server process (and any child) listens on at ``port``."""
    process = psutil.Process(proc.pid)
    addresses = set()
    for p in [process, *process.children(recursive=True)]:
        for conn in p.net_connections(kind="inet"):
            if conn.status == psutil.CONN_LISTEN and conn.laddr.port == port:
                addresses.add(conn.laddr.ip)
    return addresses


# --- the rules -----------------------------------------------------------------------------


def test_loopback_addresses():
    for host in ("127.0.0.1", "127.3.2.1", "::1", "localhost", "[::1]"):
        assert is_loopback(host), host
    for host in ("0.0.0.0", "::", "192.168.1.10", "example.org", "10.0.0.1"):
        assert not is_loopback(host), host


def test_other_addresses_need_a_code(monkeypatch):
    monkeypatch.delenv(ENV_CODE, raising=False)
    check_serving("127.0.0.1")
    with pytest.raises(UserError, match=ENV_CODE):
        check_serving("0.0.0.0")
    monkeypatch.setenv(ENV_CODE, "abcdefghi")  # nine characters
    with pytest.raises(UserError, match="at least 10 characters.*--new-code"):
        check_serving("0.0.0.0")
    with pytest.raises(UserError, match="as playground.example"):
        check_serving("127.0.0.1", ("playground.example",))  # a reverse proxy lets others in
    monkeypatch.setenv(ENV_CODE, "abcdefghij")
    check_serving("0.0.0.0")
    check_serving("127.0.0.1", ("playground.example",))


def test_a_short_code_is_refused_in_one_line(cli, monkeypatch):
    monkeypatch.setenv(ENV_CODE, "abc123")
    proc = cli("serve", "--host", "0.0.0.0", "--no-browser", timeout=30)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "at least 10 characters" in lines[0]


def test_new_code_prints_four_random_words(cli):
    words = set(WORDS.read_text().split())
    assert len(words) == 2048
    codes = []
    for _ in range(2):
        proc = cli("serve", "--new-code", timeout=30)
        assert proc.returncode == 0, proc.stderr
        code = proc.stdout.strip()
        parts = code.split("-")
        assert len(parts) == 4 and set(parts) <= words and len(code) >= 10
        codes.append(code)
    assert codes[0] != codes[1]  # 2**44 codes: equal twice means no randomness


def test_a_port_in_use_and_a_bad_address_are_one_line_exit_2(cli, monkeypatch):
    import socket

    monkeypatch.delenv(ENV_CODE, raising=False)
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen(1)
        port = busy.getsockname()[1]
        proc = cli("serve", "--port", str(port), "--no-browser", timeout=30)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and f"port {port}" in lines[0] and "in use" in lines[0]
    monkeypatch.setenv(ENV_CODE, CODE)
    for host, says in (
        ("[nope]", "IPv6"),
        ("[::1", "IPv6"),
        ("no-such-host.invalid", "does not resolve"),
        ("192.0.2.1", "cannot listen on 192.0.2.1"),  # not an address of this machine
    ):
        proc = cli("serve", "--host", host, "--no-browser", timeout=30)
        assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr
        lines = proc.stderr.strip().splitlines()
        assert len(lines) == 1 and says in lines[0], lines
    proc = cli("serve", "--public-name", "http://x.example/", "--no-browser", timeout=30)
    assert proc.returncode == 2 and "--public-name" in proc.stderr


def test_serve_without_a_code_on_all_addresses_is_one_line_exit_2(cli, monkeypatch):
    monkeypatch.delenv(ENV_CODE, raising=False)
    for host in ("0.0.0.0", "192.168.1.10"):
        proc = cli("serve", "--host", host, "--no-browser", timeout=30)
        assert proc.returncode == 2
        lines = proc.stderr.strip().splitlines()
        assert len(lines) == 1 and ENV_CODE in lines[0] and "Traceback" not in proc.stderr


def test_code_comparison_and_back_off():
    assert code_matches(CODE, CODE) and code_matches(f"  {CODE} ", CODE)
    assert not code_matches("violet", CODE) and not code_matches("", CODE)
    keeper, tries = Gatekeeper(), Tries()
    for _ in range(FREE_TRIES - 1):
        answer = keeper.check("wrong", CODE, tries)
        assert not answer.admitted and answer.wait_s == 0 and answer.compared
    answer = keeper.check("wrong", CODE, tries)
    assert not answer.admitted and answer.wait_s > 0  # from the third wrong try on, it waits
    early = keeper.check(CODE, CODE, tries)
    assert not early.admitted and not early.compared  # a try made too early is not compared
    tries.next_allowed = 0.0
    assert keeper.check(CODE, CODE, tries).admitted
    assert not keeper.check(12345, CODE, Tries()).admitted  # any value: a wrong try


class FakeClock:
    def __init__(self):
        self.now = 1000.0

    def __call__(self):
        return self.now


def test_the_limiter_throttles_after_50_wrong_tries_in_10_minutes():
    import logging

    from llm_playground.ui.server_guard import server_log

    logged: list[str] = []
    handler = logging.Handler()
    handler.emit = lambda record: logged.append(record.getMessage())
    server_log().addHandler(handler)
    try:
        _throttle_with_a_fake_clock(logged)
    finally:
        server_log().removeHandler(handler)


def _throttle_with_a_fake_clock(logged: list[str]) -> None:
    clock = FakeClock()
    limiter = WrongTryLimiter(clock=clock)
    assert (limiter.limit, limiter.window_s, limiter.spacing_s) == (50, 600.0, 5.0)
    for _ in range(49):
        assert limiter.turn() == 0.0
        limiter.record_wrong()
        clock.now += 1.0
    assert not limiter.throttled() and limiter.turn() == 0.0
    assert not logged
    limiter.record_wrong()  # the 50th within ten minutes
    assert limiter.throttled()
    assert logged == [
        "50 wrong access codes in the last 10 minutes: from now on one try is compared every 5 s"
    ]
    # every try now waits its turn, one every 5 s, however many come at once
    assert [limiter.turn() for _ in range(4)] == [0.0, 5.0, 10.0, 15.0]
    clock.now += 20.0
    assert limiter.turn() == 0.0 and limiter.turn() == 5.0
    # a turn further away than max_wait_s is not given: that try is not compared
    waits = [limiter.turn() for _ in range(10)]
    assert None in waits and max(w for w in waits if w is not None) <= limiter.max_wait_s
    # ten minutes after the first of the 50 the window holds 49: answered at once again
    clock.now = 1000.0 + 600.0
    assert not limiter.throttled() and limiter.turn() == 0.0
    assert len(logged) == 2 and "answered at once" in logged[1]


def test_a_throttled_try_waits_its_turn_or_is_not_checked():
    clock, slept = FakeClock(), []
    limiter = WrongTryLimiter(limit=1, spacing_s=5.0, max_wait_s=6.0, clock=clock)
    keeper = Gatekeeper(limiter=limiter, sleep=slept.append)
    first = keeper.check("wrong", CODE, Tries())
    assert first.compared and first.throttled and not slept  # the limit reached: throttled
    assert keeper.check("wrong", CODE, Tries()).compared and not slept  # its turn is now
    assert keeper.check(CODE, CODE, Tries()).admitted and slept == [5.0]  # waited its turn
    busy = keeper.check(CODE, CODE, Tries())  # the next turn is 10 s away: over max_wait_s
    assert busy.busy and not busy.compared and not busy.admitted and slept == [5.0]


def test_wrong_tries_are_delayed_live():
    """Real time and threads: once throttled, tries from many sessions at once are compared
    one every ``spacing_s``, the right code too; wrong ones before that are not delayed."""
    import threading

    keeper = Gatekeeper(limiter=WrongTryLimiter(limit=3, spacing_s=0.3))
    started = time.perf_counter()
    for _ in range(3):
        keeper.check("wrong", CODE, Tries())
    assert time.perf_counter() - started < 0.2  # not throttled yet: answered at once
    assert keeper.limiter.throttled()
    answers, times = [], []

    def one_try(typed):
        answers.append(keeper.check(typed, CODE, Tries()))
        times.append(time.perf_counter())

    started = time.perf_counter()
    threads = [threading.Thread(target=one_try, args=(t,)) for t in ("x", "y", "z", CODE)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert max(times) - started >= 0.85  # four turns: 0, 0.3, 0.6, 0.9 s
    assert sum(a.admitted for a in answers) == 1 and all(
        a.throttled for a in answers if not a.admitted
    )


# --- the gate in AppTest ---------------------------------------------------------------------


@pytest.fixture(autouse=True)
def fresh_gatekeeper(monkeypatch):
    """Each test its own gatekeeper (AppTest sessions may share a browser id)."""
    monkeypatch.setattr(gate, "KEEPER", Gatekeeper())


def _lab_text(at) -> str:
    return " ".join(m.value for m in at.markdown)


def test_gate_in_apptest(monkeypatch):
    monkeypatch.setenv(ENV_CODE, CODE)
    at = AppTest.from_file(str(APP), default_timeout=60).run()
    assert not at.exception
    box = at.text_input(key="gate_code")
    assert box.proto.type == box.proto.PASSWORD
    assert "Lab 1 · Tokenizer" not in _lab_text(at)
    box.set_value("not-the-code")
    at.button[0].click().run()
    assert any("not the code" in e.value for e in at.error)
    assert "Lab 1 · Tokenizer" not in _lab_text(at)
    at.text_input(key="gate_code").set_value(CODE)
    at.button[0].click().run()
    assert not at.exception
    assert "Lab 1 · Tokenizer" in _lab_text(at)


def _wrong_try(at, typed="not-the-code"):
    at.text_input(key="gate_code").set_value(typed)
    return at.button[0].click().run()


def test_the_gate_reads_a_crafted_value_as_a_wrong_try(monkeypatch):
    """A password field that sends a number (no browser does): Streamlit hands the gate an
    int; it must answer "not the code", not fail with an error page."""
    from streamlit.proto.WidgetStates_pb2 import WidgetState
    from streamlit.testing.v1.element_tree import TextInput

    monkeypatch.setenv(ENV_CODE, CODE)
    at = AppTest.from_file(str(APP), default_timeout=60).run()

    def crafted(self):
        return WidgetState(id=self.id, int_value=12345)

    monkeypatch.setattr(TextInput, "_widget_state", property(crafted))
    at.button[0].click().run()
    assert not at.exception
    assert any("not the code" in e.value for e in at.error)
    assert at.text_input(key="gate_code") is not None


def test_the_gate_survives_a_widget_that_fails_to_read_its_value(monkeypatch):
    """Whatever Streamlit raises while reading the password field, the gate page stays."""
    import streamlit as st

    monkeypatch.setenv(ENV_CODE, CODE)
    at = AppTest.from_file(str(APP), default_timeout=60).run()

    def unreadable(*args, **kwargs):
        raise ValueError("a widget value no browser sends")

    monkeypatch.setattr(st, "text_input", unreadable)
    at.run()
    assert not at.exception and "Lab 1 · Tokenizer" not in _lab_text(at)
    assert any("access code" in m.value for m in at.markdown)
    monkeypatch.undo()
    monkeypatch.setenv(ENV_CODE, CODE)
    monkeypatch.setattr(gate, "KEEPER", Gatekeeper())
    _wrong_try(at.run(), CODE)  # the form is back and works
    assert "Lab 1 · Tokenizer" in _lab_text(at)


def test_the_gate_says_when_wrong_tries_are_throttled_and_delays_them(monkeypatch):
    monkeypatch.setenv(ENV_CODE, CODE)
    monkeypatch.setattr(gate, "KEEPER", Gatekeeper(limiter=WrongTryLimiter(limit=1, spacing_s=1.0)))
    at = AppTest.from_file(str(APP), default_timeout=60).run()
    _wrong_try(at)  # the one wrong try the limit allows: now the server throttles
    assert any("one at a time" in i.value for i in at.info), [i.value for i in at.info]
    _wrong_try(at)  # its turn is now; the next one waits a second for its own
    started = time.perf_counter()
    _wrong_try(at)
    assert time.perf_counter() - started >= 0.8
    assert any("not the code" in e.value for e in at.error) and not at.exception


def test_no_gate_without_a_code(monkeypatch):
    monkeypatch.delenv(ENV_CODE, raising=False)
    at = AppTest.from_file(str(APP), default_timeout=60).run()
    assert not at.text_input and "Lab 1 · Tokenizer" in _lab_text(at)


# --- the real server ----------------------------------------------------------------------------


def test_serve_listens_on_loopback_only_by_default(tmp_path):
    proc, port = _start_serve(tmp_path, code=None)
    try:
        assert _listening(proc, port) == {"127.0.0.1"}
    finally:
        _stop(proc)


@pytest.fixture(scope="module")
def classroom(tmp_path_factory):
    """`serve --host 0.0.0.0` with an access code, for the whole module."""
    tmp_path = tmp_path_factory.mktemp("classroom")
    proc, port = _start_serve(tmp_path, "--host", "0.0.0.0", code=CODE)
    yield proc, port
    _stop(proc)


def test_serve_on_all_addresses_with_a_code(classroom):
    proc, port = classroom
    assert _listening(proc, port) & {"0.0.0.0", "::"}


@pytest.mark.browser
def test_gate_in_chromium(classroom, page, tmp_path):
    from llm_playground.tokenization.bpe import BPETokenizer

    _, port = classroom
    url = f"http://127.0.0.1:{port}"
    for path in ("", "/tokenizer"):
        page.goto(url + path)
        page.get_by_label("Access code").wait_for()
        assert page.locator('[data-testid="stSidebarNav"]').count() == 0
        assert page.get_by_text("Lab 1 · Tokenizer").count() == 0
    box = page.get_by_label("Access code")
    assert box.get_attribute("type") == "password"
    box.fill("not-the-code")
    box.press("Enter")
    page.get_by_text("That is not the code").wait_for()
    assert page.locator('[data-testid="stSidebarNav"]').count() == 0
    assert page.get_by_text("Lab 1 · Tokenizer").count() == 0
    box.fill(CODE)
    box.press("Enter")
    page.locator('[data-testid="stSidebarNav"]').wait_for()
    assert page.get_by_text("Lab 1 · Tokenizer").first.is_visible()
    page.reload()  # the same browser is not asked again
    page.locator('[data-testid="stSidebarNav"]').wait_for()
    assert page.get_by_label("Access code").count() == 0
    # and its new browser session may upload (the server guard knows it typed the code)
    page.goto(url + "/tokenizer")
    page.get_by_text("Load a saved tokenizer").click()
    tokenizer_json = tmp_path / "mine.json"
    BPETokenizer(merges=[(104, 101)], name="mine").save(tokenizer_json)
    page.locator('[data-testid="stFileUploaderDropzoneInput"]').set_input_files(str(tokenizer_json))
    page.get_by_text("mine.json").wait_for()
    uploader = page.locator('[data-testid="stFileUploader"]')
    page.wait_for_timeout(500)
    assert "error" not in uploader.inner_text().lower(), uploader.inner_text()


def test_serve_on_the_ipv6_loopback_in_brackets(tmp_path):
    import socket

    try:
        with socket.socket(socket.AF_INET6) as probe:
            probe.bind(("::1", 0))
    except OSError:
        pytest.skip("this machine has no IPv6 loopback")
    from streamlit_wire import http_request

    proc, port = _start_serve(tmp_path, "--host", "[::1]", code=None, address="::1")
    try:
        assert _listening(proc, port) == {"::1"}
        assert http_request(port, "/", address="::1")[0] == 200  # Host: [::1]:port
        assert http_request(port, "/", address="::1", host=f"localhost:{port}")[0] == 200
        assert http_request(port, "/", address="::1", host=f"rebind.example:{port}")[0] == 403
    finally:
        _stop(proc)


def test_the_judge_and_the_server_share_one_loopback_rule():
    from llm_playground.evaluation import judge_client

    assert judge_client.is_loopback is is_loopback
    assert not is_loopback("localhost.localdomain")  # a name: it may resolve to anything
