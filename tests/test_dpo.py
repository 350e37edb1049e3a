"""DPO with TRL's DPOTrainer: a couple of steps on a tiny preference file run and save a
loadable adapter that the registry lists; bad preference files are named by line."""

from __future__ import annotations

import json

import pytest

from llm_playground.core.errors import UserError
from llm_playground.finetuning.dpo import (
    DPODone,
    DPOSettings,
    DPOStarted,
    DPOStep,
    load_preferences,
    train_dpo,
)

PAIRS = [
    {"prompt": "What is the capital of France?", "chosen": "Paris.", "rejected": "I like turtles."},
    {"prompt": "What is 2 plus 2?", "chosen": "4.", "rejected": "Bananas are yellow."},
    {"prompt": "Name a colour.", "chosen": "Blue.", "rejected": "The the the the."},
    {"prompt": "Say hello.", "chosen": "Hello!", "rejected": "Goodbye forever."},
]


def test_load_preferences_skips_ties_and_names_bad_lines(tmp_path):
    path = tmp_path / "prefs.jsonl"
    rows = PAIRS[:2] + [{**PAIRS[2], "label": "tie"}]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    assert load_preferences(path) == PAIRS[:2]
    path.write_text(json.dumps(PAIRS[0]) + "\n" + "not json\n")
    with pytest.raises(UserError, match="line 2: not valid JSON"):
        load_preferences(path)
    path.write_text(json.dumps({**PAIRS[0], "label": "both-bad"}) + "\n")
    with pytest.raises(UserError, match="no A/B preference pairs"):
        load_preferences(path)


@pytest.mark.slow
def test_two_dpo_steps_save_a_loadable_adapter(tmp_path):
    import shutil

    from llm_playground.core.paths import get_paths
    from llm_playground.generation.registry import list_models, load_model

    path = tmp_path / "prefs.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in PAIRS))
    out = tmp_path / "dpo-adapter"
    events = list(
        train_dpo(DPOSettings(max_steps=2, max_length=48, lr=1e-4, batch_size=2), path, out_dir=out)
    )
    assert isinstance(events[0], DPOStarted) and events[0].trainable == 460_800
    steps = [e for e in events if isinstance(e, DPOStep)]
    assert [s.step for s in steps] == [1, 2]
    assert steps[0].loss == pytest.approx(
        0.693147, abs=1e-4
    )  # log 2: policy equals reference at start
    done = events[-1]
    assert isinstance(done, DPODone) and done.step == 2 and done.out_dir == str(out.resolve())
    meta = json.loads((out / "playground.json").read_text())
    assert (
        meta["kind"] == "dpo" and meta["base"] == "smollm2-135m-instruct" and meta["chat"] is True
    )
    shutil.copytree(out, get_paths().ensure().adapters / "dpo-test")
    assert "dpo-test" in {i.name for i in list_models(include_hub=False)}
    loaded = load_model("dpo-test")
    assert loaded.model.peft_config["default"].r == 8
