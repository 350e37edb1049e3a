"""`llm-playground serve`: loopback by default, other addresses only with an access code,
and the gate that code puts before every page (AppTest and a real Chromium)."""

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

from llm_playground.cli.serve import check_serving, is_loopback
from llm_playground.core.errors import UserError
from llm_playground.ui.gate import FREE_TRIES, Gatekeeper, Tries, code_matches

ROOT = Path(__file__).resolve().parents[1]
APP = ROOT / "src/llm_playground/ui/app.py"
CODE = "violet-harbour-42"
ENV_CODE = "LLM_PLAYGROUND_ACCESS_CODE"


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _start_serve(tmp_path: Path, *args: str, code: str | None) -> tuple[subprocess.Popen, int]:
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
            urllib.request.urlopen(f"http://127.0.0.1:{port}/_stcore/health", timeout=1)
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
    monkeypatch.setenv(ENV_CODE, "abc")
    with pytest.raises(UserError, match="at least 6 characters"):
        check_serving("0.0.0.0")
    monkeypatch.setenv(ENV_CODE, CODE)
    check_serving("0.0.0.0")


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
    keeper, tries = Gatekeeper(delay_s=0.0), Tries()
    for _ in range(FREE_TRIES - 1):
        assert keeper.check("wrong", CODE, tries) == (False, 0.0)
    admitted, wait = keeper.check("wrong", CODE, tries)
    assert not admitted and wait > 0  # from the third wrong try on, the session must wait
    assert keeper.check(CODE, CODE, tries) == (False, pytest.approx(wait, abs=0.5))  # not compared
    tries.next_allowed = 0.0
    assert keeper.check(CODE, CODE, tries) == (True, 0.0)
    # the global queue: wrong tries from many sessions are answered one at a time
    slow = Gatekeeper(delay_s=0.2)
    import threading

    started = time.perf_counter()
    threads = [threading.Thread(target=slow.check, args=("x", CODE, Tries())) for _ in range(5)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert time.perf_counter() - started >= 0.95


# --- the gate in AppTest ---------------------------------------------------------------------


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
def test_gate_in_chromium(classroom, page):
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


def test_the_judge_and_the_server_share_one_loopback_rule():
    from llm_playground.evaluation import judge_client

    assert judge_client.is_loopback is is_loopback
    assert not is_loopback("localhost.localdomain")  # a name: it may resolve to anything
