"""Where a model keeps what the inspection reads: its decoder layers, each layer's attention,
output projection and MLP, the final norm and the output layer.

The playground's GPT (:func:`gpt_parts`) and ``transformers`` decoders (:func:`hf_parts`:
Llama, Gemma and GPT-2 shapes) name them differently; the capture, the lens and the model
loader all find them here.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch.nn as nn


@dataclass(frozen=True)
class Parts:
    """Where a model keeps what the inspection needs, per decoder layer and at the top."""

    config: Any
    layers: Sequence[nn.Module]  # the decoder blocks
    attentions: Sequence[nn.Module]  # each block's attention
    out_projections: Sequence[nn.Module]  # each attention's output projection
    mlps: Sequence[nn.Module]  # each block's MLP
    norm: nn.Module  # the final norm
    head: nn.Module  # the output layer (hidden -> vocabulary)
    softcap: float | None  # logits = cap * tanh(logits / cap) when set


def _first(module: nn.Module, names: Sequence[str]) -> Any:
    for name in names:
        found = getattr(module, name, None)
        if found is not None:
            return found
    raise TypeError(f"{type(module).__name__} has none of {', '.join(names)}")


def hf_parts(model: nn.Module) -> Parts:
    """The parts of a ``transformers`` decoder (Llama, Gemma, GPT-2 shapes; a peft model's base)."""
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    body = _first(base, ("model", "transformer"))
    layers = list(_first(body, ("layers", "h")))
    attentions = [_first(layer, ("self_attn", "attn")) for layer in layers]
    config = (
        base.config.get_text_config() if hasattr(base.config, "get_text_config") else base.config
    )
    return Parts(
        config=config,
        layers=layers,
        attentions=attentions,
        out_projections=[_first(attn, ("o_proj", "c_proj")) for attn in attentions],
        mlps=[layer.mlp for layer in layers],
        norm=_first(body, ("norm", "ln_f")),
        head=base.get_output_embeddings(),
        softcap=getattr(config, "final_logit_softcapping", None) or None,
    )


def gpt_parts(gpt: nn.Module) -> Parts:
    """The parts of the playground's own GPT."""
    return Parts(
        config=gpt.config,
        layers=list(gpt.h),
        attentions=[block.attn for block in gpt.h],
        out_projections=[block.attn.c_proj for block in gpt.h],
        mlps=[block.mlp for block in gpt.h],
        norm=gpt.ln_f,
        head=gpt.lm_head,
        softcap=gpt.config.logit_softcap or None,
    )
