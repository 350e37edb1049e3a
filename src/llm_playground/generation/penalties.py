"""The penalties of the sampler chain: stages that look at the tokens so far and lower (or
remove) the tokens that would repeat them. They always run first, before the samplers of
:mod:`.samplers`, on every strategy, and describe themselves the same way (a ``name``, a
``summary`` with its source, :class:`~.samplers.Setting` records)."""

from __future__ import annotations

from collections.abc import Sequence

from llm_playground.core.errors import UserError
from llm_playground.generation.samplers import NEG_INF, Setting, Stage, finite, in_range, whole


class RepetitionPenalty(Stage):
    """Makes tokens already in the sequence less likely: negative scores are multiplied by
    the penalty, positive ones divided (1 means none). Source: Keskar et al. (2019), CTRL,
    arXiv 1909.05858; transformers ``RepetitionPenaltyLogitsProcessor``."""

    name = "repetition_penalty"
    lowers = True

    def __init__(self, penalty: float):
        p = finite("repetition penalty", penalty)
        if p <= 0:
            raise UserError(f"the repetition penalty must be above 0, got {p:g}")
        self.penalty = p

    def __call__(self, input_ids, scores):
        import torch

        # the scores of the tokens already in the text: (batch, vocab) -> (batch, len)
        picked = torch.gather(scores, 1, input_ids)
        # dividing a negative score would raise it: multiply those instead (CTRL's rule)
        picked = torch.where(picked < 0, picked * self.penalty, picked / self.penalty)
        return scores.scatter(1, input_ids, picked)  # back in place: (batch, vocab)


class PresenceFrequencyPenalty(Stage):
    """Subtracts ``count·frequency + presence`` from the logit of every token that occurs
    ``count`` > 0 times among the last ``last_n`` tokens. Source: llama.cpp
    ``llama_sampler_penalties``; OpenAI's presence and frequency penalties."""

    lowers = True
    settings = (
        Setting(
            "presence_penalty",
            "presence penalty",
            "Presence penalty",
            "Subtracted once from every token seen in the last 64 (llama.cpp, OpenAI).",
            low=-2,
            high=2,
            step=0.1,
        ),
        Setting(
            "frequency_penalty",
            "frequency penalty",
            "Frequency penalty",
            "Subtracted per occurrence in the last 64 tokens (llama.cpp, OpenAI).",
            low=-2,
            high=2,
            step=0.1,
        ),
    )

    def __init__(self, presence: float = 0.0, frequency: float = 0.0, last_n: int = 64):
        self.presence = in_range("presence penalty", presence, -2, 2)
        self.frequency = in_range("frequency penalty", frequency, -2, 2)
        self.last_n = whole("penalty window", last_n)
        if self.last_n < 1:
            raise UserError(f"the penalty window must be at least 1 token, got {self.last_n}")
        self.name = "presence_penalty" if self.frequency == 0 else "frequency_penalty"
        if self.presence and self.frequency:
            self.name = "penalties"

    def __call__(self, input_ids, scores):
        import torch

        recent = input_ids[:, -self.last_n :]  # (batch, len) -> (batch, <= last_n)
        # how often each token occurs lately: (batch, vocab)
        counts = torch.zeros_like(scores).scatter_add_(
            1, recent, torch.ones_like(recent, dtype=scores.dtype)
        )
        return scores - counts * self.frequency - (counts > 0).to(scores.dtype) * self.presence


