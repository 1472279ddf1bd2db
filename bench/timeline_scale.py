"""Timeline reads on a big store: get_timeline, get_stage_stats, get_duration_percentiles and
`history stats`, on SQLite and PostgreSQL.

Builds (once, cached in bench/out/) a SQLite store with --runs archived runs of 6 transitions
each (QUEUED, CODING, TESTING, CODING, TESTING, MERGED/FAILED over random durations) in 20
projects, written in bulk on the driver with the kept totals and histograms filled from the same
runs; PostgreSQL gets the same rows by COPY into a fresh database (dropped afterwards). Then it
times the calls, and states the kept percentiles' error against the exact ones on this data.

    .venv/bin/python bench/timeline_scale.py [--runs 1000000] [--rebuild] [--engines sqlite,postgresql]
"""

from __future__ import annotations

import argparse
import random
import sqlite3
import statistics
import subprocess
import sys
import time
import uuid
from collections import defaultdict
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import psycopg
from click.testing import CliRunner

from bench.common import OUT, pg_create, pg_drop, pg_dsn, print_machine, remove_sqlite
from vibecc.state_store import StateStore
from vibecc.state_store.cli import cli as cli_group
from vibecc.state_store.queries.buckets import bucket

STATES = ("queued", "coding", "testing", "coding", "testing")
T0 = datetime(2025, 1, 1, tzinfo=UTC)


def stamp(moment: datetime) -> str:
    return moment.isoformat(" ", "microseconds")[:-6]


def build(path: Path, runs: int) -> None:
    remove_sqlite(path)
    StateStore(str(path)).close()  # the schema, at head
    rng = random.Random(1)
    projects = [str(uuid.UUID(int=rng.getrandbits(128))) for _ in range(20)]
    cells: dict[tuple[str, str, int], list[int]] = defaultdict(lambda: [0, 0])
    conn = sqlite3.connect(path)
    conn.execute("PRAGMA synchronous = OFF")
    for n, project in enumerate(projects):
        conn.execute(
            "INSERT INTO projects VALUES (?, ?, ?, 'main', NULL, 3, 3, ?, ?)",
            (project, f"P{n}", f"acme/p{n}", stamp(T0), stamp(T0)),
        )
    history: list[tuple[Any, ...]] = []
    transitions: list[tuple[Any, ...]] = []
    for run in range(runs):
        pipeline_id = str(uuid.UUID(int=rng.getrandbits(128)))
        project = projects[run % len(projects)]
        at = T0 + timedelta(seconds=run * 30)
        started = at
        final = "merged" if rng.random() < 0.8 else "failed"
        path_states = [*STATES, final]
        for seq, state in enumerate(path_states, start=1):
            spent = 1.0 if seq == len(path_states) else rng.lognormvariate(5, 1.2)
            transitions.append(
                (
                    pipeline_id,
                    seq,
                    project,
                    path_states[seq - 2] if seq > 1 else None,
                    state,
                    stamp(at),
                    1,
                    0,
                    None,
                    0,
                )
            )
            ms = round(spent * 1000)
            cell = cells[project, state, bucket(ms)]
            cell[0] += 1
            cell[1] += ms
            at += timedelta(milliseconds=ms)
        duration = int((at - started).total_seconds())
        history.append(
            (
                pipeline_id,
                project,
                str(run),
                f"ticket {run}",
                final,
                "b",
                None,
                None,
                1,
                0,
                stamp(started),
                stamp(at),
                duration,
            )
        )
        if len(history) >= 50_000:
            _flush(conn, history, transitions)
    _flush(conn, history, transitions)
    conn.executemany(
        "INSERT INTO stage_histogram VALUES (?, ?, ?, ?, ?)",
        [(p, s, b, n, total) for (p, s, b), (n, total) in cells.items()],
    )
    conn.execute(
        "INSERT INTO stage_totals SELECT state, bucket, sum(visits), sum(sum_ms) FROM stage_histogram "
        "GROUP BY state, bucket"
    )
    totals: dict[str, list[int]] = defaultdict(lambda: [0, 0, 0, 0, 0, 0])
    runs_of: dict[tuple[str, int], int] = defaultdict(int)
    for row in conn.execute(
        "SELECT project_id, final_state, duration_seconds, total_retries_ci FROM pipeline_history"
    ):
        t = totals[row[0]]
        t[0] += 1
        t[1] += row[1] == "merged"
        t[2] += row[1] == "failed"
        t[3] += row[2]
        t[4] += row[3]
        runs_of[row[0], bucket(row[2] * 1000)] += 1
    conn.executemany("INSERT INTO duration_histogram VALUES (?, ?, ?)", [(*k, n) for k, n in runs_of.items()])
    conn.executemany(
        "INSERT INTO history_stats VALUES (?, ?, ?, ?, ?, ?, ?)", [(p, *t) for p, t in totals.items()]
    )
    conn.commit()
    conn.execute("ANALYZE")
    conn.close()


def _flush(
    conn: sqlite3.Connection, history: list[tuple[object, ...]], transitions: list[tuple[object, ...]]
) -> None:
    conn.executemany("INSERT INTO pipeline_history VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", history)
    conn.executemany("INSERT INTO pipeline_transitions VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", transitions)
    history.clear()
    transitions.clear()


