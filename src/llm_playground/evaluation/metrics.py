"""Lab 5's metrics in one namespace (the precision rule of their forward passes included).

The metrics live by idea: :mod:`.perplexity` (sliding and rolling windows, the harness's
word and byte counts), :mod:`.overlap` (BLEU/chrF, ROUGE) and :mod:`.reference_set` (the
shipped prompt/reference pairs); this module names them together for callers that want
"the metrics". It imports them and nothing imports it from inside the package.
"""

from __future__ import annotations

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
    decide_precision,
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
