"""Distributed data parallel: two CPU processes (gloo) learn exactly what one process learns."""

import json
import os
import subprocess
import sys

import pytest

ARGS = [
    "train",
    "--preset",
    "baby-gpt",
    "--n-layer",
    "1",
    "--n-head",
    "2",
    "--n-embd",
    "32",
    "--block-size",
    "16",
    "--batch-size",
    "8",
    "--max-iters",
    "12",
    "--eval-interval",
    "4",
    "--eval-iters",
    "2",
    "--device",
    "cpu",
    "--dtype",
    "float32",
    "--seed",
    "11",
]


def metrics(folder):
    return [json.loads(line) for line in (folder / "metrics.jsonl").read_text().splitlines()]


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_two_processes_match_one_process_for_the_same_global_batch(cli, tmp_path):
    check_ddp_matches_one_process(cli, tmp_path, ARGS)


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_the_speedrun_preset_with_muon_matches_one_process_too(cli, tmp_path):
    args = [a if a != "baby-gpt" else "speedrun" for a in ARGS]
    check_ddp_matches_one_process(cli, tmp_path, args)


def check_ddp_matches_one_process(cli, tmp_path, args):
    single = tmp_path / "single"
    r = cli(*args, "--out", str(single))
    assert r.returncode == 0, r.stderr
    ddp = tmp_path / "ddp"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MASTER_ADDR": "127.0.0.1"}
    r = subprocess.run(
        [
            sys.executable,
            "-m",
            "torch.distributed.run",
            "--standalone",
            "--nproc_per_node",
            "2",
            "-m",
            "llm_playground",
            *args,
            "--out",
            str(ddp),
        ],
        capture_output=True,
        text=True,
        env=env,
        timeout=280,
    )
    assert r.returncode == 0, r.stderr[-3000:]
    assert "2 processes" in r.stderr
    a, b = metrics(single), metrics(ddp)
    assert [m["step"] for m in a] == [m["step"] for m in b] == [0, 4, 8, 12]
    for x, y in zip(a, b, strict=True):
        assert y["train_loss"] == pytest.approx(x["train_loss"], abs=2e-4)
        assert y["val_loss"] == pytest.approx(x["val_loss"], abs=2e-4)
    assert a[-1]["val_loss"] < a[0]["val_loss"]
    assert json.loads((ddp / "config.json").read_text())["step"] == 12
