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
files that are not ours, too new, or damaged. A tokenizer file may come from anyone, so
what it may ask for is bounded: at most ``MAX_VOCAB_SIZE`` tokens, no token longer than
``MAX_TOKEN_BYTES`` bytes (merges that double a token forty times are refused at the
first merge past the limit, before any memory is spent), and a split pattern only from
the named list ``SPLIT_PATTERNS`` (never a regex taken from the file).
"""

from __future__ import annotations

import functools
import heapq
import json
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from itertools import groupby, pairwise
from pathlib import Path

import regex

from llm_playground.core.errors import UserError
from llm_playground.core.events import Done, Progress, RunEvent, Started
from llm_playground.core.textfiles import read_text_file, write_text_atomic

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


class TooLarge(UserError):
    """A tokenizer asks for more than the bounds below allow (the message names the limit)."""


# Bounds on what a tokenizer (trained here or read from a file) may hold.
MAX_VOCAB_SIZE = 65_536  # 256 bytes + 65,280 merges
MAX_TOKEN_BYTES = 512  # GPT-4's longest tokens are about 128 bytes
MAX_TOKENIZER_FILE_BYTES = 16 * 1024 * 1024
MAX_NAME_CHARS = 200
LONG_CHUNK_BYTES = 256  # longer chunks are encoded with a heap instead of the simple loop


def merge_ids(ids: list[int], pair: Pair, new_id: int) -> list[int]:
    """Replace every non-overlapping occurrence of ``pair`` in ``ids``, left to right."""
    out: list[int] = []
    a, b = pair
    i, n = 0, len(ids)
    while i < n:
        if i < n - 1 and ids[i] == a and ids[i + 1] == b:
            # the pair becomes one token; skip both, so "aaa" with (a, a) gives (aa, a)
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


def split_pattern_name(pattern: str | None) -> str:
    """The name of a split pattern from :data:`SPLIT_PATTERNS` (a name, None, or the exact
    text of a listed regex); any other pattern is refused, since a regex can take
    exponential time on a crafted text."""
    if pattern is None:
        return "none"
    if pattern in SPLIT_PATTERNS:
        return pattern
    for name, known in SPLIT_PATTERNS.items():
        if known is not None and pattern == known:
            return name
    shown = pattern if len(pattern) <= 40 else pattern[:40] + "…"
    raise UserError(
        f"split pattern {shown!r} is not one of the known patterns ({', '.join(SPLIT_PATTERNS)})"
    )


@functools.lru_cache(maxsize=len(SPLIT_PATTERNS))
def _compiled_split(name: str) -> Callable[[str], list[str]]:
    pattern = SPLIT_PATTERNS[name]
    if pattern is None:
        return lambda text: [text] if text else []
    return regex.compile(pattern).findall


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
        merges = list(merges or [])
        if 256 + len(merges) > MAX_VOCAB_SIZE:
            raise TooLarge(
                f"{len(merges):,} merges make {256 + len(merges):,} tokens; a tokenizer may "
                f"have at most {MAX_VOCAB_SIZE:,}"
            )
        self.name = name
        self.pattern = split_pattern_name(pattern) if pattern is not None else None
        self.meta = dict(meta or {})
        self.merges: list[Pair] = []
        self.vocab: list[bytes] = [bytes([b]) for b in range(256)]
        self.ranks: dict[Pair, int] = {}
        for pair in merges:
            self.add_merge(pair)
        self.split = _compiled_split(split_pattern_name(pattern))
        self._cache: dict[str, list[int]] = {}

    def merged_length(self, pair: Pair) -> int:
        """How many bytes the token made by merging ``pair`` would hold."""
        return len(self.vocab[pair[0]]) + len(self.vocab[pair[1]])

    def add_merge(self, pair: Pair) -> int:
        a, b = int(pair[0]), int(pair[1])
        new_id = 256 + len(self.merges)
        if not (0 <= a < new_id and 0 <= b < new_id):
            raise UserError(
                f"merge {len(self.merges)} ({a}, {b}) refers to a token that does not exist yet"
            )
        if new_id >= MAX_VOCAB_SIZE:
            raise TooLarge(f"a tokenizer may have at most {MAX_VOCAB_SIZE:,} tokens")
        if self.merged_length((a, b)) > MAX_TOKEN_BYTES:
            raise TooLarge(
                f"merge {len(self.merges)} would make a token of {self.merged_length((a, b)):,} "
                f"bytes; tokens may be at most {MAX_TOKEN_BYTES} bytes"
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
        ids = list(chunk.encode("utf-8"))  # start from the bytes, as training did
        # rescanning a long chunk once per merge is quadratic: a heap does it in n log n
        if len(ids) > LONG_CHUNK_BYTES:
            return self._encode_long(ids)
        ranks = self.ranks
        inf = 1 << 62
        # merge the pair that was learned first, again and again, until none is left
        while len(ids) >= 2:
            pair = min(pairwise(ids), key=lambda p: ranks.get(p, inf))
            new_id = ranks.get(pair)
            if new_id is None:
                break
            ids = merge_ids(ids, pair, new_id)
        return ids

    def _encode_long(self, ids: list[int]) -> list[int]:
        """The same merges as :meth:`_encode_chunk` in O(n log n), for long chunks (a text
        split with pattern ``none`` is one chunk): a heap of the pairs by rank, then position.

        A merge only creates pairs that hold its new token, and those rank after it, so
        popping (rank, position) in order replays the simple loop exactly.
        """
        if len(ids) < 2:
            return list(ids)
        ranks = self.ranks
        tokens: list[int | None] = list(ids)
        following = list(range(1, len(ids) + 1))
        following[-1] = -1
        preceding = list(range(-1, len(ids) - 1))
        heap = [
            (ranks[pair], position) for position, pair in enumerate(pairwise(ids)) if pair in ranks
        ]
        heapq.heapify(heap)
        while heap:
            new_id, left = heapq.heappop(heap)
            right = following[left]
            if tokens[left] is None or right == -1:
                continue
            if ranks.get((tokens[left], tokens[right])) != new_id:  # stale: already merged
                continue
            # fuse the pair into its left place and unlink the right one
            tokens[left], tokens[right] = new_id, None
            after = following[right]
            following[left] = after
            if after != -1:
                preceding[after] = left
            # the new token's pairs with its neighbours may merge later
            before = preceding[left]
            if before != -1 and (rank := ranks.get((tokens[before], new_id))) is not None:
                heapq.heappush(heap, (rank, before))
            if after != -1 and (rank := ranks.get((new_id, tokens[after]))) is not None:
                heapq.heappush(heap, (rank, left))
        return [token for token in tokens if token is not None]

    def encode(self, text: str) -> list[int]:
        out: list[int] = []
        cache = self._cache
        if len(cache) > 200_000:
            cache.clear()
        for chunk in self.split(text):
            ids = cache.get(chunk)
            if ids is None:
                ids = self._encode_chunk(chunk)
                if len(chunk) <= 256:  # words repeat; long chunks rarely do
                    cache[chunk] = ids
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
        ``only_changes``, merges that do not occur in the text are left out, and the cost
        follows the text, not the number of merges (a tokenizer of 65,536 tokens replays
        a short text as fast as one of 300).
        """
        chunks = [list(c.encode("utf-8")) for c in self.split(text)]
        states = [ReplayState(0, None, None, [i for c in chunks for i in c], 0)]
        limit = len(self.merges) if max_steps is None else min(max_steps, len(self.merges))
        if only_changes:
            return states + self._replay_changes(chunks, limit)
        for step, pair in enumerate(self.merges[:limit], start=1):
            new_id = 255 + step
            fused = 0
            for k, chunk in enumerate(chunks):
                merged = merge_ids(chunk, pair, new_id)
                if len(merged) != len(chunk):
                    fused += len(chunk) - len(merged)
                    chunks[k] = merged
            states.append(ReplayState(step, pair, new_id, [i for c in chunks for i in c], fused))
        return states

    def _chunk_changes(self, chunk: list[int], limit: int) -> list[tuple[int, list[int], int]]:
        """The merges that change one chunk, in rank order: (rank, ids after it, times fused).

        The lowest-ranked pair present is always the next merge that changes the chunk: a
        merge creates only pairs that hold its new token, and those rank after it.
        """
        changes = []
        ids = chunk
        while len(ids) >= 2:
            pair = min(pairwise(ids), key=lambda p: self.ranks.get(p, 1 << 62))
            new_id = self.ranks.get(pair)
            if new_id is None or new_id - 256 >= limit:
                break
            merged = merge_ids(ids, pair, new_id)
            changes.append((new_id - 256, merged, len(ids) - len(merged)))
            ids = merged
        return changes

    def _replay_changes(self, chunks: list[list[int]], limit: int) -> list[ReplayState]:
        """The states after each merge that changes the text: each distinct chunk's own
        changes, put back together in rank order."""
        per_chunk: dict[tuple[int, ...], list[tuple[int, list[int], int]]] = {}
        changes = []  # (rank, chunk index, ids after, fused)
        for index, chunk in enumerate(chunks):
            key = tuple(chunk)
            if key not in per_chunk:
                per_chunk[key] = self._chunk_changes(chunk, limit)
            changes.extend((rank, index, ids, fused) for rank, ids, fused in per_chunk[key])
        changes.sort(key=lambda change: (change[0], change[1]))
        states = []
        for rank, group in groupby(changes, key=lambda change: change[0]):
            fused = 0
            for _, index, ids, times in group:
                chunks[index] = ids
                fused += times
            flat = [i for c in chunks for i in c]
            states.append(ReplayState(rank + 1, self.merges[rank], 256 + rank, flat, fused))
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

    def save(self, path: str | Path, *, overwrite: bool = True) -> Path:
        """Write the JSON to a temporary name beside ``path``, then rename it into place;
        without ``overwrite`` an existing file is refused."""
        return write_text_atomic(
            path, json.dumps(self.to_dict(), ensure_ascii=False), overwrite=overwrite
        )

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
        if isinstance(merges, list) and 256 + len(merges) > MAX_VOCAB_SIZE:
            raise UserError(
                f"{source} has {len(merges):,} merges; a tokenizer may have at most "
                f"{MAX_VOCAB_SIZE - 256:,} ({MAX_VOCAB_SIZE:,} tokens)"
            )
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
        meta = data.get("meta") or {}
        if not isinstance(meta, dict):
            raise UserError(f'{source} is damaged: "meta" must be an object')
        try:
            tok = cls(
                [(m[0], m[1]) for m in merges],
                pattern=pattern,
                name=str(data.get("name") or "my-bpe")[:MAX_NAME_CHARS],
                meta=meta,
            )
        except TooLarge as exc:
            raise UserError(f"{source} is refused: {exc}") from None
        except UserError as exc:
            raise UserError(f"{source} is damaged: {exc}") from None
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
    """The JSON content of a saved tokenizer file (at most ``MAX_TOKENIZER_FILE_BYTES``),
    or a one-line :class:`UserError`."""
    path = Path(path)
    if path.is_dir():
        raise UserError(f"{path} is a folder, not a {kind} JSON file")
    if not path.exists():
        raise UserError(f"no tokenizer file at {path}")
    try:
        raw = read_text_file(
            path, f"{kind} file", allow_empty=True, max_bytes=MAX_TOKENIZER_FILE_BYTES
        )
    except UserError as exc:
        if "not UTF-8" in str(exc):
            raise UserError(f"{path} is not a {kind} JSON file") from None
        raise
    return parse_tokenizer_json(raw, str(path))


