"""Latency of the read paths on a big store: 1,000,000 history rows in 20 projects and 5,000
active pipelines, on SQLite and PostgreSQL, next to the same reads written on the driver.

The data set is bulk-loaded with the raw driver into a schema made by StateStore (history
indexes dropped during the load and re-created from their own DDL, history_stats filled by
INSERT ... SELECT ... GROUP BY) and kept between runs: bench/out/scale-<rows>.db and the
PostgreSQL database vibecc_bench_scale_<rows>. --rebuild makes them again, --drop removes the
PostgreSQL one at the end.

    .venv/bin/python bench/scale.py [--engines sqlite,postgresql] [--rows 1000000]
        [--repeat 200] [--rebuild] [--drop] [--quick]
"""

from __future__ import annotations

import argparse
import gc
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from functools import partial
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import load, median, pg_drop, print_machine, retrying, table, timed, verdict, wait_quiet
from bench.direct import DirectPostgres, DirectSQLite
from bench.scale_data import PROJECTS, ensure
from bench.scale_plans import explain
from vibecc.state_store import HistoryCursor, PipelineState, StateStore

SQLITE_TARGET_MS = {
    "first page": 2.0,
    "10,000-deep page": 2.0,
    "stats, one project": 2.0,
    "stats, all": 2.0,
    "stats 7 days, one project": 20.0,
    "stats 7 days, all": 20.0,
    "list_pipelines(project, state)": 2.0,
    "open + close": 100.0,
}
LIST_ALL = "list_pipelines() all"
LIST_ALL_RATIO = 1.5
PG_FACTOR = 3.0


# -- measuring -----------------------------------------------------------------------------


@dataclass
class Measure:
    name: str
    rows: int
    store_ms: float
    direct_ms: float | None


def time_pair(
    name: str, store_call: Callable[[], Any], direct_call: Callable[[], Any] | None, repeat: int
) -> Measure:
    """Median ms of `repeat` calls each, store and direct interleaved in blocks of ten."""
    result = store_call()
    count = len(result) if isinstance(result, list) else 1
    if direct_call is not None:
        assert direct_call() == result, f"{name}: store and direct return different results"
    store_times: list[float] = []
    direct_times: list[float] = []
    for _ in range(3):  # warm-up
        store_call()
        if direct_call is not None:
            direct_call()
    gc.collect()
    done = 0
    while done < repeat:
        block = min(10, repeat - done)
        for call, times in ((store_call, store_times), (direct_call, direct_times)):
            if call is None:
                continue
            for _ in range(block):
                start = time.perf_counter()
                call()
                times.append(time.perf_counter() - start)
        done += block
    return Measure(
        name, count, median(store_times) * 1000, median(direct_times) * 1000 if direct_times else None
    )


