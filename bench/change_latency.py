"""Change-log wake-up latency: from a write's commit in one process to a follower of the log
in another process seeing the change.

A reader process opens the store, takes change_cursor() and then loops
wait_for_changes(cursor, timeout=0.5) -> changes_since(cursor), noting the clock when each
change comes back. Once it waits, a writer process commits --commits single writes: each an
update_pipeline of one pipeline (state CODING <-> TESTING, so one change and one transition per
write), after a pause drawn uniformly from 5-20 ms by a seeded generator (the same pauses on
every run), noting the clock right after the call returns, i.e. after COMMIT. Both processes
read CLOCK_MONOTONIC, one clock for the whole machine, so the latency of a change is
seen - committed; changes are matched to commits by the pipeline version they carry. The first
--warmup commits are left out of the figures. Every commit must be seen exactly once, in commit
order: the run fails otherwise.

Goal: p95 <= 20 ms on PostgreSQL (the writer's pg_notify wakes the reader; it also looks every
0.25 s) and <= 100 ms on SQLite (the reader looks at PRAGMA data_version every 10 ms).

    .venv/bin/python bench/change_latency.py [--engines sqlite,postgresql] [--commits 1000]
        [--warmup 20] [--seed 1] [--quick]
"""

from __future__ import annotations

import argparse
import math
import multiprocessing as mp
import queue
import random
import sys
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from itertools import pairwise
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import (
    OUT,
    RunAgain,
    load,
    median,
    pg_create,
    pg_drop,
    pg_drop_leftovers,
    print_machine,
    remove_sqlite,
    retrying,
    table,
    verdict,
    wait_quiet,
)
from vibecc.state_store import PipelineState, StateStore

GOALS_MS = {"postgresql": 20.0, "sqlite": 100.0}
"""Engine -> the p95 latency aimed at, in milliseconds."""
PAUSE = (0.005, 0.020)
"""Seconds between two commits: drawn uniformly from this range."""
READER_TIMEOUT = 0.5
"""The reader's wait_for_changes timeout; a wake-up by a commit returns long before it."""
GRACE = 10.0
"""Seconds the reader has after the writer's last commit to see the rest."""


def clock() -> float:
    """CLOCK_MONOTONIC: one clock for every process of the machine, never stepped."""
    return time.clock_gettime(time.CLOCK_MONOTONIC)


def reader(location: str, expected: int, ready: Any, stop: Any, results: Any) -> None:
    """Follow the log until `expected` changes are seen (or `stop`); report (seq, version, seen)."""
    try:
        with StateStore(location) as store:
            cursor = store.change_cursor()
            store.wait_for_changes(cursor, timeout=0)  # connects; the waits below reuse it
            ready.set()
            seen: list[tuple[int, int | None, float]] = []
            while len(seen) < expected and not stop.is_set():
                if not store.wait_for_changes(cursor, timeout=READER_TIMEOUT):
                    continue
                page = store.changes_since(cursor)
                at = clock()
                seen.extend((change.seq, change.version, at) for change in page.changes)
                cursor = page.next_cursor
            results.put(("reader", seen))
    except Exception as exc:  # reported to the parent, which decides
        results.put(("reader", f"{type(exc).__name__}: {exc}"))


def writer(location: str, pipeline_id: str, commits: int, seed: int, results: Any) -> None:
    """Commit `commits` updates, paced; report (new version, clock before, clock after) each."""
    try:
        rng = random.Random(seed)
        with StateStore(location) as store:
            store.get_pipeline(pipeline_id)  # connects before the first timed write
            done: list[tuple[int, float, float]] = []
            for n in range(commits):
                time.sleep(rng.uniform(*PAUSE))
                state = PipelineState.TESTING if n % 2 == 0 else PipelineState.CODING
                before = clock()
                version = store.update_pipeline(pipeline_id, state=state).version
                done.append((version, before, clock()))
            results.put(("writer", done))
    except Exception as exc:
        results.put(("writer", f"{type(exc).__name__}: {exc}"))


@dataclass
class Run:
    engine: str
    commits: int
    seen: int
    latencies_ms: list[float]
    """Seen - the writer's clock after its call: the commit came before, so a lower bound."""
    bounds_ms: list[float]
    """Seen - the writer's clock before its call: an upper bound."""
    call_ms: list[float]


def fresh(engine: str) -> tuple[str, str]:
    """A new database with one project and one pipeline in CODING; (location, pipeline id)."""
    if engine == "sqlite":
        OUT.mkdir(parents=True, exist_ok=True)
        location = str(OUT / f"latency-{uuid.uuid4().hex[:8]}.db")
    else:
        location = pg_create(f"vibecc_bench_latency_{uuid.uuid4().hex[:8]}")
    with StateStore(location) as store:
        project = store.create_project("Latency", "acme/latency")
        pipeline = store.create_pipeline(project.id, 1, "Ticket 1", "vibecc/t-1")
        store.update_pipeline(pipeline.id, state=PipelineState.CODING)
    return location, pipeline.id


def drop(engine: str, location: str) -> None:
    if engine == "sqlite":
        remove_sqlite(Path(location))
    else:
        pg_drop(location.rsplit("/", 1)[1])


