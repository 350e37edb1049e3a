"""The training loop, as one generator of events.

``run_training(config, stop_event)`` loads and tokenizes the text, builds the model, and
trains it, yielding :mod:`llm_playground.training.events` as it goes: ``TrainStarted``, a
``TrainStep`` per optimiser step, a ``TrainEval`` every ``eval_interval`` steps, a
``Sample`` every ``sample_interval`` steps, ``TargetReached`` when the validation loss
first reaches ``target_val_loss`` (the run then ends there), ``Saved`` when it writes a
checkpoint, and finally ``TrainDone`` or ``Error``.

It is written in three parts: :func:`prepare` checks the settings and the data,
:class:`Trainer` holds one run's model, optimiser and counters (set up, resumed from a
checkpoint, and stepped), and :meth:`Trainer.events` is the loop itself.

- Stop: the stop event is checked before and after every step and between evaluation
  batches, so a run ends within one step of being asked.
- Repeatable: one seed drives initialisation, batches and dropout; separate generators keep
  evaluation and sampling from disturbing the training stream.
- Snapshots: with ``snapshot_interval`` N the model alone is kept every N steps
  (:mod:`llm_playground.training.snapshots`), for Lab 6 to show how its insides form.
- Resumable: a checkpoint keeps the optimiser moments, the step and every random-number
  state, so a resumed run continues the same loss curve.
- Hardware: :mod:`llm_playground.core.hardware` picks the device; with ``dtype="auto"``
  :mod:`llm_playground.training.precision` times a few throwaway steps of this very model,
  batch and block size in float32 and in bf16 autocast (and Muon's Newton-Schulz in each)
  and the run takes the faster; the decision is in ``TrainStarted`` and ``config.json``.
- Distributed: launched by ``torchrun`` (``RANK``/``WORLD_SIZE`` set), every process draws the
  same global batch and trains on its own slice; gradients are averaged by
  ``DistributedDataParallel`` (gloo on CPU, NCCL on GPU); only rank 0 writes files.
"""

from __future__ import annotations

import contextlib
import gc
import json
import math
import os
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from llm_playground.core import hardware
from llm_playground.core.errors import UserError
from llm_playground.core.events import Error, Sample, Saved
from llm_playground.training import checkpoints, snapshots
from llm_playground.training.config import RESUMABLE_FIELDS, TrainConfig
from llm_playground.training.corpus import Corpus, get_batch, load_corpus
from llm_playground.training.events import (
    TargetReached,
    TrainDone,
    TrainEval,
    TrainEvent,
    TrainStarted,
    TrainStep,
)
from llm_playground.training.model import build_model, count_parameters
from llm_playground.training.optim import build_optimizer, set_lr_factor
from llm_playground.training.precision import autocast, decide_training_precision

# --- hardware --------------------------------------------------------------------------------


def resolve_device(device: str) -> str:
    """``auto``, ``cpu`` or ``cuda`` to the device a run uses (see core.hardware)."""
    return hardware.resolve_device(device)


# --- distributed -----------------------------------------------------------------------------


@dataclass
class Dist:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def main(self) -> bool:
        return self.rank == 0

    def mean(self, value: torch.Tensor) -> torch.Tensor:
        """The average of ``value`` over all processes (itself when alone)."""
        if not self.enabled:
            return value
        import torch.distributed as dist

        value = value.clone()
        dist.all_reduce(value, op=dist.ReduceOp.SUM)
        return value / self.world_size

    def first(self, value: Any) -> Any:
        """Rank 0's ``value`` on every process (itself when alone), e.g. one precision."""
        if not self.enabled:
            return value
        import torch.distributed as dist

        box = [value]
        dist.broadcast_object_list(box, src=0)
        return box[0]


@contextlib.contextmanager
def distributed(device: str) -> Iterator[Dist]:
    """Join the process group ``torchrun`` describes in the environment, or stay single.

    A group this run created is destroyed on the way out, whatever happens inside.
    """
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        yield Dist()
        return
    import torch.distributed as dist

    rank = int(os.environ["RANK"])
    local = int(os.environ.get("LOCAL_RANK", rank))
    owned = not dist.is_initialized()
    if owned:
        dist.init_process_group(backend="nccl" if device == "cuda" else "gloo")
    try:
        if device == "cuda":
            torch.cuda.set_device(local)
        yield Dist(rank=rank, world_size=world, local_rank=local)
    finally:
        if owned:
            with contextlib.suppress(Exception):
                dist.destroy_process_group()


