"""``llm-playground serve``: start the web app (what ``make run`` calls).

By default the app listens on 127.0.0.1 only, so nobody else on the network reaches it.
Any other address (``--host 0.0.0.0`` for a classroom) needs an access code in
``$LLM_PLAYGROUND_ACCESS_CODE``: every page then opens behind a gate that asks for it
(see :mod:`llm_playground.ui.gate`). Without a code such a server is refused.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from pathlib import Path

from llm_playground.cli import example, int_at_least
from llm_playground.core.errors import UserError
from llm_playground.core.net import is_loopback

ENV_ACCESS_CODE = "LLM_PLAYGROUND_ACCESS_CODE"
DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8501
MIN_CODE_LENGTH = 6
MAX_UPLOAD_MB = 64  # a ceiling for any upload; pages cap their own uploads lower
APP = Path(__file__).resolve().parent.parent / "ui" / "app.py"


def access_code() -> str:
    """The access code from the environment ('' when none is set)."""
    return os.environ.get(ENV_ACCESS_CODE, "").strip()


def check_serving(host: str) -> None:
    """Refuse an address that other machines reach unless an access code is set."""
    if is_loopback(host):
        return
    code = access_code()
    if not code:
        raise UserError(
            f"serving on {host} lets other machines in: set {ENV_ACCESS_CODE} to an access "
            "code first (or serve on 127.0.0.1)"
        )
    if len(code) < MIN_CODE_LENGTH:
        raise UserError(
            f"{ENV_ACCESS_CODE} is too short to guard a server on {host}: use at least "
            f"{MIN_CODE_LENGTH} characters"
        )


def streamlit_command(host: str, port: int) -> list[str]:
    """The ``streamlit run`` command line for the app on ``host:port``."""
    return [
        sys.executable,
        "-m",
        "streamlit",
        "run",
        str(APP),
        "--server.address",
        host,
        "--server.port",
        str(port),
        "--server.headless",
        "true",
        "--browser.gatherUsageStats",
        "false",
        "--server.maxUploadSize",
        str(MAX_UPLOAD_MB),
        # Streamlit collects all garbage after every script run by default; with torch and
        # transformers loaded that takes most of a second, and a job panel polling twice a
        # second then starves the background run of the interpreter (a 4-token generation
        # measured 29 s instead of 0.4 s).
        "--runner.postScriptGC",
        "false",
    ]


def _lan_address() -> str:
    """This machine's address on its network (no packet is sent), or its host name."""
    import socket

    try:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
            probe.connect(("10.255.255.255", 1))
            return probe.getsockname()[0]
    except OSError:
        return socket.gethostname()


def _url(host: str, port: int) -> str:
    """The URL to open (loopback) or to share with the class (any other address)."""
    shown = "localhost" if is_loopback(host) else host
    if shown in ("0.0.0.0", "::"):
        shown = _lan_address()
    if ":" in shown:
        shown = f"[{shown}]"
    return f"http://{shown}:{port}"


def _open_browser_later(url: str, delay: float = 4.0) -> None:
    """Open the app in the desktop's browser once it has had time to start: a small
    detached process does it, so that the server can take this process over. Only where
    there is a display (never a text browser in the terminal)."""
    has_display = (
        sys.platform in ("darwin", "win32")
        or os.environ.get("DISPLAY")
        or os.environ.get("WAYLAND_DISPLAY")
    )
    if not has_display:
        return
    opener = f"import time, webbrowser; time.sleep({delay}); webbrowser.open_new_tab({url!r})"
    try:
        subprocess.Popen(
            [sys.executable, "-c", opener],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
    except OSError:  # opening a browser is only a convenience
        pass


def serve_command(args: argparse.Namespace) -> int:
    host = args.host.strip()
    if not host:
        raise UserError("the host must not be empty")
    if args.port > 65535:
        raise UserError(f"the port must be at most 65535, got {args.port}")
    check_serving(host)
    if not APP.is_file():
        raise UserError(f"the app is missing from this installation ({APP})")
    url = _url(host, args.port)
    if is_loopback(host):
        gate = " (behind the access code)" if access_code() else ""
        print(f"LLM Playground: {url}{gate}", flush=True)
    else:
        print(f"LLM Playground: share {url} and the access code with your class", flush=True)
    command = streamlit_command(host, args.port)
    if args.browser and is_loopback(host):
        _open_browser_later(url)
    if os.name == "posix":
        os.execv(sys.executable, command)  # the server becomes this process (signals, pid)
    try:
        return subprocess.call(command)
    except KeyboardInterrupt:
        return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "serve",
        help="start the web app (loopback only unless an access code is set)",
        description="Start the LLM Playground web app. It listens on 127.0.0.1 unless --host "
        f"says otherwise; any other address needs ${ENV_ACCESS_CODE}, which every visitor "
        "then types once to get in.",
        **example("llm-playground serve --port 8501"),
    )
    p.add_argument(
        "--host",
        default=DEFAULT_HOST,
        metavar="H",
        help="address to listen on (default 127.0.0.1; 0.0.0.0 for a classroom, with a code)",
    )
    p.add_argument(
        "--port",
        type=int_at_least(1),
        default=DEFAULT_PORT,
        metavar="P",
        help=f"port (default {DEFAULT_PORT})",
    )
    p.add_argument(
        "--no-browser",
        dest="browser",
        action="store_false",
        help="do not open a browser tab (one opens only on a desktop, for a loopback address)",
    )
    p.set_defaults(func=serve_command)
