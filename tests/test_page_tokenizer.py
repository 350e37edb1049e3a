"""The Lab 1 page: AppTest by widget keys, and the real app in headless Chromium."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from llm_playground.tokenization import assets
from llm_playground.tokenization.tokenizer import available_tokenizers, get_tokenizer

PAGE = Path(__file__).resolve().parents[1] / "src/llm_playground/ui/labs/tokenizer.py"


@pytest.fixture(scope="module", autouse=True)
def tiktoken_assets():
    assets.install_tiktoken_assets()


@pytest.fixture
def at():
    app = AppTest.from_file(str(PAGE), default_timeout=90)
    app.run()
    assert not app.exception
    return app


def _token_counts(at) -> list[str]:
    return [m.value for m in at.metric if m.label == "Tokens"]


def _html(at) -> str:
    return "".join(h.proto.body for h in at.get("html"))


def test_tokenizers_side_by_side(at):
    assert at.multiselect(key="tok_names").value == ["gpt2", "cl100k_base", "o200k_base"]
    at.text_area(key="tok_text").set_value("Hello world, To be or not to be!").run()
    assert _token_counts(at) == ["10", "10", "10"]
    assert "15496" in at.get("html")[0].proto.body  # gpt2's id of "Hello" in the hover titles
    at.multiselect(key="tok_names").set_value(["gpt2", "char"]).run()
    assert _token_counts(at) == ["10", "32"]


def test_examples_and_user_text_is_escaped(at):
    at.selectbox(key="tok_example").set_value("Several languages").run()
    assert "你好" in at.text_area(key="tok_text").value
    at.text_area(key="tok_text").set_value('<script>alert("x")</script>').run()
    html = _html(at)
    assert "<script>" not in html and '"x"' not in html and "&quot;" in html


def test_unseen_characters_are_an_error_in_that_column_only(at):
    at.multiselect(key="tok_names").set_value(["char", "gpt2"]).run()
    at.text_area(key="tok_text").set_value("naïve café").run()
    assert not at.exception
    assert any("not in the char tokenizer" in e.value for e in at.error)
    assert _token_counts(at) == [
        str(len(get_tokenizer("gpt2").encode("naïve café")))
    ]  # gpt2 still shown


def test_cleaning_shows_before_after_and_changes(at):
    at.selectbox(key="tok_example").set_value("HTML").run()
    before = _token_counts(at)
    at.toggle(key="tok_clean_html").set_value(True).run()
    at.toggle(key="tok_clean_ws").set_value(True).run()
    after = _token_counts(at)
    assert all(int(a) < int(b) for a, b in zip(after, before, strict=True))
    codes = [c.value for c in at.code]
    assert any("<script>" in c for c in codes)  # the text before cleaning
    assert any(c.startswith("Café menu") and "alert" not in c for c in codes)
    assert any("Cleaning:" in c.value and "unchanged" in c.value for c in at.caption)
    assert [m.delta for m in at.metric if m.label == "Tokens"][0].endswith("after cleaning")


def test_train_replay_save_and_load_bpe(at, playground_home):
    at.radio(key="bpe_source").set_value("The text box").run()
    at.text_area(key="tok_text").set_value("low lower lowest newer newest " * 20).run()
    at.number_input(key="bpe_vocab").set_value(270).run()
    at.button(key="bpe_train").click().run()
    deadline = time.time() + 60
    while "bpe_tok" not in at.session_state or at.session_state["bpe_tok"] is None:
        assert time.time() < deadline, "training did not finish"
        time.sleep(0.3)
        at.run()
    assert not at.exception
    assert any("Trained 270 tokens" in s.value for s in at.success)
    assert len(at.dataframe[0].value) == 14  # the merges in order
    assert at.dataframe[0].value["rank"].tolist() == list(range(1, 15))
    slider = at.slider(key="bpe_step")
    assert slider.value == slider.max > 0
    slider.set_value(0).run()
    assert any("Raw bytes" in c.value for c in at.caption)
    at.slider(key="bpe_step").set_value(1).run()
    assert any(c.value.startswith("Merge #1:") for c in at.caption)
    at.text_input(key="bpe_save_name").set_value("low-270").run()
    at.button(key="bpe_save").click().run()
    assert (playground_home / "tokenizers" / "low-270.json").is_file()
    assert any("Saved bpe:low-270" in s.value for s in at.success)
    assert "bpe:low-270" in available_tokenizers()
    assert "bpe:low-270" in at.multiselect(key="tok_names").options
    at.button(key="bpe_save").click().run()  # the same name again: refused without the box
    assert any("already saved" in e.value for e in at.error)
    at.checkbox(key="bpe_save_replace").check().run()
    at.button(key="bpe_save").click().run()
    assert not any("already saved" in e.value for e in at.error)
    at.text_input(key="bpe_save_name").set_value("../outside").run()
    at.button(key="bpe_save").click().run()
    assert any("must be letters" in e.value for e in at.error)
    assert sorted(p.name for p in (playground_home / "tokenizers").iterdir()) == ["low-270.json"]
    at.selectbox(key="bpe_load_name").set_value("bpe:low-270").run()
    at.button(key="bpe_load").click().run()
    assert any("Loaded bpe:low-270" in s.value for s in at.success)


@pytest.mark.browser
def test_typing_changes_the_token_count_in_chromium(app_url, page):
    page.goto(app_url + "/tokenizer")
    page.get_by_text("Lab 1 · Tokenizer").first.wait_for()
    counts = page.locator('[data-testid="stMetricValue"]')
    counts.first.wait_for()
    box = page.get_by_label("Text", exact=True)
    box.fill("Hello world, To be or not to be!")
    box.press("Control+Enter")
    page.wait_for_function(
        "() => document.querySelector('[data-testid=\"stMetricValue\"]')?.innerText.trim() === '10'"
    )
    pieces = page.locator(".lp-tok")
    assert pieces.first.get_attribute("title") == "id 15496 · bytes 48 65 6c 6c 6f"
    box.fill("Hello")
    box.press("Control+Enter")
    page.wait_for_function(
        "() => document.querySelector('[data-testid=\"stMetricValue\"]')?.innerText.trim() === '1'"
    )