# --- preparing a run -------------------------------------------------------------------------


def prepare(config: TrainConfig, corpus: Corpus | None = None) -> tuple[TrainConfig, Corpus]:
    """Check the settings, read the text, and check a checkpoint to resume fits the model."""
    config.validate()
    resume_meta = checkpoints.read_meta(config.resume) if config.resume else None
    corpus = corpus or load_corpus(config.data, config.tokenizer)
    config = config.replace(vocab_size=corpus.vocab_size)
    config.validate(len(corpus.train), len(corpus.val))
    if resume_meta is not None:
        saved, ours = resume_meta["model"], config.model.to_dict()
        defaults = type(config.model)().to_dict()
        differs = [
            name for name in RESUMABLE_FIELDS if saved.get(name, defaults[name]) != ours.get(name)
        ]
        if differs:
            raise UserError(
                f"cannot resume {config.resume}: its model differs in {', '.join(differs)}"
            )
    return config, corpus


def _encode_prompt(tokenizer, prompt: str) -> list[int]:
    try:
        ids = list(tokenizer.encode(prompt))
    except (UserError, KeyError, ValueError):
        ids = []
    return ids or [0]


# --- one step, as a learner reads it ---------------------------------------------------------


def training_step(
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    inputs: torch.Tensor,
    targets: torch.Tensor,
    max_grad_norm: float,
) -> float:
    """One optimiser step: forward, loss, backward, clip, update. Returns the loss.

    `inputs` and `targets` are (batch, T) token ids, the targets being the inputs
    shifted by one token. Trainer.train_step() gives the same loss and the same
    updated weights (tested); it also sets the learning rate from the schedule, runs the
    forward pass in bfloat16 where that is fast, and averages over processes.
    """
    # forward: a score for every token of the vocabulary, at every position
    logits, _ = model(inputs)  # (B, T) -> (B, T, vocab)
    # loss: the mean cross-entropy of each position's prediction of the next token
    loss = torch.nn.functional.cross_entropy(
        logits.reshape(-1, logits.size(-1)),  # (B, T, vocab) -> (B * T, vocab)
        targets.reshape(-1),  # (B, T) -> (B * T,)
    )
    # backward: the gradient of the loss for every weight, in each weight's .grad
    loss.backward()
    # clip: shrink the gradient when its overall length is above max_grad_norm, so that
    # one unlucky batch cannot throw the weights far
    if max_grad_norm > 0:
        torch.nn.utils.clip_grad_norm_(model.parameters(), max_grad_norm)
    # update: the optimiser moves every weight against its gradient, then the gradients
    # are cleared (backward adds to them)
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)
    return loss.item()


# --- one run ---------------------------------------------------------------------------------


