"""The sampler chain: logits processors in the style of Hugging Face's, one per stage.

Every stage is a small class that validates its settings on construction (naming the bad
setting in a :class:`UserError`) and maps ``(input_ids [batch, len], scores [batch, vocab])``
to new scores without changing its inputs. Truncation stages write ``-inf`` over the
tokens they remove; penalties lower scores. Each docstring names the source the stage
follows.

Two kinds of stage:

* **penalties** (repetition, presence, frequency, DRY, no-repeat n-gram; in :mod:`.penalties`)
  look at the tokens so far and always run first, on every strategy;
* **samplers** (:data:`SAMPLER_STAGES`) shape the distribution a token is drawn from, in an
  order the user may change: :data:`TRANSFORMERS_ORDER` (temperature first, as
  ``transformers.generate`` runs them) or :data:`LLAMA_CPP_ORDER` (temperature last, as
  llama.cpp's default chain runs them).

A stage describes itself: its ``name``, a one-line ``summary`` with its source, and its
numbers as :class:`Setting` records (field, flag, label, help, range, the value that
leaves it out). The settings' checks (:class:`~.config.DecodingConfig`), the command
line's flags and the page's widgets are all made from those records, so a new stage is
its class here (listed in :data:`SAMPLER_CLASSES` and the two orders), its settings field
and its tests.

:func:`attribute` runs a chain stage by stage and records, for every token, which stage
removed it (``removed_by``) or lowered it, and the distribution after each stage: the
"why could this token not be picked" of the step view.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from llm_playground.core.errors import UserError

NEG_INF = float("-inf")

# transformers' _get_logits_processor: temperature, then top-k, top-p, min-p, typical,
# epsilon, eta (it has no top-nσ or XTC; they come last here).
TRANSFORMERS_ORDER: tuple[str, ...] = (
    "temperature",
    "top_k",
    "top_p",
    "min_p",
    "typical_p",
    "epsilon",
    "eta",
    "top_n_sigma",
    "xtc",
)
# llama.cpp's default chain: top-nσ, top-k, typical, top-p, min-p, XTC, temperature (it has
# no epsilon or eta; they sit beside min-p here).
LLAMA_CPP_ORDER: tuple[str, ...] = (
    "top_n_sigma",
    "top_k",
    "typical_p",
    "top_p",
    "min_p",
    "epsilon",
    "eta",
    "xtc",
    "temperature",
)
ORDER_PRESETS: dict[str, tuple[str, ...]] = {
    "transformers order": TRANSFORMERS_ORDER,
    "llama.cpp order": LLAMA_CPP_ORDER,
}


# --- validation -------------------------------------------------------------------------


def finite(name: str, value: Any) -> float:
    """``value`` as a finite float, else a :class:`UserError` naming the setting."""
    try:
        number = float(value)
    except (TypeError, ValueError) as exc:
        raise UserError(f"{name} must be a number, got {value!r}") from exc
    if math.isnan(number) or math.isinf(number):
        raise UserError(f"{name} must be a finite number, got {number}")
    return number


def whole(name: str, value: Any) -> int:
    """``value`` as an int (a float with no fraction is accepted), else a :class:`UserError`."""
    if isinstance(value, bool) or not isinstance(value, int):
        if isinstance(value, float) and value.is_integer():
            return int(value)
        raise UserError(f"{name} must be a whole number, got {value!r}")
    return value


def in_range(name: str, value: Any, low: float, high: float, *, open_low: bool = False) -> float:
    """A finite number in [low, high] (or (low, high] with ``open_low``)."""
    number = finite(name, value)
    below = number <= low if open_low else number < low
    if below or number > high:
        bracket = "(" if open_low else "["
        raise UserError(f"{name} must be in {bracket}{low:g}, {high:g}], got {number:g}")
    return number


def parse_order(text: str | Sequence[str]) -> tuple[str, ...]:
    """A sampler order from ``"a,b,c"`` or a sequence of stage names (checked, no repeats).

    Stages left out keep their place in the ``transformers`` order, after the named ones.
    """
    names = [n.strip() for n in (text.split(",") if isinstance(text, str) else text)]
    names = [n for n in names if n]
    for name in names:
        if name not in SAMPLER_STAGES:
            raise UserError(
                f"unknown sampler stage '{name}' in the sampler order: "
                f"use {', '.join(SAMPLER_STAGES)}"
            )
    repeated = sorted({n for n in names if names.count(n) > 1})
    if repeated:
        raise UserError(f"the sampler order names {', '.join(repeated)} more than once")
    return tuple(names) + tuple(n for n in TRANSFORMERS_ORDER if n not in names)


# --- how a stage describes its settings --------------------------------------------------


@dataclass(frozen=True)
class Setting:
    """One number a stage takes, described once. The settings (:class:`DecodingConfig`'s
    field), the command line (``--min-p``) and the page (a slider) are all made from it.

    ``low``/``high`` bound the value (``high`` None: no upper bound; ``open_low``: ``low``
    itself is refused); ``default`` is the value that leaves the stage out when it is the
    stage's first setting. ``page_range``, ``step`` and ``number_box`` shape the widget."""

    field: str  # the settings field, e.g. "min_p"; the flag is --min-p
    name: str  # as messages say it: "min-p"
    label: str  # as the page says it: "Min-p"
    help: str
    low: float
    high: float | None = None
    open_low: bool = False
    whole: bool = False
    default: float = 0.0
    step: float = 0.01
    page_range: tuple[float, float] | None = None  # the widget's range, where it differs
    number_box: bool = False  # a number box (fine steps) instead of a slider

    @property
    def flag(self) -> str:
        return "--" + self.field.replace("_", "-")

    def check(self, value: Any) -> float:
        """``value`` checked against the range, else a :class:`UserError` naming the setting."""
        number = whole(self.name, value) if self.whole else finite(self.name, value)
        if self.high is not None:
            return in_range(self.name, number, self.low, self.high, open_low=self.open_low)
        if number < self.low:
            raise UserError(f"{self.name} must be at least {self.low:g}, got {number:g}")
        return number


