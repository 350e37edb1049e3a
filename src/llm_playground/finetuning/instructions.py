"""Instruction data for Lab 4: examples of (instruction, input, output), their prompt format,
and a fixed held-out slice.

Sources:

* ``alpaca``: the 52k Stanford Alpaca examples (``tatsu-lab/alpaca`` through ``datasets``),
  which needs a network or a local Hugging Face cache;
* ``offline``: the instruction set this project builds from text that registry packages and
  the package itself ship (see :func:`build_offline_set` and the data card
  ``data/instructions/README.md``): the English question/answer pairs of
  ``chatterbot-corpus`` 1.3.3 (BSD licence) and short tasks with answers computed exactly
  from TinyShakespeare lines (public domain) and from arithmetic;
* a user's JSONL file, one object a line with ``instruction``, ``output`` and an optional
  ``input``.

Training and inference use the same prompt format (:func:`format_prompt`); its name and
template are recorded in each adapter's ``playground.json``.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import json
import logging
import random
import re
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

from llm_playground.core.errors import UserError
from llm_playground.core.jsonl import read_jsonl
from llm_playground.core.paths import package_data

log = logging.getLogger(__name__)

# --- the prompt format ------------------------------------------------------------------

PROMPT_FORMAT = "alpaca-short-v1"
PROMPT_TEMPLATE = "### Instruction:\n{instruction}\n\n### Response:\n"
PROMPT_TEMPLATE_WITH_INPUT = (
    "### Instruction:\n{instruction}\n\n### Input:\n{input}\n\n### Response:\n"
)


def format_prompt(instruction: str, input: str = "") -> str:
    """The Alpaca-style prompt (without its preamble) used at training and at inference.

    The response follows the prompt directly; training appends the tokenizer's end-of-text
    token to the response, so a tuned model learns to stop.
    """
    instruction = instruction.strip()
    input = (input or "").strip()
    if input:
        return PROMPT_TEMPLATE_WITH_INPUT.format(instruction=instruction, input=input)
    return PROMPT_TEMPLATE.format(instruction=instruction)


def prompt_format_record() -> dict[str, str]:
    """What ``playground.json`` keeps about the prompt format."""
    return {
        "name": PROMPT_FORMAT,
        "template": PROMPT_TEMPLATE,
        "template_with_input": PROMPT_TEMPLATE_WITH_INPUT,
    }


def prompt_for_model(
    instruction: str,
    input: str = "",
    *,
    adapter_meta: dict | None = None,
    chat: bool = False,
    wrap: bool = True,
) -> tuple[str, bool]:
    """The text a model gets for an instruction, and whether to apply its chat template.

    An adapter trained on the playground's format (its ``playground.json`` names it) always
    gets that format. Otherwise a chat model (one with a chat template) gets the plain
    instruction through its template, and a base model gets the playground's format when
    ``wrap`` is on, the raw text when it is off.
    """
    fmt = (adapter_meta or {}).get("prompt_format")
    name = fmt.get("name") if isinstance(fmt, dict) else None
    if name == PROMPT_FORMAT or (not chat and wrap):
        return format_prompt(instruction, input), False
    extra = (input or "").strip()
    if chat:
        return (instruction if not extra else f"{instruction}\n\n{input}"), True
    return (instruction if not extra else f"{instruction}\n{input}"), False


# --- examples ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Example:
    """One instruction-following example."""

    instruction: str
    output: str
    input: str = ""
    source: str = ""

    @property
    def prompt(self) -> str:
        return format_prompt(self.instruction, self.input)

    def to_json(self) -> dict[str, str]:
        row = asdict(self)
        if not row["source"]:
            del row["source"]
        return row


def save_jsonl(examples: Iterable[Example], path: Path) -> int:
    """Write examples as JSONL (``instruction``, ``input``, ``output``, ``source``); returns the count."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    n = 0
    tmp = path.with_name(path.name + ".tmp")
    with tmp.open("w", encoding="utf-8") as f:
        for ex in examples:
            f.write(json.dumps(ex.to_json(), ensure_ascii=False) + "\n")
            n += 1
    tmp.replace(path)
    return n


def parse_instructions(text: str, source: str) -> list[Example]:
    """Examples from instruction JSONL text (``instruction``, ``output``, optional ``input``);
    a malformed line raises :class:`UserError` naming ``source`` and the line number."""
    from llm_playground.core.jsonl import parse_jsonl

    rows = parse_jsonl(text, source, text_fields=("instruction", "output"), nonblank=True)
    return _examples(rows, source)


