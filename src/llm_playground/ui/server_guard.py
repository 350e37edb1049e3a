"""What the server checks before Streamlit answers a request.

``llm-playground serve`` runs the app through :mod:`llm_playground.ui.app_server`, which
puts :class:`ServerGuard` in front of Streamlit's own web server (an ASGI middleware, the
outermost layer of Streamlit's Starlette app). For every request, page, file or WebSocket:

- **Host and Origin.** The ``Host`` header, and the ``Origin`` header where the browser
  sends one, must name this server (:class:`HostRule`): on loopback ``localhost``,
  ``127.0.0.1`` or ``[::1]`` with the server's port; on another address that address; on
  all addresses (``0.0.0.0``) the loopback names or any IP address; and, on any port, the
  names given with ``serve --public-name``. Anything else gets 403: a web page whose name
  was made to resolve to 127.0.0.1 (DNS rebinding) cannot drive the app from a learner's
  own browser.
- **Uploads.** When the server has an access code, an upload for a browser session that
  has not typed it is refused (403) before any byte of it is read. Uploads are capped per
  file (``server.maxUploadSize``) and per session (:data:`MAX_SESSION_UPLOAD_MB`), and the
  refusal (413) names the cap.
- **Metrics.** ``/_stcore/metrics`` (cache names and counters) is not served (404).
- **Messages before the code.** On the WebSocket, a session that has not typed the code
  may only run the script (with widget values that are short strings or button presses:
  all the gate has), keep the connection alive and stop a run; anything else it sends is
  dropped; a message over :data:`MAX_GATE_MESSAGE_BYTES` keeps only what the gate needs
  (Streamlit keeps parts of a run's message, such as the page's address, for the life of
  the session). No session may clear the server's caches (which every visitor shares).
- **Paths.** The first message of every session names the app's script without its
  folder, so no page shows where the app lives on the server.
- **Frames.** No other site's page may show the app in a frame (``frame-ancestors
  'self'``): a page cannot lay itself over the app's buttons, nor talk to the app as the
  page that hosts it.

The gate (:mod:`llm_playground.ui.gate`) records the sessions that typed the code in
:data:`ADMITTED`, the one list of this server process, which the guard reads.
"""

from __future__ import annotations

import logging
import os
import re
import threading
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from llm_playground.core.net import (  # the host rule lives in core: serve checks names too
    ENV_PUBLIC_NAMES,
    HostRule,
    configured_code,
    public_name,
)

MAX_SESSION_UPLOAD_MB = 128  # all the uploads one browser session holds at a time
MAX_ADMITTED = 10_000  # sessions remembered as admitted (the oldest are forgotten first)
MAX_GATE_VALUE_CHARS = 1024  # the longest widget value a session sends before the code
MAX_GATE_WIDGETS = 16  # widget values kept in one message before the code (the gate has 2)
MAX_GATE_MESSAGE_BYTES = 64 * 1024  # the largest message a session sends before the code
GATE_MESSAGES = frozenset({"rerun_script", "app_heartbeat", "stop_script"})
GATE_WIDGET_VALUES = frozenset({"string_value", "trigger_value"})
MB = 1024 * 1024

REFUSED_NAME = (
    "This server does not answer to that name. Use its address, or its owner can add the "
    "name with: llm-playground serve --public-name NAME"
)
_UPLOAD_PATH = re.compile(r"/_stcore/upload_file/([^/]+)/([^/]+)$")
_METRICS_PATH = re.compile(r"/_stcore/metrics$")


def server_log() -> logging.Logger:
    """The server's log (Streamlit's handler and format; imported only in the server)."""
    from streamlit.logger import get_logger

    return get_logger(__name__)


def rule_from_streamlit_config() -> HostRule:
    """The rule for the running server: Streamlit's address and port, and the public names
    ``serve`` passed on in ``$LLM_PLAYGROUND_PUBLIC_NAMES`` (comma-separated)."""
    from streamlit import config

    names = []
    for name in filter(str.strip, os.environ.get(ENV_PUBLIC_NAMES, "").split(",")):
        try:
            names.append(public_name(name))
        except ValueError as error:  # set by hand, not by serve: left out, and said
            server_log().warning("Ignored %s: %s", ENV_PUBLIC_NAMES, error)
    return HostRule(
        address=config.get_option("server.address") or "0.0.0.0",
        port=int(config.get_option("server.port")),
        public_names=tuple(names),
    )


