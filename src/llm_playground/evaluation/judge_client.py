"""The judge's OpenAI-compatible client, and the rules for where a key may be sent.

:class:`OpenAICompatibleJudge` posts a chat to ``{base_url}/chat/completions`` of any
OpenAI-compatible API (OpenAI, Gemini's OpenAI-compatible endpoint, vLLM, llama.cpp,
Ollama). Each request has one deadline, ``timeout`` seconds from connect to the last byte
of the answer, however slowly the server sends its headers or body; 429, 5xx and timeouts
are retried with exponential back-off and jitter, honouring ``Retry-After``, and the whole
call, retries and back-off included, ends within ``timeout * (retries + 1)``. It reads at
most :data:`MAX_RESPONSE_BYTES` of
an answer; never follows a redirect (the ``Authorization`` header must not travel to
another address); and explains a missing or refused key in one line. The key comes from
the caller (a password field) or ``$OPENAI_API_KEY``; it is kept in memory only, never
logged, never in ``repr`` or an error message.

:func:`check_base_url` admits https, or plain http on this machine only, and no
credentials in the URL; :func:`page_judge` sends the server's own key only to the
server's own base URL.
"""

from __future__ import annotations

import email.utils
import json
import logging
import math
import os
import random
import re
import socket
import threading
import time
import urllib.parse
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from llm_playground.core.errors import UserError
from llm_playground.core.net import is_loopback

log = logging.getLogger(__name__)

ENV_KEY = "OPENAI_API_KEY"
ENV_BASE_URL = "OPENAI_BASE_URL"
OPENAI_BASE_URL = "https://api.openai.com/v1"
#: The most bytes read from one API answer.
MAX_RESPONSE_BYTES = 1_000_000
MAX_TIMEOUT_S = 600.0
MAX_RETRIES = 10


class JudgeCallFailed(Exception):
    """A call that failed after its retries (timeouts, server errors, unreadable answers)."""

    def __init__(self, message: str, raw: str = ""):
        super().__init__(message)
        self.raw = raw


def resolve_api_key(key: str | None = None) -> str:
    """The key typed in (kept in memory) or ``$OPENAI_API_KEY``; a clear message when neither."""
    key = (key or "").strip() or os.environ.get(ENV_KEY, "").strip()
    if not key:
        raise UserError(
            f"no API key: set {ENV_KEY} or type the key in the key field "
            "(local servers such as Ollama accept any value)"
        )
    return key


def server_base_url() -> str:
    """The base URL configured on this machine: ``$OPENAI_BASE_URL``, else OpenAI's."""
    return os.environ.get(ENV_BASE_URL, "").strip() or OPENAI_BASE_URL


def _same_endpoint(a: str, b: str) -> bool:
    return a.strip().rstrip("/").lower() == b.strip().rstrip("/").lower()


def check_base_url(base_url: str) -> urllib.parse.SplitResult:
    """A base URL the judge may call: https, or http on this machine; no credentials in it."""
    url = (base_url or "").strip()
    if not re.match(r"https?://", url, re.I):
        raise UserError(f"the base URL must start with http:// or https://, got '{url[:100]}'")
    parts = urllib.parse.urlsplit(url)
    if not parts.hostname:
        raise UserError("the base URL has no host")
    if parts.username or parts.password:
        raise UserError("the base URL must not hold a user name or password: use the key field")
    if parts.scheme.lower() == "http" and not is_loopback(parts.hostname):
        raise UserError(
            f"the judge API at {parts.hostname} must use https:// (plain http is allowed on "
            "this machine only, e.g. http://localhost:11434/v1)"
        )
    return parts


def host_of(base_url: str) -> str:
    """The host (and port) of a base URL, without path, query or credentials."""
    parts = urllib.parse.urlsplit(base_url.strip())
    host = parts.hostname or "?"
    return f"{host}:{parts.port}" if parts.port else host


def page_judge(
    base_url: str | None, model: str, typed_key: str | None, **kwargs: Any
) -> OpenAICompatibleJudge:
    """A judge set up from a web page: the server's key only with the server's base URL.

    A base URL typed in the page needs a key typed in the page (kept in that session only);
    the empty base URL means the one configured on the server.
    """
    base = (base_url or "").strip() or server_base_url()
    key = (typed_key or "").strip()
    if not key:
        if not _same_endpoint(base, server_base_url()):
            raise UserError(
                "a base URL typed here needs its own API key: the server's key is used only "
                f"with the server's base URL ({host_of(server_base_url())})"
            )
        key = os.environ.get(ENV_KEY, "").strip()
        if not key:
            raise UserError(f"no API key: type one, or ask the server's owner to set {ENV_KEY}")
    return OpenAICompatibleJudge(base_url=base, model=model.strip(), api_key=key, **kwargs)


