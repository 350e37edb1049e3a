"""The Evaluator page: AppTest on widgets by key, and one journey in a real browser."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

ROOT = Path(__file__).resolve().parents[1]
PAGE = ROOT / "src/llm_playground/ui/labs/evaluator.py"


@pytest.fixture
def app():
    at = AppTest.from_file(str(PAGE), default_timeout=120)
    at.run()
    assert not at.exception, at.exception
    return at


def _by_key(elements, key):
    return next(e for e in elements if e.key == key)


def _wait_for_job(at: AppTest, slot: str, timeout: float = 180) -> None:
    from llm_playground.ui.components import job_manager

    job = job_manager().get(at.session_state[f"job:{slot}"], None)
    assert job is not None
    deadline = time.time() + timeout
    while job.running and time.time() < deadline:
        time.sleep(0.2)
    assert not job.running and job.error is None, job.error
    at.run()
    assert not at.exception, at.exception


def test_the_page_shows_every_tab_with_keyed_widgets(app):
    keys = {
        w.key
        for w in [
            *app.selectbox,
            *app.radio,
            *app.text_area,
            *app.text_input,
            *app.number_input,
            *app.button,
        ]
    }
    assert {
        "ev_ppl_model",
        "ev_ppl_data",
        "ev_ppl_stride",
        "ev_ppl_maxlen",
        "ev_ppl_maxtok",
        "ev_ppl_run",
        "ev_ref_mode",
        "ev_bleu_hyp",
        "ev_bleu_ref",
        "ev_bleu_run",
        "ev_judge_kind",
        "ev_judge_questions",
        "ev_judge_answers",
        "ev_judge_run",
        "ev_lb_data",
    } <= keys
    text = " ".join(m.value for m in app.markdown)
    assert "bits per byte" in text.lower() and "do not compare" in text
    assert any("CC BY-SA 3.0" in c.value for c in app.caption)
    assert any("No results yet" in i.value for i in app.info)


def test_bleu_known_answer_on_the_page_and_the_short_string_warning(app):
    _by_key(app.text_area, "ev_bleu_hyp").set_value(
        "The dog bit the man.\nIt wasn't surprising.\nThe man had just bitten him."
    )
    _by_key(app.text_area, "ev_bleu_ref").set_value(
        "The dog bit the man.\nIt was not unexpected.\nThe man bit him first."
    )
    _by_key(app.button, "ev_bleu_run").click().run()
    assert not app.exception
    from llm_playground.evaluation import metrics

    hyps = ["The dog bit the man.", "It wasn't surprising.", "The man had just bitten him."]
    refs = ["The dog bit the man.", "It was not unexpected.", "The man bit him first."]
    expected = metrics.bleu_chrf(hyps, [refs])
    shown = {m.label: m.value for m in app.metric}
    assert shown["BLEU (corpus)"] == f"{expected.bleu:.2f}"
    assert shown["chrF (corpus)"] == f"{expected.chrf:.2f}"
    assert any("nrefs:1|case:mixed|eff:no|tok:13a" in c.value for c in app.caption)
    # The default example holds a correct one-word answer that sentence BLEU scores 0.
    _by_key(app.text_area, "ev_bleu_hyp").set_value("The dog bit the man.\nFour")
    _by_key(app.text_area, "ev_bleu_ref").set_value("The dog bit the man.\nTwo plus two is four.")
    _by_key(app.button, "ev_bleu_run").click().run()
    assert any("Sentence BLEU is 0" in w.value and "chrF" in w.value for w in app.warning)


def test_mismatched_lines_show_a_clear_error(app):
    _by_key(app.text_area, "ev_bleu_hyp").set_value("one\ntwo")
    _by_key(app.text_area, "ev_bleu_ref").set_value("one")
    _by_key(app.button, "ev_bleu_run").click().run()
    assert not app.exception
    assert any("1 lines but the hypotheses have 2" in e.value for e in app.error)


def test_perplexity_run_on_pasted_text_reaches_the_leaderboard(app):
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        _by_key(app.radio, "ev_ppl_data").set_value("pasted").run()
        _by_key(app.text_area, "ev_ppl_text").set_value(
            "The quick brown fox jumps over the lazy dog. It was a bright cold day in April, and the "
            "clocks were striking thirteen."
        )
        _by_key(app.number_input, "ev_ppl_stride").set_value(16)
        _by_key(app.number_input, "ev_ppl_maxlen").set_value(32)
        _by_key(app.selectbox, "ev_ppl_dtype").set_value("float32")
        _by_key(app.button, "ev_ppl_run").click().run()
        assert not app.exception
        _wait_for_job(app, "evaluator-perplexity")
    finally:
        torch.set_num_threads(threads)
    shown = {m.label: m.value for m in app.metric}
    assert {"Token perplexity", "Word perplexity", "Bits per byte"} <= set(shown)
    assert any("pasted text" in c.value and "stride 16" in c.value for c in app.caption)
    from llm_playground.evaluation.leaderboard import Leaderboard

    row = Leaderboard().leaderboard(human_ratings=[])[0]
    assert row["model"] == "smollm2-135m-instruct" and row["perplexity_data"] == "pasted text"
    assert shown["Token perplexity"] == f"{row['token_perplexity']:.2f}"
    tables = [d.value for d in app.dataframe if "perplexity_data" in d.value.columns]
    assert tables and tables[0].loc[0, "perplexity_data"] == "pasted text"


def test_api_judge_without_key_explains_and_with_server_scores(app, monkeypatch):
    from test_judge import SECRET, JudgeServer

    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    _by_key(app.radio, "ev_judge_kind").set_value("OpenAI-compatible API").run()
    assert any("no API key" in i.value for i in app.info)
    with JudgeServer() as server:
        _by_key(app.text_input, "ev_judge_url").set_value(server.url("ok"))
        _by_key(app.text_input, "ev_judge_key").set_value(SECRET)
        _by_key(app.button, "ev_judge_run").click().run()
        _wait_for_job(app, "evaluator-judge", timeout=30)
    shown = {m.label: m.value for m in app.metric}
    assert shown["Mean judge score"].startswith("8.00")
    table = next(d.value for d in app.dataframe if "reason" in d.value.columns)
    assert list(table["score"]) == [8, 8, 8]
    from llm_playground.evaluation.leaderboard import Leaderboard

    row = Leaderboard().leaderboard(human_ratings=[])[0]
    assert row["model"] == "example answers" and row["judge_score"] == 8


@pytest.mark.browser
def test_browser_journey_perplexity_and_leaderboard(app_url, page):
    page.goto(app_url + "/evaluator")
    page.get_by_text("Lab 5 · Evaluator").first.wait_for()
    page.get_by_text("Pasted text").first.click()
    area = page.get_by_role("textbox", name="Your text")
    area.fill("The quick brown fox jumps over the lazy dog. It was a bright cold day in April.")
    area.press("Control+Enter")
    page.get_by_role("button", name="Compute perplexity").click()
    page.locator("[data-testid='stMetricLabel']", has_text="Bits per byte").wait_for(
        timeout=120_000
    )
    page.get_by_role("tab", name="Leaderboard").click()
    page.get_by_role("button", name="Download CSV").wait_for(timeout=30_000)
    page.get_by_text("Click a column header to sort").wait_for()
    page.locator("[data-testid='stDataFrame']:visible").first.wait_for(timeout=30_000)
    page.locator("[data-testid='stVegaLiteChart']:visible").first.wait_for(timeout=30_000)


def test_benchmarks_tab_shows_published_figures_and_the_reading_notes(app):
    published = next(d.value for d in app.dataframe if "published %" in d.value.columns)
    assert {"SmolLM2-135M", "Gemma 3 270M PT"} <= set(published["model"])
    smol = published[(published["model"] == "SmolLM2-135M") & (published["benchmark"] == "PIQA")]
    assert list(smol["published %"]) == [68.4] and list(smol["shots"]) == [0]
    assert {e.label for e in app.expander} >= {
        "Shots",
        "acc vs acc_norm",
        "Cloze vs multiple-choice",
    }
    assert "playground_next_line" in _by_key(app.multiselect, "ev_bench_tasks").value
    _by_key(app.number_input, "ev_bench_shots").set_value(0)
    _by_key(app.multiselect, "ev_bench_tasks").set_value([])
    _by_key(app.button, "ev_bench_run").click().run()
    assert any("no task given" in e.value for e in app.error)


def test_the_page_takes_no_typed_server_path(app):
    _by_key(app.radio, "ev_ppl_data").set_value("upload").run()
    assert not app.exception
    labels = [w.label.lower() for w in app.text_input]
    assert not any("path" in label or "file" in label for label in labels)
    _by_key(app.button, "ev_ppl_run").click().run()
    assert any("upload first" in e.value for e in app.error)


def test_a_typed_base_url_does_not_get_the_servers_key(app, monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", "sk-server-only")
    _by_key(app.radio, "ev_judge_kind").set_value("OpenAI-compatible API").run()
    _by_key(app.text_input, "ev_judge_url").set_value("https://elsewhere.example/v1").run()
    assert any("needs its own API key" in i.value for i in app.info)


@pytest.mark.browser
@pytest.mark.slow
def test_browser_benchmark_on_the_local_task_beside_the_published_figures(app_url, page):
    page.goto(app_url + "/evaluator")
    page.get_by_text("Lab 5 · Evaluator").first.wait_for()
    page.get_by_role("tab", name="Benchmarks").click()
    page.get_by_text("Published (model cards)").wait_for()
    docs = page.get_by_role("spinbutton", name="Documents per task")
    docs.fill("2")
    docs.press("Enter")
    page.get_by_role("button", name="Run the benchmark").click()
    page.get_by_text("Recorded in the leaderboard with task version").first.wait_for(
        timeout=240_000
    )
    page.get_by_text("v1.0, 0-shot: acc_norm").first.wait_for(timeout=30_000)
    assert page.locator("[data-testid='stDataFrame']:visible").count() >= 2  # published, yours
