"""Text in, token batches out: the corpus, its tokenizer, the 90/10 split and batches.

A language model learns from pairs of blocks: ``x`` is ``block_size`` tokens of text and
``y`` the same tokens shifted one place to the left, so that at every position the model
is asked for the next token. :func:`decoded_batch` shows one batch that way.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from pathlib import Path

import torch

from llm_playground.core.errors import UserError
from llm_playground.core.paths import package_data
from llm_playground.core.textfiles import read_text_file

TRAIN_FRACTION = 0.9
TOKENIZER_CHOICES = ("char", "gpt2")


def load_text(path: str | Path | None = None) -> str:
    """The training text: a UTF-8 file, or the shipped TinyShakespeare when ``path`` is None."""
    return read_text_file(path or package_data("tinyshakespeare.txt"))


def tinyshakespeare_validation() -> str:
    """The last 10 % of TinyShakespeare's characters: the validation split of the character model."""
    text = load_text()
    return text[int(TRAIN_FRACTION * len(text)) :]


# --- tokenizers --------------------------------------------------------------------------


def load_tokenizer(spec: str, text: str | None = None):
    """The tokenizer a run names: ``char``, ``gpt2``, ``bpe:<name>`` or a saved tokenizer JSON file.

    ``char`` takes its vocabulary from ``text`` (the training text), sorted as nanoGPT does,
    so TinyShakespeare gives the classic 65 characters and another text its own set.
    Every tokenizer returned has ``encode``, ``decode``, ``vocab_size``, ``name`` and ``kind``.
    """
    from llm_playground.tokenization.tokenizer import CharTokenizer, get_tokenizer

    spec = (spec or "char").strip()
    if spec == "char":
        if text is None:
            return get_tokenizer("char")
        return CharTokenizer.from_text(text)
    if spec == "gpt2":
        try:
            return get_tokenizer("gpt2")
        except UserError:  # tiktoken's cache not installed: read the files shipped in the package
            return _ShippedGPT2()
    if not spec.startswith("bpe:") and not Path(spec).expanduser().is_file():
        raise UserError(
            f"unknown tokenizer {spec!r}: use char, gpt2, bpe:<name> or the path of a saved "
            "tokenizer JSON file"
        )
    return get_tokenizer(spec)


class _ShippedGPT2:
    """GPT-2's byte-level BPE from the files shipped in the package, through tiktoken."""

    kind = "tiktoken"
    name = "gpt2"

    def __init__(self):
        import tiktoken
        from tiktoken.load import data_gym_to_mergeable_bpe_ranks

        ranks = data_gym_to_mergeable_bpe_ranks(
            str(package_data("gpt2", "vocab.bpe")), str(package_data("gpt2", "encoder.json"))
        )
        self._enc = tiktoken.Encoding(
            "gpt2",
            pat_str=r"""'(?:[sdmt]|ll|ve|re)| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+""",
            mergeable_ranks=ranks,
            special_tokens={"<|endoftext|>": 50256},
        )

    @property
    def vocab_size(self) -> int:
        return self._enc.n_vocab

    def encode(self, text: str) -> list[int]:
        return self._enc.encode_ordinary(text)

    def decode(self, ids) -> str:
        return self._enc.decode([int(i) for i in ids])


def tokenizer_spec(tokenizer) -> dict:
    """How a checkpoint records its tokenizer: the JSON of a char or BPE tokenizer, or a name."""
    kind = getattr(tokenizer, "kind", "")
    if kind == "char":
        return {"type": "json", "json": tokenizer.to_dict(), "name": tokenizer.name}
    if kind == "bpe":
        return {"type": "json", "json": tokenizer.bpe.to_dict(), "name": tokenizer.name}
    return {"type": "name", "name": tokenizer.name}


