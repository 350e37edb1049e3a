"""Lab 6 page: a tiny Lab 2 run with snapshots looked inside in AppTest, and the page in a
real browser."""

from __future__ import annotations

import shutil
import time
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from llm_playground.ui.components import job_manager

ROOT = Path(__file__).resolve().parents[1]
PAGE = ROOT / "src/llm_playground/ui/labs/inside.py"
RUN = "tiny-inside"


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory) -> Path:
    """A 2-layer GPT trained for 8 steps with a snapshot every 4 (made once per module)."""
    from llm_playground.training.config import preset
    from llm_playground.training.engine import run_training

    out = tmp_path_factory.mktemp("runs") / RUN
    config = preset(
        "baby-gpt",
        n_layer=2,
        n_head=2,
        n_embd=16,
        block_size=32,
        batch_size=4,
        max_iters=8,
        eval_interval=4,
        eval_iters=1,
        sample_tokens=0,
        warmup_iters=1,
        pos="rope",  # no GPT-2 export to write
        dtype="float32",
        device="cpu",
        snapshot_interval=4,
        out_dir=str(out),
    )
    events = list(run_training(config))
    assert type(events[-1]).__name__ == "TrainDone", events[-1]
    return out


@pytest.fixture(autouse=True)
def no_jobs_left_over():
    yield
    manager = job_manager()
    for slot in ("inside", "inside_probe", "inside_ablate", "inside_timeline"):
        for job in manager.jobs(slot):
            manager.stop(job.id)
            manager.wait(job.id, 30)


def page(run: Path, home: Path, prompt: str = "ROMEO: to be or not to be") -> AppTest:
    """The page with the tiny run saved in the playground home and picked."""
    shutil.copytree(run, home / "runs" / RUN, dirs_exist_ok=True)
    at = AppTest.from_file(str(PAGE), default_timeout=120)
    at.session_state["inside_model"] = RUN
    at.session_state["inside_prompt"] = prompt
    at.run()
    assert not at.exception, at.exception
    return at


def wait_for(at: AppTest, slot: str, timeout: float = 60) -> AppTest:
    job = job_manager().get(at.session_state[f"job:{slot}"])
    assert job is not None
    job_manager().wait(job.id, timeout)
    assert not job.running and job.error is None, job.error
    at.run()
    assert not at.exception, at.exception
    return at


def text_of(at: AppTest) -> str:
    parts = [m.value for m in at.markdown] + [c.value for c in at.caption]
    parts += [e.value for e in at.error] + [s.value for s in at.success]
    parts += [i.value for i in at.info] + [w.value for w in at.warning]
    parts += [h.proto.body for h in at.html]
    return "\n".join(str(p) for p in parts)


def test_looking_inside_a_run_fills_every_grid(tiny_run, playground_home):
    at = page(tiny_run, playground_home)
    # the run kept snapshots at steps 4 and 8: a slider over them and the final model
    assert at.select_slider(key="inside_step").options == ["step 4", "step 8", "final model"]
    assert "2 layers × 2 heads" in text_of(at) and "count from 0" in text_of(at)
    at.button(key="inside_run").click().run()
    at = wait_for(at, "inside")
    at = wait_for(at, "inside_probe")  # the induction probe starts when the prompt is done
    text = text_of(at)
    # attention: a map per layer and head; the large map; the query over the text, escaped
    assert text.count("<img src='data:image/png;base64,") >= 4
    assert "title='layer 1, head 1'" in text and "looks most at" in text
    assert "class='inside-token'" in text
    # the logit lens: a row per entry, the actual next tokens, and the rank chart's table
    for row in ("embeddings", "after layer 0", "after layer 1 = output", "actual next token"):
        assert row in text
    assert len(at.dataframe) >= 1
    # head roles: the top heads in words
    assert "induction" in text and ": previous-token 0." in text
    assert "The induction probe: 16 random tokens (seed 0)" in text  # N = context 32 / 2


def test_the_step_slider_inspects_a_snapshot(tiny_run, playground_home):
    at = page(tiny_run, playground_home)
    at.select_slider(key="inside_step").set_value(4).run()
    at.button(key="inside_run").click().run()
    at = wait_for(at, "inside")
    job = job_manager().get(at.session_state["job:inside"])
    assert job.params["step"] == 4 and job.params["label"] == f"{RUN} (step 4)"
    assert "Showing" not in text_of(at)  # the result is of the model picked
    at.select_slider(key="inside_step").set_value("final").run()
    assert "press **Look inside** to see" in text_of(at)


