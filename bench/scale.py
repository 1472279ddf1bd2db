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
import random
import sqlite3
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import partial
from pathlib import Path
from typing import Any

import psycopg
from sqlalchemy import event

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import (
    OUT,
    DirectPostgres,
    DirectSQLite,
    load,
    median,
    pg_create,
    pg_drop,
    pg_dsn,
    pg_exists,
    pg_url,
    print_machine,
    remove_sqlite,
    retrying,
    sqlite_stamp,
    table,
    timed,
    verdict,
    wait_quiet,
)
from vibecc.state_store import HistoryCursor, PipelineState, StateStore, migrate

PROJECTS = 20
ACTIVE_STATES = ("queued", "coding", "testing", "review")
SEED = 20240601
HISTORY_INSERT_COLS = (
    "id, project_id, ticket_id, ticket_title, final_state, branch_name, pr_id, pr_url, "
    "total_retries_ci, total_retries_review, started_at, completed_at, duration_seconds"
)
PIPELINE_INSERT_COLS = (
    "id, project_id, ticket_id, ticket_title, ticket_body, state, branch_name, pr_id, pr_url, "
    "retry_count_ci, retry_count_review, feedback, created_at, updated_at, version"
)
FILL_STATS = (
    "INSERT INTO history_stats (project_id, total_completed, total_merged, total_failed, "
    "sum_duration_seconds, sum_retries_ci, sum_retries_review) "
    "SELECT project_id, count(*), sum(CASE WHEN final_state = 'merged' THEN 1 ELSE 0 END), "
    "sum(CASE WHEN final_state = 'failed' THEN 1 ELSE 0 END), sum(duration_seconds), "
    "sum(total_retries_ci), sum(total_retries_review) FROM pipeline_history GROUP BY project_id"
)
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


# -- the data set --------------------------------------------------------------------------


def history_rows(rows: int, projects: list[str], end: datetime) -> Iterator[tuple[Any, ...]]:
    """`rows` finished pipelines, completed over the two years before `end` in time order
    (as a store fills), ~80% merged, durations from minutes to days."""
    rng = random.Random(SEED)
    span = timedelta(days=730).total_seconds()
    start = end - timedelta(days=730)
    step = span / rows
    counters = dict.fromkeys(projects, 0)
    for i in range(rows):
        project = projects[rng.randrange(len(projects))]
        counters[project] += 1
        n = counters[project]
        completed = start + timedelta(seconds=(i + rng.random()) * step)
        duration = int(min(3 * 86400, rng.lognormvariate(8.5, 1.2)))
        merged = rng.random() < 0.8
        has_pr = merged or rng.random() < 0.5
        yield (
            str(uuid.UUID(int=rng.getrandbits(128), version=4)),
            project,
            str(n),
            f"Ticket {n}: improve the widget handling of case {i % 997}",
            "merged" if merged else "failed",
            f"vibecc/ticket-{n}",
            n if has_pr else None,
            f"https://github.com/acme/app/pull/{n}" if has_pr else None,
            rng.choice((0, 0, 0, 1, 1, 2, 3)),
            rng.choice((0, 0, 1, 1, 2)),
            completed - timedelta(seconds=duration),
            completed,
            duration,
        )


def pipeline_rows(count: int, projects: list[str], end: datetime) -> Iterator[tuple[Any, ...]]:
    """`count` active pipelines spread over the projects and the four active states,
    created during the three days before `end`."""
    rng = random.Random(SEED + 1)
    for i in range(count):
        project = projects[i % len(projects)]
        state = ACTIVE_STATES[rng.randrange(len(ACTIVE_STATES))]
        created = end - timedelta(seconds=rng.uniform(0, 3 * 86400))
        has_pr = state in ("testing", "review")
        yield (
            str(uuid.UUID(int=rng.getrandbits(128), version=4)),
            project,
            f"A-{i}",
            f"Active ticket {i}: add the thing",
            "As a user I want the thing. " * rng.randint(1, 20),
            state,
            f"vibecc/active-{i}",
            100_000 + i if has_pr else None,
            f"https://github.com/acme/app/pull/{100_000 + i}" if has_pr else None,
            rng.randint(0, 2),
            rng.randint(0, 2),
            "Please rename the helper." if state == "coding" and rng.random() < 0.3 else None,
            created,
            created + timedelta(seconds=rng.uniform(0, 3600)),
            rng.randint(1, 6),
        )


def batches(items: Iterator[tuple[Any, ...]], size: int) -> Iterator[list[tuple[Any, ...]]]:
    batch: list[tuple[Any, ...]] = []
    for item in items:
        batch.append(item)
        if len(batch) >= size:
            yield batch
            batch = []
    if batch:
        yield batch


def make_projects(location: str) -> list[str]:
    """The schema (via StateStore, so it is the migrated one) and the projects."""
    with StateStore(location) as store:
        return [store.create_project(f"Project {i:02d}", f"acme/app-{i:02d}").id for i in range(PROJECTS)]


