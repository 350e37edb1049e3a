"""lm-evaluation-harness as Lab 5's engine: the model class, the shipped tasks, the CLI contract,
and one definition of perplexity shared with the harness's own metrics."""

from __future__ import annotations

import json
import math
import tempfile
from pathlib import Path

import pytest
import torch

from llm_playground.core.errors import UserError
from llm_playground.core.paths import package_data
from llm_playground.evaluation import local_tasks
from llm_playground.evaluation import perplexity as ppl
from llm_playground.evaluation.harness import HarnessConfig, HarnessDone, harness_events
from llm_playground.evaluation.scoring import load_lab2_scorer

SMOLLM_DIR = Path.home() / ".cache" / "llm-playground" / "models" / "smollm2-135m-instruct"


@pytest.fixture
def tiny_run(tmp_path) -> Path:
    """A Lab 2 run without a Hugging Face export: random weights, the character tokenizer."""
    from llm_playground.tokenization.tokenizer import CharTokenizer
    from llm_playground.training.checkpoints import save_checkpoint
    from llm_playground.training.config import preset
    from llm_playground.training.corpus import load_corpus
    from llm_playground.training.model import build_model

    torch.manual_seed(0)
    tok = CharTokenizer.from_text(load_corpus().text)
    config = preset("baby-gpt", n_layer=1, n_head=2, n_embd=16, block_size=96)
    folder = tmp_path / "tiny-run"
    save_checkpoint(folder, build_model(config.model), config, tok, step=1, export_hf=False)
    assert not (folder / "hf").exists()
    return folder


@pytest.fixture(scope="module")
def tiny_llama():
    """A small random Llama with SmolLM2's tokenizer: the harness's own HF model class runs it."""
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    from llm_playground.generation.registry import LoadedModel, ModelInfo

    if not (SMOLLM_DIR / "tokenizer.json").exists():
        pytest.skip("the offline SmolLM2 tokenizer is not installed")
    tok = AutoTokenizer.from_pretrained(SMOLLM_DIR)
    torch.manual_seed(0)
    config = LlamaConfig(
        vocab_size=len(tok),
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=4096,
        bos_token_id=tok.bos_token_id,
        eos_token_id=tok.eos_token_id,
    )
    model = LlamaForCausalLM(config).eval()
    return LoadedModel(ModelInfo("tiny-llama", "offline", "random weights"), model, tok)


def test_the_shipped_task_files_are_rebuilt_identically(tmp_path):
    for path in local_tasks.build_task_files(tmp_path):
        shipped = package_data(local_tasks.TASKS_FOLDER, path.name)
        assert path.read_bytes() == shipped.read_bytes(), path.name
    rows = [json.loads(line) for line in shipped.open() if line.strip()]
    assert rows and all("context" in r for r in rows)
    items = [
        json.loads(line)
        for line in package_data(
            local_tasks.TASKS_FOLDER, f"{local_tasks.NEXT_LINE}.test.jsonl"
        ).open()
    ]
    assert len(items) == 200 and all(len(i["choices"]) == 4 for i in items)
    assert all(i["choices"][i["label"]] not in i["context"] for i in items)


def test_the_model_class_scores_a_continuation_like_a_direct_forward_pass(tiny_run):
    from llm_playground.evaluation.harness import playground_lm

    scorer = load_lab2_scorer(tiny_run)
    lm = playground_lm(scorer)

    class Request:
        def __init__(self, *args):
            self.args = args

    context, continuation = "ROMEO:\nBut soft,", " what light"
    (ll, greedy), (ll2, _) = lm.loglikelihood(
        [Request(context, continuation), Request(context + " ", "what light")]
    )
    ids = scorer.encode(context + continuation)[0]
    n = len(continuation)
    with torch.no_grad():
        logits = scorer.model(torch.tensor([ids[:-1]]))[0][0]
    logp = torch.log_softmax(logits, -1)[-n:].gather(1, torch.tensor(ids[-n:])[:, None])
    assert ll == pytest.approx(float(logp.sum()), rel=1e-5)
    assert ll2 == pytest.approx(ll, rel=1e-5)  # a trailing space moves into the continuation
    assert isinstance(greedy, bool)


def test_a_lab2_run_without_export_runs_the_local_task(tiny_run):
    events = list(
        harness_events(
            load_lab2_scorer(tiny_run), HarnessConfig(tasks=("playground_next_line",), limit=3)
        )
    )
    done = events[-1]
    assert isinstance(done, HarnessDone)
    metrics = {s.metric: s for s in done.result.scores}
    assert set(metrics) == {"acc", "acc_norm"}
    assert metrics["acc"].version == "1.0" and metrics["acc"].num_fewshot == 0
    assert 0 <= metrics["acc"].value <= 1 and metrics["acc"].stderr is not None
    assert done.result.n_samples["playground_next_line"] == 3
    steps = [e.step for e in events if hasattr(e, "step")]
    assert steps[-1] == 12  # 3 documents x 4 choices


