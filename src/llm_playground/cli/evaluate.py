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

from llm_playground.cli import example
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
        **example(
            "llm-playground eval perplexity --model smollm2-135m-instruct --data wikitext-2 "
            "--max-tokens 2048"
        ),
    )
    sub = ev.add_subparsers(dest="eval_command", metavar="METRIC", parser_class=type(ev))
    ev.set_defaults(func=lambda args: _usage(ev))

    _add_perplexity(sub)
    _add_bleu(sub)
    _add_rouge(sub)
    _add_reference(sub)
    _add_judge(sub)
    _add_harness(sub)
    _add_leaderboard(subparsers)


def _add_perplexity(sub) -> None:
    """``eval perplexity``: sliding-window perplexity of a model on a text."""
    p = sub.add_parser(
        "perplexity",
        help="sliding-window perplexity: token, word, bits per byte",
        description="Sliding-window perplexity (token-level, word-level and bits per "
        "byte) of a model on a text. " + RECORD_NOTE,
        **example(
            "llm-playground eval perplexity --model smollm2-135m-instruct --data wikitext-2 "
            "--max-tokens 2048"
        ),
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
        help="auto times a window of the text in each and scores in the faster (default auto)",
    )
    p.add_argument(
        "--mode",
        choices=("windows", "cached"),
        default="windows",
        help="windows: the sliding windows, exactly (default); cached: each chunk of --stride "
        "tokens reuses the key/value cache of the tokens before it (faster; a different "
        "number from the windows', recorded as such)",
    )
    _common(p)
    p.set_defaults(func=perplexity_command)


