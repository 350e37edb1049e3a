"""Shared fixtures. Every test runs with its own playground home, so nothing a test
writes reaches the user's folder; installed assets (the cache) are shared."""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(autouse=True)
def playground_home(tmp_path_factory, monkeypatch) -> Path:
    home = tmp_path_factory.mktemp("home")
    monkeypatch.setenv("LLM_PLAYGROUND_HOME", str(home))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("TRANSFORMERS_OFFLINE", "1")
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    return home


#: Environment variables read when torch or transformers load: a call that sets one of
#: these runs in a fresh interpreter rather than in a child of the preloaded one.
_IMPORT_TIME_ENV = ("OMP_", "MKL_", "HF_", "TRANSFORMERS_", "PYTORCH_", "TORCH_")


class _Zygote:
    """``tests/cli_zygote.py`` running for the session: one forked child per CLI call."""

    def __init__(self) -> None:
        self.process: subprocess.Popen | None = None

    def start(self) -> subprocess.Popen:
        if self.process is None or self.process.poll() is not None:
            self.process = subprocess.Popen(
                [sys.executable, str(ROOT / "tests" / "cli_zygote.py")],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                text=True,
                env={**os.environ, "LLM_PLAYGROUND_HOME": "/nonexistent-until-a-call"},
            )
        return self.process

    def run(self, args, input, env, timeout) -> subprocess.CompletedProcess:
        import json
        import select
        import signal
        import tempfile

        process = self.start()
        with tempfile.TemporaryDirectory() as folder:
            files = {name: Path(folder) / name for name in ("stdin", "stdout", "stderr")}
            data = input if input is not None else ""
            if isinstance(data, bytes):
                files["stdin"].write_bytes(data)
            else:
                files["stdin"].write_text(data, encoding="utf-8")
            files["stdout"].touch()
            files["stderr"].touch()
            request = {
                "args": list(args),
                "env": env,
                "cwd": os.getcwd(),
                **{name: str(path) for name, path in files.items()},
            }
            process.stdin.write(json.dumps(request) + "\n")
            process.stdin.flush()
            started = process.stdout.readline()
            if not started:
                raise RuntimeError("the CLI zygote (tests/cli_zygote.py) has died; see stderr")
            pid = json.loads(started)["pid"]
            ready, _, _ = select.select([process.stdout], [], [], timeout)
            if not ready:
                os.kill(pid, signal.SIGKILL)
                process.stdout.readline()
                raise subprocess.TimeoutExpired(args, timeout)
            status = json.loads(process.stdout.readline())["status"]
            binary = isinstance(input, bytes)
            read = (lambda p: p.read_bytes()) if binary else (lambda p: p.read_text("utf-8"))
            return subprocess.CompletedProcess(
                ["llm-playground", *args], status, read(files["stdout"]), read(files["stderr"])
            )

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.stdin.close()
            self.process.wait(timeout=30)


_ZYGOTE = _Zygote()


@pytest.fixture(scope="session", autouse=True)
def _stop_the_cli_zygote():
    yield
    _ZYGOTE.stop()


def run_cli(
    *args: str, input: str | bytes | None = None, env: dict | None = None, timeout: float = 600
) -> subprocess.CompletedProcess:
    """Run ``llm-playground ARGS`` as a real process of its own: a child forked from a
    process that has already imported torch and transformers (see ``cli_zygote.py``), or
    a fresh interpreter when ``env`` sets a variable those libraries read on import."""
    full_env = {**os.environ, **(env or {})}
    if any(key.startswith(_IMPORT_TIME_ENV) for key in (env or {})):
        text = not isinstance(input, bytes)
        return subprocess.run(
            [sys.executable, "-m", "llm_playground", *args],
            input=input,
            capture_output=True,
            text=text,
            env=full_env,
            timeout=timeout,
        )
    return _ZYGOTE.run(args, input, full_env, timeout)


@pytest.fixture
def cli():
    return run_cli


# --- the running app and a real browser -------------------------------------------------

CHROMIUM = "/usr/bin/chromium"
ARTIFACTS = ROOT / "test-artifacts"


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def running_app(home: Path, extra_env: dict[str, str] | None = None, start_timeout: float = 90):
    """Start the real Streamlit app on a free port with ``home`` as its playground home;
    yield its URL, stop it on exit."""
    import time
    import urllib.request

    port = _free_port()
    env = {
        **os.environ,
        "LLM_PLAYGROUND_HOME": str(home),
        "HF_HUB_OFFLINE": "1",
        "TRANSFORMERS_OFFLINE": "1",
        "HF_DATASETS_OFFLINE": "1",
        **(extra_env or {}),
    }
    log = open(home / "streamlit.log", "w")
    from llm_playground.cli.serve import streamlit_command

    proc = subprocess.Popen(
        # the command line `llm-playground serve` runs, with no file watcher
        [*streamlit_command("127.0.0.1", port), "--server.fileWatcherType", "none"],
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.time() + start_timeout
    while time.time() < deadline:
        try:
            urllib.request.urlopen(url + "/_stcore/health", timeout=1)
            break
        except OSError:
            if proc.poll() is not None:
                break
            time.sleep(0.3)
    else:
        proc.kill()
        pytest.fail("the app did not start: " + (home / "streamlit.log").read_text()[-2000:])
    try:
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
        log.close()


@pytest.fixture(scope="session")
def app_home(tmp_path_factory) -> Path:
    """The playground home of the session's app (its database, runs and uploads)."""
    return tmp_path_factory.mktemp("app-home")


@pytest.fixture(scope="session")
def app_url(app_home):
    """The real Streamlit app on a free port for the whole session."""
    with running_app(app_home, start_timeout=60) as url:
        yield url


@pytest.fixture(scope="session")
def browser():
    """Debian's headless Chromium driven by Playwright (no browser download)."""
    if not Path(CHROMIUM).exists():
        pytest.skip("chromium is not installed (make test installs it)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(
            executable_path=CHROMIUM,
            args=[
                "--no-sandbox",
                "--disable-gpu",
                "--disable-quic",
                "--no-first-run",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
            ],
        )
        yield b
        b.close()


@pytest.fixture
def page(browser, request):
    """A fresh browser tab; a screenshot of it is kept in test-artifacts/ after the test."""
    context = browser.new_context(viewport={"width": 1400, "height": 1000})
    tab = context.new_page()
    tab.set_default_timeout(30_000)
    yield tab
    ARTIFACTS.mkdir(exist_ok=True)
    try:
        tab.screenshot(path=str(ARTIFACTS / f"{request.node.name}.png"), full_page=True)
    finally:
        context.close()
