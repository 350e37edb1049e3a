"""One place that decides where data, models, runs and the database live.

What the user makes (runs, adapters, tokenizers, votes, results) goes under one home
folder, ``~/.llm-playground`` by default, or ``$LLM_PLAYGROUND_HOME`` when set (tests point
it at a temporary folder). Installed assets go to a separate cache (see :func:`cache`).
Data shipped with the package (TinyShakespeare, WikiText-2, reference sets, the
default adapter) lives in :func:`package_data`.
"""

from __future__ import annotations

import os
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
