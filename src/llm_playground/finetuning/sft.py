"""Supervised fine-tuning with LoRA: train a small adapter on instruction data.

:func:`train_sft` is a generator of run events (:class:`SFTStarted`, :class:`SFTStep`,
:class:`SFTEval`, :class:`SFTDone`, subclasses of :mod:`llm_playground.core.events`) with a
stop signal; the Lab 4 page runs it in its job panel, the CLI draws it with its one
progress renderer, and the tests assert on it.

The loop is a plain PyTorch loop on a ``peft`` LoRA model rather than ``trl``'s
``SFTTrainer``, for three reasons that matter on a CPU:

* the loss is computed on the response tokens only, and the output layer is applied to
  those positions only. Gemma 3 has a 262k-token vocabulary: its output layer costs as much
  as the rest of the 270M model, so skipping the prompt positions nearly halves a step;
* a generator with a stop event is what the page, the CLI and the tests consume; a
  ``Trainer`` would need callbacks and a second thread to give the same;
* the number format is chosen by measuring the CPU at start (bfloat16 frozen weights where
  the CPU multiplies bfloat16 fast, float32 elsewhere); LoRA weights stay float32.

Adapters are added and saved by :mod:`llm_playground.finetuning.lora` (the standard
``peft`` format, plus a ``playground.json`` that names the base model, the prompt format,
the held-out loss before and after, the data and the settings).
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from llm_playground.core.errors import UserError
from llm_playground.finetuning.events import SFTDone, SFTEval, SFTStarted, SFTStep
from llm_playground.finetuning.instructions import Example, prompt_format_record
from llm_playground.finetuning.lora import (
    DEFAULT_TARGETS,
    META_VERSION,
    LoRAConfig,
    add_adapter,
    check_adapter_dir,
    count_trainable,
    lora_of,
    save_adapter,
)

log = logging.getLogger(__name__)

IGNORE = -100


@dataclass(frozen=True)
class SFTConfig:
    """Settings of one LoRA fine-tuning run."""

    base: str = "smollm2-135m-instruct"
    lora_r: int = 8
    lora_alpha: int = 16
    lora_dropout: float = 0.05
    target_modules: tuple[str, ...] = DEFAULT_TARGETS
    lr: float = 2e-4
    max_steps: int = 100
    seq_len: int = 128
    batch_size: int = 4
    seed: int = 0
    warmup_steps: int = 10
    eval_every: int = 0  # held-out loss every N steps (0: only before and after)
    heldout_max: int = 64  # held-out examples used for the loss
    dtype: str = "auto"  # auto | float32 | bfloat16 (frozen weights)

    @property
    def lora(self) -> LoRAConfig:
        return lora_of(self)

    def validate(self) -> SFTConfig:
        self.lora.validate()
        checks = [
            (self.lr > 0 and math.isfinite(self.lr), "the learning rate must be a positive number"),
            (self.max_steps >= 1, "the number of steps must be at least 1"),
            (self.seq_len >= 8, "the sequence length must be at least 8 tokens"),
            (self.batch_size >= 1, "the batch size must be at least 1"),
            (self.warmup_steps >= 0, "warm-up steps cannot be negative"),
            (self.eval_every >= 0, "the interval between held-out evaluations cannot be negative"),
            (self.heldout_max >= 1, "the number of held-out examples must be at least 1"),
            (0 <= self.seed < 2**32, "the seed must be between 0 and 2**32 - 1"),
            (
                self.dtype in ("auto", "float32", "bfloat16"),
                "dtype must be auto, float32 or bfloat16",
            ),
        ]
        for ok, message in checks:
            if not ok:
                raise UserError(message)
        return self

    def settings(self) -> dict[str, Any]:
        row = asdict(self)
        row["target_modules"] = list(self.target_modules)
        return row


SFTEvent = SFTStarted | SFTStep | SFTEval | SFTDone


# --- number format ----------------------------------------------------------------------


def pick_dtype(requested: str = "auto") -> Any:
    """float32, or bfloat16 where it is fast here (the one rule of core.hardware)."""
    from llm_playground.core.hardware import pick_dtype as hardware_pick_dtype
    from llm_playground.core.hardware import resolve_device

    return hardware_pick_dtype(requested, resolve_device("auto"))


# --- tokenisation -----------------------------------------------------------------------


@dataclass(frozen=True)
class Encoded:
    ids: tuple[int, ...]
    n_prompt: int  # the first n_prompt ids carry no loss


def encode_example(tokenizer: Any, ex: Example, seq_len: int) -> Encoded | None:
    """Prompt ids (with the tokenizer's BOS) + response ids + EOS, cut to ``seq_len``.

    ``None`` when the prompt leaves no room for a response token.
    """
    prompt_ids = tokenizer(ex.prompt, add_special_tokens=True)["input_ids"]
    response_ids = tokenizer(ex.output, add_special_tokens=False)["input_ids"]
    if tokenizer.eos_token_id is not None:
        response_ids = response_ids + [tokenizer.eos_token_id]
    ids = (prompt_ids + response_ids)[:seq_len]
    if len(ids) <= len(prompt_ids):
        return None
    return Encoded(tuple(ids), len(prompt_ids))


def encode_all(tokenizer: Any, examples: Sequence[Example], seq_len: int) -> list[Encoded]:
    out = [encode_example(tokenizer, ex, seq_len) for ex in examples]
    return [e for e in out if e is not None]


def collate(batch: Sequence[Encoded], pad_id: int) -> dict[str, Any]:
    """Right-padded ``input_ids``, ``attention_mask`` and ``labels`` (-100 on prompt and padding)."""
    import torch

    width = max(len(e.ids) for e in batch)
    ids = torch.full((len(batch), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(batch), width), dtype=torch.long)
    labels = torch.full((len(batch), width), IGNORE, dtype=torch.long)
    for i, e in enumerate(batch):
        n = len(e.ids)
        ids[i, :n] = torch.tensor(e.ids)
        mask[i, :n] = 1
        labels[i, e.n_prompt : n] = ids[i, e.n_prompt : n]
    return {"input_ids": ids, "attention_mask": mask, "labels": labels}


# --- loss -------------------------------------------------------------------------------


def _causal_lm(model: Any) -> Any:
    return model.get_base_model() if hasattr(model, "get_base_model") else model


def response_loss(model: Any, batch: dict[str, Any]) -> tuple[Any, int]:
    """Summed cross-entropy over the response tokens and their count.

    The output layer is applied only where a label exists. The mean equals what
    ``model(input_ids, attention_mask, labels=labels).loss`` gives (a test checks it).
    """
    import torch
    import torch.nn.functional as F

    lm = _causal_lm(model)
    body = getattr(lm, "model", None)
    head = lm.get_output_embeddings()
    labels = batch["labels"][:, 1:]
    keep = labels != IGNORE
    n = int(keep.sum())
    if body is None or head is None:  # an architecture without the usual split: full logits
        out = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"])
        logits = out.logits[:, :-1][keep].float()
    else:
        hidden = body(
            input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]
        ).last_hidden_state
        logits = head(hidden[:, :-1][keep]).float()
    cap = getattr(lm.config, "final_logit_softcapping", None)
    if cap:
        logits = torch.tanh(logits / cap) * cap
    if n == 0:
        return logits.sum() * 0.0, 0
    return F.cross_entropy(logits, labels[keep], reduction="sum"), n


def heldout_loss(
    model: Any,
    encoded: Sequence[Encoded],
    pad_id: int,
    batch_size: int = 8,
    stop_event: threading.Event | None = None,
) -> float:
    """Mean per-token cross-entropy on the response tokens of ``encoded`` (eval mode, no grad)."""
    import torch

    was_training = model.training
    model.eval()
    total, count = 0.0, 0
    with torch.no_grad():
        for i in range(0, len(encoded), batch_size):
            if stop_event is not None and stop_event.is_set():
                break
            loss, n = response_loss(model, collate(encoded[i : i + batch_size], pad_id))
            total += float(loss)
            count += n
    if was_training:
        model.train()
    return total / count if count else float("nan")


# --- model set-up -----------------------------------------------------------------------


def load_base(name: str, dtype: Any) -> Any:
    """The base model for training: registry offline models or Lab 2 runs (not adapters)."""
    from llm_playground.generation.registry import load_model, resolve

    info = resolve(name)
    if info.kind == "adapter":
        raise UserError(f"'{name}' is an adapter: fine-tune its base model '{info.base}' instead")
    if info.kind == "hub" and info.reason:
        raise UserError(
            f"unknown model '{name}': not an offline model, a Lab 2 run or an adapter, "
            f"and the hub {info.reason}"
        )
    return load_model(info, dtype=dtype)


def pad_id_of(tokenizer: Any) -> int:
    if tokenizer.pad_token_id is not None:
        return tokenizer.pad_token_id
    return tokenizer.eos_token_id or 0


# --- training ---------------------------------------------------------------------------


def _lr_at(step: int, config: SFTConfig) -> float:
    """Linear warm-up then linear decay to a tenth of the peak."""
    warm = min(config.warmup_steps, max(config.max_steps // 5, 0))
    if warm and step < warm:
        return config.lr * (step + 1) / warm
    span = max(config.max_steps - warm, 1)
    frac = min(max(step - warm, 0) / span, 1.0)
    return config.lr * (1.0 - 0.9 * frac)


@dataclass
class _Run:
    """One run from its set-up to its end: the model, the data and the training state.

    :func:`train_sft` drives it; each method is one stage of the run (the opening event,
    a training step, a held-out evaluation, the closing record).
    """

    config: SFTConfig
    model: Any
    pad_id: int
    train_enc: list[Encoded]
    held_enc: list[Encoded]
    dtype: Any
    trainable: int
    total: int
    # the training state, filled in by start_training()
    params: list[Any] = field(default_factory=list)
    optimizer: Any = None
    generator: Any = None
    order: list[int] = field(default_factory=list)
    step: int = 0
    train_time: float = 0.0

    @property
    def share(self) -> float:
        """The percentage of the model's parameters that train."""
        return 100.0 * self.trainable / self.total

    def started(self) -> SFTStarted:
        """The event that opens the run: what trains, on how much data, in which format."""
        config = self.config
        return SFTStarted(
            label="sft",
            total=config.max_steps,
            base=config.base,
            trainable=self.trainable,
            total_parameters=self.total,
            share=self.share,
            n_train=len(self.train_enc),
            n_heldout=len(self.held_enc),
            dtype=str(self.dtype).replace("torch.", ""),
            max_steps=config.max_steps,
        )

    def heldout_loss(self, stop_event: threading.Event | None = None) -> float:
        """The mean loss on the held-out response tokens."""
        return heldout_loss(self.model, self.held_enc, self.pad_id, stop_event=stop_event)

    def start_training(self) -> None:
        """Make the optimizer and the shuffling generator; put the model in training mode."""
        import torch

        # Only the LoRA weights train; AdamW keeps its two moments for them alone.
        self.params = [p for p in self.model.parameters() if p.requires_grad]
        self.optimizer = torch.optim.AdamW(self.params, lr=self.config.lr, weight_decay=0.0)
        self.generator = torch.Generator().manual_seed(self.config.seed)
        self.model.train()

    def next_batch(self) -> dict[str, Any]:
        """The next batch: a fresh shuffle of the examples whenever one runs out."""
        import torch

        batch_size = self.config.batch_size
        if len(self.order) < batch_size:
            shuffled = torch.randperm(len(self.train_enc), generator=self.generator)
            self.order += shuffled.tolist()
        picks, self.order = self.order[:batch_size], self.order[batch_size:]
        return collate([self.train_enc[i] for i in picks], self.pad_id)

    def train_step(self) -> SFTStep:
        """One optimizer step on one batch; returns its event."""
        import torch

        # 1. the next batch of examples
        batch = self.next_batch()
        # 2. the learning rate of this step (warm-up, then linear decay)
        lr = _lr_at(self.step, self.config)
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        # 3. forward on the response tokens only: the mean loss per response token
        start = time.perf_counter()
        loss_sum, n_tokens = response_loss(self.model, batch)
        loss = loss_sum / max(n_tokens, 1)
        # 4. backward, clip the gradient norm to 1, update the LoRA weights, clear the grads
        loss.backward()
        torch.nn.utils.clip_grad_norm_(self.params, 1.0)
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)
        # 5. the step's timing and size
        seconds = time.perf_counter() - start
        self.train_time += seconds
        self.step += 1
        tokens = int(batch["attention_mask"].sum())
        return SFTStep(
            step=self.step,
            total=self.config.max_steps,
            loss=loss.detach().item(),
            lr=lr,
            tokens=tokens,
            s_per_step=seconds,
            tokens_per_s=tokens / seconds if seconds > 0 else 0.0,
        )

    def eval_due(self) -> bool:
        """Whether to measure the held-out loss now (every ``eval_every`` steps, not the last)."""
        every = self.config.eval_every
        return bool(every) and self.step % every == 0 and self.step < self.config.max_steps

    def s_per_step(self) -> float:
        """The mean time of one training step."""
        return self.train_time / self.step if self.step else 0.0


