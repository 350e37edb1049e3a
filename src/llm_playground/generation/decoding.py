"""Decoding: the project's own loop from a prompt to new text, one step at a time.

At each step the model gives logits for the next token; the penalties (repetition,
presence, frequency, DRY, no-repeat n-gram) lower or remove tokens; when sampling, the
sampler chain (:mod:`.samplers`, in the order the settings give) shapes the distribution;
then a token is picked: the most likely one (greedy) or a draw (sampling). Beam search
lives in :mod:`.beam`, speculative decoding in :mod:`.speculative`.

:func:`stream` yields one :class:`StepRecord` per generated token (the chosen token, its
probability, the top candidates with what each stage did to them) and finally one
:class:`GenerationResult`; :func:`generate` collects it. Greedy and beam search follow
``transformers`` ``generate`` token for token; temperature 0 means greedy.
"""

from __future__ import annotations

import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from llm_playground.core.errors import UserError
from llm_playground.generation.config import (
    COMPARED_STRATEGIES,
    MAX_NEW_TOKENS,
    MAX_PROMPT_CHARS,
    STRATEGIES,
    DecodingConfig,
    Strategy,
    dry_breakers,
    penalty_processors,
    sampler_stages,
    sampling_filters,
)
from llm_playground.generation.samplers import (
    DRY,
    NEG_INF,
    XTC,
    Epsilon,
    Eta,
    LogitsProcessor,
    MinP,
    NoRepeatNGram,
    PresenceFrequencyPenalty,
    ProcessorList,
    RepetitionPenalty,
    Stage,
    Temperature,
    TopK,
    TopNSigma,
    TopP,
    TypicalP,
    attribute,
)

__all__ = [
    "COMPARED_STRATEGIES",
    "DRY",
    "MAX_NEW_TOKENS",
    "MAX_PROMPT_CHARS",
    "NEG_INF",
    "STRATEGIES",
    "XTC",
    "Beam",
    "Candidate",
    "DecodingConfig",
    "Epsilon",
    "Eta",
    "GenerationResult",
    "LogitsProcessor",
    "MinP",
    "NoRepeatNGram",
    "PresenceFrequencyPenalty",
    "ProcessorList",
    "RepetitionPenalty",
    "Stage",
    "StepRecord",
    "Strategy",
    "Temperature",
    "TopK",
    "TopNSigma",
    "TopP",
    "TypicalP",
    "candidate_rows",
    "compare_strategies",
    "generate",
    "iter_strategies",
    "penalty_processors",
    "prepare",
    "prompt_ids",
    "sampler_stages",
    "sampling_filters",
    "shown_token",
    "stream",
]


# --- records ----------------------------------------------------------------------------


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


# --- prompts ----------------------------------------------------------------------------


def has_chat_template(loaded) -> bool:
    return bool(getattr(loaded.tokenizer, "chat_template", None)) and bool(
        getattr(loaded.info, "chat", False)
    )


def prompt_ids(loaded, prompt: str, chat_template: bool | None = None) -> list[int]:
    """Token ids of the prompt: wrapped in the chat template (with the assistant's turn opened)
    when asked, or by default when the model is a chat model with a template; raw text otherwise."""
    if not isinstance(prompt, str) or not prompt.strip():
        raise UserError("the prompt is empty")
    if len(prompt) > MAX_PROMPT_CHARS:
        raise UserError(
            f"the prompt is {len(prompt):,} characters long: the limit is {MAX_PROMPT_CHARS:,}"
        )
    tok = loaded.tokenizer
    use_chat = has_chat_template(loaded) if chat_template is None else bool(chat_template)
    if use_chat:
        if not getattr(tok, "chat_template", None):
            raise UserError(
                f"model '{loaded.info.name}' has no chat template: feed the prompt as raw text"
            )
        text = tok.apply_chat_template(
            [{"role": "user", "content": prompt}], add_generation_prompt=True, tokenize=False
        )
        return list(tok(text, add_special_tokens=False)["input_ids"])
    return list(tok(prompt)["input_ids"])


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


def check_length(loaded, n_prompt: int, config: DecodingConfig) -> None:
    limit = loaded.context_length
    if n_prompt + config.max_new_tokens > limit:
        raise UserError(
            f"the prompt ({n_prompt} tokens) plus {config.max_new_tokens} new tokens is more "
            f"than the model's context of {limit} tokens: ask for at most "
            f"{max(limit - n_prompt, 0)} new tokens"
        )


