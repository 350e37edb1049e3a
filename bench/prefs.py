"""Lab 4 benchmark: how fast votes can be stored while several writers vote at once,
and that none is lost (target: 1,000 votes/s with 4 concurrent writers, 0 lost).

Measured in this one run, each on a fresh database in a temporary folder:

1. the library path, ``PreferenceStore.add_vote`` in 4 processes (one transaction per
   vote), with the default ``synchronous=NORMAL`` (a vote survives the process being
   killed) and with ``synchronous=FULL`` (it also survives a power cut: one disk flush
   per vote);
2. 4 threads of one process sharing a store (many browser tabs on one app server);
3. the command line, ``llm-playground prefs add`` run by 4 concurrent shells (each vote
   pays for starting a Python process).

Run: ``python bench/prefs.py [--votes N] [--writers N] [--json]``.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from llm_playground.finetuning.preferences import PreferenceStore, bench_concurrent_writes


def bench_threads(db: Path, writers: int, votes_per_writer: int) -> dict:
    store = PreferenceStore(db)
    start = threading.Barrier(writers)

    def work(w: int) -> tuple[float, float, int]:
        start.wait()
        t0 = time.perf_counter()
        for i in range(votes_per_writer):
            store.add_vote(
                f"prompt {i}",
                "x",
                "y",
                "ab"[i % 2],
                model_a=f"m{w}",
                model_b="m",
                uid=f"thread-{w}-{i}",
            )
        return t0, time.perf_counter(), votes_per_writer

    with ThreadPoolExecutor(writers) as pool:
        results = list(pool.map(work, range(writers)))
    seconds = max(r[1] for r in results) - min(r[0] for r in results)
    acknowledged = sum(r[2] for r in results)
    stored = store.count()
    return {
        "writers": writers,
        "acknowledged": acknowledged,
        "stored": stored,
        "lost": acknowledged - stored,
        "seconds": round(seconds, 4),
        "votes_per_second": round(acknowledged / seconds, 1),
    }


def bench_cli(db: Path, writers: int, votes_per_writer: int) -> dict:
    """``writers`` shells each running ``prefs add`` ``votes_per_writer`` times in a row."""
    script = (
        "import subprocess, sys\n"
        "for i in range(int(sys.argv[2])):\n"
        "    subprocess.run([sys.executable, '-m', 'llm_playground', 'prefs', 'add', '--db',\n"
        "                    sys.argv[1], '--prompt', f'p{i}', '--response-a', 'x',\n"
        "                    '--response-b', 'y', '--choice', 'a', '--model-a', 'm1',\n"
        "                    '--model-b', 'm2'], check=True, stdout=subprocess.DEVNULL)\n"
    )
    PreferenceStore(db)
    t0 = time.perf_counter()
    procs = [
        subprocess.Popen([sys.executable, "-c", script, str(db), str(votes_per_writer)])
        for _ in range(writers)
    ]
    codes = [p.wait() for p in procs]
    seconds = time.perf_counter() - t0
    acknowledged = writers * votes_per_writer if not any(codes) else None
    stored = PreferenceStore(db).count()
    return {
        "writers": writers,
        "acknowledged": acknowledged,
        "stored": stored,
        "lost": (acknowledged - stored) if acknowledged is not None else None,
        "seconds": round(seconds, 3),
        "votes_per_second": round(stored / seconds, 1),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--votes", type=int, default=2500, help="votes per writer (library path)")
    parser.add_argument("--writers", type=int, default=4)
    parser.add_argument("--cli-votes", type=int, default=5, help="votes per writer (CLI path)")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    args = parser.parse_args()

    results: dict[str, dict] = {}
    with tempfile.TemporaryDirectory(prefix="prefs-bench-") as tmp:
        tmp_path = Path(tmp)
        results["processes_normal"] = bench_concurrent_writes(
            tmp_path / "normal.sqlite", writers=args.writers, votes_per_writer=args.votes
        )
        results["processes_full"] = bench_concurrent_writes(
            tmp_path / "full.sqlite",
            writers=args.writers,
            votes_per_writer=max(1, args.votes // 10),
            synchronous="FULL",
        )
        results["threads_normal"] = bench_threads(
            tmp_path / "threads.sqlite", args.writers, args.votes
        )
        results["cli"] = bench_cli(tmp_path / "cli.sqlite", args.writers, args.cli_votes)
    results["cpu_count"] = {"value": os.cpu_count()}

    if args.json:
        print(json.dumps(results, indent=2))
    else:
        print(
            f"prefs add throughput, {args.writers} concurrent writers "
            "(target: 1,000 votes/s, 0 lost)"
        )
        for name, label in [
            ("processes_normal", "processes, synchronous=NORMAL (default)"),
            ("processes_full", "processes, synchronous=FULL"),
            ("threads_normal", "threads sharing one store"),
            ("cli", "llm-playground prefs add (a process per vote)"),
        ]:
            r = results[name]
            print(
                f"  {label:<48} {r['votes_per_second']:>9,.1f} votes/s   "
                f"{r['stored']:>6} stored   lost {r['lost']}"
            )
    normal = results["processes_normal"]
    ok = (
        normal["lost"] == 0
        and normal.get("duplicates", 0) == 0
        and results["threads_normal"]["lost"] == 0
        and results["processes_full"]["lost"] == 0
    )
    if not ok:
        print("VOTES WERE LOST", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