def build_sqlite(path: Path, rows: int, pipelines: int) -> None:
    building = path.with_name(path.name + ".building")
    remove_sqlite(building)
    started = time.perf_counter()
    projects = make_projects(str(building))
    end = datetime.now(UTC)
    conn = sqlite3.connect(building, isolation_level=None)
    # Loading only: a crash during the build just means building again.
    conn.execute("PRAGMA synchronous = OFF")
    conn.execute("PRAGMA cache_size = -1000000")
    indexes = [
        sql
        for (sql,) in conn.execute(
            "SELECT sql FROM sqlite_master WHERE type = 'index' AND tbl_name = 'pipeline_history' "
            "AND sql IS NOT NULL"
        )
    ]
    for (name,) in conn.execute(
        "SELECT name FROM sqlite_master WHERE type = 'index' AND tbl_name = 'pipeline_history' "
        "AND sql IS NOT NULL"
    ).fetchall():
        conn.execute(f'DROP INDEX "{name}"')
    marks = ", ".join("?" * 13)
    for batch in batches(history_rows(rows, projects, end), 100_000):
        conn.execute("BEGIN")
        conn.executemany(
            f"INSERT INTO pipeline_history ({HISTORY_INSERT_COLS}) VALUES ({marks})",  # noqa: S608
            [(*r[:10], sqlite_stamp(r[10]), sqlite_stamp(r[11]), r[12]) for r in batch],
        )
        conn.execute("COMMIT")
    conn.execute("BEGIN")
    for sql in indexes:
        conn.execute(sql)
    conn.execute(FILL_STATS)
    conn.executemany(
        f"INSERT INTO pipelines ({PIPELINE_INSERT_COLS}) VALUES ({', '.join('?' * 15)})",  # noqa: S608
        [
            (*r[:12], sqlite_stamp(r[12]), sqlite_stamp(r[13]), r[14])
            for r in pipeline_rows(pipelines, projects, end)
        ],
    )
    conn.execute("COMMIT")
    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    conn.close()
    remove_sqlite(path)
    building.rename(path)
    print(f"# built {path} in {time.perf_counter() - started:.0f} s ({path.stat().st_size / 2**20:.0f} MiB)")


def build_postgres(database: str, rows: int, pipelines: int) -> None:
    building = database + "_building"
    started = time.perf_counter()
    pg_create(building)
    projects = make_projects(pg_url(building))
    end = datetime.now(UTC)
    with psycopg.connect(pg_dsn(building)) as conn:
        conn.execute("SET maintenance_work_mem = '512MB'")
        indexes = [
            (name, sql)
            for name, sql in conn.execute(
                "SELECT indexname, indexdef FROM pg_indexes WHERE tablename = 'pipeline_history' "
                "AND indexname NOT LIKE 'pk_%'"
            )
        ]
        for name, _ in indexes:
            conn.execute(f'DROP INDEX "{name}"')
        with (
            conn.cursor() as cur,
            cur.copy(f"COPY pipeline_history ({HISTORY_INSERT_COLS}) FROM STDIN") as copy,
        ):
            for row in history_rows(rows, projects, end):
                copy.write_row(row)
        for _, sql in indexes:
            conn.execute(sql)
        conn.execute(FILL_STATS)
        with conn.cursor() as cur, cur.copy(f"COPY pipelines ({PIPELINE_INSERT_COLS}) FROM STDIN") as copy:
            for row in pipeline_rows(pipelines, projects, end):
                copy.write_row(row)
        conn.commit()
    with psycopg.connect(pg_dsn(building), autocommit=True) as conn:
        # What autovacuum does to a table this size soon after a bulk load.
        conn.execute("VACUUM ANALYZE")
    pg_drop(database)
    with psycopg.connect(pg_dsn("postgres"), autocommit=True) as conn:
        conn.execute(f'ALTER DATABASE "{building}" RENAME TO "{database}"')
    print(f"# built PostgreSQL database {database} in {time.perf_counter() - started:.0f} s")


def ensure(engine: str, rows: int, pipelines: int, rebuild: bool) -> str:
    """The location of the cached data set of `rows` rows, built when missing or asked to."""
    if engine == "sqlite":
        path = OUT / f"scale-{rows}.db"
        if rebuild or not path.exists() or not _complete(str(path), rows):
            OUT.mkdir(parents=True, exist_ok=True)
            build_sqlite(path, rows, pipelines)
        return str(path)
    database = f"vibecc_bench_scale_{rows}"
    if rebuild or not pg_exists(database) or not _complete(pg_url(database), rows):
        build_postgres(database, rows, pipelines)
    return pg_url(database)


