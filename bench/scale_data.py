"""The data set of bench/scale.py and bench/memory.py: finished and active pipelines made up
from a fixed seed, bulk-loaded with the raw driver into a schema made by StateStore, and kept
between runs (bench/out/scale-<rows>.db, PostgreSQL database vibecc_bench_scale_<rows>).

History indexes are dropped during the load and re-created from their own DDL; history_stats
is filled by INSERT ... SELECT ... GROUP BY.
"""

from __future__ import annotations

import random
import sqlite3
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg

from bench.common import OUT, pg_create, pg_drop, pg_dsn, pg_exists, pg_url, remove_sqlite
from bench.direct import sqlite_stamp
from vibecc.state_store import StateStore, migrate

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
        drift = migrate.check(store.database.engine)
    if drift:
        print(f"# cached data set differs from the current schema ({drift[0]}); building it again")
    return not drift