def _set_up(
    config: SFTConfig, train: Sequence[Example], heldout: Sequence[Example], loaded: Any
) -> _Run:
    """Load the base (unless given), encode the data, add the LoRA adapter."""
    if not train:
        raise UserError("no training examples")
    if not heldout:
        raise UserError("no held-out examples")
    dtype = pick_dtype(config.dtype) if loaded is None else next(loaded.model.parameters()).dtype
    if loaded is None:
        loaded = load_base(config.base, dtype)
    tokenizer = loaded.tokenizer
    train_enc = encode_all(tokenizer, train, config.seq_len)
    held_enc = encode_all(tokenizer, list(heldout)[: config.heldout_max], config.seq_len)
    if not train_enc:
        raise UserError(
            f"every training prompt is longer than the sequence length {config.seq_len}"
        )
    if not held_enc:
        raise UserError(
            f"every held-out prompt is longer than the sequence length {config.seq_len}"
        )
    model = add_adapter(loaded.model, config.lora, seed=config.seed)
    trainable, total = count_trainable(model)
    return _Run(config, model, pad_id_of(tokenizer), train_enc, held_enc, dtype, trainable, total)


def train_sft(
    config: SFTConfig,
    train: Sequence[Example],
    heldout: Sequence[Example],
    out_dir: str | Path | None = None,
    stop_event: threading.Event | None = None,
    loaded: Any = None,
    notes: AdapterNotes | None = None,
    force: bool = False,
) -> Iterator[SFTEvent]:
    """Fine-tune LoRA weights on ``train``; yield events; save to ``out_dir`` when given.

    ``loaded`` may be a :class:`~llm_playground.generation.registry.LoadedModel` of the base
    (tests pass one to avoid reloading; it is modified in place). ``notes`` go into the
    adapter's record (its data's name, a description). Nothing is written before
    training ends, a stopped run saves what it has learnt so far, and an existing adapter
    in ``out_dir`` is replaced only with ``force``.
    """
    config.validate()
    if out_dir is not None:
        check_adapter_dir(out_dir, force)  # refuse before any work is done
    stop_event = stop_event or threading.Event()
    run = _set_up(config, train, heldout, loaded)
    yield run.started()

    # The held-out loss of the base model: the figure the adapter has to beat.
    before = run.heldout_loss(stop_event)
    yield SFTEval(step=0, heldout_loss=before)

    run.start_training()
    start = time.perf_counter()
    while run.step < config.max_steps and not stop_event.is_set():
        yield run.train_step()
        # now and then, the held-out loss
        if run.eval_due():
            yield SFTEval(step=run.step, heldout_loss=run.heldout_loss())

    after = run.heldout_loss() if run.step else before  # no step: same weights
    if run.step:
        yield SFTEval(step=run.step, heldout_loss=after)
    run.model.eval()
    yield _finish(
        run,
        before,
        after,
        out_dir,
        start=start,
        stop_event=stop_event,
        notes=notes or AdapterNotes(),
        force=force,
    )


