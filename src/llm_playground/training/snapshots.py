"""Training snapshots: the model kept every N steps of a run, to watch its insides form.

``train --snapshot-interval N`` keeps the weights after every N-th optimiser step in the
run folder, beside the final checkpoint::

    snapshots/step-000100.safetensors   the model after 100 steps (weights only)
    snapshots/step-000200.safetensors   ...

A snapshot holds the model alone (no optimiser moments, no random-number states), written
to a temporary name and renamed, so that saving one costs a few milliseconds and a crash
never leaves half a file. Its metadata names the step, the training batch's loss at that
step and the model's settings. The run's ``config.json`` (written when the run ends) gives
the tokenizer, so a snapshot loads once its run has been saved; :func:`load_snapshot`
returns the same :class:`~llm_playground.training.checkpoints.LoadedCheckpoint` as a final
checkpoint, with the step and the losses at that step in its ``meta``.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import torch
from safetensors import safe_open
from safetensors.torch import load_model, save_model

from llm_playground.core.errors import UserError
from llm_playground.training import checkpoints
from llm_playground.training.checkpoints import LoadedCheckpoint
from llm_playground.training.config import MAX_SNAPSHOTS, ModelConfig, TrainConfig
from llm_playground.training.model import build_model

__all__ = [
    "MAX_SNAPSHOTS",
    "SNAPSHOT_DIR",
    "load_snapshot",
    "prune_snapshots",
    "save_snapshot",
    "snapshot_path",
    "snapshot_steps",
]

SNAPSHOT_DIR = "snapshots"
_NAME = re.compile(r"^step-(\d{6,})\.safetensors$")


def snapshot_path(run_dir: str | Path, step: int) -> Path:
    """Where the snapshot of ``step`` lives in a run folder."""
    return Path(run_dir).expanduser() / SNAPSHOT_DIR / f"step-{int(step):06d}.safetensors"


def save_snapshot(
    run_dir: str | Path, model: torch.nn.Module, step: int, loss: float | None = None
) -> Path:
    """Keep ``model``'s weights after ``step`` steps (atomically: a temporary name, renamed).

    ``loss`` is the training batch's loss at that step; it is stored in the file's metadata.
    """
    model = checkpoints._unwrap(model)
    path = snapshot_path(run_dir, step)
    path.parent.mkdir(parents=True, exist_ok=True)
    metadata = {
        "format": checkpoints.FORMAT,
        "step": str(int(step)),
        "batch_loss": "" if loss is None else repr(float(loss)),
        "model": json.dumps(model.config.to_dict()),
    }
    # a temporary name of this writer's own, then a rename: no half-written snapshot is seen
    checkpoints.write_atomically(path, lambda tmp: save_model(model, str(tmp), metadata=metadata))
    return path


def snapshot_steps(run_dir: str | Path) -> list[int]:
    """The steps of a run's snapshots, in increasing order (empty when it has none)."""
    folder = Path(run_dir).expanduser() / SNAPSHOT_DIR
    if not folder.is_dir():
        return []
    steps = (_NAME.match(path.name) for path in folder.iterdir())
    return sorted(int(match.group(1)) for match in steps if match)


def prune_snapshots(run_dir: str | Path, after_step: int) -> None:
    """Remove snapshots beyond ``after_step`` (a run resumed from an earlier checkpoint
    writes them again)."""
    for step in snapshot_steps(run_dir):
        if step > after_step:
            snapshot_path(run_dir, step).unlink(missing_ok=True)


def _losses_at(run_dir: Path, step: int, batch_loss: float | None) -> dict[str, float | None]:
    """The losses to show beside a snapshot: its training batch's loss, and the last
    evaluation at or before its step (``eval_step`` says which step that was)."""
    rows = [r for r in checkpoints.read_metrics(run_dir) if int(r.get("step", -1)) <= step]
    last = rows[-1] if rows else {}
    return {
        "batch_loss": batch_loss,
        "train_loss": last.get("train_loss"),
        "val_loss": last.get("val_loss"),
        "eval_step": last.get("step"),
    }


def _describe(steps: list[int]) -> str:
    """ "steps 50 to 2000, every 50" for evenly spaced steps, else "steps 4, 8, 10"."""
    gaps = {b - a for a, b in zip(steps, steps[1:], strict=False)}
    if len(steps) > 3 and len(gaps) == 1:
        return f"steps {steps[0]} to {steps[-1]}, every {gaps.pop()}"
    return "steps " + ", ".join(str(s) for s in steps)


def load_snapshot(run_dir: str | Path, step: int, device: str = "cpu") -> LoadedCheckpoint:
    """The model of a run after ``step`` steps (eval mode), with the run's settings and
    tokenizer. ``meta`` is the run's, with ``step`` set to the snapshot's and the losses at
    that step: ``batch_loss``, and ``train_loss``/``val_loss`` of the last evaluation at or
    before it (its step in ``eval_step``). Raises UserError naming the steps there are."""
    run = Path(run_dir).expanduser()
    steps = snapshot_steps(run)
    if int(step) not in steps:
        if not steps:
            raise UserError(
                f"{run_dir} has no snapshots: train it with --snapshot-interval N to keep some"
            )
        raise UserError(
            f"{run_dir} has no snapshot of step {step}; its snapshots are at {_describe(steps)}"
        )
    meta = dict(checkpoints.read_meta(run))
    path = snapshot_path(run, step)
    with safe_open(str(path), framework="pt") as f:
        stored = f.metadata() or {}
    model_config = ModelConfig.from_dict(json.loads(stored.get("model") or "{}") or meta["model"])
    model = build_model(model_config)
    missing, unexpected = load_model(model, str(path), strict=False)
    if unexpected or [m for m in missing if m != "lm_head.weight"]:
        raise UserError(f"{path} does not match its run's model (missing {missing[:3]})")
    model.to(device).eval()
    batch_loss = float(stored["batch_loss"]) if stored.get("batch_loss") else None
    meta.update(step=int(step), model=model_config.to_dict(), **_losses_at(run, step, batch_loss))
    config = TrainConfig.from_dict(meta["train"]).replace(**model_config.to_dict())
    tokenizer = checkpoints.load_tokenizer_of(run, meta)
    return LoadedCheckpoint(model, config, tokenizer, meta, run)
