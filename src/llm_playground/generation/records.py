"""What a generation leaves behind: one :class:`StepRecord` per token (with the candidates
and what each stage did to them), the live :class:`Beam` of beam search, and the final
:class:`GenerationResult`; plus the tables the step-by-step view shows.

Plain data with no model in sight, shared by the decoding loop, beam search and speculative
decoding, and read by the CLI's JSON and the app's step view.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

# --- one step -----------------------------------------------------------------------------


@dataclass(frozen=True)
class Candidate:
    """One of the most likely next tokens at a step, and what the chain did to it."""

    id: int
    token: str
    prob_before: float  # softmax of the (penalised) logits at temperature 1
    prob: float  # after temperature (equal to prob_before for greedy and beam search)
    kept: bool  # survived the chain (greedy: the argmax; beam: extended into a beam)
    removed_by: str | None = None  # the stage that removed it (None: it survived)
    lowered_by: tuple[str, ...] = ()  # penalties that lowered it
    after_stages: tuple[float, ...] = ()  # its probability after each stage of the step

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "token": self.token,
            "prob": self.prob,
            "prob_before": self.prob_before,
            "kept": self.kept,
            "removed_by": self.removed_by,
            "lowered_by": list(self.lowered_by),
            "after_stages": list(self.after_stages),
        }


@dataclass(frozen=True)
class Beam:
    """A live (or finished) beam: its new tokens, text and score."""

    ids: tuple[int, ...]
    text: str
    score: float  # sum of log-probabilities (finished: divided by length ** length_penalty)
    finished: bool = False

    def to_dict(self) -> dict[str, Any]:
        return {
            "ids": list(self.ids),
            "text": self.text,
            "score": self.score,
            "finished": self.finished,
        }


@dataclass(frozen=True)
class StepRecord:
    """What happened at one decoding step."""

    index: int
    token_id: int
    token: str
    prob: float  # probability of the picked token in the distribution it was picked from
    text: str  # the new text so far (for beam search: the best live beam's)
    candidates: tuple[Candidate, ...] = ()
    beams: tuple[Beam, ...] = ()  # beam search: live beams after this step, best first
    finished: tuple[Beam, ...] = ()  # beam search: the best finished hypotheses so far
    kept_count: int = 1  # how many tokens the chain left to pick from (sampling)
    stages: tuple[str, ...] = ()  # the stages that ran at this step, in order
    kept_after: tuple[int, ...] = ()  # how many tokens remained after each stage
    forward_pass: int = 0  # the model forward pass that produced this token (1 = first)
    source: str = "model"  # speculative: "draft" (an accepted draft token) or "model"
    rejected: tuple[str, ...] = ()  # speculative: draft tokens the model rejected here

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "token_id": self.token_id,
            "token": self.token,
            "prob": self.prob,
            "candidates": [c.to_dict() for c in self.candidates],
        }
        if self.stages:
            out["stages"] = [
                {"name": name, "kept": kept}
                for name, kept in zip(self.stages, self.kept_after, strict=True)
            ]
        if self.beams:
            out["beams"] = [b.to_dict() for b in self.beams]
        if self.forward_pass:
            out["forward_pass"] = self.forward_pass
            out["source"] = self.source
            if self.rejected:
                out["rejected"] = list(self.rejected)
        return out


def shown_token(token: str) -> str:
    """A token as a person can see it: spaces as ␣, newlines as ↵, tabs as →."""
    return token.replace(" ", "␣").replace("\n", "↵").replace("\t", "→") or "∅"


def candidate_rows(step: StepRecord) -> list[dict[str, Any]]:
    """The step's candidates as table rows with their fate: picked, kept or cut (and by what)."""
    rows = []
    for rank, c in enumerate(step.candidates, start=1):
        status = "picked" if c.id == step.token_id else ("kept" if c.kept else "cut")
        if c.removed_by:
            why = f"cut by {c.removed_by}"
        elif c.lowered_by:
            why = "lowered by " + ", ".join(c.lowered_by)
        else:
            why = ""
        rows.append(
            {
                "rank": rank,
                "token": shown_token(c.token),
                "id": c.id,
                "prob before temperature": c.prob_before,
                "prob after temperature": c.prob,
                "status": status,
                "why": why,
            }
        )
    return rows


def stage_table(step: StepRecord) -> list[dict[str, Any]]:
    """One row per candidate: its probability after each stage of the step (None once cut)."""
    rows = []
    for c in step.candidates:
        row: dict[str, Any] = {"token": shown_token(c.token)}
        removed = False
        for name, prob in zip(step.stages, c.after_stages, strict=False):
            removed = removed or c.removed_by == name
            row[name] = None if removed and prob == 0 else prob
        row["fate"] = f"cut by {c.removed_by}" if c.removed_by else "survived"
        rows.append(row)
    return rows


@dataclass(frozen=True)
class GenerationResult:
    """The outcome of one generation: the new text only and its token ids."""

    text: str
    ids: list[int]
    new_tokens: int
    time_s: float
    tokens_per_s: float
    steps: list[StepRecord] = field(default_factory=list)
    strategy: str = "greedy"
    prompt_tokens: int = 0
    stopped: bool = False  # ended by the stop event
    finish_reason: str = "length"  # "eos", "length" or "stopped"
    beams: list[Beam] = field(default_factory=list)  # beam search: final hypotheses, winner first
    beam_steps: list[tuple[Beam, ...]] = field(default_factory=list)  # live beams at each step
    speculative: str | None = None  # "prompt-lookup", "draft" or None
    forward_passes: int = 0  # forward passes of the model (speculative: of the target model)
    drafted_tokens: int = 0  # speculative: draft tokens proposed
    accepted_draft_tokens: int = 0  # speculative: draft tokens the model accepted

    @property
    def tokens_per_pass(self) -> float:
        return self.new_tokens / self.forward_passes if self.forward_passes else 0.0

    def to_dict(self, with_steps: bool = False) -> dict[str, Any]:
        out: dict[str, Any] = {
            "text": self.text,
            "ids": list(self.ids),
            "new_tokens": self.new_tokens,
            "time_s": self.time_s,
            "tokens_per_s": self.tokens_per_s,
        }
        if self.speculative:
            out["forward_passes"] = self.forward_passes
            out["accepted_draft_tokens"] = self.accepted_draft_tokens
            out["drafted_tokens"] = self.drafted_tokens
        if with_steps:
            out["steps"] = [s.to_dict() for s in self.steps]
        return out
