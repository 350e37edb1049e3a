"""Evaluation metrics: sliding-window perplexity, BLEU/chrF, ROUGE, and a reference-set scorer.

Perplexity
    A causal model sees at most ``max_length`` tokens at once. The text is scored in
    windows of ``max_length`` tokens that start every ``stride`` tokens (the method of
    the ``transformers`` perplexity guide): each window scores only the tokens that the
    previous window did not, so every token is scored exactly once, with up to
    ``max_length - stride`` tokens of context before it. Windows of the same shape run
    as one batch, without gradients, and only the logits of scored positions are
    computed; bfloat16 autocast is used where a quick measurement shows it is faster.

    Three numbers come out of the same sum of negative log-likelihoods (``nll_sum``,
    natural log):

    * token perplexity ``exp(nll_sum / n_tokens)``: depends on the tokenizer, so two
      models with different tokenizers do not compare on it;
    * word perplexity ``exp(nll_sum / n_words)`` over whitespace-separated words of the
      scored text;
    * bits per byte ``nll_sum / ln 2 / n_bytes`` over the UTF-8 bytes of the scored
      text: the cost of the text in bits, whatever the tokenizer.

    The first token of a text has no context and is not scored (unless the tokenizer
    adds a beginning-of-text token); words and bytes are counted over the scored text.

BLEU and chrF
    Through ``sacrebleu`` at corpus level (one hypothesis a line, one or more reference
    streams) and at sentence level, with the signature that makes a score reproducible.

ROUGE
    Through ``rouge-score`` (target first), ROUGE-1/2/L per line, averaged over lines;
    ROUGE-Lsum splits each segment into sentences on newlines, as the library expects.
"""

from __future__ import annotations

import json
import logging
import math
import re
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from llm_playground.core.errors import UserError
from llm_playground.core.paths import package_data
from llm_playground.core.textfiles import read_text_file
from llm_playground.training.corpus import tinyshakespeare_validation

log = logging.getLogger(__name__)

LN2 = math.log(2.0)
DEFAULT_STRIDE = 512
DEFAULT_MAX_LENGTH = 1024
# Logit elements kept in memory at once (batch x positions x vocabulary), about 256 MB in fp32.
LOGIT_BUDGET = 64 * 1024 * 1024

# --- evaluation texts --------------------------------------------------------------------

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


def load_eval_text(data: str) -> EvalText:
    """``wikitext-2``, ``wikitext-2-raw``, ``tinyshakespeare-val`` or a path to a UTF-8 file."""
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
    return EvalText(f"file:{path.name}", read_text_file(path), f"the file {path}")


def pasted_text(text: str) -> EvalText:
    if not text or not text.strip():
        raise UserError("the pasted text is empty")
    return EvalText("pasted text", text, f"pasted text ({len(text):,} characters)")


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


# --- perplexity --------------------------------------------------------------------------


@dataclass(frozen=True)
class Window:
    """One model call of the sliding window: tokens ``[begin, end)``, the last ``n_targets`` scored."""

    begin: int
    end: int
    n_targets: int

    @property
    def length(self) -> int:
        return self.end - self.begin


def sliding_windows(
    n_ids: int, max_length: int, stride: int, first_scored: int = 1
) -> list[Window]:
    """The windows of the transformers guide's loop over ``n_ids`` tokens.

    Window ``k`` starts at ``k * stride`` and scores the tokens after the previous
    window's end; the tokens before ``first_scored``, and the first token of each
    window (when ``stride == max_length``), have no context and are not scored.
    """
    if max_length < 2:
        raise UserError("max length must be at least 2 tokens")
    if stride < 1 or stride > max_length:
        raise UserError(f"stride must be between 1 and max length ({max_length}), got {stride}")
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


@dataclass(frozen=True)
class PerplexityProgress:
    tokens_done: int
    tokens_total: int
    windows_done: int
    windows_total: int

    @property
    def fraction(self) -> float:
        return self.tokens_done / self.tokens_total if self.tokens_total else 1.0


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
    capped: bool = False  # the text was cut at max_tokens
    stopped: bool = False  # ended early by the stop signal: the numbers cover part of the text

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
            "n_tokens": self.n_tokens,
            "n_words": self.n_words,
            "n_bytes": self.n_bytes,
            "capped": self.capped,
        }


def bf16_is_faster() -> bool:
    """Whether bfloat16 is fast on this CPU (the one measured rule of core.hardware)."""
    from llm_playground.core.hardware import bf16_is_fast

    return bf16_is_fast("cpu")


def resolve_dtype(dtype: str) -> str:
    """``auto`` becomes ``bfloat16`` where measured faster, else ``float32``."""
    if dtype not in ("auto", "float32", "bfloat16"):
        raise UserError(f"dtype must be auto, float32 or bfloat16, got '{dtype}'")
    if dtype == "auto":
        return "bfloat16" if bf16_is_faster() else "float32"
    return dtype


