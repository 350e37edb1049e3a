"""The access-code gate of a shared server.

When ``$LLM_PLAYGROUND_ACCESS_CODE`` is set (``llm-playground serve`` requires it on any
address but loopback), the app asks for it before it shows anything of the labs. The code
is compared in constant time (``hmac.compare_digest``). Wrong tries are slowed down twice:

- per browser session, after ``FREE_TRIES`` wrong codes each further try must wait twice
  as long as the one before (up to ``MAX_SESSION_WAIT_S``);
- across the whole server (:class:`WrongTryLimiter`), after ``THROTTLE_AFTER`` wrong
  tries within ``THROTTLE_WINDOW_S`` from anyone, a typed code is compared only once
  every ``THROTTLED_SPACING_S`` seconds, so that opening many sessions does not multiply
  the rate; the server log says when this starts and ends. While it lasts every try waits
  its turn, the right code too (answering it sooner would tell a wrong one apart by its
  delay).

A browser that entered the code is remembered for the life of the server process (by the
same browser id that owns its jobs), so reloading a page does not ask again; its browser
session is recorded in :data:`llm_playground.ui.server_guard.ADMITTED`, which the server
guard reads before it accepts an upload. The gate reads whatever the browser sends as a
plain string: a value of another type or shape is an empty try, never an error page.
"""

from __future__ import annotations

import hashlib
import hmac
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field

import streamlit as st

from llm_playground.core.net import configured_code
from llm_playground.ui.components import owner_id
from llm_playground.ui.server_guard import admit_current_session, server_log

FREE_TRIES = 3
MAX_SESSION_WAIT_S = 60.0
THROTTLE_AFTER = 50  # wrong tries from anyone ...
THROTTLE_WINDOW_S = 600.0  # ... within ten minutes, and then
THROTTLED_SPACING_S = 5.0  # one comparison every five seconds
MAX_QUEUE_WAIT_S = 30.0  # a try that would wait longer for its turn is not compared
MAX_REMEMBERED = 10_000


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
class WrongTryLimiter:
    """Process-wide: once ``limit`` wrong tries fall within ``window_s`` seconds, a code is
    compared only every ``spacing_s`` seconds, each try in its turn (``clock`` is
    injectable so that tests need no sleeps)."""

    limit: int = THROTTLE_AFTER
    window_s: float = THROTTLE_WINDOW_S
    spacing_s: float = THROTTLED_SPACING_S
    max_wait_s: float = MAX_QUEUE_WAIT_S
    clock: Callable[[], float] = time.monotonic
    _wrong: deque[float] = field(default_factory=deque)  # times of the latest wrong tries
    _next_turn: float = 0.0
    _was_throttled: bool = False
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def _throttled(self, now: float) -> bool:
        """Whether ``limit`` wrong tries fall within the window; logs each change."""
        while self._wrong and now - self._wrong[0] >= self.window_s:
            self._wrong.popleft()
        throttled = len(self._wrong) >= self.limit
        if throttled != self._was_throttled:
            self._was_throttled = throttled
            if throttled:
                server_log().warning(
                    "%d wrong access codes in the last %.0f minutes: from now on one try is "
                    "compared every %.0f s",
                    self.limit,
                    self.window_s / 60,
                    self.spacing_s,
                )
            else:
                server_log().warning(
                    "Wrong access codes have slowed down: tries are answered at once"
                )
        return throttled

    def throttled(self) -> bool:
        with self._lock:
            return self._throttled(self.clock())

    def turn(self) -> float | None:
        """Seconds this try waits for its turn (0: compare it now); None when its turn is
        further away than ``max_wait_s`` (then it is not compared at all)."""
        with self._lock:
            now = self.clock()
            if not self._throttled(now):
                return 0.0
            turn = max(now, self._next_turn)
            if turn - now > self.max_wait_s:
                return None
            self._next_turn = turn + self.spacing_s
            return turn - now

    def record_wrong(self) -> None:
        with self._lock:
            now = self.clock()
            self._wrong.append(now)
            while len(self._wrong) > self.limit:
                self._wrong.popleft()
            self._throttled(now)