# --- the stages -------------------------------------------------------------------------


class Stage:
    """A logits processor with a name. ``__call__(input_ids, scores)`` returns new scores."""

    name = "stage"
    lowers = False  # a penalty: lowers scores rather than removing tokens
    summary = ""  # one line for the page: what it does (and the source it follows)
    settings: tuple[Setting, ...] = ()  # its numbers, described (the chain builds it from them)

    @classmethod
    def is_active(cls, config: Any) -> bool:
        """Whether ``config`` (a DecodingConfig) turns this stage on: its first setting away
        from the default that leaves it out."""
        first = cls.settings[0]
        return getattr(config, first.field) != first.default

    @classmethod
    def from_config(cls, config: Any, generator=None) -> Stage:
        """The stage with ``config``'s values for its settings (``generator``: XTC's coin)."""
        return cls(*(getattr(config, setting.field) for setting in cls.settings))

    def __call__(self, input_ids, scores):  # pragma: no cover - interface
        raise NotImplementedError

    def __repr__(self) -> str:
        settings = ", ".join(f"{k}={v!r}" for k, v in vars(self).items() if not k.startswith("_"))
        return f"{type(self).__name__}({settings})"


def _keep_top(scores, remove, min_tokens_to_keep: int):
    """``remove`` with the ``min_tokens_to_keep`` highest scores of each row always kept."""
    import torch

    k = min(min_tokens_to_keep, scores.size(-1))
    top = torch.topk(scores, k, dim=-1).indices
    return remove.scatter(-1, top, False)


def _keep_ties(scores, remove, min_tokens_to_keep: int):
    """``remove`` except for tokens scoring at least the ``min_tokens_to_keep``-th highest."""
    import torch

    k = min(min_tokens_to_keep, scores.size(-1))
    return remove & (scores < torch.topk(scores, k)[0][..., -1, None])


