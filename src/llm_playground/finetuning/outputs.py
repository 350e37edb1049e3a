"""Where Lab 4 writes, and how: names inside the playground home, writes that never
leave half a file, and no existing output replaced unless the caller allows it.

- :func:`home_file` turns a name typed in the app into a path inside a folder of the
  playground home, refusing ``..``, absolute paths and folders in the name;
- :func:`write_text_files` writes one or more text files to temporary siblings and
  renames them into place (``os.replace``), so a reader sees the old file or the new
  one, never a mix;
- :func:`replace_dir` moves a finished temporary folder into place the same way;
- :class:`OutputExists` is raised when an output exists and ``force`` was not given:
  the CLI tells the person about ``--force``, the app asks for a confirmation.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
import uuid
from collections.abc import Sequence
from pathlib import Path

from llm_playground.core.errors import UserError

#: Largest file the app accepts as an upload (instruction data, preference pairs).
MAX_UPLOAD_BYTES = 20 * 1024 * 1024


class OutputExists(UserError):
    """An output is already there and replacing it was not allowed."""

    def __init__(self, path: Path, what: str = "the output") -> None:
        self.path = Path(path)
        self.what = what
        super().__init__(
            f"{what} {self.path} exists already; allow replacing it or pick a new name"
        )


def home_file(name: str, folder: str, *, suffix: str = "", what: str = "name") -> Path:
    """``<home>/<folder>/<name>[suffix]`` for a plain name typed in the app.

    Only a single file name is accepted: no ``..``, no absolute path, no folder in it,
    not hidden. ``suffix`` is added when the name lacks it.
    """
    from llm_playground.core.paths import get_paths

    text = str(name or "").strip()
    if not text:
        raise UserError(f"the {what} is empty")
    if len(text) > 120:
        raise UserError(f"the {what} is too long (at most 120 characters)")
    if os.path.isabs(text) or text.startswith("~"):
        raise UserError(f"the {what} must be a plain name, not a path: {text!r}")
    if "/" in text or "\\" in text or ".." in text or text.startswith(".") or "\x00" in text:
        raise UserError(f"the {what} must be a plain name without folders or '..': {text!r}")
    if suffix and not text.lower().endswith(suffix):
        text += suffix
    return get_paths().home / folder / text


def check_upload(data: bytes, name: str, limit: int = MAX_UPLOAD_BYTES) -> str:
    """An uploaded file's UTF-8 text, refused when larger than ``limit`` bytes."""
    if len(data) > limit:
        raise UserError(
            f"{name} is {len(data) / 1e6:.1f} MB; uploads are limited to {limit / 1e6:.0f} MB"
        )
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise UserError(
            f"{name} is not UTF-8 text (byte {exc.start}): save it as UTF-8 first"
        ) from None


def check_new_file(path: Path, force: bool, what: str = "the output file") -> Path:
    """Refuse a folder, and an existing file unless ``force``."""
    if path.is_dir():
        raise UserError(f"{path} is a folder; give a file name")
    if path.exists() and not force:
        raise OutputExists(path, what)
    return path


def write_text_files(files: Sequence[tuple[Path, str]]) -> None:
    """Write each file to a temporary sibling, fsync, then rename all into place."""
    temps: list[tuple[str, Path]] = []
    try:
        for path, text in files:
            try:
                path.parent.mkdir(parents=True, exist_ok=True)
                fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
            except OSError as exc:
                raise UserError(f"cannot write {path}: {exc.strerror or exc}") from None
            temps.append((tmp, path))
            with os.fdopen(fd, "w", encoding="utf-8", newline="\n") as fh:
                fh.write(text)
                fh.flush()
                os.fsync(fh.fileno())
        for tmp, path in temps:
            os.replace(tmp, path)
    except BaseException:
        for tmp, _ in temps:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
        raise


def temp_dir_beside(out: Path) -> Path:
    """A fresh hidden folder next to ``out`` to build it in (same file system)."""
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        return Path(tempfile.mkdtemp(dir=out.parent, prefix=f".{out.name}.", suffix=".tmp"))
    except OSError as exc:
        raise UserError(f"cannot write {out}: {exc.strerror or exc}") from None


def replace_dir(tmp: Path, out: Path) -> Path:
    """Move the finished folder ``tmp`` to ``out``; an old ``out`` is removed only after."""
    old = None
    try:
        if out.exists():
            old = out.with_name(f".{out.name}.old-{uuid.uuid4().hex[:8]}")
            os.replace(out, old)
        os.replace(tmp, out)
    except BaseException:
        if old is not None and not out.exists():
            os.replace(old, out)
            old = None
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    finally:
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    return out
