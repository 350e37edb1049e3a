"""``llm-playground sft`` and ``dpo`` end to end: a tiny run writes a loadable adapter and prints
its figures; bad input exits 2 with one line and writes nothing."""

from __future__ import annotations

import json
import re

import pytest

BASE = "smollm2-135m-instruct"


@pytest.fixture
def data(tmp_path):
    rows = [
        {"instruction": "What is the capital of France?", "output": "Paris."},
        {"instruction": "Say hello.", "output": "Hello!"},
        {"instruction": "Upper-case this.", "input": "abc", "output": "ABC"},
        {"instruction": "What is 1 plus 1?", "output": "1 + 1 = 2."},
    ]
    path = tmp_path / "tiny.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def test_sft_end_to_end(cli, data, tmp_path):
    out = tmp_path / "adapter"
    r = cli(
        "sft",
        "--base",
        BASE,
        "--data",
        str(data),
        "--lora-r",
        "4",
        "--lora-alpha",
        "8",
        "--target-modules",
        "q_proj,v_proj",
        "--lr",
        "1e-3",
        "--max-steps",
        "2",
        "--seq-len",
        "32",
        "--seed",
        "1",
        "--dtype",
        "float32",
        "--out",
        str(out),
        "--merge-to",
        str(tmp_path / "merged"),
    )
    assert r.returncode == 0, r.stderr
    # r=4 on q and v of SmolLM2-135M: 30 x 4 x (576+576 + 576+192) = 230,400
    assert "trainable parameters: 230,400 of " in r.stdout
    assert re.search(r"\(0\.171 %\)", r.stdout)
    before = float(re.search(r"held-out loss before: ([\d.]+)", r.stdout).group(1))
    after = float(re.search(r"held-out loss after:\s+([\d.]+)", r.stdout).group(1))
    assert before > 0 and after > 0
    assert "sft" in r.stderr and "2/2" in r.stderr  # the tqdm bar went to stderr
    cfg = json.loads((out / "adapter_config.json").read_text())
    assert cfg["r"] == 4 and sorted(cfg["target_modules"]) == ["q_proj", "v_proj"]
    meta = json.loads((out / "playground.json").read_text())
    assert meta["base"] == BASE and meta["settings"]["seed"] == 1
    assert meta["heldout_loss_before"] == pytest.approx(before, abs=1e-4)
    from peft import PeftModel

    from llm_playground.generation.registry import load_model

    base = load_model(BASE)
    PeftModel.from_pretrained(base.model, str(out))  # plain peft loads it
    assert f"merged model written to {tmp_path / 'merged'}" in r.stdout
    assert (tmp_path / "merged" / "model.safetensors").exists()
    assert json.loads((tmp_path / "merged" / "playground.json").read_text())["kind"] == "merged"


@pytest.mark.parametrize(
    "args, message",
    [
        (["--base", "no-such-model"], "unknown model 'no-such-model'"),
        (["--lora-r", "0"], "--lora-r must be at least 1"),
        (["--data", "wikipedia"], "unknown data 'wikipedia'"),
        (["--data", "alpaca"], "needs network"),
        (["--target-modules", "qq_proj"], "no module named qq_proj"),
    ],
)
def test_sft_bad_input_exits_2_and_writes_nothing(cli, data, tmp_path, args, message):
    out = tmp_path / "out"
    base = [
        "--base",
        BASE,
        "--data",
        str(data),
        "--max-steps",
        "1",
        "--seq-len",
        "32",
        "--out",
        str(out),
    ]
    # later flags win in argparse
    r = cli("sft", *base, *args)
    assert r.returncode == 2, r.stderr
    assert message in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1, r.stderr
    assert not out.exists()


def test_sft_malformed_jsonl_names_the_line(cli, tmp_path):
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"instruction": "a", "output": "b"}\n\n{"instruction": "c", "output": \n')
    out = tmp_path / "out"
    r = cli("sft", "--base", BASE, "--data", str(bad), "--out", str(out))
    assert r.returncode == 2
    assert r.stderr.strip().startswith("llm-playground: error: bad.jsonl line 3: not valid JSON")
    assert not out.exists()


@pytest.mark.slow
def test_dpo_bad_input_exits_2_and_writes_nothing(cli, tmp_path):
    prefs = tmp_path / "prefs.jsonl"
    prefs.write_text(
        '{"prompt": "p", "chosen": "a", "rejected": "b"}\n{"prompt": "p", "chosen": "a"}\n'
    )
    out = tmp_path / "out"
    r = cli("dpo", "--base", BASE, "--prefs", str(prefs), "--out", str(out))
    assert r.returncode == 2
    assert "prefs.jsonl line 2: missing text field(s) 'rejected'" in r.stderr
    r = cli(
        "dpo", "--base", "nope-model", "--prefs", str(tmp_path / "missing.jsonl"), "--out", str(out)
    )
    assert r.returncode == 2 and "preferences file not found" in r.stderr
    prefs.write_text('{"prompt": "p", "chosen": "a", "rejected": "b"}\n')
    r = cli("dpo", "--base", "nope-model", "--prefs", str(prefs), "--out", str(out))
    assert r.returncode == 2 and "unknown model 'nope-model'" in r.stderr
    assert not out.exists()


def test_out_that_is_a_foreign_folder_is_refused(cli, data, tmp_path):
    out = tmp_path / "photos"
    out.mkdir()
    (out / "holiday.jpg").write_bytes(b"\xff\xd8")
    r = cli("sft", "--base", BASE, "--data", str(data), "--out", str(out))
    assert r.returncode == 2 and "holds no adapter" in r.stderr
    assert sorted(p.name for p in out.iterdir()) == ["holiday.jpg"]


def test_dpo_end_to_end(cli, tmp_path):
    prefs = tmp_path / "prefs.jsonl"
    rows = [
        {"prompt": "What is the capital of France?", "chosen": "Paris.", "rejected": "Bananas."},
        {"prompt": "Say hello.", "chosen": "Hello!", "rejected": "No."},
        {"prompt": "2 plus 2?", "chosen": "4.", "rejected": "5.", "label": "tie"},
    ]
    prefs.write_text("".join(json.dumps(r) + "\n" for r in rows))
    out = tmp_path / "dpo"
    r = cli(
        "dpo",
        "--base",
        BASE,
        "--prefs",
        str(prefs),
        "--out",
        str(out),
        "--max-steps",
        "1",
        "--max-length",
        "48",
    )
    assert r.returncode == 0, r.stderr
    assert "preference pairs: 2; trainable parameters: 460,800" in r.stdout
    assert re.search(r"final DPO loss: 0\.69\d+ after 1 steps", r.stdout)
    meta = json.loads((out / "playground.json").read_text())
    assert meta["kind"] == "dpo" and meta["n_pairs"] == 2
    assert (out / "adapter_model.safetensors").exists()
