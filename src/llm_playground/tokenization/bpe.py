"""A trainable byte-level BPE tokenizer, small enough to read, fast enough to train.

Training starts from the 256 byte values and repeatedly fuses the most frequent
adjacent pair of tokens into a new token. Text is first split into chunks by a regex
(GPT-4's pattern by default, so merges never cross a word and its punctuation), and each
distinct chunk is kept once with its count; after a merge only the chunks that hold the
merged pair are recounted, so training 512 tokens on TinyShakespeare takes seconds
rather than the minutes a recount-everything trainer needs.

Ties go to the pair seen first: the pair whose earliest occurrence in the current token
sequence comes first, exactly what a trainer that recounts the whole text in order
would pick. Three merges on ``aaabdaaabac`` therefore encode it as
``[258, 100, 258, 97, 99]``.

Tokenizers are saved as versioned JSON (never pickle) and loaded with clear errors on
files that are not ours, too new, or damaged.
"""

from __future__ import annotations

import json
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime, timezone
from itertools import pairwise
from pathlib import Path

import regex

from llm_playground.core.errors import UserError

FORMAT = "llm-playground/bpe-tokenizer"
VERSION = 1

GPT2_SPLIT_PATTERN = r"""'(?:[sdmt]|ll|ve|re)| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+"""
GPT4_SPLIT_PATTERN = (
    r"""'(?i:[sdmt]|ll|ve|re)|[^\r\n\p{L}\p{N}]?+\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]++[\r\n]*"""
    r"""|\s*[\r\n]|\s+(?!\S)|\s+"""
)
SPLIT_PATTERNS: dict[str, str | None] = {
    "gpt4": GPT4_SPLIT_PATTERN,
    "gpt2": GPT2_SPLIT_PATTERN,
    "none": None,
}

Pair = tuple[int, int]


def merge_ids(ids: list[int], pair: Pair, new_id: int) -> list[int]:
    """Replace every non-overlapping occurrence of ``pair`` in ``ids``, left to right."""
    out: list[int] = []
    a, b = pair
    i, n = 0, len(ids)
    while i < n:
        if i < n - 1 and ids[i] == a and ids[i + 1] == b:
            out.append(new_id)
            i += 2
        else:
            out.append(ids[i])
            i += 1
    return out


def piece_text(data: bytes) -> str:
    """How a token's bytes are shown: the text they spell, with any byte that is not part
    of a complete UTF-8 character written as ``\\xNN`` (never a replacement character)."""
    return data.decode("utf-8", errors="backslashreplace")


def _pattern_of(pattern: str | None) -> str | None:
    if pattern is None:
        return None
    return SPLIT_PATTERNS.get(pattern, pattern)


# --- the tokenizer ----------------------------------------------------------------------


@dataclass
class ReplayState:
    """The token ids of a text after ``step`` merges (step 0: the raw bytes)."""

    step: int
    pair: Pair | None
    new_id: int | None
    ids: list[int]
    fused: int  # how many times the pair fused in this text at this step


