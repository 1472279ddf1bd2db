"""Timeline reads on a big SQLite store: get_timeline, get_stage_stats and `history stats`.

Builds (once, cached in bench/out/) a store with --runs archived runs of 6 transitions each
(QUEUED, CODING, TESTING, CODING, TESTING, MERGED/FAILED over random durations) in 20 projects,
written in bulk on the driver with the kept histogram filled from the same visits, then times
the calls on it. SQLite only.

    .venv/bin/python bench/timeline_scale.py [--runs 1000000] [--rebuild]
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
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import OUT, print_machine, remove_sqlite
from vibecc.state_store import StateStore
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
    totals: dict[str, list[int]] = defaultdict(lambda: [0, 0, 0, 0, 0, 0])
    for row in conn.execute(
        "SELECT project_id, final_state, duration_seconds, total_retries_ci FROM pipeline_history"
    ):
        t = totals[row[0]]
        t[0] += 1
        t[1] += row[1] == "merged"
        t[2] += row[1] == "failed"
        t[3] += row[2]
        t[4] += row[3]
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


def median_ms(call: object, times: int) -> float:
    spans = []
    for _ in range(times):
        start = time.perf_counter()
        call()  # type: ignore[operator]
        spans.append((time.perf_counter() - start) * 1000)
    return statistics.median(spans)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--runs", type=int, default=1_000_000)
    parser.add_argument("--rebuild", action="store_true")
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
    with StateStore(str(path)) as store:
        ids = [r.id for r in store.get_history(limit=1000)]
        project = store.list_projects()[0].id
        rng = random.Random(2)
        timeline_ms = median_ms(lambda: store.get_timeline(rng.choice(ids)), 500)
        print(f"get_timeline (6 transitions): {timeline_ms:.3f} ms")
        print(f"get_stage_stats(): {median_ms(store.get_stage_stats, 200):.3f} ms")
        print(f"get_stage_stats(project): {median_ms(lambda: store.get_stage_stats(project), 200):.3f} ms")
        week = store.get_history(limit=1)[0].completed_at - timedelta(days=7)
        window_ms = median_ms(lambda: store.get_stage_stats(since=week), 5)
        print(f"get_stage_stats(since=7 days before the newest): {window_ms:.1f} ms")
    cli = Path(sys.executable).with_name("vibecc-state")
    spans = []
    for _ in range(3):
        start = time.perf_counter()
        subprocess.run([str(cli), "--db", str(path), "history", "stats"], check=True, capture_output=True)
        spans.append(time.perf_counter() - start)
    print(f"vibecc-state history stats (wall, median of 3): {statistics.median(spans) * 1000:.0f} ms")


if __name__ == "__main__":
    main()
