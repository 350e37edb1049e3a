"""DPO with TRL's DPOTrainer: a couple of steps on a tiny preference file run and save a
loadable adapter that the registry lists; bad preference files are named by line; the
generic trainer bridge turns any Trainer's logs into run events and stops it on request."""

from __future__ import annotations

import json

import pytest

from llm_playground.core.errors import UserError
from llm_playground.core.events import Done, Progress, Started
from llm_playground.finetuning.dpo import (
    DPOConfig,
    DPODone,
    DPOStarted,
    DPOStep,
    train_dpo,
)
from llm_playground.finetuning.preferences import parse_preference_pairs, read_preference_pairs

PAIRS = [
    {"prompt": "What is the capital of France?", "chosen": "Paris.", "rejected": "I like turtles."},
    {"prompt": "What is 2 plus 2?", "chosen": "4.", "rejected": "Bananas are yellow."},
    {"prompt": "Name a colour.", "chosen": "Blue.", "rejected": "The the the the."},
    {"prompt": "Say hello.", "chosen": "Hello!", "rejected": "Goodbye forever."},
]


def test_the_one_pair_reader_skips_ties_and_names_bad_lines(tmp_path):
    path = tmp_path / "prefs.jsonl"
    rows = PAIRS[:2] + [{**PAIRS[2], "label": "tie"}, {**PAIRS[3], "label": "preferred"}]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    assert read_preference_pairs(path) == [PAIRS[0], PAIRS[1], PAIRS[3]]
    text = path.read_text()
    assert parse_preference_pairs(text, "upload.jsonl") == read_preference_pairs(path)
    path.write_text(json.dumps(PAIRS[0]) + "\n" + "not json\n")
    with pytest.raises(UserError, match="line 2: not valid JSON"):
        read_preference_pairs(path)
    path.write_text(json.dumps({**PAIRS[0], "label": "both-bad"}) + "\n")
    with pytest.raises(UserError, match="no A/B preference pairs"):
        read_preference_pairs(path)
    path.write_text(json.dumps({**PAIRS[0], "label": "maybe"}) + "\n")
    with pytest.raises(UserError, match="line 1: unknown label 'maybe'"):
        read_preference_pairs(path)


def test_dpo_config_is_frozen_and_speaks_of_settings():
    import dataclasses

    with pytest.raises(dataclasses.FrozenInstanceError):
        DPOConfig().beta = 2.0  # type: ignore[misc]
    for kwargs, words in [
        ({"lora_r": 0}, "LoRA rank must be at least 1"),
        ({"beta": 0.0}, "beta must be a positive number"),
        ({"max_steps": 0}, "number of steps"),
    ]:
        with pytest.raises(UserError, match=words) as info:
            DPOConfig(**kwargs).validate()
        assert "--" not in str(info.value)


def _tiny_trainer(tmp_path, max_steps: int):
    """A transformers Trainer on a two-parameter model: fast, and a real Trainer."""
    import torch
    from transformers import Trainer, TrainingArguments

    class Line(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.w = torch.nn.Parameter(torch.zeros(1))
            self.b = torch.nn.Parameter(torch.zeros(1))

        def forward(self, x, y):
            return {"loss": ((self.w * x + self.b - y) ** 2).mean()}

    class Points(torch.utils.data.Dataset):
        def __len__(self):
            return 64

        def __getitem__(self, i):
            x = torch.tensor([i / 64.0])
            return {"x": x, "y": 3 * x + 1}

    args = TrainingArguments(
        output_dir=str(tmp_path / "trainer"),
        max_steps=max_steps,
        per_device_train_batch_size=8,
        learning_rate=0.1,
        logging_steps=1,
        save_strategy="no",
        report_to="none",
        use_cpu=True,
        disable_tqdm=True,
    )
    return Trainer(model=Line(), args=args, train_dataset=Points())


def test_trainer_bridge_yields_logs_as_events_and_honours_stop(tmp_path):
    import threading

    from llm_playground.finetuning.trainer_events import trainer_events

    trainer = _tiny_trainer(tmp_path, max_steps=5)
    events = list(trainer_events(trainer, threading.Event()))
    steps = [e.step for e in events if isinstance(e, Progress)]
    assert steps[:5] == [1, 2, 3, 4, 5] and all(e.total == 5 for e in events)
    assert trainer.state.global_step == 5

    trainer = _tiny_trainer(tmp_path, max_steps=1000)
    stop = threading.Event()
    seen = []
    for event in trainer_events(trainer, stop):
        seen.append(event)
        if len(seen) == 3:
            stop.set()  # as the Stop button does
    assert trainer.state.global_step < 10  # stopped after the step in progress


def test_trainer_bridge_raises_the_workers_error(tmp_path):
    import threading

    from llm_playground.finetuning.trainer_events import trainer_events

    trainer = _tiny_trainer(tmp_path, max_steps=3)

    def broken(step, logs):
        raise RuntimeError("callback exploded")

    with pytest.raises(RuntimeError, match="callback exploded"):
        list(trainer_events(trainer, threading.Event(), broken))


@pytest.mark.slow
def test_two_dpo_steps_save_a_loadable_adapter(tmp_path):
    import shutil

    from llm_playground.core.paths import get_paths
    from llm_playground.generation.registry import list_models, load_model

    path = tmp_path / "prefs.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in PAIRS))
    out = tmp_path / "dpo-adapter"
    events = list(
        train_dpo(DPOConfig(max_steps=2, max_length=48, lr=1e-4, batch_size=2), path, out_dir=out)
    )
    assert isinstance(events[0], DPOStarted) and events[0].trainable == 460_800
    assert isinstance(events[0], Started) and events[0].total == 2
    assert isinstance(events[-1], Done)
    steps = [e for e in events if isinstance(e, DPOStep)]
    assert all(isinstance(s, Progress) for s in steps)
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
