"""LoRA adapters, shared by supervised fine-tuning (:mod:`.sft`) and DPO (:mod:`.dpo`).

A LoRA adapter freezes the base model and learns, for each chosen linear layer ``W``, a
low-rank update ``(alpha / r) · B A`` (``A`` is ``r × in``, ``B`` is ``out × r``). Here:

- :class:`LoRAConfig` the adapter's settings (rank, alpha, dropout, target modules);
- :func:`add_adapter` wraps a causal LM with fresh, seeded LoRA weights (``peft``);
- :func:`count_trainable` the trainable and total parameters of a model;
- :class:`LoRALinear` the update written out on one linear layer (the reference: peft's
  layers compute the same, tested, and add dropout, several adapters and merging);
- :func:`save_adapter` writes the standard ``peft`` files plus ``playground.json`` (the
  base, the prompt format, the figures of the run) through a temporary folder;
- :func:`merge_and_save` folds an adapter into its base and saves a full model.

Saved adapters land in the playground home's ``adapters/`` folder by default
(:func:`default_adapter_dir`), where Labs 3–5 list them at once.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from llm_playground.core.errors import UserError
from llm_playground.finetuning.outputs import OutputExists, replace_dir, temp_dir_beside

#: Version of ``playground.json``.
META_VERSION = 1
DEFAULT_TARGETS = ("q_proj", "k_proj", "v_proj", "o_proj")
PEFT_FILE = "adapter_config.json"


@dataclass(frozen=True)
class LoRAConfig:
    """Settings of a LoRA adapter: the update ``(alpha / r) · B A`` on each target module."""

    r: int = 8
    alpha: float = 16
    dropout: float = 0.05
    target_modules: tuple[str, ...] = DEFAULT_TARGETS

    def validate(self) -> LoRAConfig:
        checks = [
            (self.r >= 1, "LoRA rank must be at least 1"),
            (self.alpha > 0 and math.isfinite(self.alpha), "LoRA alpha must be positive"),
            (0 <= self.dropout < 1, "LoRA dropout must be in [0, 1)"),
            (
                len(self.target_modules) > 0 and all(m.strip() for m in self.target_modules),
                "LoRA target modules need at least one module name",
            ),
        ]
        for ok, message in checks:
            if not ok:
                raise UserError(message)
        return self

    def peft_config(
        self, task_type: str = "CAUSAL_LM", modules_to_save: tuple[str, ...] = ()
    ) -> Any:
        """The equivalent ``peft.LoraConfig``: for a causal language model, or another task
        (a reward model is ``SEQ_CLS`` and trains and saves its new ``score`` head too)."""
        from peft import LoraConfig

        return LoraConfig(
            r=self.r,
            lora_alpha=self.alpha,
            lora_dropout=self.dropout,
            target_modules=list(self.target_modules),
            modules_to_save=list(modules_to_save) or None,
            task_type=task_type,
            bias="none",
        )


def lora_of(settings) -> LoRAConfig:
    """The adapter part of an SFT, DPO or reward-model config (its ``lora_r``, ``lora_alpha``,
    ``lora_dropout`` and ``target_modules`` fields)."""
    return LoRAConfig(
        r=settings.lora_r,
        alpha=settings.lora_alpha,
        dropout=settings.lora_dropout,
        target_modules=tuple(settings.target_modules),
    )


def check_targets(model: Any, target_modules: tuple[str, ...]) -> None:
    """A :class:`UserError` naming the model's linear layers when a target is unknown."""
    import torch

    names = {name.rsplit(".", 1)[-1] for name, _ in model.named_modules()}
    unknown = [m for m in target_modules if m not in names]
    if unknown:
        linear = sorted(
            {
                name.rsplit(".", 1)[-1]
                for name, module in model.named_modules()
                if isinstance(module, torch.nn.Linear)
            }
        )
        raise UserError(
            f"no module named {', '.join(unknown)} in this model; "
            f"its linear layers are: {', '.join(linear)}"
        )


def add_adapter(model: Any, lora: LoRAConfig, seed: int = 0) -> Any:
    """Wrap a causal LM with fresh LoRA weights (seeded); the base weights are frozen."""
    import torch
    from peft import get_peft_model

    lora.validate()
    check_targets(model, lora.target_modules)
    torch.manual_seed(seed)
    return get_peft_model(model, lora.peft_config())


def count_trainable(model: Any) -> tuple[int, int]:
    """(trainable, total) parameters of a model, e.g. an adapter and its frozen base."""
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    total = sum(p.numel() for p in model.parameters())
    return trainable, total


class LoRALinear(nn.Module):
    """A frozen linear layer plus a trainable low-rank update: `W x + (alpha / r) · B A x`.

    `lora_A` (r × in) reads the input down to `r` numbers and `lora_B` (out × r) writes
    them back up; B starts at zero, so the wrapped layer starts exactly as the base layer.
    Its output equals peft's LoRA layer with the same A and B (tested); the fast path is
    peft's, which adds dropout, several adapters per layer and merging B A into W.
    """

    def __init__(self, base: nn.Linear, r: int, alpha: float) -> None:
        super().__init__()
        LoRAConfig(r=r, alpha=alpha).validate()  # a rank below 1 or alpha not positive
        self.base = base.requires_grad_(False)  # the pretrained weights W (and b) stay frozen
        # A as peft draws it (Kaiming-uniform); B zero, so B A starts as zero
        self.lora_A = nn.Parameter(torch.empty(r, base.in_features))
        nn.init.kaiming_uniform_(self.lora_A, a=math.sqrt(5))
        self.lora_B = nn.Parameter(torch.zeros(base.out_features, r))
        # alpha / r keeps the update's size steady when the rank changes
        self.scaling = alpha / r

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # the frozen layer: W x + b                   (..., in) -> (..., out)
        frozen = self.base(x)
        # the update: down to r numbers, back up       (..., in) -> (..., r) -> (..., out)
        update = (x @ self.lora_A.T) @ self.lora_B.T
        return frozen + self.scaling * update


