"""What the tabs of Lab 5 share: loading the chosen model, and the leaderboard's answer."""

from __future__ import annotations

import streamlit as st

from llm_playground.core.errors import UserError
from llm_playground.evaluation import runs
from llm_playground.ui.components import cached_model, show_user_error


def load_model(name: str | None):
    """The chosen model, loaded once per process; None (with the reason beside the picker)
    when there is none or it cannot be loaded."""
    if not name:
        return None
    try:
        return cached_model(name)
    except UserError as exc:
        show_user_error(exc)
        return None


def recorded_note(events) -> None:
    """Say what became of the result in the leaderboard (a refusal as an error)."""
    outcome = runs.last_recorded(events)
    if outcome is not None and outcome.error:
        st.error(outcome.error, icon="⚠️")
