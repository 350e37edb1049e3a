"""One progress renderer for every long run of the command line.

Any generator of :mod:`llm_playground.core.events` goes through :func:`render`: the
``Started`` event opens a progress bar on stderr, each ``Progress`` moves it (its numbers
shown beside it), ``Metric`` and ``Sample`` events become lines above the bar, an
``Error`` becomes the one-line :class:`UserError` of the CLI, and the final ``Done`` event
is returned for the command to print its result. Commands only choose the wording.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import TextIO

from llm_playground.core.errors import UserError
from llm_playground.core.events import (
    Done,
    Error,
    Metric,
    Progress,
    RunEvent,
    Sample,
    Saved,
    Started,
    numbers,
)

Line = Callable[[RunEvent], str | None]


def _number(value: float) -> str:
    if isinstance(value, int):
        return f"{value:,}"
    return f"{value:,.0f}" if abs(value) >= 1000 else f"{value:.4g}"


def default_metric_line(event: RunEvent) -> str | None:
    """``step N: name value, name value`` from the event's numbers."""
    values = ", ".join(f"{k.replace('_', ' ')} {_number(v)}" for k, v in numbers(event).items())
    return f"step {event.step}: {values}" if values else None  # type: ignore[attr-defined]


def default_postfix(event: Progress) -> dict[str, str]:
    return {k: _number(v) for k, v in numbers(event).items()}


@dataclass(frozen=True)
class Wording:
    """How one command words its run; every field is optional."""

    headline: Line | None = None  # printed at Started
    postfix: Callable[[Progress], dict[str, str]] = default_postfix
    metric_line: Line = default_metric_line
    sample_line: Line | None = None  # None: samples are not shown
    saved_line: Line | None = None  # None: saved files are not shown
    unit: str | None = None  # overrides Started.unit
    desc: str | None = None  # the bar's label (e.g. the command's name)


class _Drawing:
    """What one run shows on ``stream``: a progress bar, and lines written above it."""

    def __init__(self, wording: Wording, stream: TextIO, show: bool) -> None:
        self.wording, self.stream, self.show = wording, stream, show
        self.bar = None

    def write(self, text: str | None) -> None:
        if not self.show or text is None:
            return
        if self.bar is not None:
            self.bar.write(text, file=self.stream)  # above the bar, which stays at the bottom
        else:
            print(text, file=self.stream)

    def start(self, event: Started) -> None:
        from tqdm import tqdm

        wording = self.wording
        self.write(wording.headline(event) if wording.headline else None)
        if self.show:
            self.bar = tqdm(
                total=event.total,
                desc=wording.desc,
                initial=getattr(event, "start_step", 0),
                unit=wording.unit or event.unit,
                file=self.stream,
                dynamic_ncols=True,
                mininterval=0.5,
            )

    def advance(self, event: Progress) -> None:
        if self.bar is not None:
            self.bar.update(event.step - self.bar.n)
            self.bar.set_postfix(self.wording.postfix(event), refresh=False)

    def line(self, event: RunEvent) -> str | None:
        """The line of a metric, a sample or a saved file (None: not shown)."""
        wording = self.wording
        if isinstance(event, Metric):
            return wording.metric_line(event)
        if isinstance(event, Sample):
            return wording.sample_line(event) if wording.sample_line else None
        return wording.saved_line(event) if wording.saved_line else None

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None


def render(
    events: Iterable[RunEvent],
    wording: Wording = Wording(),
    *,
    stream: TextIO | None = None,
    show: bool = True,
) -> Done | None:
    """Draw ``events`` on ``stream`` (stderr); return the ``Done`` event, raise on ``Error``.

    ``show=False`` consumes the run silently (another process draws it, or ``--json``).
    """
    drawing = _Drawing(wording, stream or sys.stderr, show)
    try:
        for event in events:
            if isinstance(event, Error):
                raise UserError(event.message)
            if isinstance(event, Started):
                drawing.start(event)
            elif isinstance(event, Progress):
                drawing.advance(event)
            elif isinstance(event, (Metric, Sample, Saved)):
                drawing.write(drawing.line(event))
            elif isinstance(event, Done):
                drawing.close()
                return event
    finally:
        drawing.close()
    return None