# --- the sessions that typed the code -----------------------------------------------------------


@dataclass
class Admissions:
    """Browser sessions (Streamlit session ids) that typed the access code, in memory."""

    limit: int = MAX_ADMITTED
    _ids: OrderedDict[str, None] = field(default_factory=OrderedDict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def admit(self, session_id: str) -> None:
        with self._lock:
            self._ids[session_id] = None
            self._ids.move_to_end(session_id)
            while len(self._ids) > self.limit:
                self._ids.popitem(last=False)

    def __contains__(self, session_id: object) -> bool:
        with self._lock:
            return session_id in self._ids


ADMITTED = Admissions()  # the one list of this server process (the gate writes, the guard reads)


def admit_current_session() -> None:
    """Record the browser session of the running script as admitted (the gate calls it)."""
    from streamlit.runtime.scriptrunner import get_script_run_ctx

    ctx = get_script_run_ctx()
    if ctx is not None:
        ADMITTED.admit(ctx.session_id)


# --- the middleware ------------------------------------------------------------------------------


def _stored_upload_bytes(session_id: str) -> int:
    """Bytes of uploads Streamlit holds for a session (its in-memory file manager)."""
    from streamlit.runtime import Runtime

    storage = getattr(Runtime.instance().uploaded_file_mgr, "file_storage", {})
    files = storage.get(session_id) or {}
    return sum(len(rec.data) for rec in tuple(files.values()))


def _without_script_folder(data: bytes) -> tuple[bytes, str | None]:
    """A serialized ForwardMsg whose new-session part names the main script without its
    folder (the browser only hashes the name), and the session id it announces."""
    from streamlit.proto.ForwardMsg_pb2 import ForwardMsg

    msg = ForwardMsg()
    try:
        msg.ParseFromString(data)
    except Exception:  # noqa: BLE001 - not a message of this protocol: left alone
        return data, None
    if msg.WhichOneof("type") != "new_session":
        return data, None
    msg.new_session.main_script_path = Path(msg.new_session.main_script_path).name
    return msg.SerializeToString(), msg.new_session.initialize.session_id or None


def gate_message(data: bytes, admitted: bool) -> bytes | None:
    """A browser's message (a serialized BackMsg) as the app may see it: None to drop it.

    Nobody clears the shared caches; before the code only :data:`GATE_MESSAGES` pass, of
    at most :data:`MAX_GATE_MESSAGE_BYTES`, and a script run keeps only what the gate
    needs (see :func:`_gate_run`).
    """
    from streamlit.proto.BackMsg_pb2 import BackMsg

    msg = BackMsg()
    try:
        msg.ParseFromString(data)
    except Exception:  # noqa: BLE001 - Streamlit closes the connection on it
        return data
    kind = msg.WhichOneof("type")
    if kind == "clear_cache" or (not admitted and kind not in GATE_MESSAGES):
        return None
    if admitted:
        return data
    if kind != "rerun_script":
        return data if len(data) <= MAX_GATE_MESSAGE_BYTES else None
    return _gate_run(msg, data)


def _gate_run(msg: Any, data: bytes) -> bytes | None:
    """A script run before the code: the widget values the gate has (short strings and
    presses, the first :data:`MAX_GATE_WIDGETS`), and, when the message is still over
    :data:`MAX_GATE_MESSAGE_BYTES`, without the rest of the browser's state (its address,
    query string, cached messages), which Streamlit would keep for the session; None
    when even that is too large."""
    state = msg.rerun_script
    widgets = state.widget_states.widgets
    kept = [
        w
        for w in widgets
        if w.WhichOneof("value") in GATE_WIDGET_VALUES
        and len(w.string_value) <= MAX_GATE_VALUE_CHARS
    ][:MAX_GATE_WIDGETS]
    if len(kept) == len(widgets) and len(data) <= MAX_GATE_MESSAGE_BYTES:
        return data
    del widgets[:]
    widgets.extend(kept)
    if msg.ByteSize() > MAX_GATE_MESSAGE_BYTES:
        for name in ("context_info", "query_string", "cached_message_hashes", "page_name"):
            state.ClearField(name)
        state.ClearField("fragment_id")
    if msg.ByteSize() > MAX_GATE_MESSAGE_BYTES:
        return None  # what is left is not of this protocol (long ids, unknown fields)
    return msg.SerializeToString()


class ServerGuard:
    """ASGI middleware in front of Streamlit's app (see the module's docstring).

    ``rule`` defaults to :func:`rule_from_streamlit_config` (read at the first request, once
    Streamlit knows its port), ``code_required`` to whether ``$LLM_PLAYGROUND_ACCESS_CODE``
    is set, ``file_cap_mb`` to ``server.maxUploadSize``, and ``stored_bytes`` (a session's
    stored uploads) to Streamlit's file manager; tests pass their own.
    """

    def __init__(
        self,
        app: Any,
        *,
        script_path: str = "",
        rule: HostRule | None = None,
        code_required: bool | None = None,
        file_cap_mb: int | None = None,
        session_cap_mb: int = MAX_SESSION_UPLOAD_MB,
        stored_bytes: Callable[[str], int] | None = None,
        admitted: Admissions = ADMITTED,
    ) -> None:
        self.app = app
        self.script_path = script_path
        self.rule = rule
        self.code_required = bool(configured_code()) if code_required is None else code_required
        self.file_cap_mb = file_cap_mb
        self.session_cap_mb = session_cap_mb
        self.stored_bytes = stored_bytes or _stored_upload_bytes
        self.admitted = admitted
        self._in_flight: dict[str, int] = {}  # upload bytes being received, per session
        self._refused_names: set[str] = set()

    # -- the checks, in order ---------------------------------------------------------------

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)  # the lifespan: start and stop
            return
        headers = _headers(scope)
        rule = self._host_rule()
        host, origin = headers.get("host"), headers.get("origin")
        if not (rule.allows_host(host) and rule.allows_origin(origin)):
            self._log_refused(host, origin)
            await _refuse(scope, send, 403, REFUSED_NAME)
            return
        if scope["type"] == "websocket":
            connection = _Connection()
            await self.app(
                scope, self._filtered(receive, connection), self._scrubbed(send, connection)
            )
            return
        send = _not_framed(send)
        path = re.sub("/{2,}", "/", scope["path"]).rstrip("/")
        if _METRICS_PATH.search(path):
            await _refuse(scope, send, 404, "Not served.")
            return
        upload = _UPLOAD_PATH.search(path)
        if upload is None:
            await self.app(scope, receive, send)
            return
        await self._upload(scope, receive, send, upload.group(1), headers)

    def _host_rule(self) -> HostRule:
        if self.rule is None:
            self.rule = rule_from_streamlit_config()
        return self.rule

    async def _upload(
        self, scope: dict, receive: Any, send: Any, session_id: str, headers: dict
    ) -> None:
        """Refuse an upload before reading it, or pass it on with its bytes reserved."""
        if self.code_required and session_id not in self.admitted:
            server_log().warning("Refused an upload from a browser session without the access code")
            await _refuse(scope, send, 403, "Type the access code first: uploads wait for it.")
            return
        if scope["method"] != "PUT":
            await self.app(scope, receive, send)  # removing a file, or a preflight
            return
        refusal = self._upload_refusal(session_id, headers)
        if refusal is not None:
            await _refuse(scope, send, *refusal)
            return
        size = int(headers["content-length"])
        self._in_flight[session_id] = self._in_flight.get(session_id, 0) + size
        try:
            await self.app(scope, receive, send)
        finally:
            left = self._in_flight.pop(session_id, 0) - size
            if left > 0:
                self._in_flight[session_id] = left

    def _upload_refusal(self, session_id: str, headers: dict) -> tuple[int, str] | None:
        """``(status, message)`` when an upload of that size must be refused, else None.

        The size must be stated and be the body's: a chunked body (``Transfer-Encoding``,
        which the server reads instead of ``Content-Length``) could be any size."""
        content_length = headers.get("content-length")
        if content_length is None or not re.fullmatch(r"[0-9]+", content_length.strip()):
            return 411, "An upload must state its size (Content-Length)."
        if "transfer-encoding" in headers:
            return 411, "An upload must state its size (Content-Length), not be sent in chunks."
        size = int(content_length)
        file_cap_mb = self.file_cap_mb or _configured_upload_cap_mb()
        if size > file_cap_mb * MB:
            return 413, f"The file is larger than the upload cap of {file_cap_mb} MB a file."
        held = self.stored_bytes(session_id) + self._in_flight.get(session_id, 0)
        if held + size > self.session_cap_mb * MB:
            return 413, (
                f"This page already holds {held / MB:.0f} MB of uploads: the cap is "
                f"{self.session_cap_mb} MB for one browser session. Remove a file first."
            )
        return None

    def _scrubbed(self, send: Any, connection: _Connection) -> Any:
        """``send`` for a WebSocket, with the script's folder taken out of new sessions
        (the first of which tells the connection's session id)."""
        needle = str(Path(self.script_path).parent).encode() if self.script_path else b""

        async def scrubbed_send(message: dict) -> None:
            data = message.get("bytes") if message["type"] == "websocket.send" else None
            if data and (connection.session_id is None or (needle and needle in data)):
                data, session_id = _without_script_folder(data)
                message = {**message, "bytes": data}
                connection.session_id = session_id or connection.session_id
            await send(message)

        return scrubbed_send

    def _filtered(self, receive: Any, connection: _Connection) -> Any:
        """``receive`` for a WebSocket, passing on only what :func:`gate_message` allows."""

        async def filtered_receive() -> dict:
            while True:
                message = await receive()
                data = message.get("bytes") if message["type"] == "websocket.receive" else None
                if not data:
                    return message
                admitted = not self.code_required or connection.session_id in self.admitted
                data = gate_message(data, admitted)
                if data is not None:
                    return {**message, "bytes": data}

        return filtered_receive

    def _log_refused(self, host: str | None, origin: str | None) -> None:
        """Each refused name once in the server log (a flood of them stays one line each)."""
        key = f"{host!r}/{origin!r}"
        if key in self._refused_names or len(self._refused_names) >= 100:
            return
        self._refused_names.add(key)
        server_log().warning(
            "Refused a request for Host %r (Origin %r): not a name of this server; "
            "serve --public-name NAME adds one",
            host,
            origin,
        )


