"""Widgets and helpers shared by the pages. No ML logic lives here."""

from __future__ import annotations

import hashlib
import html
import inspect
import textwrap
from collections.abc import Callable, Sequence
from typing import Any

import streamlit as st

from llm_playground.core.errors import UserError
from llm_playground.core.events import Error, Progress, Started
from llm_playground.core.jobs import EventFactory, Job, JobManager


def esc(text: object) -> str:
    """Escape user text for HTML (quotes included). Every page renders HTML through this."""
    return html.escape(str(text), quote=True)


@st.cache_resource
def job_manager() -> JobManager:
    """The process-wide manager of background jobs (training, fine-tuning, long evaluations)."""
    return JobManager()


def owner_id() -> str:
    """Who is asking: one id per browser (all its tabs), never shown to anyone.

    Derived from the browser's XSRF cookie, which Streamlit sets once per browser; where
    there is none (tests, XSRF off) the browser session's own id serves.
    """
    try:
        from streamlit.web.server.starlette.starlette_app_utils import decode_xsrf_token_string

        token, _ = decode_xsrf_token_string(st.context.cookies.get("_streamlit_xsrf") or "")
        if token:
            return "b-" + hashlib.sha256(token).hexdigest()[:24]
    except Exception:  # noqa: BLE001 - any failure falls back to the session id
        pass
    from streamlit.runtime.scriptrunner import get_script_run_ctx

    ctx = get_script_run_ctx()
    return "s-" + (ctx.session_id if ctx else "local")


def _slot_key(slot: str) -> str:
    return f"job:{slot}"


def start_job(
    slot: str,
    label: str,
    factory: EventFactory,
    *,
    heavy: bool = True,
    params: dict[str, Any] | None = None,
) -> Job:
    """Start a background job for this browser in ``slot`` (one unfinished job per slot)."""
    job = job_manager().start(slot, label, factory, params, owner=owner_id(), heavy=heavy)
    st.session_state[_slot_key(slot)] = job.id
    return job


def current_job(slot: str) -> Job | None:
    """This browser's job in ``slot``: the one this tab started, else one still running."""
    manager, owner = job_manager(), owner_id()
    job = manager.get(st.session_state.get(_slot_key(slot)), owner)
    if job is None:
        job = manager.running(slot, owner)  # a second tab finds the run in progress
        if job is not None:
            st.session_state[_slot_key(slot)] = job.id
    return job


def forget_job(slot: str) -> None:
    """Clear the slot (the job itself goes on, or is evicted when finished)."""
    st.session_state.pop(_slot_key(slot), None)


def job_progress(events: list[Any]) -> tuple[int, int | None]:
    """Units done and expected, from the last ``Started`` and ``Progress`` events."""
    total = next((e.total for e in reversed(events) if isinstance(e, Started)), None)
    done = next((e.step for e in reversed(events) if isinstance(e, Progress)), 0)
    if total is None:
        total = next((e.total for e in reversed(events) if isinstance(e, Progress)), None)
    return done, total


def _job_status(job: Job, events: list[Any], progress: bool) -> None:
    """The job's place in the queue, or its progress bar while it runs."""
    if job.queued:
        place = job_manager().queue_position(job)
        load = job_manager().load()
        st.info(
            f"Waiting for a free slot: you are number {place or 1} in the queue "
            f"({load.running} of {load.max_heavy} heavy runs busy on this machine).",
            icon="⏳",
        )
    elif job.running and progress:
        done, total = job_progress(events)
        unit = next((e.unit for e in reversed(events) if isinstance(e, Started)), "step")
        text = f"{job.label}: {done:,}/{total:,} {unit}s" if total else f"{job.label}: running…"
        st.progress(min(1.0, done / total) if total else 0.0, text=text)


def _job_error(job: Job, events: list[Any]) -> None:
    """The run's error event in one line, or the failure the job itself recorded."""
    error = next((e for e in events if isinstance(e, Error)), None)
    if error is not None:
        show_user_error(UserError(error.message))
    elif job.error:
        st.error(f"The run failed: {job.error}")


def job_panel(
    slot: str,
    draw: Callable[[Job, list[Any]], None] | None = None,
    *,
    run_every: float = 0.5,
    stop_label: str = "Stop",
    progress: bool = True,
    on_finish: Callable[[Job, list[Any]], None] | None = None,
) -> Job | None:
    """The one panel for a background job: queue place, progress, Stop, errors, and ``draw``.

    It polls in a fragment while the job runs; ``draw(job, events)`` lays out what the
    page shows of the events so far. When the job ends, the whole page reruns once (so
    widgets outside the panel see the result) after ``on_finish(job, events)``.
    """
    if current_job(slot) is None:
        return None
    ran_key = f"job:{slot}:was_running"
    running = current_job(slot).running
    if running:
        # the page drew it running: when it ends, rerun once, even if it ends before the
        # fragment's first poll (a short job could otherwise finish unseen)
        st.session_state[ran_key] = True

    @st.fragment(run_every=run_every if running else None)
    def panel() -> None:
        job = current_job(slot)
        if job is None:
            return
        events = job.snapshot()
        _job_status(job, events, progress)
        if job.running and st.button(stop_label, key=f"{slot}_stop", type="secondary"):
            job_manager().stop(job.id, owner_id())
        if draw is not None:
            draw(job, events)
        _job_error(job, events)
        if job.running:
            st.session_state[ran_key] = True
        elif st.session_state.pop(ran_key, False):
            if on_finish is not None:
                on_finish(job, events)
            st.rerun()

    panel()
    return current_job(slot)


