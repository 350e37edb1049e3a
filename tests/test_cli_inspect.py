"""``llm-playground inspect`` end to end, as a real process, on a tiny Lab 2 run."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from llm_playground.inspection import run_snapshot_steps
from llm_playground.tokenization.tokenizer import CharTokenizer
from llm_playground.training.checkpoints import save_checkpoint
from llm_playground.training.config import preset
from llm_playground.training.model import GPT

TEXT = "the quick brown fox jumps over the lazy dog. THE END! 0123456789, said Eve?"
PROMPT = "the lazy dog jumps over"


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """A tiny speedrun-shaped GPT saved as a Lab 2 run, with a snapshot at step 2."""
    from llm_playground.training.snapshots import save_snapshot

    folder = tmp_path_factory.mktemp("runs") / "tiny"
    tok = CharTokenizer.from_text(TEXT)
    config = preset(
        "baby-gpt",
        vocab_size=tok.vocab_size,
        n_layer=2,
        n_head=4,
        n_embd=32,
        block_size=64,
        pos="rope",
        qk_norm=True,
    )
    torch.manual_seed(0)
    model = GPT(config.model).eval()
    save_snapshot(folder, model, step=2, loss=4.0)
    save_checkpoint(folder, model, config, tok, step=4, export_hf=False)
    return folder


def _json(proc) -> dict:
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)


def test_prompt_json_shape_rows_and_causality(cli, run):
    out = _json(
        cli("inspect", "--checkpoint", str(run), "--prompt", PROMPT, "--top-k", "3", "--json")
    )
    assert set(out) == {"ids", "tokens", "n_layers", "n_heads", "attention", "lens", "head_scores"}
    T = len(PROMPT)  # a character model, no beginning-of-text token
    assert out["tokens"] == list(PROMPT) and len(out["ids"]) == T
    assert (out["n_layers"], out["n_heads"]) == (2, 4)
    attention = np.array(out["attention"])
    assert attention.shape == (2, 4, T, T)
    np.testing.assert_allclose(attention.sum(-1), 1.0, atol=1e-5)
    assert np.all(np.triu(attention, 1) == 0) and np.all(attention[..., 0, 0] == 1)
    assert len(out["lens"]) == 3 and all(len(entry) == T for entry in out["lens"])
    top = out["lens"][2][-1]["top"]
    assert len(top) == 3 and set(top[0]) == {"id", "token", "p"}
    assert top[0]["p"] >= top[1]["p"] >= top[2]["p"] > 0
    assert set(out["head_scores"]) == {"previous_token", "first_token"}
    previous = np.array(out["head_scores"]["previous_token"])
    queries = np.arange(1, T)
    expected = attention[:, :, queries, queries - 1].mean(-1)
    np.testing.assert_allclose(previous, expected, atol=1e-5)


def test_induction_probe_and_ablation_json(cli, run):
    out = _json(
        cli(
            "inspect", "--checkpoint", str(run), "--induction-probe", "8", "--seed", "3",
            "--ablate", "0.1", "--ablate", "1.mlp", "--json",
        )
    )  # fmt: skip
    assert out["probe"] == {"prefix": 0, "n": 8}
    assert out["ids"][:8] == out["ids"][8:] and len(out["ids"]) == 16
    induction = np.array(out["head_scores"]["induction"])
    attention = np.array(out["attention"])
    queries = np.arange(8, 16)
    np.testing.assert_allclose(induction, attention[:, :, queries, queries - 7].mean(-1), atol=1e-5)
    assert out["ablated"] == ["0.1", "1.mlp"]
    assert set(out["loss"]) == {"base", "ablated"} and out["loss"]["base"] != out["loss"]["ablated"]


def test_text_report_and_a_snapshot_step(cli, run):
    proc = cli("inspect", "--checkpoint", str(run), "--prompt", PROMPT, "--step", "2")
    assert proc.returncode == 0, proc.stderr
    assert "tiny (step 2): 23 tokens, 2 layers x 4 heads" in proc.stdout
    assert "previous-token: layer" in proc.stdout and "after layer 1 (the output)" in proc.stdout


def test_a_run_by_name_in_the_playground_home(cli, run, playground_home):
    import shutil

    shutil.copytree(run, playground_home / "runs" / "my-run")
    out = _json(cli("inspect", "--model", "my-run", "--step", "2", "--prompt", "the", "--json"))
    assert out["tokens"] == ["t", "h", "e"] and len(out["lens"]) == 3
    assert run_snapshot_steps("my-run") == [2] == run_snapshot_steps(checkpoint=run)
    assert run_snapshot_steps("smollm2-135m-instruct") == []


@pytest.mark.parametrize(
    ("args", "words"),
    [
        (["--model", "no-such-model", "--prompt", "hi"], "unknown model 'no-such-model'"),
        (["--checkpoint", "RUN", "--prompt", "a" * 129], "limit is 128 tokens"),
        (["--checkpoint", "RUN", "--induction-probe", "3"], "from 4 to 512"),
        (["--checkpoint", "RUN", "--induction-probe", "513"], "from 4 to 512"),
        (["--checkpoint", "RUN", "--prompt", "hi", "--ablate", "2.0"], "no layer 2"),
        (["--checkpoint", "RUN", "--prompt", "hi", "--ablate", "0.4"], "no head 4"),
        (["--checkpoint", "RUN", "--prompt", "hi", "--ablate", "0.head"], "LAYER.HEAD"),
        (["--checkpoint", "RUN", "--prompt", "hi", "--step", "3"], "snapshots are at steps 2"),
        (["--model", "smollm2-135m-instruct", "--prompt", "hi", "--step", "3"], "Lab 2 run"),
        (["--checkpoint", "RUN"], "one of the arguments --prompt --induction-probe"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(cli, run, args, words):
    proc = cli("inspect", *[str(run) if a == "RUN" else a for a in args])
    assert proc.returncode == 2
    assert words in proc.stderr and proc.stderr.count("\n") == 1 and not proc.stdout
