"""The logit lens (nostalgebraist 2020): read the residual stream after every block as if
it were the last, through the model's final norm and output head.

Entry 0 reads the embeddings, entry l the residual stream after block l; the last entry is
the model's own next-token distribution. Where the early entries already rank the right
next token high, the model "knew" it early; where the guess changes from entry to entry,
that block changed the prediction.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from llm_playground.inspection.capture import Parts, parts_of
from llm_playground.inspection.models import InspectedModel


def lens_logits(parts: Parts, residual: torch.Tensor) -> torch.Tensor:
    """Next-token logits read from one entry of the residual stream: (T, d) -> (T, vocab)."""
    # the final norm, as the model applies it to the last block's output
    normed = parts.norm(residual)
    # the output head: (T, d) x (d, vocab) -> (T, vocab)
    logits = parts.head(normed)
    # a soft-capped model bounds its logits the same way (Gemma 2, the speedrun's GPT)
    if parts.softcap:
        logits = parts.softcap * torch.tanh(logits / parts.softcap)
    return logits.float()


@dataclass(frozen=True)
class LensReading:
    top_ids: np.ndarray  # (n_layers + 1, T, top_k) int64
    top_probs: np.ndarray  # (n_layers + 1, T, top_k) float32
    next_rank: np.ndarray  # (n_layers + 1, T - 1) int64: 0 = the top guess
    next_prob: np.ndarray  # (n_layers + 1, T - 1) float32


@torch.inference_mode()
def lens(
    model: InspectedModel, residual: torch.Tensor, ids: Sequence[int], top_k: int
) -> LensReading:
    """The logit lens on every entry of ``residual`` ((n_layers + 1, T, d)): each entry's
    top ``top_k`` guesses at each position, and the rank and probability of the token
    that actually comes next."""
    parts = parts_of(model)
    device = next(model.model.parameters()).device
    dtype = parts.head.weight.dtype
    following = torch.tensor(list(ids[1:]), dtype=torch.long, device=device)  # (T - 1,)
    top_ids, top_probs, next_rank, next_prob = [], [], [], []
    for entry in residual:  # one layer at a time: (T, vocab) logits, not (L + 1, T, vocab)
        logits = lens_logits(parts, entry.to(device, dtype))  # (T, vocab)
        probs = F.softmax(logits, dim=-1)
        best = probs.topk(top_k, dim=-1)  # (T, top_k)
        top_ids.append(best.indices)
        top_probs.append(best.values)
        # the actual next token: how many tokens the lens puts above it, and its probability
        actual = logits[:-1].gather(1, following[:, None])  # (T - 1, 1)
        next_rank.append((logits[:-1] > actual).sum(dim=-1))
        next_prob.append(probs[:-1].gather(1, following[:, None])[:, 0])
    return LensReading(
        top_ids=torch.stack(top_ids).cpu().numpy().astype(np.int64),
        top_probs=torch.stack(top_probs).cpu().numpy().astype(np.float32),
        next_rank=torch.stack(next_rank).cpu().numpy().astype(np.int64),
        next_prob=torch.stack(next_prob).cpu().numpy().astype(np.float32),
    )


def mean_next_token_loss(logits: torch.Tensor, ids: Sequence[int]) -> float | None:
    """Mean cross-entropy of each position's prediction of the next token (None for one token)."""
    if len(ids) < 2:
        return None
    targets = torch.tensor(list(ids[1:]), dtype=torch.long)
    return float(F.cross_entropy(logits[:-1].float(), targets))


def top_of(logits: torch.Tensor, top_k: int) -> tuple[np.ndarray, np.ndarray]:
    """The ``top_k`` most likely next tokens at each position: ids and probabilities, (T, top_k)."""
    best = F.softmax(logits.float(), dim=-1).topk(top_k, dim=-1)
    return best.indices.numpy().astype(np.int64), best.values.numpy().astype(np.float32)
