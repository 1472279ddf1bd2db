"""Followers of the change log: what --readers processes following the log cost --writers
processes doing the orchestrator's writes, and whether each follower sees the whole log.

Each writer process runs tickets through the writes of bench/orchestrator_mix.py's ticket
(create_pipeline; update_pipeline QUEUED -> CODING -> TESTING with pr_id and pr_url, in one
ticket of four a CI retry TESTING -> CODING -> TESTING, -> REVIEW -> MERGED; archive_pipeline),
without its reads, on its own tickets, for --seconds after a common start. Writer throughput is
all the writes over the time from that start to the last writer's end. A run is made with no
reader, then one with --readers reader processes, each following the log from cursor 0, from
before the writers start, with changes_since(cursor, wait=0.25, linger=...) (it reads the next
page at once when something after the cursor is committed and waits for a commit otherwise),
until it has read the final log (--linger, default 0.1 s: each call lets that long pass before
it looks, so a reader reads at most 10 pages a second, as a dashboard redrawing at most 10
times a second would; --linger 0 reads after every commit it sees); each on a fresh database.
With --rounds above 1 the two runs alternate which goes first and the medians are kept.

The check: every reader saw the seq of each change of the final log (changes_since from 0 once
the writers are done) exactly once and in order; no miss, no repeat. The goal: the readers
take less than 10% off the writers' throughput.

    .venv/bin/python bench/change_followers.py [--engines sqlite,postgresql] [--readers 10]
        [--writers 4] [--seconds 20] [--rounds 1] [--linger 0.1] [--quick]
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import sys
import threading
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import (
    OUT,
    RunAgain,
    busy_between,
    cpu_times,
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

GOAL_DROP = 10.0
"""The largest drop in writer throughput (%) the readers may cause."""
PROJECTS = 4
READER_TIMEOUT = 0.25
"""The readers' wait_for_changes timeout: how soon an idle reader notices the end."""
TICKETS_PER_WRITER = 1_000_000
"""Ticket numbers of writer w start at w * this, so writers never share a ticket."""


def ticket(store: StateStore, project: str, n: int) -> int:
    """The writes of one ticket's life (bench/orchestrator_mix.py's, without the reads)."""
    p = store.create_pipeline(project, n, f"Ticket {n}: make it so", f"vibecc/t-{n}")
    store.update_pipeline(p.id, state=PipelineState.CODING)
    url = f"https://github.com/acme/app/pull/{n + 1}"
    store.update_pipeline(p.id, state=PipelineState.TESTING, pr_id=n + 1, pr_url=url)
    writes = 3
    if n % 4 == 3:
        store.update_pipeline(p.id, state=PipelineState.CODING, retry_count_ci=1)
        store.update_pipeline(p.id, state=PipelineState.TESTING)
        writes += 2
    store.update_pipeline(p.id, state=PipelineState.REVIEW)
    store.update_pipeline(p.id, state=PipelineState.MERGED)
    store.archive_pipeline(p.id)
    return writes + 3


def writer(location: str, index: int, projects: list[str], seconds: float, start: Any, results: Any) -> None:
    """One warm-up ticket, the common start, then tickets for `seconds`; report (start, end,
    writes, CPU seconds)."""
    try:
        with StateStore(location) as store:
            n = index * TICKETS_PER_WRITER
            ticket(store, projects[index % len(projects)], n)
            start.wait()
            began, cpu = time.perf_counter(), time.process_time()
            writes = 0
            while time.perf_counter() - began < seconds:
                n += 1
                writes += ticket(store, projects[n % len(projects)], n)
            results.put((began, time.perf_counter(), writes, time.process_time() - cpu))
    except Exception as exc:  # reported to the parent, which decides
        start.abort()
        results.put(f"writer {index}: {type(exc).__name__}: {exc}")


def reader(location: str, linger: float, ready: Any, stop: Any, final: Any, results: Any) -> None:
    """Follow the log from 0 until `stop` is set and the cursor reached `final`; report the
    seqs, the pages read and the CPU seconds from the start on."""
    try:
        with StateStore(location) as store:
            store.wait_for_changes(0, timeout=0)  # connects before the writers start
            ready.wait(timeout=300)
            cpu = time.process_time()
            cursor, pages = 0, 0
            seqs: list[int] = []
            while not (stop.is_set() and cursor >= final.value):
                page = store.changes_since(cursor, wait=READER_TIMEOUT, linger=linger)
                if page.changes:
                    seqs.extend(change.seq for change in page.changes)
                    cursor, pages = page.next_cursor, pages + 1
            results.put((seqs, pages, time.process_time() - cpu))
    except Exception as exc:
        ready.abort()
        results.put(f"reader: {type(exc).__name__}: {exc}")


@dataclass
class Check:
    """What one reader saw against the final log."""

    seen: int
    pages: int
    missed: int
    repeated: int
    in_order: bool

    @property
    def ok(self) -> bool:
        return self.missed == 0 and self.repeated == 0 and self.in_order


