"""The llm-playground command line.

Each lab registers its sub-commands from its own module in this package
(``tokenize``, ``train``, ``generate``, ``finetune``, ``evaluate``, ``assets``, ``models``,
``serve``): a module exposes ``register(subparsers)`` and sets ``func`` on each parser it adds.
Every parser gets its help layout and one example from :func:`example`, so ``--help`` reads
the same everywhere, as plain text.

:func:`main` is the one place where failures become messages: a
:class:`~llm_playground.core.errors.UserError`, a file-system error (``OSError``), a
database error (``sqlite3.Error``), running out of memory or an interrupt each become one
line on standard error and exit status 2, never a traceback. Anything else is a bug and
keeps its traceback.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import math
import sqlite3
import sys
from collections.abc import Callable, Sequence
from typing import Any

from llm_playground import __version__
from llm_playground.core.errors import UserError

# Sub-command modules, in the order their commands appear in --help.
COMMAND_MODULES = (
    "assets",
    "tokenize",
    "train",
    "generate",
    "finetune",
    "prefs",
    "reward",
    "rl",
    "evaluate",
    "inspect",
    "models",
    "serve",
)
PROG = "llm-playground"
DESCRIPTION = (
    "LLM Playground from the command line: tokenizers (Lab 1), training a small GPT (Lab 2), "
    "decoding (Lab 3), fine-tuning and preferences (Lab 4), evaluation (Lab 5) and the "
    "inside of a model (Lab 6). Every command has its own --help with an example."
)
EXAMPLES = (
    "llm-playground assets check",
    "llm-playground tokenize --tokenizer gpt2 'Hello, world'",
    "llm-playground generate --model smollm2-135m-instruct --prompt 'Once upon a time' "
    "--strategy top-p --seed 1",
)


class HelpFormatter(argparse.HelpFormatter):
    """argparse's layout, except that the example lines at the end are kept as written."""

    def _fill_text(self, text: str, width: int, indent: str) -> str:
        if text.startswith("Example"):
            return "\n".join(indent + line for line in text.splitlines())
        return super()._fill_text(text, width, indent)


def example(*commands: str, description: str | None = None) -> dict[str, Any]:
    """The ``add_parser`` keywords every command shares: an "Example:" section with the
    given command lines after the options, the layout that keeps them as written, and the
    description (when given) shown under the usage line."""
    heading = "Example:" if len(commands) == 1 else "Examples:"
    settings: dict[str, Any] = {
        "epilog": "\n".join([heading, *(f"  {command}" for command in commands)]),
        "formatter_class": HelpFormatter,
    }
    if description is not None:
        settings["description"] = description
    return settings


class _Parser(argparse.ArgumentParser):
    """argparse exits with status 2 on usage errors; keep the message to one line."""

    def error(self, message: str) -> None:  # type: ignore[override]
        self.exit(2, f"{self.prog}: error: {one_line(message)}\n")


def one_line(text: object) -> str:
    """A message squeezed onto one line (runs of whitespace, newlines included, become a space)."""
    return " ".join(str(text).split())


def _number(
    kind: Callable[[str], float], low: float | None, strict: bool
) -> Callable[[str], float]:
    def parse(text: str) -> float:
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
        if isinstance(value, float) and not math.isfinite(value):
            raise argparse.ArgumentTypeError(f"{text!r} is not a finite number")
        if low is not None and (value <= low if strict else value < low):
            raise argparse.ArgumentTypeError(
                f"{text} must be {'greater than' if strict else 'at least'} {low:g}"
            )
        return value

    parse.__name__ = kind.__name__  # argparse names the type in its messages
    return parse


def int_at_least(low: int) -> Callable[[str], int]:
    """An argparse ``type``: an integer ``>= low`` (``--port``, ``--limit``)."""
    return _number(int, low, strict=False)  # type: ignore[return-value]


def finite_float(low: float | None = None, strict: bool = False) -> Callable[[str], float]:
    """An argparse ``type``: a finite float (no NaN, no inf), optionally bounded below."""
    return _number(float, low, strict)


def _os_error_line(exc: OSError) -> str:
    reason = exc.strerror or type(exc).__name__
    where = exc.filename if exc.filename is not None else ""
    return f"{reason}: {where}" if where != "" else one_line(reason if exc.strerror else exc)


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog=PROG, **example(*EXAMPLES, description=DESCRIPTION))
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="log progress details")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    for name in COMMAND_MODULES:
        try:
            module = importlib.import_module(f"llm_playground.cli.{name}")
        except ModuleNotFoundError as exc:  # a lab not yet installed in this build
            if exc.name != f"llm_playground.cli.{name}":
                raise
            continue
        module.register(subparsers)
    return parser


def _fail(message: str) -> int:
    print(f"{PROG}: error: {one_line(message)}", file=sys.stderr)
    return 2


def main(argv: Sequence[str] | None = None) -> int:
    try:
        parser = build_parser()
        args = parser.parse_args(argv)
    except KeyboardInterrupt:
        return _fail("interrupted")
    logging.basicConfig(
        level=logging.INFO if args.verbose else logging.WARNING,
        format="%(levelname)s %(name)s: %(message)s",
    )
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        return int(args.func(args) or 0)
    except UserError as exc:
        return _fail(str(exc))
    except BrokenPipeError:  # e.g. `llm-playground tokenize ... | head`
        return 0
    except KeyboardInterrupt:
        return _fail("interrupted")
    except UnicodeError as exc:  # text that is not UTF-8 where text was expected
        return _fail(f"not UTF-8 text ({exc.reason})" if hasattr(exc, "reason") else str(exc))
    except OSError as exc:  # a missing file, a folder where a file was expected, a full disk
        return _fail(_os_error_line(exc))
    except sqlite3.Error as exc:
        return _fail(f"database error: {exc}")
    except MemoryError:
        return _fail("out of memory: try a smaller input or smaller settings")
    except RecursionError:
        return _fail("the input is nested too deeply")


if __name__ == "__main__":
    sys.exit(main())
