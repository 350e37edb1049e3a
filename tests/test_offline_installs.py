"""Offline models and tokenizer files are made once, on first use; two people who start
at the same moment (two threads of one server) each end with the whole thing: every copy
is built under a temporary name of its own, renamed into place, and a copy someone else
finished first is kept."""

from __future__ import annotations

import hashlib
import threading
import time
import types
from pathlib import Path

import pytest

from llm_playground.core.paths import ENV_CACHE, get_paths
from llm_playground.generation import registry
from llm_playground.tokenization import assets


@pytest.fixture(autouse=True)
def empty_cache(tmp_path, monkeypatch) -> Path:
    """A cache of its own (models, downloads and tiktoken files live there), empty."""
    cache = tmp_path / "cache"
    monkeypatch.setenv(ENV_CACHE, str(cache))
    return cache


def _at_once(n: int, work) -> tuple[list, list[BaseException]]:
    """Run ``work()`` in ``n`` threads released together; their results and errors."""
    barrier, results, errors = threading.Barrier(n), [], []

    def run() -> None:
        barrier.wait()
        try:
            results.append(work())
        except BaseException as error:  # noqa: BLE001 - reported to the test
            errors.append(error)

    threads = [threading.Thread(target=run) for _ in range(n)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return results, errors


def test_a_gguf_file_in_parts_is_reassembled_by_three_at_once(tmp_path, monkeypatch):
    parts = []
    for i in range(3):
        part = tmp_path / f"part{i}"
        part.write_bytes(bytes([i + 1]) * 3_000_000)
        parts.append(part)
    whole = b"".join(p.read_bytes() for p in parts)
    spec = registry.OfflineSpec(
        name="tiny",
        description="",
        distribution="none",
        files=("0", "1", "2"),
        gguf_name="tiny.gguf",
        sha256=hashlib.sha256(whole).hexdigest(),
        chat=False,
        licence="",
    )
    monkeypatch.setattr(registry, "_package_file", lambda dist, rel: parts[int(rel)])
    paths = get_paths().ensure()
    results, errors = _at_once(3, lambda: registry._gguf_source(spec, paths))
    assert not errors, errors
    assert len(results) == 3 and results[0].read_bytes() == whole
    assert [p.name for p in paths.downloads.iterdir()] == ["tiny.gguf"]  # no temporary left


class _SlowSaver:
    """Stands in for a dequantized model or its tokenizer: saving takes a while."""

    def __init__(self, file_name: str) -> None:
        self.file_name = file_name
        self.config = types.SimpleNamespace()
        self.hf_quantizer = None

    def save_pretrained(self, folder, **kwargs) -> None:
        Path(folder).mkdir(parents=True, exist_ok=True)
        (Path(folder) / self.file_name).write_bytes(b"w" * 100_000)
        time.sleep(0.2)  # the other conversions run meanwhile


def test_two_first_loads_of_a_model_at_once_both_get_the_whole_copy(monkeypatch):
    import transformers

    name = next(iter(registry.OFFLINE_MODELS))
    paths = get_paths().ensure()
    gguf = paths.downloads / "model.gguf"
    gguf.write_bytes(b"gguf")
    monkeypatch.setattr(registry, "_gguf_source", lambda spec, p: gguf)
    monkeypatch.setattr(
        transformers.AutoModelForCausalLM,
        "from_pretrained",
        lambda *a, **k: _SlowSaver("model.safetensors"),
    )
    monkeypatch.setattr(
        transformers.AutoTokenizer, "from_pretrained", lambda *a, **k: _SlowSaver("tokenizer.json")
    )
    results, errors = _at_once(3, lambda: registry.convert_offline_model(name, paths))
    assert not errors, errors
    target = registry.offline_model_dir(name, paths)
    assert results == [target] * 3 and registry.is_converted(name, paths)
    assert sorted(p.name for p in target.iterdir()) == [
        registry.CONVERTED_MARK,
        "model.safetensors",
        "tokenizer.json",
    ]
    assert [p.name for p in target.parent.iterdir()] == [target.name]  # no temporary left


def test_an_unfinished_copy_is_replaced_and_a_finished_one_kept(tmp_path):
    def folder(name: str, mark: bool, text: str) -> Path:
        path = tmp_path / name
        path.mkdir()
        (path / "weights").write_text(text)
        if mark:
            (path / registry.CONVERTED_MARK).write_text("{}")
        return path

    target = folder("model", mark=True, text="first")
    mine = folder(".model.1.tmp", mark=True, text="second")
    registry._move_into_place(mine, target, replace=False)  # someone else finished first
    assert (target / "weights").read_text() == "first" and mine.is_dir()
    unfinished = folder("other", mark=False, text="half")
    registry._move_into_place(mine, unfinished, replace=False)
    assert (unfinished / "weights").read_text() == "second" and not mine.exists()
    again = folder(".model.2.tmp", mark=True, text="third")
    registry._move_into_place(again, target, replace=True)  # --force
    assert (target / "weights").read_text() == "third"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model", "other"]


def test_tiktoken_files_installed_by_three_at_once_are_whole():
    paths = get_paths().ensure()
    results, errors = _at_once(3, lambda: assets.install_tiktoken_assets(paths, ["gpt2"]))
    assert not errors, errors
    assert "installed" in {r.action for found in results for r in found}
    assert all(ok for _, ok, _ in assets.verify_assets(paths) if _.startswith("gpt2"))
    assert not [p for p in paths.tiktoken_cache.iterdir() if p.name.endswith(".tmp")]
