"""Reading JSONL files that people write: one JSON object a line, errors named by line.

Instruction data (Lab 4), preference pairs (Lab 4, DPO) and judge questions and answers
(Lab 5) all come as JSONL. A malformed line raises :class:`UserError` with the file and
the line number, so a person can find and fix it; blank lines are skipped. Files come
from anyone, so they are bounded: at most ``MAX_JSONL_BYTES`` in all, ``MAX_LINE_BYTES``
a line and ``MAX_ROWS`` objects, each limit named in its message.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from llm_playground.core.errors import UserError
from llm_playground.core.textfiles import check_text_size, read_text_file, size_text

MAX_JSONL_BYTES = 128 * 1024 * 1024
MAX_LINE_BYTES = 4 * 1024 * 1024
MAX_ROWS = 1_000_000


def _quoted(names: Sequence[str]) -> str:
    return ", ".join(repr(n) for n in names)


def parse_jsonl(
    text: str,
    source: str,
    *,
    keys: Sequence[str] = (),
    text_fields: Sequence[str] = (),
    nonblank: bool = False,
) -> list[tuple[int, dict[str, Any]]]:
    """``(line number, object)`` for each non-blank line of ``text``.

    ``keys`` must be present (any JSON value); ``text_fields`` must be strings, and with
    ``nonblank`` not only whitespace. ``source`` names the text in messages.
    """
    check_text_size(text, source, MAX_JSONL_BYTES)
    rows = []
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        if len(line) > MAX_LINE_BYTES:
            raise UserError(
                f"{source} line {number}: longer than the {size_text(MAX_LINE_BYTES)} a line may hold"
            )
        if len(rows) >= MAX_ROWS:
            raise UserError(f"{source}: more than {MAX_ROWS:,} lines of JSON objects")
        try:
            row = json.loads(line)
        except json.JSONDecodeError as exc:
            raise UserError(f"{source} line {number}: not valid JSON ({exc.msg})") from None
        except RecursionError:
            raise UserError(f"{source} line {number}: nested too deeply") from None
        if not isinstance(row, dict):
            wanted = _quoted([*keys, *text_fields])
            raise UserError(
                f"{source} line {number}: expected a JSON object"
                + (f" with {wanted}" if wanted else "")
            )
        missing = [k for k in keys if k not in row]
        if missing:
            raise UserError(f"{source} line {number}: missing field(s) {_quoted(missing)}")
        bad = [
            k
            for k in text_fields
            if not isinstance(row.get(k), str) or (nonblank and not row[k].strip())
        ]
        if bad:
            kind = "missing or empty text field(s)" if nonblank else "missing text field(s)"
            raise UserError(f"{source} line {number}: {kind} {_quoted(bad)}")
        rows.append((number, row))
    return rows


def read_jsonl(
    path: str | Path, what: str = "file", **checks: Any
) -> list[tuple[int, dict[str, Any]]]:
    """Parse a UTF-8 JSONL file (see :func:`parse_jsonl`); ``what`` names it when it is missing."""
    file = Path(path).expanduser()
    text = read_text_file(file, what, allow_empty=True, max_bytes=MAX_JSONL_BYTES)
    return parse_jsonl(text, file.name, **checks)
