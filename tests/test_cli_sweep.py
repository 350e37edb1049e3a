"""A sweep of bad arguments over every sub-command: each one is refused with exit status 2
and one line on standard error, never a traceback, and leaves no new folder behind
(``{new}`` stands for a place that does not exist: it must still not exist afterwards).

Every case also gets bytes that are not UTF-8 on standard input. Cases that argparse
refuses, and every case of Lab 1, the shell and ``serve``, run inside this process
through ``cli.main`` (fast, in the default suite). The cases of an outside audit
(:data:`AUDIT`: damaged checkpoints, a model too large for memory, limits and refusals
that used to leave folders) run as real processes forked from a preloaded interpreter,
also in the default suite, and must be refused at once. The others start the real
command, which may load a model before refusing: they run as real processes, several at a
time, in the slow suite.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import pytest

from llm_playground import cli as cli_module
from llm_playground.cli import build_parser

BAD_STDIN = b"\xff\xfe not UTF-8 \xc3\x28"
OWN = {"", "tokenizers", "tokenize", "bpe", "serve", "models"}  # cheap: run in this process


@dataclass(frozen=True)
class Case:
    args: tuple[str, ...]
    env: tuple[tuple[str, str], ...] = ()

    @property
    def command(self) -> str:
        first = self.args[0] if self.args else ""
        return "" if first.startswith("-") or first == "no-such-command" else first

    @property
    def id(self) -> str:
        shown = " ".join(
            (a if len(a) <= 40 else a[:12] + "...").replace("{", "").replace("}", "")
            for a in self.args
        )
        shown = shown.replace("smollm2-135m-instruct", "M").replace("http://127.0.0.1:9/v1", "U")
        return shown + "".join(f" [{k}]" for k, _ in self.env)


def cases() -> list[Case]:
    """The sweep. ``{name}`` stands for a file or folder made by the ``files`` fixture."""
    model = "smollm2-135m-instruct"
    out: list[Case] = []

    def add(base: tuple[str, ...], *variants: tuple[str, ...]) -> None:
        for variant in variants:
            out.append(Case(base + variant))

    numbers = ("-1", "nan", "inf")
    add((), ("no-such-command",), ("--bogus",))
    add(("assets",), ("nope",), ("check", "--bogus"))
    add(("tokenizers",), ("extra",))
    tok = ("tokenize", "-t", "gpt2")
    add(
        ("tokenize",),
        ("-t", "gpt2"),  # standard input that is not UTF-8
        ("-t", "gpt2", "-"),
        ("-t", "no-such-tokenizer", "x"),
        ("-t", "{missing}.json", "x"),
        ("-t", "{folder_json}", "x"),
        ("-t", "{text}", "x"),
        ("-t", "{bad_json}", "x"),
    )
    add(tok, ("--format", "nope", "x"), ("--clean", "nope", "x"))
    add(tok, *(("--max-pieces", n, "x") for n in (*numbers, "1.5")))
    train = ("bpe", "train", "--vocab-size", "300", "--out", "{out}.json", "--input")
    add(("bpe",), ("nope",))
    add(train, ("{missing}",), ("{folder}",), ("-",), ("{latin1}",))
    add(
        ("bpe", "train", "--input", "{text}", "--out", "{out}.json", "--vocab-size"),
        *((n,) for n in (*numbers, "255", "1000000000")),
    )
    add(
        ("bpe", "train", "--vocab-size", "300", "--input", "{text}", "--out"),
        ("{folder_json}",),
        ("{out}.txt",),
        ("/proc/no-such-place/t.json",),
        ("{saved}",),
    )
    add(
        ("bpe", "train", "--vocab-size", "300", "--input", "{text}", "--out", "{out}.json"),
        ("--pattern", "nope"),
    )
    add(("bpe", "merges"), ("{missing}.json",), ("{folder_json}",), ("{text}",))
    add(("bpe", "merges", "{saved}", "--limit"), *((n,) for n in numbers))
    add(
        ("serve",),
        ("--port", "-1"),
        ("--port", "nan"),
        ("--port", "99999"),
        ("--host", "0.0.0.0"),
        ("--host", ""),
    )

    # Lab 2
    base = ("train", "--preset", "bigram", "--out", "{out}")
    add(("train",), ("--preset", "nope", "--out", "{out}"))
    add(
        base,
        ("--lr", "nan"),
        ("--lr", "inf"),
        ("--lr", "-1"),
        ("--max-iters", "-1"),
        ("--batch-size", "-1"),
        ("--block-size", "-1"),
        ("--dropout", "nan"),
        ("--eval-interval", "-1"),
        ("--data", "{missing}"),
        ("--data", "{folder}"),
        ("--data", "{latin1}"),
        ("--tokenizer", "{missing}.json"),
        ("--resume", "{missing}"),
        ("--device", "nope"),
    )
    add(("train", "--preset", "bigram", "--out"), ("{text}",))
    add(("sample", "--checkpoint"), ("{missing}",), ("{folder}",), ("{text}",))
    add(
        ("sample", "--checkpoint", "{checkpoint}"),
        ("--max-new-tokens", "-1"),
        ("--temperature", "nan"),
        ("--temperature", "-1"),
        ("--top-k", "-1"),
    )
    # Lab 3
    gen = ("generate", "--model", model, "--prompt", "hi", "--max-new-tokens", "2")
    add(
        gen,
        ("--temperature", "nan"),
        ("--temperature", "-1"),
        ("--top-k", "-1"),
        ("--top-p", "nan"),
        ("--top-p", "2"),
        ("--num-beams", "0"),
        ("--strategy", "nope"),
        ("--repetition-penalty", "nan"),
        ("--no-repeat-ngram-size", "-1"),
        ("--candidates", "-1"),
        ("--max-new-tokens", "-1"),
    )
    add(
        ("generate", "--prompt", "hi"),
        ("--model", "nope"),
        ("--checkpoint", "{missing}"),
        ("--checkpoint", "{folder}"),
    )
    # Lab 4
    sft = ("sft", "--base", model, "--data", "{instructions}", "--out", "{out}")
    add(
        sft,
        ("--lora-r", "-1"),
        ("--lora-alpha", "nan"),
        ("--lora-dropout", "nan"),
        ("--lr", "nan"),
        ("--lr", "-1"),
        ("--max-steps", "-1"),
        ("--seq-len", "-1"),
        ("--batch-size", "0"),
        ("--heldout-max", "-1"),
        ("--dtype", "nope"),
    )
    add(("sft", "--base", model, "--out", "{out}", "--data"), ("{missing}",), ("{folder}",))
    dpo = ("dpo", "--base", model, "--prefs", "{prefs}", "--out", "{out}")
    add(
        dpo,
        ("--beta", "nan"),
        ("--beta", "-1"),
        ("--lr", "nan"),
        ("--max-steps", "-1"),
        ("--max-length", "-1"),
    )
    add(
        ("dpo", "--base", model, "--out", "{out}", "--prefs"),
        ("{missing}",),
        ("{folder}",),
        ("{text}",),
    )
    vote = ("prefs", "add", "--prompt", "p", "--response-a", "a", "--response-b", "b")
    add(vote, ("--choice", "nope"), ("--choice", "a", "--db", "{text}"))
    add(
        ("prefs", "export"),
        ("--out", "{folder}"),
        ("--out", "{out}.jsonl", "--ties", "nope"),
        ("--out", "{out}.jsonl", "--db", "{text}"),
    )
    add(("prefs", "stats"), ("--bootstrap", "-1"), ("--bootstrap", "nan"), ("--db", "{text}"))
    # Lab 5
    ppl = ("eval", "perplexity", "--model", model, "--data", "{text}", "--no-record")
    add(
        ppl,
        ("--stride", "-1"),
        ("--stride", "nan"),
        ("--max-length", "-1"),
        ("--max-tokens", "-1"),
        ("--batch-size", "0"),
        ("--dtype", "nope"),
    )
    add(
        ("eval", "perplexity", "--model", model, "--no-record", "--data"),
        ("{missing}",),
        ("{folder}",),
        ("{latin1}",),
    )
    add(("eval", "perplexity", "--data", "{text}", "--no-record"), ("--model", "nope"))
    for metric in ("bleu", "rouge"):
        add(
            (("eval", metric, "--no-record")),
            ("--hyp", "{missing}", "--ref", "{text}"),
            ("--hyp", "{folder}", "--ref", "{text}"),
            ("--hyp", "{latin1}", "--ref", "{text}"),
            ("--hyp", "{text}", "--ref", "{missing}"),
        )
    add(
        ("eval", "reference", "--model", model, "--no-record"),
        ("--limit", "-1"),
        ("--max-new-tokens", "-1"),
        ("--max-new-tokens", "nan"),
    )
    judge = (
        "eval",
        "judge",
        "--judge-model",
        "m",
        "--base-url",
        "http://127.0.0.1:9/v1",
        "--questions",
        "{questions}",
        "--answers",
        "{answers}",
        "--no-record",
    )
    add(judge, ("--timeout", "-1"), ("--timeout", "nan"), ("--timeout", "inf"), ("--retries", "-3"))
    add(
        (
            "eval",
            "judge",
            "--judge-model",
            "m",
            "--base-url",
            "http://127.0.0.1:9/v1",
            "--no-record",
        ),
        ("--questions", "{missing}", "--answers", "{answers}"),
        ("--questions", "{folder}", "--answers", "{answers}"),
    )
    # Lab 4's reward models and GRPO, Lab 6's inspection
    add(
        ("reward",),
        ("nope",),
        ("score", "--reward", "{missing}", "--prompt", "p", "--response", "r"),
    )
    add(
        ("reward", "train", "--base", model, "--out", "{new}/reward", "--prefs"),
        ("{missing}",),
        ("{folder}",),
    )
    rl = ("rl", "--base", model, "--out", "{new}/run", "--reward")
    add(rl, ("nope",), ("arithmetic", "--steps", "-1"), ("arithmetic", "--beta", "nan"))
    add(
        ("inspect", "--model", model),
        ("--prompt", "hi", "--top-k", "-1"),
        ("--induction-probe", "2"),
        ("--prompt", "hi", "--ablate", "nope"),
    )
    add(("inspect", "--prompt", "hi", "--checkpoint"), ("{missing}",), ("{folder}",))
    add(("leaderboard",), ("--json", "--csv"), ("--bogus",))
    add(("models",), ("--bogus",), ("extra",))
    # a refused input leaves no new folder (``bpe train`` used to create --out's folder first)
    add(
        ("bpe", "train", "--vocab-size", "300", "--out", "{new}/dir/x.json", "--input"),
        ("{missing}",),
        ("{latin1}",),
        ("{folder}",),
    )
    add(("bpe", "train", "--vocab-size", "300", "--input", "{text}", "--out"), ("{text}/d/x.json",))
    out += AUDIT
    # a playground database that is not one
    corrupt = (("LLM_PLAYGROUND_HOME", "{corrupt_home}"),)
    out += [Case(("leaderboard",), corrupt), Case(("prefs", "stats"), corrupt)]
    return out


#: The cases of the outside audit that printed a traceback, ran unbounded or left a folder.
#: ``{bigram}`` is a tiny bigram run; ``{truncated}``, ``{garbage}`` and ``{bad_state}`` are
#: copies of it with a cut ``model.safetensors``, one that is not safetensors at all, and a
#: cut ``training_state.safetensors``.
AUDIT = [
    Case(("sample", "--checkpoint", "{truncated}")),
    Case(("sample", "--checkpoint", "{garbage}")),
    Case(("sample", "--checkpoint", "{bigram}", "--max-new-tokens", "1000000000")),
    Case(("generate", "--checkpoint", "{truncated}", "--prompt", "hi", "--strategy", "greedy")),
    Case(("train", "--preset", "bigram", "--resume", "{truncated}", "--out", "{new}/run")),
    Case(("train", "--preset", "bigram", "--resume", "{bad_state}", "--out", "{new}/run")),
    Case(
        (
            "train",
            "--preset",
            "baby-gpt",
            "--n-layer",
            "100000",
            "--n-embd",
            "100000",
            "--out",
            "{new}/run",
        )
    ),
    Case(
        (
            "prefs",
            "add",
            "--db",
            "{new}/dir/votes.sqlite",
            "--prompt",
            "p",
            "--response-a",
            "a",
            "--response-b",
            "b",
            "--choice",
            "a",
            "--model-a",
            "m" * 600,
        )
    ),
    Case(("prefs", "export", "--db", "{text}", "--out", "{new}/dir/x.jsonl")),
]


def _parse_fails(case: Case) -> bool:
    """True when argparse itself refuses the case (nothing of the command runs)."""
    with contextlib.redirect_stderr(io.StringIO()), contextlib.redirect_stdout(io.StringIO()):
        try:
            build_parser().parse_args(case.args)
        except SystemExit:
            return True
    return False


ALL = cases()
FAST = [c for c in ALL if (c.command in OWN or _parse_fails(c)) and c not in AUDIT]
FORKED = [c for c in AUDIT if c not in FAST]
SLOW = [c for c in ALL if c not in FAST and c not in FORKED]
COMMANDS = {
    name
    for action in build_parser()._subparsers._group_actions  # type: ignore[union-attr]
    for name in action.choices
}


def _marks(case: Case) -> list:
    return []


@pytest.fixture(scope="module")
def files(tmp_path_factory) -> dict[str, str]:
    from llm_playground.tokenization.bpe import BPETokenizer

    root = tmp_path_factory.mktemp("sweep")
    (root / "folder").mkdir()
    (root / "folder.json").mkdir()
    (root / "text.txt").write_text("hello world, to be or not to be\n" * 20)
    (root / "latin1.txt").write_bytes("café crème".encode("latin-1"))
    (root / "bad.json").write_text("{not json")
    BPETokenizer(merges=[(104, 101)], name="saved").save(root / "saved.json")
    (root / "instructions.jsonl").write_text(
        json.dumps({"instruction": "Say hi", "input": "", "output": "hi"}) + "\n"
    )
    (root / "prefs.jsonl").write_text(
        json.dumps({"prompt": "p", "chosen": "a", "rejected": "b"}) + "\n"
    )
    (root / "questions.jsonl").write_text(json.dumps({"id": "1", "question": "q?"}) + "\n")
    (root / "answers.jsonl").write_text(json.dumps({"id": "1", "answer": "a"}) + "\n")
    corrupt = root / "corrupt-home"
    corrupt.mkdir()
    (corrupt / "playground.sqlite").write_bytes(b"this is not a database" * 100)
    return {
        "missing": str(root / "missing"),
        "folder": str(root / "folder"),
        "folder_json": str(root / "folder.json"),
        "text": str(root / "text.txt"),
        "latin1": str(root / "latin1.txt"),
        "bad_json": str(root / "bad.json"),
        "saved": str(root / "saved.json"),
        "instructions": str(root / "instructions.jsonl"),
        "prefs": str(root / "prefs.jsonl"),
        "questions": str(root / "questions.jsonl"),
        "answers": str(root / "answers.jsonl"),
        "corrupt_home": str(corrupt),
        "checkpoint": str(root / "checkpoint"),
        "out": str(root / "out"),
        "root": str(root),
    }


def _new(files: dict[str, str], index: int) -> Path:
    """The case's ``{new}``: a place that does not exist and must not after the case."""
    return Path(files["root"]) / f"new-{index}"


