"""``llm-playground eval ...`` and ``llm-playground leaderboard``: Lab 5, the Evaluator.

Every evaluation run from the command line is also recorded in the leaderboard (the
playground database), with the data set and settings it used; ``--no-record`` skips it.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from llm_playground.core.errors import UserError

RECORD_NOTE = (
    "The result is also recorded in the leaderboard (see `llm-playground leaderboard`) "
    "with the data and settings it was measured on, unless --no-record is given."
)


def register(subparsers) -> None:
    ev = subparsers.add_parser(
        "eval",
        help="evaluate models: perplexity, BLEU/chrF, ROUGE, reference set, LLM judge",
        description="Lab 5, the Evaluator. " + RECORD_NOTE,
    )
    sub = ev.add_subparsers(dest="eval_command", metavar="METRIC", parser_class=type(ev))
    ev.set_defaults(func=lambda args: _usage(ev))

    p = sub.add_parser(
        "perplexity",
        help="sliding-window perplexity: token, word, bits per byte",
        description="Sliding-window perplexity (token-level, word-level and bits per "
        "byte) of a model on a text. " + RECORD_NOTE,
    )
    which = p.add_mutually_exclusive_group(required=True)
    which.add_argument("--model", help="a registry model name (see `llm-playground models`)")
    which.add_argument(
        "--checkpoint", metavar="DIR", help="a Lab 2 run, HF model folder or adapter folder"
    )
    p.add_argument(
        "--data",
        required=True,
        metavar="DATA",
        help="wikitext-2 (shipped test split), wikitext-2-raw (hub, needs a network), "
        "tinyshakespeare-val, or a path to a UTF-8 text file",
    )
    p.add_argument(
        "--stride", type=int, default=512, help="tokens between window starts (default 512)"
    )
    p.add_argument(
        "--max-length",
        type=int,
        default=1024,
        help="window length in tokens, capped at the model's context (default 1024)",
    )
    p.add_argument(
        "--max-tokens", type=int, default=None, help="score only the first N tokens (quick runs)"
    )
    p.add_argument("--batch-size", type=int, default=8, help="windows per forward pass (default 8)")
    p.add_argument(
        "--dtype",
        choices=("auto", "float32", "bfloat16"),
        default="auto",
        help="auto uses bfloat16 where this CPU runs it faster (default auto)",
    )
    _common(p)
    p.set_defaults(func=cmd_perplexity)

    b = sub.add_parser(
        "bleu",
        help="corpus BLEU and chrF (sacrebleu) of a hypothesis file",
        description="Corpus BLEU and chrF through sacrebleu, one segment a line in each "
        "file; --ref may be repeated for several references. " + RECORD_NOTE,
    )
    b.add_argument("--hyp", required=True, metavar="FILE", help="hypotheses, one a line")
    b.add_argument(
        "--ref",
        required=True,
        action="append",
        metavar="FILE",
        help="references, one a line (repeat for more reference sets)",
    )
    b.add_argument("--tokenize", default="13a", help="sacrebleu tokenizer (default 13a)")
    b.add_argument(
        "--label", help="name recorded in the leaderboard (default: the hypothesis file name)"
    )
    _common(b)
    b.set_defaults(func=cmd_bleu)

    r = sub.add_parser(
        "rouge",
        help="ROUGE-1/2/L/Lsum (rouge-score) averaged over lines",
        description="ROUGE-1, ROUGE-2, ROUGE-L and ROUGE-Lsum through rouge-score, one "
        "segment a line, averaged over lines. " + RECORD_NOTE,
    )
    r.add_argument("--hyp", required=True, metavar="FILE", help="hypotheses, one a line")
    r.add_argument("--ref", required=True, metavar="FILE", help="references, one a line")
    r.add_argument("--stemmer", action="store_true", help="use the Porter stemmer")
    r.add_argument(
        "--label", help="name recorded in the leaderboard (default: the hypothesis file name)"
    )
    _common(r)
    r.set_defaults(func=cmd_rouge)

    s = sub.add_parser(
        "reference",
        help="answer the shipped reference set with a model, score BLEU/chrF/ROUGE",
        description="Generate answers for the shipped reference set (greedy, Lab 3's "
        "decoding) and score them with BLEU, chrF and ROUGE. " + RECORD_NOTE,
    )
    which = s.add_mutually_exclusive_group(required=True)
    which.add_argument("--model", help="a registry model name")
    which.add_argument("--checkpoint", metavar="DIR", help="a model folder")
    s.add_argument("--limit", type=int, default=None, help="only the first N items")
    s.add_argument("--max-new-tokens", type=int, default=48, help="tokens per answer (default 48)")
    _common(s)
    s.set_defaults(func=cmd_reference)

    j = sub.add_parser(
        "judge",
        help="LLM-as-a-judge: score answers 1-10 with a reason",
        description="Score answers from 1 to 10 with an LLM judge: an OpenAI-compatible "
        "API (--base-url; the key comes from OPENAI_API_KEY) or, without "
        "--base-url, a local registry model. " + RECORD_NOTE,
    )
    j.add_argument(
        "--judge-model",
        required=True,
        metavar="NAME",
        help="the API's model name, or a registry model without --base-url",
    )
    j.add_argument(
        "--base-url",
        metavar="URL",
        help="e.g. https://api.openai.com/v1 or http://localhost:11434/v1",
    )
    j.add_argument(
        "--questions", required=True, metavar="FILE.jsonl", help='lines of {"id", "question"}'
    )
    j.add_argument(
        "--answers", required=True, metavar="FILE.jsonl", help='lines of {"id", "answer"}'
    )
    j.add_argument("--timeout", type=float, default=60.0, help="seconds per API call (default 60)")
    j.add_argument(
        "--retries", type=int, default=4, help="retries on 429, 5xx and timeouts (default 4)"
    )
    j.add_argument(
        "--label", help="name recorded in the leaderboard (default: the answers file name)"
    )
    _common(j)
    j.set_defaults(func=cmd_judge)

    lb = subparsers.add_parser(
        "leaderboard",
        help="every evaluated model in one table",
        description="The leaderboard: the latest results of each model, each "
        "with the data it was measured on.",
    )
    fmt = lb.add_mutually_exclusive_group()
    fmt.add_argument("--json", action="store_true", help="print JSON")
    fmt.add_argument("--csv", action="store_true", help="print CSV")
    lb.add_argument("--data", help="only perplexities measured on this data set")
    lb.set_defaults(func=cmd_leaderboard)


def _common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.add_argument(
        "--no-record", action="store_true", help="do not record the result in the leaderboard"
    )


def _usage(parser: argparse.ArgumentParser) -> int:
    parser.print_help(sys.stderr)
    return 2


def _emit(args, data: dict[str, Any], lines: list[str]) -> int:
    if args.json:
        print(json.dumps(data, indent=2))
    else:
        print("\n".join(lines))
    return 0


def _one_line(exc: Exception) -> str:
    return " ".join(str(exc).split())[:300]


def _load(args):
    """The model named by --model or --checkpoint, loaded; a one-line error otherwise."""
    from llm_playground.generation import registry

    info = registry.find_model(args.model, getattr(args, "checkpoint", None) or None)
    try:
        return registry.load_model(info)
    except UserError:
        raise
    except Exception as exc:  # an invalid hub id, a broken folder
        raise UserError(f"model '{info.name}' cannot be loaded: {_one_line(exc)}") from exc


def _board():
    from llm_playground.evaluation.leaderboard import Leaderboard

    return Leaderboard()


class _Progress:
    """A one-line progress display on standard error when it is a terminal."""

    def __init__(self, label: str):
        self.label = label
        self.live = sys.stderr.isatty()

    def __call__(self, done: int, total: int) -> None:
        if self.live:
            print(f"\r{self.label}: {done:,}/{total:,}", end="", file=sys.stderr, flush=True)

    def close(self) -> None:
        if self.live:
            print(file=sys.stderr)


def cmd_perplexity(args) -> int:
    from llm_playground.evaluation import metrics
    from llm_playground.evaluation.leaderboard import record_perplexity

    data = metrics.load_eval_text(args.data)
    loaded = _load(args)
    bar = _Progress(f"perplexity of {loaded.name} on {data.name} (tokens)")
    try:
        result = metrics.perplexity(
            loaded,
            data.text,
            progress=lambda e: bar(e.tokens_done, e.tokens_total),
            stride=args.stride,
            max_length=args.max_length,
            max_tokens=args.max_tokens,
            batch_size=args.batch_size,
            dtype=args.dtype,
        )
    finally:
        bar.close()
    if not args.no_record:
        record_perplexity(_board(), loaded.name, loaded.info.kind, result, data.name)
    out = {
        "token_perplexity": result.token_perplexity,
        "word_perplexity": result.word_perplexity,
        "bits_per_byte": result.bits_per_byte,
        "n_tokens": result.n_tokens,
        "nll_sum": result.nll_sum,
        "n_words": result.n_words,
        "n_bytes": result.n_bytes,
        "model": loaded.name,
        "data": data.name,
        "stride": result.stride,
        "max_length": result.max_length,
        "dtype": result.dtype,
        "capped": result.capped,
        "tokens_per_s": result.tokens_per_s,
    }
    return _emit(
        args,
        out,
        [
            f"{loaded.name} on {data.name}"
            + (f" (first {result.n_tokens:,} tokens)" if result.capped else ""),
            f"  token perplexity  {result.token_perplexity:.3f}  over {result.n_tokens:,} tokens",
            f"  word perplexity   {result.word_perplexity:.3f}  over {result.n_words:,} words",
            f"  bits per byte     {result.bits_per_byte:.4f}  over {result.n_bytes:,} bytes",
            f"  stride {result.stride}, max length {result.max_length}, {result.dtype}, "
            f"{result.tokens_per_s:,.0f} tokens/s",
        ],
    )


def cmd_bleu(args) -> int:
    from llm_playground.evaluation import metrics
    from llm_playground.evaluation.leaderboard import record_bleu

    hyps = metrics.read_segments(args.hyp, "hypothesis file")
    refs = [metrics.read_segments(r, "reference file") for r in args.ref]
    try:
        result = metrics.bleu_chrf(hyps, refs, tokenize=args.tokenize, sentences=False)
    except (KeyError, ValueError, RuntimeError) as exc:
        if isinstance(exc, UserError):
            raise
        raise UserError(f"sacrebleu refused the input: {_one_line(exc)}") from None
    if not args.no_record:
        record_bleu(
            _board(),
            args.label or f"file:{Path(args.hyp).name}",
            "file",
            result,
            dataset=", ".join(Path(r).name for r in args.ref),
        )
    out = {
        "bleu": result.bleu,
        "chrf": result.chrf,
        "signature": result.signature,
        "chrf_signature": result.chrf_signature,
        "n_segments": result.n_segments,
        "n_references": result.n_references,
    }
    return _emit(
        args,
        out,
        [
            f"BLEU {result.bleu:.2f}  ({result.signature})",
            f"chrF {result.chrf:.2f}  ({result.chrf_signature})",
        ],
    )


def cmd_rouge(args) -> int:
    from llm_playground.evaluation import metrics
    from llm_playground.evaluation.leaderboard import record_rouge

    hyps = metrics.read_segments(args.hyp, "hypothesis file")
    refs = metrics.read_segments(args.ref, "reference file")
    scores = metrics.rouge(hyps, refs, use_stemmer=args.stemmer)
    if not args.no_record:
        record_rouge(
            _board(),
            args.label or f"file:{Path(args.hyp).name}",
            "file",
            scores,
            dataset=Path(args.ref).name,
            n=len(hyps),
            settings={"stemmer": args.stemmer},
        )
    lines = [
        f"{t:<10} P {v['precision']:.4f}  R {v['recall']:.4f}  F {v['fmeasure']:.4f}"
        for t, v in scores.items()
    ]
    return _emit(args, dict(scores), lines + [f"averaged over {len(hyps)} lines"])


def cmd_reference(args) -> int:
    from llm_playground.evaluation import metrics
    from llm_playground.evaluation.leaderboard import record_bleu, record_rouge
    from llm_playground.generation.decoding import DecodingConfig

    if args.limit is not None and args.limit < 1:
        raise UserError("--limit must be at least 1")
    loaded = _load(args)
    config = DecodingConfig(strategy="greedy", max_new_tokens=args.max_new_tokens)
    bar = _Progress(f"answering the reference set with {loaded.name}")
    result = None
    for event in metrics.reference_set_events(loaded, config, limit=args.limit):
        if isinstance(event, metrics.ReferenceProgress):
            bar(event.done, event.total)
        else:
            result = event
    bar.close()
    assert result is not None
    dataset = "reference set" + (f" (first {len(result.items)})" if args.limit else "")
    if not args.no_record:
        board = _board()
        record_bleu(board, loaded.name, loaded.info.kind, result.bleu, dataset, result.settings)
        record_rouge(
            board,
            loaded.name,
            loaded.info.kind,
            result.rouge,
            dataset,
            len(result.items),
            result.settings,
        )
    out = {
        "bleu": result.bleu.bleu,
        "chrf": result.bleu.chrf,
        "signature": result.bleu.signature,
        **result.rouge,
        "answers": [
            {"id": it.id, "answer": a, "reference": it.reference}
            for it, a in zip(result.items, result.answers, strict=True)
        ],
    }
    return _emit(
        args,
        out,
        [
            f"{loaded.name} on the {dataset} ({len(result.items)} items)",
            f"  BLEU {result.bleu.bleu:.2f}  chrF {result.bleu.chrf:.2f}",
            *(f"  {t} F {v['fmeasure']:.4f}" for t, v in result.rouge.items()),
        ],
    )


def cmd_judge(args) -> int:
    from llm_playground.evaluation import judge as jm
    from llm_playground.evaluation.leaderboard import record_judge

    questions = jm.load_jsonl(args.questions, ("id", "question"), "questions")
    answers = jm.load_jsonl(args.answers, ("id", "answer"), "answers")
    pairs = jm.pair_questions(questions, answers)
    if args.base_url:
        judge = jm.OpenAICompatibleJudge.from_settings(
            args.base_url, args.judge_model, None, timeout=args.timeout, max_retries=args.retries
        )
    else:
        from llm_playground.generation import registry

        info = registry.resolve(args.judge_model)
        if info.kind == "hub" and (not info.available or info.reason):
            raise UserError(
                f"judge model '{args.judge_model}' is not a local model here "
                f"({info.reason or 'unknown'}); give --base-url for an API judge"
            )
        try:
            judge = jm.LocalJudge(registry.load_model(info))
        except UserError:
            raise
        except Exception as exc:
            raise UserError(
                f"judge model '{args.judge_model}' cannot be loaded: {_one_line(exc)}"
            ) from exc
    bar = _Progress(f"judging with {judge.name}")
    result = None
    for event in jm.judge_events(judge, pairs):
        if isinstance(event, jm.JudgeProgress):
            bar(event.done, event.total)
        else:
            result = event
    bar.close()
    assert result is not None
    if not args.no_record and result.mean_score is not None:
        record_judge(
            _board(),
            args.label or f"answers:{Path(args.answers).name}",
            "answers",
            result.mean_score,
            result.ci,
            result.n_scored,
            dataset=Path(args.questions).name,
            settings={"judge": judge.name, "n_items": len(result.items)},
        )
    out = result.to_json()
    lines = [
        f"{i.id}: {i.score if i.score is not None else 'unscored'}  {i.reason or i.error or ''}"
        for i in result.items
    ]
    ci = f" (95 % CI {result.ci[0]:.2f}-{result.ci[1]:.2f})" if result.ci else ""
    mean = (
        f"{result.mean_score:.2f}{ci}" if result.mean_score is not None else "none (nothing scored)"
    )
    lines.append(f"mean score {mean}, {result.n_scored}/{len(result.items)} scored by {judge.name}")
    return _emit(args, out, lines)


def cmd_leaderboard(args) -> int:
    board = _board()
    rows = board.leaderboard(perplexity_data=args.data)
    if args.json:
        print(board.to_json(rows))
    elif args.csv:
        sys.stdout.write(board.to_csv(rows))
    else:
        if not rows:
            print("The leaderboard is empty: run `llm-playground eval ...` first.")
            return 0
        for row in rows:
            print(format_row(row))
    return 0


def format_row(row: dict[str, Any]) -> str:
    parts = [f"{row['model']} ({row['kind']})"]
    if row.get("token_perplexity") is not None:
        parts.append(
            f"ppl {row['token_perplexity']:.2f} tok / {row['word_perplexity']:.2f} word / "
            f"{row['bits_per_byte']:.3f} bpb on {row['perplexity_data']}"
        )
    if row.get("bleu") is not None:
        parts.append(f"BLEU {row['bleu']:.2f} chrF {row['chrf']:.2f} on {row['bleu_data']}")
    if row.get("rougeL") is not None:
        parts.append(f"ROUGE-L {row['rougeL']:.3f} on {row['rouge_data']}")
    if row.get("judge_score") is not None:
        ci = (
            f" [{row['judge_ci_low']:.2f}, {row['judge_ci_high']:.2f}]"
            if row.get("judge_ci_low") is not None
            else ""
        )
        parts.append(f"judge {row['judge_score']:.2f}{ci} on {row['judge_data']}")
    if row.get("human_rating") is not None:
        parts.append(f"human rating {row['human_rating']:.0f} ({row['human_votes']} votes)")
    return " | ".join(parts)
