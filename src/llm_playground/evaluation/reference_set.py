"""The shipped reference set: short questions with one-sentence answers, scored by overlap.

A model answers each prompt with Lab 3's decoding (greedy by default); the answers are
scored against the references with BLEU, chrF and ROUGE (:mod:`.overlap`).
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from llm_playground.core.errors import UserError
from llm_playground.core.events import Done, Progress, Started
from llm_playground.core.paths import package_data
from llm_playground.core.textfiles import read_text_file
from llm_playground.evaluation.overlap import BleuResult, bleu_chrf, rouge

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


@dataclass(frozen=True, kw_only=True)
class ReferenceProgress(Progress):
    """``step`` of ``total`` prompts answered; the last one and its answer."""

    item: ReferenceItem
    answer: str

    @property
    def done(self) -> int:
        return self.step


@dataclass(frozen=True)
class ReferenceResult:
    """BLEU/chrF and ROUGE of the answers, with the answers and what they were made with."""

    bleu: BleuResult
    rouge: dict[str, dict[str, float]]
    answers: tuple[str, ...]
    items: tuple[ReferenceItem, ...]
    settings: dict[str, Any] = field(default_factory=dict)
    stopped: bool = False


def clean_answer(text: str) -> str:
    """A generated answer as one line (references are one line each)."""
    return " ".join(text.split())


@dataclass(frozen=True, kw_only=True)
class ReferenceDone(Done):
    result: ReferenceResult


def reference_set_events(
    loaded,
    config=None,
    items: Sequence[ReferenceItem] | None = None,
    limit: int | None = None,
    stop_event: threading.Event | None = None,
) -> Iterator[Started | ReferenceProgress | ReferenceDone]:
    """Answer each prompt of the reference set with Lab 3's decoding, then score BLEU/chrF/ROUGE."""
    from llm_playground.generation.decoding import DecodingConfig, generate

    config = config or DecodingConfig(strategy="greedy", max_new_tokens=48)
    items = list(items or load_reference_set())[: limit or None]
    if limit is not None and limit < 1:
        raise UserError("the number of items must be at least 1")
    answers: list[str] = []
    stopped = False
    yield Started(
        label=f"answering the reference set with {loaded.name}", total=len(items), unit="item"
    )
    for i, item in enumerate(items):
        if stop_event is not None and stop_event.is_set():
            stopped = True
            break
        result = generate(loaded, item.prompt, config, stop_event=stop_event)
        answers.append(clean_answer(result.text))
        yield ReferenceProgress(step=i + 1, total=len(items), item=item, answer=answers[-1])
    if not answers:
        raise UserError("stopped before any answer was generated")
    done = items[: len(answers)]
    refs = [it.reference for it in done]
    hyps = [a if a else "" for a in answers]
    settings = {"decoding": asdict(config), "n_items": len(done)}
    result = ReferenceResult(
        bleu=bleu_chrf(hyps, [refs]),
        rouge=rouge(hyps, refs),
        answers=tuple(answers),
        items=tuple(done),
        settings=settings,
        stopped=stopped,
    )
    yield ReferenceDone(result=result, stopped=stopped)