def _complete(location: str, rows: int) -> bool:
    """The cached data set has all its rows and the schema of the current models."""
    with StateStore(location) as store:
        if store.count_history() != rows:
            return False
        drift = migrate.check(store._engine)
    if drift:
        print(f"# cached data set differs from the current schema ({drift[0]}); building it again")
    return not drift


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
        plans = explain(engine, store, direct, project, cursor, since)
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
    the store's keyset SQL against the bounded form, both on the driver."""
    out = []
    for depth in (0, rows // 2, rows * 9 // 10):
        cursor = None
        if depth:
            m = direct.mark
            with direct.read() as cur:
                cur.execute(
                    "SELECT completed_at, id FROM pipeline_history "  # noqa: S608
                    f"ORDER BY completed_at, id LIMIT 1 OFFSET {m}",
                    (depth - 1,),
                )
                at, key = cur.fetchone()
            cursor = HistoryCursor(direct.load_time(at), key)
        times = {}
        for bounded in (False, True):
            sql, params = direct.scan_query(cursor, 1000, bounded=bounded)
            times[bounded] = median(timed(partial(direct.history_rows, sql, params), repeat, warmup=1)) * 1000
        out.append([f"{depth:,}", f"{times[False]:.1f}", f"{times[True]:.1f}"])
    return out


def measure_depths(
    store: StateStore, direct: DirectSQLite | DirectPostgres, project: str, repeat: int
) -> list[list[str]]:
    """Page latency by depth: the store, its SQL on the driver, and the bounded keyset form."""
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
        bounded = time_pair(
            "bounded",
            partial(store.get_history, project_id=project, limit=100, before=at),
            partial(direct.get_history, project, limit=100, before=at, bounded=True),
            repeat,
        )
        assert bounded.direct_ms is not None
        assert same.direct_ms is not None
        rows.append(
            [f"{depth:,}", f"{same.store_ms:.3f}", f"{same.direct_ms:.3f}", f"{bounded.direct_ms:.3f}"]
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


# -- query plans ---------------------------------------------------------------------------


def captured(store: StateStore, call: Callable[[], Any]) -> tuple[str, Any] | None:
    """The SELECT the store sends during `call`, with its parameters, when it runs the
    statement through SQLAlchemy's execution events (None when it bypasses them)."""
    seen: list[tuple[str, Any]] = []

    def record(
        conn: Any, cursor: Any, statement: str, parameters: Any, context: Any, executemany: bool
    ) -> None:
        if statement.lstrip().upper().startswith("SELECT"):
            seen.append((statement, parameters))

    engine = store._engine  # the bench looks inside on purpose: the plan of the real statement
    event.listen(engine, "before_cursor_execute", record)
    try:
        call()
    finally:
        event.remove(engine, "before_cursor_execute", record)
    return seen[-1] if seen else None


def explain(
    engine: str,
    store: StateStore,
    direct: DirectSQLite | DirectPostgres,
    project: str,
    cursor: HistoryCursor,
    since: datetime,
) -> str:
    calls: dict[str, tuple[Callable[[], Any], tuple[str, list[Any]]]] = {
        "first page": (
            lambda: store.get_history(project_id=project, limit=100),
            direct.history_query(project, 100),
        ),
        "10,000-deep page": (
            lambda: store.get_history(project_id=project, limit=100, before=cursor),
            direct.history_query(project, 100, before=cursor),
        ),
        "stats 7 days, one project": (
            lambda: store.get_history_stats(project, since=since),
            direct.stats_query(project, since),
        ),
        "stats 7 days, all": (lambda: store.get_history_stats(since=since), direct.stats_query(None, since)),
        "list_pipelines(project, state)": (
            lambda: store.list_pipelines(project, PipelineState.QUEUED),
            direct.list_query(project, PipelineState.QUEUED),
        ),
    }
    out = [f"\n## {engine}: query plans\n"]
    statements: dict[str, tuple[str, Any]] = {}
    for name, (call, same_sql) in calls.items():
        seen = captured(store, call)
        # A store that runs its statements on the driver directly is not seen by SQLAlchemy's
        # events; the baseline's copy of the same SQL stands in for it then.
        statements[name if seen else f"{name} (the baseline's copy of the store's SQL)"] = seen or same_sql
    statements["10,000-deep page, bounded keyset (proposed)"] = direct.history_query(
        project, 100, before=cursor, bounded=True
    )
    for name, (sql, params) in statements.items():
        if engine == "sqlite":
            plan = direct.conn.execute(f"EXPLAIN QUERY PLAN {sql}", params).fetchall()
            lines = [f"{'  ' * _depth(plan, row)}{row[3]}" for row in plan]
        else:
            with direct.conn.cursor() as cur:
                cur.execute(f"EXPLAIN (ANALYZE, BUFFERS, COSTS OFF) {sql}", params)
                lines = [row[0] for row in cur.fetchall()]
            direct.conn.rollback()
        out.append(f"### {name}\n\n```\n{' '.join(sql.split())}\n--\n" + "\n".join(lines) + "\n```\n")
    return "\n".join(out)


def _depth(plan: list[Any], row: Any) -> int:
    parents = {r[0]: r[1] for r in plan}
    depth, parent = 0, row[1]
    while parent in parents:
        depth, parent = depth + 1, parents[parent]
    return depth


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
        "bounded keyset, direct ms",
    ]
    return (
        f"\n## {engine}: median latency\n\n"
        + table(headers, rows)
        + f"\n\n## {engine}: history page of 100 by cursor depth (median ms)\n\n"
        + table(depth_headers, measured.depths)
        + f"\n\n## {engine}: one iter_history batch of 1,000 by depth (median ms, on the driver)\n\n"
        + table(["rows before the batch", "store's keyset SQL", "bounded keyset"], measured.scans)
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
