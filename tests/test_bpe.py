"""Own byte-level BPE: the known answer, parity with the recount-everything trainer
(``train_simple``), replay, versioned JSON with clear errors, progress events, and the work encoding and replay
do (counted operations; the timings live in bench/tokenization.py)."""

from __future__ import annotations

import functools
import json
import threading
import tracemalloc
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from llm_playground.core.errors import UserError
from llm_playground.core.events import Done, Progress, Started
from llm_playground.core.paths import package_data
from llm_playground.tokenization import bpe
from llm_playground.tokenization.bpe import (
    GPT4_SPLIT_PATTERN,
    MAX_TOKEN_BYTES,
    MAX_TOKENIZER_FILE_BYTES,
    MAX_VOCAB_SIZE,
    BPEDone,
    BPEProgress,
    BPETokenizer,
    merge_ids,
    train,
    train_events,
    train_simple,
)

SHAKESPEARE = package_data("tinyshakespeare.txt").read_text(encoding="utf-8")


def test_known_answer_ties_go_to_the_pair_seen_first():
    for pattern in (None, "gpt4"):
        tok = train("aaabdaaabac", 256 + 3, pattern=pattern)
        assert tok.encode("aaabdaaabac") == [258, 100, 258, 97, 99]
        assert tok.merges == [(97, 97), (256, 97), (257, 98)]
        assert train_simple("aaabdaaabac", 256 + 3, pattern) == tok.merges
        assert tok.decode([258, 100, 258, 97, 99]) == "aaabdaaabac"


@settings(max_examples=80, deadline=None)
@given(text=st.text(alphabet="ab c\n", max_size=60), extra=st.integers(1, 12))
def test_same_merges_as_recounting_everything(text, extra):
    tok = train(text or "a", 256 + extra, pattern=None)
    assert tok.merges == train_simple(text or "a", 256 + extra)


@settings(max_examples=40, deadline=None)
@given(text=st.text(max_size=120), extra=st.integers(1, 20))
def test_same_merges_as_recounting_everything_with_the_gpt4_split(text, extra):
    text = text or "x"
    tok = train(text, 256 + extra)
    assert tok.merges == train_simple(text, 256 + extra, "gpt4")


def test_same_merges_on_shakespeare():
    text = SHAKESPEARE[:20_000]
    assert train(text, 300).merges == train_simple(text, 300, "gpt4")


@pytest.fixture(scope="module")
def shakespeare_512():
    return train(SHAKESPEARE, 512, name="shakespeare-512", source="TinyShakespeare")


def test_trains_512_tokens_on_tinyshakespeare(shakespeare_512):
    """Training time is measured in bench/tokenization.py, not here."""
    tok = shakespeare_512
    assert tok.vocab_size == 512 and len(tok.merges) == 256
    assert tok.merges[0] == (32, 116)  # " t": the most frequent pair of the play text
    ids = tok.encode(SHAKESPEARE[:10_000])
    assert len(ids) < 0.6 * len(SHAKESPEARE[:10_000].encode())
    assert tok.decode(ids) == SHAKESPEARE[:10_000]


@settings(max_examples=80, deadline=None)
@given(text=st.text())
def test_round_trip_on_any_text(shakespeare_512, text):
    tok = shakespeare_512
    assert tok.decode(tok.encode(text)) == text


def test_merges_table(shakespeare_512):
    tok = shakespeare_512
    rows = tok.merges_table()
    assert len(rows) == 256
    assert rows[0] == {
        "rank": 1,
        "new_id": 256,
        "left_id": 32,
        "right_id": 116,
        "left": " ",
        "right": "t",
        "token": " t",
    }


def test_replay_watches_pairs_fuse(shakespeare_512):
    tok = shakespeare_512
    text = "First Citizen:\nBefore we proceed any further, hear me speak."
    states = tok.replay(text)
    assert states[0].step == 0 and states[0].ids == list(text.encode())
    assert states[-1].ids == tok.encode(text)
    for before, after in zip(states, states[1:]):  # noqa: B905
        assert after.step > before.step and after.fused > 0
        assert len(before.ids) - len(after.ids) == after.fused
        assert after.new_id in after.ids
    every = tok.replay(text, only_changes=False)
    assert len(every) == 257 and every[-1].ids == states[-1].ids


