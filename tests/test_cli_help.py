"""Every --help reads as plain text and ends with an example that the parser accepts."""

from __future__ import annotations

import argparse
import shlex

import pytest

from llm_playground.cli import PROG, build_parser


def _parsers(parser: argparse.ArgumentParser):
    """The top-level parser and every sub-command's, depth first."""
    yield parser
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for sub in action.choices.values():
                yield from _parsers(sub)


PARSERS = {parser.prog: parser for parser in _parsers(build_parser())}


def _examples(help_text: str) -> list[str]:
    """The command lines under the "Example:" (or "Examples:") heading."""
    lines = help_text.splitlines()
    start = next(i for i, line in enumerate(lines) if line in ("Example:", "Examples:"))
    return [line.strip() for line in lines[start + 1 :] if line.startswith("  ")]


def test_every_command_is_covered():
    assert len(PARSERS) > 25
    for name in ("llm-playground", "llm-playground bpe train", "llm-playground eval judge"):
        assert name in PARSERS


@pytest.mark.parametrize("prog", sorted(PARSERS))
def test_help_is_plain_text_with_an_example_that_parses(prog):
    help_text = PARSERS[prog].format_help()
    assert "``" not in help_text and ":func:" not in help_text and ":class:" not in help_text
    examples = _examples(help_text)
    assert examples, f"{prog} --help has no example"
    for command in examples:
        words = shlex.split(command)
        assert words[0] == PROG
        assert command.startswith(prog)  # an example of this command (or one below it)
        build_parser().parse_args(words[1:])  # argparse exits with status 2 on a bad example


def test_top_level_help_through_the_command(cli):
    result = cli("--help")
    assert result.returncode == 0
    first_lines = result.stdout.split("\n\n")[1]  # the description, after the usage
    assert first_lines.startswith("LLM Playground from the command line")
    assert "``" not in result.stdout
    assert "\nExamples:\n  llm-playground " in result.stdout


def test_a_long_description_is_still_wrapped():
    help_text = PARSERS["llm-playground eval perplexity"].format_help()
    assert max(len(line) for line in help_text.split("Example")[0].splitlines()) <= 100
