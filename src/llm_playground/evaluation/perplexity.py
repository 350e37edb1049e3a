"""Perplexity of a text under a model: one definition, shared with lm-evaluation-harness.

The text is tokenized without special tokens and a *prefix token* is put in front of it
(beginning-of-text, else end-of-text: the harness's choice), so the first real token is
scored too. A causal model sees at most ``max_length`` tokens at once, so the text is
scored window by window:

* ``stride >= max_length``: the harness's rolling windows (``loglikelihood_rolling``):
  each window feeds ``max_length`` tokens and scores every one of the next ``max_length``;
  the last window reaches back for a full context;
* ``stride < max_length``: the transformers perplexity guide's sliding windows: a window
  starts every ``stride`` tokens and scores only the tokens the previous one did not,
  with up to ``max_length - stride`` tokens of context before them.

Every token is scored exactly once. From the sum of negative log-likelihoods (natural
log) come three numbers, the last two with the harness's own definitions:

* token perplexity ``exp(nll_sum / n_tokens)``: depends on the tokenizer;
* word perplexity ``exp(nll_sum / n_words)``, ``n_words = len(re.split(r"\\s+", text))``;
* bits per byte ``nll_sum / ln 2 / n_bytes`` over the UTF-8 bytes of the text.

(When only the start of a text is scored, words and bytes are counted over that start.)

Two ways to run it:

* ``mode="windows"`` (default): the windows above, exactly; windows of one shape run as
  one batch, only the scored positions go through the output layer.
* ``mode="cached"``: a different, clearly labelled measurement. The text is read
  ``stride`` tokens at a time and each chunk attends to the cached keys and values of
  the ``max_length - stride`` tokens before it (the first four tokens of the text among
  them: models rest attention on them), which were themselves computed with their own
  context: information from the whole text before flows in, as in the stride-1
  answer (on a text shorter than ``max_length`` it *is* the stride-1 answer), at about
  the cost of reading the text once. Cached keys and values were computed once, with the
  context their tokens had then, and are not recomputed as a window would: the number
  is close to the windows' but not the same (SmolLM2 on 3,072 tokens of WikiText-2,
  stride 512: 17.32 against 16.97), so it is recorded under its own name.

Precision: ``dtype="auto"`` times this model's forward pass over one window of the text
(its first :data:`PRECISION_WINDOW` tokens, half of them scored) in float32 and in bf16
autocast and scores in the faster (:func:`llm_playground.core.hardware.decide_precision`:
bf16 only from 1.1x, one measurement per model and window per process and machine).
"""

from __future__ import annotations

import math
import re
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from llm_playground.core.errors import UserError
from llm_playground.core.events import Done, Progress, Started
from llm_playground.core.paths import package_data
from llm_playground.core.textfiles import read_text_file
from llm_playground.evaluation.scoring import Scorer, scorer_for

LN2 = math.log(2.0)
#: Tokens of the window timed in each precision when ``dtype="auto"``.
PRECISION_WINDOW = 256
DTYPES = ("auto", "float32", "bfloat16")
DEFAULT_STRIDE = 512
DEFAULT_MAX_LENGTH = 1024
MODES = ("windows", "cached")
#: The most tokens one perplexity run scores (about a WikiText-103 test split; a few minutes).
MAX_PERPLEXITY_TOKENS = 2_000_000
#: The most characters of text one run reads (files, uploads, pasted text).
MAX_TEXT_CHARS = 20_000_000
# Logit elements kept in memory at once (batch x positions x vocabulary), about 256 MB in fp32.
LOGIT_BUDGET = 64 * 1024 * 1024
# Positions the cached mode lets grow before it re-reads its context from position 0.
_CACHED_REBASE = 8192
# Tokens at the start of the text the cached mode never drops: models lean their attention
# on the first tokens ("attention sinks", Xiao et al. 2023), and lose their footing without.
_SINK_TOKENS = 4

# --- evaluation texts ---------------------------------------------------------------------

DATASETS: dict[str, str] = {
    "wikitext-2": "WikiText-2 test split (the shipped copy of the tokenized variant, with <unk> "
    "and @-@; Merity et al. 2016, CC BY-SA 3.0)",
    "wikitext-2-raw": "WikiText-2 raw test split from the Hugging Face hub (datasets' "
    "wikitext-2-raw-v1; needs a network), rows joined by blank lines as in the "
    "transformers perplexity guide",
    "tinyshakespeare-val": "TinyShakespeare validation split: the last 10 % of the characters "
    "(the split Lab 2 trains against)",
}


