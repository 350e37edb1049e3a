"""Standard benchmarks through EleutherAI's lm-evaluation-harness, for every playground model.

The harness (the ``lm-eval`` package) is used as a library: :class:`PlaygroundLM` is a
small ``lm_eval.api.model.LM`` over the playground's own forward pass (:mod:`.scoring`),
so registry models and Lab 2 runs, with or without a Hugging Face export, all run the
same tasks. Its three request types are answered so:

- ``loglikelihood(context, continuation)``: the sum of the log-probabilities of the
  continuation's tokens after the context (spaces at the end of the context move to the
  continuation, as the harness's own HF model does), and whether greedy decoding would
  have produced them;
- ``loglikelihood_rolling(text)``: Lab 5's perplexity with rolling windows
  (:func:`llm_playground.evaluation.perplexity.rolling_loglikelihood`): one definition;
- ``generate_until(context, until)``: greedy decoding until a stop string.

:func:`harness_events` runs tasks by name (the shipped local tasks of
:mod:`.local_tasks` offline; any of the harness's tasks with a network) and yields the
run vocabulary of :mod:`llm_playground.core.events`.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import os
import queue
import sys
import tempfile
import threading
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from llm_playground.core.errors import UserError
from llm_playground.core.events import Done, Progress, Started
from llm_playground.evaluation.local_tasks import LOCAL_TASK_INFO, LOCAL_TASKS, write_task_yamls
from llm_playground.evaluation.scoring import Scorer

log = logging.getLogger(__name__)

MAX_TASKS = 20
MAX_FEWSHOT = 25
MAX_LIMIT = 100_000


class _Stopped(Exception):
    """The stop signal ended the run inside the harness."""


# --- the model class ----------------------------------------------------------------------


def _lm_base():
    from lm_eval.api.model import LM

    return LM


class PlaygroundLM:
    """An ``lm_eval`` model over a :class:`Scorer`: the harness calls it, the playground computes.

    The methods live here; :func:`playground_lm` makes an instance of a subclass that also
    derives from ``lm_eval.api.model.LM`` (imported only when a run needs it).
    """

    def __init__(
        self,
        scorer: Scorer,
        max_length: int | None = None,
        batch_size: int = 8,
        stop_event: threading.Event | None = None,
        progress: Callable[[int, int], None] | None = None,
    ) -> None:
        super().__init__()  # lm_eval's LM: a single process
        self.scorer = scorer
        self.max_length = min(max_length or scorer.context_length, scorer.context_length)
        self.batch_size = batch_size
        self.stop_event = stop_event
        self.progress = progress
        self.done = 0

    # bookkeeping shared by the three request types
    def _tick(self, total: int) -> None:
        if self.stop_event is not None and self.stop_event.is_set():
            raise _Stopped
        self.done += 1
        if self.progress is not None:
            self.progress(self.done, total)

    # --- loglikelihood: the log-probability of a continuation after a context ---

    def _encode_pair(self, context: str, continuation: str) -> tuple[list[int], list[int]]:
        """Token ids of the context and the continuation; trailing spaces move to the latter."""
        scorer = self.scorer
        spaces = len(context) - len(context.rstrip())
        if spaces:
            continuation = context[-spaces:] + continuation
            context = context[:-spaces]
        if not context:
            if scorer.prefix_id is None:
                raise UserError(f"{scorer.name} has no token to start a text with")
            return [scorer.prefix_id], scorer.encode(continuation)[0]
        whole = scorer.encode(context + continuation)[0]
        context_ids = scorer.encode(context)[0]
        return whole[: len(context_ids)], whole[len(context_ids) :]

    def loglikelihood(self, requests) -> list[tuple[float, bool]]:
        import torch

        pairs = [self._encode_pair(*r.args) for r in requests]
        out: list[tuple[float, bool] | None] = [None] * len(pairs)
        # longest first, so a batch holds texts of about the same length
        order = sorted(range(len(pairs)), key=lambda i: -len(pairs[i][0]) - len(pairs[i][1]))
        with torch.inference_mode():
            for start in range(0, len(order), self.batch_size):
                batch = order[start : start + self.batch_size]
                results = self._score_batch([pairs[i] for i in batch])
                for i, result in zip(batch, results, strict=True):
                    out[i] = result
                    self._tick(len(pairs))
        return out  # type: ignore[return-value]

    def _score_batch(self, pairs):
        """Right-padded windows: each continuation's log-probability and greediness."""
        import torch

        scorer = self.scorer
        # each text's last max_length + 1 tokens; the model reads all but the last
        rows = []
        for context_ids, continuation_ids in pairs:
            whole = (context_ids + continuation_ids)[-(self.max_length + 1) :]
            rows.append((whole[:-1], len(continuation_ids)))
        width = max(len(r[0]) for r in rows)
        inputs = torch.zeros((len(rows), width), dtype=torch.long)
        for k, (ids, _) in enumerate(rows):
            inputs[k, : len(ids)] = torch.tensor(ids)
        logprobs = torch.log_softmax(scorer.logits(inputs.to(scorer.device), width), dim=-1)
        # the continuation's positions: the sum of its log-probabilities, and greedy or not
        results = []
        for k, ((ids, n), (_, continuation_ids)) in enumerate(zip(rows, pairs, strict=True)):
            scored = logprobs[k, len(ids) - n : len(ids)]
            target = torch.tensor(continuation_ids[-n:], device=scored.device)
            total = float(scored.gather(1, target[:, None]).sum())
            greedy = bool((scored.argmax(-1) == target).all())
            results.append((total, greedy))
        return results

    # --- loglikelihood_rolling: a whole text's log-probability (Lab 5's perplexity) ---

    def loglikelihood_rolling(self, requests) -> list[float]:
        from llm_playground.evaluation.perplexity import rolling_loglikelihood

        out = []
        for r in requests:
            out.append(
                rolling_loglikelihood(self.scorer, r.args[0], self.max_length, self.batch_size)
            )
            self._tick(len(requests))
        return out

    # --- generate_until: greedy decoding until a stop string ---

    def generate_until(self, requests) -> list[str]:
        import torch

        out = []
        with torch.inference_mode():
            for r in requests:
                context, kwargs = r.args
                out.append(self._greedy(context, dict(kwargs or {})))
                self._tick(len(requests))
        return out

    def _greedy(self, context: str, kwargs: dict[str, Any]) -> str:
        import torch

        scorer = self.scorer
        until = kwargs.get("until") or []
        until = [until] if isinstance(until, str) else list(until)
        max_new = int(kwargs.get("max_gen_toks", 256))
        ids = scorer.encode(context)[0] or [scorer.prefix_id]
        new: list[int] = []
        text = ""
        for _ in range(max_new):
            # the most likely next token after the last max_length tokens
            window = (ids + new)[-self.max_length :]
            logits = scorer.logits(torch.tensor([window], device=scorer.device), 1)
            token = int(logits[0, -1].argmax())
            if token == scorer.eos_id:
                break
            new.append(token)
            text = scorer.decode(new)
            if any(stop in text for stop in until):
                break
        # cut the text at the first stop string
        for stop in until:
            text = text.split(stop)[0]
        return text


