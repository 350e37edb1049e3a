"""A minimal Streamlit client for tests: HTTP requests with any Host, and a WebSocket
session that runs the script and sends widget values as a browser would, or as no
browser would."""

from __future__ import annotations

import contextlib
import http.client
import socket
import time
from dataclasses import dataclass, field

from streamlit.proto.BackMsg_pb2 import BackMsg
from streamlit.proto.ForwardMsg_pb2 import ForwardMsg
from streamlit.proto.WidgetStates_pb2 import WidgetState
from websockets.sync.client import connect


def http_request(
    port: int,
    path: str,
    *,
    host: str | None = None,
    method: str = "GET",
    body: bytes | None = None,
    headers: dict[str, str] | None = None,
    address: str = "127.0.0.1",
) -> tuple[int, bytes, dict[str, str]]:
    """``(status, body, headers)`` of one request to the server on ``address:port``, with ``Host``
    set to ``host`` (default: the address and port)."""
    connection = http.client.HTTPConnection(address, port, timeout=20)
    try:
        connection.putrequest(method, path, skip_host=True, skip_accept_encoding=True)
        shown = f"[{address}]" if ":" in address else address
        connection.putheader("Host", host or f"{shown}:{port}")
        for name, value in (headers or {}).items():
            connection.putheader(name, value)
        if body is not None:
            connection.putheader("Content-Length", str(len(body)))
        try:
            connection.endheaders(body)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the server answered (refused) before reading the whole body
        response = connection.getresponse()
        return response.status, response.read(), {k.lower(): v for k, v in response.getheaders()}
    finally:
        connection.close()


@dataclass
class Session:
    """One WebSocket session with the app; ``raw`` keeps every byte the server sent."""

    port: int
    host: str | None = None
    origin: str | None = None
    raw: list[bytes] = field(default_factory=list)

    def __post_init__(self) -> None:
        name = self.host or f"127.0.0.1:{self.port}"
        sock = socket.create_connection(("127.0.0.1", self.port), timeout=20)
        self._stack = contextlib.ExitStack()
        self.ws = self._stack.enter_context(
            connect(
                f"ws://{name}/_stcore/stream",
                sock=sock,
                origin=self.origin,
                subprotocols=["streamlit"],
                proxy=None,
                max_size=None,
                open_timeout=20,
            )
        )

    def close(self) -> None:
        self._stack.close()

    def run(
        self, widgets: list[WidgetState] | None = None, timeout: float = 30, page: str = ""
    ) -> list:
        """Run the script (with these widget values, on the page of this script hash); the
        ForwardMsgs of that run."""
        msg = BackMsg()
        msg.rerun_script.query_string = ""
        msg.rerun_script.page_script_hash = page
        msg.rerun_script.widget_states.widgets.extend(widgets or [])
        self.ws.send(msg.SerializeToString())
        return self.until_finished(timeout)

    def until_finished(self, timeout: float = 30) -> list:
        """ForwardMsgs up to the end of a script run that was not stopped for a rerun."""
        messages, deadline = [], time.monotonic() + timeout
        while time.monotonic() < deadline:
            data = self.ws.recv(timeout=max(0.1, deadline - time.monotonic()))
            self.raw.append(data)
            msg = ForwardMsg()
            msg.ParseFromString(data)
            messages.append(msg)
            finished = msg.WhichOneof("type") == "script_finished"
            if finished and msg.script_finished != msg.FINISHED_EARLY_FOR_RERUN:
                return messages
        raise TimeoutError("the script run did not finish")

    def send_raw(self, msg: BackMsg) -> None:
        self.ws.send(msg.SerializeToString())


def elements(messages: list) -> list:
    """The new elements of these ForwardMsgs (their ``Element`` protos)."""
    return [
        m.delta.new_element
        for m in messages
        if m.WhichOneof("type") == "delta" and m.delta.WhichOneof("type") == "new_element"
    ]


def widget_id(messages: list, kind: str) -> str:
    """The id of the first element of ``kind`` (``text_input``, ``button``)."""
    for element in elements(messages):
        if element.WhichOneof("type") == kind:
            return getattr(element, kind).id
    raise AssertionError(f"no {kind} in the page")


def texts(messages: list) -> str:
    """The text of the markdown and alert elements, for assertions."""
    out = []
    for element in elements(messages):
        kind = element.WhichOneof("type")
        if kind == "markdown":
            out.append(element.markdown.body)
        elif kind == "alert":
            out.append(element.alert.body)
        elif kind == "exception":
            out.append("EXCEPTION " + element.exception.message)
    return "\n".join(out)


def page_hash(messages: list, title: str) -> str:
    """The script hash of the page called ``title`` in the latest navigation message."""
    navigation = [m.navigation for m in messages if m.WhichOneof("type") == "navigation"]
    for app_page in navigation[-1].app_pages:
        if app_page.page_name == title:
            return app_page.page_script_hash
    raise AssertionError(f"no page {title!r}")
