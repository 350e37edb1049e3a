"""Lab 1 benchmark on TinyShakespeare, every figure measured in this one run.

1. tokenize-with-pieces (ids, piece strings, byte offsets) over raw ``tiktoken.encode``
   with the same encoding (target: at most 1.5x);
2. the same over Hugging Face ``tokenizers`` (GPT-2 byte-level BPE built from the shipped
   vocabulary files), encoding with offsets;
3. own BPE training to a vocabulary of 512 (target: under 30 s) over Hugging Face's
   ``BpeTrainer`` to the same size on the same text;
4. the replay of a short text with 60,000 merges applying every merge in turn over
   applying only those that change it (target: at least 50x: the cost follows the text),
   and one 100,000-character chunk with no pre-split over
   the same text split by the GPT-2 pattern (target: at most 5x: the heap, not a rescan
   per merge). The tests count these operations; the timings live here.

Run: ``python bench/tokenization.py`` (after ``llm-playground assets install``).
"""

from __future__ import annotations

import sys
from pathlib import Path

# bench/inspect.py bears the standard library's name (which torch and dataclasses import): run
# as a script, this folder must not come first on the import path.
if sys.path and Path(sys.path[0]).resolve() == Path(__file__).resolve().parent:
    sys.path.pop(0)

import json
import os
import tempfile
import time
from pathlib import Path

from llm_playground.core.paths import package_data
from llm_playground.tokenization import assets
from llm_playground.tokenization.bpe import BPETokenizer, train
from llm_playground.tokenization.tokenizer import get_tokenizer, tokenize_with_pieces

REPEATS = 5


def best_of(fn, repeats: int = REPEATS) -> float:
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - start)
    return best


def hf_gpt2_tokenizer():
    """GPT-2's byte-level BPE in HF ``tokenizers``, from the shipped encoder.json / vocab.bpe."""
    from tokenizers import Tokenizer, decoders, pre_tokenizers
    from tokenizers.models import BPE

    folder = Path(tempfile.mkdtemp())
    (folder / "vocab.json").write_bytes(package_data("gpt2", "encoder.json").read_bytes())
    merges = package_data("gpt2", "vocab.bpe").read_text(encoding="utf-8").splitlines()
    (folder / "merges.txt").write_text("\n".join(merges) + "\n", encoding="utf-8")
    tok = Tokenizer(BPE.from_file(str(folder / "vocab.json"), str(folder / "merges.txt")))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    return tok


def hf_train_bpe(text: str, vocab_size: int) -> float:
    from tokenizers import Tokenizer, pre_tokenizers
    from tokenizers.models import BPE
    from tokenizers.trainers import BpeTrainer

    tok = Tokenizer(BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    trainer = BpeTrainer(
        vocab_size=vocab_size,
        show_progress=False,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        min_frequency=0,
    )
    start = time.perf_counter()
    tok.train_from_iterator([text], trainer=trainer)
    return time.perf_counter() - start


def replay_and_long_chunk(text: str) -> tuple[float, float]:
    """Replay with many merges over few, and one long chunk over pre-split chunks (ratios)."""
    many = BPETokenizer(merges=[(a, b) for a in range(1, 256) for b in range(1, 256)][:60_000])
    sample = text[:600]
    changes = best_of(lambda: many.replay(sample))
    every = best_of(lambda: many.replay(sample, only_changes=False), repeats=1)
    print(
        f"replay of 600 characters, 60,000 merges: the merges that change it "
        f"{changes * 1000:7.1f} ms, every merge in turn {every * 1000:7.1f} ms   "
        f"ratio {every / changes:6.0f}x  (target >= 50x)"
    )
    one_chunk = train(text[:5_000], 300, pattern="none")
    split = train(text[:5_000], 300, pattern="gpt2")
    body = text[:100_000]
    long_time = best_of(lambda: one_chunk._encode_long(list(body.encode())), repeats=3)
    split_time = best_of(lambda: BPETokenizer(merges=split.merges, pattern="gpt2").encode(body))
    print(
        f"100,000 characters: one chunk {long_time:6.2f} s, split by GPT-2's pattern "
        f"{split_time:6.2f} s   ratio {long_time / split_time:4.2f}x  (target <= 5x)"
    )
    return every / changes, long_time / split_time


def main() -> None:
    assets.install_tiktoken_assets()
    text = package_data("tinyshakespeare.txt").read_text(encoding="utf-8")
    mb = len(text.encode("utf-8")) / 1e6
    print(
        f"TinyShakespeare: {len(text):,} characters, {mb:.2f} MB; best of {REPEATS}; "
        f"{os.cpu_count()} CPUs visible; threads: RAYON_NUM_THREADS={os.environ.get('RAYON_NUM_THREADS', 'unset')}"
    )
    rows = {}

    for name in ("gpt2", "cl100k_base", "o200k_base"):
        tok = get_tokenizer(name)
        tokenize_with_pieces(tok, text)  # warm the piece tables
        raw = best_of(lambda tok=tok: tok.encoding.encode_ordinary(text))
        ours = best_of(lambda tok=tok: tokenize_with_pieces(tok, text))
        rows[name] = (raw, ours)
        print(
            f"{name:<12} tiktoken.encode {raw * 1000:7.1f} ms   with pieces {ours * 1000:7.1f} ms   "
            f"ratio {ours / raw:4.2f}x  (target <= 1.5x)   {mb / ours:5.1f} MB/s"
        )

    hf = hf_gpt2_tokenizer()
    ids_hf = hf.encode(text[:20_000]).ids
    assert ids_hf == get_tokenizer("gpt2").encode(text[:20_000]), (
        "HF GPT-2 BPE differs from tiktoken's gpt2"
    )
    hf_time = best_of(lambda: hf.encode(text), repeats=3)
    ours = rows["gpt2"][1]
    print(
        f"{'gpt2':<12} HF tokenizers encode (ids, offsets) {hf_time * 1000:7.1f} ms   with pieces (ours) "
        f"{ours * 1000:7.1f} ms   ratio {ours / hf_time:4.2f}x"
    )

    start = time.perf_counter()
    bpe = train(text, 512)
    own = time.perf_counter() - start
    hf_train = hf_train_bpe(text, 512)
    print(
        f"BPE 512      own trainer {own:6.2f} s (target < 30 s)   HF BpeTrainer {hf_train:6.2f} s   "
        f"ratio {own / hf_train:5.1f}x   merges {len(bpe.merges)}"
    )
    replay_ratio, long_ratio = replay_and_long_chunk(text)
    summary = {
        "replay_every_merge_over_changes": round(replay_ratio, 1),
        "one_chunk_over_split": round(long_ratio, 3),
        "pieces_over_tiktoken": {k: round(v[1] / v[0], 3) for k, v in rows.items()},
        "pieces_over_hf_tokenizers_gpt2": round(ours / hf_time, 3),
        "bpe512_seconds": round(own, 3),
        "hf_bpe512_seconds": round(hf_train, 3),
    }
    print(json.dumps(summary))
    ok = all(v[1] / v[0] <= 1.5 for v in rows.values()) and own < 30
    ok = ok and replay_ratio >= 50 and long_ratio <= 5
    print("targets met" if ok else "TARGET MISSED")


if __name__ == "__main__":
    main()
