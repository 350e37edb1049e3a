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
    from tqdm import tqdm

    stream = stream or sys.stderr
    bar: tqdm | None = None

    def write(text: str | None) -> None:
        if not show or text is None:
            return
        if bar is not None:
            bar.write(text, file=stream)
        else:
            print(text, file=stream)

    try:
        for event in events:
            if isinstance(event, Error):
                raise UserError(event.message)
            if isinstance(event, Started):
                write(wording.headline(event) if wording.headline else None)
                if show:
                    bar = tqdm(
                        total=event.total,
                        desc=wording.desc,
                        initial=getattr(event, "start_step", 0),
                        unit=wording.unit or event.unit,
                        file=stream,
                        dynamic_ncols=True,
                        mininterval=0.5,
                    )
            elif isinstance(event, Progress):
                if bar is not None:
                    bar.update(event.step - bar.n)
                    bar.set_postfix(wording.postfix(event), refresh=False)
            elif isinstance(event, Metric):
                write(wording.metric_line(event))
            elif isinstance(event, Sample):
                write(wording.sample_line(event) if wording.sample_line else None)
            elif isinstance(event, Saved):
                write(wording.saved_line(event) if wording.saved_line else None)
            elif isinstance(event, Done):
                if bar is not None:
                    bar.close()
                    bar = None
                return event
    finally:
        if bar is not None:
            bar.close()
    return None
