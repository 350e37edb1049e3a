"""Bad numbers and existing outputs in ``sft``, ``dpo`` and ``prefs``: one line, exit 2, no
traceback, nothing written; ``--force`` replaces what the command wrote before.

The checks run before any model loads, so the commands are called in this process."""

from __future__ import annotations

import json

import pytest

from llm_playground.cli import main
from llm_playground.finetuning.preferences import PreferenceStore


def run(capsys, *argv: str) -> tuple[int, str, str]:
    try:
        code = main(list(argv))
    except SystemExit as exc:  # argparse's own usage errors
        code = exc.code
    out, err = capsys.readouterr()
    return code, out, err


def one_line_error(code: int, err: str) -> bool:
    return code == 2 and len(err.strip().splitlines()) == 1 and "Traceback" not in err


@pytest.fixture
def data(tmp_path):
    path = tmp_path / "tiny.jsonl"
    path.write_text(json.dumps({"instruction": "Say hi.", "output": "Hi!"}) + "\n")
    return path


@pytest.fixture
def prefs(tmp_path):
    path = tmp_path / "prefs.jsonl"
    path.write_text(json.dumps({"prompt": "p", "chosen": "a", "rejected": "b"}) + "\n")
    return path


SFT_BAD = [
    ("--lora-r", "0", "--lora-r must be at least 1"),
    ("--lora-r", "abc", "invalid int value"),
    ("--lora-alpha", "0", "--lora-alpha must be at least 1"),
    ("--lora-dropout", "1", "--lora-dropout must be in [0, 1)"),
    ("--lora-dropout", "nan", "--lora-dropout must be a finite number"),
    ("--lr", "0", "--lr must be a positive number"),
    ("--lr", "inf", "--lr must be a finite number"),
    ("--max-steps", "0", "--max-steps must be at least 1"),
    ("--seq-len", "4", "--seq-len must be at least 8"),
    ("--batch-size", "-2", "--batch-size must be at least 1"),
    ("--seed", "-1", "--seed must be between 0 and"),
    ("--heldout-max", "0", "--heldout-max must be at least 1"),
]


@pytest.mark.parametrize("flag, value, message", SFT_BAD)
def test_sft_numbers_are_checked(capsys, data, tmp_path, flag, value, message):
    out = tmp_path / "out"
    code, _, err = run(
        capsys, "sft", "--base", "b", "--data", str(data), "--out", str(out), flag, value
    )
    assert one_line_error(code, err) and message in err, err
    assert not out.exists()


DPO_BAD = [
    ("--max-steps", "0", "--max-steps must be at least 1"),
    ("--lr", "-1", "--lr must be a positive number"),
    ("--beta", "0", "--beta must be a positive number"),
    ("--beta", "nan", "--beta must be a finite number"),
    ("--max-length", "8", "--max-length must be at least 16"),
    ("--seed", "-3", "--seed must be between 0 and"),
]


@pytest.mark.parametrize("flag, value, message", DPO_BAD)
def test_dpo_numbers_are_checked(capsys, prefs, tmp_path, flag, value, message):
    out = tmp_path / "out"
    code, _, err = run(
        capsys, "dpo", "--base", "b", "--prefs", str(prefs), "--out", str(out), flag, value
    )
    assert one_line_error(code, err) and message in err, err
    assert not out.exists()


@pytest.mark.parametrize(
    "flag, value, message",
    [("--bootstrap", "-1", "--bootstrap must be"), ("--seed", "-1", "--seed must be")],
)
def test_prefs_stats_numbers_are_checked(capsys, tmp_path, flag, value, message):
    db = tmp_path / "v.sqlite"
    PreferenceStore(db)
    code, _, err = run(capsys, "prefs", "stats", "--db", str(db), flag, value)
    assert one_line_error(code, err) and message in err, err


def test_an_existing_adapter_or_model_is_refused_without_force(capsys, data, prefs, tmp_path):
    adapter = tmp_path / "adapter"
    adapter.mkdir()
    (adapter / "adapter_config.json").write_text("{}")
    code, _, err = run(capsys, "sft", "--base", "b", "--data", str(data), "--out", str(adapter))
    assert one_line_error(code, err)
    assert f"--out {adapter} exists already: add --force to replace it" in err
    code, _, err = run(capsys, "dpo", "--base", "b", "--prefs", str(prefs), "--out", str(adapter))
    assert one_line_error(code, err) and "add --force" in err
    merged = tmp_path / "merged"
    merged.mkdir()
    (merged / "config.json").write_text("{}")
    code, _, err = run(
        capsys, "sft", "--base", "b", "--data", str(data), "--out", str(tmp_path / "new"),
        "--merge-to", str(merged),
    )  # fmt: skip
    assert one_line_error(code, err) and f"--merge-to {merged} exists already" in err
    assert (adapter / "adapter_config.json").read_text() == "{}"
    # with --force the output checks pass, and the next failure is the one-example data
    code, _, err = run(
        capsys, "sft", "--base", "no-such-model", "--data", str(data), "--out", str(adapter),
        "--merge-to", str(merged), "--force",
    )  # fmt: skip
    assert one_line_error(code, err) and "at least two different examples" in err
    assert (adapter / "adapter_config.json").read_text() == "{}"


def test_prefs_export_replaces_only_its_own_files_or_with_force(capsys, tmp_path):
    db = tmp_path / "v.sqlite"
    store = PreferenceStore(db)
    store.add_vote("p", "a", "b", "a", model_a="m1", model_b="m2")
    store.add_vote("q", "c", "d", "tie", model_a="m1", model_b="m2")
    notes = tmp_path / "notes.jsonl"
    notes.write_text('{"mine": 1}\n')
    code, _, err = run(capsys, "prefs", "export", "--db", str(db), "--out", str(notes))
    assert one_line_error(code, err) and "not a preference export: add --force" in err
    assert notes.read_text() == '{"mine": 1}\n'
    # a foreign ties file beside a fresh output is protected too
    out = tmp_path / "new.jsonl"
    (tmp_path / "new.ties.jsonl").write_text("my own notes\n")
    code, _, err = run(capsys, "prefs", "export", "--db", str(db), "--out", str(out))
    assert one_line_error(code, err) and not out.exists()
    code, stdout, err = run(
        capsys, "prefs", "export", "--db", str(db), "--out", str(notes), "--force"
    )
    assert code == 0, err
    assert json.loads(notes.read_text().splitlines()[0])["chosen"] == "a"
    # an earlier export is replaced, and the command says so on stderr
    code, _, err = run(capsys, "prefs", "export", "--db", str(db), "--out", str(notes))
    assert code == 0 and "replaced the earlier export" in err
    # an existing dataset folder needs --force
    ds = tmp_path / "ds"
    assert run(capsys, "prefs", "export", "--db", str(db), "--out", str(notes), "--dataset",
               str(ds), "--force")[0] == 0  # fmt: skip
    code, _, err = run(
        capsys, "prefs", "export", "--db", str(db), "--out", str(notes), "--dataset", str(ds)
    )
    assert one_line_error(code, err) and f"{ds} exists already: add --force" in err


def test_prefs_export_into_an_impossible_place_is_one_line(capsys, tmp_path):
    db = tmp_path / "v.sqlite"
    PreferenceStore(db).add_vote("p", "a", "b", "a")
    blocker = tmp_path / "file.txt"
    blocker.write_text("x")
    code, _, err = run(
        capsys, "prefs", "export", "--db", str(db), "--out", str(blocker / "sub" / "o.jsonl")
    )
    assert one_line_error(code, err) and "cannot be written" in err