class BPETokenizer:
    """Byte-level BPE: ids 0-255 are bytes; merge ``i`` creates id ``256 + i``."""

    kind = "bpe"

    def __init__(
        self,
        merges: list[Pair] | None = None,
        pattern: str | None = "gpt4",
        name: str = "my-bpe",
        meta: dict | None = None,
    ) -> None:
        self.name = name
        self.pattern = pattern
        self.meta = dict(meta or {})
        self.merges: list[Pair] = []
        self.vocab: list[bytes] = [bytes([b]) for b in range(256)]
        self.ranks: dict[Pair, int] = {}
        for pair in merges or []:
            self.add_merge(pair)
        compiled = _pattern_of(pattern)
        self._split = (
            regex.compile(compiled).findall if compiled else (lambda text: [text] if text else [])
        )
        self._cache: dict[str, list[int]] = {}

    def add_merge(self, pair: Pair) -> int:
        a, b = int(pair[0]), int(pair[1])
        new_id = 256 + len(self.merges)
        if not (0 <= a < new_id and 0 <= b < new_id):
            raise UserError(
                f"merge {len(self.merges)} ({a}, {b}) refers to a token that does not exist yet"
            )
        self.merges.append((a, b))
        self.ranks[(a, b)] = new_id
        self.vocab.append(self.vocab[a] + self.vocab[b])
        return new_id

    @property
    def vocab_size(self) -> int:
        return len(self.vocab)

    @property
    def description(self) -> str:
        source = self.meta.get("trained_on")
        return f"your byte-level BPE, {self.vocab_size} tokens" + (
            f", trained on {source}" if source else ""
        )

    def token_bytes(self, token_id: int) -> bytes:
        return self.vocab[token_id]

    def _encode_chunk(self, chunk: str) -> list[int]:
        ids = list(chunk.encode("utf-8"))
        ranks = self.ranks
        inf = 1 << 62
        while len(ids) >= 2:
            pair = min(pairwise(ids), key=lambda p: ranks.get(p, inf))
            new_id = ranks.get(pair)
            if new_id is None:
                break
            ids = merge_ids(ids, pair, new_id)
        return ids

    def encode(self, text: str) -> list[int]:
        out: list[int] = []
        cache = self._cache
        if len(cache) > 200_000:
            cache.clear()
        for chunk in self._split(text):
            ids = cache.get(chunk)
            if ids is None:
                ids = cache[chunk] = self._encode_chunk(chunk)
            out.extend(ids)
        return out

    def decode(self, ids: list[int]) -> str:
        try:
            data = b"".join(self.vocab[i] for i in ids)
        except IndexError:
            bad = next(i for i in ids if not 0 <= i < len(self.vocab))
            raise UserError(
                f"token id {bad} is outside this tokenizer's vocabulary of {self.vocab_size}"
            ) from None
        return data.decode("utf-8", errors="replace")

    def merges_table(self) -> list[dict]:
        """The merges in order: rank, the two tokens, the new token (ids and shown text)."""
        rows = []
        for i, (a, b) in enumerate(self.merges):
            rows.append(
                {
                    "rank": i + 1,
                    "new_id": 256 + i,
                    "left_id": a,
                    "right_id": b,
                    "left": piece_text(self.vocab[a]),
                    "right": piece_text(self.vocab[b]),
                    "token": piece_text(self.vocab[256 + i]),
                }
            )
        return rows

    def replay(
        self, text: str, only_changes: bool = True, max_steps: int | None = None
    ) -> list[ReplayState]:
        """Apply the merges one at a time to ``text``: state ``i`` holds its ids after merge ``i``.

        Applying merge after merge in order gives exactly what :meth:`encode` gives. With
        ``only_changes``, merges that do not occur in the text are left out.
        """
        chunks = [list(c.encode("utf-8")) for c in self._split(text)]
        states = [ReplayState(0, None, None, [i for c in chunks for i in c], 0)]
        for step, pair in enumerate(self.merges[:max_steps], start=1):
            new_id = 255 + step
            fused = 0
            for k, chunk in enumerate(chunks):
                merged = merge_ids(chunk, pair, new_id)
                if len(merged) != len(chunk):
                    fused += len(chunk) - len(merged)
                    chunks[k] = merged
            if fused or not only_changes:
                states.append(
                    ReplayState(step, pair, new_id, [i for c in chunks for i in c], fused)
                )
        return states

    # --- persistence --------------------------------------------------------------------

    def to_dict(self) -> dict:
        pattern = self.pattern
        return {
            "format": FORMAT,
            "version": VERSION,
            "name": self.name,
            "pattern": pattern,
            "vocab_size": self.vocab_size,
            "merges": [list(p) for p in self.merges],
            "meta": self.meta,
        }

    def save(self, path: str | Path) -> Path:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_text(json.dumps(self.to_dict(), ensure_ascii=False), encoding="utf-8")
        tmp.replace(path)
        return path

    @classmethod
    def from_dict(cls, data: object, source: str = "the data") -> BPETokenizer:
        if not isinstance(data, dict) or data.get("format") != FORMAT:
            raise UserError(
                f'{source} is not an LLM Playground BPE tokenizer (no "format": "{FORMAT}")'
            )
        version = data.get("version")
        if not isinstance(version, int) or version < 1:
            raise UserError(f"{source} has no valid version number")
        if version > VERSION:
            raise UserError(
                f"{source} was saved by a newer version (format {version}; this one reads {VERSION})"
            )
        merges = data.get("merges")
        if not isinstance(merges, list) or not all(
            isinstance(m, list)
            and len(m) == 2
            and all(isinstance(x, int) and not isinstance(x, bool) for x in m)
            for m in merges
        ):
            raise UserError(f'{source} is damaged: "merges" must be a list of [int, int] pairs')
        pattern = data.get("pattern")
        if pattern is not None and not isinstance(pattern, str):
            raise UserError(f'{source} is damaged: "pattern" must be a string or null')
        try:
            tok = cls(
                [(m[0], m[1]) for m in merges],
                pattern=pattern,
                name=str(data.get("name") or "my-bpe"),
                meta=data.get("meta") or {},
            )
        except UserError as exc:
            raise UserError(f"{source} is damaged: {exc}") from None
        except regex.error as exc:
            raise UserError(
                f"{source} is damaged: its split pattern does not compile ({exc})"
            ) from None
        if data.get("vocab_size") not in (None, tok.vocab_size):
            raise UserError(
                f"{source} is damaged: vocab_size {data.get('vocab_size')} but "
                f"{len(merges)} merges give {tok.vocab_size}"
            )
        return tok

    @classmethod
    def load(cls, path: str | Path) -> BPETokenizer:
        path = Path(path)
        return cls.from_dict(read_tokenizer_json(path, "BPE tokenizer"), source=str(path))