def _fill(case: Case, files: dict[str, str], index: int) -> tuple[list[str], dict[str, str]]:
    names = {**files, "out": f"{files['out']}-{index}", "new": str(_new(files, index))}
    args = [a.format(**names) for a in case.args]
    env = {k: v.format(**names) for k, v in case.env}
    return args, env


def _check(case: Case, code: int, stderr: str, new: Path | None = None) -> None:
    lines = stderr.strip().splitlines()
    assert "Traceback" not in stderr, stderr[-3000:]
    assert code == 2, f"exit {code}: {stderr[-1000:]}"
    assert len(lines) == 1, stderr[-1000:]
    if new is not None:
        assert not new.exists(), f"the refused command left {new} behind"


def _run_in_process(args: list[str], env: dict[str, str], monkeypatch) -> tuple[int, str]:
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    monkeypatch.delenv("LLM_PLAYGROUND_ACCESS_CODE", raising=False)
    monkeypatch.setattr(os, "execv", _no_exec)
    stdin = io.TextIOWrapper(io.BytesIO(BAD_STDIN), encoding="utf-8")
    monkeypatch.setattr(sys, "stdin", stdin)
    err = io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
        try:
            code = cli_module.main(args)
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else 2
        except Exception:  # noqa: BLE001 - what a real process would print
            import traceback

            traceback.print_exc(file=err)
            code = 1
    return code, err.getvalue()


