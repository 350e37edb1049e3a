"""The training engine: events, stop, repeatability, divergence, resume, hardware choices."""

import threading

import pytest
import torch

from llm_playground.core import hardware
from llm_playground.core.errors import UserError
from llm_playground.core.events import Error, Sample, Saved
from llm_playground.training.config import preset
from llm_playground.training.engine import resolve_device, run_training
from llm_playground.training.events import TrainDone, TrainEval, TrainStarted, TrainStep


def tiny(**changes):
    base = dict(
        n_layer=1,
        n_head=2,
        n_embd=32,
        block_size=16,
        batch_size=4,
        max_iters=12,
        eval_interval=4,
        eval_iters=2,
        sample_interval=6,
        sample_tokens=20,
        warmup_iters=2,
        dtype="float32",
        device="cpu",
    )
    base.update(changes)
    return preset("baby-gpt", **base)


def run(config, stop=None):
    return list(run_training(config, stop))


def losses(events):
    return [e.loss for e in events if isinstance(e, TrainStep)]


def test_a_run_reports_every_kind_of_event_in_order(tmp_path):
    events = run(tiny(out_dir=str(tmp_path / "out")))
    assert isinstance(events[0], TrainStarted) and isinstance(events[-1], TrainDone)
    assert [e.step for e in events if isinstance(e, TrainStep)] == list(range(1, 13))
    assert [e.step for e in events if isinstance(e, TrainEval)] == [0, 4, 8, 12]
    assert [e.step for e in events if isinstance(e, Sample)] == [0, 6, 12]
    assert [e.step for e in events if isinstance(e, Saved)] == [12]
    started = events[0]
    assert started.vocab_size == 65 and started.dtype == "float32" and started.device == "cpu"
    assert started.tokens_per_step == 4 * 16
    for e in events:
        if isinstance(e, TrainStep):
            assert e.lr > 0 and e.tokens_per_s > 0
        if isinstance(e, Sample):
            assert len(e.text) == 20  # 20 characters from the char tokenizer
    done = events[-1]
    assert (
        not done.stopped
        and done.val_loss == [e for e in events if isinstance(e, TrainEval)][-1].val_loss
    )
    lines = (tmp_path / "out" / "metrics.jsonl").read_text().splitlines()
    assert len(lines) == 4


def test_the_loss_falls_on_shakespeare():
    events = run(
        preset(
            "bigram",
            max_iters=150,
            eval_interval=150,
            eval_iters=5,
            sample_tokens=0,
            dtype="float32",
            device="cpu",
        )
    )
    evals = [e for e in events if isinstance(e, TrainEval)]
    assert evals[0].val_loss > 4.0 and evals[-1].val_loss < evals[0].val_loss - 0.5


def test_same_seed_same_run_other_seed_other_run():
    a, b = run(tiny(dropout=0.1)), run(tiny(dropout=0.1))
    assert losses(a) == losses(b)
    assert [s.text for s in a if isinstance(s, Sample)] == [
        s.text for s in b if isinstance(s, Sample)
    ]
    assert losses(run(tiny(dropout=0.1, seed=7))) != losses(a)


def test_stop_is_honoured_within_one_step():
    stop = threading.Event()
    seen = []
    for event in run_training(tiny(max_iters=1000, eval_interval=1000), stop):
        seen.append(event)
        if isinstance(event, TrainStep) and event.step == 3:
            stop.set()
    steps = [e.step for e in seen if isinstance(e, TrainStep)]
    assert steps == [1, 2, 3]
    assert isinstance(seen[-1], TrainDone) and seen[-1].stopped and seen[-1].step == 3


def test_stop_during_evaluation_ends_quickly():
    stop = threading.Event()
    stop.set()
    events = list(run_training(tiny(eval_iters=10_000, max_iters=5), stop))
    assert isinstance(events[-1], TrainDone) and events[-1].stopped and events[-1].step == 0


def test_a_diverging_run_ends_with_a_clear_error():
    events = run(
        tiny(lr=1e6, min_lr=1e6, max_iters=200, eval_interval=1000, sample_tokens=0, grad_clip=0.0)
    )
    assert isinstance(events[-1], Error)
    assert (
        "training diverged" in events[-1].message
        and "lower the learning rate" in events[-1].message
    )
    assert not any(isinstance(e, TrainDone) for e in events)