def _min_keep(value: int) -> int:
    keep = whole("min tokens to keep", value)
    if keep < 1:
        raise UserError(f"min tokens to keep must be at least 1, got {keep}")
    return keep


class Temperature(Stage):
    """Divides the logits by the temperature (> 0): below 1 sharpens, above 1 flattens.
    Source: transformers ``TemperatureLogitsWarper``; Ackley, Hinton & Sejnowski (1985)."""

    name = "temperature"
    summary = "divides the logits (transformers TemperatureLogitsWarper)"

    def __init__(self, temperature: float):
        t = finite("temperature", temperature)
        if t <= 0:
            raise UserError(
                f"the temperature of a sampling step must be above 0, got {t:g}"
                " (temperature 0 means greedy)"
            )
        self.temperature = t

    def __call__(self, input_ids, scores):
        # softmax(z / t): t < 1 widens the gaps between logits, t > 1 narrows them
        return scores / self.temperature  # (batch, vocab), same shape


class TopK(Stage):
    """Keeps the k highest scores (ties with the k-th included), removes the rest.
    Source: transformers ``TopKLogitsWarper``; Fan, Lewis & Dauphin (2018), arXiv 1805.04833."""

    name = "top_k"
    summary = "keeps the k most likely (Fan et al. 2018)"

    def __init__(self, top_k: int, min_tokens_to_keep: int = 1):
        k = whole("top-k", top_k)
        if k < 1:
            raise UserError(f"top-k must be at least 1, got {k}")
        self.top_k = max(k, _min_keep(min_tokens_to_keep))

    def __call__(self, input_ids, scores):
        import torch

        k = min(self.top_k, scores.size(-1))
        # the k-th highest score of each row: (batch, vocab) -> (batch, k) -> (batch, 1)
        threshold = torch.topk(scores, k)[0][..., -1, None]
        # -inf, not 0: softmax turns -inf into probability exactly 0
        return scores.masked_fill(scores < threshold, NEG_INF)


class TopP(Stage):
    """Nucleus: keeps the smallest head of likely tokens whose mass reaches p (the crossing
    token included). Source: transformers ``TopPLogitsWarper``; Holtzman et al. (2019),
    arXiv 1904.09751."""

    name = "top_p"
    summary = "keeps the smallest head of mass p (Holtzman et al. 2019)"

    def __init__(self, top_p: float, min_tokens_to_keep: int = 1):
        self.top_p = in_range("top-p", top_p, 0, 1, open_low=True)
        self.min_tokens_to_keep = _min_keep(min_tokens_to_keep)

    def __call__(self, input_ids, scores):
        # ascending, so the running sum starts in the unlikely tail: (batch, vocab) each
        sorted_scores, sorted_index = scores.sort(dim=-1, descending=False)
        cumulative = sorted_scores.softmax(dim=-1).cumsum(dim=-1)
        remove_sorted = cumulative <= (1 - self.top_p)  # the unlikely tail of mass <= 1 - p
        remove_sorted[..., -self.min_tokens_to_keep :] = False
        # back from sorted order to vocabulary order: (batch, vocab)
        remove = remove_sorted.scatter(-1, sorted_index, remove_sorted)
        return scores.masked_fill(remove, NEG_INF)


class MinP(Stage):
    """Removes tokens less likely than ``min_p`` times the most likely one (equality kept).
    Source: Nguyen et al. (2024), arXiv 2407.01082; transformers ``MinPLogitsWarper``."""

    name = "min_p"
    summary = "cuts p < min-p·p_max (Nguyen et al. 2024, arXiv 2407.01082)"
    settings = (Setting("min_p", "min-p", "Min-p", summary, low=0, high=1),)

    def __init__(self, min_p: float, min_tokens_to_keep: int = 1):
        self.min_p = in_range("min-p", min_p, 0, 1)
        self.min_tokens_to_keep = _min_keep(min_tokens_to_keep)

    def __call__(self, input_ids, scores):
        probs = scores.softmax(dim=-1)  # (batch, vocab)
        # the cut scales with the top token's probability: strict when the model is sure,
        # loose when it is not. (batch, 1) broadcast over the vocabulary
        remove = probs < self.min_p * probs.amax(dim=-1, keepdim=True)
        return scores.masked_fill(_keep_top(probs, remove, self.min_tokens_to_keep), NEG_INF)


