"""Training snapshots: kept every N steps, loaded to the same logits, kept across a resume,
bounded to 50, and asked for from the command line."""

import shutil
import threading

import pytest
import torch

from llm_playground.core.errors import UserError
from llm_playground.training.checkpoints import load_checkpoint, read_metrics
from llm_playground.training.config import MAX_SNAPSHOTS, preset
from llm_playground.training.engine import run_training
from llm_playground.training.events import TrainDone, TrainStep
from llm_playground.training.snapshots import (
    load_snapshot,
    save_snapshot,
    snapshot_path,
    snapshot_steps,
)

TINY = dict(
    n_layer=1,
    n_head=2,
    n_embd=32,
    block_size=16,
    batch_size=4,
    max_iters=12,
    eval_interval=4,
    eval_iters=2,
    sample_tokens=0,
    warmup_iters=2,
    dtype="float32",
    device="cpu",
    pos="rope",  # no GPT-2 export to write: quicker saves
)


def tiny(**changes):
    return preset("baby-gpt", **{**TINY, **changes})


def logits_of(model, ids):
    with torch.no_grad():
        logits, _ = model(ids)
    return logits


IDS = torch.randint(65, (2, 16), generator=torch.Generator().manual_seed(5))


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """A 12-step run with a snapshot every 4 steps: its folder and its events (made once)."""
    out = tmp_path_factory.mktemp("snapshots") / "run"
    events = list(run_training(tiny(snapshot_interval=4, out_dir=str(out))))
    assert isinstance(events[-1], TrainDone)
    return out, events


def test_a_run_keeps_every_nth_model_and_each_loads_to_the_same_logits(run):
    out, events = run
    assert snapshot_steps(out) == [4, 8, 12]
    assert snapshot_path(out, 8).name == "step-000008.safetensors"

    # the last snapshot is the final model: identical logits
    final = load_checkpoint(out)
    last = load_snapshot(out, 12)
    assert torch.equal(logits_of(final.model, IDS), logits_of(last.model, IDS))
    # an earlier one is another model, with the run's tokenizer and its own step and losses
    early = load_snapshot(out, 4)
    assert not torch.allclose(logits_of(early.model, IDS), logits_of(final.model, IDS))
    assert early.step == 4 and early.tokenizer.decode(early.tokenizer.encode("ROMEO")) == "ROMEO"
    batch_losses = {e.step: e.loss for e in events if isinstance(e, TrainStep)}
    assert early.meta["batch_loss"] == pytest.approx(batch_losses[4])
    evals = {row["step"]: row["val_loss"] for row in read_metrics(out)}
    assert early.meta["eval_step"] == 4 and early.meta["val_loss"] == evals[4]


def test_save_and_load_round_trip_a_trained_model_exactly(run, tmp_path):
    out = tmp_path / "run"
    shutil.copytree(run[0], out)
    model = load_checkpoint(out).model
    with torch.no_grad():  # weights unlike any the run saved
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.1)
    save_snapshot(out, model, 14, loss=2.5)
    loaded = load_snapshot(out, 14)
    assert torch.equal(logits_of(model, IDS), logits_of(loaded.model, IDS))
    assert loaded.meta["batch_loss"] == 2.5 and loaded.meta["eval_step"] == 12
    assert not list((out / "snapshots").glob("*.tmp"))  # written to a temporary name, renamed


def test_a_missing_step_names_the_steps_there_are(run, tmp_path):
    out = tmp_path / "run"
    shutil.copytree(run[0], out)
    with pytest.raises(
        UserError, match=r"no snapshot of step 5; its snapshots are at steps 4, 8, 12$"
    ):
        load_snapshot(out, 5)
    for step in (16, 20):
        save_snapshot(out, load_snapshot(out, 8).model, step)
    with pytest.raises(UserError, match=r"at steps 4 to 20, every 4$"):
        load_snapshot(out, 6)
    shutil.rmtree(out / "snapshots")  # a run trained without snapshots
    assert snapshot_steps(out) == []
    with pytest.raises(UserError, match="has no snapshots: train it with --snapshot-interval"):
        load_snapshot(out, 4)


def test_a_resumed_run_keeps_its_snapshots_and_writes_the_same_ones(run, tmp_path):
    config, whole = tiny(snapshot_interval=4), run[0]
    part = tmp_path / "part"
    stop = threading.Event()
    for event in run_training(config.replace(out_dir=str(part)), stop):
        if isinstance(event, TrainStep) and event.step == 6:
            stop.set()
    assert snapshot_steps(part) == [4]
    list(run_training(config.replace(resume=str(part), out_dir=str(part))))
    assert snapshot_steps(part) == [4, 8, 12]
    for step in (4, 8, 12):
        a, b = load_snapshot(whole, step).model, load_snapshot(part, step).model
        assert torch.allclose(logits_of(a, IDS), logits_of(b, IDS), atol=1e-5)


def test_more_than_fifty_snapshots_are_refused_with_the_limit():
    assert MAX_SNAPSHOTS == 50
    tiny(max_iters=1000, snapshot_interval=20).validate()  # exactly 50
    with pytest.raises(UserError, match=r"keeps 100 snapshots; at most 50 .* at least 20"):
        tiny(max_iters=1000, snapshot_interval=10).validate()
    with pytest.raises(UserError, match="snapshot interval must be 0 or a positive whole number"):
        tiny(snapshot_interval=-1).validate()


def test_snapshot_interval_from_the_command_line(cli, tmp_path):
    out = tmp_path / "run"
    args = ["train", "--preset", "baby-gpt", "--n-layer", "1", "--n-head", "2", "--n-embd", "16"]
    args += ["--block-size", "8", "--batch-size", "2", "--eval-iters", "1", "--pos", "rope"]
    r = cli(*args, "--max-iters", "6", "--snapshot-interval", "3", "--out", str(out))
    assert r.returncode == 0, r.stderr
    assert snapshot_steps(out) == [3, 6]
    refused = cli(*args, "--max-iters", "1000", "--snapshot-interval", "10", "--out", str(out))
    assert refused.returncode == 2 and "Traceback" not in refused.stderr
    assert len(refused.stderr.strip().splitlines()) == 1
    assert "at most 50" in refused.stderr and "snapshot interval 10" in refused.stderr