def test_progress_events_and_stop():
    assert issubclass(BPEProgress, Progress) and issubclass(BPEDone, Done)
    events = list(train_events("hello hello world " * 20, 270, name="h"))
    assert isinstance(events[0], Started) and events[0].total == 14 and events[0].unit == "merge"
    progress = [e for e in events if isinstance(e, BPEProgress)]
    assert isinstance(events[-1], BPEDone) and not events[-1].stopped
    assert [p.step for p in progress] == list(range(1, len(progress) + 1))
    assert progress[0].total == 14 and progress[-1].step == len(progress)
    stop = threading.Event()
    seen = []
    for event in train_events(SHAKESPEARE[:30_000], 400, stop=stop):
        seen.append(event)
        if isinstance(event, BPEProgress) and event.step == 5:
            stop.set()
    assert isinstance(seen[-1], BPEDone) and seen[-1].stopped
    assert len(seen[-1].tokenizer.merges) == 5


def test_runs_out_of_pairs():
    done = list(train_events("ab", 300))[-1]
    assert done.tokenizer.vocab_size == 257
    assert "no pair" in done.reason


def test_bad_training_input():
    with pytest.raises(UserError, match="at least 256"):
        train("hello", 255)
    with pytest.raises(UserError, match="empty"):
        train("", 300)


def test_save_and_load_versioned_json(tmp_path, shakespeare_512):
    tok = shakespeare_512
    path = tok.save(tmp_path / "t.json")
    data = json.loads(path.read_text())
    assert data["format"] == "llm-playground/bpe-tokenizer" and data["version"] == 1
    assert data["vocab_size"] == 512 and len(data["merges"]) == 256
    assert data["meta"]["trained_on"] == "TinyShakespeare"
    loaded = BPETokenizer.load(path)
    assert loaded.merges == tok.merges and loaded.pattern == tok.pattern
    assert loaded.encode(SHAKESPEARE[:2000]) == tok.encode(SHAKESPEARE[:2000])


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("not json at all", "not valid JSON"),
        ('{"model": {"type": "BPE"}}', "not an LLM Playground BPE tokenizer"),
        ("[1, 2, 3]", "not an LLM Playground BPE tokenizer"),
        ('{"format": "llm-playground/bpe-tokenizer", "version": 7, "merges": []}', "newer version"),
        ('{"format": "llm-playground/bpe-tokenizer", "version": 1, "merges": [[1]]}', "damaged"),
        (
            '{"format": "llm-playground/bpe-tokenizer", "version": 1, "merges": [[300, 1]]}',
            "damaged",
        ),
        (
            '{"format": "llm-playground/bpe-tokenizer", "version": 1, "merges": [[1, 2]], "vocab_size": 999}',
            "damaged",
        ),
        (
            '{"format": "llm-playground/bpe-tokenizer", "version": 1, "merges": [], "pattern": "(("}',
            "not one of the known patterns",
        ),
    ],
)
def test_foreign_or_damaged_files_are_refused_clearly(tmp_path, content, message):
    path = tmp_path / "x.json"
    path.write_text(content)
    with pytest.raises(UserError, match=message):
        BPETokenizer.load(path)


def test_binary_or_missing_file(tmp_path):
    (tmp_path / "b.json").write_bytes(b"\x80\x81\xff")
    with pytest.raises(UserError, match="not a BPE tokenizer JSON file"):
        BPETokenizer.load(tmp_path / "b.json")
    with pytest.raises(UserError, match="no tokenizer file"):
        BPETokenizer.load(tmp_path / "absent.json")


# --- hostile files: refused fast, with the limit in the message ---------------------------


def _bpe_file(tmp_path, **fields) -> Path:
    data = {"format": "llm-playground/bpe-tokenizer", "version": 1, "merges": [], **fields}
    path = tmp_path / "hostile.json"
    path.write_text(json.dumps(data))
    return path


def test_merges_that_double_a_token_forty_times_are_refused_fast(tmp_path):
    # a, aa, aaaa, ... : merge i fuses the newest token with itself, 2**41 bytes at the end
    merges = [[97, 97]] + [[256 + i, 256 + i] for i in range(40)]
    path = _bpe_file(tmp_path, merges=merges)
    assert path.stat().st_size < 600
    tracemalloc.start()
    with pytest.raises(UserError, match=f"at most {MAX_TOKEN_BYTES} bytes"):
        BPETokenizer.load(path)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert peak < 5 * 1024 * 1024  # refused from the lengths, before any token is built


@pytest.mark.parametrize("pattern", [r"(a+)+$", r"(\w|\w)*x", GPT4_SPLIT_PATTERN + "|x"])
def test_split_patterns_come_only_from_the_named_list(tmp_path, pattern):
    with pytest.raises(UserError, match="not one of the known patterns"):
        BPETokenizer.load(_bpe_file(tmp_path, pattern=pattern))
    # the exact text of a listed pattern is recognised by its name
    loaded = BPETokenizer.load(_bpe_file(tmp_path, pattern=GPT4_SPLIT_PATTERN))
    assert loaded.pattern == "gpt4"


