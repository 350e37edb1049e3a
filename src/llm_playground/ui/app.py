"""LLM Playground web app: ``llm-playground serve`` (or ``streamlit run src/llm_playground/ui/app.py``).

``serve`` runs it through ``app_server.py``, behind the server guard (``server_guard.py``:
only this server's names, no uploads before the access code, no error details).

``st.navigation`` holds one page per lab; each page is a thin file in ``labs/`` that
calls the library. (The folder is deliberately not called ``pages/``: Streamlit treats a
``pages/`` folder beside the main script as an old-style page list and shows file names
in the sidebar instead of these titles.) When the server has an access code, the gate
comes first: until this browser has typed the code, the script stops before any page or
navigation exists.
"""

from __future__ import annotations

from pathlib import Path

import streamlit as st

from llm_playground.ui.gate import require_access

HERE = Path(__file__).resolve().parent
PAGES = HERE / "labs"

st.set_page_config(page_title="LLM Playground", page_icon="🧪", layout="wide")

if not require_access():
    st.stop()

LABS = [
    ("tokenizer.py", "Lab 1 · Tokenizer", "🔤", "tokenizer"),
    ("training.py", "Lab 2 · Training ground", "🏋️", "training"),
    ("generation.py", "Lab 3 · Generation", "🎲", "generation"),
    ("finetuner.py", "Lab 4 · Fine-tuner", "🎛️", "finetuner"),
    ("evaluator.py", "Lab 5 · Evaluator", "📏", "evaluator"),
    ("inside.py", "Lab 6 · Inside the model", "🔬", "inside"),
]

home = st.Page(str(PAGES / "home.py"), title="Home", icon="🏠", url_path="home", default=True)
labs = [
    st.Page(str(PAGES / file), title=title, icon=icon, url_path=url)
    for file, title, icon, url in LABS
    if (PAGES / file).exists()
]
st.navigation({"LLM Playground": [home], "Labs": labs}).run()