@functools.cache
def _lm_class() -> type:
    """:class:`PlaygroundLM` joined with ``lm_eval``'s ``LM`` base, made once."""
    base = _lm_base()

    class _PlaygroundLM(PlaygroundLM, base):  # type: ignore[misc, valid-type]
        pass

    return _PlaygroundLM


def playground_lm(
    scorer: Scorer,
    max_length: int | None = None,
    batch_size: int = 8,
    stop_event: threading.Event | None = None,
    progress: Callable[[int, int], None] | None = None,
):
    """An ``lm_eval`` model over ``scorer``: the harness calls it, the playground computes."""
    return _lm_class()(scorer, max_length, batch_size, stop_event, progress)


# --- runs ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class HarnessConfig:
    """Which tasks, with how many shots, on how many documents."""

    tasks: tuple[str, ...]
    num_fewshot: int | None = None
    limit: int | None = None
    include_path: str | None = None
    batch_size: int = 8
    max_length: int | None = None

    def check(self) -> None:
        tasks = [t for t in self.tasks if t]
        if not tasks:
            raise UserError("no task given: name one or more tasks, e.g. playground_next_line")
        if len(tasks) > MAX_TASKS:
            raise UserError(f"{len(tasks)} tasks given; the limit is {MAX_TASKS} per run")
        if self.num_fewshot is not None and not 0 <= self.num_fewshot <= MAX_FEWSHOT:
            raise UserError(f"the number of shots must be between 0 and {MAX_FEWSHOT}")
        if self.limit is not None and not 1 <= self.limit <= MAX_LIMIT:
            raise UserError(f"the limit must be between 1 and {MAX_LIMIT:,} documents")
        if not 1 <= self.batch_size <= 256:
            raise UserError("the batch size must be between 1 and 256")
        if self.include_path is not None and not Path(self.include_path).expanduser().is_dir():
            raise UserError(f"the task folder {self.include_path} does not exist")


