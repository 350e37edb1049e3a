"""Network rules shared by the command line and the app.

- :func:`is_loopback`: which addresses only this machine can reach, the one rule that both
  the app's listening address (``serve``) and the judge's plain-http exception use;
- :class:`HostRule`: which names a server answers to (``serve`` checks its
  ``--public-name`` values with it; the server guard checks every request with it);
- the access code and the upload ceiling, which ``serve`` sets and the server reads.
"""

from __future__ import annotations

import ipaddress
import os
import re
from dataclasses import dataclass
from urllib.parse import urlsplit

ENV_ACCESS_CODE = "LLM_PLAYGROUND_ACCESS_CODE"
ENV_PUBLIC_NAMES = "LLM_PLAYGROUND_PUBLIC_NAMES"  # set by `serve` from its --public-name
MAX_UPLOAD_MB = 64  # a ceiling for any one upload; pages cap their own uploads lower
LOOPBACK_NAMES = frozenset({"localhost", "127.0.0.1", "::1"})
WILDCARD_ADDRESSES = frozenset({"0.0.0.0", "::"})


def is_loopback(host: str) -> bool:
    """True for addresses only this machine reaches (127.0.0.0/8, ::1, localhost); any
    other host name may resolve to anything, so it is not (the stricter of the two rules
    this replaces: the judge also took localhost.localdomain)."""
    name = host.strip().lower()
    if name == "localhost":
        return True
    try:
        return ipaddress.ip_address(name.strip("[]")).is_loopback
    except ValueError:
        return False


def configured_code() -> str:
    """The access code this server asks for ('' when the app is open)."""
    return os.environ.get(ENV_ACCESS_CODE, "").strip()


# --- which names this server answers to ---------------------------------------------------------


def _canonical(name: str) -> str:
    """A host name lower-case without brackets or a final dot; an IP address in its one
    canonical spelling (``::0001`` is ``::1``)."""
    name = name.strip().strip("[]").lower().rstrip(".")
    try:
        return str(ipaddress.ip_address(name))
    except ValueError:
        return name


def _is_ip(name: str) -> bool:
    try:
        ipaddress.ip_address(name)
    except ValueError:
        return False
    return True


def parse_host(value: str) -> tuple[str, int | None] | None:
    """``(name, port)`` of a ``Host`` header (``localhost:8501``, ``[::1]:8501``,
    ``example.org``), the name canonical (see :func:`_canonical`); None when malformed."""
    try:
        parts = urlsplit("//" + value)
        name, port = parts.hostname, parts.port
    except ValueError:
        return None
    if not name or "@" in parts.netloc or parts.path or parts.query or parts.fragment:
        return None
    return _canonical(name), port


def public_name(value: str) -> str:
    """A name given with ``--public-name``: a host name or an IP address alone (no scheme,
    port or path), in canonical form; ``ValueError`` names what is wrong."""
    text = value.strip()
    if _is_ip(text.strip("[]")):
        return _canonical(text)
    parsed = parse_host(text) if "/" not in text else None
    if parsed is None or parsed[1] is not None or not re.fullmatch(r"[a-z0-9.-]+", parsed[0]):
        raise ValueError(
            f"--public-name {value!r} is not a host name: give the name alone, without a "
            "scheme, port or path (e.g. --public-name playground.example.org)"
        )
    return parsed[0]


@dataclass(frozen=True)
class HostRule:
    """The names a server answers to: from the address it listens on, its port, and the
    public names it was given (any port: a reverse proxy decides)."""

    address: str
    port: int
    public_names: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if not 0 <= self.port <= 65535:
            raise ValueError(f"port must be between 0 and 65535, got {self.port}")
        object.__setattr__(self, "public_names", tuple(public_name(n) for n in self.public_names))

    def allows(self, name: str, port: int | None) -> bool:
        """Whether a request for ``name:port`` (port None: the scheme's default) is for us."""
        name = _canonical(name)
        if name in self.public_names:
            return True
        if port is None:
            port = 80  # the app speaks plain HTTP; https reaches it only through a proxy
        if port != self.port:
            return False
        address = _canonical(self.address)
        if address in WILDCARD_ADDRESSES:
            return name in LOOPBACK_NAMES or _is_ip(name)
        if is_loopback(address) and name in LOOPBACK_NAMES:
            return True
        return name == address

    def allows_host(self, host: str | None) -> bool:
        """The ``Host`` header: required (HTTP/1.1 sends it always)."""
        parsed = parse_host(host) if host else None
        return parsed is not None and self.allows(*parsed)

    def allows_origin(self, origin: str | None) -> bool:
        """The ``Origin`` header: where a browser sends one, the page must be ours."""
        if origin is None:
            return True
        try:
            parts = urlsplit(origin.strip())
            name, port = parts.hostname, parts.port
        except ValueError:
            return False
        if parts.scheme not in ("http", "https") or not name:
            return False  # "null" (a sandboxed frame, a file) and other schemes
        if port is None:
            port = 443 if parts.scheme == "https" else 80
        return self.allows(name, port)
