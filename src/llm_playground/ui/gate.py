"""The access-code gate of a shared server.

When ``$LLM_PLAYGROUND_ACCESS_CODE`` is set (``llm-playground serve`` requires it on any
address but loopback), the app asks for it before it shows anything of the labs. The code
is compared in constant time (``hmac.compare_digest``). Wrong tries are slowed down twice:

- per browser session, after ``FREE_TRIES`` wrong codes each further try must wait twice
  as long as the one before (up to ``MAX_SESSION_WAIT_S``);
- across the whole server, wrong tries are answered one at a time, each after
  ``GLOBAL_DELAY_S`` seconds, so that opening many sessions does not multiply the rate.
  The right code never waits for that queue.

A browser that entered the code is remembered for the life of the server process (by the
same browser id that owns its jobs), so reloading a page does not ask again.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import threading
import time
from dataclasses import dataclass, field

import streamlit as st

from llm_playground.ui.components import owner_id

ENV_ACCESS_CODE = "LLM_PLAYGROUND_ACCESS_CODE"
FREE_TRIES = 3
MAX_SESSION_WAIT_S = 60.0
GLOBAL_DELAY_S = 0.5
MAX_REMEMBERED = 10_000


def configured_code() -> str:
    """The access code this server asks for ('' when the app is open)."""
    return os.environ.get(ENV_ACCESS_CODE, "").strip()


def code_matches(typed: str, code: str) -> bool:
    """Constant-time comparison of what was typed with the code (as UTF-8 bytes)."""
    return hmac.compare_digest(typed.strip().encode("utf-8"), code.encode("utf-8"))


@dataclass
class Tries:
    """One browser session's wrong tries."""

    wrong: int = 0
    next_allowed: float = 0.0

    def wait_left(self, now: float | None = None) -> float:
        """Seconds before the next try is looked at (0 when it may be tried now)."""
        return max(0.0, self.next_allowed - (time.monotonic() if now is None else now))

    def record_wrong(self, now: float | None = None) -> None:
        now = time.monotonic() if now is None else now
        self.wrong += 1
        if self.wrong >= FREE_TRIES:
            wait = min(MAX_SESSION_WAIT_S, 2.0 ** (self.wrong - FREE_TRIES + 1))
            self.next_allowed = now + wait


@dataclass
class Gatekeeper:
    """Process-wide state: the one-at-a-time queue of wrong tries and the admitted browsers."""

    delay_s: float = GLOBAL_DELAY_S
    _wrong_lock: threading.Lock = field(default_factory=threading.Lock)
    _admitted: dict[str, float] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def check(self, typed: str, code: str, tries: Tries) -> tuple[bool, float]:
        """``(admitted, seconds to wait)`` for one try; a try made too early is not compared."""
        wait = tries.wait_left()
        if wait > 0:
            return False, wait
        if code_matches(typed, code):
            return True, 0.0
        with self._wrong_lock:  # wrong tries, from anyone, are answered one at a time
            time.sleep(self.delay_s)
        tries.record_wrong()
        return False, tries.wait_left()

    @staticmethod
    def _key(browser: str, code: str) -> str:
        return hashlib.sha256(f"{code}\0{browser}".encode()).hexdigest()

    def admit(self, browser: str, code: str) -> None:
        with self._lock:
            if len(self._admitted) >= MAX_REMEMBERED:
                self._admitted.pop(next(iter(self._admitted)))
            self._admitted[self._key(browser, code)] = time.time()

    def admitted(self, browser: str, code: str) -> bool:
        with self._lock:
            return self._key(browser, code) in self._admitted


# --- the page ----------------------------------------------------------------------------


@st.cache_resource
def _gatekeeper() -> Gatekeeper:
    """The one gatekeeper of this server process."""
    return Gatekeeper()


def require_access() -> bool:
    """Show the gate and return False until this browser has entered the code.

    The app calls it before ``st.navigation``: while it returns False, the caller stops
    the script, so no page, no navigation and no lab code is ever sent.
    """
    code = configured_code()
    if not code or st.session_state.get("gate_open"):
        return True
    keeper, browser = _gatekeeper(), owner_id()
    if keeper.admitted(browser, code):
        st.session_state["gate_open"] = True
        return True
    tries = st.session_state.setdefault("gate_tries", Tries())
    st.title("🧪 LLM Playground")
    st.write("This playground is shared. Type the access code your teacher gave you.")
    with st.form("gate", border=False):
        typed = st.text_input("Access code", type="password", key="gate_code")
        entered = st.form_submit_button("Enter", type="primary")
    if entered:
        admitted, wait = keeper.check(typed or "", code, tries)
        if admitted:
            keeper.admit(browser, code)
            st.session_state["gate_open"] = True
            st.session_state.pop("gate_tries", None)
            st.rerun()
        if wait > 0:
            st.error(f"That is not the code. Too many wrong tries: wait {wait:.0f} s.", icon="⏳")
        else:
            st.error("That is not the code.", icon="🔒")
    return False