def test_cli_harness_json_contract_and_leaderboard_rows(cli, tiny_run):
    proc = cli(
        "eval", "harness", "--checkpoint", str(tiny_run), "--tasks", "playground_next_line",
        "--limit", "2", "--num-fewshot", "1", "--json",
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout)
    assert set(out) == {"results", "model", "tasks", "num_fewshot", "limit"}
    assert out["tasks"] == ["playground_next_line"] and out["num_fewshot"] == 1
    assert out["limit"] == 2 and out["model"] == "tiny-run"
    row = out["results"]["playground_next_line"]
    assert set(row) == {"acc", "acc_stderr", "acc_norm", "acc_norm_stderr"}
    board = cli("leaderboard", "--json")
    benchmarks = json.loads(board.stdout)["benchmarks"]
    assert {b["metric"] for b in benchmarks} == {"acc", "acc_norm"}
    for b in benchmarks:
        assert b["task"] == "playground_next_line" and b["task_version"] == "1.0"
        assert b["num_fewshot"] == 1 and b["limit"] == 2 and b["stderr"] is not None
    text = cli("leaderboard").stdout
    assert "playground_next_line v1.0, 1-shot, first 2 documents: acc" in text


@pytest.mark.parametrize(
    "args,needle",
    [
        pytest.param(
            ["--tasks", "no_such_task"], "unknown task 'no_such_task'", marks=pytest.mark.slow
        ),
        (["--tasks", "playground_next_line", "--num-fewshot", "-1"], "--num-fewshot"),
        (["--tasks", "playground_next_line", "--limit", "0"], "--limit"),
        (["--tasks", " , "], "no task given"),
    ],
)
def test_cli_harness_bad_input_is_one_line_exit_2(cli, tiny_run, args, needle):
    proc = cli("eval", "harness", "--checkpoint", str(tiny_run), *args)
    assert proc.returncode == 2, proc.stderr
    assert needle in proc.stderr and "Traceback" not in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1


def test_unknown_task_in_process():
    with pytest.raises(UserError, match="no task given"):
        HarnessConfig(tasks=()).check()


def _lm_eval_rolling(loaded, max_length: int) -> dict:
    """lm-eval's own HF model class and metrics on the first shipped WikiText-2 article."""
    import lm_eval
    from lm_eval.models.huggingface import HFLM
    from lm_eval.tasks import TaskManager

    lm = HFLM(
        pretrained=loaded.model, tokenizer=loaded.tokenizer, max_length=max_length, batch_size=1
    )
    with tempfile.TemporaryDirectory() as folder:
        local_tasks.write_task_yamls(Path(folder))
        out = lm_eval.simple_evaluate(
            model=lm,
            tasks=[local_tasks.WIKITEXT],
            limit=1,
            task_manager=TaskManager(include_path=folder, include_defaults=False),
            log_samples=False,
            verbosity="ERROR",
        )
    return out["results"][local_tasks.WIKITEXT]


def _first_article() -> str:
    text = package_data("wikitext-2", "test.txt").read_text(encoding="utf-8")
    return local_tasks.wikitext_articles(text)[0]


def _check_agreement(loaded, max_length: int) -> None:
    theirs = _lm_eval_rolling(loaded, max_length)
    ours = ppl.perplexity(
        loaded, _first_article(), stride=max_length, max_length=max_length, dtype="float32"
    )
    assert ours.n_tokens > 2 * max_length  # several windows
    assert ours.word_perplexity == pytest.approx(theirs["word_perplexity,none"], rel=0.005)
    assert ours.bits_per_byte == pytest.approx(theirs["bits_per_byte,none"], rel=0.005)
    assert math.exp(ours.bits_per_byte * math.log(2)) == pytest.approx(
        theirs["byte_perplexity,none"], rel=0.005
    )


def test_perplexity_agrees_with_lm_evals_own_metrics(tiny_llama):
    _check_agreement(tiny_llama, max_length=512)


@pytest.mark.slow
def test_perplexity_agrees_with_lm_eval_on_smollm2():
    from llm_playground.generation.registry import load_model

    _check_agreement(load_model("smollm2-135m-instruct"), max_length=512)


def test_rolling_windows_are_the_harness_windows():
    from lm_eval.utils import get_rolling_token_windows

    for n_tokens, max_length in ((1, 4), (4, 4), (10, 4), (23, 5)):
        tokens = list(range(100, 100 + n_tokens))
        seq = [0, *tokens]  # the prefix token, then the text
        theirs = list(get_rolling_token_windows(tokens, 0, max_length, 1))
        ours = ppl.rolling_windows(len(seq), max_length)
        assert [(seq[w.begin : w.end - 1], seq[w.end - w.n_targets : w.end]) for w in ours] == [
            (list(a), list(b)) for a, b in theirs
        ]


@pytest.mark.slow
def test_cli_harness_with_smollm2_on_the_local_tasks(cli):
    proc = cli(
        "eval", "harness", "--model", "smollm2-135m-instruct",
        "--tasks", "playground_next_line,playground_last_word", "--limit", "5", "--json",
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    results = json.loads(proc.stdout)["results"]
    assert set(results) == {"playground_next_line", "playground_last_word"}
    assert 0 <= results["playground_next_line"]["acc"] <= 1
