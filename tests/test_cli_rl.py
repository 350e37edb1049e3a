"""``llm-playground rl``, ``reward train``, ``reward score`` and ``generate --best-of`` end to
end on tiny models: the JSON contracts, the files in --out, and bad input as one line with
exit status 2."""

from __future__ import annotations

import json

import pytest

from tiny_lm import tiny_gpt2, tiny_llama


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    return tiny_llama(tmp_path_factory.mktemp("tiny") / "tiny-llama")


def _pairs(tmp_path, n: int):
    path = tmp_path / f"prefs-{n}.jsonl"
    rows = [{"prompt": f"Q{i}?", "chosen": f"Yes, {i}.", "rejected": f"zzz {i}"} for i in range(n)]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def _one_line_exit_2(proc, needle: str) -> None:
    assert proc.returncode == 2, proc.stderr
    lines = [line for line in proc.stderr.splitlines() if line.startswith("llm-playground")]
    assert len(lines) == 1 and needle in lines[0], proc.stderr
    assert "Traceback" not in proc.stderr


def test_rl_json_contract_and_files(cli, tiny, tmp_path):
    out = tmp_path / "run"
    proc = cli(
        "rl", "--base", str(tiny), "--reward", "arithmetic", "--out", str(out),
        "--steps", "2", "--group", "2", "--prompts-per-step", "1",
        "--max-completion-tokens", "3", "--eval-every", "1", "--eval-problems", "2", "--json",
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    summary = json.loads(proc.stdout)
    assert {"steps", "accuracy_before", "accuracy_after", "out"} <= set(summary)
    assert summary["steps"] == 2 and summary["out"] == str(out.resolve())
    assert 0.0 <= summary["accuracy_before"] <= 1.0 and 0.0 <= summary["accuracy_after"] <= 1.0
    metrics = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [m["step"] for m in metrics] == [1, 2] and all("accuracy" in m for m in metrics)
    samples = [json.loads(line) for line in (out / "samples.jsonl").read_text().splitlines()]
    assert len(samples) == 2 and all(len(s["completions"]) == 2 for s in samples)
    # the adapter loads as a checkpoint for generate
    gen = cli(
        "generate", "--checkpoint", str(out), "--prompt", "What is 2 + 2?",
        "--strategy", "greedy", "--max-new-tokens", "3", "--json",
    )  # fmt: skip
    assert gen.returncode == 0, gen.stderr and json.loads(gen.stdout)["new_tokens"] <= 3
    # an existing run is kept without --force
    again = cli("rl", "--base", str(tiny), "--reward", "format", "--out", str(out))
    _one_line_exit_2(again, "--force")


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (("--reward", "nonsense"), "unknown reward 'nonsense'"),
        (("--reward", "length", "--group", "1"), "--group must be at least 2"),
        (("--reward", "arithmetic", "--steps", "0"), "--steps must be at least 1"),
    ],
)
def test_rl_bad_input_is_one_line_exit_2(cli, tiny, tmp_path, args, needle):
    out = tmp_path / "never"
    proc = cli("rl", "--base", str(tiny), "--out", str(out), *args)
    _one_line_exit_2(proc, needle)
    assert not out.exists()


def test_a_base_lora_cannot_target_is_one_line_exit_2(cli, tmp_path):
    gpt2 = tiny_gpt2(tmp_path / "tiny-gpt2")
    proc = cli("rl", "--base", str(gpt2), "--reward", "length", "--out", str(tmp_path / "x"))
    _one_line_exit_2(proc, "no module named q_proj")


def test_reward_train_refuses_a_votes_file_with_too_few_pairs(cli, tiny, tmp_path):
    proc = cli(
        "reward", "train", "--base", str(tiny), "--prefs", str(_pairs(tmp_path, 6)),
        "--out", str(tmp_path / "rm"),
    )  # fmt: skip
    _one_line_exit_2(proc, "a reward model needs at least 10")
    assert not (tmp_path / "rm").exists()


@pytest.mark.slow
def test_reward_train_score_and_best_of_end_to_end(cli, tiny, tmp_path):
    out = tmp_path / "rm"
    proc = cli(
        "reward", "train", "--base", str(tiny), "--prefs", str(_pairs(tmp_path, 12)),
        "--out", str(out), "--max-steps", "3", "--json",
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    summary = json.loads(proc.stdout)
    assert set(summary) == {
        "train_pairs", "eval_pairs", "eval_accuracy", "eval_margin", "steps", "out",
    }  # fmt: skip
    assert summary["train_pairs"] + summary["eval_pairs"] == 12 and summary["steps"] == 3
    score = cli(
        "reward", "score", "--reward", str(out), "--prompt", "Q1?",
        "--response", "Yes, 1.", "--response", "zzz 1", "--json",
    )  # fmt: skip
    assert score.returncode == 0, score.stderr
    scores = json.loads(score.stdout)["scores"]
    assert len(scores) == 2 and all(isinstance(s, float) for s in scores)
    best = cli(
        "generate", "--checkpoint", str(tiny), "--prompt", "Q1?", "--strategy", "top-k",
        "--max-new-tokens", "3", "--best-of", "3", "--reward", str(out), "--json",
    )  # fmt: skip
    assert best.returncode == 0, best.stderr
    record = json.loads(best.stdout)
    assert len(record["best_of"]) == 3
    top = max(record["best_of"], key=lambda c: c["score"])
    assert record["text"] == top["text"]
    greedy = cli(
        "generate", "--checkpoint", str(tiny), "--prompt", "Q1?", "--strategy", "greedy",
        "--best-of", "3", "--reward", str(out),
    )  # fmt: skip
    _one_line_exit_2(greedy, "needs sampling")