def _finish(
    run: _Run,
    before: float,
    after: float,
    out_dir: str | Path | None,
    *,
    start: float,
    stop_event: threading.Event,
    notes: AdapterNotes,
    force: bool,
) -> SFTDone:
    """Write the adapter's record, save the adapter when asked and any step ran, and close."""
    facts = TrainingFacts(
        heldout_loss_before=before,
        heldout_loss_after=after,
        trainable=run.trainable,
        total=run.total,
        steps_done=run.step,
        s_per_step=run.s_per_step(),
        dtype=str(run.dtype),
        n_train=len(run.train_enc),
        n_heldout=len(run.held_enc),
    )
    meta = adapter_meta(run.config, facts, notes)
    saved = None
    if out_dir is not None and run.step > 0:
        saved = str(save_adapter(run.model, out_dir, meta, force=force))
    return SFTDone(
        step=run.step,
        heldout_loss_before=before,
        heldout_loss_after=after,
        trainable=run.trainable,
        total_parameters=run.total,
        share=run.share,
        elapsed_s=time.perf_counter() - start,
        s_per_step=run.s_per_step(),
        out_dir=saved,
        stopped=stop_event.is_set() and run.step < run.config.max_steps,
        meta=meta,
    )


# --- the adapter's record ---------------------------------------------------------------