def _no_exec(*args) -> None:
    raise AssertionError("serve passed its checks and would have started the app")


def test_the_sweep_covers_every_command():
    swept = {c.args[0] for c in ALL if c.args and c.command}
    assert COMMANDS <= swept, COMMANDS - swept


@pytest.mark.parametrize("case", [pytest.param(c, id=c.id, marks=_marks(c)) for c in FAST])
def test_bad_arguments_are_one_line_exit_2(case, files, monkeypatch, tmp_path):
    monkeypatch.setenv("LLM_PLAYGROUND_HOME", str(tmp_path / "home"))
    args, env = _fill(case, files, FAST.index(case))
    code, stderr = _run_in_process(args, env, monkeypatch)
    _check(case, code, stderr, _new(files, FAST.index(case)))


# --- commands that start real work before refusing: real processes, in the slow suite ----


def _run_process(case: Case, files: dict[str, str], index: int) -> tuple[int, str]:
    args, env = _fill(case, files, 1000 + index)
    full_env = {
        **os.environ,
        "LLM_PLAYGROUND_HOME": str(Path(files["root"]) / f"home-{index}"),
        "HF_HUB_OFFLINE": "1",
        "TRANSFORMERS_OFFLINE": "1",
        "HF_DATASETS_OFFLINE": "1",
        **env,
    }
    full_env.pop("LLM_PLAYGROUND_ACCESS_CODE", None)
    try:
        proc = subprocess.run(
            [sys.executable, "-m", "llm_playground", *args],
            input=BAD_STDIN,
            capture_output=True,
            env=full_env,
            timeout=180,
        )
    except subprocess.TimeoutExpired:
        return -1, "still running after 180 s: the bad argument was accepted"
    return proc.returncode, proc.stderr.decode("utf-8", "replace")


