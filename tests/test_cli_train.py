"""``llm-playground train`` and ``sample`` end to end, as real processes."""

import json

import pytest

TINY = [
    "--n-layer",
    "1",
    "--n-head",
    "2",
    "--n-embd",
    "32",
    "--block-size",
    "16",
    "--batch-size",
    "4",
    "--eval-iters",
    "2",
    "--device",
    "cpu",
    "--dtype",
    "float32",
]


def test_train_writes_a_checkpoint_and_sample_continues_a_prompt(cli, tmp_path):
    out = tmp_path / "run"
    r = cli(
        "train",
        "--preset",
        "baby-gpt",
        *TINY,
        "--max-iters",
        "20",
        "--eval-interval",
        "10",
        "--seed",
        "3",
        "--out",
        str(out),
    )
    assert r.returncode == 0, r.stderr
    assert "step 20: train loss" in r.stderr and "20/20" in r.stderr  # progress on stderr
    assert "precision: float32 (as asked)" in r.stderr + r.stdout
    assert f"saved {out}" in r.stdout
    for name in (
        "model.safetensors",
        "config.json",
        "tokenizer.json",
        "metrics.jsonl",
        "hf/config.json",
        "hf/model.safetensors",
        "hf/tokenizer.json",
    ):
        assert (out / name).is_file(), name
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows] == [0, 10, 20]
    for row in rows:
        assert {"step", "train_loss", "val_loss", "elapsed_s", "tokens_per_s"} <= set(row)
    config = json.loads((out / "config.json").read_text())
    assert config["model"]["n_embd"] == 32 and config["train"]["seed"] == 3 and config["step"] == 20

    s1 = cli(
        "sample",
        "--checkpoint",
        str(out),
        "--prompt",
        "ROMEO:",
        "--max-new-tokens",
        "30",
        "--seed",
        "1",
    )
    s2 = cli(
        "sample",
        "--checkpoint",
        str(out),
        "--prompt",
        "ROMEO:",
        "--max-new-tokens",
        "30",
        "--seed",
        "1",
    )
    assert s1.returncode == 0, s1.stderr
    assert s1.stdout == s2.stdout and len(s1.stdout.rstrip("\n")) >= 25
    greedy = cli(
        "sample",
        "--checkpoint",
        str(out),
        "--prompt",
        "A",
        "--max-new-tokens",
        "5",
        "--temperature",
        "0",
    )
    assert greedy.returncode == 0 and len(greedy.stdout.rstrip("\n")) == 5


@pytest.mark.slow
def test_gpt2_tokens_and_a_text_of_ones_own(cli, tmp_path):
    text = tmp_path / "sonnets.txt"
    text.write_text(
        "Shall I compare thee to a summer's day?\nThou art more lovely and more temperate.\n" * 40
    )
    out = tmp_path / "gpt2-tokens"
    r = cli(
        "train",
        "--preset",
        "baby-gpt",
        *TINY,
        "--tokenizer",
        "gpt2",
        "--data",
        str(text),
        "--max-iters",
        "3",
        "--eval-interval",
        "3",
        "--out",
        str(out),
    )
    assert r.returncode == 0, r.stderr
    config = json.loads((out / "config.json").read_text())
    assert (
        config["tokenizer"] == {"type": "name", "name": "gpt2"}
        and config["model"]["vocab_size"] == 50257
    )
    assert (out / "hf" / "vocab.json").is_file() or (out / "hf" / "tokenizer.json").is_file()
    s = cli("sample", "--checkpoint", str(out), "--prompt", "Shall I", "--max-new-tokens", "3")
    assert s.returncode == 0, s.stderr
    # a bigram table over 50,257 tokens would need 2.5 billion numbers: refused up front
    r = cli(
        "train",
        "--preset",
        "bigram",
        "--tokenizer",
        "gpt2",
        "--data",
        str(text),
        "--out",
        str(tmp_path / "b"),
    )
    assert r.returncode == 2 and "use the char tokenizer" in r.stderr