@dataclass(frozen=True)
class Answer:
    """What the gate says to one try."""

    admitted: bool
    wait_s: float = 0.0  # this session must wait that long before its next try
    throttled: bool = False  # the server is slowing down everyone's tries
    compared: bool = True  # False: the try was not looked at (too early, or no turn left)
    busy: bool = False  # the server's queue of tries was too long for this one


@dataclass
class Gatekeeper:
    """Process-wide state: the limiter of wrong tries and the admitted browsers."""

    limiter: WrongTryLimiter = field(default_factory=WrongTryLimiter)
    sleep: Callable[[float], None] = time.sleep
    _admitted: dict[str, float] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def check(self, typed: object, code: str, tries: Tries) -> Answer:
        """One try: compared when this session and the server's limiter allow it."""
        wait = tries.wait_left()
        if wait > 0:
            return Answer(False, wait, self.limiter.throttled(), compared=False)
        turn = self.limiter.turn()
        if turn is None:
            return Answer(False, throttled=True, compared=False, busy=True)
        if turn > 0:
            self.sleep(turn)  # wait for this try's turn; then it is compared like any other
        if isinstance(typed, str) and code_matches(typed, code):
            return Answer(True)
        self.limiter.record_wrong()
        tries.record_wrong()
        return Answer(False, tries.wait_left(), self.limiter.throttled())

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


# The one gatekeeper of this server process: kept outside Streamlit's caches, which a
# browser can ask to clear (the server guard refuses that, a bare `streamlit run` does not).
KEEPER = Gatekeeper()


def require_access() -> bool:
    """Show the gate and return False until this browser has entered the code.

    The app calls it before ``st.navigation``: while it returns False, the caller stops
    the script, so no page, no navigation and no lab code is ever sent.
    """
    code = configured_code()
    if not code:
        return True
    keeper, browser = KEEPER, owner_id()
    if st.session_state.get("gate_open") is True or keeper.admitted(browser, code):
        st.session_state["gate_open"] = True
        admit_current_session()  # the server guard now accepts this session's uploads
        return True
    tries = st.session_state.get("gate_tries")
    if not isinstance(tries, Tries):
        tries = st.session_state["gate_tries"] = Tries()
    st.title("🧪 LLM Playground")
    st.write("This playground is shared. Type the access code your teacher gave you.")
    typed, entered = _gate_form()
    if entered:
        _answer(keeper.check(typed, code, tries), keeper, browser, code)
    return False


def _gate_form() -> tuple[object, bool]:
    """The password field and its button; ``(typed, entered)``. A value no browser sends
    (another type, malformed) is logged, dropped and read as an empty try."""
    try:
        with st.form("gate", border=False):
            typed = st.text_input("Access code", type="password", key="gate_code")
            entered = st.form_submit_button("Enter", type="primary")
    except Exception:  # noqa: BLE001 - a crafted widget value: the form starts afresh
        server_log().warning("The gate dropped a widget value it cannot read", exc_info=True)
        st.session_state.pop("gate_code", None)
        return "", False
    return typed, entered is True


def _answer(answer: Answer, keeper: Gatekeeper, browser: str, code: str) -> None:
    """Let the browser in, or say why not."""
    if answer.admitted:
        keeper.admit(browser, code)
        st.session_state["gate_open"] = True
        st.session_state.pop("gate_tries", None)
        admit_current_session()
        st.rerun()
    if answer.busy:
        st.warning(
            "Many wrong codes are being typed on this server, so yours was not checked. "
            "Try again in a minute.",
            icon="⏳",
        )
        return
    if answer.wait_s > 0:
        wrong = "That is not the code. " if answer.compared else ""
        st.error(f"{wrong}Too many wrong tries: wait {answer.wait_s:.0f} s.", icon="⏳")
    else:
        st.error("That is not the code.", icon="🔒")
    if answer.throttled:
        st.info(
            "Many wrong codes were typed on this server in the last "
            f"{THROTTLE_WINDOW_S / 60:.0f} minutes, so codes are now checked one at a time, "
            f"one every {THROTTLED_SPACING_S:.0f} s.",
            icon="🐢",
        )