class TypicalP(Stage):
    """Locally typical sampling: ranks tokens by how far their surprisal -log p is from the
    entropy H and keeps the closest ones until their mass reaches ``mass``.
    Source: Meister et al. (2022), arXiv 2202.00666; transformers ``TypicalLogitsWarper``."""

    name = "typical_p"
    summary = "keeps tokens of typical surprisal (Meister et al. 2022, arXiv 2202.00666)"
    settings = (
        Setting(
            "typical_p",
            "typical-p",
            "Typical-p",
            summary,
            low=0,
            high=1,
            open_low=True,
            default=1.0,
            page_range=(0.01, 1.0),
        ),
    )

    def __init__(self, mass: float, min_tokens_to_keep: int = 1):
        self.mass = in_range("typical-p", mass, 0, 1, open_low=True)
        self.min_tokens_to_keep = _min_keep(min_tokens_to_keep)

    def __call__(self, input_ids, scores):
        import torch

        log_probs = torch.log_softmax(scores, dim=-1)  # (batch, vocab)
        # the expected surprisal, H: (batch, vocab) -> (batch, 1)
        entropy = -(log_probs * log_probs.exp()).nansum(-1, keepdim=True)
        distance = (-log_probs - entropy).abs()  # how atypical each token is
        # the most typical first, then their mass adds up until it reaches the target
        sorted_distance, sorted_index = torch.sort(distance, descending=False)
        cumulative = scores.gather(-1, sorted_index).softmax(dim=-1).cumsum(dim=-1)
        # the last kept position of each row: (batch,)
        last = (cumulative < self.mass).sum(dim=1).clamp_(max=sorted_distance.shape[-1] - 1)
        remove_sorted = sorted_distance > sorted_distance.gather(1, last.view(-1, 1))
        remove_sorted[..., : self.min_tokens_to_keep] = False
        remove = remove_sorted.scatter(1, sorted_index, remove_sorted)
        return scores.masked_fill(remove, NEG_INF)


class Epsilon(Stage):
    """Removes every token whose probability is below ε.
    Source: Hewitt, Manning & Liang (2022), arXiv 2210.15191; transformers
    ``EpsilonLogitsWarper``."""

    name = "epsilon"
    summary = "cuts p < ε (Hewitt et al. 2022, arXiv 2210.15191)"
    settings = (
        Setting(
            "epsilon",
            "epsilon",
            "Epsilon",
            summary,
            low=0,
            high=1,
            step=0.0001,
            page_range=(0.0, 0.99),
            number_box=True,
        ),
    )

    def __init__(self, epsilon: float, min_tokens_to_keep: int = 1):
        self.epsilon = in_range("epsilon", epsilon, 0, 1, open_low=True)
        self.min_tokens_to_keep = _min_keep(min_tokens_to_keep)

    def __call__(self, input_ids, scores):
        remove = scores.softmax(dim=-1) < self.epsilon
        return scores.masked_fill(_keep_ties(scores, remove, self.min_tokens_to_keep), NEG_INF)