def parse_tokenizer_json(raw: str | bytes, source: str) -> object:
    """The JSON content of a tokenizer file's text (an upload, say), bounded in size."""
    if len(raw) > MAX_TOKENIZER_FILE_BYTES:
        raise UserError(
            f"{source} is {len(raw):,} bytes; a tokenizer file may be at most "
            f"{MAX_TOKENIZER_FILE_BYTES // (1024 * 1024)} MB"
        )
    if isinstance(raw, bytes):
        try:
            raw = raw.decode("utf-8")
        except UnicodeDecodeError:
            raise UserError(f"{source} is not a JSON text file") from None
    try:
        return json.loads(raw)
    except json.JSONDecodeError as exc:
        raise UserError(f"{source} is not valid JSON (line {exc.lineno}: {exc.msg})") from None
    except RecursionError:
        raise UserError(f"{source} is nested too deeply to be a tokenizer file") from None


# --- training ---------------------------------------------------------------------------


@dataclass(frozen=True, kw_only=True)
class BPEProgress(Progress):
    """Merge ``step`` of ``total`` is learned: ``pair`` became ``new_id`` (seen ``count`` times)."""

    pair: Pair
    new_id: int
    count: int
    elapsed: float


@dataclass(frozen=True, kw_only=True)
class BPEDone(Done):
    """Training ended (finished, stopped, or out of pairs): the tokenizer, and why it ended."""

    tokenizer: BPETokenizer
    elapsed: float
    reason: str = ""
    stats: dict = field(default_factory=dict)


