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


#: Logits computed at once, in numbers: rows of (entry, position) are read in chunks of
#: about this many logits, so that the output head runs as a few large products (twice as
#: fast as one per entry on a CPU) without holding (n_layers + 1) x T x vocab logits.
CHUNK_LOGITS = 1 << 24


@torch.inference_mode()
def lens(
    model: InspectedModel, residual: torch.Tensor, ids: Sequence[int], top_k: int
) -> LensReading:
    """The logit lens on every entry of ``residual`` ((n_layers + 1, T, d)): each entry's
    top ``top_k`` guesses at each position, and the rank and probability of the token
    that actually comes next."""
    parts = parts_of(model)
    device = next(model.model.parameters()).device
    entries, T, d = residual.shape
    # every (entry, position) as one row: (L + 1, T, d) -> ((L + 1) * T, d)
    rows = residual.reshape(entries * T, d).to(device, parts.head.weight.dtype)
    # the token after each row's position (the last position has none: any id stands in)
    following = torch.tensor([*ids[1:], ids[0]], dtype=torch.long, device=device)
    following = following.repeat(entries)  # ((L + 1) * T,)
    chunk = max(T, CHUNK_LOGITS // max(model.vocab_size, 1))
    top_ids, top_probs, next_rank, next_prob = [], [], [], []
    for start in range(0, entries * T, chunk):
        logits = lens_logits(parts, rows[start : start + chunk])  # (rows, vocab)
        target = following[start : start + chunk, None]  # (rows, 1)
        probs = F.softmax(logits, dim=-1)  # (rows, vocab)
        best = logits.topk(top_k, dim=-1)  # (rows, top_k)
        top_ids.append(best.indices)
        top_probs.append(probs.gather(1, best.indices))
        # the actual next token: how many tokens the lens puts above it, and its probability
        actual = logits.gather(1, target)  # (rows, 1)
        # (counted as floats: summing booleans is twice as slow on a CPU)
        next_rank.append((logits > actual).to(logits.dtype).sum(dim=-1))
        next_prob.append(probs.gather(1, target)[:, 0])

    def gathered(pieces: list[torch.Tensor], dtype, drop_last: bool) -> np.ndarray:
        # ((L + 1) * T, ...) -> (L + 1, T, ...), without the last position where asked
        array = torch.cat(pieces).reshape(entries, T, *pieces[0].shape[1:]).cpu().numpy()
        return (array[:, :-1] if drop_last else array).astype(dtype)

    return LensReading(
        top_ids=gathered(top_ids, np.int64, False),
        top_probs=gathered(top_probs, np.float32, False),
        next_rank=gathered(next_rank, np.int64, True),
        next_prob=gathered(next_prob, np.float32, True),
    )


def no_lens(model: InspectedModel, ids: Sequence[int]) -> LensReading:
    """An empty reading, for an inspection without the lens: no guesses at any entry."""
    entries, T = model.n_layers + 1, len(ids)
    return LensReading(
        top_ids=np.zeros((entries, T, 0), dtype=np.int64),
        top_probs=np.zeros((entries, T, 0), dtype=np.float32),
        next_rank=np.zeros((entries, 0), dtype=np.int64),
        next_prob=np.zeros((entries, 0), dtype=np.float32),
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