def measure_engine(engine: str, location: str, args: argparse.Namespace) -> Measured:
    store = StateStore(location)
    direct = DirectSQLite(location) if engine == "sqlite" else DirectPostgres(location.rsplit("/", 1)[1])
    try:
        project = store.list_projects()[PROJECTS // 2].id
        newest = store.get_history(limit=1)[0].completed_at
        since = newest - timedelta(days=7)
        deep = store.get_history(project_id=project, limit=10_000)
        cursor = HistoryCursor.after(deep[-1])
        state = PipelineState.QUEUED
        results = [
            time_pair(
                "first page",
                lambda: store.get_history(project_id=project, limit=100),
                lambda: direct.get_history(project, limit=100),
                args.repeat,
            ),
            time_pair(
                "10,000-deep page",
                lambda: store.get_history(project_id=project, limit=100, before=cursor),
                lambda: direct.get_history(project, limit=100, before=cursor),
                args.repeat,
            ),
            time_pair(
                "stats, one project",
                lambda: store.get_history_stats(project),
                lambda: direct.get_history_stats(project),
                args.repeat,
            ),
            time_pair("stats, all", store.get_history_stats, direct.get_history_stats, args.repeat),
            time_pair(
                "stats 7 days, one project",
                lambda: store.get_history_stats(project, since=since),
                lambda: direct.get_history_stats(project, since=since),
                args.repeat,
            ),
            time_pair(
                "stats 7 days, all",
                lambda: store.get_history_stats(since=since),
                lambda: direct.get_history_stats(since=since),
                args.repeat,
            ),
            time_pair(
                "list_pipelines(project, state)",
                lambda: store.list_pipelines(project, state),
                lambda: direct.list_pipelines(project, state),
                args.repeat,
            ),
            time_pair(LIST_ALL, store.list_pipelines, direct.list_pipelines, max(20, args.repeat // 4)),
        ]
        depths = measure_depths(store, direct, project, args.repeat)
        scans = measure_scans(direct, args.rows)
        plans = explain(
            engine, store, direct, project, cursor, since, direct.scan_cursor(args.rows * 9 // 10)
        )
    finally:
        store.close()
        direct.close()
    results.append(measure_open(location, args.opens))
    print(plans)
    return Measured(results, depths, scans)


@dataclass
class Measured:
    latencies: list[Measure]
    depths: list[list[str]]
    scans: list[list[str]]


def measure_scans(direct: DirectSQLite | DirectPostgres, rows: int, repeat: int = 5) -> list[list[str]]:
    """One 1,000-row batch of iter_history (whole history, oldest first) at several depths:
    the store's keyset SQL against the form without the completed_at bound, both on the driver."""
    out = []
    for depth in (0, rows // 2, rows * 9 // 10):
        cursor = direct.scan_cursor(depth) if depth else None
        times = {}
        for bounded in (True, False):
            sql, params = direct.scan_query(cursor, 1000, bounded=bounded)
            times[bounded] = median(timed(partial(direct.history_rows, sql, params), repeat, warmup=1)) * 1000
        out.append([f"{depth:,}", f"{times[True]:.1f}", f"{times[False]:.1f}"])
    return out


def measure_depths(
    store: StateStore, direct: DirectSQLite | DirectPostgres, project: str, repeat: int
) -> list[list[str]]:
    """Page latency by depth: the store, its SQL on the driver, and on the driver the keyset
    form without the completed_at bound (the store's before ddce41c)."""
    rows: list[list[str]] = []
    cursor: HistoryCursor | None = None
    depth = 0
    for wanted in (0, 10_000, 40_000):
        while depth < wanted:
            page = store.get_history(project_id=project, limit=min(10_000, wanted - depth), before=cursor)
            if not page:
                return rows
            cursor = HistoryCursor.after(page[-1])
            depth += len(page)
        at = cursor
        same = time_pair(
            f"page at {depth:,}",
            partial(store.get_history, project_id=project, limit=100, before=at),
            partial(direct.get_history, project, limit=100, before=at),
            repeat,
        )
        unbounded = median(
            timed(partial(direct.get_history, project, limit=100, before=at, bounded=False), repeat, 3)
        )
        assert same.direct_ms is not None
        rows.append(
            [f"{depth:,}", f"{same.store_ms:.3f}", f"{same.direct_ms:.3f}", f"{unbounded * 1000:.3f}"]
        )
    return rows


def measure_open(location: str, opens: int) -> Measure:
    StateStore(location).close()
    times = []
    for _ in range(opens):
        start = time.perf_counter()
        StateStore(location).close()
        times.append(time.perf_counter() - start)
    return Measure("open + close", 0, median(times) * 1000, None)


def cold_open(location: str, runs: int = 5) -> float:
    """Median ms of a new Python process importing the package and opening the store."""
    code = (
        "import time; t = time.perf_counter(); from vibecc.state_store import StateStore; "
        f"StateStore({location!r}).close(); print(time.perf_counter() - t)"
    )
    times = [
        float(subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout)
        for _ in range(runs)
    ]
    return median(times) * 1000


# -- report --------------------------------------------------------------------------------


def report(engine: str, measured: Measured, cold_ms: float) -> str:
    results = measured.latencies
    factor = 1.0 if engine == "sqlite" else PG_FACTOR
    rows = []
    for m in results:
        ratio = f"{m.store_ms / m.direct_ms:.2f}" if m.direct_ms else "-"
        if m.name == LIST_ALL:
            assert m.direct_ms is not None
            goal = f"<= {LIST_ALL_RATIO * factor:g}x direct"
            ok = m.store_ms <= LIST_ALL_RATIO * factor * m.direct_ms
        else:
            limit = SQLITE_TARGET_MS[m.name] * factor
            goal = f"<= {limit:g} ms"
            ok = m.store_ms <= limit
        rows.append(
            [
                m.name,
                f"{m.rows:,}" if m.rows else "-",
                f"{m.store_ms:.3f}",
                f"{m.direct_ms:.3f}" if m.direct_ms is not None else "-",
                ratio,
                goal,
                verdict(ok),
            ]
        )
    rows.append(["cold: new process, import + open + close", "-", f"{cold_ms:.1f}", "-", "-", "-", "-"])
    headers = ["query", "rows", "store ms (median)", "direct ms (median)", "store/direct", "target", "result"]
    depth_headers = [
        "rows skipped (cursor depth)",
        "store ms",
        "store's SQL, direct ms",
        "without the completed_at bound (before ddce41c), direct ms",
    ]
    return (
        f"\n## {engine}: median latency\n\n"
        + table(headers, rows)
        + f"\n\n## {engine}: history page of 100 by cursor depth (median ms)\n\n"
        + table(depth_headers, measured.depths)
        + f"\n\n## {engine}: one iter_history batch of 1,000 by depth (median ms, on the driver)\n\n"
        + table(
            ["rows before the batch", "store's keyset SQL", "without the bound (before ddce41c)"],
            measured.scans,
        )
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--engines", default="sqlite,postgresql", help="comma-separated: sqlite,postgresql")
    parser.add_argument("--rows", type=int, default=1_000_000, help="history rows (default 1,000,000)")
    parser.add_argument("--pipelines", type=int, default=5_000, help="active pipelines (default 5,000)")
    parser.add_argument("--repeat", type=int, default=200, help="timed calls per query (default 200)")
    parser.add_argument("--opens", type=int, default=30, help="timed opens of the store (default 30)")
    parser.add_argument("--rebuild", action="store_true", help="build the cached data sets again")
    parser.add_argument("--drop", action="store_true", help="drop the PostgreSQL data set at the end")
    parser.add_argument("--build-only", action="store_true", help="make the data sets, measure nothing")
    parser.add_argument("--no-wait", action="store_true", help="do not wait for an idle machine")
    parser.add_argument("--quick", action="store_true", help="smoke run: 30,000 rows, 30 repeats")
    args = parser.parse_args(argv)
    if args.quick:
        args.rows, args.pipelines, args.repeat, args.opens = 30_000, 500, 30, 5
    if args.rows < 10_100 * PROJECTS:
        print(f"# note: below {10_100 * PROJECTS:,} rows the deep page is less than 10,000 rows deep")
    engines = [e.strip() for e in args.engines.split(",") if e.strip()]
    print_machine()
    print(f"# {args.rows:,} history rows, {PROJECTS} projects, {args.pipelines:,} active pipelines")
    reports = []
    for engine in engines:
        location = retrying(ensure, engine, args.rows, args.pipelines, args.rebuild)
        if args.build_only:
            continue
        if not args.no_wait:
            wait_quiet()
        print(f"# measuring {engine} (load {load()})", flush=True)
        results = retrying(measure_engine, engine, location, args)
        reports.append(report(engine, results, cold_open(location)))
        if engine == "postgresql" and args.drop:
            pg_drop(location.rsplit("/", 1)[1])
    print("\n".join(reports))
    print(f"\n# load average at the end: {load()}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
