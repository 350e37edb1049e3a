"""Lab 3 page: a short greedy generation in AppTest, and the page in a real browser."""

from __future__ import annotations

import re
import time
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from llm_playground.generation.penalties import PENALTY_SETTINGS
from llm_playground.generation.samplers import CHAIN_SETTINGS

PAGE = Path(__file__).resolve().parents[1] / "src/llm_playground/ui/labs/generation.py"


def _page() -> AppTest:
    at = AppTest.from_file(str(PAGE), default_timeout=120)
    at.run()
    assert not at.exception, at.exception
    return at


def _text(at: AppTest) -> str:
    return " ".join(
        [m.value for m in at.markdown] + [c.value for c in at.caption] + [e.value for e in at.error]
    )


def test_page_generates_greedy_and_shows_steps():
    at = _page()
    assert "Temperature 0 means greedy" in _text(at)
    at.radio(key="gen_strategy").set_value("greedy")
    at.number_input(key="gen_max_new").set_value(6)
    at.text_area(key="gen_prompt").set_value("What is the capital of France?")
    at.run()
    at.button(key="gen_run").click().run()
    assert not at.exception, at.exception
    deadline = time.time() + 120
    while time.time() < deadline and not any(m.label == "New tokens" for m in at.metric):
        time.sleep(0.5)
        at.run()
    metrics = {m.label: m.value for m in at.metric}
    assert 1 <= int(metrics["New tokens"]) <= 6
    assert metrics["Time"].endswith(" s") and "Tokens/s" in metrics
    assert "Paris" in _text(at)
    # the step-by-step view: a candidates table whose first step has a picked token
    assert any(s.value == "Step by step" for s in at.subheader)
    table = at.dataframe[0].value  # the candidates of step 1
    assert list(table["status"]).count("picked") == 1
    assert (table["status"] == "picked").iloc[0]  # greedy picks the most likely


def test_page_explains_bad_settings():
    at = _page()
    at.radio(key="gen_strategy").set_value("top-p")
    at.slider(key="gen_top_p").set_value(0.0)
    at.run()
    assert any("top-p must be in (0, 1]" in e.value for e in at.error)
    assert at.button(key="gen_run").disabled
    # one widget per setting the stages describe (a new stage gets its widget by itself)
    keys = {w.key for w in [*at.slider, *at.number_input]}
    assert {f"gen_{s.field}" for s in (*CHAIN_SETTINGS, *PENALTY_SETTINGS)} <= keys
    at.slider(key="gen_top_p").set_value(0.9)
    at.number_input(key="gen_max_new").set_value(9000)
    at.run()
    assert any("context" in e.value for e in at.error)


@pytest.mark.slow
@pytest.mark.browser
def test_generation_page_in_chromium(app_url, page):
    page.goto(app_url + "/generation")
    page.get_by_text("Lab 3 · Generation").first.wait_for()
    page.get_by_text("Greedy", exact=True).first.click()
    box = page.get_by_role("spinbutton", name="Max new tokens")
    box.fill("8")
    box.press("Enter")
    page.get_by_role("button", name="Generate").click()
    page.get_by_text("Step by step").wait_for(timeout=120_000)
    assert page.locator(".gen-output").first.inner_text().strip()
    page.get_by_text("Time").first.wait_for(state="visible")
    page.get_by_text("Tokens/s").first.wait_for(state="visible")


def test_page_stop_button_and_comparison_grid():
    at = _page()
    at.radio(key="gen_strategy").set_value("greedy")
    at.text_area(key="gen_prompt").set_value("Count from 1 to 300, separated by commas.")
    at.number_input(key="gen_max_new").set_value(300)
    at.run()
    at.button(key="gen_run").click().run()
    assert not at.exception, at.exception
    at.button(key="gen_stop").click().run()
    deadline = time.time() + 60
    while time.time() < deadline and not any(m.label == "Ended by" for m in at.metric):
        time.sleep(0.5)
        at.run()
    metrics = {m.label: m.value for m in at.metric}
    assert metrics["Ended by"] == "Stop" and int(metrics["New tokens"]) < 300

    at.number_input(key="gen_max_new").set_value(3)
    at.slider(key="gen_beams").set_value(2)
    at.run()
    at.button(key="gen_compare").click().run()
    assert not at.exception, at.exception
    assert any(s.value == "Every strategy, same prompt" for s in at.subheader)
    # the comparison runs in the background; the grid fills in as each strategy finishes
    deadline = time.time() + 120
    while time.time() < deadline and sum("tokens/s" in c.value for c in at.caption) < 4:
        time.sleep(0.5)
        at.run()
    assert not at.exception, at.exception
    assert sum("tokens/s" in c.value for c in at.caption) == 4


def _slider_to(page, label: str, presses: int) -> None:
    slider = page.get_by_role("slider", name=label)
    slider.focus()
    for _ in range(presses):
        slider.press("ArrowRight")


@pytest.mark.browser
def test_min_p_run_shows_the_attribution_in_chromium(app_url, page):
    page.goto(app_url + "/generation")
    page.get_by_text("Lab 3 · Generation").first.wait_for()
    strategy = page.locator("[data-testid='stRadio']").get_by_text("Sampler chain", exact=True)
    strategy.wait_for(timeout=120_000)  # the model loads first
    strategy.click()
    page.get_by_role("tab", name="Sampler chain").click()
    _slider_to(page, "Min-p", 30)  # min-p 0.30
    box = page.get_by_role("spinbutton", name="Max new tokens")
    box.fill("4")
    box.press("Enter")
    page.get_by_text(re.compile(r"sampling through .*min_p")).first.wait_for()
    page.get_by_role("button", name="Generate").click()
    page.get_by_text("Step by step").wait_for(timeout=180_000)
    page.get_by_text("The distribution after each stage").wait_for()
    why = page.locator(".gen-why").first
    why.wait_for()
    assert "cut by min_p" in why.inner_text()


@pytest.mark.slow
@pytest.mark.browser
def test_prompt_lookup_run_marks_drafts_in_chromium(app_url, page):
    page.goto(app_url + "/generation")
    page.get_by_text("Lab 3 · Generation").first.wait_for()
    greedy = page.get_by_text("Greedy", exact=True).first
    greedy.wait_for(timeout=120_000)  # the model loads first
    greedy.click()
    page.get_by_role("tab", name="Speed").click()
    page.get_by_text("prompt-lookup", exact=True).click()
    page.get_by_label("Prompt", exact=True).fill(
        "Rewrite this paragraph with the word 'old' changed to 'ancient', keeping everything "
        "else the same:\n\nThe old lighthouse stood on the rocky cliff above the harbour. "
        "Every night its keeper climbed the spiral stairs, lit the great lamp and watched the "
        "ships pass safely through the narrow channel."
    )
    box = page.get_by_role("spinbutton", name="Max new tokens")
    box.fill("40")
    box.press("Enter")
    page.get_by_text("prompt-lookup drafts").first.wait_for()
    page.get_by_role("button", name="Generate").click()
    page.locator(".spec-view").first.wait_for(timeout=180_000)
    assert page.locator(".spec-accepted").count() >= 5
    assert page.locator(".spec-rejected").count() >= 1
    page.get_by_text("Tokens per pass").first.wait_for()
