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


@pytest.mark.slow
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


@pytest.mark.slow
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


def test_sampler_chain_flags_and_removed_by(cli):
    out = _json(
        cli(
            "generate",
            "--model",
            MODEL,
            "--prompt",
            "Name a colour.",
            "--strategy",
            "sample",
            "--min-p",
            "0.2",
            "--top-k",
            "3",
            "--sampler-order",
            "min_p,top_k",
            "--temperature",
            "0.9",
            "--max-new-tokens",
            "3",
            "--candidates",
            "5",
            "--json",
        )
    )
    for step in out["steps"]:
        assert [s["name"] for s in step["stages"]] == ["min_p", "top_k", "temperature"]
        for cand in step["candidates"]:
            assert cand["removed_by"] in (None, "min_p", "top_k")
            assert (cand["removed_by"] is None) == cand["kept"]
        assert any(c["removed_by"] is None for c in step["candidates"])


@pytest.mark.slow
def test_prompt_lookup_json_keys(cli):
    args = ["--model", MODEL, "--strategy", "greedy", "--max-new-tokens", "12", "--json"]
    prompt = "Repeat exactly: the cat sat on the mat, the cat sat on the mat."
    plain = _json(cli("generate", "--prompt", prompt, *args))
    fast = _json(
        cli(
            "generate",
            "--prompt",
            prompt,
            *args,
            "--speculative",
            "prompt-lookup",
            "--draft-tokens",
            "5",
        )
    )
    assert fast["ids"] == plain["ids"]
    assert fast["forward_passes"] >= 1 and fast["accepted_draft_tokens"] >= 0
    assert "forward_passes" not in plain


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--strategy", "sample", "--min-p", "1.5"], "min-p"),
        (["--strategy", "sample", "--typical-p", "0"], "typical-p"),
        (["--strategy", "sample", "--epsilon", "nan"], "epsilon"),
        (["--strategy", "sample", "--eta", "-1"], "eta"),
        (["--strategy", "sample", "--top-n-sigma", "-2"], "top-n-sigma"),
        (["--strategy", "sample", "--presence-penalty", "9"], "presence penalty"),
        (["--strategy", "sample", "--frequency-penalty", "inf"], "frequency penalty"),
        (["--strategy", "sample", "--dry-multiplier", "1", "--dry-base", "0.5"], "DRY base"),
        (["--strategy", "sample", "--dry-allowed-length", "0"], "DRY allowed length"),
        (["--strategy", "sample", "--xtc-probability", "2"], "XTC probability"),
        (["--strategy", "sample", "--xtc-threshold", "-0.1"], "XTC threshold"),
        (["--strategy", "sample", "--sampler-order", "top_k,bogus"], "unknown sampler stage"),
        (
            ["--strategy", "greedy", "--speculative", "prompt-lookup", "--draft-tokens", "0"],
            "draft",
        ),
        (["--strategy", "greedy", "--speculative", "draft"], "draft model"),
        (["--strategy", "greedy", "--max-new-tokens", "5000"], "at most 4,096"),
        (["--strategy", "greedy", "--max-new-tokens", "-1"], "max new tokens"),
        (["--strategy", "greedy", "--num-beams", "0"], "beams"),
        (["--strategy", "greedy", "--seed", "-5"], "seed"),
        (["--strategy", "greedy", "--length-penalty", "nan"], "length penalty"),
        (["--strategy", "greedy", "--candidates", "-1"], "candidates"),
        (["--strategy", "greedy", "--no-repeat-ngram-size", "-2"], "n-gram"),
        (["--strategy", "greedy", "--repetition-penalty", "0"], "repetition penalty"),
        (["--strategy", "greedy", "--precision", "fp8"], "invalid choice"),
        (["--strategy", "greedy", "--top-k", "x"], "invalid int value"),
    ],
)
def test_every_numeric_flag_is_checked_before_loading(cli, extra, message):
    proc = cli("generate", "--model", MODEL, "--prompt", "Hi", *extra)
    assert proc.returncode == 2, proc.stderr
    lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and message in lines[0] and "Traceback" not in proc.stderr


@pytest.mark.slow
def test_long_prompt_is_refused_with_the_limit(cli):
    proc = cli("generate", "--model", MODEL, "--prompt", "word " * 20_000, "--strategy", "greedy")
    assert proc.returncode == 2 and "the limit is 50,000" in proc.stderr


def test_models_command_lists_kind_and_availability(cli):
    proc = cli("models", "--offline")
    assert proc.returncode == 0, proc.stderr
    assert MODEL in proc.stdout and "offline" in proc.stdout
    out = json.loads(cli("models", "--offline", "--json").stdout)
    names = {m["name"]: m for m in out["models"]}
    assert names[MODEL]["kind"] == "offline" and names[MODEL]["available"] is True
