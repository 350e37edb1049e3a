"""Lab 4's reward model, best-of-n and GRPO tabs: render with their settings, refuse bad
input beside the widget, and a GRPO run on a tiny Lab 2 model shows its group, its
accuracy and its before/after answers; one journey in a real browser (slow)."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from tiny_lm import tiny_llama

PAGE = Path(__file__).resolve().parents[1] / "src/llm_playground/ui/labs/finetuner.py"


def _page() -> AppTest:
    at = AppTest.from_file(str(PAGE), default_timeout=300)
    at.run()
    assert not at.exception, at.exception
    return at


def test_the_new_tabs_render_with_the_rl_defaults_and_the_hacking_story():
    from llm_playground.finetuning.rl import RLConfig

    at = _page()
    labels = [t.label for t in at.tabs]
    assert labels[-3:] == ["Reward model", "Best-of-n", "RL (GRPO)"]
    defaults = RLConfig()
    assert at.number_input(key="ft_rl_group").value == defaults.group
    assert at.number_input(key="ft_rl_prompts").value == defaults.prompts_per_step
    assert at.number_input(key="ft_rl_tokens").value == defaults.max_completion_tokens
    assert not any("reward hacking" in i.value for i in at.info)
    at.selectbox(key="ft_rl_reward").set_value("length").run()
    assert any("reward hacking" in i.value for i in at.info)
    # the code the tests run, shown on the page
    assert any("def group_advantages" in c.value for c in at.code)
    assert any("def bradley_terry_loss" in c.value for c in at.code)


def test_reward_tab_refuses_too_few_pairs_and_best_of_needs_a_reward_model(playground_home):
    from llm_playground.ui.components import job_manager

    exports = playground_home / "exports"
    exports.mkdir(parents=True)
    rows = [{"prompt": f"Q{i}", "chosen": "yes", "rejected": "no"} for i in range(4)]
    (exports / "few.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    at = _page()
    at.selectbox(key="ft_rm_source").set_value("few.jsonl").run()
    at.button(key="ft_rm_start").click().run()
    assert any("needs at least 10" in e.value for e in at.error), [e.value for e in at.error]
    assert job_manager().running("reward") is None
    at.button(key="ft_bon_start").click().run()
    assert any("no reward model yet" in e.value for e in at.error)


@pytest.fixture
def tiny_run(playground_home):
    """A tiny Llama saved as a Lab 2 run with a Hugging Face export (the page lists it)."""
    run = playground_home / "runs" / "tiny-llama"
    tiny_llama(run / "hf")
    (run / "config.json").write_text(json.dumps({"model": {"kind": "llama"}}))
    return run


def test_a_grpo_run_shows_its_group_accuracy_and_answers(tiny_run, playground_home):
    from llm_playground.ui.components import job_manager

    at = _page()
    at.selectbox(key="ft_rl_base").set_value("tiny-llama")
    at.text_input(key="ft_rl_name").set_value("tiny-grpo")
    for key, value in (
        ("ft_rl_steps", 2),
        ("ft_rl_group", 2),
        ("ft_rl_prompts", 1),
        ("ft_rl_tokens", 3),
        ("ft_rl_eval_every", 1),
        ("ft_rl_eval_problems", 2),
    ):
        at.number_input(key=key).set_value(value)
    at.run()
    at.button(key="ft_rl_start").click().run()
    assert not at.exception, at.exception
    assert not at.error, [e.value for e in at.error]
    job = job_manager().running("rl")
    assert job is not None
    job_manager().wait(job.id, timeout=240)
    assert job.error is None, job.error
    deadline = time.time() + 60
    while time.time() < deadline and not at.success:
        at.run()
    assert any("Adapter saved" in s.value for s in at.success), [s.value for s in at.success]
    metrics = {m.label for m in at.metric}
    assert {"Mean reward", "Held-out accuracy", "KL to the start"} <= metrics
    tables = [d for d in at.dataframe if "advantage (r − mean) / std" in d.value.columns]
    assert tables and len(tables[-1].value) == 2
    answers = [d for d in at.dataframe if "before" in d.value.columns]
    assert answers and list(answers[0].value.columns) == ["prompt", "before", "after"]
    assert (playground_home / "adapters" / "tiny-grpo" / "metrics.jsonl").exists()
    # saved in the home: listed with the models of Labs 3-5, through its chat setting
    from llm_playground.generation.registry import list_models

    listed = {i.name: i for i in list_models(include_hub=False)}
    assert listed["tiny-grpo"].kind == "adapter" and listed["tiny-grpo"].base == "tiny-llama"


@pytest.mark.slow
@pytest.mark.browser
def test_rl_tab_runs_grpo_in_a_browser(app_url, app_home, page):
    run = app_home / "runs" / "tiny-llama-rl"
    tiny_llama(run / "hf")
    (run / "config.json").write_text(json.dumps({"model": {"kind": "llama"}}))
    page.goto(app_url + "/finetuner")
    page.get_by_text("Lab 4 · Fine-tuner").first.wait_for()
    page.get_by_role("tab", name="RL (GRPO)").click()
    page.get_by_text("Start GRPO").wait_for()
    page.get_by_label("Reward", exact=True).click()
    page.get_by_role("option", name="length").click()
    page.get_by_text("A story about reward hacking").wait_for()
    page.get_by_label("Base model").filter(visible=True).click()
    page.get_by_role("option", name="tiny-llama-rl").click()
    page.get_by_label("Steps", exact=True).filter(visible=True).fill("3")
    page.get_by_label("Steps", exact=True).filter(visible=True).press("Enter")
    page.get_by_role("button", name="Start GRPO").click()
    page.get_by_text("Adapter saved").first.wait_for(timeout=240_000)
    assert page.get_by_text("Done after 3 steps").count() >= 1
    assert page.get_by_text("one prompt's group").count() >= 1
    assert (app_home / "adapters").is_dir()
