"""Direct preference optimisation: train a LoRA adapter on exported votes with TRL's ``DPOTrainer``.

The input is the preference JSONL that ``llm-playground prefs export`` writes (one object a
line with ``prompt``, ``chosen`` and ``rejected``), read by the one preference-pair reader
(:func:`llm_playground.finetuning.preferences.read_preference_pairs`). The trainer gets the
LoRA settings of :mod:`.lora` as a ``peft`` configuration, so its reference model is the
base itself with the adapter switched off (no second copy in memory), which keeps DPO on
the small offline model practical on a CPU.

:func:`train_dpo` is a generator of run events like :func:`llm_playground.finetuning.sft.train_sft`:
the generic trainer bridge (:mod:`.trainer_events`) runs the trainer in a worker thread,
turns its logs into :class:`DPOStep` events and honours the stop signal. The adapter is
saved like the SFT adapters (peft files + ``playground.json``), so Labs 3–5 list it at once.
"""

from __future__ import annotations

import logging
import math
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from llm_playground.core.errors import UserError
from llm_playground.finetuning.events import DPODone, DPOStarted, DPOStep
from llm_playground.finetuning.instructions import format_prompt, prompt_format_record
from llm_playground.finetuning.lora import (
    LoRAConfig,
    check_adapter_dir,
    check_targets,
    count_trainable,
    lora_of,
    save_adapter,
)
from llm_playground.finetuning.preferences import read_preference_pairs
from llm_playground.finetuning.trainer_events import trainer_events

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class DPOConfig:
    """Settings of one DPO run (LoRA on the base, TRL's sigmoid DPO loss)."""

    base: str = "smollm2-135m-instruct"
    max_steps: int = 20
    lr: float = 5e-5
    beta: float = 0.1
    batch_size: int = 2
    max_length: int = 256
    lora_r: int = 8
    lora_alpha: int = 16
    lora_dropout: float = 0.0
    target_modules: tuple[str, ...] = ("q_proj", "v_proj")
    seed: int = 0

    @property
    def lora(self) -> LoRAConfig:
        return lora_of(self)

    def validate(self) -> DPOConfig:
        self.lora.validate()
        checks = [
            (self.max_steps >= 1, "the number of steps must be at least 1"),
            (self.lr > 0 and math.isfinite(self.lr), "the learning rate must be a positive number"),
            (self.beta > 0 and math.isfinite(self.beta), "beta must be a positive number"),
            (self.batch_size >= 1, "the batch size must be at least 1"),
            (self.max_length >= 16, "the maximum length must be at least 16 tokens"),
            (0 <= self.seed < 2**32, "the seed must be between 0 and 2**32 - 1"),
        ]
        for ok, message in checks:
            if not ok:
                raise UserError(message)
        return self


DPOEvent = DPOStarted | DPOStep | DPODone


def dpo_loss(
    policy_chosen_logps: Any,
    policy_rejected_logps: Any,
    ref_chosen_logps: Any,
    ref_rejected_logps: Any,
    beta: float,
) -> Any:
    """The DPO loss of each preference pair: −log σ(β[(π_c − ref_c) − (π_r − ref_r)]).

    Each argument is a tensor (pairs,) of summed log-probabilities of a whole answer, under
    the model being trained (policy) or the frozen reference. Equal to TRL's sigmoid loss
    on the same log-probabilities (tested); the fast path is `DPOTrainer`, which also
    computes those log-probabilities (both answers in one batch, the reference being the
    base with the adapter switched off) and logs the rewards.
    """
    import torch.nn.functional as F

    # how much more likely the policy makes each answer than the reference does
    chosen_log_ratio = policy_chosen_logps - ref_chosen_logps  # (pairs,)
    rejected_log_ratio = policy_rejected_logps - ref_rejected_logps  # (pairs,)
    # the implicit reward margin: how far the chosen answer gained on the rejected one
    margin = beta * (chosen_log_ratio - rejected_log_ratio)
    # −log σ(margin): log 2 while the two are level, near 0 once the chosen one clearly wins
    return -F.logsigmoid(margin)


def as_dataset_rows(rows: list[dict[str, str]], chat: bool) -> list[dict[str, Any]]:
    """Conversational rows for chat models (TRL applies their template), the playground's
    instruction prompt otherwise."""
    if chat:
        return [
            {
                "prompt": [{"role": "user", "content": r["prompt"]}],
                "chosen": [{"role": "assistant", "content": r["chosen"]}],
                "rejected": [{"role": "assistant", "content": r["rejected"]}],
            }
            for r in rows
        ]
    return [
        {"prompt": format_prompt(r["prompt"]), "chosen": r["chosen"], "rejected": r["rejected"]}
        for r in rows
    ]


