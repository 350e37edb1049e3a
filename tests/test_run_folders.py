"""Each run gets a folder of its own, even when two people start in the same second."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor

import pytest

from llm_playground.core import paths
from llm_playground.core.errors import UserError


def test_two_runs_in_the_same_second_get_different_folders(tmp_path, monkeypatch):
    monkeypatch.setattr(paths.time, "strftime", lambda fmt: "20260101-120000")  # one second
    first = paths.unique_run_dir(tmp_path / ".scratch", "run")
    second = paths.unique_run_dir(tmp_path / ".scratch", "run")
    assert first != second
    assert first.is_dir() and second.is_dir() and not any(first.iterdir())
    assert first.name.startswith("run-20260101-120000-")


def test_a_name_drawn_twice_is_drawn_again_never_shared(tmp_path, monkeypatch):
    draws = iter(["aaaaaaaa", "aaaaaaaa", "bbbbbbbb"])
    monkeypatch.setattr(paths.time, "strftime", lambda fmt: "20260101-120000")
    monkeypatch.setattr(paths.secrets, "token_hex", lambda n: next(draws))
    first = paths.unique_run_dir(tmp_path, "run")
    second = paths.unique_run_dir(tmp_path, "run")  # draws "aaaaaaaa" again: taken, so "bbbb…"
    assert (first.name, second.name) == (
        "run-20260101-120000-aaaaaaaa",
        "run-20260101-120000-bbbbbbbb",
    )
    monkeypatch.setattr(paths.secrets, "token_hex", lambda n: "aaaaaaaa")
    with pytest.raises(UserError, match="could not create a new run folder"):
        paths.unique_run_dir(tmp_path, "run", attempts=3)


def test_many_threads_starting_at_once_each_get_their_own_folder(tmp_path, monkeypatch):
    monkeypatch.setattr(paths.time, "strftime", lambda fmt: "20260101-120000")
    start = threading.Barrier(16)

    def make(_):
        start.wait()
        return paths.unique_run_dir(tmp_path / "runs" / ".scratch", "run")

    with ThreadPoolExecutor(16) as pool:
        folders = list(pool.map(make, range(64)))
    assert len(set(folders)) == 64
    assert sorted(p.name for p in (tmp_path / "runs" / ".scratch").iterdir()) == sorted(
        f.name for f in folders
    )


def test_a_new_path_is_checked_without_creating_anything(tmp_path):
    target = tmp_path / "new" / "deeper" / "x.json"
    assert paths.check_new_path(target) == target
    assert not (tmp_path / "new").exists()
    (tmp_path / "file.txt").write_text("x")
    with pytest.raises(UserError, match="is not a folder"):
        paths.check_new_path(tmp_path / "file.txt" / "sub" / "x.json", "--out")


def test_two_saves_under_one_name_never_mix_their_files(tmp_path):
    from llm_playground.training.checkpoints import save_run_as

    sources = []
    for who in ("alice", "bob"):
        src = tmp_path / who
        src.mkdir()
        for i in range(20):
            (src / f"part{i}.txt").write_text(who)
        sources.append(src)
    start = threading.Barrier(2)

    def save(src):
        start.wait()
        try:
            return save_run_as(src, "shared")
        except UserError as exc:
            return exc

    with ThreadPoolExecutor(2) as pool:
        results = list(pool.map(save, sources))
    saved = [r for r in results if not isinstance(r, UserError)]
    assert len(saved) == 1 and "already exists" in str(next(r for r in results if r not in saved))
    owners = {p.read_text() for p in saved[0].iterdir()}
    assert len(owners) == 1 and len(list(saved[0].iterdir())) == 20