@dataclass(frozen=True)
class EvalText:
    """A text to score, with the name it is recorded under."""

    name: str
    text: str
    description: str = ""


def decide_precision(scorer: Scorer, seq: list[int], requested: str):
    """float32 or bfloat16 for scoring with ``scorer``: as asked, or for ``auto`` timed on a
    window of ``seq`` (see the module doc); a ``core.hardware.PrecisionChoice``."""
    import torch

    from llm_playground.core import hardware

    if requested != "auto":
        return hardware.asked_precision(requested)
    length = max(1, min(PRECISION_WINDOW, len(seq) - 1))
    window = torch.tensor([seq[:length]], device=scorer.device)
    device_type = scorer.device.type

    def run_step(dtype: str) -> None:
        bf16 = dtype == "bfloat16"
        with torch.inference_mode(), torch.autocast(device_type, torch.bfloat16, enabled=bf16):
            scorer.logits(window, max(1, length // 2))

    work = hardware.WorkKey.of(
        "perplexity", device=str(scorer.device), model=scorer.name, window=length
    )
    return hardware.decide_precision(
        work, run_step, rounds=2, cache_file=hardware.precision_cache_file()
    )


def check_text_size(text: str, what: str = "the text") -> str:
    if len(text) > MAX_TEXT_CHARS:
        raise UserError(
            f"{what} has {len(text):,} characters; the limit is {MAX_TEXT_CHARS:,} "
            "(score a part of it)"
        )
    return text


def load_eval_text(data: str) -> EvalText:
    """``wikitext-2``, ``wikitext-2-raw``, ``tinyshakespeare-val`` or a path to a UTF-8 file."""
    from llm_playground.training.corpus import tinyshakespeare_validation

    if not data or not data.strip():
        raise UserError("no data set given: use wikitext-2, tinyshakespeare-val or a text file")
    if data == "wikitext-2":
        text = package_data("wikitext-2", "test.txt").read_text(encoding="utf-8")
        return EvalText(data, text, DATASETS[data])
    if data == "wikitext-2-raw":
        return EvalText(data, _wikitext_raw_from_hub(), DATASETS[data])
    if data == "tinyshakespeare-val":
        return EvalText(data, tinyshakespeare_validation(), DATASETS[data])
    path = Path(data).expanduser()
    if not path.exists():
        raise UserError(
            f"unknown data set '{data}': use wikitext-2, tinyshakespeare-val or a path "
            "to a text file"
        )
    if path.is_file() and path.stat().st_size > MAX_TEXT_CHARS * 4:
        raise UserError(f"{path} is larger than {MAX_TEXT_CHARS * 4:,} bytes: score a part of it")
    text = check_text_size(read_text_file(path), f"the file {path.name}")
    return EvalText(f"file:{path.name}", text, f"the file {path}")


def pasted_text(text: str, name: str = "pasted text") -> EvalText:
    if not text or not text.strip():
        raise UserError(f"the {name} is empty")
    check_text_size(text, f"the {name}")
    return EvalText(name, text, f"{name} ({len(text):,} characters)")


def uploaded_text(data: bytes, filename: str) -> EvalText:
    """A text file sent from the browser (already size-capped by the upload widget)."""
    if len(data) > MAX_TEXT_CHARS * 4:
        raise UserError(f"the upload is larger than {MAX_TEXT_CHARS * 4:,} bytes")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        raise UserError(f"{filename} is not UTF-8 text") from None
    safe = Path(filename).name or "upload"
    return pasted_text(text, f"upload:{safe}")


def _wikitext_raw_from_hub() -> str:
    try:
        from datasets import load_dataset

        rows = load_dataset("wikitext", "wikitext-2-raw-v1", split="test")
    except Exception as exc:  # no network, hub refused, offline mode
        raise UserError(
            "wikitext-2-raw needs the Hugging Face hub, which is not reachable here: "
            "use wikitext-2 (the shipped copy)"
        ) from exc
    return "\n\n".join(rows["text"])


# --- the harness's counts -----------------------------------------------------------------


def count_words(text: str) -> int:
    """Words as lm-evaluation-harness counts them: ``len(re.split(r"\\s+", text))``."""
    return len(re.split(r"\s+", text))


def count_bytes(text: str) -> int:
    return len(text.encode("utf-8"))


# --- windows ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Window:
    """One model call: the model reads ``ids[begin:end - 1]`` and scores ``ids[end - n_targets:end]``."""

    begin: int
    end: int
    n_targets: int

    @property
    def length(self) -> int:
        """Tokens fed to the model."""
        return self.end - 1 - self.begin


def sliding_windows(
    n_ids: int, max_length: int, stride: int, first_scored: int = 1
) -> list[Window]:
    """The transformers guide's windows over ``n_ids`` tokens (window ``k`` starts at ``k * stride``).

    Each window covers at most ``max_length`` tokens and scores the tokens after the
    previous window's end; tokens before ``first_scored`` are context only.
    """
    check_window(max_length, stride)
    windows = []
    prev_end = 0
    for begin in range(0, n_ids, stride):
        end = min(begin + max_length, n_ids)
        # A window's first token has no context inside the window: it is never a target.
        first = max(prev_end, first_scored, begin + 1)
        if end > first:
            windows.append(Window(begin, end, end - first))
        prev_end = end
        if end == n_ids:
            break
    return windows


def rolling_windows(n_ids: int, max_length: int) -> list[Window]:
    """lm-evaluation-harness's rolling windows over ``n_ids`` tokens whose first is the prefix.

    Each window feeds up to ``max_length`` tokens and scores the next ``max_length``; the
    last one reaches back so that it too feeds a full ``max_length`` (as the harness's
    ``get_rolling_token_windows`` with a context of one token).
    """
    check_window(max_length, max_length)
    n_pred = n_ids - 1
    windows = []
    predicted = 0
    while predicted < n_pred:
        count = min(max_length, n_pred - predicted)
        end = 1 + predicted + count
        windows.append(Window(max(0, end - 1 - max_length), end, count))
        predicted += count
    return windows


def check_window(max_length: int, stride: int) -> None:
    if max_length < 2:
        raise UserError("max length must be at least 2 tokens")
    if stride < 1 or stride > max_length:
        raise UserError(f"stride must be between 1 and max length ({max_length}), got {stride}")


def windows_for(n_ids: int, max_length: int, stride: int) -> list[Window]:
    """Rolling windows when ``stride >= max_length``, else the guide's sliding windows."""
    if stride >= max_length:
        return rolling_windows(n_ids, max_length)
    return sliding_windows(n_ids, max_length, stride)


# --- events and results -------------------------------------------------------------------


@dataclass(frozen=True, kw_only=True)
class PerplexityStarted(Started):
    windows_total: int = 0
    mode: str = "windows"
    unit: str = "token"


@dataclass(frozen=True, kw_only=True)
class PerplexityProgress(Progress):
    """``step`` tokens of ``total`` scored, in ``windows_done`` of ``windows_total`` model calls."""

    windows_done: int = 0
    windows_total: int = 0

    @property
    def tokens_done(self) -> int:
        return self.step

    @property
    def tokens_total(self) -> int:
        return self.total or 0

    @property
    def fraction(self) -> float:
        return self.step / self.total if self.total else 1.0


@dataclass(frozen=True)
class PerplexityResult:
    """The three perplexity numbers of one text, with what they were measured on."""

    token_perplexity: float
    word_perplexity: float
    bits_per_byte: float
    n_tokens: int
    nll_sum: float
    n_words: int
    n_bytes: int
    stride: int
    max_length: int
    n_windows: int
    dtype: str
    batch_size: int
    time_s: float
    precision: str = ""  # how the dtype was decided (auto: bf16's measured speed)
    bf16_ratio: float | None = None  # bf16's speed as a multiple of float32's (auto)
    capped: bool = False  # the text was cut at max_tokens
    stopped: bool = False  # ended early by the stop signal: the numbers cover part of the text
    mode: str = "windows"

    @property
    def tokens_per_s(self) -> float:
        return self.n_tokens / self.time_s if self.time_s > 0 else 0.0

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["tokens_per_s"] = self.tokens_per_s
        return data

    def settings(self) -> dict[str, Any]:
        return {
            "stride": self.stride,
            "max_length": self.max_length,
            "dtype": self.dtype,
            "precision": self.precision,
            "mode": self.mode,
            "n_tokens": self.n_tokens,
            "n_words": self.n_words,
            "n_bytes": self.n_bytes,
            "capped": self.capped,
            "first_token": "scored after a prefix token (as lm-evaluation-harness)",
        }


@dataclass(frozen=True, kw_only=True)
class PerplexityDone(Done):
    result: PerplexityResult


@dataclass(frozen=True)
class PerplexityConfig:
    """The settings of one perplexity run."""

    stride: int = DEFAULT_STRIDE
    max_length: int | None = DEFAULT_MAX_LENGTH
    max_tokens: int | None = None
    batch_size: int = 8
    dtype: str = "auto"
    mode: str = "windows"

    def check(self) -> None:
        if self.dtype not in DTYPES:
            raise UserError(f"dtype must be auto, float32 or bfloat16, got '{self.dtype}'")
        if self.mode not in MODES:
            raise UserError(f"perplexity mode must be windows or cached, got '{self.mode}'")
        if self.max_tokens is not None and self.max_tokens < 2:
            raise UserError("max tokens must be at least 2")
        if self.max_tokens is not None and self.max_tokens > MAX_PERPLEXITY_TOKENS:
            raise UserError(
                f"max tokens is {self.max_tokens:,}; the limit is {MAX_PERPLEXITY_TOKENS:,}"
            )
        if self.batch_size < 1:
            raise UserError("batch size must be at least 1")
        if self.batch_size > 256:
            raise UserError("batch size must be at most 256")
        if self.max_length is not None and self.max_length < 2:
            raise UserError("max length must be at least 2 tokens")
        if self.stride < 1:
            raise UserError("stride must be at least 1")


# --- scoring ------------------------------------------------------------------------------


def _prepared(scorer: Scorer, text: str, config: PerplexityConfig):
    """The scored sequence (prefix + ids), the scored text and whether it was capped."""
    ids, offsets = scorer.encode(text)
    limit = config.max_tokens or MAX_PERPLEXITY_TOKENS
    if config.max_tokens is None and len(ids) > MAX_PERPLEXITY_TOKENS:
        raise UserError(
            f"the text has {len(ids):,} tokens; perplexity scores at most "
            f"{MAX_PERPLEXITY_TOKENS:,} (set max tokens to score its start)"
        )
    capped = len(ids) > limit
    if capped:
        ids = ids[:limit]
        if offsets:
            text = text[: offsets[limit - 1][1]]
        else:
            text = scorer.decode(ids)
    if scorer.prefix_id is None:  # nothing to condition the first token on: it is context only
        if len(ids) < 2:
            raise UserError("the text is too short: it needs at least two tokens")
        first = text[offsets[0][1] :] if offsets else scorer.decode(ids[1:])
        return ids, first, capped
    if not ids:
        raise UserError("the text is too short: it has no tokens")
    return [scorer.prefix_id, *ids], text, capped


def _groups(windows: Sequence[Window], batch_size: int, vocab: int) -> list[list[Window]]:
    """Runs of windows of the same shape, as batches within the logit budget."""
    groups: list[list[Window]] = []
    for w in windows:
        cap = max(1, min(batch_size, LOGIT_BUDGET // max(1, w.n_targets * vocab)))
        last = groups[-1] if groups else None
        if last and (last[0].length, last[0].n_targets) == (w.length, w.n_targets):
            if len(last) < cap:
                last.append(w)
                continue
        groups.append([w])
    return groups


class _Tally:
    """The running sum of negative log-likelihoods and the counts of a run."""

    def __init__(self, total: int, n_windows: int) -> None:
        self.nll_sum = 0.0
        self.tokens = 0
        self.windows = 0
        self.total = total
        self.n_windows = n_windows

    def add(self, nll: float, tokens: int, windows: int) -> PerplexityProgress:
        self.nll_sum += nll
        self.tokens += tokens
        self.windows += windows
        return PerplexityProgress(
            step=self.tokens,
            total=self.total,
            windows_done=self.windows,
            windows_total=self.n_windows,
        )


def _score_windows(scorer, seq, windows, config, stop_event, tally) -> Iterator[PerplexityProgress]:
    import torch
    import torch.nn.functional as F

    ids = torch.tensor(seq, dtype=torch.long)
    device = scorer.device
    for group in _groups(windows, config.batch_size, scorer.vocab_size):
        if stop_event is not None and stop_event.is_set():
            return
        n_targets = group[0].n_targets
        # 1. the windows' inputs as one batch; the targets are the next tokens
        inputs = torch.stack([ids[w.begin : w.end - 1] for w in group]).to(device)
        targets = torch.stack([ids[w.end - n_targets : w.end] for w in group]).to(device)
        # 2. log-probabilities of the scored positions only
        logits = scorer.logits(inputs, n_targets)
        nll = F.cross_entropy(
            logits.reshape(-1, logits.shape[-1]), targets.reshape(-1), reduction="sum"
        )
        yield tally.add(float(nll), n_targets * len(group), len(group))


def _score_cached(
    scorer, seq, config, max_length, stop_event, tally
) -> Iterator[PerplexityProgress]:
    """Read ``seq`` ``stride`` tokens at a time through a key/value cache of the tokens before."""
    import torch
    import torch.nn.functional as F
    from transformers import DynamicCache

    stride = min(config.stride, max_length - 1)
    keep = max_length - stride  # cached tokens each chunk attends to
    sinks = min(_SINK_TOKENS, keep // 2)  # the first tokens stay: attention rests on them
    rebase_at = min(scorer.context_length, _CACHED_REBASE)
    ids = torch.tensor(seq, dtype=torch.long)
    device = scorer.device
    cache, position = DynamicCache(), 0
    read = 0  # tokens of seq already fed
    while read < len(seq) - 1:
        if stop_event is not None and stop_event.is_set():
            return
        chunk = ids[read : min(read + stride, len(seq) - 1)]
        if position + len(chunk) > rebase_at:
            # 1. positions would pass the model's range: re-read the kept context from 0
            recent = ids[max(sinks, read - (keep - sinks)) : read]
            context = torch.cat([ids[: min(sinks, read)], recent])
            cache = DynamicCache()
            _, cache = scorer.forward_cached(
                context[None].to(device), cache, torch.arange(len(context))[None].to(device)
            )
            position = len(context)
        # 2. the chunk attends to the cache; its logits score the next tokens
        positions = torch.arange(position, position + len(chunk))[None].to(device)
        logits, cache = scorer.forward_cached(chunk[None].to(device), cache, positions)
        targets = ids[read + 1 : read + 1 + len(chunk)].to(device)
        nll = F.cross_entropy(logits[0], targets, reduction="sum")
        position += len(chunk)
        read += len(chunk)
        # 3. keep the first ``sinks`` and the last ``keep - sinks`` tokens' keys and values
        for layer in cache.layers:
            if layer.keys is not None and layer.keys.shape[-2] > keep:
                layer.keys = _trim(layer.keys, sinks, keep)
                layer.values = _trim(layer.values, sinks, keep)
        yield tally.add(float(nll), len(chunk), 1)


def _trim(states, sinks: int, keep: int):
    import torch

    return torch.cat([states[..., :sinks, :], states[..., -(keep - sinks) :, :]], dim=-2)


def perplexity_simple(model, ids: list[int], max_length: int, stride: int) -> float:
    """Token perplexity by the strided sliding-window loop of the transformers guide.

    `model` is a `transformers` causal LM and `ids` starts with the prefix token. A
    window of at most `max_length` tokens starts every `stride` (< `max_length`)
    tokens and scores only the tokens the window before did not, so each token is scored
    once, with up to `max_length - stride` tokens of context. Equal to perplexity()
    with the same settings (tested); the fast path runs windows of one shape as one batch,
    sends only the scored positions through the output layer, and can stop between batches.
    """
    import torch
    import torch.nn.functional as F

    sequence = torch.tensor([ids])  # (1, tokens)
    nll_sum, n_scored, previous_end = 0.0, 0, 0
    for begin in range(0, len(ids), stride):
        end = min(begin + max_length, len(ids))
        # score only what the window before did not (a window's first token has no context)
        first_scored = max(previous_end, begin + 1)
        with torch.no_grad():
            logits = model(sequence[:, begin:end]).logits[0]  # (1, window) -> (window, vocab)
        # the logits at position t predict the token at t + 1
        predictions = logits[first_scored - 1 - begin : end - 1 - begin]  # (scored, vocab)
        targets = sequence[0, first_scored:end]  # (scored,)
        nll_sum += F.cross_entropy(predictions.float(), targets, reduction="sum").item()
        n_scored += end - first_scored
        previous_end = end
        if end == len(ids):
            break
    # perplexity: e to the mean negative log-likelihood per scored token
    return math.exp(nll_sum / n_scored)


def perplexity_events(
    model,
    text: str,
    config: PerplexityConfig | None = None,
    stop_event: threading.Event | None = None,
    **settings: Any,
) -> Iterator[PerplexityStarted | PerplexityProgress | PerplexityDone]:
    """Score ``text`` with a loaded model (or a :class:`Scorer`): started, progress, done.

    ``settings`` are :class:`PerplexityConfig` fields, for callers without a config.
    """
    import torch

    config = config or PerplexityConfig(**settings)
    config.check()
    if not text or not text.strip():
        raise UserError("the text to score is empty")
    check_text_size(text)
    scorer = scorer_for(model)
    max_length = min(int(config.max_length or scorer.context_length), scorer.context_length)
    stride = min(config.stride, max_length)
    check_window(max_length, stride)
    if config.mode == "cached" and not scorer.supports_cache:
        raise UserError(f"the cached mode is not available for {scorer.name}: use the windows mode")
    t0 = time.perf_counter()
    seq, scored_text, capped = _prepared(scorer, text, config)
    precision = decide_precision(scorer, seq, config.dtype)
    dtype = precision.dtype
    if config.mode == "cached":
        n_calls = math.ceil((len(seq) - 1) / max(1, min(stride, max_length - 1)))
        windows = []
    else:
        windows = windows_for(len(seq), max_length, stride)
        n_calls = len(windows)
    tally = _Tally(len(seq) - 1, n_calls)
    yield PerplexityStarted(
        label=f"perplexity of {scorer.name}",
        total=tally.total,
        windows_total=n_calls,
        mode=config.mode,
    )
    autocast = torch.autocast(scorer.device.type, dtype=torch.bfloat16, enabled=dtype == "bfloat16")
    with torch.inference_mode(), autocast:
        if config.mode == "cached":
            steps = _score_cached(scorer, seq, config, max_length, stop_event, tally)
        else:
            steps = _score_windows(scorer, seq, windows, config, stop_event, tally)
        yield from steps
    if tally.tokens == 0:
        raise UserError("stopped before any token was scored")
    stopped = tally.tokens < tally.total
    if stopped:  # words and bytes of the part that was scored
        scored_text = scorer.decode(seq[1 : 1 + tally.tokens])
    n_words = max(count_words(scored_text), 1)
    n_bytes = max(count_bytes(scored_text), 1)
    result = PerplexityResult(
        token_perplexity=math.exp(tally.nll_sum / tally.tokens),
        word_perplexity=math.exp(tally.nll_sum / n_words),
        bits_per_byte=tally.nll_sum / LN2 / n_bytes,
        n_tokens=tally.tokens,
        nll_sum=tally.nll_sum,
        n_words=n_words,
        n_bytes=n_bytes,
        stride=stride,
        max_length=max_length,
        n_windows=tally.windows,
        dtype=dtype,
        batch_size=config.batch_size,
        time_s=time.perf_counter() - t0,
        precision=precision.summary(),
        bf16_ratio=precision.ratio,
        capped=capped,
        stopped=stopped,
        mode=config.mode,
    )
    yield PerplexityDone(result=result, stopped=stopped)


def perplexity(
    model,
    text: str,
    progress: Callable[[PerplexityProgress], None] | None = None,
    **settings: Any,
) -> PerplexityResult:
    """:func:`perplexity_events` run to the end; ``progress`` is called with each progress event."""
    for event in perplexity_events(model, text, **settings):
        if isinstance(event, PerplexityDone):
            return event.result
        if isinstance(event, PerplexityProgress) and progress is not None:
            progress(event)
    raise AssertionError("a perplexity run ends with its result")


def rolling_loglikelihood(scorer: Scorer, text: str, max_length: int, batch_size: int = 8) -> float:
    """The harness's ``loglikelihood_rolling`` of ``text``: the sum of log-probabilities."""
    result = perplexity(
        scorer,
        text,
        stride=max_length,
        max_length=max_length,
        batch_size=batch_size,
        dtype="float32",
    )
    return -result.nll_sum
