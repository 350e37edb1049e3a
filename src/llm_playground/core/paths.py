"""One place that decides where data, models, runs and the database live.

What the user makes (runs, adapters, tokenizers, votes, results) goes under one home
folder, ``~/.llm-playground`` by default, or ``$LLM_PLAYGROUND_HOME`` when set (tests point
it at a temporary folder). Installed assets go to a separate cache (see :func:`cache`).
Data shipped with the package (TinyShakespeare, WikiText-2, reference sets, the
default adapter) lives in :func:`package_data`.
"""

from __future__ import annotations

import os
import secrets
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

ENV_HOME = "LLM_PLAYGROUND_HOME"
ENV_CACHE = "LLM_PLAYGROUND_CACHE"


@dataclass(frozen=True)
class Paths:
    """The folders of one playground home. Call :meth:`ensure` before writing."""

    home: Path
    cache: Path

    @property
    def runs(self) -> Path:
        """Lab 2 training runs: ``runs/<name>/`` with config, metrics, weights, tokenizer."""
        return self.home / "runs"

    @property
    def adapters(self) -> Path:
        """Lab 4 LoRA adapters (peft folders)."""
        return self.home / "adapters"

    @property
    def models(self) -> Path:
        """Converted model caches (safetensors copies of the offline GGUF models)."""
        return self.cache / "models"

    @property
    def tokenizers(self) -> Path:
        """Lab 1 BPE tokenizers saved as versioned JSON."""
        return self.home / "tokenizers"

    @property
    def tiktoken_cache(self) -> Path:
        """Where tiktoken finds its encodings offline (``TIKTOKEN_CACHE_DIR``)."""
        return self.cache / "tiktoken"

    @property
    def downloads(self) -> Path:
        """Registry packages fetched at install time to extract assets from."""
        return self.cache / "downloads"

    @property
    def db(self) -> Path:
        """The SQLite database of votes (Lab 4) and the leaderboard (Lab 5)."""
        return self.home / "playground.sqlite"

    def ensure(self) -> Paths:
        for folder in (
            self.home,
            self.cache,
            self.runs,
            self.adapters,
            self.models,
            self.tokenizers,
            self.tiktoken_cache,
            self.downloads,
        ):
            folder.mkdir(parents=True, exist_ok=True)
        return self


def home() -> Path:
    """The playground home folder (not created)."""
    return Path(os.environ.get(ENV_HOME) or Path.home() / ".llm-playground").expanduser()


def cache() -> Path:
    """Installed offline assets (tokenizer files, converted models): ``$LLM_PLAYGROUND_CACHE``
    or ``~/.cache/llm-playground``. Kept apart from the home so that a fresh home (a test,
    a new user folder) still finds the assets installed once."""
    return Path(os.environ.get(ENV_CACHE) or Path.home() / ".cache" / "llm-playground").expanduser()


def get_paths() -> Paths:
    """The paths of the current home and cache, read from the environment on each call."""
    return Paths(home(), cache())


def package_data(*parts: str) -> Path:
    """A file or folder shipped inside the package (``llm_playground/data``)."""
    return Path(__file__).resolve().parent.parent.joinpath("data", *parts)


NAME_PATTERN = r"[A-Za-z0-9][A-Za-z0-9._-]{0,80}"


def check_name(name: str, what: str = "name") -> str:
    """A plain name for a file kept inside the playground home: letters, digits, '.', '_'
    or '-', starting with a letter or digit, at most 81 characters; so never a folder,
    ``..`` or an absolute path. Returns the name without surrounding spaces."""
    import re

    from llm_playground.core.errors import UserError

    stripped = (name or "").strip()
    if not re.fullmatch(NAME_PATTERN, stripped) or ".." in stripped:
        raise UserError(
            f"{what} {stripped!r} must be letters, digits, '.', '_' or '-' (at most 81)"
        )
    return stripped


def named_file(folder: Path, name: str, suffix: str = "", what: str = "name") -> Path:
    """``folder/<name><suffix>`` for a checked ``name``, refused if it resolves (through a
    link) to somewhere outside ``folder``."""
    from llm_playground.core.errors import UserError

    path = folder / f"{check_name(name, what)}{suffix}"
    resolved, base = path.resolve(), folder.resolve()
    if resolved != base and base not in resolved.parents:
        raise UserError(f"{what} {name!r} points outside {folder}")
    return path


def unique_name(prefix: str) -> str:
    """``<prefix>-<YYYYmmdd-HHMMSS>-<8 random hex digits>``: a name that sorts by time and
    that two people asking in the same second still get apart (32 random bits)."""
    return f"{prefix}-{time.strftime('%Y%m%d-%H%M%S')}-{secrets.token_hex(4)}"


def unique_run_dir(parent: str | os.PathLike, prefix: str = "run", attempts: int = 16) -> Path:
    """A new, empty folder ``parent/<unique_name(prefix)>`` that belongs to one run only.

    The folder is created exclusively (``mkdir(exist_ok=False)``): when two runs draw the
    same name, the second ``mkdir`` fails and it draws again, so no two callers, in any
    thread or process, ever get the same folder. ``parent`` is created when missing."""
    from llm_playground.core.errors import UserError

    base = Path(parent).expanduser()
    base.mkdir(parents=True, exist_ok=True)
    for _ in range(attempts):
        folder = base / unique_name(prefix)
        try:
            folder.mkdir(exist_ok=False)
        except FileExistsError:
            continue  # someone else's run took this name a moment ago: draw another
        return folder
    raise UserError(f"could not create a new run folder in {base} after {attempts} tries")


def check_new_path(path: str | os.PathLike, what: str = "the output") -> Path:
    """Check that ``path`` could be written later, without creating anything now.

    The nearest folder that exists above ``path`` must be a writable folder (and no file
    may stand where a folder of the path would be): a command that refuses its input
    afterwards then leaves no new folder behind. Returns the path, expanded."""
    from llm_playground.core.errors import UserError

    target = Path(path).expanduser()
    ancestor = target.parent
    while not ancestor.exists() and ancestor != ancestor.parent:
        ancestor = ancestor.parent
    if not ancestor.is_dir():
        raise UserError(f"{what} {target} cannot be written: {ancestor} is not a folder")
    try:  # a real try (permissions alone say nothing to root or on a read-only mount)
        os.rmdir(tempfile.mkdtemp(prefix=".write-check-", dir=ancestor))
    except OSError as exc:
        raise UserError(f"{what} {target} cannot be written: {exc.strerror or exc}") from None
    return target