def read_tokenizer_json(path: Path, kind: str = "tokenizer") -> object:
    """The JSON content of a saved tokenizer file, or a one-line :class:`UserError`."""
    try:
        raw = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise UserError(f"no tokenizer file at {path}") from None
    except (UnicodeDecodeError, IsADirectoryError):
        raise UserError(f"{path} is not a {kind} JSON file") from None
    try:
        return json.loads(raw)
    except json.JSONDecodeError as exc:
        raise UserError(f"{path} is not valid JSON (line {exc.lineno}: {exc.msg})") from None


# --- training ---------------------------------------------------------------------------


@dataclass
class Progress:
    """One merge learned: ``merge`` of ``total``; ``pair`` became ``new_id`` (seen ``count`` times)."""

    merge: int
    total: int
    pair: Pair
    new_id: int
    count: int
    elapsed: float

    @property
    def fraction(self) -> float:
        return self.merge / self.total if self.total else 1.0


@dataclass
class Done:
    """Training finished (or stopped early, or ran out of pairs): the tokenizer and why."""

    tokenizer: BPETokenizer
    elapsed: float
    stopped: bool = False
    reason: str = ""
    stats: dict = field(default_factory=dict)


def _pairs(word: list[int]) -> Counter:
    return Counter(pairwise(word))


def train_events(
    text: str,
    vocab_size: int,
    pattern: str | None = "gpt4",
    name: str = "my-bpe",
    stop: threading.Event | None = None,
    source: str | None = None,
) -> Iterator[Progress | Done]:
    """Train a BPE tokenizer, yielding a :class:`Progress` per merge and a final :class:`Done`."""
    if not isinstance(vocab_size, int) or vocab_size < 256:
        raise UserError(f"vocabulary size must be at least 256 (the byte values), got {vocab_size}")
    if not text:
        raise UserError("the training text is empty")
    start = time.perf_counter()
    tok = BPETokenizer(
        pattern=pattern,
        name=name,
        meta={
            "trained_on": source or f"{len(text):,} characters",
            "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        },
    )
    # Distinct chunks in order of first appearance, with how often each occurs.
    chunk_counts = Counter(tok._split(text))
    words: list[list[int]] = [list(c.encode("utf-8")) for c in chunk_counts]
    freqs: list[int] = list(chunk_counts.values())
    del chunk_counts
    counts: dict[Pair, int] = {}
    where: dict[Pair, set[int]] = {}
    for wi, word in enumerate(words):
        f = freqs[wi]
        for pair in pairwise(word):
            counts[pair] = counts.get(pair, 0) + f
            s = where.get(pair)
            if s is None:
                where[pair] = {wi}
            else:
                s.add(wi)

    def first_seen(pair: Pair) -> tuple[int, int]:
        wi = min(where[pair])
        word = words[wi]
        return wi, next(
            i for i in range(len(word) - 1) if word[i] == pair[0] and word[i + 1] == pair[1]
        )

    total = vocab_size - 256
    reason = ""
    for step in range(total):
        if stop is not None and stop.is_set():
            reason = "stopped"
            break
        if not counts:
            reason = "no pair of tokens is left to merge"
            break
        best_count = max(counts.values())
        tied = [p for p, c in counts.items() if c == best_count]
        best = tied[0] if len(tied) == 1 else min(tied, key=first_seen)
        new_id = tok.add_merge(best)
        for wi in list(where[best]):
            old = words[wi]
            new = merge_ids(old, best, new_id)
            f = freqs[wi]
            old_pairs, new_pairs = _pairs(old), _pairs(new)
            for p, c in old_pairs.items():
                left = counts[p] - c * f
                if left:
                    counts[p] = left
                else:
                    del counts[p]
            for p, c in new_pairs.items():
                counts[p] = counts.get(p, 0) + c * f
            for p in old_pairs.keys() - new_pairs.keys():
                s = where[p]
                s.discard(wi)
                if not s:
                    del where[p]
            for p in new_pairs.keys() - old_pairs.keys():
                s = where.get(p)
                if s is None:
                    where[p] = {wi}
                else:
                    s.add(wi)
            words[wi] = new
        yield Progress(step + 1, total, best, new_id, best_count, time.perf_counter() - start)
    tok.meta["vocab_size_requested"] = vocab_size
    yield Done(
        tok,
        time.perf_counter() - start,
        stopped=reason == "stopped",
        reason=reason,
        stats={"chunks": sum(freqs), "distinct_chunks": len(words)},
    )


def train(
    text: str,
    vocab_size: int,
    pattern: str | None = "gpt4",
    name: str = "my-bpe",
    progress: Callable[[Progress], None] | None = None,
    stop: threading.Event | None = None,
    source: str | None = None,
) -> BPETokenizer:
    """Train and return a tokenizer; ``progress`` is called after each merge."""
    for event in train_events(
        text, vocab_size, pattern=pattern, name=name, stop=stop, source=source
    ):
        if isinstance(event, Done):
            return event.tokenizer
        if progress:
            progress(event)
    raise AssertionError("training ended without a result")  # pragma: no cover