class Eta(Stage):
    """Removes tokens below η = min(ε, √ε·exp(−H)), a cut that loosens when the entropy H
    is high. Source: Hewitt, Manning & Liang (2022), arXiv 2210.15191; transformers
    ``EtaLogitsWarper``."""

    name = "eta"
    summary = "cuts p < min(ε, √ε·e^−H) (Hewitt et al. 2022)"
    settings = (
        Setting(
            "eta",
            "eta",
            "Eta",
            summary,
            low=0,
            high=1,
            step=0.0001,
            page_range=(0.0, 0.99),
            number_box=True,
        ),
    )

    def __init__(self, epsilon: float, min_tokens_to_keep: int = 1):
        self.epsilon = in_range("eta", epsilon, 0, 1, open_low=True)
        self.min_tokens_to_keep = _min_keep(min_tokens_to_keep)

    def __call__(self, input_ids, scores):
        import torch

        probs = scores.softmax(dim=-1)  # (batch, vocab)
        entropy = torch.distributions.Categorical(logits=scores).entropy()  # (batch,)
        epsilon = torch.tensor(self.epsilon)
        # a flat distribution (high entropy) gets a lower cut, so its many fair choices stay
        eta = torch.min(epsilon, torch.sqrt(epsilon) * torch.exp(-entropy))[..., None]  # (batch, 1)
        remove = probs < eta
        return scores.masked_fill(_keep_ties(scores, remove, self.min_tokens_to_keep), NEG_INF)


class TopNSigma(Stage):
    """Keeps the logits within n standard deviations of the largest: over the finite logits,
    max M and population σ; logits below M − n·σ are removed (n 0 keeps every token).
    Source: Tang et al. (2024), arXiv 2411.07641; llama.cpp ``llama_sampler_top_n_sigma``."""

    name = "top_n_sigma"
    summary = "cuts logits below max − n·σ (Tang et al. 2024, arXiv 2411.07641)"
    settings = (
        Setting(
            "top_n_sigma", "top-n-sigma", "Top-nσ", summary, low=0, step=0.1, page_range=(0, 5)
        ),
    )

    def __init__(self, n: float):
        self.n = finite("top-n-sigma", n)
        if self.n < 0:
            raise UserError(f"top-n-sigma must be 0 (off) or more, got {self.n:g}")

    def __call__(self, input_ids, scores):
        import torch

        if self.n == 0:
            return scores
        # statistics over the logits earlier stages left (-inf ones are already gone)
        finite_mask = torch.isfinite(scores)  # (batch, vocab)
        count = finite_mask.sum(dim=-1, keepdim=True).clamp(min=1)  # (batch, 1)
        values = torch.where(finite_mask, scores, torch.zeros_like(scores))
        top = torch.where(finite_mask, scores, torch.full_like(scores, NEG_INF)).amax(
            dim=-1, keepdim=True
        )
        mean = values.sum(dim=-1, keepdim=True) / count
        squared = torch.where(finite_mask, (scores - mean) ** 2, torch.zeros_like(scores))
        sigma = (squared.sum(dim=-1, keepdim=True) / count).sqrt()  # (batch, 1)
        # logits, not probabilities: the cut does not move with the temperature
        return scores.masked_fill(scores < top - self.n * sigma, NEG_INF)


class XTC(Stage):
    """Exclude Top Choices: with probability ``probability``, among the tokens whose
    probability is at least ``threshold``, removes all but the least likely of them (only
    when two or more reach it), pushing the text off its most predictable path.
    Source: text-generation-webui PR 6335; llama.cpp ``llama_sampler_xtc`` (PR 9742).

    The coin is drawn from ``generator`` (a ``torch.Generator``), so a seed reproduces it;
    probability 1 makes the stage deterministic.
    """

    name = "xtc"
    summary = "removes the top choices but the least likely (text-generation-webui PR 6335)"
    settings = (
        Setting("xtc_probability", "XTC probability", "XTC probability", summary, 0, 1, step=0.05),
        Setting(
            "xtc_threshold",
            "XTC threshold",
            "XTC threshold",
            "The tokens at least this likely are the top choices XTC may remove.",
            low=0,
            high=1,
            default=0.1,
        ),
    )

    @classmethod
    def from_config(cls, config: Any, generator=None) -> Stage:
        return cls(config.xtc_probability, config.xtc_threshold, generator)

    def __init__(self, probability: float, threshold: float, generator=None):
        self.probability = in_range("XTC probability", probability, 0, 1)
        self.threshold = in_range("XTC threshold", threshold, 0, 1)
        self._generator = generator

    def __call__(self, input_ids, scores):
        import torch

        if self.probability == 0 or self.threshold > 0.5:
            return scores  # no two tokens can both reach a threshold above 0.5
        if self.probability < 1:
            coin = float(torch.rand((), generator=self._generator))
            if coin >= self.probability:
                return scores
        probs = scores.softmax(dim=-1)
        above = probs >= self.threshold  # (batch, vocab): the "top choices"
        out = scores.clone()
        for row in range(scores.shape[0]):
            chosen = above[row].nonzero().flatten()
            if chosen.numel() < 2:
                continue
            # keep the least likely of the top choices, remove the others
            least = chosen[probs[row, chosen].argmin()]
            out[row, chosen[chosen != least]] = NEG_INF
        return out


