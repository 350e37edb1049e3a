"""``llm-playground serve``: start the web app (what ``make run`` calls).

By default the app listens on 127.0.0.1 only, so nobody else on the network reaches it.
Any other address (``--host 0.0.0.0`` for a classroom) needs an access code of at least
:data:`MIN_CODE_LENGTH` characters in ``$LLM_PLAYGROUND_ACCESS_CODE`` (``--new-code``
prints a random one): every page then opens behind a gate that asks for it (see
:mod:`llm_playground.ui.gate`). Without a code such a server is refused.

The app runs through :mod:`llm_playground.ui.app_server`, so that the server guard
(:mod:`llm_playground.ui.server_guard`) answers only to this server's names (loopback
names, the ``--host`` address, and each ``--public-name``), refuses uploads before the
code, and keeps error details and server paths out of the pages.
"""

from __future__ import annotations

import argparse
import errno
import ipaddress
import os
import secrets
import socket
import subprocess
import sys
from pathlib import Path

from llm_playground.cli import example, int_at_least
from llm_playground.core.errors import UserError
from llm_playground.core.net import (
    ENV_ACCESS_CODE,
    ENV_PUBLIC_NAMES,
    MAX_UPLOAD_MB,
    configured_code,
    is_loopback,
    public_name,
)

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8501
MIN_CODE_LENGTH = 10
NEW_CODE_WORDS = 4
PACKAGE = Path(__file__).resolve().parent.parent
APP = PACKAGE / "ui" / "app.py"
SERVED_APP = PACKAGE / "ui" / "app_server.py"  # app.py behind the server guard
WORDS = PACKAGE / "data" / "words.txt"


def access_code() -> str:
    """The access code from the environment ('' when none is set)."""
    return configured_code()


def new_code(words: int = NEW_CODE_WORDS) -> str:
    """A random access code of ``words`` words from the shipped list of 2,048
    (``secrets``: 11 bits a word, 44 bits for four)."""
    vocabulary = WORDS.read_text(encoding="utf-8").split()
    return "-".join(secrets.choice(vocabulary) for _ in range(words))


def listening_address(host: str) -> str:
    """The address to listen on, as typed: ``[::1]`` (a bracketed IPv6 literal) is ``::1``."""
    host = host.strip()
    if not host:
        raise UserError("the host must not be empty")
    if host.startswith("[") or host.endswith("]"):
        inner = host[1:-1] if host.startswith("[") and host.endswith("]") else ""
        try:
            ipaddress.IPv6Address(inner)
        except ValueError:
            raise UserError(f"--host {host}: brackets hold an IPv6 address, e.g. [::1]") from None
        return inner
    return host


def check_serving(host: str, public_names: tuple[str, ...] = ()) -> None:
    """Refuse an address that other machines reach, or a public name (a reverse proxy
    lets others in), unless an access code is set."""
    if is_loopback(host) and not public_names:
        return
    code = access_code()
    where = f"on {host}" if not is_loopback(host) else f"as {public_names[0]}"
    if not code:
        raise UserError(
            f"serving {where} lets other machines in: set {ENV_ACCESS_CODE} to an access "
            "code first (or serve on 127.0.0.1 alone)"
        )
    if len(code) < MIN_CODE_LENGTH:
        raise UserError(
            f"{ENV_ACCESS_CODE} is too short to guard a server {where}: use at least "
            f"{MIN_CODE_LENGTH} characters (llm-playground serve --new-code prints one)"
        )


def check_port_free(host: str, port: int) -> None:
    """Refuse at once, in one line, an address this machine cannot listen on or a port in
    use: the same bind the server makes, tried and released."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    try:
        with socket.socket(family, socket.SOCK_STREAM) as probe:
            if os.name != "nt":
                probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            if family == socket.AF_INET6:
                probe.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
            probe.bind((host, port))
            probe.listen(1)
    except socket.gaierror as error:
        raise UserError(f"cannot listen on {host}: the name does not resolve ({error})") from None
    except OSError as error:
        if error.errno == errno.EADDRINUSE:
            raise UserError(
                f"port {port} on {host} is in use (another server?): stop it or choose "
                "another port with --port"
            ) from None
        if error.errno == errno.EACCES:
            raise UserError(
                f"not allowed to listen on port {port}: choose one above 1023"
            ) from None
        raise UserError(f"cannot listen on {host} port {port}: {error.strerror or error}") from None


def streamlit_command(host: str, port: int) -> list[str]:
    """The ``streamlit run`` command line for the app on ``host:port``, behind the server
    guard (the public names travel in ``$LLM_PLAYGROUND_PUBLIC_NAMES``)."""
    return [
        sys.executable,
        "-m",
        "streamlit",
        "run",
        str(SERVED_APP),
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
        # A short message in the page instead of tracebacks; the details go to the log.
        "--client.showErrorDetails",
        "none",
        # No driving the app over plain HTTP (Streamlit's agent API), whatever a config file
        # or the environment says: the server guard checks what reaches the WebSocket.
        "--server.enableAgentApi",
        "false",
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


def _public_names(values: list[str]) -> list[str]:
    try:
        return [public_name(value) for value in values]
    except ValueError as error:
        raise UserError(str(error)) from None


def serve_command(args: argparse.Namespace) -> int:
    if args.new_code:
        print(new_code(), flush=True)
        return 0
    host = listening_address(args.host)
    if args.port > 65535:
        raise UserError(f"the port must be at most 65535, got {args.port}")
    names = _public_names(args.public_names)
    check_serving(host, tuple(names))
    if not SERVED_APP.is_file() or not APP.is_file():
        raise UserError(f"the app is missing from this installation ({APP})")
    check_port_free(host, args.port)
    url = _url(host, args.port)
    if is_loopback(host):
        gate = " (behind the access code)" if access_code() else ""
        print(f"LLM Playground: {url}{gate}", flush=True)
    else:
        print(f"LLM Playground: share {url} and the access code with your class", flush=True)
    for name in names:
        print(f"LLM Playground: also answers to {name} (through your reverse proxy)", flush=True)
    os.environ[ENV_PUBLIC_NAMES] = ",".join(names)  # read by the server guard
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
        f"says otherwise; any other address needs ${ENV_ACCESS_CODE} (at least "
        f"{MIN_CODE_LENGTH} characters), which every visitor then types once to get in. "
        "The server answers only to its own names: loopback names, the --host address, "
        "and each --public-name.",
        **example("llm-playground serve --port 8501"),
    )
    p.add_argument(
        "--host",
        default=DEFAULT_HOST,
        metavar="H",
        help="address to listen on (default 127.0.0.1; 0.0.0.0 for a classroom, with a code; "
        "IPv6 as ::1 or [::1])",
    )
    p.add_argument(
        "--port",
        type=int_at_least(1),
        default=DEFAULT_PORT,
        metavar="P",
        help=f"port (default {DEFAULT_PORT})",
    )
    p.add_argument(
        "--public-name",
        dest="public_names",
        action="append",
        default=[],
        metavar="NAME",
        help="another name the server answers to, on any port (the name a reverse proxy "
        "serves it under, e.g. playground.example.org); repeat for several",
    )
    p.add_argument(
        "--new-code",
        action="store_true",
        help=f"print a random access code of {NEW_CODE_WORDS} words and exit",
    )
    p.add_argument(
        "--no-browser",
        dest="browser",
        action="store_false",
        help="do not open a browser tab (one opens only on a desktop, for a loopback address)",
    )
    p.set_defaults(func=serve_command)