class ChunkTable:
    """The training text as token ids, kept so that one merge costs little.

    The text is split into chunks (words with their leading space, numbers, punctuation),
    and each distinct chunk is stored once with how often it occurs. For every adjacent
    pair of tokens the table knows its count over the whole text and which chunks hold it,
    so a merge rewrites and recounts only those chunks.
    """

    def __init__(self, chunk_texts: list[str]) -> None:
        # count each distinct chunk once, in order of first appearance
        counted = Counter(chunk_texts)
        self.chunks: list[list[int]] = [list(chunk.encode("utf-8")) for chunk in counted]
        self.chunk_counts: list[int] = list(counted.values())
        self.pair_counts: dict[Pair, int] = {}
        self.chunks_with_pair: dict[Pair, set[int]] = {}
        for chunk_index, chunk in enumerate(self.chunks):
            for pair in pairwise(chunk):
                self._add(pair, self.chunk_counts[chunk_index], chunk_index)

    def _add(self, pair: Pair, count: int, chunk_index: int) -> None:
        self.pair_counts[pair] = self.pair_counts.get(pair, 0) + count
        holders = self.chunks_with_pair.get(pair)
        if holders is None:
            self.chunks_with_pair[pair] = {chunk_index}
        else:
            holders.add(chunk_index)

    def first_seen(self, pair: Pair) -> tuple[int, int]:
        """Where ``pair`` first occurs in reading order: (chunk index, position)."""
        chunk_index = min(self.chunks_with_pair[pair])
        chunk = self.chunks[chunk_index]
        position = next(
            i for i in range(len(chunk) - 1) if chunk[i] == pair[0] and chunk[i + 1] == pair[1]
        )
        return chunk_index, position

    def most_frequent_pair(self) -> tuple[Pair, int]:
        """The most frequent pair and its count; a tie goes to the pair seen first."""
        best_count = max(self.pair_counts.values())
        # the counts' order changes as merges move them, so a tie is broken by the text
        # itself: the same merges as the recount-everything trainer, whatever the order
        tied = [pair for pair, count in self.pair_counts.items() if count == best_count]
        best = tied[0] if len(tied) == 1 else min(tied, key=self.first_seen)
        return best, best_count

    def merge(self, pair: Pair, new_id: int) -> None:
        """The merge step: replace ``pair`` by ``new_id`` in every chunk that holds it, and
        move the pair counts of those chunks from their old tokens to their new ones."""
        for chunk_index in list(self.chunks_with_pair[pair]):
            old_chunk = self.chunks[chunk_index]
            new_chunk = merge_ids(old_chunk, pair, new_id)
            # a chunk stands for every occurrence of its text: its pairs count that often
            times = self.chunk_counts[chunk_index]
            old_pairs, new_pairs = Counter(pairwise(old_chunk)), Counter(pairwise(new_chunk))
            # take away the pairs the chunk held before the merge ...
            for old_pair, n in old_pairs.items():
                left = self.pair_counts[old_pair] - n * times
                if left:
                    self.pair_counts[old_pair] = left
                else:
                    del self.pair_counts[old_pair]
            for gone in old_pairs.keys() - new_pairs.keys():
                holders = self.chunks_with_pair[gone]
                holders.discard(chunk_index)
                if not holders:
                    del self.chunks_with_pair[gone]
            # ... and add the pairs it holds now
            for new_pair, n in new_pairs.items():
                self._add(new_pair, n * times, chunk_index)
            self.chunks[chunk_index] = new_chunk

    def stats(self) -> dict:
        return {"chunks": sum(self.chunk_counts), "distinct_chunks": len(self.chunks)}


