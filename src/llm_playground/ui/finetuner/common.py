"""What the Lab 4 tabs share: the base models, uploads, adapter folders, the saved reward
models and a cached loader for them."""

from __future__ import annotations

from pathlib import Path

import streamlit as st

from llm_playground.core.errors import UserError
from llm_playground.finetuning.lora import check_adapter_dir, default_adapter_dir
from llm_playground.finetuning.outputs import MAX_UPLOAD_BYTES, OutputExists, check_upload
from llm_playground.finetuning.reward import load_reward_model, saved_reward_models
from llm_playground.generation.registry import list_models


def base_models() -> list[str]:
    """Models a LoRA adapter can be trained on: offline models and Lab 2 runs."""
    return [
        i.name
        for i in list_models(include_hub=False)
        if i.available and i.kind in ("offline", "checkpoint")
    ]


def default_index(names: list[str], preferred: str = "smollm2-135m-instruct") -> int:
    return names.index(preferred) if preferred in names else 0


def reward_model_names() -> dict[str, Path]:
    """The reward models saved in the playground home, by name."""
    return {p.name: p for p in saved_reward_models()}


@st.cache_resource(max_entries=2, show_spinner="Loading the reward model…")
def _cached_reward_model(folder: str, version: float):
    return load_reward_model(folder)


def cached_reward_model(folder: Path):
    """A reward model loaded once per app process, reloaded when its files change."""
    try:
        version = (folder / "adapter_model.safetensors").stat().st_mtime
    except OSError:
        version = 0.0
    return _cached_reward_model(str(folder), version)


def uploaded_text(upload, what: str) -> str:
    """The text of a file uploaded in the page, checked for size and UTF-8."""
    if upload is None:
        raise UserError(f"choose a {what} to upload first")
    if upload.size > MAX_UPLOAD_BYTES:
        raise UserError(
            f"{upload.name} is {upload.size / 1e6:.1f} MB; uploads are limited to "
            f"{MAX_UPLOAD_BYTES / 1e6:.0f} MB"
        )
    return check_upload(upload.getvalue(), upload.name)


def adapter_out(name: str, replace: bool):
    """The adapter folder for a name typed in the page; an existing one needs ``replace``."""
    out = default_adapter_dir(name.strip())
    try:
        check_adapter_dir(out, force=replace)
    except OutputExists:
        raise UserError(
            f"an adapter named '{name.strip()}' exists already: pick another name or tick "
            "'Replace an existing adapter'"
        ) from None
    return out