def _tokenize(tokenizer, text: str) -> tuple[list[int], list[tuple[int, int]] | None]:
    try:
        enc = tokenizer(text, return_offsets_mapping=True, verbose=False)
        return list(enc["input_ids"]), [tuple(o) for o in enc["offset_mapping"]]
    except (NotImplementedError, TypeError, ValueError):  # slow tokenizers have no offsets
        enc = tokenizer(text, verbose=False)
        return list(enc["input_ids"]), None


def _scored_text(tokenizer, text: str, ids: list[int], offsets, windows: Sequence[Window]) -> str:
    """The characters of the scored tokens: token ``i`` covers the text from the end of
    token ``i - 1`` to its own end (leading spaces included)."""
    if offsets:
        return "".join(
            text[offsets[w.end - w.n_targets - 1][1] : offsets[w.end - 1][1]] for w in windows
        )
    return "".join(tokenizer.decode(ids[w.end - w.n_targets : w.end]) for w in windows)


def _forward_logits(model, input_ids, n_keep: int):
    """Logits of the last ``n_keep`` positions (computing only those where the model allows)."""
    try:
        out = model(input_ids=input_ids, logits_to_keep=n_keep, use_cache=False)
        logits = out.logits
    except TypeError:  # a model without logits_to_keep
        logits = model(input_ids=input_ids, use_cache=False).logits
    if logits.shape[1] != n_keep:
        logits = logits[:, -n_keep:]
    return logits


