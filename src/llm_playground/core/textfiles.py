"""Reading text files that people give the playground, with one-line errors."""

from __future__ import annotations

from pathlib import Path

from llm_playground.core.errors import UserError


def read_text_file(path: str | Path, what: str = "text file", allow_empty: bool = False) -> str:
    """A UTF-8 file's text; a clear :class:`UserError` when missing, not UTF-8, or (unless
    ``allow_empty``) holding only whitespace."""
    file = Path(path).expanduser()
    if not file.is_file():
        raise UserError(f"{what} not found: {file}")
    try:
        text = file.read_bytes().decode("utf-8")
    except UnicodeDecodeError as exc:
        raise UserError(
            f"{file} is not UTF-8 text (byte {exc.start}): save it as UTF-8 first"
        ) from None
    if not allow_empty and not text.strip():
        raise UserError(f"{file} is empty")
    return text
