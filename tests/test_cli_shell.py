"""The command line as a whole: help, version, and how a bad command is refused."""

import sqlite3

import pytest

from llm_playground import __version__
from llm_playground.cli import main
from llm_playground.cli import tokenize as tokenize_cli
from llm_playground.core.errors import UserError


def test_version(cli):
    result = cli("--version")
    assert result.returncode == 0
    assert __version__ in result.stdout


def test_no_command_prints_help_and_exits_2(cli):
    result = cli()
    assert result.returncode == 2
    assert "usage: llm-playground" in result.stdout


def test_unknown_command_is_one_line_exit_2(cli):
    result = cli("no-such-command")
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    assert "invalid choice" in result.stderr


@pytest.mark.parametrize(
    ("error", "message"),
    [
        (UserError("the vocabulary size must be at least 256"), "at least 256"),
        (FileNotFoundError(2, "No such file or directory", "/x/y.txt"), "No such file"),
        (IsADirectoryError(21, "Is a directory", "/tmp"), "Is a directory: /tmp"),
        (PermissionError(13, "Permission denied", "/root/x"), "Permission denied: /root/x"),
        (sqlite3.DatabaseError("file is not a database"), "database error: file is not a"),
        (KeyboardInterrupt(), "interrupted"),
        (MemoryError(), "out of memory"),
        (UnicodeDecodeError("utf-8", b"\xff", 0, 1, "invalid start byte"), "not UTF-8"),
        (UserError("two\nlines"), "two lines"),
    ],
)
def test_failures_become_one_line_and_exit_2(monkeypatch, capsys, error, message):
    def fail(args):
        raise error

    monkeypatch.setattr(tokenize_cli, "tokenizers_command", fail)
    assert main(["tokenizers"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("llm-playground: error: ") and message in err


def test_bugs_keep_their_traceback(monkeypatch):
    def bug(args):
        raise ZeroDivisionError("a bug")

    monkeypatch.setattr(tokenize_cli, "tokenizers_command", bug)
    with pytest.raises(ZeroDivisionError):
        main(["tokenizers"])
