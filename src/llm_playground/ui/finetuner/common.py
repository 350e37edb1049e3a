"""What the Lab 4 tabs beyond DPO share: the base models, the saved reward models and a
cached loader for them."""

from __future__ import annotations

from pathlib import Path

import streamlit as st

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