@pytest.fixture(scope="module")
def slow_results(files) -> dict[str, tuple[int, str]]:
    """Every slow case run once, three at a time (a tiny checkpoint first, for ``sample``)."""
    subprocess.run(
        [
            sys.executable,
            "-m",
            "llm_playground",
            "train",
            "--preset",
            "bigram",
            "--max-iters",
            "2",
            "--eval-interval",
            "1",
            "--eval-iters",
            "1",
            "--out",
            files["checkpoint"],
        ],
        capture_output=True,
        env={**os.environ, "LLM_PLAYGROUND_HOME": str(Path(files["root"]) / "home-ckpt")},
        timeout=300,
    )
    with ThreadPoolExecutor(max_workers=3) as pool:
        results = dict(
            zip(
                (case.id for case in SLOW),
                pool.map(lambda ic: _run_process(ic[1], files, ic[0]), enumerate(SLOW)),
                strict=True,
            )
        )
    if os.environ.get("LLM_PLAYGROUND_SWEEP_REPORT"):  # a JSON report of every case
        Path(os.environ["LLM_PLAYGROUND_SWEEP_REPORT"]).write_text(json.dumps(results, indent=1))
    return results


@pytest.mark.slow
@pytest.mark.timeout(3600)  # the first case waits for the whole sweep (many model loads)
@pytest.mark.parametrize("case", [pytest.param(c, id=c.id, marks=_marks(c)) for c in SLOW])
def test_bad_arguments_of_running_commands_are_one_line_exit_2(case, slow_results, files):
    code, stderr = slow_results[case.id]
    _check(case, code, stderr, _new(files, 1000 + SLOW.index(case)))


