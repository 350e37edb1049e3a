"""The Training ground page: in AppTest (widgets by key) and in a real browser."""

import re
import time
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from llm_playground.ui.components import job_manager

SOURCE = Path(__file__).resolve().parents[1] / "src/llm_playground/ui/labs/training.py"

PAGE = Path(__file__).resolve().parents[1] / "src/llm_playground/ui/labs/training.py"


def app() -> AppTest:
    return AppTest.from_file(str(PAGE), default_timeout=120).run()


def text_of(at: AppTest) -> str:
    parts = [m.value for m in at.markdown] + [c.value for c in at.caption]
    parts += (
        [e.value for e in at.error] + [s.value for s in at.success] + [i.value for i in at.info]
    )
    return "\n".join(str(p) for p in parts)


@pytest.fixture(autouse=True)
def no_runs_left_over():
    yield
    jm = job_manager()
    for job in jm.jobs("train"):
        jm.stop(job.id)
        jm.wait(job.id, 30)


def test_page_shows_settings_batch_and_summary_before_training():
    at = app()
    assert not at.exception
    assert at.selectbox(key="train_preset").value == "baby-gpt"
    assert at.select_slider(key="train_lr").value == 1e-3
    metrics = {m.label: m.value for m in at.metric}
    assert metrics["Parameters"] == "809,856"
    text = text_of(at)
    assert "y: the same text shifted by one token" in text and "vocabulary 65" in text
    assert 'class="x"' in text and 'class="y"' in text
    assert not at.button(key="train_start").disabled
    assert not [b for b in at.button if b.key == "train_stop"]  # no Stop before a run


def test_the_page_lays_out_widgets_only():
    for path in (SOURCE, SOURCE.parents[1] / "race_view.py"):
        source = path.read_text()
        assert "import torch" not in source and "build_model" not in source
        assert "job_manager" not in source and "st.fragment" not in source


def test_impossible_settings_are_explained_and_block_start():
    at = app()
    at.slider(key="train_n_head").set_value(3).run()
    assert not at.exception
    assert any("not divisible by the number of heads 3" in e.value for e in at.error)
    assert at.button(key="train_start").disabled


def test_the_speedrun_preset_sets_every_switch_and_explains_the_export():
    at = app()
    at.selectbox(key="train_preset").set_value("speedrun").run()
    assert not at.exception
    assert at.selectbox(key="train_optimizer").value == "muon"
    assert at.selectbox(key="train_pos").value == "rope"
    assert at.selectbox(key="train_mlp").value == "relu2"
    assert at.checkbox(key="train_qk_norm").value and at.checkbox(key="train_untied_head").value
    assert "no Hugging Face GPT-2 export" in text_of(at)
    params = int({m.label: m.value for m in at.metric}["Parameters"].replace(",", ""))
    assert abs(params - 809_856) / 809_856 < 0.25
    at.selectbox(key="train_pos").set_value("learned").run()
    assert (
        int({m.label: m.value for m in at.metric}["Parameters"].replace(",", ""))
        == params + 64 * 128
    )


def test_a_preset_sets_the_sliders():
    at = app()
    at.selectbox(key="train_preset").set_value("lecture-gpt").run()
    assert at.select_slider(key="train_n_embd").value == 384
    assert (
        at.slider(key="train_n_layer").value == 6 and at.slider(key="train_batch_size").value == 64
    )
    at.selectbox(key="train_preset").set_value("bigram").run()
    assert (
        at.slider(key="train_n_layer").disabled and at.select_slider(key="train_lr").value == 1e-2
    )
    assert {m.label: m.value for m in at.metric}["Parameters"] == f"{65 * 65:,}"


def _tiny(at: AppTest) -> AppTest:
    at.select_slider(key="train_n_embd").set_value(16)
    at.slider(key="train_n_layer").set_value(1)
    at.slider(key="train_n_head").set_value(2)
    at.select_slider(key="train_block_size").set_value(8)
    at.slider(key="train_batch_size").set_value(4)
    at.slider(key="train_max_iters").set_value(5000)
    at.selectbox(key="train_dtype").set_value("float32")
    return at.run()


def _wait_for_steps(job, n, timeout=120):
    from llm_playground.training.events import TrainStep

    deadline = time.time() + timeout
    while time.time() < deadline:
        if sum(isinstance(e, TrainStep) for e in job.events_since(0)) >= n:
            return
        time.sleep(0.2)
    raise AssertionError(f"no {n} steps within {timeout} s: {job.error}")


def test_a_tiny_run_starts_survives_a_second_tab_and_stops():
    at = _tiny(app())
    at.button(key="train_start").click().run()
    assert not at.exception
    jm = job_manager()
    job = jm.running("train")
    assert job is not None and at.session_state["job:train"] == job.id
    _wait_for_steps(job, 3)

    # a rerun and a second tab find the same run: no duplicate, Start disabled, Stop enabled
    at.run()
    other = app()
    assert len([j for j in jm.jobs("train") if j.running]) == 1
    assert other.session_state["job:train"] == job.id
    assert other.button(key="train_start").disabled and not other.button(key="train_stop").disabled
    # a start that sneaks through (a double click) gets the running job back
    again = jm.start("train", "again", lambda stop: iter(()), owner=job.owner)
    assert again is job and len(jm.jobs("train")) == 1

    at.button(key="train_stop").click().run()
    assert jm.wait(job.id, 60)
    at.run()
    assert not at.exception
    assert re.search(r"stopped after [\d,]+ steps", text_of(at))
    assert {m.label for m in at.metric} >= {"Step", "Validation loss"}
    assert re.search(r"Sample at step [\d,]+", text_of(at))

    # the stopped model can be saved under a name, then it is listed
    at.text_input(key="train_save_name").input("tiny-run")
    at.button(key="train_save").click().run()
    assert any("Saved as" in s.value for s in at.success)
    from llm_playground.training.checkpoints import list_runs

    assert [r.name for r in list_runs()] == ["tiny-run"]