def parse_tasks(text: str) -> tuple[str, ...]:
    """``"a, b,c"`` -> ``("a", "b", "c")``."""
    return tuple(t.strip() for t in (text or "").split(",") if t.strip())


@dataclass(frozen=True)
class TaskScore:
    """One metric of one task: the value and its standard error (None when not computed)."""

    task: str
    metric: str
    value: float
    stderr: float | None
    version: str
    num_fewshot: int
    higher_is_better: bool | None = None


@dataclass(frozen=True)
class HarnessResult:
    model: str
    kind: str
    tasks: tuple[str, ...]
    num_fewshot: int | None
    limit: int | None
    scores: tuple[TaskScore, ...]
    n_samples: dict[str, int] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        """``{"results": {task: {metric: value, metric_stderr: value}}, "model", ...}``."""
        results: dict[str, dict[str, float | None]] = {}
        for s in self.scores:
            row = results.setdefault(s.task, {})
            row[s.metric] = s.value
            row[f"{s.metric}_stderr"] = s.stderr
        return {
            "results": results,
            "model": self.model,
            "tasks": list(self.tasks),
            "num_fewshot": self.num_fewshot,
            "limit": self.limit,
        }


@dataclass(frozen=True, kw_only=True)
class HarnessProgress(Progress):
    """``step`` of ``total`` requests of the current request type answered."""


@dataclass(frozen=True, kw_only=True)
class HarnessDone(Done):
    result: HarnessResult


def _float(value: Any) -> float | None:
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if number == number else None  # NaN: not computed


def scores_from(out: dict[str, Any]) -> tuple[TaskScore, ...]:
    """The harness's ``results`` (``"acc,none"``, ``"acc_stderr,none"``) as task scores."""
    scores = []
    higher = out.get("higher_is_better", {})
    for task, metrics in out.get("results", {}).items():
        version = str(out.get("versions", {}).get(task, ""))
        shots = int(out.get("n-shot", {}).get(task, 0) or 0)
        for key, value in metrics.items():
            if "," not in key or "_stderr," in key:
                continue
            metric, _filter = key.split(",", 1)
            number = _float(value)
            if number is None:
                continue
            stderr = _float(metrics.get(f"{metric}_stderr,{_filter}"))
            scores.append(
                TaskScore(
                    task=task,
                    metric=metric,
                    value=number,
                    stderr=stderr,
                    version=version,
                    num_fewshot=shots,
                    higher_is_better=higher.get(task, {}).get(metric),
                )
            )
    return tuple(scores)


def _task_manager(include: Sequence[str], tasks: Sequence[str]):
    """The shipped and the learner's tasks alone when they name every task (indexing the
    harness's thousands of task files takes a while), else all of them."""
    from lm_eval.tasks import TaskManager

    own = TaskManager(include_path=list(include), include_defaults=False)
    if all(t in set(own.all_tasks) for t in tasks):
        return own
    return TaskManager(include_path=list(include))