def median_ms(call: Callable[[], object], times: int) -> float:
    spans = []
    for _ in range(times):
        start = time.perf_counter()
        call()
        spans.append((time.perf_counter() - start) * 1000)
    return statistics.median(spans)


TABLES = (
    "projects",
    "pipeline_history",
    "pipeline_transitions",
    "stage_histogram",
    "stage_totals",
    "history_stats",
    "duration_histogram",
)


def to_postgres(path: Path) -> str:
    """A fresh PostgreSQL store holding the SQLite file's rows, by COPY; its URL."""
    name = "vibecc_bench_timeline"
    url = pg_create(name)
    StateStore(url).close()  # the schema, at head
    source = sqlite3.connect(path)
    with psycopg.connect(pg_dsn(name)) as conn:
        conn.execute("SET TIME ZONE 'UTC'")  # SQLite keeps UTC wall time without an offset
        for table in TABLES:
            cursor = source.execute(f"SELECT * FROM {table}")  # noqa: S608 (the names above)
            columns = ", ".join(d[0] for d in cursor.description)
            with conn.cursor().copy(f"COPY {table} ({columns}) FROM STDIN") as copy:
                for row in cursor:
                    copy.write_row(row)
        conn.commit()
        conn.autocommit = True
        conn.execute("VACUUM ANALYZE")
    source.close()
    return url


def relative_error(kept: float | None, exact: float | None) -> float:
    if kept is None or exact is None:
        raise ValueError("the bench data has runs: a percentile is missing")
    return abs(kept - exact) / exact


def measure(engine: str, location: str) -> None:
    print(f"\n[{engine}]")
    with StateStore(location) as store:
        ids = [r.id for r in store.get_history(limit=1000)]
        project = store.list_projects()[0].id
        rng = random.Random(2)
        timeline_ms = median_ms(lambda: store.get_timeline(rng.choice(ids)), 500)
        print(f"get_timeline (6 transitions): {timeline_ms:.3f} ms")
        print(f"get_stage_stats(): {median_ms(store.get_stage_stats, 200):.3f} ms")
        print(f"get_stage_stats(project): {median_ms(lambda: store.get_stage_stats(project), 200):.3f} ms")
        print(f"get_duration_percentiles(): {median_ms(store.get_duration_percentiles, 200):.3f} ms")
        print(f"get_history_stats(): {median_ms(store.get_history_stats, 200):.3f} ms")
        exact_ms = median_ms(lambda: store.get_duration_percentiles(exact=True), 3)
        print(f"get_duration_percentiles(exact=True): {exact_ms:.1f} ms")
        week = store.get_history(limit=1)[0].completed_at - timedelta(days=7)
        window_ms = median_ms(lambda: store.get_stage_stats(since=week), 5)
        print(f"get_stage_stats(since=7 days before the newest): {window_ms:.1f} ms")
        kept, exact = store.get_duration_percentiles(), store.get_duration_percentiles(exact=True)
        print(
            f"duration p50 kept {kept.p50} exact {exact.p50} ({relative_error(kept.p50, exact.p50):.2%}); "
            f"p95 kept {kept.p95} exact {exact.p95} ({relative_error(kept.p95, exact.p95):.2%})"
        )
        stages, scanned = store.get_stage_stats(), store.get_stage_stats(since=T0 - timedelta(days=1))
        worst = max(
            relative_error(getattr(stages[s], p), getattr(scanned[s], p))
            for s in stages
            if scanned[s].visits and scanned[s].p50_seconds
            for p in ("p50_seconds", "p95_seconds")
        )
        print(f"stage p50/p95 kept vs exact, worst of all states: {worst:.2%}")
    args = ["--db", location, "history", "stats"]
    print(f"history stats, in process (median of 20): {median_ms(lambda: _invoke(args), 20):.1f} ms")
    cli = Path(sys.executable).with_name("vibecc-state")
    wall = median_ms(lambda: subprocess.run([str(cli), *args], check=True, capture_output=True), 5)
    floor = median_ms(
        lambda: subprocess.run([sys.executable, "-c", "import vibecc.state_store.cli"], check=True), 5
    )
    print(f"vibecc-state history stats, wall (median of 5): {wall:.0f} ms")
    print(f"  of which starting Python and importing the CLI (median of 5): {floor:.0f} ms")


def _invoke(args: list[str]) -> None:
    result = CliRunner().invoke(cli_group, args)
    if result.exit_code != 0:
        raise RuntimeError(result.output)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--runs", type=int, default=1_000_000)
    parser.add_argument("--rebuild", action="store_true")
    parser.add_argument("--engines", default="sqlite,postgresql")
    args = parser.parse_args()
    OUT.mkdir(parents=True, exist_ok=True)
    path = OUT / f"timeline-{args.runs}.db"
    print_machine()
    if args.rebuild or not path.exists():
        start = time.perf_counter()
        build(path, args.runs)
        print(
            f"built {args.runs:,} runs, {args.runs * 6:,} transitions in {time.perf_counter() - start:.0f} s"
        )
    engines = args.engines.split(",")
    if "sqlite" in engines:
        measure("sqlite", str(path))
    if "postgresql" in engines:
        start = time.perf_counter()
        url = to_postgres(path)
        print(f"\ncopied to PostgreSQL in {time.perf_counter() - start:.0f} s")
        try:
            measure("postgresql", url)
        finally:
            pg_drop("vibecc_bench_timeline")


if __name__ == "__main__":
    main()
