"""Best-of-n: sample n answers, score each with a reward model, keep the best.

The simplest use of a reward model: no training, only more sampling. Each answer is a
sample with its own seed (``seed``, ``seed + 1``, …), so the n answers differ and the run
is repeatable. :func:`best_so_far` gives the curve "best score among the first k answers"
that shows what a larger n buys (and how quickly it stops buying much).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any

from llm_playground.core.errors import UserError

MAX_N = 64


@dataclass(frozen=True)
class Candidate:
    """One sampled answer and its reward."""

    text: str
    score: float
    seed: int


@dataclass(frozen=True)
class BestOfN:
    """The n answers in the order sampled, and which one is kept."""

    candidates: list[Candidate]
    best_index: int
    results: list[Any]  # the generation results, same order

    @property
    def best(self) -> Candidate:
        return self.candidates[self.best_index]


def pick_best(scores: Sequence[float]) -> int:
    """The index of the highest score (the first one on a tie)."""
    if not scores:
        raise UserError("best-of-n needs at least one answer")
    return max(range(len(scores)), key=lambda i: (scores[i], -i))


def best_so_far(scores: Sequence[float]) -> list[float]:
    """``[max(scores[:1]), max(scores[:2]), …]``: the best score against n."""
    out: list[float] = []
    for score in scores:
        out.append(score if not out else max(out[-1], score))
    return out


def check_best_of(n: int, strategy: str) -> None:
    """n in 1..MAX_N, and a sampling strategy (greedy or beam would give n equal answers)."""
    if not 1 <= n <= MAX_N:
        raise UserError(f"best-of-n takes 1 to {MAX_N} answers, not {n}")
    if n > 1 and strategy in ("greedy", "beam"):
        raise UserError(
            f"best-of-n needs sampling (top-k, top-p or sample): {strategy} gives the same "
            "answer every time"
        )


def best_of_n(
    loaded: Any,
    prompt: str,
    n: int,
    reward_model: Any,
    config: Any,
    *,
    chat_template: bool | None = None,
) -> BestOfN:
    """Sample ``n`` answers with ``config`` (seeds ``config.seed + i``), score them with
    ``reward_model.score(prompt, answers)``, and keep the highest."""
    from llm_playground.generation.decoding import generate

    check_best_of(n, config.strategy)
    # 1. n samples, one seed each
    results = [
        generate(loaded, prompt, replace(config, seed=config.seed + i), chat_template=chat_template)
        for i in range(n)
    ]
    # 2. one reward per answer
    scores = reward_model.score(prompt, [r.text for r in results])
    # 3. keep the best
    candidates = [
        Candidate(r.text, float(s), config.seed + i)
        for i, (r, s) in enumerate(zip(results, scores, strict=True))
    ]
    return BestOfN(candidates, pick_best(scores), results)


__all__ = ["BestOfN", "Candidate", "best_of_n", "best_so_far", "check_best_of", "pick_best"]