def _check_names(manager, tasks: Sequence[str]) -> None:
    known = set(manager.all_tasks)
    unknown = [t for t in tasks if t not in known]
    if unknown:
        local = ", ".join(LOCAL_TASKS)
        raise UserError(
            f"unknown task '{unknown[0]}': the local tasks are {local}; the harness's own "
            "tasks (hellaswag, arc_easy, piqa, winogrande, ...) are named as lm-eval names them"
        )


def _evaluate(lm, config: HarnessConfig, manager) -> dict[str, Any]:
    import lm_eval

    try:
        out = lm_eval.simple_evaluate(
            model=lm,
            tasks=list(config.tasks),
            num_fewshot=config.num_fewshot,
            limit=config.limit,
            task_manager=manager,
            log_samples=False,
            bootstrap_iters=1000,
            verbosity="ERROR",
        )
    except (_Stopped, UserError):
        raise
    except Exception as exc:  # a data set that cannot be fetched offline, a bad task file
        text = " ".join(str(exc).split())[:240] or type(exc).__name__
        offline = os.environ.get("HF_DATASETS_OFFLINE") == "1" or os.environ.get("HF_HUB_OFFLINE")
        hint = (
            " (standard tasks download their data: they need a network; offline, use "
            + ", ".join(LOCAL_TASKS)
            + ")"
            if offline
            else ""
        )
        raise UserError(
            f"the harness could not run {', '.join(config.tasks)}: {text}{hint}"
        ) from None
    if not out:
        raise UserError("the harness returned no results")
    return out


def harness_events(
    model,
    config: HarnessConfig,
    stop_event: threading.Event | None = None,
) -> Iterator[Started | HarnessProgress | HarnessDone]:
    """Run ``config.tasks`` on a loaded model (or a :class:`Scorer`); started, progress, done.

    The harness runs in a worker thread; its requests report progress through a queue.
    """
    from llm_playground.evaluation.scoring import scorer_for

    config.check()
    scorer = scorer_for(model)
    events: queue.Queue = queue.Queue()
    outcome: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="llmp-tasks-") as folder:
        include = [str(write_task_yamls(Path(folder)))]
        if config.include_path:
            include.append(str(Path(config.include_path).expanduser().resolve()))
        with contextlib.redirect_stdout(sys.stderr), _quiet():
            manager = _task_manager(include, config.tasks)
        _check_names(manager, config.tasks)
        lm = playground_lm(
            scorer,
            max_length=config.max_length,
            batch_size=config.batch_size,
            stop_event=stop_event,
            progress=lambda done, total: events.put((done, total)),
        )

        def work() -> None:
            try:
                # the harness prints progress notes: they must not mix into printed results
                with contextlib.redirect_stdout(sys.stderr), _quiet():
                    outcome["out"] = _evaluate(lm, config, manager)
            except BaseException as exc:  # handed to the generator below
                outcome["error"] = exc
            finally:
                events.put(None)

        yield Started(label=f"{', '.join(config.tasks)} with {scorer.name}", unit="request")
        worker = threading.Thread(target=work, name="lm-eval", daemon=True)
        worker.start()
        while (item := events.get()) is not None:
            yield HarnessProgress(step=item[0], total=item[1])
        worker.join()
    error = outcome.get("error")
    if isinstance(error, _Stopped):
        raise UserError("stopped: the benchmark run was ended before it finished")
    if error is not None:
        raise error
    out = outcome["out"]
    result = HarnessResult(
        model=scorer.name,
        kind=scorer.kind,
        tasks=tuple(config.tasks),
        num_fewshot=config.num_fewshot,
        limit=config.limit,
        scores=scores_from(out),
        n_samples={
            t: int(v.get("effective", v.get("original", 0)) or 0)
            for t, v in out.get("n-samples", {}).items()
        },
    )
    yield HarnessDone(result=result)


@contextlib.contextmanager
def _quiet():
    """The harness logs a great deal at INFO; keep warnings and above."""
    logger = logging.getLogger("lm_eval")
    before = logger.level
    logger.setLevel(logging.ERROR)
    try:
        yield
    finally:
        logger.setLevel(before)


def describe_local_tasks() -> dict[str, str]:
    return dict(LOCAL_TASK_INFO)