class ProcessorList(list):
    """Stages applied one after the other."""

    def __call__(self, input_ids, scores):
        for stage in self:
            scores = stage(input_ids, scores)
        return scores


# --- the stages, listed -----------------------------------------------------------------

# The sampler stages; those with settings of their own (the chain beyond temperature, top-k
# and top-p, which the strategy sets) give the settings fields, flags and widgets.
SAMPLER_CLASSES: tuple[type[Stage], ...] = (
    TopK,
    TopP,
    MinP,
    TypicalP,
    Epsilon,
    Eta,
    TopNSigma,
    XTC,
    Temperature,
)
CHAIN_SETTINGS: tuple[Setting, ...] = tuple(s for cls in SAMPLER_CLASSES for s in cls.settings)
# Stage names, as the settings, the command line and the JSON output spell them.
SAMPLER_STAGES: tuple[str, ...] = tuple(cls.name for cls in SAMPLER_CLASSES)
# The penalties that describe their settings the same way (repetition and no-repeat n-gram


# --- attribution ------------------------------------------------------------------------


@dataclass(frozen=True)
class Attribution:
    """One step's chain, stage by stage, for one row of scores.

    ``stages`` are the stage names in the order they ran; ``probs[i]`` is the distribution
    (a [vocab] tensor) after stage i; ``removed_by[token]`` names the stage that removed it
    (absent: it survived); ``lowered_by[token]`` the penalties that lowered it.
    """

    stages: tuple[str, ...]
    probs: tuple[Any, ...]
    kept: tuple[int, ...]  # how many tokens remained after each stage
    removed_by: dict[int, str]
    lowered_by: dict[int, tuple[str, ...]]
    scores: Any  # the final scores [batch, vocab]


def attribute(chain: Sequence[Stage], input_ids, scores, tokens_of_interest=None) -> Attribution:
    """Run ``chain`` on ``scores`` stage by stage and say what each stage did.

    ``tokens_of_interest`` (ids) limits ``removed_by`` / ``lowered_by`` to those tokens
    (the candidates a view shows); None reports every token.
    """
    import torch

    names, probs, kept = [], [], []
    removed_by: dict[int, str] = {}
    lowered_by: dict[int, list[str]] = {}
    watch = None if tokens_of_interest is None else torch.tensor(list(tokens_of_interest))
    for stage in chain:
        before = scores
        scores = stage(input_ids, scores)
        row_before, row_after = before[0], scores[0]
        if watch is not None and watch.numel():
            row_before, row_after = row_before[watch], row_after[watch]
            ids = watch
        else:
            ids = torch.arange(row_after.shape[-1])
        # tokens that were alive before this stage and are -inf after it
        removed = torch.isfinite(row_before) & ~torch.isfinite(row_after)
        for token in ids[removed].tolist():
            removed_by.setdefault(token, stage.name)
        if stage.lowers:
            lowered = torch.isfinite(row_after) & (row_after < row_before)
            for token in ids[lowered].tolist():
                lowered_by.setdefault(token, []).append(stage.name)
        names.append(stage.name)
        probs.append(scores[0].softmax(dim=-1))
        kept.append(int(torch.isfinite(scores[0]).sum()))
    return Attribution(
        stages=tuple(names),
        probs=tuple(probs),
        kept=tuple(kept),
        removed_by=removed_by,
        lowered_by={t: tuple(v) for t, v in lowered_by.items()},
        scores=scores,
    )
