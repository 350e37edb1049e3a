"""Lab 5's metrics in one namespace, and the precision decision of its forward passes.

The metrics live by idea: :mod:`.perplexity` (sliding and rolling windows, the harness's
word and byte counts), :mod:`.overlap` (BLEU/chrF, ROUGE) and :mod:`.reference_set` (the
shipped prompt/reference pairs); this module names them together for callers that want
"the metrics", and decides whether bfloat16 is worth using on this CPU.
"""

from __future__ import annotations

import logging

from llm_playground.core.errors import UserError
from llm_playground.evaluation.overlap import (  # noqa: F401
    ROUGE_TYPES,
    BleuResult,
    SentenceScore,
    bleu_chrf,
    read_segments,
    rouge,
    sentence_bleu_chrf,
    split_sentences,
)
from llm_playground.evaluation.perplexity import (  # noqa: F401
    DATASETS,
    DEFAULT_MAX_LENGTH,
    DEFAULT_STRIDE,
    LN2,
    MAX_PERPLEXITY_TOKENS,
    MAX_TEXT_CHARS,
    EvalText,
    PerplexityConfig,
    PerplexityDone,
    PerplexityProgress,
    PerplexityResult,
    PerplexityStarted,
    Window,
    count_bytes,
    count_words,
    load_eval_text,
    pasted_text,
    perplexity,
    perplexity_events,
    rolling_windows,
    sliding_windows,
    uploaded_text,
)
from llm_playground.evaluation.reference_set import (  # noqa: F401
    REFERENCE_SET,
    ReferenceDone,
    ReferenceItem,
    ReferenceProgress,
    ReferenceResult,
    clean_answer,
    load_reference_set,
    reference_set_events,
)

log = logging.getLogger(__name__)


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