def test_too_many_merges_and_too_large_files_are_refused(tmp_path):
    merges = [[97, 98]] * (MAX_VOCAB_SIZE - 255)
    with pytest.raises(UserError, match=f"at most {MAX_VOCAB_SIZE - 256:,}"):
        BPETokenizer.load(_bpe_file(tmp_path, merges=merges))
    big = tmp_path / "big.json"
    with big.open("wb") as f:
        f.truncate(MAX_TOKENIZER_FILE_BYTES + 1)
    with pytest.raises(UserError, match="larger than the 16 MB"):
        BPETokenizer.load(big)
    with pytest.raises(UserError, match="at most 65,536"):
        train("hello", MAX_VOCAB_SIZE + 1)


def test_training_stops_before_a_token_grows_past_the_limit():
    done = list(train_events("a" * 5000, 300, pattern="none"))[-1]
    assert f"longer than {MAX_TOKEN_BYTES} bytes" in done.reason
    assert max(len(t) for t in done.tokenizer.vocab) <= MAX_TOKEN_BYTES


@settings(max_examples=40, deadline=None)
@given(text=st.text(alphabet="abc d\n'!é", max_size=120), pattern=st.sampled_from(["gpt4", "none"]))
def test_replay_of_changes_matches_applying_every_merge(text, pattern):
    tok = train("abc abd abcd cab dab ab a b c d é!\n" * 5, 300, pattern=pattern)
    every = tok.replay(text, only_changes=False)
    changes = [s for s in every if s.step == 0 or s.fused]
    fast = tok.replay(text)
    assert [(s.step, s.pair, s.new_id, s.ids, s.fused) for s in fast] == [
        (s.step, s.pair, s.new_id, s.ids, s.fused) for s in changes
    ]
    assert fast[-1].ids == tok.encode(text)
    limited = tok.replay(text, max_steps=10)
    assert all(s.step <= 10 for s in limited)
    assert limited == [s for s in fast if s.step <= 10]


def counting(monkeypatch, owner, name: str) -> list[int]:
    """Count the calls of ``owner.<name>`` (one entry per call) while the test runs."""
    calls: list[int] = []
    original = getattr(owner, name)

    def counted(*args, **kwargs):
        calls.append(1)
        return original(*args, **kwargs)

    monkeypatch.setattr(owner, name, counted)
    return calls


def test_replay_cost_follows_the_text_not_the_merges(monkeypatch):
    # 60,000 merges, every one of them a distinct pair of bytes
    tok = BPETokenizer(merges=[(a, b) for a in range(1, 256) for b in range(1, 256)][:60_000])
    text = SHAKESPEARE[:600]
    merges = counting(monkeypatch, bpe, "merge_ids")
    states = tok.replay(text)
    assert states[-1].ids == tok.encode(text) and len(states) > 1
    # each merge applied shortens the text: at most one per byte, not one per merge known
    assert 0 < len(merges) <= len(text.encode())


@settings(max_examples=60, deadline=None)
@given(text=st.text(alphabet="aab c\n", min_size=0, max_size=400))
def test_long_chunks_encode_exactly_like_the_simple_loop(text):
    tok = _aab_tokenizer()
    ids = list(text.encode("utf-8"))
    assert tok._encode_long(list(ids)) == _simple_encode(tok, ids)


@functools.cache
def _aab_tokenizer() -> BPETokenizer:
    return train("aab aab ab aaab c\nba a a b" * 30, 320, pattern="none")


def _simple_encode(tok: BPETokenizer, ids: list[int]) -> list[int]:
    while len(ids) >= 2:
        pair = min(zip(ids, ids[1:]), key=lambda p: tok.ranks.get(p, 1 << 62))  # noqa: B905
        if pair not in tok.ranks:
            break
        ids = merge_ids(ids, pair, tok.ranks[pair])
    return ids


def test_a_long_text_without_pre_split_encodes_in_n_log_n(monkeypatch):
    tok = train(SHAKESPEARE[:5_000], 300, pattern="none")
    text = SHAKESPEARE[:100_000]  # one chunk: the simple loop would rescan it per merge
    pops = counting(monkeypatch, bpe.heapq, "heappop")
    merges = counting(monkeypatch, bpe, "merge_ids")
    ids = tok.encode(text)
    assert tok.decode(ids) == text and len(ids) < 100_000
    # one heap entry per pair at the start and at most two per merge: a few per byte
    assert not merges and 0 < len(pops) <= 3 * len(text.encode())
