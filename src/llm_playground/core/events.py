"""The one vocabulary of every long run.

Training, BPE training, SFT, DPO, perplexity, judging and strategy grids are all
generators of these events that take a ``threading.Event`` stop signal:

- :class:`Started`  the run is set up (``total`` units of work are expected);
- :class:`Progress` one more unit of work is done (a step, a window, an item);
- :class:`Metric`   a measurement worth charting (an evaluation, a held-out loss);
- :class:`Sample`   text the model wrote;
- :class:`Saved`    a file was written (a checkpoint, an adapter);
- :class:`Done`     the run ended, stopped early or not, with its result;
- :class:`Error`    the run could not go on; ``message`` says why in one line.

A lab adds its own payload by subclassing one of these (``TrainEval(Metric)`` carries
the two losses). Everything that consumes runs — the CLI's one progress renderer, the
app's one job panel, the tests — needs only these seven classes and :func:`numbers`.
All events are frozen, keyword-only dataclasses.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

__all__ = [
    "Started",
    "Progress",
    "Metric",
    "Sample",
    "Saved",
    "Done",
    "Error",
    "RunEvent",
    "numbers",
    "as_record",
]


@dataclass(frozen=True, kw_only=True)
class RunEvent:
    """Base of the seven event kinds."""


@dataclass(frozen=True, kw_only=True)
class Started(RunEvent):
    """The run is set up; ``total`` units of ``unit`` are expected (None: unknown)."""

    label: str = ""
    total: int | None = None
    unit: str = "step"


@dataclass(frozen=True, kw_only=True)
class Progress(RunEvent):
    """``step`` units of work are done so far (1 after the first), of ``total``."""

    step: int
    total: int | None = None


@dataclass(frozen=True, kw_only=True)
class Metric(RunEvent):
    """A measurement taken after ``step`` units of work (subclasses carry the values)."""

    step: int


@dataclass(frozen=True, kw_only=True)
class Sample(RunEvent):
    """Text the model wrote from ``prompt`` after ``step`` units of work."""

    step: int
    text: str
    prompt: str = ""


@dataclass(frozen=True, kw_only=True)
class Saved(RunEvent):
    """A file or folder was written after ``step`` units of work."""

    step: int
    path: str


@dataclass(frozen=True, kw_only=True)
class Done(RunEvent):
    """The run ended; ``stopped`` when the stop signal ended it early."""

    stopped: bool = False


@dataclass(frozen=True, kw_only=True)
class Error(RunEvent):
    """The run could not go on; ``message`` is one line for a person."""

    message: str
    step: int | None = None


_BOOKKEEPING = {"step", "total"}


def numbers(event: RunEvent) -> dict[str, float]:
    """The event's numeric payload (no step counters): what a progress line or a chart shows."""
    out: dict[str, float] = {}
    for f in dataclasses.fields(event):
        value = getattr(event, f.name)
        if f.name in _BOOKKEEPING or isinstance(value, bool):
            continue
        if isinstance(value, int | float):
            out[f.name] = value
    return out


def as_record(event: RunEvent, digits: int = 6) -> dict[str, Any]:
    """The event as a JSON-ready dict (floats rounded), e.g. one line of ``metrics.jsonl``."""
    return {
        k: (round(v, digits) if isinstance(v, float) else v)
        for k, v in dataclasses.asdict(event).items()
    }
