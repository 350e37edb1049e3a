"""Overlap metrics: BLEU and chrF (sacrebleu), ROUGE (rouge-score).

BLEU and chrF
    Through ``sacrebleu`` at corpus level (one hypothesis a line, one or more reference
    streams) and at sentence level, with the signature that makes a score reproducible.

ROUGE
    Through ``rouge-score`` (target first), ROUGE-1/2/L per line, averaged over lines;
    ROUGE-Lsum splits each segment into sentences on newlines, as the library expects.
"""

from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from llm_playground.core.errors import UserError
from llm_playground.core.textfiles import read_text_file

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


def bleu_simple(
    hypotheses: Sequence[str],
    references: Sequence[Sequence[str]],
    tokenize: Callable[[str], list[str]] = str.split,
) -> float:
    """Corpus BLEU from its definition (Papineni et al. 2002), on the scale of 0 to 100.

    `references` are streams, one reference per hypothesis in each (as bleu_chrf()).
    Equal to sacrebleu's corpus BLEU with the same word split (tested): `str.split` is its
    `tokenize="none"`. The fast path calls sacrebleu itself, for its standard tokenisers
    (13a, intl, zh, ...) and the signature that makes a score reproducible.
    """
    matches, totals = [0] * 4, [0] * 4  # clipped matches and n-grams, for n = 1..4
    hypothesis_length = reference_length = 0
    for index, hypothesis in enumerate(hypotheses):
        words = tokenize(hypothesis)
        references_words = [tokenize(stream[index]) for stream in references]
        # lengths for the brevity penalty: the reference closest in length (shorter on a tie)
        hypothesis_length += len(words)
        reference_length += min((abs(len(r) - len(words)), len(r)) for r in references_words)[1]
        for n in range(1, 5):
            counts = ngram_counts(words, n)
            # clip: an n-gram counts at most as often as the reference holding it most
            most_in_one_reference = Counter()
            for reference in references_words:
                most_in_one_reference |= ngram_counts(reference, n)  # | keeps the larger count
            matches[n - 1] += sum((counts & most_in_one_reference).values())  # & the smaller
            totals[n - 1] += sum(counts.values())
    if not any(matches) or not all(totals):
        return 0.0
    # the geometric mean of the four precisions; a zero is smoothed as mteval does ("exp")
    log_precision_sum, smoothing = 0.0, 1.0
    for match, total in zip(matches, totals, strict=True):
        if match == 0:
            smoothing *= 2
        log_precision_sum += math.log(match / total if match else 1 / (smoothing * total))
    # the brevity penalty: precision alone would reward a hypothesis that says very little
    brevity = (
        1.0
        if hypothesis_length >= reference_length
        else math.exp(1 - reference_length / hypothesis_length)
    )
    return 100 * brevity * math.exp(log_precision_sum / 4)


def ngram_counts(words: list[str], n: int) -> Counter:
    """How often each run of `n` consecutive words occurs."""
    return Counter(tuple(words[i : i + n]) for i in range(len(words) - n + 1))


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
