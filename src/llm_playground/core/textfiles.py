"""Reading text files that people give the playground, and writing outputs safely.

Reads are bounded (``MAX_TEXT_BYTES`` unless a caller asks for less), so a wrong path to
a huge file is a one-line error, not an exhausted machine. Writes go to a temporary name
beside the target and are renamed into place, so a crash never leaves half a file, and an
existing output is replaced only when the caller says so.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import BinaryIO

from llm_playground.core.errors import UserError

MAX_TEXT_BYTES = 256 * 1024 * 1024


def size_text(n_bytes: int) -> str:
    """``1.5 MB``, ``256 MB``, ``12 kB``: a byte count for messages."""
    for unit, size in (("GB", 1024**3), ("MB", 1024**2), ("kB", 1024)):
        if n_bytes >= size:
            value = n_bytes / size
            return f"{value:.0f} {unit}" if value == int(value) else f"{value:.1f} {unit}"
    return f"{n_bytes} bytes"


def read_bytes_limited(
    path: str | Path, what: str = "file", max_bytes: int = MAX_TEXT_BYTES
) -> bytes:
    """A regular file's bytes, refused with the limit in the message when larger."""
    file = Path(path).expanduser()
    if file.is_dir():
        raise UserError(f"{file} is a folder, not a {what}")
    if not file.is_file():
        if file.exists():
            raise UserError(f"{file} is not a regular file")
        raise UserError(f"{what} not found: {file}")
    try:
        with file.open("rb") as handle:
            data = read_stream_limited(handle, max_bytes)
    except PermissionError:
        raise UserError(f"{file} cannot be read (permission denied)") from None
    except OSError as exc:
        raise UserError(f"{file} cannot be read ({exc.strerror or exc})") from None
    if len(data) > max_bytes:
        raise UserError(f"{file} is larger than the {size_text(max_bytes)} a {what} may hold")
    return data


def read_stream_limited(stream: BinaryIO, max_bytes: int) -> bytes:
    """Up to ``max_bytes + 1`` bytes of ``stream``, read in pieces (memory follows the data,
    not the limit); more than ``max_bytes`` means the input is too large."""
    pieces, total = [], 0
    while total <= max_bytes:
        piece = stream.read(min(1024 * 1024, max_bytes + 1 - total))
        if not piece:
            break
        pieces.append(piece)
        total += len(piece)
    return b"".join(pieces)


def decode_utf8(data: bytes, source: str) -> str:
    """Bytes as UTF-8 text, or a one-line error that points at the first bad byte."""
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise UserError(
            f"{source} is not UTF-8 text (byte {exc.start}): save it as UTF-8 first"
        ) from None


def read_text_file(
    path: str | Path,
    what: str = "text file",
    allow_empty: bool = False,
    max_bytes: int = MAX_TEXT_BYTES,
) -> str:
    """A UTF-8 file's text; a clear :class:`UserError` when missing, a folder, larger than
    ``max_bytes``, not UTF-8, or (unless ``allow_empty``) holding only whitespace."""
    file = Path(path).expanduser()
    text = decode_utf8(read_bytes_limited(file, what, max_bytes), str(file))
    if not allow_empty and not text.strip():
        raise UserError(f"{file} is empty")
    return text


def check_text_size(text: str, source: str, max_bytes: int = MAX_TEXT_BYTES) -> str:
    """``text`` itself, unless its UTF-8 form is larger than ``max_bytes`` (limit named)."""
    if len(text) > max_bytes or len(text.encode("utf-8", "surrogatepass")) > max_bytes:
        raise UserError(f"{source} is larger than the {size_text(max_bytes)} allowed")
    return text


def write_bytes_atomic(path: str | Path, data: bytes, *, overwrite: bool = False) -> Path:
    """Write ``data`` to ``path`` through a temporary file in the same folder and a rename.

    Without ``overwrite`` an existing ``path`` is refused; a folder at ``path`` always is.
    The folder is created when missing; an impossible place is a one-line error.
    """
    path = Path(path).expanduser()
    if path.is_dir():
        raise UserError(f"{path} is a folder; give a file name")
    if path.exists() and not overwrite:
        raise UserError(f"{path} already exists; choose another name or replace it explicitly")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        handle, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    except OSError as exc:
        raise UserError(f"cannot write {path}: {exc.strerror or exc}") from None
    tmp = Path(tmp_name)
    try:
        os.chmod(tmp, 0o644)  # as an ordinary new file, not mkstemp's owner-only mode
        with os.fdopen(handle, "wb") as out:
            out.write(data)
            out.flush()
            os.fsync(out.fileno())
        os.replace(tmp, path)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        raise UserError(f"cannot write {path}: {exc.strerror or exc}") from None
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return path


def write_text_atomic(path: str | Path, text: str, *, overwrite: bool = False) -> Path:
    """:func:`write_bytes_atomic` for UTF-8 text."""
    return write_bytes_atomic(path, text.encode("utf-8"), overwrite=overwrite)
