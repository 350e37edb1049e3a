"""The precision of a training run, decided on the run's own work.

With ``dtype="auto"`` a run is not sent to bfloat16 because a big matrix product is faster
there: a 128-wide GPT's steps are many small products, casts and element-wise work, and
on some CPUs with native bf16 they run slower in bf16 than in float32. So before the run
starts, :func:`decide_training_precision` times a few real training steps of this model at
this batch and block size in each precision (:func:`llm_playground.core.hardware.decide_precision`
does the timing and the choosing), on a throwaway model and optimiser with batches from a
generator of their own, inside a saved-and-restored random state: the run's weights,
batches and dropout are exactly those of a run started with the chosen dtype asked for.

Muon's Newton-Schulz iteration is its own piece of work (a few stacked matrix products of
the hidden matrices' shapes) and is decided first, the same way; the training steps are
then timed with that Newton-Schulz precision. An explicit ``float32`` or ``bfloat16``
applies to both and measures nothing.

Steps are timed eagerly (a ``compile``d run is timed uncompiled), on one process's share
of the batch; a distributed run takes rank 0's decision (see the engine).
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import Any

import torch

from llm_playground.core import hardware
from llm_playground.core.hardware import PrecisionChoice, WorkKey
from llm_playground.training.config import TrainConfig
from llm_playground.training.corpus import Corpus, get_batch
from llm_playground.training.model import build_model
from llm_playground.training.optim import build_optimizer, newton_schulz

#: Optimiser steps in one timed call of the training work (after one warm-up call): one,
#: so that each precision's fastest is taken over as many single steps as there are rounds.
TIMED_STEPS = 1
#: Timed rounds per precision for the training steps (cheap: a step of Lab 2's models takes
#: tens of milliseconds on two cores).
TIMED_ROUNDS = 8


def autocast(device: str, dtype: torch.dtype):
    """bf16 autocast for the forward pass, or nothing for float32."""
    if dtype == torch.float32:
        return contextlib.nullcontext()
    return torch.autocast(device_type=device, dtype=dtype)


@dataclass(frozen=True)
class TrainingPrecision:
    """The run's forward-pass precision and, for Muon, its Newton-Schulz precision."""

    compute: PrecisionChoice  # the forward passes (autocast), in training and evaluation
    newton_schulz: PrecisionChoice | None = None  # Muon's orthogonalisation (None: AdamW)

    @property
    def dtype(self) -> torch.dtype:
        return self.compute.torch_dtype

    @property
    def newton_schulz_dtype(self) -> torch.dtype:
        return (self.newton_schulz or self.compute).torch_dtype

    def summary(self) -> str:
        """One line: the forward pass's choice, and Newton-Schulz's where Muon runs."""
        line = self.compute.summary()
        if self.newton_schulz is not None:
            line += f"; Newton-Schulz in {self.newton_schulz.summary()}"
        return line

    def to_dict(self) -> dict[str, Any]:
        """What the run's config keeps (``config.json``'s ``precision``)."""
        return {
            "compute": self.compute.to_dict(),
            "newton_schulz": self.newton_schulz.to_dict() if self.newton_schulz else None,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TrainingPrecision:
        ns = data.get("newton_schulz")
        return cls(
            compute=PrecisionChoice.from_dict(data["compute"]),
            newton_schulz=PrecisionChoice.from_dict(ns) if ns else None,
        )


def _model_shape(config: TrainConfig) -> tuple[tuple[str, Any], ...]:
    """The model's settings that change the work of a step (dropout does not change its size)."""
    return tuple(sorted(item for item in config.model.to_dict().items() if item[0] != "dropout"))


def decide_newton_schulz(config: TrainConfig, device: str, timer=None) -> PrecisionChoice:
    """Time Muon's Newton-Schulz on stacks of the hidden matrices' shapes in each precision."""
    generator = torch.Generator().manual_seed(0)
    with torch.device("meta"):
        shapes = [
            tuple(p.shape)
            for name, p in build_model(config.model).named_parameters()
            if p.dim() == 2 and name.startswith("h.")
        ]
    stacks = [
        torch.randn(shapes.count(shape), *shape, generator=generator).to(device)
        for shape in dict.fromkeys(shapes)
    ]

    def run_step(dtype: str) -> None:
        for stack in stacks:
            newton_schulz(stack, dtype=getattr(torch, dtype))

    work = WorkKey.of("newton-schulz", device=device, shapes=tuple(sorted(set(shapes))))
    return _decide(work, run_step, timer)


def decide_autocast(
    config: TrainConfig, corpus: Corpus, device: str, ns_dtype: torch.dtype, timer=None
) -> PrecisionChoice:
    """Time :data:`TIMED_STEPS` training steps (forward, backward, clip, optimiser step) of a
    throwaway copy of this model at this batch and block size, in each precision."""
    device_type = "cuda" if device.startswith("cuda") else "cpu"
    model = build_model(config.model).to(device)
    model.train()
    optimizer = build_optimizer(model, config, device_type, ns_dtype=ns_dtype)
    generator = torch.Generator().manual_seed(0)
    block = config.model.block_size

    def run_step(dtype: str) -> None:
        for _ in range(TIMED_STEPS):
            x, y = get_batch(corpus.train, block, config.batch_size, generator, device)
            with autocast(device_type, getattr(torch, dtype)):
                _, loss = model(x, y)
            loss.backward()
            if config.grad_clip > 0:
                torch.nn.utils.clip_grad_norm_(model.parameters(), config.grad_clip)
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)

    work = WorkKey.of(
        "train",
        device=device,
        batch=config.batch_size,
        optimizer=config.optimizer,
        newton_schulz=str(ns_dtype).replace("torch.", "") if config.optimizer == "muon" else "",
        model=_model_shape(config),
    )
    return _decide(work, run_step, timer)


def _decide(work: WorkKey, run_step, timer) -> PrecisionChoice:
    extra = {"timer": timer} if timer is not None else {}
    return hardware.decide_precision(
        work,
        run_step,
        rounds=TIMED_ROUNDS,
        cache_file=hardware.precision_cache_file(),
        **extra,
    )


def decide_training_precision(
    config: TrainConfig, corpus: Corpus, device: str, batch_size: int | None = None, timer=None
) -> TrainingPrecision:
    """The run's precision: as asked, or for ``auto`` measured on this run's own work.

    ``batch_size``: one process's share of the batch (distributed runs). The global random
    state is saved and restored around the timed steps, so the run is unchanged by them.
    """
    if config.dtype != "auto":
        asked = hardware.asked_precision(config.dtype)
        return TrainingPrecision(asked, asked if config.optimizer == "muon" else None)
    if batch_size is not None:
        config = config.replace(batch_size=batch_size)
    devices = [torch.device(device).index or 0] if device.startswith("cuda") else []
    with torch.random.fork_rng(devices=devices):
        ns = decide_newton_schulz(config, device, timer) if config.optimizer == "muon" else None
        ns_dtype = ns.torch_dtype if ns is not None else torch.float32
        forward = decide_autocast(config, corpus, device, ns_dtype, timer)
    return TrainingPrecision(forward, ns)
