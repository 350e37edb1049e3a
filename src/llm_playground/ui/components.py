"""Widgets and helpers shared by the pages. No ML logic lives here."""

from __future__ import annotations

import html

import streamlit as st

from llm_playground.errors import UserError
from llm_playground.jobs import JobManager


def esc(text: object) -> str:
    """Escape user text for HTML (quotes included). Every page renders HTML through this."""
    return html.escape(str(text), quote=True)


@st.cache_resource
def job_manager() -> JobManager:
    """The process-wide manager of background jobs (training, fine-tuning, long evaluations)."""
    return JobManager()


def show_user_error(exc: UserError) -> None:
    st.error(str(exc), icon="⚠️")


def page_header(title: str, lesson: str) -> None:
    """Title and a one-paragraph statement of what the lab teaches."""
    st.title(title)
    st.caption(lesson)


def _model_version(info) -> float:
    """Changes when a model's files change, so a retrained adapter is reloaded."""
    path = getattr(info, "path", None)
    try:
        return path.stat().st_mtime if path is not None and path.exists() else 0.0
    except OSError:
        return 0.0


@st.cache_resource(max_entries=4, show_spinner="Loading the model…")
def _load_model_cached(name: str, version: float):
    from llm_playground.registry import load_model

    return load_model(name)


def cached_model(name: str):
    """A registry model loaded once per app process (not per click), keyed by name and files."""
    from llm_playground.registry import resolve

    return _load_model_cached(name, _model_version(resolve(name)))


def model_picker(label: str, key: str, kinds: tuple[str, ...] | None = None,
                 default: str | None = None) -> str | None:
    """A select box of registry models; unavailable ones are listed with the reason, disabled."""
    from llm_playground.registry import list_models

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
