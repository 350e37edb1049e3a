"""Direct preference optimisation: train a LoRA adapter on exported votes with TRL's ``DPOTrainer``.

The input is the preference JSONL that ``llm-playground prefs export`` writes (one object a
line with ``prompt``, ``chosen`` and ``rejected``). The trainer gets a ``peft`` LoRA
configuration, so its reference model is the base itself with the adapter switched off
(no second copy in memory), which keeps DPO on the small offline model practical on a CPU.

:func:`train_dpo` is a generator of events like :func:`llm_playground.finetuning.sft.train_sft`: the
trainer runs in a worker thread, a ``TrainerCallback`` passes each logged step to the
generator and honours the stop event. The adapter is saved like the SFT adapters (peft
files + ``playground.json``), so Labs 3–5 list it at once.
"""

from __future__ import annotations

import logging
import math
import queue
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from llm_playground.core.errors import UserError
from llm_playground.core.jsonl import read_jsonl
from llm_playground.finetuning.instructions import format_prompt, prompt_format_record

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class DPOSettings:
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

    def validate(self) -> DPOSettings:
        checks = [
            (self.max_steps >= 1, "--max-steps must be at least 1"),
            (self.lr > 0 and math.isfinite(self.lr), "the learning rate must be a positive number"),
            (self.beta > 0 and math.isfinite(self.beta), "beta must be a positive number"),
            (self.batch_size >= 1, "the batch size must be at least 1"),
            (self.max_length >= 16, "the maximum length must be at least 16 tokens"),
            (self.lora_r >= 1, "the LoRA rank must be at least 1"),
            (0 <= self.lora_dropout < 1, "the LoRA dropout must be in [0, 1)"),
            (len(self.target_modules) > 0, "name at least one target module"),
        ]
        for ok, message in checks:
            if not ok:
                raise UserError(message)
        return self


@dataclass(frozen=True)
class DPOStarted:
    base: str
    n_pairs: int
    trainable: int
    total: int
    share: float
    max_steps: int


@dataclass(frozen=True)
class DPOStep:
    step: int
    loss: float
    reward_accuracy: float | None = None
    reward_margin: float | None = None


@dataclass(frozen=True)
class DPODone:
    step: int
    out_dir: str | None
    final_loss: float | None
    elapsed_s: float
    stopped: bool = False
    meta: dict[str, Any] = field(default_factory=dict, compare=False)


DPOEvent = DPOStarted | DPOStep | DPODone


def load_preferences(path: str | Path) -> list[dict[str, str]]:
    """Rows of a preference JSONL; a malformed line raises :class:`UserError` naming its number.

    Rows with a ``label`` other than a plain A/B preference (``tie``, ``both-bad``) carry no
    preference and are skipped.
    """
    path = Path(path)
    rows = [
        {"prompt": row["prompt"], "chosen": row["chosen"], "rejected": row["rejected"]}
        for _, row in read_jsonl(
            path, "preferences file", text_fields=("prompt", "chosen", "rejected")
        )
        if row.get("label") in (None, "", "a", "b", "preferred", "chosen")
    ]
    if not rows:
        raise UserError(
            f"{path.name} holds no A/B preference pairs (ties and 'both bad' "
            "votes carry no preference)"
        )
    return rows


def _as_dataset_rows(rows: list[dict[str, str]], chat: bool) -> list[dict[str, Any]]:
    """Conversational rows for chat models (TRL applies their template), Alpaca-style prompts otherwise."""
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