def read_instructions(path: str | Path) -> list[Example]:
    """Read a user's instruction JSONL file (see :func:`parse_instructions`)."""
    path = Path(path)
    rows = read_jsonl(path, "data file", text_fields=("instruction", "output"), nonblank=True)
    return _examples(rows, path.name)


def _examples(rows: list[tuple[int, dict]], source: str) -> list[Example]:
    examples = []
    for number, row in rows:
        extra = row.get("input") or ""
        if not isinstance(extra, str):
            raise UserError(f"{source} line {number}: 'input' must be text")
        examples.append(
            Example(
                instruction=row["instruction"],
                input=extra,
                output=row["output"],
                source=str(row.get("source", "") or ""),
            )
        )
    if not examples:
        raise UserError(f"{source} holds no examples")
    return examples


# --- the held-out slice -----------------------------------------------------------------


def _key(ex: Example) -> str:
    text = ex.instruction.strip().lower() + "\n" + ex.input.strip().lower()
    return hashlib.sha1(text.encode("utf-8")).hexdigest()


def split_heldout(
    examples: Sequence[Example], fraction: float = 0.05, max_heldout: int = 200
) -> tuple[list[Example], list[Example]]:
    """A fixed (train, held-out) split, grouped by instruction and input so no task is in both.

    The held-out instructions are those whose SHA-1 sorts first: the same data always gives
    the same slice, whatever the order of the file or the seed of a run.
    """
    if not 0 < fraction < 1:
        raise UserError("the held-out fraction must be between 0 and 1")
    keys = sorted({_key(ex) for ex in examples})
    if len(keys) < 2:
        raise UserError(
            "the data needs at least two different examples (one to train on, one to hold out)"
        )
    k = min(max(1, round(fraction * len(keys))), max_heldout, len(keys) - 1)
    held = set(keys[:k])
    train = [ex for ex in examples if _key(ex) not in held]
    heldout = [ex for ex in examples if _key(ex) in held]
    return train, heldout


# --- the offline set --------------------------------------------------------------------

CHATTERBOT_DIST = "chatterbot-corpus"
CHATTERBOT_DIR = "chatterbot_corpus/data/english"
OFFLINE_FILE = ("instructions", "offline.jsonl")


def chatterbot_dir() -> Path:
    try:
        folder = Path(
            str(importlib.metadata.distribution(CHATTERBOT_DIST).locate_file(CHATTERBOT_DIR))
        )
    except importlib.metadata.PackageNotFoundError as exc:
        raise UserError(
            "the package chatterbot-corpus is not installed: run `make install`"
        ) from exc
    if not folder.is_dir():
        raise UserError(f"chatterbot-corpus has no English data at {folder}")
    return folder


def chatterbot_examples(folder: Path | None = None) -> list[Example]:
    """Question/answer pairs of the English chatterbot corpus, in file order.

    A conversation ``[a, b, c, ...]`` gives the pairs (a, b), (b, c), ...; duplicates are dropped.
    """
    import yaml

    folder = folder or chatterbot_dir()
    seen: set[tuple[str, str]] = set()
    out = []
    for file in sorted(folder.glob("*.yml")):
        doc = yaml.safe_load(file.read_text(encoding="utf-8")) or {}
        for conv in doc.get("conversations") or []:
            if not isinstance(conv, list):
                continue
            turns = [_clean(str(t)) for t in conv if isinstance(t, (str, int, float))]
            for q, a in zip(turns, turns[1:], strict=False):
                if not q or not a or (q, a) in seen:
                    continue
                seen.add((q, a))
                out.append(Example(instruction=q, output=a, source=f"chatterbot/{file.stem}"))
    return out


def _clean(text: str) -> str:
    return re.sub(r"\s+", " ", text).strip()


def shakespeare_lines(text: str | None = None) -> list[str]:
    """Spoken lines of TinyShakespeare with 5 to 12 words (speaker names and blanks left out)."""
    text = (
        text
        if text is not None
        else package_data("tinyshakespeare.txt").read_text(encoding="utf-8")
    )
    lines = []
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.endswith(":"):
            continue
        if 5 <= len(line.split()) <= 12 and line.isascii():
            lines.append(line)
    return lines


def _words(line: str) -> list[str]:
    """The words of a line without surrounding punctuation (apostrophes inside kept)."""
    words = [w.strip(".,;:!?'\"()[]-") for w in line.split()]
    return [w for w in words if w]


