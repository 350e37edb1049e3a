"""The ``llm-playground`` command line.

Each lab registers its sub-commands from its own module in this package
(``tokenize``, ``train``, ``generate``, ``finetune``, ``evaluate``, ``assets``,
``models``): a module
exposes ``register(subparsers)`` and sets ``func`` on each parser it adds. A
:class:`~llm_playground.core.errors.UserError` raised by a command becomes a one-line message
on standard error and exit status 2, never a traceback.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys
from collections.abc import Sequence

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
    "evaluate",
    "models",
)


class _Parser(argparse.ArgumentParser):
    """argparse exits with status 2 on usage errors; keep the message to one line."""

    def error(self, message: str) -> None:  # type: ignore[override]
        self.exit(2, f"{self.prog}: error: {message}\n")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="llm-playground", description=__doc__.splitlines()[0])
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


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
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
        print(f"llm-playground: error: {exc}", file=sys.stderr)
        return 2
    except BrokenPipeError:  # e.g. `llm-playground tokenize ... | head`
        return 0
    except KeyboardInterrupt:
        print("llm-playground: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
