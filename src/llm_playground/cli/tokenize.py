"""Lab 1 on the command line: ``tokenizers``, ``tokenize`` and ``bpe train``.

llm-playground tokenizers
llm-playground tokenize --tokenizer NAME [--clean html,whitespace,nfkc] [--format json|html|text] [TEXT]
llm-playground bpe train --vocab-size N --input FILE --out FILE.json [--force]
llm-playground bpe merges FILE.json [--limit N]
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from llm_playground.cli import example, int_at_least
from llm_playground.core.errors import UserError
from llm_playground.core.paths import check_new_path
from llm_playground.core.textfiles import (
    MAX_TEXT_BYTES,
    check_text_size,
    read_stream_limited,
    size_text,
)


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "tokenizers",
        help="list the available tokenizer names, one a line",
        **example(
            "llm-playground tokenizers",
            description="List the tokenizer names that tokenize --tokenizer takes, one a line.",
        ),
    )
    p.set_defaults(func=tokenizers_command)

    p = subparsers.add_parser(
        "tokenize",
        help="turn text into token ids and pieces",
        description="Tokenize TEXT (or standard input when TEXT is absent or '-').",
        **example("llm-playground tokenize --tokenizer gpt2 --format text 'Hello, world'"),
    )
    p.add_argument(
        "--tokenizer",
        "-t",
        required=True,
        metavar="NAME",
        help="a name from `llm-playground tokenizers`, or the path of a saved BPE .json",
    )
    p.add_argument(
        "--clean",
        metavar="STEPS",
        default="",
        help="comma-separated cleaning before tokenizing: html, whitespace, nfkc",
    )
    p.add_argument(
        "--format",
        "-f",
        choices=("json", "html", "text"),
        default="json",
        help="json: one object (tokenizer, text, ids, pieces, n_tokens); html: the "
        "colour-coded fragment the app shows; text: one token a line",
    )
    p.add_argument(
        "--max-pieces",
        type=int_at_least(0),
        default=None,
        metavar="N",
        help="html only: render at most N tokens (default: as many as the app shows)",
    )
    p.add_argument("text", nargs="?", default="-", metavar="TEXT")
    p.set_defaults(func=tokenize_command)

    p = subparsers.add_parser(
        "bpe",
        help="train your own byte-level BPE tokenizer",
        **example(
            "llm-playground bpe train --vocab-size 512 --input play.txt --out my-bpe.json",
            description="Train your own byte-level BPE tokenizer, and list what it learned.",
        ),
    )
    sub = p.add_subparsers(dest="bpe_command", metavar="ACTION")
    t = sub.add_parser(
        "train",
        help="train a byte-level BPE on a UTF-8 text file and save it as JSON",
        **example(
            "llm-playground bpe train --vocab-size 512 --input play.txt --out my-bpe.json",
            description="Train a byte-level BPE on a UTF-8 text file and save it as JSON.",
        ),
    )
    t.add_argument(
        "--vocab-size",
        type=int,
        required=True,
        metavar="N",
        help="target vocabulary (256 to 65,536)",
    )
    t.add_argument(
        "--input", required=True, metavar="FILE", help="UTF-8 text to train on ('-': stdin)"
    )
    t.add_argument("--out", required=True, metavar="FILE.json", help="where to save the tokenizer")
    t.add_argument("--force", action="store_true", help="replace --out when it already exists")
    t.add_argument(
        "--pattern",
        choices=("gpt4", "gpt2", "none"),
        default="gpt4",
        help="how text is split before merging (default: GPT-4's regex)",
    )
    t.set_defaults(func=bpe_train_command)
    m = sub.add_parser(
        "merges",
        help="list a saved BPE tokenizer's merges in order",
        **example(
            "llm-playground bpe merges my-bpe.json --limit 20",
            description="List a saved BPE tokenizer's merges in the order they were learned.",
        ),
    )
    m.add_argument("file", metavar="FILE.json")
    m.add_argument(
        "--limit", type=int_at_least(0), default=None, metavar="N", help="show the first N merges"
    )
    m.set_defaults(func=bpe_merges_command)
    p.set_defaults(func=lambda args: p.print_help() or 2)


def _read_stdin() -> bytes:
    data = read_stream_limited(sys.stdin.buffer, MAX_TEXT_BYTES)
    if len(data) > MAX_TEXT_BYTES:
        raise UserError(f"standard input is larger than the {size_text(MAX_TEXT_BYTES)} allowed")
    return data


def _decode_utf8(data: bytes, source: str) -> str:
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise UserError(
            f"{source} is not UTF-8 text (byte 0x{data[exc.start]:02x} at offset {exc.start})"
        ) from None


def _read_text_arg(text: str) -> str:
    if text == "-":
        return _decode_utf8(_read_stdin(), "standard input")
    try:  # bytes that were not UTF-8 reach argv as lone surrogates
        text.encode("utf-8")
    except UnicodeEncodeError:
        raise UserError("TEXT is not UTF-8 text") from None
    return text


def _read_file(name: str) -> str:
    if name == "-":
        return _decode_utf8(_read_stdin(), "standard input")
    path = Path(name)
    if not path.exists():
        raise UserError(f"no such file: {name}")
    if path.is_dir():
        raise UserError(f"{name} is a folder, not a text file")
    if not path.is_file():
        raise UserError(f"{name} is not a regular file")
    if path.stat().st_size > MAX_TEXT_BYTES:
        raise UserError(f"{name} is larger than the {size_text(MAX_TEXT_BYTES)} allowed")
    return _decode_utf8(path.read_bytes(), name)


def tokenizers_command(args: argparse.Namespace) -> int:
    from llm_playground.tokenization.tokenizer import available_tokenizers

    for name in available_tokenizers():
        print(name)
    return 0


def _show(piece: str) -> str:
    return (
        piece.replace("\\", "\\\\").replace("\n", "\\n").replace("\t", "\\t").replace("\r", "\\r")
        if any(c in piece for c in "\n\t\r")
        else piece
    )


def tokenize_command(args: argparse.Namespace) -> int:
    from llm_playground.tokenization.cleaning import clean, parse_steps
    from llm_playground.tokenization.tokenizer import get_tokenizer, tokenize_with_pieces

    steps = parse_steps(args.clean)
    tok = get_tokenizer(args.tokenizer)
    text = clean(_read_text_arg(args.text), steps)
    result = tokenize_with_pieces(tok, text)
    out = sys.stdout
    if args.format == "json":
        json.dump(
            {
                "tokenizer": result.tokenizer,
                "text": result.text,
                "ids": result.ids,
                "pieces": result.pieces,
                "n_tokens": result.n_tokens,
            },
            out,
            ensure_ascii=False,
        )
        out.write("\n")
    elif args.format == "html":
        from llm_playground.tokenization.view import MAX_PIECES, render_tokens_html

        limit = MAX_PIECES if args.max_pieces is None else args.max_pieces
        out.write(render_tokens_html(result, max_pieces=limit, token_bytes=tok.token_bytes) + "\n")
    else:
        out.write(
            f"# {result.tokenizer}: {result.n_tokens} tokens, {result.n_chars} characters, "
            f"{result.chars_per_token:.2f} characters per token\n"
        )
        for tid, piece in zip(result.ids, result.pieces, strict=True):
            out.write(f"{tid}\t{_show(piece)}\n")
    return 0


def _check_output(out: Path, force: bool) -> None:
    """Refuse, before any training, an output that cannot or should not be written."""
    if out.suffix != ".json":
        raise UserError(f"--out must name a .json file, got {out}")
    if out.is_dir():
        raise UserError(f"--out {out} is a folder; give the path of a .json file")
    if out.exists() and not force:
        raise UserError(f"--out {out} already exists; pass --force to replace it")
    # nothing is created yet: a refused input must not leave a new folder behind
    check_new_path(out, "--out")


def bpe_train_command(args: argparse.Namespace) -> int:
    from llm_playground.cli.progress import Wording, render
    from llm_playground.tokenization.bpe import MAX_VOCAB_SIZE, BPEDone, train_events

    if not 256 <= args.vocab_size <= MAX_VOCAB_SIZE:
        raise UserError(
            f"--vocab-size must be at least 256 (the byte values) and at most "
            f"{MAX_VOCAB_SIZE:,}, got {args.vocab_size}"
        )
    out = Path(args.out)
    _check_output(out, args.force)
    text = _read_file(args.input)
    if not text:
        raise UserError(f"{args.input} is empty: there is nothing to train on")
    check_text_size(text, args.input)
    source = "standard input" if args.input == "-" else Path(args.input).name
    events = train_events(text, args.vocab_size, pattern=args.pattern, name=out.stem, source=source)
    done = render(events, Wording(postfix=lambda event: {}))
    assert isinstance(done, BPEDone)
    try:
        path = done.tokenizer.save(out, overwrite=args.force)
    except UserError as exc:
        if out.exists() and not args.force:  # someone wrote it while we trained
            raise UserError(f"--out {out} already exists; pass --force to replace it") from None
        raise exc
    note = f" (stopped early: {done.reason})" if done.reason else ""
    print(
        f"saved {path}: {done.tokenizer.vocab_size} tokens, {len(done.tokenizer.merges)} merges "
        f"in {done.elapsed:.1f} s{note}"
    )
    return 0


def bpe_merges_command(args: argparse.Namespace) -> int:
    from llm_playground.tokenization.tokenizer import BPEAdapter, get_tokenizer

    tok = get_tokenizer(args.file)
    if not isinstance(tok, BPEAdapter):
        raise UserError(f"{args.file} is not a BPE tokenizer")
    for row in tok.bpe.merges_table()[: args.limit]:
        print(
            f"{row['rank']}\t{row['new_id']}\t{_show(row['left'])!r} + {_show(row['right'])!r} -> "
            f"{_show(row['token'])!r}"
        )
    return 0
