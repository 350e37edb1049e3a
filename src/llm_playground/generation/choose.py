"""Choosing a token at one position: the chain of penalties and samplers over the model's
logits, then the argmax or a draw (:class:`TokenChooser`), with a :class:`~.records.StepRecord`
of what happened; and the small helpers that turn token ids into text.

The decoding loop (:mod:`.decoding`) and speculative decoding (:mod:`.speculative`) both pick
tokens through it; beam search (:mod:`.beam`) uses the text helpers.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from llm_playground.generation.config import (
    DecodingConfig,
    dry_breakers,
    penalty_processors,
    sampler_stages,
)
from llm_playground.generation.records import Candidate, StepRecord
from llm_playground.generation.samplers import ProcessorList, attribute

# --- token text -------------------------------------------------------------------------


def eos_ids(loaded) -> list[int]:
    cfg = getattr(loaded.model, "generation_config", None)
    eos = getattr(cfg, "eos_token_id", None) if cfg is not None else None
    if eos is None:
        eos = loaded.tokenizer.eos_token_id
    if eos is None:
        return []
    return [int(e) for e in (eos if isinstance(eos, (list, tuple)) else [eos])]


def decode_text(tok, ids: Sequence[int]) -> str:
    return tok.decode(list(ids), skip_special_tokens=True)


def token_piece(tok, token_id: int) -> str:
    return tok.decode([int(token_id)], skip_special_tokens=False)


# --- choosing a token -------------------------------------------------------------------


@dataclass(frozen=True)
class Scored:
    """One position's logits after the chain: the final scores, and what each stage did."""

    logits: Any  # [vocab] raw model logits
    penalised: Any  # [vocab] after the penalties only
    final: Any  # [vocab] after penalties and samplers
    candidate_ids: tuple[int, ...] = ()
    attribution: Any = None  # samplers.Attribution when candidates are recorded


class TokenChooser:
    """Turns a position's logits into a token: penalties, then (sampling) the sampler chain,
    then the argmax or a draw. Records the top ``candidates`` with their fates."""

    def __init__(self, loaded, config: DecodingConfig, candidates: int = 0, seed_offset: int = 0):
        import torch

        self.tokenizer = loaded.tokenizer
        self.config = config
        self.sampling = config.samples
        self.candidates = candidates
        breakers = dry_breakers(loaded.tokenizer) if config.dry_multiplier > 0 else ()
        self.penalties = penalty_processors(config, breakers)
        self.generator = None
        xtc_generator = None
        if self.sampling:
            self.generator = torch.Generator()
            xtc_generator = torch.Generator()
            if config.seed is None:
                self.generator.seed()
                xtc_generator.seed()
            else:
                self.generator.manual_seed(config.seed + seed_offset)
                xtc_generator.manual_seed(config.seed + seed_offset + 1_000_003)
        self.samplers = sampler_stages(config, xtc_generator) if self.sampling else ProcessorList()
        self.chain = ProcessorList([*self.penalties, *self.samplers])
        self.temperature = config.temperature if self.sampling else 1.0

    def score(self, context: Sequence[int], logits) -> Scored:
        """Run the chain on one position's logits; ``context`` is every token before it."""
        import torch

        if not self.chain and not self.candidates:
            return Scored(logits=logits, penalised=logits, final=logits)
        # the stages work on batches: one row of context (1, len) and of logits (1, vocab)
        ids = torch.tensor([list(context)], dtype=torch.long)
        row = logits[None]
        penalised = self.penalties(ids, row)[0] if self.penalties else logits  # (vocab,)
        if not self.candidates:
            final = self.samplers(ids, penalised[None])[0] if self.samplers else penalised
            return Scored(logits=logits, penalised=penalised, final=final)
        # the candidates a view shows: the most likely after temperature, (vocab,) -> K ids
        warped = penalised / self.temperature if self.temperature != 1.0 else penalised
        top = torch.topk(warped, min(self.candidates, warped.shape[-1])).indices.tolist()
        # the chain again, stage by stage, noting what each stage did to those K tokens
        attribution = attribute(self.chain, ids, row, tokens_of_interest=top)
        return Scored(
            logits=logits,
            penalised=penalised,
            final=attribution.scores[0],
            candidate_ids=tuple(top),
            attribution=attribution,
        )

    def probabilities(self, scored: Scored):
        """The distribution a token is drawn from (greedy: the penalised softmax)."""
        return scored.final.softmax(dim=-1)

    def pick(self, scored: Scored) -> int:
        """The argmax (greedy) or a draw from the final distribution (sampling)."""
        import torch

        if not self.sampling:
            return int(scored.final.argmax())
        probs = self.probabilities(scored)  # (vocab,), 0 where a stage removed the token
        # a seeded generator of our own: the same seed draws the same tokens every time
        return int(torch.multinomial(probs, 1, generator=self.generator)[0])

    def record(
        self, scored: Scored, token_id: int, index: int, text: str, **extra: Any
    ) -> StepRecord:
        """The step record of picking ``token_id`` at this position."""
        import torch

        probs = self.probabilities(scored)
        kept_count = int(torch.isfinite(scored.final).sum()) if self.sampling else 1
        stages: tuple[str, ...] = ()
        kept_after: tuple[int, ...] = ()
        candidates: tuple[Candidate, ...] = ()
        if self.candidates:
            attribution = scored.attribution
            stages, kept_after = attribution.stages, attribution.kept
            before = scored.penalised.softmax(dim=-1)
            after_temperature = (
                (scored.penalised / self.temperature).softmax(dim=-1)
                if self.temperature != 1.0
                else before
            )
            candidates = tuple(
                Candidate(
                    id=c,
                    token=token_piece(self.tokenizer, c),
                    prob_before=float(before[c]),
                    prob=float(after_temperature[c]),
                    kept=(c not in attribution.removed_by) if self.sampling else c == token_id,
                    removed_by=attribution.removed_by.get(c),
                    lowered_by=attribution.lowered_by.get(c, ()),
                    after_stages=tuple(float(p[c]) for p in attribution.probs),
                )
                for c in scored.candidate_ids
            )
        return StepRecord(
            index=index,
            token_id=token_id,
            token=token_piece(self.tokenizer, token_id),
            prob=float(probs[token_id]),
            text=text,
            candidates=candidates,
            kept_count=kept_count,
            stages=stages,
            kept_after=kept_after,
            **extra,
        )