def test_a_prompt_over_the_limit_is_refused_with_the_limit(tiny_run, playground_home):
    at = page(tiny_run, playground_home, prompt="to be or not to be " * 10)
    assert any("the limit is 128 tokens" in e.value for e in at.error)
    assert at.button(key="inside_run").disabled
    at.text_area(key="inside_prompt").set_value("to be or not to be, " * 2).run()
    assert any("more than this model's context of 32" in e.value for e in at.error)


def test_timeline_and_ablation(tiny_run, playground_home):
    at = page(tiny_run, playground_home)
    at.button(key="inside_timeline_run").click().run()
    at = wait_for(at, "inside_timeline")
    assert at.select_slider(key="inside_timeline_step").options == ["step 4", "step 8 (final)"]
    metrics = {m.label: m.value for m in at.metric}
    assert metrics["Step"] == "8" and float(metrics["Validation loss"]) > 0
    assert "induction score above 0.3" in text_of(at)

    at.multiselect(key="inside_ablate_layers").set_value(["1.mlp"]).run()
    at.button(key="inside_ablate_run").click().run()
    at = wait_for(at, "inside_ablate")
    metrics = {m.label: m.value for m in at.metric}
    intact = float(metrics["Loss on the prompt, intact"])
    knocked = float(metrics["Loss with the parts knocked out"])
    assert intact > 0 and knocked != intact


def test_a_run_without_snapshots_says_how_to_keep_them(tiny_run, playground_home):
    at = page(tiny_run, playground_home)
    shutil.rmtree(playground_home / "runs" / RUN / "snapshots")
    at.run()
    assert not at.exception
    assert not [s for s in at.select_slider if s.key == "inside_step"]
    assert "--snapshot-interval 50" in text_of(at)


def test_lab_3_hands_over_its_model_and_text(tiny_run, playground_home):
    """Lab 3's step view links here with ?model=...&text=...&chat=0: the page takes them once."""
    shutil.copytree(tiny_run, playground_home / "runs" / RUN)
    at = AppTest.from_file(str(PAGE), default_timeout=120)
    at.query_params["model"] = RUN
    at.query_params["text"] = "JULIET:\nO Romeo"
    at.query_params["chat"] = "0"
    at.run()
    assert not at.exception, at.exception
    assert at.selectbox(key="inside_model").value == RUN
    assert at.text_area(key="inside_prompt").value == "JULIET:\nO Romeo"
    assert not at.query_params  # used once: the learner's later edits stay
    at.text_area(key="inside_prompt").set_value("ROMEO: hi").run()
    assert at.text_area(key="inside_prompt").value == "ROMEO: hi"


def test_the_page_and_its_tabs_lay_out_widgets_only():
    for path in [PAGE, *sorted((ROOT / "src/llm_playground/ui/inside").glob("*.py"))]:
        source = path.read_text()
        assert "import torch" not in source and "build_model" not in source, path
        assert "job_manager" not in source and "st.fragment" not in source, path


@pytest.mark.browser
def test_inside_the_model_in_chromium(app_url, app_home, tiny_run, page):
    shutil.copytree(tiny_run, app_home / "runs" / RUN, dirs_exist_ok=True)
    page.goto(app_url + "/inside")
    page.get_by_text("Lab 6 · Inside the model").first.wait_for()
    page.locator(".st-key-inside_model [role='combobox']").first.click()
    page.get_by_role("option", name=RUN).first.click()
    page.get_by_text("2 layers × 2 heads").first.wait_for(timeout=60_000)
    prompt = page.get_by_label("Prompt", exact=True)  # the tiny run's context is 32 characters
    prompt.fill("ROMEO: to be or not to be")
    prompt.press("Control+Enter")
    page.get_by_text("25 tokens (at most 128)").first.wait_for()
    page.get_by_role("button", name="Look inside").click()
    page.locator("img[title='layer 1, head 1']").first.wait_for(timeout=60_000)
    page.get_by_role("tab", name="Logit lens").click()
    page.get_by_text("actual next token").first.wait_for()
    page.get_by_role("tab", name="Head roles").click()
    page.get_by_text("The top heads of each role").first.wait_for()
    page.get_by_text("The induction probe: 16 random tokens").first.wait_for(timeout=60_000)
    started = time.time()
    page.get_by_role("tab", name="Training timeline").click()
    page.get_by_role("button", name="Compute the timeline").click()
    page.get_by_text("Validation loss").first.wait_for(timeout=60_000)
    assert time.time() - started < 60
