"""What a fine-tuning run reports: the run vocabulary of :mod:`llm_playground.core.events`
with the numbers of an SFT or a DPO run.

:func:`llm_playground.finetuning.sft.train_sft` yields the ``SFT*`` events and
:func:`llm_playground.finetuning.dpo.train_dpo` the ``DPO*`` ones; the CLI draws both with
its one progress renderer and the Lab 4 page with its one job panel.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from llm_playground.core.events import Done, Metric, Progress, Started

# --- supervised fine-tuning -----------------------------------------------------------------


@dataclass(frozen=True, kw_only=True)
class SFTStarted(Started):
    """The adapter is in place; ``total`` is ``max_steps``."""

    base: str
    trainable: int
    total_parameters: int
    share: float  # trainable / total parameters, in percent
    n_train: int
    n_heldout: int
    dtype: str
    max_steps: int


@dataclass(frozen=True, kw_only=True)
class SFTStep(Progress):
    """One optimiser step done."""

    loss: float
    lr: float
    tokens: int  # tokens in the batch (prompt and response, no padding)
    s_per_step: float
    tokens_per_s: float


@dataclass(frozen=True, kw_only=True)
class SFTEval(Metric):
    """Mean loss per response token on the held-out slice after ``step`` steps."""

    heldout_loss: float


@dataclass(frozen=True, kw_only=True)
class SFTDone(Done):
    """The run ended after ``step`` steps; ``out_dir`` is None when nothing was saved."""

    step: int
    heldout_loss_before: float
    heldout_loss_after: float
    trainable: int
    total_parameters: int
    share: float
    elapsed_s: float
    s_per_step: float
    out_dir: str | None = None
    meta: dict[str, Any] = field(default_factory=dict, compare=False)


# --- direct preference optimisation ----------------------------------------------------------


@dataclass(frozen=True, kw_only=True)
class DPOStarted(Started):
    """The trainer is set up on ``n_pairs`` pairs; ``total`` is ``max_steps``."""

    base: str
    n_pairs: int
    trainable: int
    total_parameters: int
    share: float
    max_steps: int


@dataclass(frozen=True, kw_only=True)
class DPOStep(Progress):
    """A logged trainer step: the DPO loss and, when TRL reports them, reward figures."""

    loss: float
    reward_accuracy: float | None = None
    reward_margin: float | None = None


@dataclass(frozen=True, kw_only=True)
class DPODone(Done):
    """The run ended after ``step`` steps; ``out_dir`` is None when nothing was saved."""

    step: int
    out_dir: str | None
    final_loss: float | None
    elapsed_s: float
    meta: dict[str, Any] = field(default_factory=dict, compare=False)


__all__ = [
    "DPODone",
    "DPOStarted",
    "DPOStep",
    "SFTDone",
    "SFTEval",
    "SFTStarted",
    "SFTStep",
]