def _add_bleu(sub) -> None:
    """``eval bleu``: corpus BLEU and chrF of a hypothesis file."""
    b = sub.add_parser(
        "bleu",
        help="corpus BLEU and chrF (sacrebleu) of a hypothesis file",
        description="Corpus BLEU and chrF through sacrebleu, one segment a line in each "
        "file; --ref may be repeated for several references. " + RECORD_NOTE,
        **example("llm-playground eval bleu --hyp answers.txt --ref references.txt"),
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
    b.set_defaults(func=bleu_command)


def _add_rouge(sub) -> None:
    """``eval rouge``: ROUGE scores of a hypothesis file."""
    r = sub.add_parser(
        "rouge",
        help="ROUGE-1/2/L/Lsum (rouge-score) averaged over lines",
        description="ROUGE-1, ROUGE-2, ROUGE-L and ROUGE-Lsum through rouge-score, one "
        "segment a line, averaged over lines. " + RECORD_NOTE,
        **example("llm-playground eval rouge --hyp answers.txt --ref references.txt --stemmer"),
    )
    r.add_argument("--hyp", required=True, metavar="FILE", help="hypotheses, one a line")
    r.add_argument("--ref", required=True, metavar="FILE", help="references, one a line")
    r.add_argument("--stemmer", action="store_true", help="use the Porter stemmer")
    r.add_argument(
        "--label", help="name recorded in the leaderboard (default: the hypothesis file name)"
    )
    _common(r)
    r.set_defaults(func=rouge_command)


def _add_reference(sub) -> None:
    """``eval reference``: answer the shipped reference set and score it."""
    s = sub.add_parser(
        "reference",
        help="answer the shipped reference set with a model, score BLEU/chrF/ROUGE",
        description="Generate answers for the shipped reference set (greedy, Lab 3's "
        "decoding) and score them with BLEU, chrF and ROUGE. " + RECORD_NOTE,
        **example("llm-playground eval reference --model smollm2-135m-instruct --limit 5"),
    )
    which = s.add_mutually_exclusive_group(required=True)
    which.add_argument("--model", help="a registry model name")
    which.add_argument("--checkpoint", metavar="DIR", help="a model folder")
    s.add_argument("--limit", type=int, default=None, help="only the first N items")
    s.add_argument("--max-new-tokens", type=int, default=48, help="tokens per answer (default 48)")
    _common(s)
    s.set_defaults(func=reference_command)


def _add_judge(sub) -> None:
    """``eval judge``: score answers with an LLM judge."""
    j = sub.add_parser(
        "judge",
        help="LLM-as-a-judge: score answers 1-10 with a reason",
        description="Score answers from 1 to 10 with an LLM judge: an OpenAI-compatible "
        "API (--base-url; the key comes from OPENAI_API_KEY) or, without "
        "--base-url, a local registry model. " + RECORD_NOTE,
        **example(
            "llm-playground eval judge --judge-model smollm2-135m-instruct "
            "--questions questions.jsonl --answers answers.jsonl"
        ),
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
    j.add_argument(
        "--timeout",
        type=float,
        default=60.0,
        help="seconds per request (connect to the last byte; default 60)",
    )
    j.add_argument(
        "--retries", type=int, default=4, help="retries on 429, 5xx and timeouts (default 4)"
    )
    j.add_argument(
        "--label", help="name recorded in the leaderboard (default: the answers file name)"
    )
    _common(j)
    j.set_defaults(func=judge_command)


def _add_harness(sub) -> None:
    """``eval harness``: lm-evaluation-harness tasks on a playground model."""
    h = sub.add_parser(
        "harness",
        help="standard benchmarks through lm-evaluation-harness (offline: the shipped tasks)",
        description="Run lm-evaluation-harness tasks on a playground model. Offline, the "
        "shipped tasks: playground_next_line (multiple choice), playground_last_word "
        "(cloze), playground_wikitext2 (rolling perplexity); with a network, the harness's "
        "own tasks by name (hellaswag, arc_easy, piqa, winogrande, ...). " + RECORD_NOTE,
        **example(
            "llm-playground eval harness --model smollm2-135m-instruct "
            "--tasks playground_next_line --limit 20"
        ),
    )
    which = h.add_mutually_exclusive_group(required=True)
    which.add_argument("--model", help="a registry model name")
    which.add_argument(
        "--checkpoint",
        metavar="DIR",
        help="a Lab 2 run (with or without a Hugging Face export), HF model or adapter folder",
    )
    h.add_argument("--tasks", required=True, metavar="T1,T2", help="task names, comma-separated")
    h.add_argument("--num-fewshot", type=int, default=None, metavar="N", help="examples shown")
    h.add_argument("--limit", type=int, default=None, metavar="N", help="documents per task")
    h.add_argument("--include-path", metavar="DIR", help="a folder of task YAML files of your own")
    h.add_argument("--batch-size", type=int, default=8, help="requests per forward pass")
    _common(h)
    h.set_defaults(func=harness_command)


def _add_leaderboard(subparsers) -> None:
    """``leaderboard``: every evaluated model in one table."""
    lb = subparsers.add_parser(
        "leaderboard",
        help="every evaluated model in one table",
        description="The leaderboard: the latest results of each model, each "
        "with the data it was measured on.",
        **example("llm-playground leaderboard --data wikitext-2"),
    )
    fmt = lb.add_mutually_exclusive_group()
    fmt.add_argument("--json", action="store_true", help="print JSON")
    fmt.add_argument("--csv", action="store_true", help="print CSV")
    lb.add_argument("--data", help="only perplexities measured on this data set")
    lb.set_defaults(func=leaderboard_command)


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


def _at_least(value: int | None, low: int, flag: str, high: int | None = None) -> None:
    """Every numeric flag is checked before any work: one line, exit 2."""
    if value is None:
        return
    if value < low:
        raise UserError(f"{flag} must be at least {low}")
    if high is not None and value > high:
        raise UserError(f"{flag} must be at most {high:,}")


def _scorer(args):
    """The model of --model or --checkpoint; a Lab 2 run without a Hugging Face export is read
    with the playground's own model code."""
    from llm_playground.evaluation.scoring import is_lab2_checkpoint, load_lab2_scorer

    folder = Path(args.checkpoint).expanduser() if getattr(args, "checkpoint", None) else None
    if folder and is_lab2_checkpoint(folder) and not (folder / "hf" / "config.json").exists():
        return load_lab2_scorer(folder)
    from llm_playground.evaluation.scoring import scorer_for

    return scorer_for(_load(args))


class _Run:
    """Draw a run's events with the one CLI renderer; keep its leaderboard outcome."""

    def __init__(self, args, label: str, unit: str) -> None:
        from llm_playground.cli.progress import Wording

        self.show = sys.stderr.isatty() and not args.json
        self.wording = Wording(postfix=lambda event: {}, unit=unit)
        self.label = label
        self.recorded = None

    def __call__(self, events):
        from llm_playground.cli.progress import render
        from llm_playground.evaluation.runs import Recorded

        def tap():
            for event in events:
                if isinstance(event, Recorded):
                    self.recorded = event
                yield event

        done = render(tap(), self.wording, show=self.show)
        if done is None:
            raise UserError(f"{self.label} ended without a result")
        return done

    def finish(self, code: int) -> int:
        """After the result is printed: a refused recording is one line on stderr, exit 2."""
        if self.recorded is not None and self.recorded.error:
            raise UserError(self.recorded.error)
        return code


def perplexity_command(args) -> int:
    from llm_playground.evaluation import perplexity as ppl
    from llm_playground.evaluation.runs import perplexity_run

    _at_least(args.stride, 1, "--stride")
    _at_least(args.max_length, 2, "--max-length")
    _at_least(args.max_tokens, 2, "--max-tokens", ppl.MAX_PERPLEXITY_TOKENS)
    _at_least(args.batch_size, 1, "--batch-size", 256)
    data = ppl.load_eval_text(args.data)
    config = ppl.PerplexityConfig(
        stride=args.stride,
        max_length=args.max_length,
        max_tokens=args.max_tokens,
        batch_size=args.batch_size,
        dtype=args.dtype,
        mode=args.mode,
    )
    scorer = _scorer(args)
    run = _Run(args, f"perplexity of {scorer.name}", "token")
    result = run(perplexity_run(scorer, data, config, record=not args.no_record)).result
    out = {
        "token_perplexity": result.token_perplexity,
        "word_perplexity": result.word_perplexity,
        "bits_per_byte": result.bits_per_byte,
        "n_tokens": result.n_tokens,
        "nll_sum": result.nll_sum,
        "n_words": result.n_words,
        "n_bytes": result.n_bytes,
        "model": scorer.name,
        "data": data.name,
        "stride": result.stride,
        "max_length": result.max_length,
        "dtype": result.dtype,
        "precision": result.precision,
        "bf16_ratio": result.bf16_ratio,
        "mode": result.mode,
        "capped": result.capped,
        "tokens_per_s": result.tokens_per_s,
    }
    cached = ", cached mode" if result.mode == "cached" else ""
    code = _emit(
        args,
        out,
        [
            f"{scorer.name} on {data.name}"
            + (f" (first {result.n_tokens:,} tokens)" if result.capped else ""),
            f"  token perplexity  {result.token_perplexity:.3f}  over {result.n_tokens:,} tokens",
            f"  word perplexity   {result.word_perplexity:.3f}  over {result.n_words:,} words",
            f"  bits per byte     {result.bits_per_byte:.4f}  over {result.n_bytes:,} bytes",
            f"  stride {result.stride}, max length {result.max_length}, {result.dtype}{cached}, "
            f"{result.tokens_per_s:,.0f} tokens/s",
            f"  precision {result.precision}",
        ],
    )
    return run.finish(code)


def _refused(recorded) -> None:
    """After the printed scores: a refused recording is one line on stderr, exit 2."""
    if recorded.error:
        raise UserError(recorded.error)


def bleu_command(args) -> int:
    from llm_playground.evaluation import overlap
    from llm_playground.evaluation.runs import Entry, bleu_run

    hyps = overlap.read_segments(args.hyp, "hypothesis file")
    refs = [overlap.read_segments(r, "reference file") for r in args.ref]
    try:
        entry = Entry(
            label=args.label or f"file:{Path(args.hyp).name}",
            kind="file",
            dataset=", ".join(Path(r).name for r in args.ref),
            record=not args.no_record,
        )
        result, recorded = bleu_run(hyps, refs, entry, tokenize=args.tokenize, sentences=False)
    except (KeyError, ValueError, RuntimeError) as exc:
        if isinstance(exc, UserError):
            raise
        raise UserError(f"sacrebleu refused the input: {_one_line(exc)}") from None
    out = {
        "bleu": result.bleu,
        "chrf": result.chrf,
        "signature": result.signature,
        "chrf_signature": result.chrf_signature,
        "n_segments": result.n_segments,
        "n_references": result.n_references,
    }
    _emit(
        args,
        out,
        [
            f"BLEU {result.bleu:.2f}  ({result.signature})",
            f"chrF {result.chrf:.2f}  ({result.chrf_signature})",
        ],
    )
    _refused(recorded)
    return 0


def rouge_command(args) -> int:
    from llm_playground.evaluation import overlap
    from llm_playground.evaluation.runs import Entry, rouge_run

    hyps = overlap.read_segments(args.hyp, "hypothesis file")
    refs = overlap.read_segments(args.ref, "reference file")
    entry = Entry(
        label=args.label or f"file:{Path(args.hyp).name}",
        kind="file",
        dataset=Path(args.ref).name,
        record=not args.no_record,
    )
    scores, recorded = rouge_run(hyps, refs, entry, use_stemmer=args.stemmer)
    lines = [
        f"{t:<10} P {v['precision']:.4f}  R {v['recall']:.4f}  F {v['fmeasure']:.4f}"
        for t, v in scores.items()
    ]
    _emit(args, dict(scores), lines + [f"averaged over {len(hyps)} lines"])
    _refused(recorded)
    return 0


def reference_command(args) -> int:
    from llm_playground.evaluation.reference_set import load_reference_set
    from llm_playground.evaluation.runs import reference_dataset_name, reference_run
    from llm_playground.generation.decoding import DecodingConfig

    if args.limit is not None and args.limit < 1:
        raise UserError("--limit must be at least 1")
    _at_least(args.limit, 1, "--limit", len(load_reference_set()))
    _at_least(args.max_new_tokens, 1, "--max-new-tokens", 1024)
    loaded = _load(args)
    config = DecodingConfig(strategy="greedy", max_new_tokens=args.max_new_tokens)
    run = _Run(args, f"answering the reference set with {loaded.name}", "item")
    result = run(reference_run(loaded, config, args.limit, record=not args.no_record)).result
    dataset = reference_dataset_name(len(result.items), args.limit)
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
    code = _emit(
        args,
        out,
        [
            f"{loaded.name} on the {dataset} ({len(result.items)} items)",
            f"  BLEU {result.bleu.bleu:.2f}  chrF {result.bleu.chrf:.2f}",
            *(f"  {t} F {v['fmeasure']:.4f}" for t, v in result.rouge.items()),
        ],
    )
    return run.finish(code)


def _judge_from_args(args):
    from llm_playground.evaluation import judge

    if args.base_url:
        return judge.OpenAICompatibleJudge.from_settings(
            args.base_url, args.judge_model, None, timeout=args.timeout, max_retries=args.retries
        )
    from llm_playground.generation import registry

    info = registry.resolve(args.judge_model)
    if info.kind == "hub" and (not info.available or info.reason):
        raise UserError(
            f"judge model '{args.judge_model}' is not a local model here "
            f"({info.reason or 'unknown'}); give --base-url for an API judge"
        )
    try:
        return judge.LocalJudge(registry.load_model(info))
    except UserError:
        raise
    except Exception as exc:
        raise UserError(
            f"judge model '{args.judge_model}' cannot be loaded: {_one_line(exc)}"
        ) from exc


def judge_command(args) -> int:
    from llm_playground.evaluation import judge
    from llm_playground.evaluation.runs import judge_run

    if not (args.timeout > 0 and args.timeout <= judge.MAX_TIMEOUT_S):
        raise UserError(f"--timeout must be above 0 and at most {judge.MAX_TIMEOUT_S:g} seconds")
    _at_least(args.retries, 0, "--retries", judge.MAX_RETRIES)
    questions = judge.read_rows(args.questions, ("id", "question"), "questions")
    answers = judge.read_rows(args.answers, ("id", "answer"), "answers")
    pairs = judge.pair_questions(questions, answers)
    the_judge = _judge_from_args(args)
    run = _Run(args, f"judging with {the_judge.name}", "answer")
    events = judge_run(
        the_judge,
        pairs,
        args.label or f"answers:{Path(args.answers).name}",
        Path(args.questions).name,
        record=not args.no_record,
    )
    result = run(events).result
    out = result.to_json()
    lines = [
        f"{i.id}: {i.score if i.score is not None else 'unscored'}  {i.reason or i.error or ''}"
        for i in result.items
    ]
    ci = f" (95 % CI {result.ci[0]:.2f}-{result.ci[1]:.2f})" if result.ci else ""
    mean = (
        f"{result.mean_score:.2f}{ci}" if result.mean_score is not None else "none (nothing scored)"
    )
    lines.append(
        f"mean score {mean}, {result.n_scored}/{len(result.items)} scored by {the_judge.name}"
    )
    return run.finish(_emit(args, out, lines))


def harness_command(args) -> int:
    from llm_playground.evaluation.harness import (
        MAX_FEWSHOT,
        MAX_LIMIT,
        HarnessConfig,
        parse_tasks,
    )
    from llm_playground.evaluation.runs import harness_run

    _at_least(args.num_fewshot, 0, "--num-fewshot", MAX_FEWSHOT)
    _at_least(args.limit, 1, "--limit", MAX_LIMIT)
    _at_least(args.batch_size, 1, "--batch-size", 256)
    config = HarnessConfig(
        tasks=parse_tasks(args.tasks),
        num_fewshot=args.num_fewshot,
        limit=args.limit,
        include_path=args.include_path,
        batch_size=args.batch_size,
    )
    config.check()
    scorer = _scorer(args)
    run = _Run(args, f"{args.tasks} with {scorer.name}", "request")
    result = run(harness_run(scorer, config, record=not args.no_record)).result
    lines = [
        f"{scorer.name}: {', '.join(result.tasks)}"
        f" ({'default' if result.num_fewshot is None else result.num_fewshot} shots"
        + (f", first {result.limit} documents" if result.limit else "")
        + ")"
    ]
    for s in result.scores:
        err = f" ± {s.stderr:.4f}" if s.stderr is not None else ""
        lines.append(
            f"  {s.task} (v{s.version}, {s.num_fewshot}-shot)  {s.metric} {s.value:.4f}{err}"
        )
    return run.finish(_emit(args, result.to_json(), lines))


def leaderboard_command(args) -> int:
    board = _board()
    rows = board.leaderboard(perplexity_data=args.data)
    if args.json:
        print(board.to_json(rows))
    elif args.csv:
        sys.stdout.write(board.to_csv(rows))
    else:
        benchmarks = board.benchmarks()
        if not rows and not benchmarks:
            print("The leaderboard is empty: run `llm-playground eval ...` first.")
            return 0
        for row in rows:
            print(format_row(row))
        if benchmarks:
            print("benchmarks (lm-evaluation-harness):")
            for b in benchmarks:
                print(format_benchmark(b))
    return 0


def format_benchmark(row: dict[str, Any]) -> str:
    err = f" ± {row['stderr']:.4f}" if row.get("stderr") is not None else ""
    limit = f", first {row['limit']} documents" if row.get("limit") else ""
    return (
        f"  {row['model']}: {row['task']} v{row['task_version']}, {row['num_fewshot']}-shot"
        f"{limit}: {row['metric']} {row['value']:.4f}{err}"
    )


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