def check_vocab_size(vocab_size: object) -> int:
    """A trainable vocabulary size: 256 (the bytes) up to ``MAX_VOCAB_SIZE``."""
    if isinstance(vocab_size, bool) or not isinstance(vocab_size, int) or vocab_size < 256:
        raise UserError(f"vocabulary size must be at least 256 (the byte values), got {vocab_size}")
    if vocab_size > MAX_VOCAB_SIZE:
        raise UserError(f"vocabulary size must be at most {MAX_VOCAB_SIZE:,}, got {vocab_size:,}")
    return vocab_size


def train_simple(text: str, vocab_size: int, pattern: str | None = None) -> list[Pair]:
    """The textbook BPE trainer, as minbpe's `BasicTokenizer.train` reads: the merges in order.

    After every merge it recounts every pair of the whole text. train() learns exactly
    the same merges (tested), but counts each distinct chunk once and, after a merge,
    recounts only the chunks that held the merged pair: seconds instead of minutes on
    TinyShakespeare. `pattern` names a split pattern of SPLIT_PATTERNS (None: the
    text is one chunk).
    """
    # split the text into chunks (merges never cross two chunks), each as its bytes 0-255
    split = _compiled_split(split_pattern_name(pattern))
    chunks = [list(chunk.encode("utf-8")) for chunk in split(text)]
    merges: list[Pair] = []
    for new_id in range(256, vocab_size):
        # count how often each pair of adjacent tokens occurs in the whole text
        pair_counts: Counter[Pair] = Counter()
        for chunk in chunks:
            pair_counts.update(pairwise(chunk))
        if not pair_counts:
            break  # every chunk is a single token: nothing is left to merge
        # the most frequent pair; on a tie max keeps the first counted, the pair seen first
        merged_pair = max(pair_counts, key=pair_counts.__getitem__)
        # mint the new token and replace the pair by it everywhere in the text
        chunks = [merge_ids(chunk, merged_pair, new_id) for chunk in chunks]
        merges.append(merged_pair)
    return merges


