"""``llm-playground prefs add|export|stats``: human preference votes (Lab 4).

Votes live in the playground database (``--db``, by default the one in the playground
home). ``export`` writes TRL's preference format; ``stats`` prints votes per pair of
models, win rates and Bradley–Terry ratings with 95% intervals.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from llm_playground.cli import example
from llm_playground.cli.finetune import MAX_SEED, one_line_errors
from llm_playground.core.errors import UserError


def _db(args: argparse.Namespace):
    """``--db`` as a file, or a data folder holding ``playground.sqlite``; default: the home's."""
    from llm_playground.core.paths import get_paths
    from llm_playground.finetuning.preferences import resolve_db_path

    return resolve_db_path(args.db) if args.db is not None else get_paths().db


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "prefs",
        help="store, export and rate human preference votes",
        **example(
            "llm-playground prefs stats",
            description="Store votes on pairs of responses, export them for DPO, and rate the "
            "models that wrote them.",
        ),
    )
    sub = parser.add_subparsers(dest="prefs_command", metavar="ACTION")
    db_help = (
        "the vote database (SQLite), or a data folder to keep playground.sqlite in; "
        "default: the playground home's"
    )

    add = sub.add_parser(
        "add",
        help="store one vote on a pair of responses",
        **example(
            "llm-playground prefs add --prompt 'Name a colour.' --response-a Blue "
            "--response-b 'I cannot say.' --choice a",
            description="Store one vote on a pair of responses to a prompt.",
        ),
    )
    add.add_argument("--db", help=db_help)
    add.add_argument("--prompt", required=True, help="the prompt both responses answer")
    add.add_argument("--response-a", required=True, help="the response shown as A")
    add.add_argument("--response-b", required=True, help="the response shown as B")
    add.add_argument(
        "--choice",
        required=True,
        metavar="a|b|tie|both-bad",
        help="which response is better: a, b, tie or both-bad",
    )
    add.add_argument("--model-a", help="the model that wrote response A")
    add.add_argument("--model-b", help="the model that wrote response B")
    add.add_argument("--comment", default="", help="an optional note on the vote")
    add.add_argument(
        "--session-id", default="cli", help="groups votes of one session (default: cli)"
    )
    add.add_argument("--json", action="store_true", help="print the stored vote as JSON")
    add.set_defaults(func=add_command)

    export = sub.add_parser(
        "export",
        help="write the votes as a TRL preference data set",
        **example(
            "llm-playground prefs export --out prefs.jsonl",
            description="Write the votes as a TRL preference data set (prompt, chosen, "
            "rejected), ready for llm-playground dpo.",
        ),
    )
    export.add_argument("--db", help=db_help)
    export.add_argument(
        "--out",
        required=True,
        metavar="FILE.jsonl",
        help="JSONL with prompt, chosen, rejected for each A/B vote",
    )
    export.add_argument(
        "--ties",
        choices=("drop", "separate", "label"),
        default="separate",
        help="ties and both-bad votes: drop them, write them to FILE.ties.jsonl "
        "(default), or keep them in FILE with a label field",
    )
    export.add_argument(
        "--dataset",
        metavar="DIR",
        help="also save a Hugging Face datasets Dataset (save_to_disk) to DIR",
    )
    export.add_argument(
        "--force",
        action="store_true",
        help="replace files (or a dataset) that are already there; an earlier preference "
        "export at FILE is replaced without it",
    )
    export.set_defaults(func=export_command)

    stats = sub.add_parser(
        "stats",
        help="votes per pair, win rates and ratings with intervals",
        **example(
            "llm-playground prefs stats --bootstrap 200",
            description="Votes per pair, win rates, and Bradley-Terry ratings with 95% intervals.",
        ),
    )
    stats.add_argument("--db", help=db_help)
    stats.add_argument("--json", action="store_true", help="print the statistics as JSON")
    stats.add_argument(
        "--bootstrap",
        type=int,
        default=0,
        metavar="N",
        help="95%% intervals from N bootstrap resamples instead of the Hessian",
    )
    stats.add_argument("--seed", type=int, default=0, help="seed of the bootstrap")
    stats.set_defaults(func=stats_command)

    parser.set_defaults(func=lambda args: parser.print_help() or 2)


@one_line_errors
def add_command(args: argparse.Namespace) -> int:
    from llm_playground.finetuning.preferences import PreferenceStore, normalise_choice
    from llm_playground.finetuning.preferences.store import vote_row

    choice = normalise_choice(args.choice)  # before the database is touched
    if not args.prompt.strip():
        raise UserError("the prompt is empty")
    fields = {
        "prompt": args.prompt,
        "response_a": args.response_a,
        "response_b": args.response_b,
        "choice": choice,
        "model_a": args.model_a,
        "model_b": args.model_b,
        "comment": args.comment,
        "session_id": args.session_id,
    }
    vote_row(fields)  # the whole vote is checked before a database (or its folder) is made
    store = PreferenceStore(_db(args))
    vote = store.add_vote(**fields)
    if args.json:
        print(
            json.dumps(
                {
                    "id": vote.id,
                    "uid": vote.uid,
                    "prompt": vote.prompt,
                    "response_a": vote.response_a,
                    "response_b": vote.response_b,
                    "model_a": vote.model_a,
                    "model_b": vote.model_b,
                    "choice": vote.choice,
                    "comment": vote.comment,
                    "created_at": vote.created_at,
                    "session_id": vote.session_id,
                },
                ensure_ascii=False,
            )
        )
    else:
        print(f"stored vote #{vote.id} ({vote.choice}) in {store.path}")
    return 0