def test_bigram_leaves_out_the_hugging_face_export(cli, tmp_path):
    out = tmp_path / "bigram"
    r = cli(
        "train",
        "--preset",
        "bigram",
        "--max-iters",
        "5",
        "--eval-interval",
        "5",
        "--eval-iters",
        "1",
        "--out",
        str(out),
    )
    assert r.returncode == 0, r.stderr
    assert (out / "model.safetensors").is_file() and not (out / "hf").exists()


@pytest.mark.parametrize(
    "args, message",
    [
        (["--n-head", "3"], "embedding size 128 is not divisible by the number of heads 3"),
        (["--lr", "nan"], "learning rate must be a finite number"),
        (["--lr", "0"], "learning rate must be positive"),
        (["--lr", "-0.1"], "learning rate must be positive"),
        (["--block-size", "0"], "block size must be a positive whole number"),
        (["--dropout", "1.5"], "dropout must be at least 0 and below 1"),
        (["--data", "/nonexistent/file.txt"], "text file not found"),
        (["--tokenizer", "klingon"], "unknown tokenizer 'klingon'"),
        (["--device", "cuda"], "no CUDA GPU"),
    ],
)
@pytest.mark.slow
def test_bad_settings_exit_2_with_one_line(cli, tmp_path, args, message):
    import torch

    if args == ["--device", "cuda"] and torch.cuda.is_available():
        pytest.skip("a GPU is present")
    r = cli(
        "train", "--preset", "baby-gpt", "--max-iters", "2", *args, "--out", str(tmp_path / "x")
    )
    assert r.returncode == 2
    assert message in r.stderr and "Traceback" not in r.stderr
    assert len([line for line in r.stderr.splitlines() if "error" in line]) == 1


def test_bad_data_and_divergence_exit_2(cli, tmp_path):
    bad = tmp_path / "latin1.txt"
    bad.write_bytes("Fran\xe7ais".encode("latin-1") * 100)
    r = cli("train", "--preset", "bigram", "--data", str(bad), "--out", str(tmp_path / "x"))
    assert r.returncode == 2 and "not UTF-8" in r.stderr and "Traceback" not in r.stderr
    small = tmp_path / "small.txt"
    small.write_text("to be or not to be\n" * 3)
    r = cli("train", "--preset", "baby-gpt", "--data", str(small), "--out", str(tmp_path / "y"))
    assert r.returncode == 2 and "block size 64 is larger than the data allows" in r.stderr
    r = cli(
        "train",
        "--preset",
        "baby-gpt",
        *TINY,
        "--lr",
        "1e6",
        "--max-iters",
        "200",
        "--eval-interval",
        "1000",
        "--out",
        str(tmp_path / "z"),
    )
    assert r.returncode == 2 and "training diverged" in r.stderr


def test_sample_refuses_what_it_cannot_do(cli, tmp_path):
    r = cli("sample", "--checkpoint", str(tmp_path), "--prompt", "x", "--max-new-tokens", "3")
    assert r.returncode == 2 and "not a checkpoint folder" in r.stderr
    out = tmp_path / "run"
    assert (
        cli(
            "train",
            "--preset",
            "bigram",
            "--max-iters",
            "1",
            "--eval-iters",
            "1",
            "--out",
            str(out),
        ).returncode
        == 0
    )
    r = cli("sample", "--checkpoint", str(out), "--prompt", "€uro", "--max-new-tokens", "3")
    assert r.returncode == 2 and "not in the char tokenizer" in r.stderr
    r = cli("sample", "--checkpoint", str(out), "--prompt", "a", "--max-new-tokens", "-1")
    assert r.returncode == 2 and "--max-new-tokens" in r.stderr


@pytest.mark.slow
def test_resume_from_the_command_line(cli, tmp_path):
    out = tmp_path / "run"
    args = ["train", "--preset", "baby-gpt", *TINY, "--eval-interval", "5", "--out", str(out)]
    assert cli(*args, "--max-iters", "5").returncode == 0
    r = cli(*args, "--max-iters", "10", "--resume", str(out))
    assert r.returncode == 0, r.stderr
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows] == [0, 5, 10]


