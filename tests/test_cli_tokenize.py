"""The Lab 1 command line, end to end as real processes, offline included."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys

import pytest

from llm_playground.core.paths import package_data
from llm_playground.tokenization import assets

SHAKESPEARE = package_data("tinyshakespeare.txt")


@pytest.fixture(scope="module", autouse=True)
def tiktoken_assets():
    assets.install_tiktoken_assets()


def _one_line_error(proc, needle):
    stderr = proc.stderr.decode() if isinstance(proc.stderr, bytes) else proc.stderr
    assert proc.returncode == 2, stderr
    lines = stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in stderr, stderr
    assert lines[0].startswith("llm-playground: error:") and needle in lines[0], lines[0]


def test_tokenizers_lists_names_one_a_line(cli, playground_home):
    proc = cli("tokenizers")
    assert proc.returncode == 0
    names = proc.stdout.splitlines()
    assert names[:6] == ["gpt2", "r50k_base", "p50k_base", "cl100k_base", "o200k_base", "char"]


def test_tokenize_json_known_answer(cli):
    proc = cli("tokenize", "--tokenizer", "gpt2", "Hello world, To be or not to be!")
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout)
    assert set(out) == {"tokenizer", "text", "ids", "pieces", "n_tokens"}
    assert out["ids"] == [15496, 995, 11, 1675, 307, 393, 407, 284, 307, 0]
    assert out["pieces"][:3] == ["Hello", " world", ","] and out["n_tokens"] == 10
    assert out["tokenizer"] == "gpt2" and out["text"] == "Hello world, To be or not to be!"


@pytest.mark.parametrize("args", [[], ["-"]])
def test_tokenize_reads_stdin(cli, args):
    proc = cli("tokenize", "--tokenizer", "cl100k_base", *args, input="hello world")
    assert json.loads(proc.stdout)["ids"] == [15339, 1917]


def test_tokenize_with_cleaning(cli):
    proc = cli(
        "tokenize",
        "-t",
        "gpt2",
        "--clean",
        "html,whitespace",
        "<p>Hello&nbsp;&amp;   <b>world</b></p>",
    )
    out = json.loads(proc.stdout)
    assert out["text"] == "Hello & world"
    assert out["pieces"] == ["Hello", " &", " world"]


def test_tokenize_html_escapes_user_text(cli):
    proc = cli("tokenize", "-t", "gpt2", "--format", "html", '<script>alert("x")</script> 你')
    assert proc.returncode == 0
    html = proc.stdout
    assert "<script>" not in html and "&lt;script&gt;" not in html  # split into tokens
    assert "&lt;" in html and "&quot;" in html and '"x"' not in html
    assert 'title="id 27 · bytes 3c"' in html
    assert "\\xe4\\xbd" in html and "\ufffd" not in html
    assert (
        html.count('<span class="lp-tok')
        == json.loads(cli("tokenize", "-t", "gpt2", '<script>alert("x")</script> 你').stdout)[
            "n_tokens"
        ]
    )


def test_tokenize_html_is_bounded(cli):
    proc = cli("tokenize", "-t", "gpt2", "--format", "html", "--max-pieces", "5", "a b c d e f g h")
    assert proc.stdout.count('<span class="lp-tok') == 5
    assert "Showing the first 5 of 8 tokens" in proc.stdout


def test_tokenize_text_format(cli):
    proc = cli("tokenize", "-t", "gpt2", "--format", "text", "Hi\nthere")
    lines = proc.stdout.splitlines()
    assert lines[0] == "# gpt2: 3 tokens, 8 characters, 2.67 characters per token"
    assert lines[1:] == ["17250\tHi", "198\t\\n", "8117\tthere"]


def test_bpe_train_then_tokenize_with_the_file(cli, tmp_path):
    out = tmp_path / "mine.json"
    proc = cli(
        "bpe", "train", "--vocab-size", "300", "--input", str(SHAKESPEARE), "--out", str(out)
    )
    assert proc.returncode == 0, proc.stderr
    assert "saved" in proc.stdout and "300 tokens" in proc.stdout
    assert "44/44" in proc.stderr  # the progress bar
    data = json.loads(out.read_text())
    assert data["version"] == 1 and len(data["merges"]) == 44
    proc = cli("tokenize", "--tokenizer", str(out), "First Citizen")
    res = json.loads(proc.stdout)
    assert "".join(res["pieces"]) == "First Citizen" and res["n_tokens"] < len("First Citizen")
    assert max(res["ids"]) >= 256
    merges = cli("bpe", "merges", str(out), "--limit", "2")
    assert merges.stdout.splitlines()[0] == "1\t256\t' ' + 't' -> ' t'"


def test_bpe_known_answer_from_stdin(cli, tmp_path):
    out = tmp_path / "abc.json"
    proc = cli(
        "bpe",
        "train",
        "--vocab-size",
        "259",
        "--input",
        "-",
        "--out",
        str(out),
        "--pattern",
        "none",
        input="aaabdaaabac",
    )
    assert proc.returncode == 0, proc.stderr
    res = json.loads(cli("tokenize", "-t", str(out), "aaabdaaabac").stdout)
    assert res["ids"] == [258, 100, 258, 97, 99]


def test_bad_input_exits_2_with_one_line(cli, tmp_path):
    _one_line_error(
        cli("tokenize", "--tokenizer", "no-such-tokenizer", "x"),
        "unknown tokenizer 'no-such-tokenizer'",
    )
    _one_line_error(
        cli("tokenize", "-t", "gpt2", input=b"\xff\xfe not utf-8"), "standard input is not UTF-8"
    )
    _one_line_error(
        cli("tokenize", "-t", "gpt2", "--clean", "html,markdown", "x"), "unknown cleaning step"
    )
    bad_arg = subprocess.run(
        [
            sys.executable.encode(),
            b"-m",
            b"llm_playground",
            b"tokenize",
            b"-t",
            b"gpt2",
            b"caf\xe9",
        ],
        capture_output=True,
    )
    _one_line_error(bad_arg, "TEXT is not UTF-8")
    binary = tmp_path / "latin1.txt"
    binary.write_bytes("café".encode("latin-1"))
    out = str(tmp_path / "o.json")
    _one_line_error(
        cli("bpe", "train", "--vocab-size", "300", "--input", str(binary), "--out", out),
        "is not UTF-8",
    )
    _one_line_error(
        cli("bpe", "train", "--vocab-size", "255", "--input", str(SHAKESPEARE), "--out", out),
        "at least 256",
    )
    empty = tmp_path / "empty.txt"
    empty.write_text("")
    _one_line_error(
        cli("bpe", "train", "--vocab-size", "300", "--input", str(empty), "--out", out), "is empty"
    )
    _one_line_error(
        cli(
            "bpe",
            "train",
            "--vocab-size",
            "300",
            "--input",
            str(tmp_path / "nope.txt"),
            "--out",
            out,
        ),
        "no such file",
    )
    foreign = tmp_path / "foreign.json"
    foreign.write_text('{"model": {"type": "BPE"}}')
    _one_line_error(cli("tokenize", "-t", str(foreign), "x"), "not an LLM Playground BPE tokenizer")
    _one_line_error(cli("tokenize", "-t", "char", "naïve €"), "is not in the char tokenizer")


def test_assets_check(cli):
    proc = cli("assets", "check")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert proc.stdout.count("ok ") >= 6


def test_assets_install_is_idempotent():
    results = assets.install_tiktoken_assets()
    assert [r.action for r in results] == ["present"] * 6
    assert all(
        ok for name, ok, _ in assets.verify_assets() if "/" in name or name.endswith("_base")
    )


def test_p50k_is_r50k_plus_space_runs():
    from llm_playground.core.paths import get_paths

    cache = get_paths().tiktoken_cache
    r50k = (cache / "0ea1e91bbb3a60f729a8dc8f777fd2fc07cd8df4").read_bytes()
    assert assets.sha256_bytes(assets.p50k_from_r50k(r50k)) == next(
        a.sha256 for a in assets.ASSET_FILES if a.encoding == "p50k_base"
    )


def _unshare_works() -> bool:
    if not shutil.which("unshare"):
        return False
    try:
        return (
            subprocess.run(["unshare", "-n", "true"], capture_output=True, timeout=10).returncode
            == 0
        )
    except (OSError, subprocess.SubprocessError):
        return False


@pytest.mark.skipif(
    not _unshare_works(), reason="unshare -n is not permitted here (needs user namespaces)"
)
def test_tokenize_works_without_a_network():
    env = {**os.environ}
    env.pop("TIKTOKEN_CACHE_DIR", None)
    script = (
        "import urllib.request\n"
        "try:\n urllib.request.urlopen('https://pypi.org', timeout=3); print('online')\n"
        "except OSError: print('offline')\n"
    )
    probe = subprocess.run(
        ["unshare", "-n", sys.executable, "-c", script], capture_output=True, text=True, env=env
    )
    assert probe.stdout.strip() == "offline"
    for name, ids in (
        ("gpt2", [15496, 995, 11, 1675, 307, 393, 407, 284, 307, 0]),
        ("o200k_base", None),
        ("cl100k_base", None),
        ("p50k_base", None),
    ):
        proc = subprocess.run(
            [
                "unshare",
                "-n",
                sys.executable,
                "-m",
                "llm_playground",
                "tokenize",
                "-t",
                name,
                "Hello world, To be or not to be!",
            ],
            capture_output=True,
            text=True,
            env=env,
            timeout=120,
        )
        assert proc.returncode == 0, proc.stderr
        out = json.loads(proc.stdout)
        assert out["n_tokens"] == 10 and (ids is None or out["ids"] == ids)


def test_bpe_train_outputs_are_checked_before_training(tmp_path, capsys):
    from llm_playground.cli import main

    def run(*args: str) -> subprocess.CompletedProcess:  # in process: fast
        code = main(list(args))
        captured = capsys.readouterr()
        return subprocess.CompletedProcess(args, code, captured.out, captured.err)

    train = ("bpe", "train", "--vocab-size", "260", "--input", str(SHAKESPEARE), "--out")
    folder = tmp_path / "folder.json"
    folder.mkdir()
    _one_line_error(run(*train, str(folder)), "is a folder")
    _one_line_error(run(*train, "/proc/no-such-place/t.json"), "cannot be written")
    blocker = tmp_path / "file"
    blocker.write_text("x")
    _one_line_error(run(*train, str(blocker / "t.json")), "cannot be written")
    out = tmp_path / "t.json"
    assert run(*train, str(out)).returncode == 0
    before = out.read_bytes()
    _one_line_error(run(*train, str(out)), "already exists; pass --force")
    assert out.read_bytes() == before
    replaced = run(*train[:2], "--vocab-size", "258", *train[4:], str(out), "--force")
    assert replaced.returncode == 0, replaced.stderr
    assert len(json.loads(out.read_text())["merges"]) == 2
    assert sorted(p.name for p in tmp_path.iterdir()) == ["file", "folder.json", "t.json"]


def test_hostile_tokenizer_file_is_one_line_and_fast(cli, tmp_path):
    doubling = tmp_path / "doubling.json"
    merges = [[97, 97]] + [[256 + i, 256 + i] for i in range(40)]
    doubling.write_text(
        json.dumps({"format": "llm-playground/bpe-tokenizer", "version": 1, "merges": merges})
    )
    _one_line_error(cli("tokenize", "-t", str(doubling), "aaaa"), "tokens may be at most 512 bytes")
    regex_bomb = tmp_path / "regex.json"
    regex_bomb.write_text(
        json.dumps(
            {
                "format": "llm-playground/bpe-tokenizer",
                "version": 1,
                "merges": [],
                "pattern": "(a+)+$",
            }
        )
    )
    _one_line_error(cli("tokenize", "-t", str(regex_bomb), "a" * 40 + "!"), "known patterns")