@dataclass(frozen=True)
class AdapterNotes:
    """What an adapter's record says besides its training: the data's name, a description
    (by default one made from the settings) and any further fields."""

    data_name: str = ""
    description: str = ""
    extra: dict[str, Any] | None = None


@dataclass(frozen=True)
class TrainingFacts:
    """What an adapter's record says of its training: losses, size, length and speed."""

    heldout_loss_before: float
    heldout_loss_after: float
    trainable: int
    total: int
    steps_done: int | None = None  # None: the configured number of steps
    s_per_step: float = 0.0
    dtype: str = ""
    n_train: int = 0
    n_heldout: int = 0


def adapter_meta(
    config: SFTConfig, facts: TrainingFacts, notes: AdapterNotes | None = None
) -> dict[str, Any]:
    """The ``playground.json`` record of an adapter."""
    from llm_playground.generation.registry import OFFLINE_MODELS

    notes = notes or AdapterNotes()
    trainable, total = facts.trainable, facts.total
    meta = {
        "version": META_VERSION,
        "base": config.base,
        "description": notes.description
        or f"LoRA adapter (r={config.lora_r}) on {config.base}, "
        f"instruction-tuned on {notes.data_name or 'instructions'}",
        "chat": False,
        "prompt_format": prompt_format_record(),
        "heldout_loss_before": round(facts.heldout_loss_before, 6),
        "heldout_loss_after": round(facts.heldout_loss_after, 6),
        "data": notes.data_name,
        "n_train": facts.n_train,
        "n_heldout": facts.n_heldout,
        "trainable_parameters": trainable,
        "total_parameters": total,
        "trainable_share_percent": round(100.0 * trainable / total, 4) if total else 0.0,
        "steps_done": facts.steps_done if facts.steps_done is not None else config.max_steps,
        "s_per_step": round(facts.s_per_step, 4),
        "dtype": facts.dtype.replace("torch.", ""),
        "settings": config.settings(),
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }
    spec = OFFLINE_MODELS.get(config.base)
    if spec:
        meta["base_licence"] = spec.licence
    meta.update(notes.extra or {})
    return meta
