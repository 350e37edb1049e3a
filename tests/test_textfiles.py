"""Bounded reads of people's files, names inside the home, and outputs written safely."""

from __future__ import annotations

import os

import pytest

from llm_playground.core import jsonl, textfiles
from llm_playground.core.errors import UserError
from llm_playground.core.paths import check_name, named_file
from llm_playground.core.textfiles import read_text_file, write_text_atomic


def test_reads_are_bounded_with_the_limit_in_the_message(tmp_path):
    big = tmp_path / "big.txt"
    big.write_text("x" * 3000)
    assert read_text_file(big, max_bytes=3000) == "x" * 3000
    with pytest.raises(UserError, match="larger than the 2 kB a text file may hold"):
        read_text_file(big, max_bytes=2048)
    with pytest.raises(UserError, match="is a folder"):
        read_text_file(tmp_path)
    with pytest.raises(UserError, match="text file not found"):
        read_text_file(tmp_path / "absent.txt")


def test_jsonl_is_bounded(monkeypatch):
    monkeypatch.setattr(jsonl, "MAX_LINE_BYTES", 50)
    with pytest.raises(UserError, match="t.jsonl line 2: longer than the 50 bytes"):
        jsonl.parse_jsonl('{"a": 1}\n{"a": "' + "y" * 60 + '"}\n', "t.jsonl")
    monkeypatch.setattr(jsonl, "MAX_ROWS", 2)
    with pytest.raises(UserError, match="more than 2 lines"):
        jsonl.parse_jsonl('{"a": 1}\n' * 3, "t.jsonl")
    monkeypatch.setattr(jsonl, "MAX_JSONL_BYTES", 10)
    with pytest.raises(UserError, match="larger than the 10 bytes allowed"):
        jsonl.parse_jsonl('{"a": 1}\n' * 3, "t.jsonl")
    monkeypatch.undo()
    with pytest.raises(UserError, match="deep.jsonl line 1: nested too deeply"):
        jsonl.parse_jsonl("[" * 200_000 + "]" * 200_000, "deep.jsonl")


def test_names_stay_inside_their_folder(tmp_path):
    assert check_name(" my-bpe.v2 ") == "my-bpe.v2"
    for bad in ("../x", "/etc/passwd", "a/b", "..", ".hidden", "", "a" * 90, "x..y"):
        with pytest.raises(UserError, match="must be letters"):
            check_name(bad)
    assert named_file(tmp_path, "ok", ".json") == tmp_path / "ok.json"
    (tmp_path / "link.json").symlink_to("/etc/hostname")
    with pytest.raises(UserError, match="points outside"):
        named_file(tmp_path, "link", ".json")


def test_atomic_writes_refuse_replace_and_leave_nothing_behind(tmp_path, monkeypatch):
    out = tmp_path / "sub" / "out.json"
    write_text_atomic(out, "one")
    with pytest.raises(UserError, match="already exists"):
        write_text_atomic(out, "two")
    assert out.read_text() == "one"
    write_text_atomic(out, "two", overwrite=True)
    assert out.read_text() == "two" and oct(out.stat().st_mode & 0o777) == "0o644"
    with pytest.raises(UserError, match="is a folder"):
        write_text_atomic(tmp_path / "sub", "x", overwrite=True)

    def crash(src, dst):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "replace", crash)
    with pytest.raises(UserError, match="cannot write .*No space left"):
        write_text_atomic(out, "three", overwrite=True)
    assert out.read_text() == "two"
    assert sorted(p.name for p in out.parent.iterdir()) == ["out.json"]
    monkeypatch.undo()
    with pytest.raises(UserError, match="cannot write"):
        write_text_atomic("/proc/no-such-place/x.json", "x")
    assert textfiles.size_text(16 * 1024 * 1024) == "16 MB"
