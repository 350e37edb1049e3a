"""``llm-playground generate`` end to end, as a real process."""

from __future__ import annotations

import json

import pytest

MODEL = "smollm2-135m-instruct"


def _json(proc) -> dict:
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)


def test_greedy_json(cli):
    out = _json(
        cli(
            "generate",
            "--model",
            MODEL,
            "--prompt",
            "What is the capital of France?",
            "--strategy",
            "greedy",
            "--max-new-tokens",
            "8",
            "--json",
        )
    )
    assert set(out) == {"text", "ids", "new_tokens", "time_s", "tokens_per_s"}
    assert out["new_tokens"] == len(out["ids"]) and 1 <= out["new_tokens"] <= 8
    assert "Paris" in out["text"] and out["time_s"] > 0 and out["tokens_per_s"] > 0


def test_top_p_candidates_and_plain_text(cli):
    args = [
        "generate",
        "--model",
        MODEL,
        "--prompt",
        "Name a colour.",
        "--strategy",
        "top-p",
        "--top-p",
        "0.5",
        "--temperature",
        "0.8",
        "--seed",
        "5",
        "--max-new-tokens",
        "5",
    ]
    out = _json(cli(*args, "--candidates", "4", "--json"))
    steps = out["steps"]
    assert len(steps) == out["new_tokens"]
    assert [s["token_id"] for s in steps] == out["ids"]
    for step in steps:
        cands = step["candidates"]
        assert len(cands) == 4
        assert {"id", "token", "prob", "kept"} <= set(cands[0])
        probs = [c["prob"] for c in cands]
        assert probs == sorted(probs, reverse=True)
        kept = [c["kept"] for c in cands]
        assert kept[0] and kept == sorted(kept, reverse=True)  # top-p keeps a prefix of the ranking
        assert all(c["kept"] for c in cands if c["id"] == step["token_id"])  # picked => kept
        assert 0 < step["prob"] <= 1
    # the same seed gives the same text; without --json only the text is printed
    plain = cli(*args)
    assert plain.returncode == 0 and plain.stdout.strip() == out["text"].strip()


def test_raw_text_and_beam(cli):
    out = _json(
        cli(
            "generate",
            "--model",
            MODEL,
            "--prompt",
            "The capital of France is",
            "--strategy",
            "beam",
            "--num-beams",
            "2",
            "--max-new-tokens",
            "4",
            "--no-chat-template",
            "--json",
        )
    )
    assert 1 <= out["new_tokens"] <= 4 and out["text"].strip()


def test_checkpoint_folder(cli, tmp_path):
    from llm_playground.generation.registry import convert_offline_model

    # a run folder laid out like Lab 2's: its Hugging Face export in hf/
    run = tmp_path / "my-run"
    run.mkdir()
    (run / "hf").symlink_to(convert_offline_model(MODEL), target_is_directory=True)
    args = [
        "--prompt",
        "Hello there",
        "--strategy",
        "greedy",
        "--max-new-tokens",
        "3",
        "--no-chat-template",
        "--json",
    ]
    out = _json(cli("generate", "--checkpoint", str(run), *args))
    assert out["new_tokens"] >= 1
    assert _json(cli("generate", "--model", MODEL, *args))["ids"] == out["ids"]


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--strategy", "top-p", "--top-p", "1.5"], "top-p"),
        (["--strategy", "top-k", "--top-k", "0"], "top-k"),
        (["--strategy", "top-k", "--temperature", "-1"], "temperature"),
        (["--strategy", "greedy", "--max-new-tokens", "100000"], "context"),
        (["--strategy", "nucleus"], "invalid choice"),
    ],
)
def test_bad_settings_exit_2_with_one_line(cli, extra, message):
    proc = cli("generate", "--model", MODEL, "--prompt", "Hi", *extra)
    assert proc.returncode == 2
    lines = [ln for ln in proc.stderr.splitlines() if ln.strip() and "Loading weights" not in ln]
    assert len(lines) == 1 and message in lines[0] and "Traceback" not in proc.stderr


def test_unknown_model_and_missing_folder_exit_2(cli, tmp_path):
    proc = cli("generate", "--model", "no-such-model-xyz", "--prompt", "Hi", "--strategy", "greedy")
    assert proc.returncode == 2 and "needs network" in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1
    proc = cli(
        "generate", "--checkpoint", str(tmp_path / "nope"), "--prompt", "Hi", "--strategy", "greedy"
    )
    assert proc.returncode == 2 and "does not exist" in proc.stderr
    empty = tmp_path / "empty"
    empty.mkdir()
    proc = cli("generate", "--checkpoint", str(empty), "--prompt", "Hi", "--strategy", "greedy")
    assert proc.returncode == 2 and "not a model folder" in proc.stderr