@pytest.mark.slow
def test_an_existing_run_is_refused_unless_forced(cli, tmp_path):
    out = tmp_path / "run"
    args = ["train", "--preset", "bigram", "--max-iters", "2", "--eval-iters", "1"]
    assert cli(*args, "--out", str(out)).returncode == 0
    before = (out / "model.safetensors").read_bytes()
    r = cli(*args, "--seed", "5", "--out", str(out))
    assert r.returncode == 2 and "already holds a training run" in r.stderr
    assert "--force" in r.stderr and "Traceback" not in r.stderr
    assert (out / "model.safetensors").read_bytes() == before  # untouched
    r = cli(*args, "--seed", "5", "--out", str(out), "--force")
    assert r.returncode == 0, r.stderr
    assert json.loads((out / "config.json").read_text())["train"]["seed"] == 5
    other = tmp_path / "notes"
    other.mkdir()
    (other / "mine.txt").write_text("keep me")
    r = cli(*args, "--out", str(other), "--force")
    assert r.returncode == 2 and "holds no training run" in r.stderr
    assert (other / "mine.txt").read_text() == "keep me"


def test_speedrun_switches_and_a_target_from_the_command_line(cli, tmp_path):
    out = tmp_path / "fast"
    r = cli(
        "train",
        "--preset",
        "speedrun",
        *TINY,
        "--max-iters",
        "60",
        "--eval-interval",
        "5",
        "--target-val-loss",
        "3.7",
        "--no-qk-norm",
        "--head",
        "tied",
        "--schedule",
        "cosine",
        "--out",
        str(out),
    )
    assert r.returncode == 0, r.stderr
    assert "reached val loss 3.7 at step" in r.stderr and "reached val loss 3.7 in" in r.stdout
    config = json.loads((out / "config.json").read_text())
    model, train = config["model"], config["train"]
    assert (model["pos"], model["qk_norm"], model["tied_head"]) == ("rope", False, True)
    assert (train["optimizer"], train["schedule"], train["target_val_loss"]) == (
        "muon",
        "cosine",
        3.7,
    )
    assert config["step"] < 60 and config["hf_export"] is None and not (out / "hf").exists()
    assert "no Hugging Face GPT-2 export" in config["hf_export_note"]
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert rows[-1]["val_loss"] <= 3.7 and rows[-1]["target_reached_s"] > 0


@pytest.mark.parametrize(
    "args, message",
    [
        (["--max-iters", "-1"], "max iterations must be a positive whole number"),
        (["--eval-interval", "0"], "eval interval must be a positive whole number"),
        (["--eval-iters", "0"], "eval iterations must be a positive whole number"),
        (["--sample-interval", "0"], "sample interval must be a positive whole number"),
        (["--batch-size", "-4"], "batch size must be a positive whole number"),
        (["--n-layer", "0"], "number of layers must be a positive whole number"),
        (["--n-embd", "-8"], "embedding size must be a positive whole number"),
        (["--min-lr", "inf"], "final learning rate must be a finite number"),
        (["--dropout", "nan"], "dropout must be at least 0 and below 1"),
        (["--seed", "-1"], "seed must be a whole number from 0"),
        (["--seed", str(2**70)], "seed must be a whole number from 0"),
        (["--target-val-loss", "-1"], "target validation loss must be a positive number"),
        (["--target-val-loss", "nan"], "target validation loss must be a positive number"),
        (["--checkpoint-interval", "-2"], "checkpoint interval must be 0 or a positive"),
        (["--muon-lr", "0"], "Muon learning rate must be positive"),
        (["--warmup-iters", "-3"], "warm-up iterations must be 0 or more"),
        (["--decay-frac", "1.5"], "decay fraction must be above 0 and at most 1"),
        (["--logit-softcap", "-1"], "logit soft-cap must be 0 (off) or more"),
        (["--n-head", "8", "--n-embd", "24"], "rotary embeddings need an even head size"),
    ],
)
@pytest.mark.slow
def test_every_numeric_flag_is_checked_in_one_line(cli, tmp_path, args, message):
    r = cli("train", "--preset", "speedrun", *args, "--out", str(tmp_path / "x"))
    assert r.returncode == 2, r.stderr
    assert message in r.stderr and "Traceback" not in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1