# --- output folders ---------------------------------------------------------------------


def check_adapter_dir(out_dir: str | Path, force: bool = False) -> Path:
    """Where an adapter may be written: a new or empty folder, or (with ``force``) a
    folder that holds an adapter already. Another folder's files are never replaced."""
    out = Path(out_dir).expanduser()
    if out.exists() and not out.is_dir():
        raise UserError(f"{out} is a file, not a folder")
    if out.is_dir() and any(out.iterdir()):
        if not (out / PEFT_FILE).exists() and not (out / "playground.json").exists():
            raise UserError(f"{out} is a non-empty folder that holds no adapter: pick a new folder")
        if not force:
            raise OutputExists(out, "the adapter folder")
    return out


def save_adapter(
    model: Any, out_dir: str | Path, meta: dict[str, Any], *, force: bool = False
) -> Path:
    """Write the peft files and ``playground.json`` to ``out_dir`` through a temporary
    folder renamed into place; an existing adapter there is replaced only with ``force``."""
    out = check_adapter_dir(out_dir, force).resolve()
    tmp = temp_dir_beside(out)
    try:
        model.save_pretrained(str(tmp), safe_serialization=True)
        # Name the registry base, so that the playground finds it on any machine.
        cfg_path = tmp / PEFT_FILE
        cfg = json.loads(cfg_path.read_text())
        cfg["base_model_name_or_path"] = meta.get("base", cfg.get("base_model_name_or_path"))
        cfg_path.write_text(json.dumps(cfg, indent=2, sort_keys=True))
        (tmp / "playground.json").write_text(json.dumps(meta, indent=2))
    except BaseException:
        import shutil

        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return replace_dir(tmp, out)


def read_meta(folder: str | Path) -> dict[str, Any]:
    """An adapter's ``playground.json`` ({} when absent or unreadable)."""
    path = Path(folder) / "playground.json"
    try:
        return json.loads(path.read_text())
    except (OSError, json.JSONDecodeError):
        return {}


def check_model_dir(out_dir: str | Path, force: bool = False) -> Path:
    """Where a merged model may be written: new, empty, or (with ``force``) a merged model."""
    out = Path(out_dir).expanduser()
    if out.exists() and not out.is_dir():
        raise UserError(f"{out} is a file, not a folder")
    if out.is_dir() and any(out.iterdir()):
        if not (out / "config.json").exists():
            raise UserError(f"{out} is a non-empty folder that holds no model: pick a new folder")
        if not force:
            raise OutputExists(out, "the model folder")
    return out


def merge_and_save(adapter: str | Path, out_dir: str | Path, *, force: bool = False) -> Path:
    """Merge an adapter into its base weights and save a full Hugging Face model with its
    tokenizer (through a temporary folder renamed into place)."""
    import shutil

    import torch

    from llm_playground.generation.registry import info_for_dir, load_model, resolve

    out = check_model_dir(out_dir, force).resolve()
    folder = Path(adapter)
    info = info_for_dir(folder) if folder.is_dir() else resolve(str(adapter))
    if info.kind != "adapter":
        raise UserError(f"'{adapter}' is not a LoRA adapter")
    loaded = load_model(info, dtype=torch.float32)
    merged = loaded.model.merge_and_unload()
    tmp = temp_dir_beside(out)
    try:
        merged.save_pretrained(str(tmp), safe_serialization=True)
        loaded.tokenizer.save_pretrained(str(tmp))
        meta = read_meta(info.path) if info.path else {}
        (tmp / "playground.json").write_text(
            json.dumps({**meta, "merged_from": str(info.path), "kind": "merged"}, indent=2)
        )
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return replace_dir(tmp, out)


def default_adapter_dir(name: str) -> Path:
    """Where a named adapter is saved so that Labs 3–5 list it at once."""
    from llm_playground.core.paths import get_paths

    text = str(name or "").strip()
    if not text or "/" in text or "\\" in text or text.startswith(".") or ".." in text:
        raise UserError(f"'{text}' is not a valid adapter name (no slashes, not empty)")
    return get_paths().ensure().adapters / text


def heldout_figure(name: str, infos: dict[str, Any]) -> tuple[float | None, str]:
    """The held-out loss recorded for a model, and where it comes from.

    ``infos`` maps names to registry entries. An adapter has its own figure after
    training (its ``playground.json``); a base model has the figure measured before
    training for an adapter trained on it."""
    info = infos.get(name)
    if info is None:
        return None, ""
    meta = adapter_details(info)
    if meta.get("heldout_loss_after") is not None:
        return float(
            meta["heldout_loss_after"]
        ), f"after training, {meta.get('data') or 'its data'}"
    for other in infos.values():
        details = adapter_details(other)
        if other.base == name and details.get("heldout_loss_before") is not None:
            return float(details["heldout_loss_before"]), (
                f"before training, measured for {other.name}"
            )
    return None, ""


def adapter_details(info: Any) -> dict[str, Any]:
    """The ``playground.json`` record of a registry entry that is an adapter ({} otherwise)."""
    if info is None or getattr(info, "kind", None) != "adapter":
        return {}
    return dict(getattr(info, "details", None) or {})