def _trainer(config: DPOConfig, loaded: Any, rows: list[dict[str, str]], chat: bool) -> Any:
    """TRL's DPOTrainer on the pairs, with the LoRA adapter as its peft configuration."""
    import torch
    from datasets import Dataset
    from trl import DPOConfig as TrlDPOConfig
    from trl import DPOTrainer

    check_targets(loaded.model, config.target_modules)
    dataset = Dataset.from_list(as_dataset_rows(rows, chat))
    torch.manual_seed(config.seed)
    args = TrlDPOConfig(
        output_dir=tempfile.mkdtemp(prefix="llm-playground-dpo-"),
        max_steps=config.max_steps,
        learning_rate=config.lr,
        beta=config.beta,
        per_device_train_batch_size=config.batch_size,
        gradient_accumulation_steps=1,
        max_length=config.max_length,
        logging_steps=1,
        save_strategy="no",
        report_to="none",
        use_cpu=not torch.cuda.is_available(),
        disable_tqdm=True,
        seed=config.seed,
        bf16=False,
        dataset_num_proc=None,
        lr_scheduler_type="constant",
        warmup_steps=0,
    )
    return DPOTrainer(
        model=loaded.model,
        ref_model=None,
        args=args,
        train_dataset=dataset,
        processing_class=loaded.tokenizer,
        peft_config=config.lora.peft_config(),
    )


def _step_event(total: int):
    def to_event(step: int, logs: dict[str, Any]) -> DPOStep | None:
        if "loss" not in logs:  # the summary log at the end of training
            return None
        return DPOStep(
            step=step,
            total=total,
            loss=float(logs["loss"]),
            reward_accuracy=logs.get("rewards/accuracies"),
            reward_margin=logs.get("rewards/margins"),
        )

    return to_event


def train_dpo(
    config: DPOConfig,
    prefs: str | Path | list[dict[str, str]],
    out_dir: str | Path | None = None,
    stop_event: threading.Event | None = None,
    loaded: Any = None,
    description: str = "",
    data_name: str = "",
    force: bool = False,
) -> Iterator[DPOEvent]:
    """Train a LoRA adapter with ``trl.DPOTrainer``; yield events; save to ``out_dir`` at the
    end (an existing adapter there is replaced only with ``force``)."""
    import torch

    from llm_playground.finetuning.sft import load_base

    config.validate()
    if out_dir is not None:
        check_adapter_dir(out_dir, force)
    stop_event = stop_event or threading.Event()
    rows = read_preference_pairs(prefs) if not isinstance(prefs, list) else prefs
    if not rows:
        raise UserError("no preference pairs")
    if loaded is None:
        loaded = load_base(config.base, torch.float32)
    chat = bool(getattr(loaded.tokenizer, "chat_template", None)) and bool(
        getattr(loaded.info, "chat", False)
    )
    trainer = _trainer(config, loaded, rows, chat)
    trainable, total = count_trainable(trainer.model)
    yield DPOStarted(
        label="dpo",
        total=config.max_steps,
        base=config.base,
        n_pairs=len(rows),
        trainable=trainable,
        total_parameters=total,
        share=100.0 * trainable / total,
        max_steps=config.max_steps,
    )

    start = time.perf_counter()
    last: DPOStep | None = None
    for event in trainer_events(trainer, stop_event, _step_event(config.max_steps), name="dpo"):
        last = event  # type: ignore[assignment]
        yield event
    steps = int(trainer.state.global_step)
    final_loss = last.loss if last else None
    meta = {
        "version": 1,
        "base": config.base,
        "kind": "dpo",
        "description": description
        or f"DPO LoRA adapter on {config.base} ({len(rows)} preference pairs)",
        "chat": chat,
        "prompt_format": {"name": "chat-template"} if chat else prompt_format_record(),
        "heldout_loss_before": None,
        "heldout_loss_after": None,
        "data": data_name or (str(prefs) if not isinstance(prefs, list) else "preference pairs"),
        "n_pairs": len(rows),
        "steps_done": steps,
        "final_dpo_loss": final_loss,
        "trainable_parameters": trainable,
        "total_parameters": total,
        "settings": {**asdict(config), "target_modules": list(config.target_modules)},
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }
    saved = None
    if out_dir is not None and steps > 0:
        saved = str(save_adapter(trainer.model, out_dir, meta, force=force))
    yield DPODone(
        step=steps,
        out_dir=saved,
        final_loss=final_loss,
        elapsed_s=time.perf_counter() - start,
        stopped=stop_event.is_set() and steps < config.max_steps,
        meta=meta,
    )