def derived_examples(seed: int = 1234, per_task: int = 120) -> list[Example]:
    """Instruction tasks whose answers are computed exactly from Shakespeare lines and numbers."""
    rng = random.Random(seed)
    lines = shakespeare_lines()
    picks = rng.sample(lines, min(len(lines), per_task * 8))
    it = iter(picks)
    out: list[Example] = []

    def add(instruction: str, output: str, input: str = "", task: str = "") -> None:
        out.append(
            Example(instruction=instruction, input=input, output=output, source=f"derived/{task}")
        )

    for _ in range(per_task):
        line = next(it)
        add("Convert the following line to uppercase.", line.upper(), line, "uppercase")
    for _ in range(per_task):
        line = next(it)
        add("Rewrite the following line in lowercase.", line.lower(), line, "lowercase")
    for _ in range(per_task):
        line = next(it)
        n = len(line.split())
        add("How many words are in the following line?", f"The line has {n} words.", line, "count")
    for _ in range(per_task):
        line = next(it)
        add(
            "What is the first word of the following line?",
            f'The first word is "{_words(line)[0]}".',
            line,
            "first-word",
        )
    for _ in range(per_task):
        line = next(it)
        add(
            "What is the last word of the following line?",
            f'The last word is "{_words(line)[-1]}".',
            line,
            "last-word",
        )
    for _ in range(per_task):
        line = next(it)
        add(
            "Reverse the order of the words in the following line.",
            " ".join(reversed(_words(line))),
            line,
            "reverse",
        )
    for _ in range(per_task):
        words = _words(next(it))[:6]
        add(
            "Sort the following words alphabetically.",
            ", ".join(sorted(words, key=str.lower)),
            ", ".join(words),
            "sort",
        )
    for _ in range(per_task):
        a, b = rng.randint(2, 99), rng.randint(2, 99)
        if rng.random() < 0.5:
            add(f"What is {a} plus {b}?", f"{a} + {b} = {a + b}.", "", "addition")
        else:
            hi, lo = max(a, b), min(a, b)
            add(f"What is {hi} minus {lo}?", f"{hi} - {lo} = {hi - lo}.", "", "subtraction")
    return out


def build_offline_set(seed: int = 1234) -> list[Example]:
    """The offline instruction set: chatterbot Q/A pairs, then the derived tasks, shuffled by ``seed``."""
    examples = chatterbot_examples() + derived_examples(seed=seed)
    random.Random(seed).shuffle(examples)
    return examples


def offline_path() -> Path:
    return package_data(*OFFLINE_FILE)


def load_offline() -> list[Example]:
    """The shipped offline instruction set (built by ``scripts/train_default_adapter.py``)."""
    path = offline_path()
    if not path.exists():
        log.info("no shipped offline set at %s; building it from chatterbot-corpus", path)
        return build_offline_set()
    return read_instructions(path)


# --- Alpaca -----------------------------------------------------------------------------

ALPACA_ID = "tatsu-lab/alpaca"


def load_alpaca(limit: int | None = None) -> list[Example]:
    """Stanford Alpaca through ``datasets`` (network or a local cache); ``UserError`` otherwise."""
    try:
        from datasets import load_dataset

        ds = load_dataset(ALPACA_ID, split="train")
    except Exception as exc:  # offline: ConnectionError, OfflineModeIsEnabled, FileNotFoundError...
        raise UserError(
            f"the Alpaca data set ({ALPACA_ID}) needs network: "
            f"use the offline data or a JSONL file ({type(exc).__name__})"
        ) from exc
    out = []
    for row in ds:
        if limit is not None and len(out) >= limit:
            break
        if row.get("instruction") and row.get("output"):
            out.append(
                Example(
                    instruction=row["instruction"],
                    input=row.get("input") or "",
                    output=row["output"],
                    source="alpaca",
                )
            )
    return out


def load_examples(data: str) -> list[Example]:
    """``alpaca``, ``offline`` or the path of a JSONL file."""
    if not data or not str(data).strip():
        raise UserError("no data given: use alpaca, offline or a JSONL file")
    if data == "alpaca":
        return load_alpaca()
    if data == "offline":
        return load_offline()
    path = Path(data)
    if path.suffix.lower() not in (".jsonl", ".json") and not path.exists():
        raise UserError(f"unknown data '{data}': use alpaca, offline or a JSONL file")
    return read_instructions(path)
