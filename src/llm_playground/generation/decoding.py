"""Decoding: logits processors and the project's own decoding loop, step by step.

The loop runs the model over its logits with the KV cache (a ``DynamicCache`` that the
model fills on the first forward pass and extends by one position per step) and applies
logits processors in the style of Hugging Face's:

* :class:`RepetitionPenalty` and :class:`NoRepeatNGram` act on every strategy;
* :class:`Temperature`, :class:`TopK` and :class:`TopP` act on sampling, in that order.

Every processor validates its arguments on construction. :func:`stream` yields one
:class:`StepRecord` per generated token (the chosen token, its probability, the top
candidates with their probabilities before and after temperature and whether top-k/top-p
kept them, and for beam search the live beams with their scores) and finally one
:class:`GenerationResult`; :func:`generate` collects it. Greedy and beam search follow
Hugging Face ``generate`` token for token (beam search with its default early-stopping
heuristic); temperature 0 means greedy.
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, Literal

from llm_playground.core.errors import UserError

Strategy = Literal["greedy", "beam", "top-k", "top-p"]
STRATEGIES: tuple[str, ...] = ("greedy", "beam", "top-k", "top-p")
NEG_INF = float("-inf")


# --- configuration ----------------------------------------------------------------------


def _finite(name: str, value: float) -> float:
    try:
        value = float(value)
    except (TypeError, ValueError) as exc:
        raise UserError(f"{name} must be a number, got {value!r}") from exc
    if math.isnan(value) or math.isinf(value):
        raise UserError(f"{name} must be a finite number, got {value}")
    return value


def _int(name: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        if isinstance(value, float) and value.is_integer():
            return int(value)
        raise UserError(f"{name} must be a whole number, got {value!r}")
    return value


@dataclass(frozen=True)
class DecodingConfig:
    """How to pick each next token. Invalid settings raise :class:`UserError` on construction.

    ``temperature`` 0 means greedy. ``top_k`` is used by the "top-k" strategy and ``top_p``
    by "top-p"; ``num_beams``, ``length_penalty`` by "beam". ``repetition_penalty`` and
    ``no_repeat_ngram_size`` act on every strategy. ``seed`` None draws a fresh seed.
    """

    strategy: Strategy = "greedy"
    temperature: float = 1.0
    top_k: int = 50
    top_p: float = 0.9
    num_beams: int = 4
    length_penalty: float = 1.0
    no_repeat_ngram_size: int = 0
    repetition_penalty: float = 1.0
    max_new_tokens: int = 64
    seed: int | None = 0

    def __post_init__(self) -> None:
        if self.strategy not in STRATEGIES:
            raise UserError(
                f"unknown strategy '{self.strategy}': pick one of {', '.join(STRATEGIES)}"
            )
        temperature = _finite("temperature", self.temperature)
        if temperature < 0:
            raise UserError(f"temperature must be 0 or more (0 means greedy), got {temperature:g}")
        top_p = _finite("top-p", self.top_p)
        if not 0 < top_p <= 1:
            raise UserError(f"top-p must be in (0, 1], got {top_p:g}")
        top_k = _int("top-k", self.top_k)
        if top_k < 1:
            raise UserError(f"top-k must be at least 1, got {top_k}")
        num_beams = _int("number of beams", self.num_beams)
        if num_beams < 1:
            raise UserError(f"the number of beams must be at least 1, got {num_beams}")
        length_penalty = _finite("length penalty", self.length_penalty)
        ngram = _int("no-repeat n-gram size", self.no_repeat_ngram_size)
        if ngram < 0:
            raise UserError(f"the no-repeat n-gram size must be 0 (off) or more, got {ngram}")
        repetition = _finite("repetition penalty", self.repetition_penalty)
        if repetition <= 0:
            raise UserError(f"the repetition penalty must be above 0 (1 = off), got {repetition:g}")
        max_new = _int("max new tokens", self.max_new_tokens)
        if max_new < 1:
            raise UserError(f"max new tokens must be at least 1, got {max_new}")
        seed = self.seed
        if seed is not None:
            seed = _int("seed", seed)
            if seed < 0:
                raise UserError(f"the seed must be 0 or more, got {seed}")
        for name, value in (
            ("temperature", temperature),
            ("top_p", top_p),
            ("top_k", top_k),
            ("num_beams", num_beams),
            ("length_penalty", length_penalty),
            ("no_repeat_ngram_size", ngram),
            ("repetition_penalty", repetition),
            ("max_new_tokens", max_new),
            ("seed", seed),
        ):
            object.__setattr__(self, name, value)

    @property
    def samples(self) -> bool:
        """Whether this configuration draws tokens at random (temperature 0 means greedy)."""
        return self.strategy in ("top-k", "top-p") and self.temperature > 0

    @property
    def effective_strategy(self) -> str:
        """The strategy that actually runs: sampling at temperature 0 is greedy, and so is
        beam search with one beam."""
        if self.strategy in ("top-k", "top-p") and self.temperature == 0:
            return "greedy"
        if self.strategy == "beam" and self.num_beams == 1:
            return "greedy"
        return self.strategy

    def describe(self) -> str:
        s = self.strategy
        if s == "beam":
            return f"beam search ({self.num_beams} beams, length penalty {self.length_penalty:g})"
        if s == "top-k":
            return f"top-k sampling (k={self.top_k}, temperature {self.temperature:g})"
        if s == "top-p":
            return f"nucleus sampling (p={self.top_p:g}, temperature {self.temperature:g})"
        return "greedy"


# --- logits processors ------------------------------------------------------------------


class LogitsProcessor:
    """Maps ``(input_ids [batch, len], scores [batch, vocab])`` to new scores (a new tensor)."""

    def __call__(self, input_ids, scores):  # pragma: no cover - interface
        raise NotImplementedError


class Temperature(LogitsProcessor):
    """Divides the logits by the temperature (> 0): below 1 sharpens, above 1 flattens."""

    def __init__(self, temperature: float):
        t = _finite("temperature", temperature)
        if t <= 0:
            raise UserError(
                f"the temperature of a sampling step must be above 0, got {t:g}"
                " (temperature 0 means greedy)"
            )
        self.temperature = t

    def __call__(self, input_ids, scores):
        return scores / self.temperature


class TopK(LogitsProcessor):
    """Keeps the k highest scores (ties with the k-th included), sets the rest to -inf."""

    def __init__(self, top_k: int, min_tokens_to_keep: int = 1):
        k = _int("top-k", top_k)
        if k < 1:
            raise UserError(f"top-k must be at least 1, got {k}")
        if _int("min tokens to keep", min_tokens_to_keep) < 1:
            raise UserError("min tokens to keep must be at least 1")
        self.top_k = max(k, min_tokens_to_keep)

    def __call__(self, input_ids, scores):
        import torch

        k = min(self.top_k, scores.size(-1))
        threshold = torch.topk(scores, k)[0][..., -1, None]
        return scores.masked_fill(scores < threshold, NEG_INF)


class TopP(LogitsProcessor):
    """Nucleus filter: keeps the smallest set of most likely tokens whose probability reaches p."""

    def __init__(self, top_p: float, min_tokens_to_keep: int = 1):
        p = _finite("top-p", top_p)
        if not 0 < p <= 1:
            raise UserError(f"top-p must be in (0, 1], got {p:g}")
        if _int("min tokens to keep", min_tokens_to_keep) < 1:
            raise UserError("min tokens to keep must be at least 1")
        self.top_p = p
        self.min_tokens_to_keep = min_tokens_to_keep

    def __call__(self, input_ids, scores):
        sorted_scores, sorted_idx = scores.sort(dim=-1, descending=False)
        cumulative = sorted_scores.softmax(dim=-1).cumsum(dim=-1)
        remove_sorted = cumulative <= (1 - self.top_p)  # the unlikely tail whose mass is <= 1-p
        remove_sorted[..., -self.min_tokens_to_keep :] = False
        remove = remove_sorted.scatter(-1, sorted_idx, remove_sorted)
        return scores.masked_fill(remove, NEG_INF)


class RepetitionPenalty(LogitsProcessor):
    """Makes tokens already in the sequence less likely: negative scores are multiplied by the
    penalty, positive ones divided (CTRL, Keskar et al. 2019). 1 means no penalty."""

    def __init__(self, penalty: float):
        p = _finite("repetition penalty", penalty)
        if p <= 0:
            raise UserError(f"the repetition penalty must be above 0, got {p:g}")
        self.penalty = p

    def __call__(self, input_ids, scores):
        import torch

        picked = torch.gather(scores, 1, input_ids)
        picked = torch.where(picked < 0, picked * self.penalty, picked / self.penalty)
        return scores.scatter(1, input_ids, picked)


class NoRepeatNGram(LogitsProcessor):
    """Forbids any token that would repeat an n-gram already present in the sequence."""

    def __init__(self, ngram_size: int):
        n = _int("no-repeat n-gram size", ngram_size)
        if n < 1:
            raise UserError(f"the no-repeat n-gram size must be at least 1, got {n}")
        self.n = n

    def banned(self, tokens: Sequence[int]) -> list[int]:
        n = self.n
        if len(tokens) + 1 < n:
            return []
        prefix = tuple(tokens[len(tokens) - n + 1 :]) if n > 1 else ()
        out = []
        for i in range(len(tokens) - n + 1):
            if tuple(tokens[i : i + n - 1]) == prefix:
                out.append(tokens[i + n - 1])
        return out

    def __call__(self, input_ids, scores):
        scores = scores.clone()
        for row, tokens in enumerate(input_ids.tolist()):
            banned = self.banned(tokens)
            if banned:
                scores[row, banned] = NEG_INF
        return scores


class ProcessorList(list):
    """Processors applied one after the other."""

    def __call__(self, input_ids, scores):
        for proc in self:
            scores = proc(input_ids, scores)
        return scores


def penalty_processors(config: DecodingConfig) -> ProcessorList:
    """The processors that act on every strategy (before any sampling filter)."""
    procs = ProcessorList()
    if config.repetition_penalty != 1.0:
        procs.append(RepetitionPenalty(config.repetition_penalty))
    if config.no_repeat_ngram_size > 0:
        procs.append(NoRepeatNGram(config.no_repeat_ngram_size))
    return procs


def sampling_filters(config: DecodingConfig) -> tuple[Temperature | None, ProcessorList]:
    """Temperature, then top-k or top-p, for a sampling configuration (in that order)."""
    temperature = Temperature(config.temperature) if config.temperature != 1.0 else None
    filters = ProcessorList()
    if config.strategy == "top-k":
        filters.append(TopK(config.top_k))
    elif config.strategy == "top-p" and config.top_p < 1.0:
        filters.append(TopP(config.top_p))
    return temperature, filters


# --- records ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Candidate:
    """One of the most likely next tokens at a step."""

    id: int
    token: str
    prob_before: float  # softmax of the (penalised) logits at temperature 1
    prob: float  # after temperature (equal to prob_before for greedy and beam search)
    kept: bool  # survived top-k / top-p (greedy: the argmax; beam: extended into a beam)

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "token": self.token,
            "prob": self.prob,
            "prob_before": self.prob_before,
            "kept": self.kept,
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
    kept_count: int = 1  # how many tokens the filters left to pick from (sampling)

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "token_id": self.token_id,
            "token": self.token,
            "prob": self.prob,
            "candidates": [c.to_dict() for c in self.candidates],
        }
        if self.beams:
            out["beams"] = [b.to_dict() for b in self.beams]
        return out


def visible(token: str) -> str:
    """A token as a person can see it: spaces as ␣, newlines as ↵, tabs as →."""
    return token.replace(" ", "␣").replace("\n", "↵").replace("\t", "→") or "∅"


def candidate_rows(step: StepRecord) -> list[dict[str, Any]]:
    """The step's candidates as table rows with their fate: picked, kept or cut."""
    rows = []
    for rank, c in enumerate(step.candidates, start=1):
        status = "picked" if c.id == step.token_id else ("kept" if c.kept else "cut")
        rows.append(
            {
                "rank": rank,
                "token": visible(c.token),
                "id": c.id,
                "prob before temperature": c.prob_before,
                "prob after temperature": c.prob,
                "status": status,
            }
        )
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

    def to_dict(self, with_steps: bool = False) -> dict[str, Any]:
        out: dict[str, Any] = {
            "text": self.text,
            "ids": list(self.ids),
            "new_tokens": self.new_tokens,
            "time_s": self.time_s,
            "tokens_per_s": self.tokens_per_s,
        }
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


