"""The app as ``llm-playground serve`` runs it: ``app.py`` behind the server guard.

``streamlit run`` on this file finds the ``st.App`` below and serves ``app.py`` through
it, with :class:`~llm_playground.ui.server_guard.ServerGuard` in front of every request
and a short message instead of Streamlit's error report (see
:mod:`llm_playground.ui.server_guard`).
"""

from pathlib import Path

import streamlit as st
from starlette.middleware import Middleware

from llm_playground.ui.server_guard import ServerGuard, short_error_message

APP_SCRIPT = Path(__file__).resolve().with_name("app.py")

app = st.App(
    APP_SCRIPT,
    middleware=[Middleware(ServerGuard, script_path=str(APP_SCRIPT))],
    on_script_error=short_error_message,
)
