"""The app shell: the home page introduces the labs, in AppTest and in a real browser."""

from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

APP = Path(__file__).resolve().parents[1] / "src/llm_playground/ui/app.py"


def test_home_page_renders_and_names_every_lab(monkeypatch):
    monkeypatch.delenv("LLM_PLAYGROUND_ACCESS_CODE", raising=False)  # no gate: see test_serve
    at = AppTest.from_file(str(APP), default_timeout=60).run()
    assert not at.exception
    text = " ".join(m.value for m in at.markdown) + " ".join(s.value for s in at.subheader)
    for lab in ("Tokenizer", "Training ground", "Generation", "Fine-tuner", "Evaluator"):
        assert lab in text


@pytest.mark.browser
def test_home_page_in_chromium(app_url, page):
    page.goto(app_url)
    page.get_by_text("LLM Playground", exact=False).first.wait_for()
    assert page.get_by_text("Lab 1 · Tokenizer").first.is_visible()
