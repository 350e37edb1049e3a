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