# --- the loop ---------------------------------------------------------------------------


class _Forward:
    """Runs the model one step at a time, with the KV cache or recomputing the whole prefix."""

    def __init__(self, model, use_cache: bool):
        import inspect

        self.model = model
        self.use_cache = use_cache
        self.cache = None
        try:
            params = inspect.signature(model.forward).parameters
            self.keep = "logits_to_keep" in params
        except (TypeError, ValueError):
            self.keep = False

    def __call__(self, ids, new):
        """``ids``: the whole sequences [batch, len]; ``new``: how many of the last positions are new."""
        kwargs: dict[str, Any] = {"logits_to_keep": 1} if self.keep else {}
        if self.use_cache:
            out = self.model(
                input_ids=ids[:, -new:], past_key_values=self.cache, use_cache=True, **kwargs
            )
            self.cache = out.past_key_values
        else:
            out = self.model(input_ids=ids, use_cache=False, **kwargs)
        return out.logits[:, -1, :].float()

    def reorder(self, beam_idx) -> None:
        if self.cache is not None:
            self.cache.reorder_cache(beam_idx)


def _decode(tok, ids: Sequence[int]) -> str:
    return tok.decode(list(ids), skip_special_tokens=True)


def _piece(tok, token_id: int) -> str:
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


def stream(
    loaded,
    prompt: str,
    config: DecodingConfig,
    chat_template: bool | None = None,
    candidates: int = 0,
    stop_event=None,
    *,
    use_cache: bool = True,
) -> Iterator[StepRecord | GenerationResult]:
    """Generate step by step: yields one :class:`StepRecord` per step, then the
    :class:`GenerationResult`. ``candidates`` K > 0 records the K most likely tokens of each
    step. ``stop_event`` (a ``threading.Event``) is checked between steps. ``use_cache=False``
    recomputes the whole prefix each step (same tokens, slower: for comparison)."""
    if not isinstance(config, DecodingConfig):
        raise UserError("config must be a DecodingConfig")
    candidates = _int("candidates", candidates)
    if candidates < 0:
        raise UserError(f"candidates must be 0 or more, got {candidates}")
    ids = prepare(loaded, prompt, config, chat_template)
    if config.effective_strategy == "beam":
        yield from _beam_stream(loaded, ids, config, candidates, stop_event, use_cache)
    else:
        yield from _single_stream(loaded, ids, config, candidates, stop_event, use_cache)


