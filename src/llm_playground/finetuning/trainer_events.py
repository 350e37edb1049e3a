"""Run any ``transformers``/``trl`` ``Trainer`` as a generator of run events.

A ``Trainer`` reports through callbacks and blocks in ``trainer.train()``; the playground's
runs are generators with a stop signal. :func:`trainer_events` joins the two:

1. ``trainer.train()`` runs in a worker thread;
2. a ``TrainerCallback`` turns each ``on_log`` into an event (``to_event(step, logs)``,
   by default a :class:`~llm_playground.core.events.Progress`) and puts it on a queue;
3. at each ``on_step_end`` it sets ``control.should_training_stop`` once the stop signal
   is set, so the trainer ends cleanly after the current step;
4. the generator yields the queued events in the caller's thread and, when the trainer
   ends, re-raises there whatever the worker raised.

Closing the generator early (a consumer that stops reading) sets the stop signal and
waits for the worker, so no trainer is left running.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable, Iterator
from typing import Any

from llm_playground.core.events import Progress, RunEvent

ToEvent = Callable[[int, dict[str, Any]], RunEvent | None]

_END = object()


def default_event(total: int | None) -> ToEvent:
    """Each log becomes ``Progress(step, total)``."""
    return lambda step, logs: Progress(step=step, total=total)


def make_callback(events: queue.Queue, stop_event: threading.Event, to_event: ToEvent) -> Any:
    """The ``TrainerCallback`` that relays logs as events and honours the stop signal."""
    from transformers import TrainerCallback

    class EventRelay(TrainerCallback):
        def on_log(self, args, state, control, logs=None, **kwargs):
            event = to_event(int(state.global_step), dict(logs or {}))
            if event is not None:
                events.put(event)

        def on_step_end(self, args, state, control, **kwargs):
            if stop_event.is_set():
                control.should_training_stop = True
            return control

    return EventRelay()


def trainer_events(
    trainer: Any,
    stop_event: threading.Event,
    to_event: ToEvent | None = None,
    *,
    name: str = "trainer",
) -> Iterator[RunEvent]:
    """Train ``trainer`` in a worker thread and yield the events its logs become.

    Progress output of the trainer itself (its printer callback) is removed: the events
    are the only report. Returns when training has ended; errors of the worker are raised
    here.
    """
    from transformers import PrinterCallback

    if to_event is None:
        to_event = default_event(getattr(trainer.args, "max_steps", None))
    events: queue.Queue = queue.Queue()
    trainer.add_callback(make_callback(events, stop_event, to_event))
    trainer.remove_callback(PrinterCallback)
    failure: list[BaseException] = []

    def work() -> None:
        try:
            trainer.train()
        except BaseException as exc:  # re-raised in the generator's thread
            failure.append(exc)
        finally:
            events.put(_END)

    worker = threading.Thread(target=work, name=f"{name}-train", daemon=True)
    worker.start()
    try:
        while True:
            item = events.get()
            if item is _END:
                break
            yield item
    finally:
        if worker.is_alive():  # the consumer left early: stop the trainer, then wait
            stop_event.set()
        worker.join()
    if failure:
        raise failure[0]