def test_an_infinite_loss_is_caught(monkeypatch):
    real = torch.nn.functional.cross_entropy
    calls = {"n": 0}

    def poisoned(*args, **kwargs):
        calls["n"] += 1
        loss = real(*args, **kwargs)
        return loss * float("inf") if calls["n"] == 5 else loss

    monkeypatch.setattr(torch.nn.functional, "cross_entropy", poisoned)
    events = run(tiny(max_iters=20, eval_interval=1000, sample_tokens=0))
    # call 1 to 2 are the step-0 evaluation (eval_iters=2 per split: 4 calls), call 5 the first step
    assert isinstance(events[-1], Error) and events[-1].step == 1 and "inf" in events[-1].message


def test_resume_continues_the_same_loss_curve(tmp_path):
    config = tiny(max_iters=16, eval_interval=4, dropout=0.1)
    full = run(config)
    stop = threading.Event()
    first = []
    for event in run_training(config.replace(out_dir=str(tmp_path / "ck")), stop):
        first.append(event)
        if isinstance(event, TrainStep) and event.step == 7:
            stop.set()
    assert isinstance(first[-2], Saved) and first[-2].step == 7
    rest = run(config.replace(resume=str(tmp_path / "ck"), out_dir=str(tmp_path / "ck")))
    assert rest[0].start_step == 7
    assert losses(first) + losses(rest) == pytest.approx(losses(full), abs=1e-6)
    full_evals = [(e.step, e.val_loss) for e in full if isinstance(e, TrainEval)]
    lines = (tmp_path / "ck" / "metrics.jsonl").read_text().splitlines()
    assert [int(line.split('"step": ')[1].split(",")[0]) for line in lines] == [
        s for s, _ in full_evals
    ]


def test_resume_refuses_a_different_model(tmp_path):
    run(tiny(max_iters=2, out_dir=str(tmp_path / "ck")))
    events = run(tiny(max_iters=4, n_embd=64, resume=str(tmp_path / "ck")))
    assert isinstance(events[-1], Error) and "differs in n_embd" in events[-1].message


def test_bad_data_and_settings_become_error_events(tmp_path):
    bad = tmp_path / "latin1.txt"
    bad.write_bytes("caf\xe9 au lait".encode("latin-1"))
    assert "not UTF-8" in run(tiny(data=str(bad)))[-1].message
    short = tmp_path / "short.txt"
    short.write_text("to be or not to be, that is the question\n" * 3)
    msg = run(tiny(data=str(short), block_size=32))[-1].message
    assert "block size 32 is larger than the data allows" in msg
    assert "not divisible" in run(tiny(n_head=3))[-1].message
    assert "unknown tokenizer" in run(tiny(tokenizer="nope"))[-1].message


def test_device_choices_and_the_bf16_instruction_rule():
    assert resolve_device("cpu") == "cpu"
    if not torch.cuda.is_available():
        assert resolve_device("auto") == "cpu"
        with pytest.raises(UserError, match="no CUDA GPU"):
            resolve_device("cuda")
    assert hardware.pick_dtype("float32", "cpu") == torch.float32
    assert hardware.pick_dtype("bfloat16", "cpu") == torch.bfloat16
    no_bf16 = {"avx2": True, "avx512f": True, "avx512_bf16": False, "amx_bf16": False}
    if hardware.has_bf16_instructions(no_bf16) is not None:  # an x86 machine
        assert hardware.has_bf16_instructions(no_bf16) is False
        assert hardware.has_bf16_instructions({**no_bf16, "amx_bf16": True}) is True
    if hardware.has_bf16_instructions() is False:
        assert hardware.bf16_supported("cpu")[0] is False  # emulated bf16 is never timed


def test_bf16_autocast_trains():
    events = run(tiny(dtype="bfloat16", max_iters=4, sample_tokens=5))
    assert events[0].dtype == "bfloat16" and isinstance(events[-1], TrainDone)