def _single_stream(
    loaded, prompt: list[int], config: DecodingConfig, k: int, stop_event, use_cache: bool
) -> Iterator[StepRecord | GenerationResult]:
    import torch

    tok = loaded.tokenizer
    device = next(loaded.model.parameters()).device
    sampling = config.samples
    penalties = penalty_processors(config)
    temperature, filters = sampling_filters(config) if sampling else (None, ProcessorList())
    generator = None
    if sampling:
        generator = torch.Generator(device=device)
        if config.seed is None:
            generator.seed()
        else:
            generator.manual_seed(config.seed)
    eos = set(eos_ids(loaded))
    forward = _Forward(loaded.model, use_cache)
    ids = torch.tensor([prompt], dtype=torch.long, device=device)
    new: list[int] = []
    steps: list[StepRecord] = []
    finish = "length"
    start = time.perf_counter()
    n_new = ids.shape[1]
    with torch.inference_mode():
        for index in range(config.max_new_tokens):
            if stop_event is not None and stop_event.is_set():
                finish = "stopped"
                break
            logits = forward(ids, n_new)
            scores = penalties(ids, logits) if penalties else logits
            if sampling:
                warped = temperature(ids, scores) if temperature else scores
                filtered = filters(ids, warped) if filters else warped
                probs = filtered.softmax(dim=-1)
                next_id = int(torch.multinomial(probs, 1, generator=generator)[0, 0])
                prob = float(probs[0, next_id])
                kept_count = int(torch.isfinite(filtered[0]).sum())
            else:
                warped = filtered = scores
                next_id = int(scores[0].argmax())
                prob = float(scores[0].softmax(dim=-1)[next_id])
                kept_count = 1
            cands: tuple[Candidate, ...] = ()
            if k:
                cands = _candidates(
                    tok, scores[0], warped[0], filtered[0], k, picked=None if sampling else next_id
                )
            new.append(next_id)
            ids = torch.cat([ids, ids.new_tensor([[next_id]])], dim=1)
            n_new = 1
            record = StepRecord(
                index=index,
                token_id=next_id,
                token=_piece(tok, next_id),
                prob=prob,
                text=_decode(tok, new),
                candidates=cands,
                kept_count=kept_count,
            )
            steps.append(record)
            yield record
            if next_id in eos:
                finish = "eos"
                break
    elapsed = time.perf_counter() - start
    yield GenerationResult(
        text=_decode(tok, new),
        ids=new,
        new_tokens=len(new),
        time_s=elapsed,
        tokens_per_s=len(new) / elapsed if elapsed > 0 else 0.0,
        steps=steps,
        strategy=config.effective_strategy,
        prompt_tokens=len(prompt),
        stopped=finish == "stopped",
        finish_reason=finish,
    )


