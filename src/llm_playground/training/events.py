"""What a training run reports: the run vocabulary of :mod:`llm_playground.core.events`
with the numbers of a language-model run.

:func:`llm_playground.training.engine.run_training` yields these (plus the core's
``Sample``, ``Saved`` and ``Error``); the CLI writes ``metrics.jsonl`` from
:class:`TrainEval`, the Training ground page charts it, and the tests assert on them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from llm_playground.core.events import (
    Done,
    Error,
    Metric,
    Progress,
    Sample,
    Saved,
    Started,
    as_record,
)


@dataclass(frozen=True, kw_only=True)
class TrainStarted(Started):
    """What the run trains, where, and in which number format; ``total`` is ``max_iters``."""

    device: str
    dtype: str
    parameters: int
    precision: str = ""  # how the dtype was decided, in words (auto: bf16's measured speed)
    bf16_ratio: float | None = None  # bf16's speed as a multiple of float32's on this work
    vocab_size: int
    max_iters: int
    start_step: int = 0
    world_size: int = 1
    tokens_per_step: int = 0


@dataclass(frozen=True, kw_only=True)
class TrainStep(Progress):
    """One optimiser step done; ``step`` counts the steps done so far (1 after the first)."""

    loss: float
    lr: float
    tokens_per_s: float


@dataclass(frozen=True, kw_only=True)
class TrainEval(Metric):
    """Mean loss over ``eval_iters`` batches of each split, after ``step`` steps."""

    train_loss: float
    val_loss: float
    elapsed_s: float  # wall-clock seconds since the run started (evaluations included)
    tokens_per_s: float  # training tokens per second since the previous evaluation
    train_time_s: float = 0.0  # seconds spent in training steps only

    def metrics(self) -> dict[str, Any]:
        """The line ``metrics.jsonl`` keeps for this evaluation."""
        return as_record(self)


@dataclass(frozen=True, kw_only=True)
class TargetReached(Metric):
    """The validation loss first reached ``target`` (at or below) at this evaluation."""

    target: float
    val_loss: float
    elapsed_s: float  # wall-clock seconds since the run started
    train_time_s: float  # seconds spent in training steps only

    def metrics(self) -> dict[str, Any]:
        return as_record(self)


@dataclass(frozen=True, kw_only=True)
class TrainDone(Done):
    """The run ended after ``step`` steps with these last losses."""

    step: int
    train_loss: float | None
    val_loss: float | None
    elapsed_s: float
    target_reached_s: float | None = None  # when a target was set and reached


# --- races (training.records) ---------------------------------------------------------


@dataclass(frozen=True, kw_only=True)
class RecipeStarted(Started):
    """A recipe of the race begins (``index`` of ``count``)."""

    recipe: str
    index: int
    count: int


@dataclass(frozen=True, kw_only=True)
class RecipeEval(Metric):
    """One evaluation of one recipe: its losses at ``step`` and ``elapsed_s`` seconds."""

    recipe: str
    train_loss: float
    val_loss: float
    elapsed_s: float


@dataclass(frozen=True, kw_only=True)
class RecipeDone(Done):
    """A recipe finished: its final loss and, when reached, the time to the target."""

    recipe: str
    steps: int
    final_val_loss: float | None
    seconds: float
    time_to_target_s: float | None


@dataclass(frozen=True, kw_only=True)
class RaceDone(Done):
    """Every recipe ran (or the race was stopped)."""

    recipes: tuple[str, ...] = ()


TrainEvent = (
    TrainStarted | TrainStep | TrainEval | TargetReached | Sample | Saved | TrainDone | Error
)