# --- the audit's cases: real processes forked from a preloaded interpreter ------------------


@pytest.fixture(scope="module")
def runs(files) -> dict[str, str]:
    """A tiny bigram run (saved by the library, no training) and three damaged copies."""
    import shutil

    from llm_playground.training.checkpoints import (
        STATE_FILE,
        WEIGHTS_FILE,
        RunState,
        save_checkpoint,
    )
    from llm_playground.training.config import preset
    from llm_playground.training.corpus import load_corpus
    from llm_playground.training.model import build_model
    from llm_playground.training.optim import build_optimizer

    root = Path(files["root"])
    corpus = load_corpus()  # what `train --preset bigram` trains on, so --resume fits it
    config = preset("bigram").replace(vocab_size=corpus.vocab_size)
    model = build_model(config.model)
    bigram = save_checkpoint(
        root / "bigram",
        model,
        config,
        corpus.tokenizer,
        step=1,
        state=RunState(optimizer=build_optimizer(model, config, "cpu")),
    )
    made = {"bigram": str(bigram)}
    for name, file, damage in (
        ("truncated", WEIGHTS_FILE, lambda data: data[: len(data) // 2]),
        ("garbage", WEIGHTS_FILE, lambda data: b"not safetensors at all" * 10),
        ("bad_state", STATE_FILE, lambda data: data[:100]),
    ):
        copy = root / name
        shutil.copytree(bigram, copy)
        (copy / file).write_bytes(damage((copy / file).read_bytes()))
        made[name] = str(copy)
    return made


@pytest.mark.parametrize("case", [pytest.param(c, id=c.id) for c in FORKED])
def test_the_audits_cases_are_one_line_exit_2_at_once(case, files, runs, cli):
    import time

    index = 2000 + FORKED.index(case)
    args, env = _fill(case, {**files, **runs}, index)
    started = time.monotonic()
    result = cli(*args, input=BAD_STDIN, env=env, timeout=120)
    seconds = time.monotonic() - started
    _check(case, result.returncode, result.stderr.decode("utf-8", "replace"), _new(files, index))
    assert seconds < 60, f"refused only after {seconds:.0f} s"


def test_the_refusals_name_the_file_the_limit_and_the_estimate(files, runs, cli):
    err = cli("sample", "--checkpoint", runs["truncated"]).stderr
    assert f"{runs['truncated']}/model.safetensors cannot be read" in err
    for name, file in (("truncated", "model"), ("bad_state", "training_state")):
        err = cli("train", "--preset", "bigram", "--resume", runs[name], "--out", "x").stderr
        assert f"{runs[name]}/{file}.safetensors cannot be read" in err
    err = cli("sample", "--checkpoint", runs["bigram"], "--max-new-tokens", "4097").stderr
    assert "--max-new-tokens must be at most 4,096" in err
    new = _new(files, 3000)
    r = cli(
        "train",
        "--preset",
        "baby-gpt",
        "--n-layer",
        "100000",
        "--n-embd",
        "100000",
        "--out",
        str(new),
    )
    assert r.returncode == 2 and "this run needs about" in r.stderr and "GB free" in r.stderr
    assert not new.exists()


def test_generate_decodes_with_a_bigram_run(runs, cli, tmp_path):
    """A bigram run has no Hugging Face export; generate runs it through the playground's
    own forward pass, by folder and by name, with each strategy."""
    import shutil

    for strategy in ("greedy", "beam", "top-k"):
        r = cli(
            "generate",
            "--checkpoint",
            runs["bigram"],
            "--prompt",
            "ROMEO:",
            "--strategy",
            strategy,
            "--max-new-tokens",
            "12",
            "--json",
        )
        assert r.returncode == 0, r.stderr
        assert json.loads(r.stdout)["new_tokens"] == 12
    home = tmp_path / "home"
    shutil.copytree(runs["bigram"], home / "runs" / "my-bigram")
    r = cli(
        "generate",
        "--model",
        "my-bigram",
        "--prompt",
        "To be",
        "--strategy",
        "greedy",
        "--max-new-tokens",
        "5",
        env={"LLM_PLAYGROUND_HOME": str(home)},
    )
    assert r.returncode == 0 and r.stdout.strip(), r.stderr


def test_the_memory_estimate_counts_every_layer_without_building_them():
    """``train``'s estimate counts the parameters of one and two layers and extrapolates:
    the same count as the whole model built, and the same bytes as training_memory's."""
    from llm_playground.cli.train import training_bytes
    from llm_playground.training.config import preset
    from llm_playground.training.model import build_model, count_parameters, training_memory

    for name in ("baby-gpt", "speedrun"):
        config = preset(name).replace(n_layer=5, n_embd=64, n_head=4, vocab_size=65)
        built = count_parameters(build_model(config.model))
        expected = training_memory(config.model, built, config.batch_size, bytes_per_value=2)
        assert training_bytes(config) == sum(expected.values())
