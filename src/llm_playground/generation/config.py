"""The settings of one generation (:class:`DecodingConfig`) and the sampler chain they build."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

from llm_playground.core.errors import UserError
from llm_playground.generation.penalties import (
    DRY,
    PENALTY_SETTINGS,
    NoRepeatNGram,
    PresenceFrequencyPenalty,
    RepetitionPenalty,
)
from llm_playground.generation.samplers import (
    CHAIN_SETTINGS,
    SAMPLER_CLASSES,
    TRANSFORMERS_ORDER,
    ProcessorList,
    Temperature,
    TopK,
    TopP,
    finite,
    in_range,
    parse_order,
    whole,
)

Strategy = Literal["greedy", "beam", "top-k", "top-p", "sample"]
STRATEGIES: tuple[str, ...] = ("greedy", "beam", "top-k", "top-p", "sample")
# The strategies a side-by-side comparison runs (the classic four).
COMPARED_STRATEGIES: tuple[str, ...] = ("greedy", "beam", "top-k", "top-p")
SPECULATIVE: tuple[str, ...] = ("prompt-lookup", "draft")
MAX_NEW_TOKENS = 4096
MAX_PROMPT_CHARS = 50_000
MAX_DRAFT_TOKENS = 64
DRY_BREAKERS = ("\n", ":", '"', "*")


@dataclass(frozen=True)
class DecodingConfig:
    """How to pick each next token. Invalid settings raise :class:`UserError` on construction.

    ``temperature`` 0 means greedy. The "top-k" strategy samples with ``top_k``, "top-p"
    with ``top_p``; "sample" runs whichever stages are set (``top_k``/``top_p`` None or
    ``top_p`` 1 leave them out), in ``sampler_order``. ``num_beams`` and ``length_penalty``
    belong to "beam". Penalties (repetition, presence, frequency, DRY, no-repeat n-gram)
    act on every strategy, before the samplers. ``speculative`` "prompt-lookup" or "draft"
    (with ``draft_model``) drafts up to ``draft_tokens`` tokens that the model checks in one
    forward pass. ``seed`` None draws a fresh seed.
    """

    strategy: Strategy = "greedy"
    temperature: float = 1.0
    top_k: int | None = 50
    top_p: float | None = 0.9
    min_p: float = 0.0
    typical_p: float = 1.0
    epsilon: float = 0.0
    eta: float = 0.0
    top_n_sigma: float = 0.0
    xtc_probability: float = 0.0
    xtc_threshold: float = 0.1
    sampler_order: tuple[str, ...] = TRANSFORMERS_ORDER
    num_beams: int = 4
    length_penalty: float = 1.0
    no_repeat_ngram_size: int = 0
    repetition_penalty: float = 1.0
    presence_penalty: float = 0.0
    frequency_penalty: float = 0.0
    dry_multiplier: float = 0.0
    dry_base: float = 1.75
    dry_allowed_length: int = 2
    max_new_tokens: int = 64
    seed: int | None = 0
    speculative: str | None = None
    draft_tokens: int = 10
    draft_model: str | None = None

    def __post_init__(self) -> None:
        if self.strategy not in STRATEGIES:
            raise UserError(
                f"unknown strategy '{self.strategy}': pick one of {', '.join(STRATEGIES)}"
            )
        checked = {**self._sampler_settings(), **self._penalty_settings(), **self._run_settings()}
        for name, value in checked.items():
            object.__setattr__(self, name, value)

    def _sampler_settings(self) -> dict[str, Any]:
        """Temperature and the sampler stages, checked (each raises UserError when out of range)."""
        checked: dict[str, Any] = {}
        temperature = finite("temperature", self.temperature)
        if temperature < 0:
            raise UserError(f"temperature must be 0 or more (0 means greedy), got {temperature:g}")
        checked["temperature"] = temperature
        if self.top_k is not None:
            checked["top_k"] = whole("top-k", self.top_k)
            if checked["top_k"] < 1:
                raise UserError(f"top-k must be at least 1, got {checked['top_k']}")
        elif self.strategy == "top-k":
            raise UserError("top-k sampling needs a top-k setting")
        if self.top_p is not None:
            checked["top_p"] = in_range("top-p", self.top_p, 0, 1, open_low=True)
        elif self.strategy == "top-p":
            raise UserError("top-p sampling needs a top-p setting")
        # the further stages check their own settings, as each describes them
        for setting in CHAIN_SETTINGS:
            checked[setting.field] = setting.check(getattr(self, setting.field))
        checked["sampler_order"] = parse_order(self.sampler_order)
        return checked

    def _penalty_settings(self) -> dict[str, Any]:
        """The penalties that act before the samplers, checked."""
        checked: dict[str, Any] = {}
        ngram = whole("no-repeat n-gram size", self.no_repeat_ngram_size)
        if ngram < 0:
            raise UserError(f"the no-repeat n-gram size must be 0 (off) or more, got {ngram}")
        checked["no_repeat_ngram_size"] = ngram
        repetition = finite("repetition penalty", self.repetition_penalty)
        if repetition <= 0:
            raise UserError(f"the repetition penalty must be above 0 (1 = off), got {repetition:g}")
        checked["repetition_penalty"] = repetition
        for setting in PENALTY_SETTINGS:
            checked[setting.field] = setting.check(getattr(self, setting.field))
        return checked

    def _run_settings(self) -> dict[str, Any]:
        """Beams, lengths, the seed and speculative decoding, checked."""
        checked: dict[str, Any] = {}
        checked["num_beams"] = whole("number of beams", self.num_beams)
        if checked["num_beams"] < 1:
            raise UserError(f"the number of beams must be at least 1, got {self.num_beams}")
        checked["length_penalty"] = finite("length penalty", self.length_penalty)
        max_new = whole("max new tokens", self.max_new_tokens)
        if max_new < 1:
            raise UserError(f"max new tokens must be at least 1, got {max_new}")
        if max_new > MAX_NEW_TOKENS:
            raise UserError(
                f"max new tokens must be at most {MAX_NEW_TOKENS:,} (and the prompt plus the "
                f"new tokens must fit the model's context), got {max_new:,}"
            )
        checked["max_new_tokens"] = max_new
        if self.seed is not None:
            checked["seed"] = whole("seed", self.seed)
            if checked["seed"] < 0:
                raise UserError(f"the seed must be 0 or more, got {checked['seed']}")
        if self.speculative is not None and self.speculative not in SPECULATIVE:
            raise UserError(
                f"unknown speculative method '{self.speculative}': "
                f"pick one of {', '.join(SPECULATIVE)}"
            )
        draft_tokens = whole("draft tokens", self.draft_tokens)
        if not 1 <= draft_tokens <= MAX_DRAFT_TOKENS:
            raise UserError(
                f"draft tokens must be between 1 and {MAX_DRAFT_TOKENS}, got {draft_tokens}"
            )
        checked["draft_tokens"] = draft_tokens
        if self.speculative == "draft" and not (self.draft_model or "").strip():
            raise UserError("speculative decoding with a draft model needs the draft model's name")
        if self.speculative and self.strategy == "beam" and self.num_beams > 1:
            raise UserError("speculative decoding works with greedy or sampling, not beam search")
        return checked

    @property
    def samples(self) -> bool:
        """Whether this configuration draws tokens at random (temperature 0 means greedy)."""
        return self.strategy in ("top-k", "top-p", "sample") and self.temperature > 0

    @property
    def effective_strategy(self) -> str:
        """The strategy that actually runs: sampling at temperature 0 is greedy, and so is
        beam search with one beam."""
        if self.strategy in ("top-k", "top-p", "sample") and self.temperature == 0:
            return "greedy"
        if self.strategy == "beam" and self.num_beams == 1:
            return "greedy"
        return self.strategy

    def active_samplers(self) -> tuple[str, ...]:
        """The sampler stages this configuration runs, in its order (empty unless sampling)."""
        if not self.samples:
            return ()
        # temperature, top-k and top-p follow the strategy; every other stage is on when its
        # first setting leaves the value that turns it off
        active = {cls.name: cls.is_active(self) for cls in SAMPLER_CLASSES if cls.settings}
        active["temperature"] = self.temperature != 1.0
        active["top_k"] = self.strategy == "top-k" or (
            self.strategy == "sample" and self.top_k is not None
        )
        active["top_p"] = (
            self.strategy in ("top-p", "sample") and self.top_p is not None and self.top_p < 1.0
        )
        return tuple(name for name in self.sampler_order if active[name])

    def describe(self) -> str:
        s = self.strategy
        if s == "beam":
            return f"beam search ({self.num_beams} beams, length penalty {self.length_penalty:g})"
        if s == "top-k":
            text = f"top-k sampling (k={self.top_k}, temperature {self.temperature:g})"
        elif s == "top-p":
            text = f"nucleus sampling (p={self.top_p:g}, temperature {self.temperature:g})"
        elif s == "sample":
            chain = " → ".join(self.active_samplers()) or "the full distribution"
            text = f"sampling through {chain}"
        else:
            text = "greedy"
        if self.speculative == "prompt-lookup":
            text += f", with prompt-lookup drafts of up to {self.draft_tokens} tokens"
        elif self.speculative == "draft":
            text += f", with drafts of up to {self.draft_tokens} tokens from {self.draft_model}"
        return text


def penalty_processors(config: DecodingConfig, breakers: tuple[int, ...] = ()) -> ProcessorList:
    """The stages that act on every strategy, before any sampler: repetition penalty,
    presence/frequency penalties, DRY, no-repeat n-gram (``breakers``: DRY's token ids)."""
    stages = ProcessorList()
    if config.repetition_penalty != 1.0:
        stages.append(RepetitionPenalty(config.repetition_penalty))
    if config.presence_penalty or config.frequency_penalty:
        stages.append(PresenceFrequencyPenalty(config.presence_penalty, config.frequency_penalty))
    if config.dry_multiplier > 0:
        stages.append(
            DRY(config.dry_multiplier, config.dry_base, config.dry_allowed_length, breakers)
        )
    if config.no_repeat_ngram_size > 0:
        stages.append(NoRepeatNGram(config.no_repeat_ngram_size))
    return stages


def sampler_stages(config: DecodingConfig, generator=None) -> ProcessorList:
    """The sampler stages of a sampling configuration, in its order (``generator`` draws
    XTC's coin)."""
    by_name = {cls.name: cls for cls in SAMPLER_CLASSES}
    # temperature, top-k and top-p take the strategy's settings; the others build themselves
    strategy_stages = {
        "temperature": lambda: Temperature(config.temperature),
        "top_k": lambda: TopK(config.top_k),
        "top_p": lambda: TopP(config.top_p),
    }
    stages = ProcessorList()
    for name in config.active_samplers():
        build = strategy_stages.get(name)
        stages.append(build() if build else by_name[name].from_config(config, generator))
    return stages


def dry_breakers(tokenizer) -> tuple[int, ...]:
    """Token ids whose text holds a DRY sequence breaker (newline, colon, quote, asterisk)."""
    cached = getattr(tokenizer, "_playground_dry_breakers", None)
    if cached is not None:
        return cached
    pieces = tokenizer.convert_ids_to_tokens(list(range(len(tokenizer))))
    found = []
    for token_id, piece in enumerate(pieces):
        text = tokenizer.convert_tokens_to_string([piece]) if piece else ""
        if any(b in text for b in DRY_BREAKERS):
            found.append(token_id)
    result = tuple(found)
    try:
        tokenizer._playground_dry_breakers = result
    except AttributeError:
        pass
    return result
