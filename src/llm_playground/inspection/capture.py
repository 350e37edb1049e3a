"""One forward pass that keeps what Lab 6 shows: every head's attention weights and the
residual stream after each block, with ablations as hooks.

The playground's own GPT runs block by block here, its attention through the written-out
path (:func:`~llm_playground.training.model.explicit_attention`), which returns the
weights. A ``transformers`` model runs its own forward pass with eager attention
(``output_attentions``: the weights as the softmax produced them); forward hooks on its
decoder layers read the residual stream. Its attention implementation is switched to
eager for the pass and back afterwards: the same weights, no second copy.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import torch
import torch.nn as nn

from llm_playground.inspection.ablation import Ablation
from llm_playground.inspection.models import InspectedModel
from llm_playground.inspection.parts import Parts, gpt_parts, hf_parts

# Held while a transformers model runs with eager attention, so that two inspections of
# one shared model (the app's jobs are threads) do not switch it back under each other.
_EAGER = threading.Lock()


@dataclass(frozen=True)
class Captured:
    attention: torch.Tensor  # (n_layers, n_heads, T, T) float32
    residual: torch.Tensor  # (n_layers + 1, T, d_model) float32
    logits: torch.Tensor  # (T, vocab) float32


def parts_of(model: InspectedModel) -> Parts:
    return gpt_parts(model.model) if model.architecture == "gpt" else hf_parts(model.model)


# --- ablations --------------------------------------------------------------------------------


def this_thread_only(hook):
    """``hook``, acting only in the thread that made it: a model the app shares between
    pages (its jobs are threads) runs unchanged for everyone else while an inspection's
    hooks are on it."""
    owner = threading.get_ident()

    def guarded(module, *rest):
        if threading.get_ident() != owner:
            return None  # a hook that returns None changes nothing
        return hook(module, *rest)

    return guarded


def _zero_head(head: int, n_heads: int):
    """A pre-hook on an output projection: zero one head's slice of its input."""

    def hook(module, args):
        heads_output = args[0].clone()  # (B, T, n_heads * head size)
        width = heads_output.shape[-1] // n_heads
        heads_output[..., head * width : (head + 1) * width] = 0
        return (heads_output, *args[1:])

    return hook


def _zero_output(module, args, output):
    """A forward hook: the module's output becomes zeros (attention weights kept)."""
    if isinstance(output, tuple):
        return (torch.zeros_like(output[0]), *output[1:])
    return torch.zeros_like(output)


@contextlib.contextmanager
def ablated(model: InspectedModel, ablations: Sequence[Ablation]) -> Iterator[None]:
    """Within the block, ``model`` runs with ``ablations`` applied (hooks, removed after)."""
    parts = parts_of(model)
    handles = []
    try:
        for ablation in ablations:
            if ablation.part == "head":
                projection = parts.out_projections[ablation.layer]
                hook = this_thread_only(_zero_head(ablation.head, model.n_heads))
                handles.append(projection.register_forward_pre_hook(hook))
            else:
                part = (parts.attentions if ablation.part == "attn" else parts.mlps)[ablation.layer]
                handles.append(part.register_forward_hook(this_thread_only(_zero_output)))
        yield
    finally:
        for handle in handles:
            handle.remove()


# --- the forward pass -------------------------------------------------------------------------


def _device(model: InspectedModel) -> torch.device:
    return next(model.model.parameters()).device


@torch.inference_mode()
def capture(
    model: InspectedModel, ids: Sequence[int], ablations: Sequence[Ablation] = ()
) -> Captured:
    """Run ``ids`` once, keeping attention, residual stream and logits (ablations applied)."""
    idx = torch.tensor([list(ids)], dtype=torch.long, device=_device(model))  # (1, T)
    with ablated(model, ablations):
        if model.architecture == "gpt":
            attention, residual, logits = _gpt_pass(model.model, idx)
        else:
            attention, residual, logits = _hf_pass(model.model, idx)
    return Captured(
        attention=torch.stack(attention)[:, 0].float().cpu(),  # L x (1, H, T, T) -> (L, H, T, T)
        residual=torch.stack(residual)[:, 0].float().cpu(),  # (L + 1) x (1, T, d) -> (L + 1, T, d)
        logits=logits[0].float().cpu(),  # (1, T, V) -> (T, V)
    )


def _gpt_pass(gpt: nn.Module, idx: torch.Tensor):
    """The GPT's forward pass block by block, attention written out (weights kept)."""
    T = idx.shape[1]
    # token embeddings (+ learned positions; rotary positions live inside attention)
    x = gpt.wte(idx)  # (1, T, C)
    if gpt.wpe is not None:
        x = x + gpt.wpe(torch.arange(T, dtype=torch.long, device=idx.device))
    x = gpt.drop(x)
    residual, attention = [x], []
    for block in gpt.h:
        # the same two residual steps as TransformerBlock.forward, attention with its weights
        attended, weights = block.attn(block.ln_1(x), return_weights=True)  # weights (1, H, T, T)
        x = x + attended
        x = x + block.mlp(block.ln_2(x))
        residual.append(x)
        attention.append(weights)
    logits = gpt.lm_head(gpt.ln_f(x))  # (1, T, V)
    if gpt.config.logit_softcap:
        cap = gpt.config.logit_softcap
        logits = cap * torch.tanh(logits / cap)
    return attention, residual, logits


@contextlib.contextmanager
def eager_attention(model: nn.Module) -> Iterator[None]:
    """Within the block the ``transformers`` model uses eager attention (which can return its
    weights); its own implementation is restored afterwards."""
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    with _EAGER:
        previous = base.config._attn_implementation
        if previous != "eager":
            base.set_attn_implementation("eager")
        try:
            yield
        finally:
            if previous != "eager":
                base.set_attn_implementation(previous)


def _hf_pass(model: nn.Module, idx: torch.Tensor):
    """The ``transformers`` model's own forward pass with eager attention; hooks on the
    decoder layers keep the residual stream (the first layer's input, each layer's output)."""
    parts = hf_parts(model)
    residual: list[torch.Tensor] = []

    def keep_input(module, args, kwargs):
        residual.append(args[0] if args else kwargs["hidden_states"])

    def keep_output(module, args, output):
        residual.append(output[0] if isinstance(output, tuple) else output)

    first = parts.layers[0]
    handles = [first.register_forward_pre_hook(this_thread_only(keep_input), with_kwargs=True)]
    handles += [
        layer.register_forward_hook(this_thread_only(keep_output)) for layer in parts.layers
    ]
    try:
        with eager_attention(model):
            out = model(input_ids=idx, output_attentions=True, use_cache=False)
    finally:
        for handle in handles:
            handle.remove()
    if not out.attentions or any(a is None for a in out.attentions):
        raise RuntimeError(f"{type(model).__name__} returned no attention weights")
    return list(out.attentions), residual, out.logits


@torch.inference_mode()
def final_logits(model: InspectedModel, ids: Sequence[int]) -> torch.Tensor:
    """The model's next-token logits at every position, (T, vocab) float32, no ablations."""
    idx = torch.tensor([list(ids)], dtype=torch.long, device=_device(model))
    if model.architecture == "gpt":
        logits, _ = model.model(idx)
    else:
        logits = model.model(input_ids=idx, use_cache=False).logits
    return logits[0].float().cpu()
