"""Claim throughput: N processes calling claim_pipeline() until it returns None, over a fresh
database of queued pipelines, on PostgreSQL (FOR UPDATE SKIP LOCKED) and SQLite (reference).

Every worker opens its own StateStore, waits at a barrier, then claims; claims/s is the number
of pipelines over the time from the barrier to the last worker's end. Each pipeline must be
claimed exactly once.

    .venv/bin/python bench/claim.py [--engines postgresql,sqlite] [--pipelines 4000]
        [--workers 1,4] [--rounds 3] [--quick]
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import sys
import time
import uuid
from dataclasses import dataclass
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
    print_machine,
    remove_sqlite,
    retrying,
    table,
    wait_quiet,
)
from vibecc.state_store import StateStore

PROJECTS = 4


def worker(location: str, barrier: Any, results: Any) -> None:
    """Claim until none is left; report (start, end, claimed ids), or the error."""
    try:
        with StateStore(location) as store:
            claimed: list[str] = []
            barrier.wait()
            start = time.perf_counter()
            while (pipeline := store.claim_pipeline()) is not None:
                claimed.append(pipeline.id)
            results.put((start, time.perf_counter(), claimed))
    except Exception as exc:  # reported to the parent, which decides
        barrier.abort()
        results.put(f"{type(exc).__name__}: {exc}")


@dataclass
class Run:
    engine: str
    workers: int
    seconds: float
    claims: int

    @property
    def rate(self) -> float:
        return self.claims / self.seconds


def fresh(engine: str, pipelines: int) -> tuple[str, list[str]]:
    if engine == "sqlite":
        OUT.mkdir(parents=True, exist_ok=True)
        location = str(OUT / f"claim-{uuid.uuid4().hex[:8]}.db")
    else:
        location = pg_create(f"vibecc_bench_claim_{uuid.uuid4().hex[:8]}")
    ids = []
    with StateStore(location) as store:
        projects = [store.create_project(f"Project {i}", f"acme/app-{i}").id for i in range(PROJECTS)]
        for n in range(pipelines):
            ids.append(store.create_pipeline(projects[n % PROJECTS], n, f"Ticket {n}", f"vibecc/t-{n}").id)
    return location, ids


def drop(engine: str, location: str) -> None:
    if engine == "sqlite":
        remove_sqlite(Path(location))
    else:
        pg_drop(location.rsplit("/", 1)[1])


def one_run(engine: str, workers: int, pipelines: int) -> Run:
    location, ids = fresh(engine, pipelines)
    ctx = mp.get_context("spawn")
    barrier = ctx.Barrier(workers)
    results = ctx.Queue()
    try:
        procs = [ctx.Process(target=worker, args=(location, barrier, results)) for _ in range(workers)]
        for proc in procs:
            proc.start()
        reports = [results.get(timeout=600) for _ in procs]
        for proc in procs:
            proc.join()
        errors = [r for r in reports if isinstance(r, str)]
        if errors:
            raise RunAgain(f"a {engine} claimer failed: {errors[0]}")
    finally:
        drop(engine, location)
    claimed = [pid for _, _, got in reports for pid in got]
    if len(claimed) != len(set(claimed)) or set(claimed) != set(ids):
        raise AssertionError(
            f"{engine}: {len(claimed)} claims of {len(ids)} pipelines, not each exactly once"
        )
    start = min(r[0] for r in reports)
    end = max(r[1] for r in reports)
    return Run(engine, workers, end - start, len(claimed))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--engines", default="postgresql,sqlite", help="comma-separated: postgresql,sqlite")
    parser.add_argument(
        "--pipelines", type=int, default=4000, help="queued pipelines per run (default 4,000)"
    )
    parser.add_argument("--workers", default="1,4", help="claimer process counts (default 1,4)")
    parser.add_argument("--rounds", type=int, default=3, help="runs per setting; the median is kept")
    parser.add_argument("--no-wait", action="store_true", help="do not wait for an idle machine")
    parser.add_argument("--quick", action="store_true", help="smoke run: 300 pipelines, 1 round")
    args = parser.parse_args(argv)
    if args.quick:
        args.pipelines, args.rounds = 300, 1
    engines = [e.strip() for e in args.engines.split(",") if e.strip()]
    counts = [int(w) for w in args.workers.split(",")]
    print_machine()
    print(f"# {args.pipelines:,} queued pipelines per run, {args.rounds} rounds per setting")
    rows = []
    for engine in engines:
        base = None
        for workers in counts:
            runs = []
            for _ in range(args.rounds):
                if not args.no_wait:
                    wait_quiet()
                runs.append(retrying(one_run, engine, workers, args.pipelines))
                print(
                    f"  {engine} x{workers}: {runs[-1].rate:,.0f} claims/s (load {load()})",
                    flush=True,
                )
            rate = median([r.rate for r in runs])
            base = rate if base is None else base
            rows.append(
                [
                    engine,
                    workers,
                    f"{rate:,.0f}",
                    " / ".join(f"{r.rate:,.0f}" for r in runs),
                    f"{rate / base:.2f}",
                    f"{1e6 / rate * workers:,.0f}",
                ]
            )
    print("\n## Claims per second (median of the rounds)\n")
    headers = [
        "engine",
        "processes",
        "claims/s",
        "rounds",
        f"vs {counts[0]} process(es)",
        "us per claim per process",
    ]
    print(table(headers, rows))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
