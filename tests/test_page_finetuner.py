"""Lab 4 page: renders, generates side by side, shows bad input; one journey in a real browser."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

PAGE = Path(__file__).resolve().parents[1] / "src/llm_playground/ui/labs/finetuner.py"


def _page() -> AppTest:
    at = AppTest.from_file(str(PAGE), default_timeout=300)
    at.run()
    assert not at.exception, at.exception
    return at


def _text(at: AppTest) -> str:
    return " ".join(
        [m.value for m in at.markdown]
        + [c.value for c in at.caption]
        + [e.value for e in at.error]
        + [i.value for i in at.info]
    )


def test_page_renders_with_the_shipped_adapter_as_default():
    at = _page()
    assert [t.label for t in at.tabs] == [
        "Side by side",
        "Train an adapter",
        "Vote",
        "Preferences",
        "DPO",
        "Reward model",
        "Best-of-n",
        "RL (GRPO)",
    ]
    # the shipped default pair: the Gemma base on the left, its instruction adapter on the right
    assert at.selectbox(key="ft_right").value == "gemma3-270m-instruct"
    assert at.selectbox(key="ft_left").value == "gemma3-270m"


def test_side_by_side_generates_both_with_times_and_heldout_losses():
    at = _page()
    at.selectbox(key="ft_left").set_value("smollm2-135m-instruct")
    at.selectbox(key="ft_right").set_value("smollm2-135m-instruct")
    at.number_input(key="ft_max_new").set_value(4)
    at.selectbox(key="ft_strategy").set_value("greedy")
    at.run()
    at.button(key="ft_generate").click().run()
    assert not at.exception, at.exception
    metrics = [(m.label, m.value) for m in at.metric]
    times = [v for label, v in metrics if label == "Time"]
    assert len(times) == 2 and all(t.endswith(" s") for t in times)
    new = [int(v) for label, v in metrics if label == "New tokens"]
    assert len(new) == 2 and all(1 <= n <= 4 for n in new)
    # same model, same greedy settings: the same text on both sides
    boxes = [m.value for m in at.markdown if "ft-output" in m.value]
    assert len(boxes) == 2 and boxes[0].replace("left", "") == boxes[1].replace("right", "")


def test_training_tab_rejects_an_existing_name_and_bad_upload(tmp_path):
    from llm_playground.core.paths import get_paths

    taken = get_paths().ensure().adapters / "taken"
    taken.mkdir()
    (taken / "adapter_config.json").write_text(
        json.dumps({"base_model_name_or_path": "smollm2-135m-instruct"})
    )
    at = _page()
    at.text_input(key="ft_train_name").set_value("taken")
    at.run()
    at.button(key="ft_train_start").click().run()
    assert not at.exception, at.exception
    assert any("exists already" in e.value for e in at.error)
    at.radio(key="ft_train_data").set_value("upload a JSONL file")
    at.text_input(key="ft_train_name").set_value("fresh")
    at.run()
    at.button(key="ft_train_start").click().run()
    assert any("choose a JSONL file" in e.value for e in at.error)


def test_dpo_tab_reads_saved_exports_only_and_names_the_bad_line(playground_home):
    at = _page()
    assert not [t for t in at.text_input if t.key == "ft_dpo_prefs"]  # no server paths
    at.button(key="ft_dpo_start").click().run()
    assert any("no saved export yet" in e.value for e in at.error)
    exports = playground_home / "exports"
    exports.mkdir()
    (exports / "prefs.jsonl").write_text(
        '{"prompt": "p", "chosen": "a", "rejected": "b"}\n{"prompt": 3}\n'
    )
    (exports / "prefs.ties.jsonl").write_text("")  # a ties file is not offered
    at = _page()
    assert at.selectbox(key="ft_dpo_saved").options == ["prefs.jsonl"]
    at.button(key="ft_dpo_start").click().run()
    assert not at.exception, at.exception
    assert any("prefs.jsonl line 2" in e.value for e in at.error)


def test_training_tab_refuses_paths_as_adapter_names(playground_home):
    from llm_playground.ui.components import job_manager

    taken = playground_home / "adapters" / "taken"
    taken.mkdir(parents=True)
    (taken / "adapter_config.json").write_text("{}")
    at = _page()
    at.text_input(key="ft_train_name").set_value("taken")
    at.checkbox(key="ft_train_replace").check()
    at.number_input(key="ft_train_steps").set_value(1)
    at.run()
    for bad in ("../taken", "/tmp/evil"):
        at.text_input(key="ft_train_name").set_value(bad).run()
        at.button(key="ft_train_start").click().run()
        assert any("not a valid adapter name" in e.value for e in at.error), bad
    assert job_manager().running("sft") is None


@pytest.mark.browser
def test_side_by_side_in_a_browser(app_url, page):
    page.goto(app_url + "/finetuner")
    page.get_by_text("Lab 4 · Fine-tuner").first.wait_for()
    page.get_by_role("tab", name="Side by side").wait_for()
    # the open tab's own field (the Best-of-n tab has one of the same name, hidden)
    max_new = page.get_by_label("Max new tokens").filter(visible=True).first
    max_new.fill("6")
    max_new.press("Enter")
    page.get_by_role("button", name="Generate both").click()
    page.locator(".ft-output").nth(1).wait_for(timeout=240_000)
    assert page.locator(".ft-output").count() == 2
    assert page.get_by_text("Held-out loss").count() >= 2


def test_vote_tab_generates_a_pair_with_the_side_by_side_models_and_stores_the_vote():
    from llm_playground.core.paths import get_paths
    from llm_playground.finetuning.preferences import PreferenceStore

    at = _page()
    at.selectbox(key="ft_left").set_value("smollm2-135m-instruct")
    at.selectbox(key="ft_right").set_value("smollm2-135m-instruct")
    at.number_input(key="ft_max_new").set_value(3)
    at.run()
    at.text_area(key="prefs_prompt").set_value("Name a fruit.")
    at.button(key="prefs_generate").click().run()
    assert not at.exception, at.exception
    assert not at.error, [e.value for e in at.error]
    at.button(key="prefs_vote_a").click().run()
    assert not at.exception, at.exception
    votes = PreferenceStore(get_paths().db).list_votes()
    assert len(votes) == 1, (
        ([e.value for e in at.error], votes)
        and votes[0].choice == "a"
        and votes[0].prompt == "Name a fruit."
    )
    assert votes[0].model_a == votes[0].model_b == "smollm2-135m-instruct"


@pytest.mark.slow
def test_training_starts_shows_its_share_and_stops(tmp_path):
    import time

    from llm_playground.ui.components import job_manager

    at = _page()
    at.selectbox(key="ft_train_base").set_value("smollm2-135m-instruct")
    at.text_input(key="ft_train_name").set_value("stopped-run")
    at.multiselect(key="ft_train_targets").set_value(["q_proj", "v_proj"])
    at.number_input(key="ft_train_steps").set_value(500)
    at.number_input(key="ft_train_seq").set_value(32)
    at.run()
    at.button(key="ft_train_start").click().run()
    assert not at.exception, at.exception
    job = job_manager().running("sft")
    assert job is not None and job.params["config"]["lora_r"] == 8
    deadline = time.time() + 240
    while time.time() < deadline and not any(m.label == "Share of the model" for m in at.metric):
        time.sleep(1)
        at.run()
    metrics = {m.label: m.value for m in at.metric}
    assert (
        metrics["Trainable parameters"] == "460,800" and metrics["Share of the model"] == "0.341 %"
    )
    at.button(key="sft_stop").click().run()
    job_manager().wait(job.id, timeout=240)
    assert not job.running and job.error is None
    done = job.events[-1]
    assert done.stopped and done.step < 500
