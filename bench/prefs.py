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

Rates are printed as ratios to the default path (processes, ``synchronous=NORMAL``)
measured in the same run, with the CPU flags that matter.

Run: ``python bench/prefs.py [--votes N] [--writers N] [--json]``.
"""

from __future__ import annotations

import sys
from pathlib import Path

# bench/inspect.py bears the standard library's name (which torch and dataclasses import): run
# as a script, this folder must not come first on the import path.
if sys.path and Path(sys.path[0]).resolve() == Path(__file__).resolve().parent:
    sys.path.pop(0)

import argparse
import json
import multiprocessing
import os
import queue
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from llm_playground.core.errors import UserError
from llm_playground.core.hardware import cpu_flags
from llm_playground.finetuning.preferences import CHOICES, PreferenceStore


def _bench_writer(
    db_path: str, synchronous: str, writer: int, n: int, tag: str, start, results
) -> None:
    store = PreferenceStore(db_path, synchronous=synchronous)
    start.wait()
    t0 = time.time()
    acknowledged = 0
    for i in range(n):
        store.add_vote(
            f"prompt {i} from writer {writer}",
            f"response a {i}",
            f"response b {i}",
            CHOICES[i % 4],
            model_a=f"model-{writer % 3}",
            model_b="model-x",
            session_id=tag,
            uid=f"{tag}-{writer}-{i}",
        )
        acknowledged += 1
    results.put((writer, acknowledged, t0, time.time()))
    store.close()


def bench_concurrent_writes(
    db_path: str | os.PathLike,
    writers: int = 4,
    votes_per_writer: int = 250,
    synchronous: str = "NORMAL",
) -> dict:
    """``writers`` processes each store ``votes_per_writer`` votes (one transaction per
    vote) into ``db_path`` at the same time; then count what arrived.

    Returns votes/s (all acknowledged votes over the wall time from the common start to
    the last writer's end), and lost and duplicated votes (both must be 0)."""
    if writers < 1 or votes_per_writer < 1:
        raise UserError("writers and votes_per_writer must be at least 1")
    store = PreferenceStore(db_path, synchronous=synchronous)  # create and check once
    tag = f"bench-{uuid.uuid4().hex[:12]}"
    ctx = multiprocessing.get_context("spawn")
    start = ctx.Event()
    results = ctx.Queue()
    procs = [
        ctx.Process(
            target=_bench_writer,
            args=(str(store.path), store.synchronous, w, votes_per_writer, tag, start, results),
        )
        for w in range(writers)
    ]
    for p in procs:
        p.start()
    time.sleep(0.2)
    start.set()
    reports = []
    while len(reports) < len(procs):
        try:
            reports.append(results.get(timeout=0.5))
        except queue.Empty:
            if not any(p.is_alive() for p in procs) and results.empty():
                break  # a writer died before reporting
    for p in procs:
        p.join(timeout=60)
    failed = sum(1 for p in procs if p.exitcode != 0)
    acknowledged = sum(r[1] for r in reports)
    seconds = (max(r[3] for r in reports) - min(r[2] for r in reports)) if reports else float("nan")
    rows = store.db.read(
        "SELECT count(*), count(DISTINCT uid) FROM votes WHERE session_id = ?", (tag,)
    )[0]
    expected = {f"{tag}-{w}-{i}" for w, n_ack, _, _ in reports for i in range(n_ack)}
    stored_uids = {
        r[0] for r in store.db.read("SELECT uid FROM votes WHERE session_id = ?", (tag,))
    }
    store.close()
    return {
        "writers": writers,
        "votes_per_writer": votes_per_writer,
        "synchronous": store.synchronous,
        "acknowledged": acknowledged,
        "stored": int(rows[0]),
        "distinct": int(rows[1]),
        "lost": len(expected - stored_uids),
        "duplicates": int(rows[0]) - int(rows[1]),
        "failed_writers": failed,
        "seconds": round(seconds, 4),
        "votes_per_second": round(acknowledged / seconds, 1) if seconds and seconds > 0 else None,
    }


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
    results["cpu_flags"] = cpu_flags()

    if args.json:
        print(json.dumps(results, indent=2))
    else:
        print(
            f"prefs add throughput, {args.writers} concurrent writers "
            "(target: 1,000 votes/s, 0 lost)"
        )
        baseline = results["processes_normal"]["votes_per_second"] or float("nan")
        for name, label in [
            ("processes_normal", "processes, synchronous=NORMAL (default)"),
            ("processes_full", "processes, synchronous=FULL"),
            ("threads_normal", "threads sharing one store"),
            ("cli", "llm-playground prefs add (a process per vote)"),
        ]:
            r = results[name]
            print(
                f"  {label:<48} {r['votes_per_second']:>9,.1f} votes/s "
                f"({r['votes_per_second'] / baseline:5.2f}x)   "
                f"{r['stored']:>6} stored   lost {r['lost']}"
            )
        flags = ", ".join(f"{k} {'yes' if v else 'no'}" for k, v in results["cpu_flags"].items())
        print(f"  {os.cpu_count()} CPUs; {flags}")
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