@dataclass
class _Connection:
    """One WebSocket: its Streamlit session, once the first new-session message told it."""

    session_id: str | None = None


def _not_framed(send: Any) -> Any:
    """``send`` for an HTTP answer that other sites' pages may not show in a frame (they
    could lay their own page over the app's buttons); the app's own frames still work."""

    async def send_not_framed(message: dict) -> None:
        if message["type"] == "http.response.start":
            message = {**message, "headers": [*message.get("headers", ()), *_NOT_FRAMED]}
        await send(message)

    return send_not_framed


_NOT_FRAMED = (
    (b"x-frame-options", b"SAMEORIGIN"),
    (b"content-security-policy", b"frame-ancestors 'self'"),
)


def _configured_upload_cap_mb() -> int:
    from streamlit import config

    return int(config.get_option("server.maxUploadSize"))


def _headers(scope: dict) -> dict[str, str]:
    """The request's headers, names lower-case (the first of a repeated header)."""
    headers: dict[str, str] = {}
    for name, value in scope.get("headers", ()):
        headers.setdefault(name.decode("latin-1").lower(), value.decode("latin-1"))
    return headers


async def _refuse(scope: dict, send: Any, status: int, message: str) -> None:
    """A short plain-text answer; for a WebSocket, a close before the handshake (which the
    server answers with HTTP 403)."""
    if scope["type"] == "websocket":
        await send({"type": "websocket.close", "code": 1008})
        return
    body = (message + "\n").encode()
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"text/plain; charset=utf-8"),
                (b"content-length", str(len(body)).encode()),
                (b"connection", b"close"),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})


# --- errors in a page ----------------------------------------------------------------------------


def short_error_message(error: Exception) -> bool:
    """Streamlit's ``on_script_error``: a short message in the page instead of the report
    (Streamlit has already written the traceback to the server log). True: shown."""
    import streamlit as st

    del error  # the details stay in the server log
    try:
        st.error(
            "Something went wrong on the server. The details are in the server's log.",
            icon="⚠️",
        )
    except Exception:  # noqa: BLE001 - then Streamlit's own (redacted) message is shown
        return False
    return True