class DRY(Stage):
    """ "Don't Repeat Yourself": when the text ends with a sequence that occurred before, the
    token that followed it then is penalised, the more the longer the repeat: for a match of
    length L ≥ ``allowed_length`` (not crossing a sequence breaker), logit −=
    ``multiplier · base^(L − allowed_length)``; the longest match per token counts.
    Source: text-generation-webui PR 5677; llama.cpp ``llama_sampler_dry`` (PR 9702).

    ``breakers`` are token ids that end a match (by default the tokens of newline, colon,
    quote and asterisk, which the caller looks up in its tokenizer).
    """

    name = "dry"
    lowers = True
    settings = (
        Setting(
            "dry_multiplier",
            "DRY multiplier",
            "DRY multiplier",
            "Don't Repeat Yourself: penalises the token that would extend a repeat "
            "(text-generation-webui PR 5677; 0 = off).",
            low=0,
            step=0.1,
            page_range=(0, 3),
        ),
        Setting(
            "dry_base",
            "DRY base",
            "DRY base",
            "The penalty grows by this factor per token of repeat past the allowed length.",
            low=1,
            default=1.75,
            step=0.05,
            page_range=(1, 4),
        ),
        Setting(
            "dry_allowed_length",
            "DRY allowed length",
            "DRY allowed length",
            "Repeats up to this many tokens long go unpenalised.",
            low=1,
            whole=True,
            default=2,
            step=1,
            page_range=(1, 8),
        ),
    )

    def __init__(
        self,
        multiplier: float,
        base: float = 1.75,
        allowed_length: int = 2,
        breakers: Sequence[int] = (),
    ):
        self.multiplier = finite("DRY multiplier", multiplier)
        if self.multiplier < 0:
            raise UserError(f"the DRY multiplier must be 0 (off) or more, got {self.multiplier:g}")
        self.base = finite("DRY base", base)
        if self.base < 1:
            raise UserError(f"the DRY base must be at least 1, got {self.base:g}")
        self.allowed_length = whole("DRY allowed length", allowed_length)
        if self.allowed_length < 1:
            raise UserError(f"the DRY allowed length must be at least 1, got {self.allowed_length}")
        self.breakers = frozenset(int(b) for b in breakers)

    def match_lengths(self, tokens: Sequence[int]) -> dict[int, int]:
        """For each token that once followed an earlier occurrence of the text's ending: the
        longest such match."""
        longest: dict[int, int] = {}
        if not tokens or tokens[-1] in self.breakers:
            return longest
        end = len(tokens) - 1
        for position in range(end - 1, -1, -1):
            # how many tokens before `position` (inclusive) equal the text's last tokens
            length = 0
            while (
                position - length >= 0
                and tokens[position - length] == tokens[end - length]
                and tokens[position - length] not in self.breakers
            ):
                length += 1
            if length:
                follower = tokens[position + 1]
                longest[follower] = max(longest.get(follower, 0), length)
        return longest

    def __call__(self, input_ids, scores):
        if self.multiplier == 0:
            return scores
        out = scores.clone()
        for row, tokens in enumerate(input_ids.tolist()):
            for follower, length in self.match_lengths(tokens).items():
                if length >= self.allowed_length:
                    out[row, follower] -= self.multiplier * self.base ** (
                        length - self.allowed_length
                    )
        return out


class NoRepeatNGram(Stage):
    """Forbids any token that would repeat an n-gram already in the sequence.
    Source: Paulus et al. (2017), arXiv 1705.04304; transformers ``NoRepeatNGramLogitsProcessor``."""

    name = "no_repeat_ngram"

    def __init__(self, ngram_size: int):
        n = whole("no-repeat n-gram size", ngram_size)
        if n < 1:
            raise UserError(f"the no-repeat n-gram size must be at least 1, got {n}")
        self.n = n

    def banned(self, tokens: Sequence[int]) -> list[int]:
        n = self.n
        if len(tokens) + 1 < n:
            return []
        prefix = tuple(tokens[len(tokens) - n + 1 :]) if n > 1 else ()
        return [
            tokens[start + n - 1]
            for start in range(len(tokens) - n + 1)
            if tuple(tokens[start : start + n - 1]) == prefix
        ]

    def __call__(self, input_ids, scores):
        scores = scores.clone()
        for row, tokens in enumerate(input_ids.tolist()):
            banned = self.banned(tokens)
            if banned:
                scores[row, banned] = NEG_INF
        return scores


# act on every strategy with settings of their own).
PENALTY_SETTINGS: tuple[Setting, ...] = (*PresenceFrequencyPenalty.settings, *DRY.settings)