def prepare(
    loaded, prompt: str, config: DecodingConfig, chat_template: bool | None = None
) -> list[int]:
    """The prompt's token ids, after checking that the request fits (raises :class:`UserError`)."""
    ids = prompt_ids(loaded, prompt, chat_template)
    check_length(loaded, len(ids), config)
    return ids


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
        ids = torch.tensor([list(context)], dtype=torch.long)
        row = logits[None]
        penalised = self.penalties(ids, row)[0] if self.penalties else logits
        if not self.candidates:
            final = self.samplers(ids, penalised[None])[0] if self.samplers else penalised
            return Scored(logits=logits, penalised=penalised, final=final)
        # the candidates a view shows: the most likely after temperature
        warped = penalised / self.temperature if self.temperature != 1.0 else penalised
        top = torch.topk(warped, min(self.candidates, warped.shape[-1])).indices.tolist()
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
        probs = self.probabilities(scored)
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


# --- the loop ---------------------------------------------------------------------------


def stream(
    loaded,
    prompt: str,
    config: DecodingConfig,
    chat_template: bool | None = None,
    candidates: int = 0,
    stop_event=None,
    *,
    use_cache: bool = True,
    draft=None,
) -> Iterator[StepRecord | GenerationResult]:
    """Generate step by step: yields one :class:`StepRecord` per step, then the
    :class:`GenerationResult`. ``candidates`` K > 0 records the K most likely tokens of each
    step. ``stop_event`` (a ``threading.Event``) is checked between steps. ``use_cache=False``
    recomputes the whole prefix each step (same tokens, slower: for comparison). ``draft``:
    the loaded draft model for ``speculative="draft"``."""
    if not isinstance(config, DecodingConfig):
        raise UserError("the decoding settings must be a DecodingConfig")
    if isinstance(candidates, bool) or not isinstance(candidates, int) or candidates < 0:
        raise UserError(f"candidates must be a whole number, 0 or more, got {candidates!r}")
    ids = prepare(loaded, prompt, config, chat_template)
    if config.effective_strategy == "beam":
        from llm_playground.generation.beam import beam_stream

        yield from beam_stream(loaded, ids, config, candidates, stop_event, use_cache)
    elif config.speculative:
        from llm_playground.generation.speculative import speculative_stream

        yield from speculative_stream(loaded, ids, config, candidates, stop_event, draft)
    else:
        yield from _single_stream(loaded, ids, config, candidates, stop_event, use_cache)


def _single_stream(
    loaded, prompt: list[int], config: DecodingConfig, candidates: int, stop_event, use_cache: bool
) -> Iterator[StepRecord | GenerationResult]:
    """Greedy or sampling: one forward pass, one token, per step."""
    import torch

    from llm_playground.generation.runner import make_runner

    tokenizer = loaded.tokenizer
    chooser = TokenChooser(loaded, config, candidates)
    end_of_text = set(eos_ids(loaded))
    runner = make_runner(loaded.model, len(prompt) + config.max_new_tokens, use_cache)
    context = list(prompt)  # the prompt and every token generated so far
    new_ids: list[int] = []
    steps: list[StepRecord] = []
    finish = "length"
    start = time.perf_counter()
    with torch.inference_mode():
        # the first forward pass reads the whole prompt and fills the cache
        logits = runner.forward(prompt)[-1]
        for index in range(config.max_new_tokens):
            if stop_event is not None and stop_event.is_set():
                finish = "stopped"
                break
            # score the next position, pick a token, record what happened
            scored = chooser.score(context, logits)
            next_id = chooser.pick(scored)
            context.append(next_id)
            new_ids.append(next_id)
            record = chooser.record(scored, next_id, index, decode_text(tokenizer, new_ids))
            steps.append(record)
            yield record
            if next_id in end_of_text:
                finish = "eos"
                break
            # feed the new token: its logits are the next step's
            if index + 1 < config.max_new_tokens:
                logits = runner.forward([next_id])[-1]
    elapsed = time.perf_counter() - start
    yield GenerationResult(
        text=decode_text(tokenizer, new_ids),
        ids=new_ids,
        new_tokens=len(new_ids),
        time_s=elapsed,
        tokens_per_s=len(new_ids) / elapsed if elapsed > 0 else 0.0,
        steps=steps,
        strategy=config.effective_strategy,
        prompt_tokens=len(prompt),
        stopped=finish == "stopped",
        finish_reason=finish,
        forward_passes=len(new_ids),
    )