def train_events(
    text: str,
    vocab_size: int,
    pattern: str | None = "gpt4",
    name: str = "my-bpe",
    stop: threading.Event | None = None,
    source: str | None = None,
) -> Iterator[RunEvent]:
    """Train a BPE tokenizer: a ``Started``, a :class:`BPEProgress` per merge, a :class:`BPEDone`."""
    check_vocab_size(vocab_size)
    if not text:
        raise UserError("the training text is empty")
    start = time.perf_counter()
    tokenizer = BPETokenizer(
        pattern=pattern,
        name=name,
        meta={
            "trained_on": source or f"{len(text):,} characters",
            "created": datetime.now(UTC).isoformat(timespec="seconds"),
        },
    )
    num_merges = vocab_size - 256
    # split the text into chunks and turn each distinct chunk into its bytes (ids 0-255)
    table = ChunkTable(tokenizer.split(text))
    yield Started(label=f"BPE {vocab_size}", total=num_merges, unit="merge")
    reason = ""
    for step in range(1, num_merges + 1):
        if stop is not None and stop.is_set():
            reason = "stopped"
            break
        if not table.pair_counts:
            reason = "no pair of tokens is left to merge"
            break
        # find the pair of adjacent tokens that occurs most often
        pair, count = table.most_frequent_pair()
        if tokenizer.merged_length(pair) > MAX_TOKEN_BYTES:
            reason = f"the next token would be longer than {MAX_TOKEN_BYTES} bytes"
            break
        # mint a new token for it: the next free id, standing for the two tokens' bytes
        new_id = tokenizer.add_merge(pair)
        # replace the pair by the new token everywhere in the text
        table.merge(pair, new_id)
        yield BPEProgress(
            step=step,
            total=num_merges,
            pair=pair,
            new_id=new_id,
            count=count,
            elapsed=time.perf_counter() - start,
        )
    tokenizer.meta["vocab_size_requested"] = vocab_size
    yield BPEDone(
        tokenizer=tokenizer,
        elapsed=time.perf_counter() - start,
        stopped=reason == "stopped",
        reason=reason,
        stats=table.stats(),
    )


def train(
    text: str,
    vocab_size: int,
    pattern: str | None = "gpt4",
    name: str = "my-bpe",
    progress: Callable[[BPEProgress], None] | None = None,
    stop: threading.Event | None = None,
    source: str | None = None,
) -> BPETokenizer:
    """Train and return a tokenizer; ``progress`` is called after each merge."""
    for event in train_events(
        text, vocab_size, pattern=pattern, name=name, stop=stop, source=source
    ):
        if isinstance(event, BPEDone):
            return event.tokenizer
        if progress and isinstance(event, BPEProgress):
            progress(event)
    raise AssertionError("training ended without a result")  # pragma: no cover
