"""Which network addresses only this machine can reach: the one rule that both the app's
listening address (``serve``) and the judge's plain-http exception use."""

from __future__ import annotations

import ipaddress


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
