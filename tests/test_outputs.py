"""Where Lab 4 writes: names typed in the app stay inside the playground home, uploads are
capped, files and folders are renamed into place, and nothing existing is replaced unasked."""

from __future__ import annotations

import pytest

from llm_playground.core.errors import UserError
from llm_playground.finetuning.outputs import (
    OutputExists,
    check_new_file,
    check_upload,
    home_file,
    replace_dir,
    temp_dir_beside,
    write_text_files,
)


def test_home_file_keeps_names_inside_the_home(playground_home):
    assert home_file("votes", "", suffix=".sqlite") == playground_home / "votes.sqlite"
    assert home_file("p.jsonl", "exports", suffix=".jsonl") == playground_home / "exports/p.jsonl"
    for typed in ("../x", "/etc/passwd", "a/b", "a\\b", ".hidden", "~/x", "", "x" * 200):
        with pytest.raises(UserError):
            home_file(typed, "exports")


def test_uploads_are_capped_and_must_be_utf8():
    assert check_upload(b"hello", "a.jsonl") == "hello"
    with pytest.raises(UserError, match="uploads are limited to 1 MB"):
        check_upload(b"x" * 1_000_001, "big.jsonl", limit=1_000_000)
    with pytest.raises(UserError, match="not UTF-8"):
        check_upload(b"\xff\xfe", "bin.jsonl")


def test_files_are_renamed_into_place_and_not_replaced_unasked(tmp_path):
    out = tmp_path / "sub" / "a.txt"
    write_text_files([(out, "one\n"), (tmp_path / "b.txt", "two\n")])
    assert out.read_text() == "one\n" and (tmp_path / "b.txt").read_text() == "two\n"
    with pytest.raises(OutputExists) as info:
        check_new_file(out, force=False)
    assert info.value.path == out and "exists already" in str(info.value)
    assert check_new_file(out, force=True) == out
    with pytest.raises(UserError, match="folder"):
        check_new_file(tmp_path, force=True)
    assert sorted(p.name for p in out.parent.iterdir()) == ["a.txt"]  # no temporary left


def test_a_folder_is_replaced_whole(tmp_path):
    out = tmp_path / "adapter"
    out.mkdir()
    (out / "old.bin").write_text("old")
    tmp = temp_dir_beside(out)
    (tmp / "new.bin").write_text("new")
    replace_dir(tmp, out)
    assert sorted(p.name for p in out.iterdir()) == ["new.bin"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["adapter"]