def generate(
    loaded,
    prompt: str,
    config: DecodingConfig,
    chat_template: bool | None = None,
    candidates: int = 0,
    stop_event=None,
    *,
    use_cache: bool = True,
    draft=None,
) -> GenerationResult:
    """Generate with the project's loop; the result holds the new text only."""
    result = None
    for item in stream(
        loaded,
        prompt,
        config,
        chat_template,
        candidates,
        stop_event,
        use_cache=use_cache,
        draft=draft,
    ):
        if isinstance(item, GenerationResult):
            result = item
    assert result is not None
    return result


def iter_strategies(
    loaded,
    prompt: str,
    base_config: DecodingConfig,
    chat_template: bool | None = None,
    stop_event=None,
) -> Iterator[GenerationResult]:
    """Each strategy (greedy, beam, top-k, top-p) in turn with the user's other settings,
    yielding each result as soon as it is done; a set ``stop_event`` ends it between steps."""
    for strategy in COMPARED_STRATEGIES:
        if stop_event is not None and stop_event.is_set():
            return
        settings = replace(
            base_config,
            strategy=strategy,
            top_k=base_config.top_k or 50,
            top_p=base_config.top_p or 0.9,
            speculative=None,
        )
        yield generate(loaded, prompt, settings, chat_template, stop_event=stop_event)


def compare_strategies(
    loaded,
    prompt: str,
    base_config: DecodingConfig,
    chat_template: bool | None = None,
    stop_event=None,
) -> list[GenerationResult]:
    """One result per strategy (greedy, beam, top-k, top-p) with the user's other settings."""
    return list(iter_strategies(loaded, prompt, base_config, chat_template, stop_event))


# --- the loop as a learner reads it -----------------------------------------------------


def decode_simple(model, ids: list[int], config: DecodingConfig, steps: int) -> list[int]:
    """Lab 3's decoding loop top to bottom: logits, penalties, temperature, filters, sample,
    append. Returns the ``steps`` new token ids after the prompt ``ids``.

    ``model`` is a ``transformers`` causal LM. The tokens equal :func:`generate`'s (tested,
    greedy and seeded sampling) with the samplers in their default order, temperature first.
    The fast path keeps the keys and values of earlier tokens (a KV cache) instead of
    reading the whole text again at every step, stops at the end-of-text token, lets the
    samplers' order change, and records what every stage did for the step-by-step view.
    """
    import torch

    penalties = penalty_processors(config)  # repetition, presence/frequency, no-repeat n-gram
    # the draw and XTC's coin come from generators seeded as the fast path seeds them
    generator = torch.Generator().manual_seed(config.seed or 0)
    xtc_coin = torch.Generator().manual_seed((config.seed or 0) + 1_000_003)
    filters = [s for s in sampler_stages(config, xtc_coin) if s.name != "temperature"]
    context = torch.tensor([ids])  # (1, T)
    for _ in range(steps):
        # 1. logits: the model's score for every token of the vocabulary, at the next position
        with torch.no_grad():
            logits = model(context).logits[:, -1, :].float()  # (1, T, vocab) -> (1, vocab)
        # 2. penalties lower (or remove) tokens that the text has already used
        logits = penalties(context, logits)
        if config.samples:
            # 3. temperature: below 1 sharpens the distribution, above 1 flattens it
            logits = logits / config.temperature
            # 4. filters set the scores of the tokens they cut to -inf (top-k, top-p, min-p...)
            for stage in filters:
                logits = stage(context, logits)
            # 5. sample: draw a token from the softmax of what is left
            next_id = torch.multinomial(logits.softmax(dim=-1), 1, generator=generator)  # (1, 1)
        else:
            next_id = logits.argmax(dim=-1, keepdim=True)  # greedy: the most likely token
        # 6. append it to the text: the next step reads it too
        context = torch.cat([context, next_id], dim=1)  # (1, T) -> (1, T + 1)
    return context[0, len(ids) :].tolist()
