"""What the tabs of Lab 6 share: the loaded model, token labels, colours and small maps.

No ML here: the numbers come from :mod:`llm_playground.inspection`; this module turns
them into pictures (PNG maps of attention weights, coloured HTML cells) and labels.
"""

from __future__ import annotations

import base64
import io

import numpy as np
import streamlit as st

from llm_playground.core.paths import get_paths
from llm_playground.generation.decoding import shown_token
from llm_playground.inspection import InspectedModel, from_loaded, open_model
from llm_playground.training.snapshots import snapshot_steps
from llm_playground.ui.components import cached_model, esc

SLOT, ABLATE_SLOT, TIMELINE_SLOT = "inside", "inside_ablate", "inside_timeline"
PROBE_SLOT = "inside_probe"
FINAL = "final"

# white -> deep blue, the colour of attention and probability everywhere on the page
_LOW = np.array([255, 255, 255], dtype=np.float32)
_HIGH = np.array([8, 48, 107], dtype=np.float32)


# --- models ---------------------------------------------------------------------------------


def run_folder(name: str):
    """The Lab 2 run folder of a model name, or None for any other model."""
    from llm_playground.generation.registry import resolve

    info = resolve(name)
    return get_paths().runs / name if info.kind == "checkpoint" else None


def run_snapshots(name: str) -> list[int]:
    """The snapshot steps of a Lab 2 run (empty for other models and runs without any)."""
    folder = run_folder(name)
    return snapshot_steps(folder) if folder is not None else []


def _run_version(name: str) -> float:
    """Changes when a run is saved again under the same name, so it is reloaded."""
    folder = run_folder(name)
    try:
        return (folder / "config.json").stat().st_mtime if folder is not None else 0.0
    except OSError:
        return 0.0


@st.cache_resource(max_entries=8, show_spinner="Loading the model…")
def _run_model(name: str, step: int | None, version: float) -> InspectedModel:
    return open_model(name, step=step)


@st.cache_resource(max_entries=4, show_spinner=False)
def _registry_model(name: str, loaded_id: int) -> InspectedModel:
    return from_loaded(cached_model(name))


def inspected_model(name: str, step: int | None = None) -> InspectedModel:
    """The model to inspect, loaded once per app process: a Lab 2 run (or one of its
    snapshots) as the playground's own GPT; any other model shares the copy Labs 3-5 load."""
    if run_folder(name) is not None:
        return _run_model(name, step, _run_version(name))
    loaded = cached_model(name)
    return _registry_model(name, id(loaded))


# --- labels and colours -----------------------------------------------------------------------


def token_labels(tokens: list[str]) -> list[str]:
    """One unique, visible label per position: "3 ␣cat"."""
    return [f"{i} {shown_token(t)}" for i, t in enumerate(tokens)]


def colour(value: float) -> str:
    """A CSS colour for a weight or probability in [0, 1] (white to deep blue)."""
    v = float(np.clip(value, 0.0, 1.0))
    r, g, b = (_LOW + (_HIGH - _LOW) * v).astype(int)
    return f"rgb({r},{g},{b})"


def ink(value: float) -> str:
    """Text colour readable on :func:`colour` of the same value."""
    return "#fff" if value > 0.45 else "#111"


def map_png(weights: np.ndarray, size: int) -> str:
    """A (T, T) attention map as a square PNG data URI, ``size`` pixels a side."""
    from PIL import Image

    values = np.clip(weights, 0.0, 1.0)[..., None]  # (T, T, 1)
    rgb = (_LOW + (_HIGH - _LOW) * values).astype(np.uint8)  # (T, T, 3)
    image = Image.fromarray(rgb, mode="RGB").resize((size, size), Image.Resampling.NEAREST)
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


def attention_grid_html(attention: np.ndarray, css_class: str = "attn-grid") -> str:
    """Every head's map as a small picture: a row per layer, a column per head (0-based)."""
    n_layers, n_heads = attention.shape[:2]
    size = 72 if n_layers * n_heads <= 32 else 44
    head_row = "".join(f"<th>head {h}</th>" for h in range(n_heads))
    rows = [f"<tr><th></th>{head_row}</tr>"]
    for layer in range(n_layers):
        cells = "".join(
            f"<td><img src='{map_png(attention[layer, head], size)}' width='{size}' "
            f"height='{size}' title='layer {layer}, head {head}' "
            f"alt='layer {layer}, head {head}'></td>"
            for head in range(n_heads)
        )
        rows.append(f"<tr><th>layer {layer}</th>{cells}</tr>")
    return (
        "<style>.attn-grid td{padding:1px}.attn-grid img{border:1px solid #ccc;"
        "image-rendering:pixelated}.attn-grid th{font-size:0.75em;color:#555;font-weight:normal;"
        "padding:0 4px;white-space:nowrap}</style>"
        f"<div style='overflow:auto;max-height:900px'><table class='{esc(css_class)}'>"
        + "".join(rows)
        + "</table></div>"
    )


def text_heat_html(tokens: list[str], weights: np.ndarray, marked: int) -> str:
    """The text with each token's background as dark as ``weights`` says; ``marked`` (the
    query) underlined. Tokens are escaped."""
    spans = []
    for i, (token, weight) in enumerate(zip(tokens, weights, strict=True)):
        style = f"background:{colour(weight)};color:{ink(weight)}"
        if i == marked:
            style += ";outline:2px solid #e4572e"
        text = esc(token).replace("\n", "↵<br>")
        spans.append(
            f"<span class='inside-token' style='{style}' title='{i}: {weight:.3f}'>{text}</span>"
        )
    return (
        "<div class='inside-text' style='white-space:pre-wrap;line-height:1.9;font-family:"
        "monospace;border:1px solid #ddd;border-radius:6px;padding:0.6em'>"
        + "".join(spans)
        + "</div>"
    )


def layer_name(entry: int, n_layers: int) -> str:
    """A lens entry's name: the embeddings, after layer l, or the model's output."""
    if entry == 0:
        return "embeddings"
    if entry == n_layers:
        return f"after layer {entry - 1} = output"
    return f"after layer {entry - 1}"
