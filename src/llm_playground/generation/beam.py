"""Beam search as ``transformers`` ``generate`` runs it (its default early-stopping heuristic).

Beam search keeps ``num_beams`` partial texts ("beams") at once. At every step each beam is
extended by every token; the best continuations by total log-probability become the next
beams, and a continuation that ends (end-of-text, or the token limit) becomes a finished
hypothesis, scored by its log-probability divided by ``length ** length_penalty``. The
search stops when no live beam can beat the worst of the ``num_beams`` best finished ones.
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from typing import Any

from llm_playground.generation.choose import decode_text, eos_ids, token_piece
from llm_playground.generation.config import DecodingConfig, penalty_processors
from llm_playground.generation.records import Beam, Candidate, GenerationResult, StepRecord

# A score that marks a slot as empty (transformers uses the same large negative number).
EMPTY = -1e9


class CachedForward:
    """Runs the model on a batch of beams with its KV cache (or recomputing the prefix)."""

    def __init__(self, model, use_cache: bool):
        import inspect

        self.model = model
        self.use_cache = use_cache
        self.cache = None
        try:
            self.keeps_logits = "logits_to_keep" in inspect.signature(model.forward).parameters
        except (TypeError, ValueError):
            self.keeps_logits = False

    def __call__(self, sequences, new_positions: int):
        """Logits of the last position of each sequence; ``new_positions`` are not cached yet."""
        kwargs: dict[str, Any] = {"logits_to_keep": 1} if self.keeps_logits else {}
        if self.use_cache:
            out = self.model(
                input_ids=sequences[:, -new_positions:],
                past_key_values=self.cache,
                use_cache=True,
                **kwargs,
            )
            self.cache = out.past_key_values
        else:
            out = self.model(input_ids=sequences, use_cache=False, **kwargs)
        return out.logits[:, -1, :].float()

    def reorder(self, beam_index) -> None:
        """After a step, beam i continues beam ``beam_index[i]``: reorder the cache alike."""
        if self.cache is not None:
            self.cache.reorder_cache(beam_index)


@dataclass
class BeamState:
    """The live beams and the finished hypotheses of one beam search.

    Live beam i has token ids ``sequences[i]`` (prompt included), total log-probability
    ``live_scores[i]`` and step records ``live_history[i]``. The finished slots hold the
    best ``num_beams`` finished hypotheses: ``finished_ids``, ``finished_scores`` (length
    normalised), ``finished_history``, and ``finished_used`` (False: an empty slot).
    """

    num_beams: int
    length_penalty: float
    prompt_length: int
    sequences: Any  # torch.LongTensor [num_beams, length]
    live_scores: Any  # torch.FloatTensor [num_beams]
    finished_scores: Any  # torch.FloatTensor [num_beams]
    finished_used: Any  # torch.BoolTensor [num_beams]
    live_history: list[tuple[StepRecord, ...]] = field(default_factory=list)
    finished_ids: list[list[int]] = field(default_factory=list)
    finished_history: list[tuple[StepRecord, ...]] = field(default_factory=list)
    can_improve: bool = True  # a live beam may still beat the worst finished hypothesis

    @classmethod
    def start(cls, prompt: list[int], config: DecodingConfig, device) -> BeamState:
        import torch

        beams = config.num_beams
        live_scores = torch.zeros(beams, dtype=torch.float32, device=device)
        live_scores[1:] = EMPTY  # all beams start equal: only the first one is extended
        return cls(
            num_beams=beams,
            length_penalty=config.length_penalty,
            prompt_length=len(prompt),
            sequences=torch.tensor([prompt] * beams, dtype=torch.long, device=device),
            live_scores=live_scores,
            finished_scores=torch.full((beams,), EMPTY, dtype=torch.float32, device=device),
            finished_used=torch.zeros(beams, dtype=torch.bool, device=device),
            live_history=[() for _ in range(beams)],
            finished_ids=[[] for _ in range(beams)],
            finished_history=[() for _ in range(beams)],
        )

    @property
    def new_length(self) -> int:
        return self.sequences.shape[1] - self.prompt_length

    def normalised(self, log_probs, length: int):
        """Hugging Face's score of a finished hypothesis."""
        return log_probs / (length**self.length_penalty)

    def live_beams(self) -> tuple[Beam, ...]:
        return tuple(
            Beam(ids=tuple(r.token_id for r in history), text=history[-1].text, score=score)
            for history, score in zip(self.live_history, self.live_scores.tolist(), strict=True)
            if score > EMPTY / 10
        )

    def finished_beams(self, tokenizer=None) -> tuple[Beam, ...]:
        beams = []
        for slot in range(self.num_beams):
            if not bool(self.finished_used[slot]):
                continue
            ids = self.finished_ids[slot]
            history = self.finished_history[slot]
            text = decode_text(tokenizer, ids) if tokenizer is not None else history[-1].text
            beams.append(
                Beam(
                    ids=tuple(ids),
                    text=text,
                    score=float(self.finished_scores[slot]),
                    finished=True,
                )
            )
        return tuple(beams)