@pytest.mark.browser
def test_training_in_chromium(app_url, page):
    page.goto(app_url + "/training")
    page.get_by_text("One batch, as the model sees it").wait_for(timeout=90_000)
    page.get_by_role("button", name="Start training").click()
    progress = page.get_by_text(re.compile(r"step [\d,]+ of 2,000")).first
    progress.wait_for(timeout=120_000)

    def step_now() -> int:
        return int(re.search(r"step ([\d,]+) of", progress.inner_text()).group(1).replace(",", ""))

    first = step_now()
    deadline = time.time() + 90
    while step_now() <= first and time.time() < deadline:
        time.sleep(1)
    assert step_now() > first  # the page updates while the run goes on
    page.locator("[data-testid='stVegaLiteChart'], .vega-embed").first.wait_for(timeout=60_000)
    page.get_by_text(re.compile(r"Sample at step [\d,]+")).first.wait_for()
    page.get_by_role("button", name="Stop").click()
    # .first: while the panel hands over to the page's rerun, the line can briefly show twice
    page.get_by_text(re.compile(r"stopped after [\d,]+ steps")).first.wait_for(timeout=60_000)


@pytest.fixture(scope="module")
def capped_app_url(tmp_path_factory):
    """The real app with one heavy run at a time (LLM_PLAYGROUND_MAX_JOBS=1), as a class server."""
    from conftest import running_app

    home = tmp_path_factory.mktemp("capped-home")
    with running_app(home, {"LLM_PLAYGROUND_MAX_JOBS": "1"}) as url:
        yield url


@pytest.mark.browser
@pytest.mark.slow
def test_two_people_each_see_only_their_own_run_and_the_second_waits(capped_app_url, browser):
    people = [browser.new_context(viewport={"width": 1400, "height": 1000}) for _ in range(2)]
    try:
        first, second = (context.new_page() for context in people)
        for tab in (first, second):
            tab.set_default_timeout(60_000)
            tab.goto(capped_app_url + "/training")
            tab.get_by_text("One batch, as the model sees it").wait_for(timeout=120_000)
        for tab in (first, second):  # the bigram: the cheapest run there is
            tab.get_by_test_id("stSelectbox").first.click()
            tab.get_by_role("option", name="bigram").click()
            tab.get_by_text("Parameters").first.wait_for()
            tab.get_by_text("4,225").first.wait_for()
        progress = re.compile(r"step [\d,]+ of 3,000")
        first.get_by_role("button", name="Start training").click()
        first.get_by_text(progress).first.wait_for(timeout=120_000)
        second.get_by_role("button", name="Start training").click()
        second.get_by_text(re.compile("you are number 1 in the queue")).wait_for()
        # each person sees one Stop button, their own; nobody sees another's progress
        assert first.get_by_role("button", name="Stop", exact=True).count() == 1
        assert second.get_by_role("button", name="Stop", exact=True).count() == 1
        assert second.get_by_text(progress).count() == 0
        assert first.get_by_text(re.compile("in the queue")).count() == 0
        # the first run ends: the second starts
        first.get_by_role("button", name="Stop", exact=True).click()
        first.get_by_text(re.compile(r"stopped after [\d,]+ steps")).first.wait_for(timeout=120_000)
        second.get_by_text(progress).first.wait_for(timeout=120_000)
        assert first.get_by_text(progress).count() == 0
        second.get_by_role("button", name="Stop", exact=True).click()
        second.get_by_text(re.compile(r"stopped after [\d,]+ steps")).first.wait_for(
            timeout=120_000
        )
    except Exception:
        from conftest import ARTIFACTS

        ARTIFACTS.mkdir(exist_ok=True)
        for n, context in enumerate(people):
            context.pages[0].screenshot(path=str(ARTIFACTS / f"two-people-{n}.png"), full_page=True)
        raise
    finally:
        for context in people:
            context.close()


@pytest.mark.browser
@pytest.mark.slow
def test_a_race_in_chromium_overlays_two_recipes_and_adds_records(app_url, app_home, page):
    from llm_playground.core.db import Database
    from llm_playground.training.records import records

    database = Database(app_home / "playground.sqlite")
    before = len(records(database))
    page.goto(app_url + "/training")
    page.get_by_text("One batch, as the model sees it").wait_for(timeout=120_000)
    page.get_by_role("tab", name="Race recipes").click()
    steps = page.get_by_label("Steps each")
    steps.fill("20")
    steps.press("Enter")
    page.get_by_role("button", name="Start the race").click()
    race = page.get_by_role("tabpanel", name="Race recipes")
    page.get_by_text("No records yet").wait_for(timeout=60_000)
    deadline = time.time() + 1500  # two full-size recipes, one after the other
    while time.time() < deadline and page.get_by_text("No records yet").count():
        time.sleep(2)
    assert page.get_by_text("No records yet").count() == 0  # the records table has rows
    # the race's results table and the records table, both in the race tab
    race.locator("[data-testid='stDataFrame']").nth(1).wait_for()
    chart = race.locator("[data-testid='stVegaLiteChart'], .vega-embed")
    assert chart.count() >= 1
    # both recipes are on the chart's legend and in the records
    for recipe in ("baby-gpt", "speedrun"):
        assert race.get_by_text(recipe, exact=True).count() >= 1
    # the race wrote one record per recipe into the app's database
    rows = records(database)
    assert len(rows) == before + 2
    assert {row["recipe"] for row in rows if row["steps"] == 20} == {"baby-gpt", "speedrun"}