def _retry_after(value: str | None) -> float | None:
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())


class _Timeout(Exception):
    """The overall deadline of a request passed."""


class _Watchdog:
    """Ends one request at its deadline wherever it waits: at the deadline a timer shuts
    the connection's socket down, which wakes a read blocked on a slow server at once.

    A read timeout alone does not bound a request: it restarts with every byte, so a server
    that trickles its headers a byte at a time would hold the call for as long as it likes.
    The socket is learnt from httpcore's ``trace`` extension when the connection opens (and
    again after TLS wraps it)."""

    def __init__(self, deadline: float) -> None:
        self.fired = False
        self._sock: socket.socket | None = None
        self._lock = threading.Lock()
        self._timer = threading.Timer(max(0.0, deadline - time.monotonic()), self._fire)
        self._timer.daemon = True

    def trace(self, name: str, info: dict[str, Any]) -> None:
        """httpcore's trace callback: remember the socket of the connection just made."""
        if name not in ("connection.connect_tcp.complete", "connection.start_tls.complete"):
            return
        stream = info.get("return_value")
        sock = stream.get_extra_info("socket") if stream is not None else None
        with self._lock:
            self._sock = sock
            fired = self.fired
        if fired:  # the deadline passed while connecting
            self._shutdown(sock)

    def _fire(self) -> None:
        with self._lock:
            self.fired = True
            sock = self._sock
        self._shutdown(sock)

    @staticmethod
    def _shutdown(sock: socket.socket | None) -> None:
        if sock is not None:
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass  # closed already

    def __enter__(self) -> _Watchdog:
        self._timer.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._timer.cancel()


def _is_json(text: str) -> bool:
    try:
        json.loads(text)
    except (json.JSONDecodeError, ValueError):
        return False
    return True


def _short(text: str, limit: int = 200) -> str:
    """A one-line excerpt of an answer (printable characters only)."""
    clean = " ".join("".join(c if c.isprintable() else " " for c in text).split())
    return clean[:limit] + ("…" if len(clean) > limit else "")


def check_call_settings(timeout: float, max_retries: int) -> None:
    if not (isinstance(timeout, int | float) and math.isfinite(timeout)):
        raise UserError("the timeout must be a number of seconds")
    if not 0 < timeout <= MAX_TIMEOUT_S:
        raise UserError(f"the timeout must be above 0 and at most {MAX_TIMEOUT_S:g} seconds")
    if not 0 <= max_retries <= MAX_RETRIES:
        raise UserError(f"the number of retries must be between 0 and {MAX_RETRIES}")