def one_run(engine: str, commits: int, warmup: int, seed: int) -> Run:
    location, pipeline_id = fresh(engine)
    ctx = mp.get_context("spawn")
    ready, stop, results = ctx.Event(), ctx.Event(), ctx.Queue()
    total = warmup + commits
    procs = [ctx.Process(target=reader, args=(location, total, ready, stop, results))]
    try:
        procs[0].start()
        if not ready.wait(120):
            raise RunAgain(f"the {engine} reader did not start waiting within 120 s")
        procs.append(ctx.Process(target=writer, args=(location, pipeline_id, total, seed, results)))
        procs[1].start()
        reports = dict([results.get(timeout=total * 0.5 + 120)])
        if "writer" not in reports:
            reports.update([results.get(timeout=total * 0.5 + 120)])
        elif "reader" not in reports:  # the writer is done: the reader has GRACE s to catch up
            try:
                reports.update([results.get(timeout=GRACE)])
            except queue.Empty:
                stop.set()
                reports.update([results.get(timeout=60)])
        for proc in procs:
            proc.join(60)
    finally:
        stop.set()
        for proc in procs:
            if proc.is_alive():
                proc.kill()
        drop(engine, location)
    for side, report in reports.items():
        if isinstance(report, str):
            raise RunAgain(f"the {engine} {side} failed: {report}")
    return match(engine, reports["writer"], reports["reader"], warmup)


def match(
    engine: str,
    done: Sequence[tuple[int, float, float]],
    seen: Sequence[tuple[int, int | None, float]],
    warmup: int,
) -> Run:
    """Latency per commit; fail loudly unless each commit was seen once, in commit order."""
    versions = [version for version, _, _ in done]
    seen_versions = [version for _, version, _ in seen]
    seqs = [seq for seq, _, _ in seen]
    gapless = all(b == a + 1 for a, b in pairwise(seqs))
    if seen_versions != versions or not gapless:
        missing = len(set(versions) - {v for v in seen_versions if v is not None})
        raise AssertionError(
            f"{engine}: the reader saw {len(seen)} changes for {len(done)} commits ({missing} commits "
            "never seen), or not once each in commit order with gapless numbers: the log is broken"
        )
    pairs = list(zip(done, seen, strict=True))[warmup:]
    latencies = [(at - after) * 1000 for (_, _, after), (_, _, at) in pairs]
    bounds = [(at - before) * 1000 for (_, before, _), (_, _, at) in pairs]
    calls = [(after - before) * 1000 for (_, before, after), _ in pairs]
    return Run(engine, len(done) - warmup, len(seen) - warmup, latencies, bounds, calls)


def percentile(values: Sequence[float], q: float) -> float:
    """Nearest rank: the smallest value with at least q% of the values at or below it."""
    ordered = sorted(values)
    return ordered[max(0, math.ceil(q / 100 * len(ordered)) - 1)]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--engines", default="sqlite,postgresql", help="comma-separated: sqlite,postgresql")
    parser.add_argument("--commits", type=int, default=1000, help="timed commits per engine (default 1,000)")
    parser.add_argument(
        "--warmup", type=int, default=20, help="commits before them, not counted (default 20)"
    )
    parser.add_argument("--seed", type=int, default=1, help="seed of the pauses between commits")
    parser.add_argument("--quick", action="store_true", help="smoke run: 200 commits, 10 warm-up")
    parser.add_argument("--no-wait", action="store_true", help="do not wait for an idle machine")
    args = parser.parse_args(argv)
    if args.quick:
        args.commits, args.warmup = 200, 10
    engines = [e.strip() for e in args.engines.split(",") if e.strip()]
    print_machine()
    print(
        f"# {args.commits:,} timed commits per engine after {args.warmup} untimed; one writer and one "
        f"reader process; pauses {PAUSE[0] * 1000:.0f}-{PAUSE[1] * 1000:.0f} ms (seed {args.seed}); "
        f"reader: wait_for_changes(timeout={READER_TIMEOUT:g}) -> changes_since"
    )
    print("# latency = reader's clock when changes_since returned the change - writer's clock after its call")
    runs = []
    for engine in engines:
        if not args.no_wait:
            wait_quiet()
        runs.append(retrying(one_run, engine, args.commits, args.warmup, args.seed))
        print(
            f"  {engine}: {runs[-1].seen:,} changes seen of {runs[-1].commits:,} commits, each once, "
            f"in commit order (load {load()})",
            flush=True,
        )
    if "postgresql" in engines:
        pg_drop_leftovers("latency_")
    print("\n## Wake-up latency, commit -> reader in another process (ms)\n")
    rows = []
    for run in runs:
        lat, goal = run.latencies_ms, GOALS_MS[run.engine]
        p95 = percentile(lat, 95)
        rows.append(
            [
                run.engine,
                f"{run.commits:,}",
                f"{run.seen:,}",
                f"{min(lat):.1f}",
                f"{percentile(lat, 50):.1f}",
                f"{p95:.1f}",
                f"{percentile(lat, 99):.1f}",
                f"{max(lat):.1f}",
                f"{sum(v > goal for v in lat)}",
                f"{percentile(run.bounds_ms, 95):.1f}",
                f"{median(run.call_ms):.1f}",
                f"p95 <= {goal:.0f}",
                verdict(p95 <= goal),
            ]
        )
    headers = ["engine", "commits", "seen", "min", "p50", "p95", "p99", "max", "over goal"]
    headers += ["p95 from call start", "write call p50"]
    print(table([*headers, "goal", "result"], rows))
    print(
        "\nLatency is measured from the end of the writer's call, after its COMMIT: it is a lower bound, "
        "and a\nnegative value is a change seen before the writer's call returned (the commit is visible "
        "at once;\nthe writer's call returns a little later, or its process waited for a CPU). "
        "p95 from call start:\nthe same from the start of the writer's call, an upper bound. "
        "over goal: changes seen later than\nthe goal. write call p50: the update_pipeline call, "
        "commit included. All in ms."
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