def _top_candidates(tokenizer, log_probs, count: int, kept_ids: set[int]) -> tuple[Candidate, ...]:
    """A beam's ``count`` most likely next tokens; kept = it extended a beam."""
    import torch

    probs = log_probs.softmax(dim=-1)
    top = torch.topk(probs, min(count, probs.shape[-1]))
    return tuple(
        Candidate(
            id=token,
            token=token_piece(tokenizer, token),
            prob_before=prob,
            prob=prob,
            kept=token in kept_ids,
        )
        for prob, token in zip(top.values.tolist(), top.indices.tolist(), strict=True)
    )


@dataclass
class _Continuations:
    """The best continuations of one step, over all live beams, best first."""

    totals: Any  # torch.FloatTensor [considered]: total log-probability of each
    source_beam: Any  # torch.LongTensor [considered]: the live beam each one extends
    next_token: Any  # torch.LongTensor [considered]: the token it adds
    ends: Any  # torch.BoolTensor [considered]: it ends the text (end-of-text or token limit)


class _BeamSearch:
    """One beam search, a step at a time: :func:`beam_stream` drives it."""

    def __init__(
        self, loaded, prompt: list[int], config: DecodingConfig, candidates: int, use_cache: bool
    ):
        import torch

        self.tokenizer = loaded.tokenizer
        self.config = config
        self.candidates = candidates
        device = next(loaded.model.parameters()).device
        self.device = device
        self.penalties = penalty_processors(config)
        self.end_of_text = eos_ids(loaded)
        self.end_of_text_tensor = torch.tensor(self.end_of_text, dtype=torch.long, device=device)
        # how many continuations to consider: enough that num_beams survive any eos among them
        self.considered = max(2, 1 + len(self.end_of_text)) * config.num_beams
        self.among_best = torch.arange(self.considered, device=device) < config.num_beams
        self.max_length = len(prompt) + config.max_new_tokens
        self.forward = CachedForward(loaded.model, use_cache)
        self.state = BeamState.start(prompt, config, device)
        self.beam_steps: list[tuple[Beam, ...]] = []
        self.uncached = len(prompt)  # positions the model has not seen yet
        self.index = 0
        self.last_ends = None  # which of the last step's continuations ended the text

    def step(self) -> StepRecord:
        """Extend the beams by one token; the best live beam's step record."""
        state = self.state
        # 1. next-token log-probabilities of every live beam, penalties applied
        log_probs = self.next_log_probs()
        # 2. the best continuations over all beams, by total log-probability
        best = self.best_continuations(log_probs)
        # 3. records of the continuations that will be kept (as live beams or finished)
        next_live, chosen_finished, newly_finished, merged_scores = _choose(
            state, best.totals, best.ends, self.among_best
        )
        records = self.step_records(log_probs, best, next_live.tolist(), chosen_finished)
        # 4. the finished slots: the best of the old ones and the new ones
        _update_finished(
            state, chosen_finished, newly_finished, merged_scores, records, best.source_beam
        )
        # 5. the live beams: the best continuations that did not end
        self.move_live_beams(best, next_live, records)
        live = state.live_beams()
        self.beam_steps.append(live)
        record = replace(
            state.live_history[0][-1],
            index=self.index,
            beams=live,
            finished=state.finished_beams(),
        )
        self.index += 1
        self.last_ends = best.ends
        return record

    def step_records(
        self, log_probs, best: _Continuations, live_list: list[int], chosen_finished: list[int]
    ) -> dict[int, StepRecord]:
        """A step record for every continuation kept as a live beam or a finished hypothesis."""
        tokenizer, state = self.tokenizer, self.state
        source_list, token_list = best.source_beam.tolist(), best.next_token.tolist()
        beams = state.num_beams
        used = set(live_list) | {slot - beams for slot in chosen_finished if slot >= beams}
        kept_by_beam: dict[int, set[int]] = {}
        for j in used:
            kept_by_beam.setdefault(source_list[j], set()).add(token_list[j])
        candidates_of_beam: dict[int, tuple[Candidate, ...]] = {}
        records: dict[int, StepRecord] = {}
        for j in sorted(used):
            beam, token = source_list[j], token_list[j]
            if self.candidates and beam not in candidates_of_beam:
                candidates_of_beam[beam] = _top_candidates(
                    tokenizer, log_probs[beam], self.candidates, kept_by_beam.get(beam, set())
                )
            new_ids = [r.token_id for r in state.live_history[beam]] + [token]
            records[j] = StepRecord(
                index=self.index,
                token_id=token,
                token=token_piece(tokenizer, token),
                prob=math.exp(float(log_probs[beam, token])),
                text=decode_text(tokenizer, new_ids),
                candidates=candidates_of_beam.get(beam, ()),
            )
        return records

    def next_log_probs(self):
        """Log-probabilities of the next token after every live beam, penalties applied."""
        import torch

        state = self.state
        logits = self.forward(state.sequences, self.uncached)
        self.uncached = 1  # from now on, only the newest token is new to the cache
        log_probs = torch.log_softmax(logits, dim=-1)
        if self.penalties:
            log_probs = self.penalties(state.sequences, log_probs)
        return log_probs

    def best_continuations(self, log_probs) -> _Continuations:
        """The ``considered`` best (beam, token) pairs and whether each ends the text."""
        import torch

        state = self.state
        vocab = log_probs.shape[-1]
        # every beam's score plus every token's log-probability, flattened to one row
        totals = (log_probs + state.live_scores[:, None]).reshape(-1)
        best_totals, best_flat = torch.topk(totals, self.considered)
        next_token = best_flat % vocab
        if self.end_of_text:
            ends = torch.isin(next_token, self.end_of_text_tensor)
        else:
            ends = torch.zeros_like(next_token, dtype=torch.bool)
        if state.sequences.shape[1] + 1 >= self.max_length:
            ends = torch.ones_like(ends)  # the token limit ends every continuation
        return _Continuations(best_totals, best_flat // vocab, next_token, ends)

    def move_live_beams(self, best: _Continuations, next_live, records) -> None:
        """The next live beams: their histories, scores, token ids and KV cache."""
        import torch

        state = self.state
        source_list = best.source_beam.tolist()
        state.live_history = [
            state.live_history[source_list[j]] + (records[j],) for j in next_live.tolist()
        ]
        state.live_scores = (best.totals + best.ends.float() * EMPTY)[next_live]
        parent = best.source_beam[next_live]
        state.sequences = torch.cat(
            [state.sequences[parent], best.next_token[next_live].view(-1, 1)], dim=1
        )
        self.forward.reorder(parent)

    def done(self) -> bool:
        """Hugging Face's early-stopping heuristic (early_stopping=False), or all ended."""
        import torch

        state = self.state
        # the best score a live beam could still reach against the worst finished one
        best_possible = float(state.live_scores[0]) / (state.new_length**self.config.length_penalty)
        worst_finished = torch.where(
            state.finished_used,
            state.finished_scores.min(),
            torch.tensor(EMPTY, device=self.device),
        )
        state.can_improve = state.can_improve and bool((best_possible > worst_finished).any())
        return not state.can_improve or bool(self.last_ends.all())


def beam_stream(
    loaded, prompt: list[int], config: DecodingConfig, candidates: int, stop_event, use_cache: bool
) -> Iterator[StepRecord | GenerationResult]:
    """Beam search, one step record per step (the best live beam's), then the result."""
    import torch

    search = _BeamSearch(loaded, prompt, config, candidates, use_cache)
    finish = "length"
    start = time.perf_counter()
    with torch.inference_mode():
        while True:
            if stop_event is not None and stop_event.is_set():
                finish = "stopped"
                break
            yield search.step()
            if search.done():
                break
    yield _result(
        search.tokenizer,
        search.state,
        config,
        search.beam_steps,
        finish,
        search.end_of_text,
        start,
    )


def _choose(state: BeamState, best_totals, ends, among_best):
    """Which continuations live on and which finished ones enter the finished slots."""
    import torch

    # the next live beams: the best continuations that did not end
    next_live = torch.topk(best_totals + ends.float() * EMPTY, state.num_beams).indices
    # new finished hypotheses: the continuations among the best num_beams that ended
    newly_finished = ends & among_best
    finished_scores = state.normalised(best_totals, state.new_length + 1)
    if not state.can_improve:
        finished_scores = finished_scores + EMPTY
    finished_scores = finished_scores + (~newly_finished).float() * EMPTY
    merged_scores = torch.cat([state.finished_scores, finished_scores])
    chosen_finished = torch.topk(merged_scores, state.num_beams).indices.tolist()
    return next_live, chosen_finished, newly_finished, merged_scores


def _update_finished(
    state: BeamState, chosen_finished, newly_finished, merged_scores, records, source_beam
) -> None:
    """Fill the finished slots with the chosen old slots and new hypotheses."""
    import torch

    beams = state.num_beams
    ids, history = [], []
    source_list = source_beam.tolist()
    for slot in chosen_finished:
        if slot < beams:  # an old finished hypothesis keeps its place
            ids.append(state.finished_ids[slot])
            history.append(state.finished_history[slot])
        else:  # a continuation that ended at this step
            j = slot - beams
            full = state.live_history[source_list[j]] + (records[j],)
            ids.append([r.token_id for r in full])
            history.append(full)
    state.finished_used = torch.cat([state.finished_used, newly_finished])[chosen_finished]
    state.finished_scores = merged_scores[chosen_finished]
    state.finished_ids, state.finished_history = ids, history


def _result(
    tokenizer, state: BeamState, config, beam_steps, finish, end_of_text, start
) -> GenerationResult:
    """The winner (the best finished hypothesis, else the best live beam) and the finals."""
    elapsed = time.perf_counter() - start
    finals = list(state.finished_beams(tokenizer))
    if finals:
        winner_history = state.finished_history[0]
    else:  # stopped before any hypothesis finished: the best live beam
        winner_history = state.live_history[0]
        winner_ids = [r.token_id for r in winner_history]
        finals = [
            Beam(
                ids=tuple(winner_ids),
                text=decode_text(tokenizer, winner_ids),
                score=float(state.live_scores[0]),
            )
        ]
    ids = [r.token_id for r in winner_history]
    if finish != "stopped" and ids and ids[-1] in end_of_text:
        finish = "eos"
    return GenerationResult(
        text=decode_text(tokenizer, ids),
        ids=ids,
        new_tokens=len(ids),
        time_s=elapsed,
        tokens_per_s=len(ids) / elapsed if elapsed > 0 else 0.0,
        steps=[replace(r, index=i) for i, r in enumerate(winner_history)],
        strategy="beam",
        prompt_tokens=state.prompt_length,
        stopped=finish == "stopped",
        finish_reason=finish,
        beams=finals,
        beam_steps=beam_steps,
        forward_passes=len(beam_steps),
    )
