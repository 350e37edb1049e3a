"""Head roles, read off the attention weights (Olsson et al. 2022, arXiv 2209.11895).

Every score is a mean of one attention weight per query, over an array ``attention`` of
shape (layers, heads, T, T) where row i of a map is query i's weights over keys 0..i:

- previous-token: how much each query looks at the token just before it, ``A[i][i-1]``;
- first-token: how much it looks at the very first token, ``A[i][0]`` (an "attention sink":
  a head with nothing to do parks its weight there);
- induction, on a random sequence ``r`` repeated once: in the second copy, how much a
  query looks at the token that followed its own earlier occurrence, ``A[i][i-N+1]``.
  A head that does this can continue a pattern it has seen once ("... Harry Potter ...
  Harry -> Potter"), the mechanism behind in-context copying.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

#: The head scores, in the order the page and the command line show them.
SCORE_NAMES = ("previous_token", "first_token", "induction")


def previous_token_scores(attention: np.ndarray) -> np.ndarray:
    """Mean over query positions i >= 1 of ``A[i][i-1]``: (layers, heads, T, T) -> (layers, heads)."""
    T = attention.shape[-1]
    if T < 2:
        return np.zeros(attention.shape[:2], dtype=np.float32)
    queries = np.arange(1, T)
    # the diagonal just below the main one: A[i][i-1] for i = 1..T-1
    return attention[:, :, queries, queries - 1].mean(axis=-1)


def first_token_scores(attention: np.ndarray) -> np.ndarray:
    """Mean over query positions i >= 1 of ``A[i][0]``: (layers, heads, T, T) -> (layers, heads)."""
    T = attention.shape[-1]
    if T < 2:
        return np.zeros(attention.shape[:2], dtype=np.float32)
    return attention[:, :, 1:, 0].mean(axis=-1)


def induction_scores(attention: np.ndarray, n: int, prefix: int) -> np.ndarray:
    """Mean over i in [prefix + n, prefix + 2n - 1] of ``A[i][i-n+1]``, for an input of
    ``prefix`` tokens (0 or 1) followed by a sequence of ``n`` tokens and that sequence again:
    (layers, heads, T, T) -> (layers, heads)."""
    T = attention.shape[-1]
    if n < 1 or T < prefix + 2 * n:
        raise ValueError(f"an induction probe of n={n} needs {prefix + 2 * n} tokens, got {T}")
    # queries in the second copy; each one's key is the token after its first occurrence
    queries = np.arange(prefix + n, prefix + 2 * n)
    return attention[:, :, queries, queries - n + 1].mean(axis=-1)


@dataclass(frozen=True)
class HeadScore:
    """One head's score for one role."""

    layer: int
    head: int
    role: str  # one of SCORE_NAMES
    score: float

    def describe(self) -> str:
        """In words: "layer 4, head 2: induction 0.71"."""
        return (
            f"layer {self.layer}, head {self.head}: {self.role.replace('_', '-')} {self.score:.2f}"
        )


def top_heads(scores: np.ndarray, role: str, k: int = 5) -> list[HeadScore]:
    """The ``k`` heads with the highest score in a (layers, heads) array, best first."""
    flat = np.asarray(scores, dtype=np.float64).ravel()
    order = np.argsort(-flat, kind="stable")[: max(k, 0)]
    n_heads = scores.shape[1]
    return [HeadScore(int(i // n_heads), int(i % n_heads), role, float(flat[i])) for i in order]