def _may_replace(path: Path, force: bool) -> bool:
    """True when ``path`` is an earlier preference export to replace; other existing
    files are replaced only with --force."""
    from llm_playground.finetuning.preferences import is_preference_export

    if not path.exists() or path.is_dir() or force:
        return False
    if not is_preference_export(path):
        raise UserError(f"{path} exists already and is not a preference export: add --force")
    return True


@one_line_errors
def export_command(args: argparse.Namespace) -> int:
    from llm_playground.core.paths import check_new_path
    from llm_playground.finetuning.outputs import OutputExists
    from llm_playground.finetuning.preferences import PreferenceStore, sibling_ties_path
    from llm_playground.finetuning.preferences.export import check_dataset_dir, check_export_path

    store = PreferenceStore(_db(args), create=False)
    out = Path(args.out).expanduser()
    targets = [out] + ([sibling_ties_path(out)] if args.ties == "separate" else [])
    replaced = []
    try:
        for path in targets:
            check_new_path(path, "--out")  # nothing is created before every check passed
            check_export_path(store, path, force=True)  # not a folder, not the database
            if _may_replace(path, args.force):
                replaced.append(path)
        if args.dataset:  # check the folder before anything is written
            check_new_path(args.dataset, "--dataset")
            check_dataset_dir(store, args.dataset, args.force)
        # every existing target was checked above
        result = store.export_jsonl(out, ties=args.ties, force=True)
        for path in replaced:
            print(f"llm-playground: replaced the earlier export {path}", file=sys.stderr)
        print(result.summary())
        if args.dataset:
            ds = store.export_dataset(args.dataset, ties=args.ties, force=args.force)
            rows = ds.n_pairs + (ds.n_ties + ds.n_both_bad if args.ties == "label" else 0)
            print(
                f"dataset ({rows} rows) -> {ds.path}"
                + (f"; ties -> {ds.ties_path}" if ds.ties_path else "")
            )
    except OutputExists as exc:
        raise UserError(f"{exc.path} exists already: add --force to replace it") from None
    return 0


def _fmt(x: object, digits: int = 0) -> str:
    if x is None:
        return "-"
    if isinstance(x, float):
        return f"{x:.{digits}f}"
    return str(x)


@one_line_errors
def stats_command(args: argparse.Namespace) -> int:
    from llm_playground.finetuning.preferences import PreferenceStore

    if args.bootstrap < 0 or args.bootstrap > 100_000:
        raise UserError("--bootstrap must be between 0 and 100000")
    if not 0 <= args.seed <= MAX_SEED:
        raise UserError(f"--seed must be between 0 and {MAX_SEED}")
    store = PreferenceStore(_db(args), create=False)
    stats = store.stats(bootstrap=args.bootstrap, seed=args.seed)
    if args.json:
        print(json.dumps(stats, indent=2, ensure_ascii=False))
        return 0
    v = stats["votes"]
    print(
        f"{v['total']} vote(s) in {stats['db']}: A {v['a']}, B {v['b']}, tie {v['tie']}, "
        f"both bad {v['both-bad']}"
    )
    skipped = stats["excluded_from_ratings"]
    if skipped["unnamed"] or skipped["same_model"]:
        print(
            f"not rated: {skipped['unnamed']} vote(s) without model names, "
            f"{skipped['same_model']} of a model against itself"
        )
    if stats["pairs"]:
        print("\nvotes per pair of models")
        print(
            f"  {'model 1':<24} {'model 2':<24} {'votes':>5} {'wins 1':>6} {'wins 2':>6} "
            f"{'ties':>4} {'both bad':>8} {'win rate 1':>10}"
        )
        for p in stats["pairs"]:
            print(
                f"  {p['model_1']:<24} {p['model_2']:<24} {p['n_votes']:>5} {p['wins_1']:>6} "
                f"{p['wins_2']:>6} {p['ties']:>4} {p['both_bad']:>8} "
                f"{_fmt(p['win_rate_1'], 3):>10}"
            )
    if stats["models"]:
        bt = stats["bradley_terry"]
        print(
            f"\nBradley-Terry ratings (Elo scale, 95% interval from {bt['method']})"
            + (" — weak prior added: the plain fit does not exist yet" if bt["regularized"] else "")
        )
        print(
            f"  {'model':<24} {'rating':>7} {'95% interval':>17} {'votes':>5} {'win rate':>8} "
            f"{'both bad':>8}"
        )
        for m in stats["models"]:
            interval = (
                f"{_fmt(m['ci_low'])}..{_fmt(m['ci_high'])}" if m["ci_low"] is not None else "-"
            )
            print(
                f"  {m['model']:<24} {_fmt(m['rating']):>7} {interval:>17} {m['n_votes']:>5} "
                f"{_fmt(m['win_rate'], 3):>8} {m['both_bad']:>8}"
            )
        elo = stats["elo"]["ratings"]
        if elo:
            print(f"\nonline Elo (K={stats['elo']['k']:g}, in vote order)")
            for r in elo:
                print(f"  {r['model']:<24} {_fmt(r['rating']):>7} {r['n_votes']:>5}")
    return 0