def train_dpo(
    settings: DPOSettings,
    prefs: str | Path | list[dict[str, str]],
    out_dir: str | Path | None = None,
    stop_event: threading.Event | None = None,
    loaded: Any = None,
    description: str = "",
    data_name: str = "",
) -> Iterator[DPOEvent]:
    """Train a LoRA adapter with ``trl.DPOTrainer``; yield events; save to ``out_dir`` at the end."""
    import torch
    from datasets import Dataset
    from peft import LoraConfig
    from transformers import PrinterCallback, TrainerCallback
    from trl import DPOConfig, DPOTrainer

    from llm_playground.finetuning.sft import count_parameters, load_base, save_adapter

    settings.validate()
    stop_event = stop_event or threading.Event()
    rows = load_preferences(prefs) if not isinstance(prefs, list) else prefs
    if not rows:
        raise UserError("no preference pairs")
    if loaded is None:
        loaded = load_base(settings.base, torch.float32)
    tokenizer = loaded.tokenizer
    chat = bool(getattr(tokenizer, "chat_template", None)) and bool(
        getattr(loaded.info, "chat", False)
    )
    names = {n.rsplit(".", 1)[-1] for n, _ in loaded.model.named_modules()}
    unknown = [m for m in settings.target_modules if m not in names]
    if unknown:
        raise UserError(f"no module named {', '.join(unknown)} in {settings.base}")
    dataset = Dataset.from_list(_as_dataset_rows(rows, chat))
    events: queue.Queue = queue.Queue()

    class _Relay(TrainerCallback):
        def on_log(self, args, state, control, logs=None, **kwargs):
            logs = logs or {}
            if "loss" in logs:
                events.put(
                    DPOStep(
                        step=state.global_step,
                        loss=float(logs["loss"]),
                        reward_accuracy=logs.get("rewards/accuracies"),
                        reward_margin=logs.get("rewards/margins"),
                    )
                )

        def on_step_end(self, args, state, control, **kwargs):
            if stop_event.is_set():
                control.should_training_stop = True
            return control

    workdir = tempfile.mkdtemp(prefix="llm-playground-dpo-")
    torch.manual_seed(settings.seed)
    config = DPOConfig(
        output_dir=workdir,
        max_steps=settings.max_steps,
        learning_rate=settings.lr,
        beta=settings.beta,
        per_device_train_batch_size=settings.batch_size,
        gradient_accumulation_steps=1,
        max_length=settings.max_length,
        logging_steps=1,
        save_strategy="no",
        report_to="none",
        use_cpu=not torch.cuda.is_available(),
        disable_tqdm=True,
        seed=settings.seed,
        bf16=False,
        dataset_num_proc=None,
        lr_scheduler_type="constant",
        warmup_steps=0,
    )
    lora = LoraConfig(
        r=settings.lora_r,
        lora_alpha=settings.lora_alpha,
        lora_dropout=settings.lora_dropout,
        target_modules=list(settings.target_modules),
        task_type="CAUSAL_LM",
    )
    trainer = DPOTrainer(
        model=loaded.model,
        ref_model=None,
        args=config,
        train_dataset=dataset,
        processing_class=tokenizer,
        peft_config=lora,
        callbacks=[_Relay()],
    )
    trainer.remove_callback(PrinterCallback)  # progress goes through events, not stdout
    trainable, total = count_parameters(trainer.model)
    yield DPOStarted(
        base=settings.base,
        n_pairs=len(rows),
        trainable=trainable,
        total=total,
        share=100.0 * trainable / total,
        max_steps=settings.max_steps,
    )

    start = time.perf_counter()
    failure: list[BaseException] = []

    def work() -> None:
        try:
            trainer.train()
        except BaseException as exc:  # re-raised in the generator's thread
            failure.append(exc)
        finally:
            events.put(None)

    worker = threading.Thread(target=work, name="dpo-train", daemon=True)
    worker.start()
    last: DPOStep | None = None
    while True:
        item = events.get()
        if item is None:
            break
        last = item
        yield item
    worker.join()
    if failure:
        raise failure[0]
    steps = int(trainer.state.global_step)
    meta = {
        "version": 1,
        "base": settings.base,
        "kind": "dpo",
        "description": description
        or f"DPO LoRA adapter on {settings.base} ({len(rows)} preference pairs)",
        "chat": chat,
        "prompt_format": {"name": "chat-template"} if chat else prompt_format_record(),
        "heldout_loss_before": None,
        "heldout_loss_after": None,
        "data": data_name or (str(prefs) if not isinstance(prefs, list) else "preference pairs"),
        "n_pairs": len(rows),
        "steps_done": steps,
        "final_dpo_loss": last.loss if last else None,
        "trainable_parameters": trainable,
        "total_parameters": total,
        "settings": {**asdict(settings), "target_modules": list(settings.target_modules)},
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }
    saved = None
    if out_dir is not None and steps > 0:
        saved = str(save_adapter(trainer.model, out_dir, meta))
    yield DPODone(
        step=steps,
        out_dir=saved,
        final_loss=last.loss if last else None,
        elapsed_s=time.perf_counter() - start,
        stopped=stop_event.is_set() and steps < settings.max_steps,
        meta=meta,
    )