@dataclass(frozen=True)
class OpenAICompatibleJudge:
    """A chat model behind ``POST {base_url}/chat/completions``.

    The key never appears in ``repr``, logs or error messages.
    """

    base_url: str
    model: str
    api_key: str = field(repr=False)
    timeout: float = 60.0
    max_retries: int = 4
    backoff: float = 1.0
    max_backoff: float = 30.0
    temperature: float = 0.0
    sleep: Callable[[float], None] = field(default=time.sleep, repr=False, compare=False)

    def __post_init__(self) -> None:
        check_base_url(self.base_url)
        if not self.model or not self.model.strip():
            raise UserError("no judge model name given")
        if not self.api_key or not self.api_key.strip():
            raise UserError(f"no API key: set {ENV_KEY} or type the key in the key field")
        check_call_settings(self.timeout, self.max_retries)

    @classmethod
    def from_settings(
        cls, base_url: str, model: str, api_key: str | None = None, **kwargs: Any
    ) -> OpenAICompatibleJudge:
        return cls(
            base_url=base_url.strip(),
            model=model.strip(),
            api_key=resolve_api_key(api_key),
            **kwargs,
        )

    @property
    def name(self) -> str:
        """The model and the API's host only (no path, query or credentials)."""
        return f"{self.model} @ {host_of(self.base_url)}"

    @property
    def url(self) -> str:
        return self.base_url.strip().rstrip("/") + "/chat/completions"

    def _redact(self, text: str) -> str:
        return text.replace(self.api_key, "***") if self.api_key else text

    def _delay(self, attempt: int, retry_after: float | None) -> float:
        if retry_after is not None:
            return min(retry_after, self.max_backoff)
        base = self.backoff * (2**attempt)
        return min(self.max_backoff, base * (0.5 + random.random()))  # jitter in [0.5, 1.5)

    def complete(self, messages: list[dict[str, str]], max_tokens: int = 200) -> str:
        """POST the chat to the API and return the answer's text.

        Each attempt has its own deadline of ``timeout`` seconds, from connect to the last
        byte; 429, 5xx, unreachable servers and timeouts are retried up to ``max_retries``
        times, and the whole call (attempts and the back-off between them) ends within
        ``timeout * (max_retries + 1)`` seconds."""
        import httpx2

        body = {
            "model": self.model,
            "messages": messages,
            "temperature": self.temperature,
            "max_tokens": max_tokens,
        }
        headers = {"Authorization": f"Bearer {self.api_key}", "Accept": "application/json"}
        deadline = time.monotonic() + self.timeout * (self.max_retries + 1)
        last = "no attempt"
        # Redirects are never followed: Authorization must not travel to another address.
        # No kept-alive connections: each attempt opens its own, which its watchdog can end.
        limits = httpx2.Limits(max_keepalive_connections=0)
        with httpx2.Client(follow_redirects=False, trust_env=False, limits=limits) as client:
            for attempt in range(self.max_retries + 1):
                if attempt:
                    log.info("judge call retry %d/%d", attempt, self.max_retries)
                left = min(self.timeout, deadline - time.monotonic())
                if left <= 0:
                    break
                retry_after = None
                try:
                    status, response_headers, text = self._post(
                        client, body, headers, time.monotonic() + left
                    )
                except _Timeout:
                    last = f"no answer within {self.timeout:g} s"
                    log.warning("judge API timed out (attempt %d)", attempt + 1)
                except httpx2.TransportError as exc:
                    last = f"cannot reach {host_of(self.base_url)}: {type(exc).__name__}"
                    log.warning("judge API unreachable (attempt %d): %s", attempt + 1, last)
                else:
                    if status == 200:
                        return self._content(text)
                    self._refuse(status, response_headers, text)
                    retry_after = _retry_after(response_headers.get("Retry-After"))
                    last = f"HTTP {status}"
                    log.warning("judge API answered HTTP %d (attempt %d)", status, attempt + 1)
                if attempt < self.max_retries:
                    self.sleep(
                        min(
                            self._delay(attempt, retry_after), max(0.0, deadline - time.monotonic())
                        )
                    )
        raise JudgeCallFailed(f"judge API failed after {attempt + 1} attempt(s): {last}")

    def _post(self, client, body, headers, deadline: float) -> tuple[int, Any, str]:
        """One request, its body read up to :data:`MAX_RESPONSE_BYTES` before ``deadline``."""
        import httpx2

        timeout = httpx2.Timeout(max(0.01, deadline - time.monotonic()))
        with _Watchdog(deadline) as watchdog:
            try:
                with client.stream(
                    "POST",
                    self.url,
                    json=body,
                    headers=headers,
                    timeout=timeout,
                    extensions={"trace": watchdog.trace},
                ) as r:
                    chunks, size = [], 0
                    for chunk in r.iter_bytes():
                        size += len(chunk)
                        if size > MAX_RESPONSE_BYTES:
                            raise JudgeCallFailed(
                                f"the judge API's answer is larger than {MAX_RESPONSE_BYTES:,} "
                                "bytes"
                            )
                        if time.monotonic() > deadline:
                            raise _Timeout
                        chunks.append(chunk)
                    text = b"".join(chunks).decode("utf-8", "replace")
                    return r.status_code, r.headers, text
            except httpx2.TimeoutException:
                raise _Timeout from None
            except httpx2.TransportError:
                if watchdog.fired:  # the watchdog cut the connection at the deadline
                    raise _Timeout from None
                raise

    def _refuse(self, status: int, response_headers, text: str) -> None:
        """Raise for answers that retrying cannot fix (keys, addresses, redirects, 4xx)."""
        if status in (401, 403):
            raise UserError(
                f"the judge API refused the key (HTTP {status}): check the key and "
                "that it may use this model"
            )
        if status == 404:
            raise UserError(
                f"the judge API answered 404 for {host_of(self.base_url)}: check the base URL "
                "(it usually ends in /v1) and the model name"
            )
        if 300 <= status < 400:
            target = host_of(str(response_headers.get("Location", "")) or "?")
            raise UserError(
                f"the judge API answered with a redirect (HTTP {status}) to {target}; "
                "redirects are not followed: give the final address as the base URL"
            )
        if status != 429 and status < 500:
            raise UserError(
                f"the judge API rejected the request (HTTP {status}): {_short(self._redact(text))}"
            )

    def _content(self, text: str) -> str:
        try:
            data = json.loads(text)
            content = data["choices"][0]["message"]["content"]
        except (json.JSONDecodeError, KeyError, IndexError, TypeError):
            what = "not JSON" if not _is_json(text) else "not a chat completion"
            raise JudgeCallFailed(
                f"the judge API's answer is {what} ({len(text):,} characters)",
                raw=_short(self._redact(text)),
            ) from None
        if isinstance(content, list):  # content parts
            content = "".join(p.get("text", "") for p in content if isinstance(p, dict))
        return str(content or "")