class Trainer:
    """One training run: the model, its optimiser, the data stream and the counters."""

    def __init__(
        self, config: TrainConfig, corpus: Corpus, dist: Dist, stop: threading.Event
    ) -> None:
        self.config, self.corpus, self.dist, self.stop = config, corpus, dist, stop
        self.started_at = time.perf_counter()
        device = resolve_device(config.device)
        if dist.enabled and device == "cuda":
            device = f"cuda:{dist.local_rank}"
        self.device = device
        self.device_type = "cuda" if device.startswith("cuda") else "cpu"
        if config.batch_size % dist.world_size:
            raise UserError(
                f"batch size {config.batch_size} does not split evenly over "
                f"{dist.world_size} processes"
            )
        # the precision: as asked, or the faster one on a few timed throwaway steps of this
        # model at this batch and block size (the same decision on every process)
        share = config.batch_size // dist.world_size
        self.precision = dist.first(decide_training_precision(config, corpus, device, share))
        self.dtype = self.precision.dtype

        # one seed for the initial weights and one generator for the batches
        torch.manual_seed(config.seed)
        self.batch_generator = torch.Generator().manual_seed(config.seed)
        self.model = build_model(config.model).to(device)
        self.optimizer = build_optimizer(
            self.model, config, self.device_type, ns_dtype=self.precision.newton_schulz_dtype
        )
        self.train_model = torch.compile(self.model) if config.compile else self.model
        if dist.enabled:
            from torch.nn.parallel import DistributedDataParallel

            ids = [dist.local_rank] if self.device_type == "cuda" else None
            self.train_model = DistributedDataParallel(self.train_model, device_ids=ids)

        # counters
        self.step = 0
        self.metrics: list[dict[str, Any]] = []  # one row per evaluation, as metrics.jsonl
        self.train_time = 0.0  # seconds in training steps only
        self.tokens_since_eval = 0
        self.time_since_eval = 0.0
        self.smoothed_tokens_per_s = 0.0
        self.last_train_loss: float | None = None
        self.last_val_loss: float | None = None
        self.reached: TargetReached | None = None

        # this process's rows of every global batch
        share = config.batch_size // dist.world_size
        self.rows = slice(dist.rank * share, (dist.rank + 1) * share) if dist.enabled else None
        self.tokens_per_step = config.batch_size * config.model.block_size
        self.prompt_ids = _encode_prompt(corpus.tokenizer, config.sample_prompt)
        self.out_dir = Path(config.out_dir).expanduser() if config.out_dir and dist.main else None

    # --- resuming ---------------------------------------------------------------------

    def resume(self, folder: str) -> None:
        """Continue from a checkpoint: weights, optimiser moments, step, random states, metrics."""
        ckpt = Path(folder).expanduser()
        # a damaged or truncated file is one line naming it, not a safetensors traceback
        checkpoints.load_weights(self.model, ckpt / checkpoints.WEIGHTS_FILE, str(self.device))
        opt_state, self.step, rng = checkpoints.load_training_state(ckpt / checkpoints.STATE_FILE)
        self.optimizer.load_state_dict(opt_state)
        if "torch" in rng:
            torch.set_rng_state(rng["torch"])
        if "train" in rng:
            self.batch_generator.set_state(rng["train"])
        if "cuda" in rng and self.device_type == "cuda":
            torch.cuda.set_rng_state(rng["cuda"])
        self.metrics = [m for m in checkpoints.read_metrics(ckpt) if m.get("step", 0) <= self.step]
        if self.metrics:
            self.last_train_loss = self.metrics[-1].get("train_loss")
            self.last_val_loss = self.metrics[-1].get("val_loss")
        if self.step >= self.config.max_iters:
            raise UserError(
                f"the checkpoint is already at step {self.step}; raise max iterations above it"
            )

    def rng_state(self) -> dict[str, torch.Tensor]:
        state = {"torch": torch.get_rng_state(), "train": self.batch_generator.get_state()}
        if self.device_type == "cuda":
            state["cuda"] = torch.cuda.get_rng_state()
        return state

    # --- the pieces of the loop -------------------------------------------------------

    def train_step(self) -> tuple[float, float, float]:
        """One optimiser step; returns (loss averaged over processes, learning rate, seconds)."""
        config = self.config
        started = time.perf_counter()
        # 1. the learning rate of this step, from the schedule
        factor = config.lr_factor(self.step)
        set_lr_factor(self.optimizer, factor)
        # 2. a batch of blocks: x, and y = x shifted by one token
        x, y = get_batch(
            self.corpus.train,
            config.model.block_size,
            config.batch_size,
            self.batch_generator,
            self.device,
            self.rows,
        )
        # 3. forward: the mean cross-entropy of every next-token prediction
        with autocast(self.device_type, self.dtype):
            _, loss = self.train_model(x, y)
        # 4. backward: the gradient of the loss for every weight
        loss.backward()
        # 5. clip the gradient's overall length, then let the optimiser update the weights
        if config.grad_clip > 0:
            torch.nn.utils.clip_grad_norm_(self.model.parameters(), config.grad_clip)
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)
        loss_value = self.dist.mean(loss.detach().float()).item()
        return loss_value, config.lr * factor, time.perf_counter() - started

    def estimate_losses(self) -> tuple[float, float] | None:
        """Mean loss over ``eval_iters`` batches of each split; None when stopped meanwhile."""
        config, block, batch = self.config, self.config.model.block_size, self.config.batch_size
        results = []
        self.model.eval()
        try:
            with torch.no_grad():
                for split in (self.corpus.train, self.corpus.val):
                    # the same batches for a given step, whatever happened before
                    generator = torch.Generator().manual_seed(config.seed + 7919 * (self.step + 1))
                    total = torch.zeros((), device=self.device)
                    for _ in range(config.eval_iters):
                        if self.stop.is_set():
                            return None
                        x, y = get_batch(split, block, batch, generator, self.device, self.rows)
                        with autocast(self.device_type, self.dtype):
                            _, loss = self.model(x, y)
                        total += loss.float()
                    results.append(self.dist.mean(total / config.eval_iters).item())
        finally:
            self.model.train()
        return results[0], results[1]

    def evaluate(self) -> Iterator[TrainEvent]:
        """Estimate both losses, record them, and note the target when it is first reached."""
        losses = self.estimate_losses()
        if losses is None:
            return
        self.last_train_loss, self.last_val_loss = losses
        elapsed = time.perf_counter() - self.started_at
        seconds = self.time_since_eval
        event = TrainEval(
            step=self.step,
            train_loss=self.last_train_loss,
            val_loss=self.last_val_loss,
            elapsed_s=elapsed,
            tokens_per_s=self.tokens_since_eval / seconds if seconds > 0 else 0.0,
            train_time_s=self.train_time,
        )
        self.tokens_since_eval, self.time_since_eval = 0, 0.0
        row = event.metrics()
        target = self.config.target_val_loss
        if target is not None and self.reached is None and self.last_val_loss <= target:
            self.reached = TargetReached(
                step=self.step,
                target=target,
                val_loss=self.last_val_loss,
                elapsed_s=elapsed,
                train_time_s=self.train_time,
            )
            row.update(target_val_loss=target, target_reached_s=round(elapsed, 6))
        self.metrics.append(row)
        if self.out_dir:
            with open(self.out_dir / checkpoints.METRICS_FILE, "a", encoding="utf-8") as f:
                f.write(json.dumps(row) + "\n")
        yield event
        if self.reached is not None and self.reached.step == self.step:
            yield self.reached

    def sample(self) -> Sample:
        """The model's continuation of the sample prompt (its own generator: no effect on training)."""
        generator = torch.Generator(device=self.device).manual_seed(self.config.seed + self.step)
        idx = torch.tensor([self.prompt_ids], dtype=torch.long, device=self.device)
        with autocast(self.device_type, self.dtype):
            out = self.model.generate(
                idx, self.config.sample_tokens, temperature=1.0, generator=generator
            )
        text = self.corpus.tokenizer.decode(out[0, len(self.prompt_ids) :].tolist())
        return Sample(step=self.step, text=text, prompt=self.config.sample_prompt)

    def save(self) -> Iterator[TrainEvent]:
        """Write a checkpoint (rank 0 with an output folder only)."""
        if self.out_dir is None:
            return
        path = checkpoints.save_checkpoint(
            self.out_dir,
            self.model,
            self.config,
            self.corpus.tokenizer,
            self.step,
            checkpoints.RunState(
                train_loss=self.last_train_loss,
                val_loss=self.last_val_loss,
                optimizer=self.optimizer,
                rng=self.rng_state(),
                target=self.reached.metrics() if self.reached else None,
                precision=self.precision.to_dict(),
            ),
        )
        yield Saved(step=self.step, path=str(path))

    def started_event(self) -> TrainStarted:
        config = self.config
        return TrainStarted(
            label=config.run_label,
            device=self.device,
            dtype=str(self.dtype).replace("torch.", ""),
            precision=self.precision.summary(),
            bf16_ratio=self.precision.compute.ratio,
            parameters=count_parameters(self.model),
            vocab_size=config.model.vocab_size,
            max_iters=config.max_iters,
            total=config.max_iters,
            start_step=self.step,
            world_size=self.dist.world_size,
            tokens_per_step=self.tokens_per_step,
        )

    def count_time(self, seconds: float) -> None:
        """Add one step's time: training time, tokens since the last evaluation, smoothed speed."""
        self.train_time += seconds
        self.tokens_since_eval += self.tokens_per_step
        self.time_since_eval += seconds
        tokens_per_s = self.tokens_per_step / seconds if seconds > 0 else 0.0
        previous = self.smoothed_tokens_per_s
        self.smoothed_tokens_per_s = (
            tokens_per_s if previous == 0 else 0.9 * previous + 0.1 * tokens_per_s
        )

    def _evaluated_now(self) -> bool:
        return bool(self.metrics) and self.metrics[-1].get("step") == self.step

    def _snapshot_due(self) -> bool:
        interval = self.config.snapshot_interval
        return bool(interval) and self.step % interval == 0

    def _sample_due(self) -> bool:
        config = self.config
        return (
            bool(config.sample_tokens)
            and self.dist.main
            and self.step % config.sample_interval == 0
        )

    # --- the loop ---------------------------------------------------------------------

    def events(self) -> Iterator[TrainEvent]:
        """Train until ``max_iters``, a stop, or the target: the whole run as events."""
        config = self.config
        if self.out_dir:
            self.out_dir.mkdir(parents=True, exist_ok=True)
            _write_metrics(self.out_dir, self.metrics)
            snapshots.prune_snapshots(self.out_dir, self.step)  # a resumed run writes them again
        yield self.started_event()
        self.model.train()
        stopped = False
        while self.step < config.max_iters and self.reached is None:
            # evaluate and sample on schedule (before the step, so step 0 is measured too)
            if self.step % config.eval_interval == 0 and not self._evaluated_now():
                yield from self.evaluate()
                if self.reached is not None:
                    break
            if self._sample_due():
                yield self.sample()
            if self.stop.is_set():
                stopped = True
                break

            # one optimiser step
            loss, lr, seconds = self.train_step()
            self.step += 1
            if not math.isfinite(loss):
                yield Error(
                    message=f"the loss became {loss} at step {self.step}: training diverged; "
                    f"lower the learning rate (now {config.lr:g})",
                    step=self.step,
                )
                return

            # bookkeeping: time and tokens per second, then the step's event
            self.count_time(seconds)
            yield TrainStep(
                step=self.step, loss=loss, lr=lr, tokens_per_s=self.smoothed_tokens_per_s
            )
            if (
                config.checkpoint_interval
                and self.step % config.checkpoint_interval == 0
                and self.step < config.max_iters
            ):
                yield from self.save()
            if self.out_dir and self._snapshot_due():
                snapshots.save_snapshot(self.out_dir, self.model, self.step, loss)

        # a last evaluation and sample at the final step, unless stopped
        if not stopped and self.reached is None and not self._evaluated_now():
            yield from self.evaluate()
            if self._sample_due():
                yield self.sample()
        yield from self.save()
        yield TrainDone(
            step=self.step,
            train_loss=self.last_train_loss,
            val_loss=self.last_val_loss,
            elapsed_s=time.perf_counter() - self.started_at,
            stopped=stopped,
            target_reached_s=self.reached.elapsed_s if self.reached else None,
        )