def _candidates(
    tok,
    scores,
    warped,
    filtered,
    k: int,
    picked: int | None = None,
    kept_ids: set[int] | None = None,
) -> tuple[Candidate, ...]:
    """The k most likely tokens (after temperature) with their probabilities and fates."""
    import torch

    before = scores.softmax(dim=-1)
    after = warped.softmax(dim=-1) if warped is not scores else before
    top = torch.topk(after, min(k, after.shape[-1]))
    out = []
    for p, i in zip(top.values.tolist(), top.indices.tolist(), strict=True):
        if kept_ids is not None:
            kept = i in kept_ids
        elif picked is not None:
            kept = i == picked
        else:
            kept = bool(torch.isfinite(filtered[i]))
        out.append(
            Candidate(id=i, token=_piece(tok, i), prob_before=float(before[i]), prob=p, kept=kept)
        )
    return tuple(out)


def _beam_stream(
    loaded, prompt: list[int], config: DecodingConfig, k: int, stop_event, use_cache: bool
) -> Iterator[StepRecord | GenerationResult]:
    """Beam search as Hugging Face ``generate`` runs it (early_stopping=False heuristic)."""
    import torch

    tok = loaded.tokenizer
    device = next(loaded.model.parameters()).device
    nb = config.num_beams
    lp = config.length_penalty
    penalties = penalty_processors(config)
    eos = eos_ids(loaded)
    eos_t = torch.tensor(eos, dtype=torch.long, device=device)
    keep = max(2, 1 + len(eos)) * nb
    top_mask = torch.arange(keep, device=device) < nb
    plen = len(prompt)
    max_len = plen + config.max_new_tokens
    forward = _Forward(loaded.model, use_cache)

    running = torch.tensor([prompt] * nb, dtype=torch.long, device=device)  # [nb, cur_len]
    running_scores = torch.zeros(nb, dtype=torch.float32, device=device)
    running_scores[1:] = -1e9
    running_hist: list[tuple[StepRecord, ...]] = [() for _ in range(nb)]
    fin_seqs: list[list[int]] = [[] for _ in range(nb)]
    fin_scores = torch.full((nb,), -1e9, dtype=torch.float32, device=device)
    fin_done = torch.zeros(nb, dtype=torch.bool, device=device)
    fin_hist: list[tuple[StepRecord, ...]] = [() for _ in range(nb)]
    unsatisfied = True
    beam_steps: list[tuple[Beam, ...]] = []
    finish = "length"
    start = time.perf_counter()
    cur_len = plen
    n_new = plen
    index = 0
    with torch.inference_mode():
        while True:
            if stop_event is not None and stop_event.is_set():
                finish = "stopped"
                break
            logits = forward(running, n_new)
            n_new = 1
            log_probs = torch.log_softmax(logits, dim=-1)
            log_probs = penalties(running, log_probs) if penalties else log_probs
            vocab = log_probs.shape[-1]
            acc = (log_probs + running_scores[:, None]).reshape(-1)
            top_lp, top_idx = torch.topk(acc, keep)
            src = top_idx // vocab
            tokens = top_idx % vocab
            hits = (
                torch.isin(tokens, eos_t)
                if len(eos)
                else torch.zeros_like(tokens, dtype=torch.bool)
            )
            if cur_len + 1 >= max_len:
                hits = torch.ones_like(hits)
            # the next running beams: the best continuations that did not finish
            run_lp = top_lp + hits.float() * -1e9
            nxt = torch.topk(run_lp, nb).indices
            # finished hypotheses: those among the top nb continuations that hit eos / max length
            did = hits & top_mask
            fin_lp = top_lp / ((cur_len + 1 - plen) ** lp)
            if not unsatisfied:
                fin_lp = fin_lp + -1e9
            fin_lp = fin_lp + (~did).float() * -1e9
            merged = torch.cat([fin_scores, fin_lp])
            chosen = torch.topk(merged, nb).indices.tolist()

            # step records of every continuation that is kept (running or finished)
            src_l, tok_l = src.tolist(), tokens.tolist()
            used = set(nxt.tolist()) | {c - nb for c in chosen if c >= nb}
            kept_by_row: dict[int, set[int]] = {}
            for j in used:
                kept_by_row.setdefault(src_l[j], set()).add(tok_l[j])
            cand_cache: dict[int, tuple[Candidate, ...]] = {}
            rec_of: dict[int, StepRecord] = {}
            for j in sorted(used):
                row, t = src_l[j], tok_l[j]
                if k and row not in cand_cache:
                    cand_cache[row] = _candidates(
                        tok,
                        log_probs[row],
                        log_probs[row],
                        log_probs[row],
                        k,
                        kept_ids=kept_by_row.get(row, set()),
                    )
                prev = running_hist[row]
                seq_new = [r.token_id for r in prev] + [t]
                rec_of[j] = StepRecord(
                    index=index,
                    token_id=t,
                    token=_piece(tok, t),
                    prob=math.exp(float(log_probs[row, t])),
                    text=_decode(tok, seq_new),
                    candidates=cand_cache.get(row, ()),
                )

            new_fin_seqs, new_fin_hist = [], []
            for c in chosen:
                if c < nb:
                    new_fin_seqs.append(fin_seqs[c])
                    new_fin_hist.append(fin_hist[c])
                else:
                    j = c - nb
                    hist = running_hist[src_l[j]] + (rec_of[j],)
                    new_fin_seqs.append([r.token_id for r in hist])
                    new_fin_hist.append(hist)
            fin_done = torch.cat([fin_done, did])[chosen]
            fin_scores = merged[chosen]
            fin_seqs, fin_hist = new_fin_seqs, new_fin_hist

            nxt_l = nxt.tolist()
            running_hist = [running_hist[src_l[j]] + (rec_of[j],) for j in nxt_l]
            running_scores = run_lp[nxt]
            beam_idx = src[nxt]
            running = torch.cat([running[beam_idx], tokens[nxt].view(-1, 1)], dim=1)
            forward.reorder(beam_idx)
            cur_len += 1

            live = tuple(
                Beam(ids=tuple(r.token_id for r in h), text=h[-1].text, score=float(s))
                for h, s in zip(running_hist, running_scores.tolist(), strict=True)
                if s > -1e8
            )
            done = tuple(
                Beam(
                    ids=tuple(fin_seqs[i]),
                    text=fin_hist[i][-1].text if fin_hist[i] else "",
                    score=float(fin_scores[i]),
                    finished=True,
                )
                for i in range(nb)
                if bool(fin_done[i])
            )
            beam_steps.append(live)
            best = running_hist[0][-1]
            yield replace(best, index=index, beams=live, finished=done)
            index += 1

            # Hugging Face's early-stopping heuristic (early_stopping=False)
            best_possible = float(running_scores[0]) / ((cur_len - plen) ** lp)
            worst = torch.where(fin_done, fin_scores.min(), torch.tensor(-1e9, device=device))
            unsatisfied = unsatisfied and bool((best_possible > worst).any())
            if not unsatisfied or bool(hits.all()):
                break
    elapsed = time.perf_counter() - start
    finals = [
        Beam(
            ids=tuple(fin_seqs[i]),
            text=_decode(tok, fin_seqs[i]),
            score=float(fin_scores[i]),
            finished=True,
        )
        for i in range(nb)
        if bool(fin_done[i])
    ]
    if finals:
        winner_hist = fin_hist[0]
    else:  # stopped before any hypothesis finished: the best live beam
        winner_hist = running_hist[0]
        finals = [
            Beam(
                ids=tuple(r.token_id for r in winner_hist),
                text=_decode(tok, [r.token_id for r in winner_hist]),
                score=float(running_scores[0]),
            )
        ]
    ids = [r.token_id for r in winner_hist]
    if finish != "stopped" and ids and ids[-1] in eos:
        finish = "eos"
    steps = [replace(r, index=i) for i, r in enumerate(winner_hist)]
    yield GenerationResult(
        text=_decode(tok, ids),
        ids=ids,
        new_tokens=len(ids),
        time_s=elapsed,
        tokens_per_s=len(ids) / elapsed if elapsed > 0 else 0.0,
        steps=steps,
        strategy="beam",
        prompt_tokens=plen,
        stopped=finish == "stopped",
        finish_reason=finish,
        beams=finals,
        beam_steps=beam_steps,
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
) -> GenerationResult:
    """Generate with the project's loop; the result holds the new text only."""
    result = None
    for item in stream(
        loaded, prompt, config, chat_template, candidates, stop_event, use_cache=use_cache
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
    for strategy in STRATEGIES:
        if stop_event is not None and stop_event.is_set():
            return
        yield generate(
            loaded,
            prompt,
            replace(base_config, strategy=strategy),
            chat_template,
            stop_event=stop_event,
        )


def compare_strategies(
    loaded,
    prompt: str,
    base_config: DecodingConfig,
    chat_template: bool | None = None,
    stop_event=None,
) -> list[GenerationResult]:
    """One result per strategy (greedy, beam, top-k, top-p) with the user's other settings."""
    return list(iter_strategies(loaded, prompt, base_config, chat_template, stop_event))
