"""``llm-playground assets install|check``: the offline tokenizer files and model caches."""

from __future__ import annotations

import argparse

from llm_playground.cli import example
from llm_playground.core.errors import UserError
from llm_playground.core.paths import get_paths


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "assets",
        help="install or check the offline assets",
        **example(
            "llm-playground assets check",
            description="The tokenizer files and models the labs use offline: install them "
            "once, check them any time.",
        ),
    )
    sub = parser.add_subparsers(dest="assets_command", metavar="ACTION")
    install = sub.add_parser(
        "install",
        help="fetch, verify (sha256) and place every offline asset",
        **example(
            "llm-playground assets install",
            description="Fetch every offline asset, verify its sha256 and put it in place.",
        ),
    )
    install.set_defaults(func=_install)
    check = sub.add_parser(
        "check",
        help="verify the installed assets; exit 2 when one is missing or wrong",
        **example(
            "llm-playground assets check",
            description="Verify the installed assets; exit 2 when one is missing or wrong.",
        ),
    )
    check.set_defaults(func=_check)
    parser.set_defaults(func=lambda args: parser.print_help() or 2)


def _install(args: argparse.Namespace) -> int:
    from llm_playground.generation.registry import prepare_offline_models
    from llm_playground.tokenization.assets import install_tiktoken_assets

    paths = get_paths().ensure()
    print(f"tiktoken cache: {paths.tiktoken_cache}")
    install_tiktoken_assets(paths, report=lambda r: print(f"  {r.action:<9} {r.name}", flush=True))
    for folder in prepare_offline_models(paths) or []:
        print(f"  {'prepared':<9} model {folder.name}", flush=True)
    return 0


def _check(args: argparse.Namespace) -> int:
    from llm_playground.tokenization.assets import verify_assets

    rows = verify_assets(get_paths())
    for name, ok, detail in rows:
        print(f"  {'ok' if ok else 'MISSING':<8} {name}: {detail}")
    bad = [name for name, ok, _ in rows if not ok]
    if bad:
        raise UserError(
            f"{len(bad)} asset(s) missing or wrong ({', '.join(bad)}); "
            "run `llm-playground assets install`"
        )
    return 0