@dataclass
class Run:
    engine: str
    readers: int
    seconds: float
    writes: int
    log: int
    checks: list[Check]
    writer_cpu: float
    """CPU seconds of the writers while writing, and of the readers from when all were waiting
    (before the writers' warm-up ticket) to their end."""
    reader_cpu: float
    busy: float
    """Share of the machine's cores busy (any process, the database server too) while writing."""

    @property
    def rate(self) -> float:
        return self.writes / self.seconds


def check(seqs: list[int], pages: int, log: list[int]) -> Check:
    missed = len(set(log) - set(seqs))
    repeated = len(seqs) - len(set(seqs))
    return Check(len(seqs), pages, missed, repeated, seqs == log)


def fresh(engine: str) -> tuple[str, list[str]]:
    if engine == "sqlite":
        OUT.mkdir(parents=True, exist_ok=True)
        location = str(OUT / f"followers-{uuid.uuid4().hex[:8]}.db")
    else:
        location = pg_create(f"vibecc_bench_followers_{uuid.uuid4().hex[:8]}")
    with StateStore(location) as store:
        projects = [store.create_project(f"Project {i}", f"acme/app-{i}").id for i in range(PROJECTS)]
    return location, projects


def drop(engine: str, location: str) -> None:
    if engine == "sqlite":
        remove_sqlite(Path(location))
    else:
        pg_drop(location.rsplit("/", 1)[1])


def final_log(location: str) -> list[int]:
    """The seqs of the whole log, read page by page from 0."""
    seqs: list[int] = []
    with StateStore(location) as store:
        cursor, end = 0, store.change_cursor()
        while cursor < end:
            page = store.changes_since(cursor, limit=10_000)
            seqs.extend(change.seq for change in page.changes)
            cursor = page.next_cursor
    return seqs


def one_run(engine: str, readers: int, writers: int, seconds: float, linger: float) -> Run:
    location, projects = fresh(engine)
    ctx = mp.get_context("spawn")
    start, ready = ctx.Barrier(writers + 1), ctx.Barrier(readers + 1)
    stop, final = ctx.Event(), ctx.Value("q", 0)
    done, seen = ctx.Queue(), ctx.Queue()
    procs = [
        ctx.Process(target=reader, args=(location, linger, ready, stop, final, seen)) for _ in range(readers)
    ]
    procs += [
        ctx.Process(target=writer, args=(location, w, projects, seconds, start, done)) for w in range(writers)
    ]
    try:
        for proc in procs:
            proc.start()
        try:
            ready.wait(timeout=120)  # every reader connected and waiting
            start.wait(timeout=120)  # every writer warmed up
        except threading.BrokenBarrierError:
            failed = [q.get(timeout=10) for q in (seen, done) if not q.empty()]
            raise RunAgain(f"a {engine} process failed before the start: {failed or 'timed out'}") from None
        first = cpu_times()
        reports = [done.get(timeout=seconds + 300) for _ in range(writers)]
        busy = busy_between(first, cpu_times())
        errors = [r for r in reports if isinstance(r, str)]
        if errors:
            raise RunAgain(f"a {engine} writer failed: {errors[0]}")
        log = final_log(location)
        final.value = log[-1] if log else 0
        stop.set()
        followed = [seen.get(timeout=300) for _ in range(readers)]
        errors = [f for f in followed if isinstance(f, str)]
        if errors:
            raise RunAgain(f"a {engine} reader failed: {errors[0]}")
        for proc in procs:
            proc.join(60)
    finally:
        stop.set()
        for proc in procs:
            if proc.is_alive():
                proc.kill()
        drop(engine, location)
    elapsed = max(r[1] for r in reports) - min(r[0] for r in reports)
    checks = [check(seqs, pages, log) for seqs, pages, _ in followed]
    writer_cpu, reader_cpu = sum(r[3] for r in reports), sum(f[2] for f in followed)
    return Run(
        engine, readers, elapsed, sum(r[2] for r in reports), len(log), checks, writer_cpu, reader_cpu, busy
    )


