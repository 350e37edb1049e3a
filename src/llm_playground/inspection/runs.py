"""Lab 6's long runs, as generators of the playground's events (the app's job panel runs them).

Each one calls this package's functions and hands its result to the page in one
``Done`` event: the inspection of the prompt, the induction probe (run after it, so that
the prompt's grids come first), the same prompt with parts knocked out, and the training
timeline (every snapshot of a run).
"""

from __future__ import annotations

import dataclasses
import threading
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field

from llm_playground.core.events import Done, Progress, Started
from llm_playground.inspection.models import InspectedModel, open_model
from llm_playground.inspection.report import Inspection, induction_probe, inspect

#: The induction probe's N when the model's context allows it (a char model's 64 tokens
#: allow 32).
PROBE_N = 64
PROBE_SEED = 0


def probe_length(model: InspectedModel) -> int:
    """The probe's N: :data:`PROBE_N`, or as much as the model's context holds."""
    return max(4, min(PROBE_N, (model.context_length - model.prefix) // 2))


@dataclass(frozen=True, kw_only=True)
class Inspected(Done):
    """The prompt inspected."""

    prompt: Inspection


@dataclass(frozen=True, kw_only=True)
class Probed(Done):
    """The induction probe on the same model (its lens and attention included)."""

    probe: Inspection


@dataclass(frozen=True, kw_only=True)
class Ablated(Done):
    """The prompt inspected with ``specs`` knocked out (base loss and guesses inside)."""

    result: Inspection
    specs: tuple[str, ...]


@dataclass(frozen=True, kw_only=True)
class TimelinePoint:
    """One snapshot of a run: its losses, the prompt and the probe at that step."""

    step: int
    final: bool
    batch_loss: float | None
    val_loss: float | None
    eval_step: int | None
    prompt: Inspection
    probe: Inspection


@dataclass(frozen=True, kw_only=True)
class Timeline(Done):
    points: list[TimelinePoint] = field(default_factory=list)


def inspect_run(
    model: InspectedModel, ids: Sequence[int], top_k: int = 5
) -> Callable[[threading.Event], Iterator]:
    """The factory of the Look inside button's job: the prompt through the model once."""

    def run(stop: threading.Event) -> Iterator:
        yield Started(label=f"inspect {model.label}", total=1, unit="pass")
        prompt = inspect(model, ids, top_k=top_k)
        yield Progress(step=1, total=1)
        yield Inspected(prompt=prompt)

    return run


def probe_run(model: InspectedModel) -> Callable[[threading.Event], Iterator]:
    """The factory of the induction probe's job (it reads the lens of 2N + 1 positions, so on
    a large vocabulary it takes longer than the prompt: it runs second)."""

    def run(stop: threading.Event) -> Iterator:
        yield Started(label=f"induction probe on {model.label}", total=1, unit="pass")
        probe = induction_probe(model, probe_length(model), seed=PROBE_SEED, top_k=1)
        yield Progress(step=1, total=1)
        yield Probed(probe=probe)

    return run


def ablate_run(
    model: InspectedModel, ids: Sequence[int], specs: Sequence[str], top_k: int = 10
) -> Callable[[threading.Event], Iterator]:
    """The factory of the Ablation tab's job: the prompt with ``specs`` knocked out."""

    def run(stop: threading.Event) -> Iterator:
        yield Started(label=f"ablate {', '.join(specs)}", total=1, unit="pass")
        result = inspect(model, ids, top_k=top_k, ablations=list(specs))
        yield Progress(step=1, total=1)
        yield Ablated(result=result, specs=tuple(specs))

    return run


def timeline_run(name: str, steps: Sequence[int], ids: Sequence[int]) -> Callable:
    """The factory of the timeline's job: every snapshot of run ``name`` and its final model,
    each with the prompt ``ids`` and the induction probe."""

    def run(stop: threading.Event) -> Iterator:
        wanted: list[int | None] = [*steps, None]
        yield Started(label=f"timeline of {name}", total=len(wanted), unit="snapshot")
        points: list[TimelinePoint] = []
        for done, step in enumerate(wanted, start=1):
            if stop.is_set():
                break
            model = open_model(name, step=step)
            if step is None and points and points[-1].step == model.step:
                points[-1] = dataclasses.replace(points[-1], final=True)  # the same model
                break
            points.append(_point(model, ids, final=step is None))
            yield Progress(step=done, total=len(wanted))
        yield Timeline(points=points, stopped=stop.is_set())

    return run


def _point(model: InspectedModel, ids: Sequence[int], final: bool) -> TimelinePoint:
    """One snapshot's losses (from its metadata), the prompt and the probe."""
    meta = model.meta
    return TimelinePoint(
        step=int(model.step or 0),
        final=final,
        batch_loss=meta.get("batch_loss"),
        val_loss=meta.get("val_loss"),
        eval_step=meta.get("eval_step", meta.get("step")),
        prompt=inspect(model, ids, top_k=1),
        probe=induction_probe(model, probe_length(model), seed=PROBE_SEED, top_k=1),
    )
