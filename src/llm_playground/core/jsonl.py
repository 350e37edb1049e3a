"""Reading JSONL files that people write: one JSON object a line, errors named by line.

Instruction data (Lab 4), preference pairs (Lab 4, DPO) and judge questions and answers
(Lab 5) all come as JSONL. A malformed line raises :class:`UserError` with the file and
the line number, so a person can find and fix it; blank lines are skipped.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from llm_playground.core.errors import UserError
from llm_playground.core.textfiles import read_text_file


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
    rows = []
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as exc:
            raise UserError(f"{source} line {number}: not valid JSON ({exc.msg})") from None
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
    text = read_text_file(file, what, allow_empty=True)
    return parse_jsonl(text, file.name, **checks)