def perplexity_events(
    loaded,
    text: str,
    stride: int = DEFAULT_STRIDE,
    max_length: int | None = DEFAULT_MAX_LENGTH,
    max_tokens: int | None = None,
    batch_size: int = 8,
    dtype: str = "auto",
    stop_event: threading.Event | None = None,
) -> Iterator[PerplexityProgress | PerplexityResult]:
    """Score ``text`` with a loaded registry model; yields progress, then one result.

    ``max_tokens`` caps the tokens read (a quick run on the start of the text);
    ``max_length`` is capped at the model's context length.
    """
    import torch
    import torch.nn.functional as F

    if not text or not text.strip():
        raise UserError("the text to score is empty")
    context = int(getattr(loaded, "context_length", DEFAULT_MAX_LENGTH) or DEFAULT_MAX_LENGTH)
    max_length = min(int(max_length or context), context)
    if max_tokens is not None and max_tokens < 2:
        raise UserError("max tokens must be at least 2")
    if batch_size < 1:
        raise UserError("batch size must be at least 1")
    dtype = resolve_dtype(dtype)
    t0 = time.perf_counter()
    ids, offsets = _tokenize(loaded.tokenizer, text)
    capped = max_tokens is not None and len(ids) > max_tokens
    if capped:
        ids = ids[:max_tokens]
        offsets = offsets[:max_tokens] if offsets else None
    # The first token has no context; a beginning-of-text token added by the tokenizer
    # (offsets (0, 0)) gives the first real token one, so the whole text is scored.
    first_scored = 1
    if len(ids) < 2:
        raise UserError("the text is too short: it needs at least two tokens")
    windows = sliding_windows(len(ids), max_length, stride, first_scored)
    total = sum(w.n_targets for w in windows)

    model = loaded.model
    vocab = int(getattr(getattr(model, "config", None), "vocab_size", 0) or 50000)
    ids_t = torch.tensor(ids, dtype=torch.long)
    groups: list[list[Window]] = []
    for w in windows:
        cap = max(1, min(batch_size, LOGIT_BUDGET // max(1, (w.n_targets + 1) * vocab)))
        last = groups[-1] if groups else None
        if (
            last
            and (last[0].length, last[0].n_targets) == (w.length, w.n_targets)
            and len(last) < cap
        ):
            last.append(w)
        else:
            groups.append([w])

    nll_sum = 0.0
    done_tokens = 0
    done_windows = 0
    stopped = False
    yield PerplexityProgress(0, total, 0, len(windows))
    device = next(model.parameters()).device
    autocast = torch.autocast(device.type, dtype=torch.bfloat16, enabled=dtype == "bfloat16")
    with torch.inference_mode(), autocast:
        for group in groups:
            if stop_event is not None and stop_event.is_set():
                stopped = True
                break
            n_t = group[0].n_targets
            batch = torch.stack([ids_t[w.begin : w.end] for w in group]).to(device)
            logits = _forward_logits(model, batch, n_t + 1)[:, :-1].float()
            targets = batch[:, -n_t:]
            nll = F.cross_entropy(
                logits.reshape(-1, logits.shape[-1]), targets.reshape(-1), reduction="sum"
            )
            nll_sum += float(nll)
            done_tokens += n_t * len(group)
            done_windows += len(group)
            yield PerplexityProgress(done_tokens, total, done_windows, len(windows))
    elapsed = time.perf_counter() - t0
    if done_tokens == 0:
        raise UserError("stopped before any token was scored")
    scored_text = _scored_text(loaded.tokenizer, text, ids, offsets, windows[:done_windows])
    n_words = max(len(scored_text.split()), 1)
    n_bytes = max(len(scored_text.encode("utf-8")), 1)
    yield PerplexityResult(
        token_perplexity=math.exp(nll_sum / done_tokens),
        word_perplexity=math.exp(nll_sum / n_words),
        bits_per_byte=nll_sum / LN2 / n_bytes,
        n_tokens=done_tokens,
        nll_sum=nll_sum,
        n_words=n_words,
        n_bytes=n_bytes,
        stride=stride,
        max_length=max_length,
        n_windows=done_windows,
        dtype=dtype,
        batch_size=batch_size,
        time_s=elapsed,
        capped=capped,
        stopped=stopped,
    )


def perplexity(
    loaded, text: str, progress: Callable[[PerplexityProgress], None] | None = None, **kwargs: Any
) -> PerplexityResult:
    """:func:`perplexity_events` run to the end; ``progress`` is called with each progress event."""
    result = None
    for event in perplexity_events(loaded, text, **kwargs):
        if isinstance(event, PerplexityResult):
            result = event
        elif progress is not None:
            progress(event)
    assert result is not None
    return result


# --- BLEU and chrF -----------------------------------------------------------------------


@dataclass(frozen=True)
class SentenceScore:
    hypothesis: str
    bleu: float
    chrf: float

    @property
    def bleu_zero_on_short(self) -> bool:
        """Sentence BLEU of 0 on a short string: no 4-gram matched; chrF says more."""
        return self.bleu == 0.0 and len(self.hypothesis.split()) < 4


@dataclass(frozen=True)
class BleuResult:
    bleu: float
    chrf: float
    signature: str
    chrf_signature: str
    n_segments: int
    n_references: int
    sentences: tuple[SentenceScore, ...] = ()

    def to_json(self) -> dict[str, Any]:
        return {
            "bleu": self.bleu,
            "chrf": self.chrf,
            "signature": self.signature,
            "chrf_signature": self.chrf_signature,
            "n_segments": self.n_segments,
            "n_references": self.n_references,
            "sentences": [asdict(s) for s in self.sentences],
        }


def _check_aligned(hyps: Sequence[str], refs: Sequence[Sequence[str]]) -> None:
    if not hyps:
        raise UserError("no hypotheses to score")
    if not refs:
        raise UserError("no references given")
    for i, stream in enumerate(refs, 1):
        if len(stream) != len(hyps):
            raise UserError(
                f"reference set {i} has {len(stream)} lines but the hypotheses have "
                f"{len(hyps)}: give one segment a line in each"
            )


def bleu_chrf(
    hyps: Sequence[str],
    refs: Sequence[Sequence[str]],
    tokenize: str = "13a",
    sentences: bool = True,
) -> BleuResult:
    """Corpus BLEU and chrF of ``hyps`` against one or more reference streams (sacrebleu).

    ``refs[k][i]`` is the ``k``-th reference of segment ``i``. Sentence-level scores use
    sacrebleu's ``effective_order`` for BLEU, as its documentation recommends.
    """
    from sacrebleu.metrics import BLEU, CHRF

    hyps = [str(h) for h in hyps]
    refs = [[str(r) for r in stream] for stream in refs]
    _check_aligned(hyps, refs)
    bleu = BLEU(tokenize=tokenize)
    chrf = CHRF()
    corpus_bleu = bleu.corpus_score(hyps, refs)
    corpus_chrf = chrf.corpus_score(hyps, refs)
    per = ()
    if sentences:
        sbleu = BLEU(tokenize=tokenize, effective_order=True)
        per = tuple(
            SentenceScore(
                h,
                sbleu.sentence_score(h, [s[i] for s in refs]).score,
                chrf.sentence_score(h, [s[i] for s in refs]).score,
            )
            for i, h in enumerate(hyps)
        )
    return BleuResult(
        bleu=corpus_bleu.score,
        chrf=corpus_chrf.score,
        signature=str(bleu.get_signature()),
        chrf_signature=str(chrf.get_signature()),
        n_segments=len(hyps),
        n_references=len(refs),
        sentences=per,
    )


def sentence_bleu_chrf(hyp: str, refs: Sequence[str]) -> SentenceScore:
    result = bleu_chrf([hyp], [[r] for r in refs])
    return result.sentences[0]


# --- ROUGE -------------------------------------------------------------------------------

ROUGE_TYPES = ("rouge1", "rouge2", "rougeL", "rougeLsum")
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+")


def split_sentences(text: str) -> str:
    """One sentence a line, the form ``rougeLsum`` expects (it splits on newlines)."""
    parts = [p.strip() for line in text.splitlines() for p in _SENTENCE_END.split(line)]
    return "\n".join(p for p in parts if p)


def rouge(
    hyps: Sequence[str], refs: Sequence[str], use_stemmer: bool = False
) -> dict[str, dict[str, float]]:
    """ROUGE-1/2/L/Lsum precision, recall and F-measure, averaged over segments.

    rouge-score's scorer takes the target (reference) first; Lsum sees each segment
    split into sentences on newlines.
    """
    from rouge_score import rouge_scorer

    hyps = [str(h) for h in hyps]
    refs = [str(r) for r in refs]
    _check_aligned(hyps, [refs])
    scorer = rouge_scorer.RougeScorer(list(ROUGE_TYPES), use_stemmer=use_stemmer)
    sums = {t: {"precision": 0.0, "recall": 0.0, "fmeasure": 0.0} for t in ROUGE_TYPES}
    for hyp, ref in zip(hyps, refs, strict=True):
        plain = scorer.score(ref, hyp)
        lsum = scorer.score(split_sentences(ref), split_sentences(hyp))["rougeLsum"]
        for t in ROUGE_TYPES:
            s = lsum if t == "rougeLsum" else plain[t]
            sums[t]["precision"] += s.precision
            sums[t]["recall"] += s.recall
            sums[t]["fmeasure"] += s.fmeasure
    n = len(hyps)
    return {t: {k: v / n for k, v in d.items()} for t, d in sums.items()}


def read_segments(path: str | Path, what: str = "file") -> list[str]:
    """One segment a line of a UTF-8 file (a trailing newline does not add a segment)."""
    text = read_text_file(path, what)
    return text.rstrip("\n").split("\n")


# --- the shipped reference set -----------------------------------------------------------

REFERENCE_SET = "reference_set.jsonl"


@dataclass(frozen=True)
class ReferenceItem:
    id: str
    prompt: str
    reference: str


def load_reference_set(path: str | Path | None = None) -> list[ReferenceItem]:
    """The shipped prompt/reference pairs (or a JSONL file with id, prompt, reference)."""
    file = Path(path) if path else package_data(REFERENCE_SET)
    items = []
    for n, line in enumerate(read_text_file(file, "reference set").splitlines(), 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
            items.append(
                ReferenceItem(str(row.get("id", n)), str(row["prompt"]), str(row["reference"]))
            )
        except (json.JSONDecodeError, KeyError, TypeError, AttributeError):
            raise UserError(
                f"{file} line {n}: expected a JSON object with prompt and reference"
            ) from None
    if not items:
        raise UserError(f"{file} holds no items")
    return items


@dataclass(frozen=True)
class ReferenceProgress:
    done: int
    total: int
    item: ReferenceItem
    answer: str


@dataclass(frozen=True)
class ReferenceResult:
    bleu: BleuResult
    rouge: dict[str, dict[str, float]]
    answers: tuple[str, ...]
    items: tuple[ReferenceItem, ...]
    settings: dict[str, Any] = field(default_factory=dict)
    stopped: bool = False


def clean_answer(text: str) -> str:
    """A generated answer as one line (references are one line each)."""
    return " ".join(text.split())


def reference_set_events(
    loaded,
    config=None,
    items: Sequence[ReferenceItem] | None = None,
    limit: int | None = None,
    stop_event: threading.Event | None = None,
) -> Iterator[ReferenceProgress | ReferenceResult]:
    """Answer each prompt of the reference set with Lab 3's decoding, then score BLEU/chrF/ROUGE."""
    from llm_playground.generation.decoding import DecodingConfig, generate

    config = config or DecodingConfig(strategy="greedy", max_new_tokens=48)
    items = list(items or load_reference_set())[: limit or None]
    answers: list[str] = []
    stopped = False
    for i, item in enumerate(items):
        if stop_event is not None and stop_event.is_set():
            stopped = True
            break
        result = generate(loaded, item.prompt, config, stop_event=stop_event)
        answers.append(clean_answer(result.text))
        yield ReferenceProgress(i + 1, len(items), item, answers[-1])
    if not answers:
        raise UserError("stopped before any answer was generated")
    done = items[: len(answers)]
    refs = [it.reference for it in done]
    hyps = [a if a else "" for a in answers]
    settings = {"decoding": asdict(config), "n_items": len(done)}
    yield ReferenceResult(
        bleu=bleu_chrf(hyps, [refs]),
        rouge=rouge(hyps, refs),
        answers=tuple(answers),
        items=tuple(done),
        settings=settings,
        stopped=stopped,
    )
