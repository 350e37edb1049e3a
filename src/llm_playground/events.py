"""What a training run reports, as typed events.

:func:`llm_playground.engine.run_training` yields these; the CLI turns them into a
progress bar and ``metrics.jsonl``, the Training ground page into chart points, and the
tests assert on them.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Started:
    """The run is set up: what it trains, where, and in which number format."""

    label: str
    device: str
    dtype: str
    parameters: int
    vocab_size: int
    max_iters: int
    start_step: int = 0
    world_size: int = 1
    tokens_per_step: int = 0


@dataclass(frozen=True)
class Step:
    """One optimiser step done; ``step`` counts the steps done so far (1 after the first)."""

    step: int
    loss: float
    lr: float
    tokens_per_s: float


@dataclass(frozen=True)
class Eval:
    """Mean loss over ``eval_iters`` batches of each split, after ``step`` steps."""

    step: int
    train_loss: float
    val_loss: float
    elapsed_s: float        # wall-clock seconds since the run started (evaluations included)
    tokens_per_s: float     # training tokens per second since the previous evaluation
    train_time_s: float = 0.0  # seconds spent in training steps only

    def metrics(self) -> dict[str, Any]:
        """The line ``metrics.jsonl`` keeps for this evaluation."""
        return {k: (round(v, 6) if isinstance(v, float) else v)
                for k, v in dataclasses.asdict(self).items()}


@dataclass(frozen=True)
class Sample:
    """Text the model writes from the fixed prompt after ``step`` steps."""

    step: int
    text: str
    prompt: str = ""


@dataclass(frozen=True)
class Checkpoint:
    step: int
    path: str


@dataclass(frozen=True)
class Done:
    step: int
    train_loss: float | None
    val_loss: float | None
    elapsed_s: float
    stopped: bool = False   # True when the stop signal ended the run early


@dataclass(frozen=True)
class Error:
    message: str
    step: int | None = None


Event = Started | Step | Eval | Sample | Checkpoint | Done | Error