def check_line(run: Run) -> str:
    bad = [c for c in run.checks if not c.ok]
    if not run.checks:
        return "no readers"
    if not bad:
        return f"{len(run.checks)}/{len(run.checks)} readers saw all {run.log:,} changes once each, in order"
    worst = bad[0]
    return (
        f"{len(bad)}/{len(run.checks)} readers WRONG (first: saw {worst.seen:,} of {run.log:,}, "
        f"missed {worst.missed}, repeated {worst.repeated}, in order: {worst.in_order})"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--engines", default="sqlite,postgresql", help="comma-separated: sqlite,postgresql")
    parser.add_argument("--readers", type=int, default=10, help="reader processes (default 10)")
    parser.add_argument("--writers", type=int, default=4, help="writer processes (default 4)")
    parser.add_argument("--seconds", type=float, default=20.0, help="seconds the writers write (default 20)")
    parser.add_argument("--rounds", type=int, default=1, help="pairs of runs; the medians are kept")
    parser.add_argument("--linger", type=float, default=0.1, help="the readers' linger (default 0.1 s)")
    parser.add_argument("--quick", action="store_true", help="smoke run: 5 s, 1 round")
    parser.add_argument("--no-wait", action="store_true", help="do not wait for an idle machine")
    args = parser.parse_args(argv)
    if args.quick:
        args.seconds, args.rounds = 5.0, 1
    engines = [e.strip() for e in args.engines.split(",") if e.strip()]
    print_machine()
    print(
        f"# {args.writers} writer processes for {args.seconds:g} s, without readers and with "
        f"{args.readers} reader processes (linger {args.linger:g} s); {args.rounds} round(s); "
        f"{PROJECTS} projects; a fresh "
        "database per run"
    )
    results: dict[str, dict[int, list[Run]]] = {}
    for engine in engines:
        runs: dict[int, list[Run]] = {0: [], args.readers: []}
        for r in range(args.rounds):
            if not args.no_wait:
                wait_quiet()
            for readers in (0, args.readers) if r % 2 == 0 else (args.readers, 0):
                run = retrying(one_run, engine, readers, args.writers, args.seconds, args.linger)
                runs[readers].append(run)
                print(
                    f"  {engine} round {r + 1}, {readers} readers: {run.writes:,} writes in "
                    f"{run.seconds:.1f} s = {run.rate:,.0f} writes/s; CPU s: writers {run.writer_cpu:.1f}, "
                    f"readers {run.reader_cpu:.1f}; machine {run.busy:.0%} busy; {check_line(run)} "
                    f"(load {load()})",
                    flush=True,
                )
        results[engine] = runs
    if "postgresql" in engines:
        pg_drop_leftovers("followers_")
    print("\n## The readers against the final log (each run with readers)\n")
    rows = []
    for engine, runs in results.items():
        for n, run in enumerate(runs[args.readers], 1):
            c = run.checks
            rows.append(
                [
                    engine,
                    n,
                    f"{run.log:,}",
                    f"{sum(x.ok for x in c)}/{len(c)}",
                    f"{min(x.seen for x in c):,}-{max(x.seen for x in c):,}",
                    f"{min(x.pages for x in c):,}-{max(x.pages for x in c):,}",
                    sum(x.missed for x in c),
                    sum(x.repeated for x in c),
                    sum(not x.in_order for x in c),
                    verdict(all(x.ok for x in c)),
                ]
            )
    headers = ["engine", "round", "changes in log", "readers ok", "seen per reader", "pages per reader"]
    print(table([*headers, "missed (all)", "repeated (all)", "readers out of order", "result"], rows))
    print(f"\n## Writer throughput, {args.writers} writers (median of the rounds)\n")
    rows = []
    ok = all(c.ok for runs in results.values() for run in runs[args.readers] for c in run.checks)
    for engine, runs in results.items():
        without = median([run.rate for run in runs[0]])
        with_readers = median([run.rate for run in runs[args.readers]])
        drop_pct = (without - with_readers) / without * 100
        rows.append(
            [
                engine,
                f"{without:,.0f}",
                f"{with_readers:,.0f}",
                f"{drop_pct:.1f}%",
                f"< {GOAL_DROP:.0f}%",
                verdict(drop_pct < GOAL_DROP),
            ]
        )
    headers = ["engine", "writes/s, no readers", f"writes/s, {args.readers} readers", "drop"]
    print(table([*headers, "goal", "result"], rows))
    print(f"\n## Where the CPU went ({os.cpu_count()} cores; median of the rounds)\n")
    rows = []
    for engine, runs in results.items():
        for readers, kept in runs.items():
            changes = [run.log * readers for run in kept]
            rows.append(
                [
                    engine,
                    readers,
                    f"{median([run.writer_cpu / run.writes * 1000 for run in kept]):.2f}",
                    f"{median([run.reader_cpu / n * 1000 for run, n in zip(kept, changes, strict=True)]):.2f}"
                    if readers
                    else "-",
                    f"{median([run.reader_cpu / run.seconds for run in kept]):.2f}",
                    f"{median([run.busy for run in kept]):.0%}",
                ]
            )
    headers = ["engine", "readers", "writer CPU ms/write", "reader CPU ms/change read"]
    print(table([*headers, "cores used by readers", "machine busy"], rows))
    print(
        "\ncores used by readers: their CPU seconds (counted from when all were waiting, a little before "
        "the writers'\nstart, to their end) over the writing time. machine busy: all cores, any process "
        "(the database server\nand other work on the machine too), while the writers wrote. Readers spend "
        "CPU on every wake-up; on a\nmachine with few cores it is taken from the writers."
    )
    print(f"\nfollowers check: {'every reader saw the whole log once, in order' if ok else 'FAILED'}")
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