def machine_load_caption() -> None:
    """One line on how busy the machine is (no names), when anyone's heavy run is going."""
    load = job_manager().load()
    if load.running or load.queued:
        st.caption(
            f"This machine: {load.running} of {load.max_heavy} heavy runs busy, "
            f"{load.queued} waiting."
        )


def show_user_error(exc: UserError) -> None:
    st.error(str(exc), icon="⚠️")


def page_header(title: str, lesson: str) -> None:
    """Title and a one-paragraph statement of what the lab teaches."""
    st.title(title)
    st.caption(lesson)


CODE_EXPANDER_LABEL = "How it works in code"


def function_source(function: Callable[..., Any] | type) -> str:
    """The source text of a library function or class, as the tests run it."""
    return textwrap.dedent(inspect.getsource(inspect.unwrap(function)))


def code_expander(title: str, functions: Sequence[Callable[..., Any] | type], note: str) -> None:
    """An expander "How it works in code: <title>" with the source of ``functions``.

    The page passes the library's own function objects, so the code shown is the code the
    tests run (read with ``inspect.getsource``). ``note`` says in a sentence or two what the
    fast path the lab uses does differently, and why.
    """
    with st.expander(f"{CODE_EXPANDER_LABEL}: {title}"):
        st.markdown(note)
        # One tab per function when there are several, so each reads from its first line.
        holders = (
            st.tabs([function.__name__ for function in functions])
            if len(functions) > 1
            else [st.container()]
        )
        for holder, function in zip(holders, functions, strict=True):
            with holder:
                st.caption(f"`{function.__module__}.{function.__qualname__}`")
                st.code(function_source(function), language="python", line_numbers=True)


def _model_version(info) -> float:
    """Changes when a model's files change, so a retrained adapter is reloaded."""
    path = getattr(info, "path", None)
    try:
        return path.stat().st_mtime if path is not None and path.exists() else 0.0
    except OSError:
        return 0.0


@st.cache_resource(max_entries=4, show_spinner="Loading the model…")
def _load_model_cached(name: str, version: float):
    from llm_playground.generation.registry import load_model

    return load_model(name)


def cached_model(name: str):
    """A registry model loaded once per app process (not per click), keyed by name and files."""
    from llm_playground.generation.registry import resolve

    return _load_model_cached(name, _model_version(resolve(name)))


def model_picker(
    label: str, key: str, kinds: tuple[str, ...] | None = None, default: str | None = None
) -> str | None:
    """A select box of registry models; unavailable ones are listed with the reason, disabled."""
    from llm_playground.generation.registry import list_models

    infos = [i for i in list_models() if kinds is None or i.kind in kinds]
    usable = [i for i in infos if i.available]
    if not usable:
        st.warning("No model is available. Run `make install` to install the offline models.")
        return None
    names = [i.name for i in usable]
    index = names.index(default) if default in names else 0
    labels = {i.name: i.label for i in usable}
    choice = st.selectbox(label, names, index=index, key=key, format_func=lambda n: labels[n])
    missing = [i for i in infos if not i.available]
    if missing:
        st.caption("Not available here: " + "; ".join(esc(i.label) for i in missing))
    return choice


def uploaded_bytes(upload: Any, max_bytes: int, what: str = "file") -> bytes:
    """An uploaded file's bytes, refused with the limit in the message when larger.

    Pages read files from the browser only through an uploader and this cap, never
    through a typed server path.
    """
    from llm_playground.core.textfiles import size_text

    size = getattr(upload, "size", None)
    if size is not None and size > max_bytes:
        raise UserError(f"{upload.name} is larger than the {size_text(max_bytes)} a {what} may be")
    data = upload.getvalue()
    if len(data) > max_bytes:
        raise UserError(f"{upload.name} is larger than the {size_text(max_bytes)} a {what} may be")
    return data


def safe_home_name(name: str, what: str = "name") -> str:
    """A plain file name for something kept inside the playground home (no folders, no
    ``..``, no absolute path): see :func:`llm_playground.core.paths.check_name`. Returns the
    name stripped of surrounding spaces, else raises UserError (show it beside the widget)."""
    from llm_playground.core.paths import check_name

    return check_name(name, what)