def tokenizer_from_spec(spec: dict):
    """The tokenizer :func:`tokenizer_spec` recorded."""
    from llm_playground.tokenization.bpe import BPETokenizer
    from llm_playground.tokenization.tokenizer import CHAR_FORMAT, BPEAdapter, CharTokenizer

    if spec.get("type") == "name":
        return load_tokenizer(spec["name"])
    data = spec["json"]
    if isinstance(data, dict) and data.get("format") == CHAR_FORMAT:
        return CharTokenizer.from_dict(data, source="the checkpoint's tokenizer")
    return BPEAdapter(
        BPETokenizer.from_dict(data, source="the checkpoint's tokenizer"), name=spec.get("name")
    )


# --- corpus and batches ------------------------------------------------------------------


@dataclass
class Corpus:
    """A tokenized text split 90/10 into training and validation tokens."""

    text: str
    tokenizer: object
    train: torch.Tensor
    val: torch.Tensor
    source: str

    @property
    def vocab_size(self) -> int:
        return int(self.tokenizer.vocab_size)


_CACHE: dict[tuple, Corpus] = {}
_CACHE_LOCK = threading.Lock()


def load_corpus(data: str | None = None, tokenizer: str = "char") -> Corpus:
    """Load, tokenize and split a text (kept in memory per file and tokenizer)."""
    file = Path(data).expanduser() if data else package_data("tinyshakespeare.txt")
    try:
        stat = file.stat()
        key = (str(file.resolve()), stat.st_mtime_ns, stat.st_size, tokenizer)
    except OSError:
        key = None
    with _CACHE_LOCK:
        if key and key in _CACHE:
            return _CACHE[key]
    text = load_text(file)
    tok = load_tokenizer(tokenizer, text)
    ids = torch.tensor(tok.encode(text), dtype=torch.long)
    n = int(TRAIN_FRACTION * len(ids))
    corpus = Corpus(text=text, tokenizer=tok, train=ids[:n], val=ids[n:], source=str(file))
    if key:
        with _CACHE_LOCK:
            _CACHE[key] = corpus
    return corpus


def batch_starts(
    n_tokens: int, block_size: int, batch_size: int, generator: torch.Generator | None = None
) -> torch.Tensor:
    """Random start offsets of ``batch_size`` blocks that fit in ``n_tokens`` tokens."""
    if n_tokens <= block_size:
        raise UserError(
            f"block size {block_size} is larger than the data allows ({n_tokens} tokens)"
        )
    return torch.randint(n_tokens - block_size, (batch_size,), generator=generator)


def get_batch(
    data: torch.Tensor,
    block_size: int,
    batch_size: int,
    generator: torch.Generator | None = None,
    device: str | torch.device = "cpu",
    rows: slice | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """``x`` blocks of ``block_size`` tokens and ``y`` the same blocks shifted by one token.

    ``rows`` keeps a share of the batch (distributed training: every process draws the same
    global batch and trains on its own slice of it).
    """
    starts = batch_starts(len(data), block_size, batch_size, generator)
    if rows is not None:
        starts = starts[rows]
    x = torch.stack([data[i : i + block_size] for i in starts.tolist()])
    y = torch.stack([data[i + 1 : i + 1 + block_size] for i in starts.tolist()])
    if torch.device(device).type == "cuda":
        return x.pin_memory().to(device, non_blocking=True), y.pin_memory().to(
            device, non_blocking=True
        )
    return x.to(device), y.to(device)


@dataclass(frozen=True)
class DecodedRow:
    x_ids: list[int]
    y_ids: list[int]
    x_tokens: list[str]
    y_tokens: list[str]


def decoded_batch(
    corpus: Corpus, block_size: int, batch_size: int, seed: int = 1337, split: str = "train"
) -> list[DecodedRow]:
    """One batch as the model sees it, with every token decoded on its own."""
    data = corpus.train if split == "train" else corpus.val
    gen = torch.Generator().manual_seed(seed)
    x, y = get_batch(data, block_size, batch_size, gen)
    dec = corpus.tokenizer.decode
    return [
        DecodedRow(
            xr.tolist(),
            yr.tolist(),
            [dec([t]) for t in xr.tolist()],
            [dec([t]) for t in yr.tolist()],
        )
        for xr, yr in zip(x, y, strict=True)
    ]