def run_training(
    config: TrainConfig, stop_event: threading.Event | None = None, corpus: Corpus | None = None
) -> Iterator[TrainEvent]:
    """Train as ``config`` says, yielding events; never raises for bad settings (yields ``Error``)."""
    stop_event = stop_event or threading.Event()
    try:
        started_at = time.perf_counter()
        config, corpus = prepare(config, corpus)
        with distributed(resolve_device(config.device)) as dist:
            trainer = Trainer(config, corpus, dist, stop_event)
            try:
                trainer.started_at = started_at  # wall time counts reading the text too
                if config.resume:
                    trainer.resume(config.resume)
                yield from trainer.events()
            finally:
                # free the DDP wrapper while its process group still exists: freed after the
                # group is destroyed, gloo's teardown can wait forever on its own worker thread
                del trainer
                if dist.enabled:
                    gc.collect()
    except UserError as exc:
        yield Error(message=str(exc))
    except (torch.OutOfMemoryError, MemoryError):
        yield Error(message="out of memory: lower the batch size, the block size or the model size")


def _write_metrics(out_dir: Path, metrics: list[dict]) -> None:
    with open(out_dir / checkpoints.METRICS_FILE, "w", encoding="utf-8") as f:
        for m in metrics:
            f.write(json.dumps(m) + "\n")
