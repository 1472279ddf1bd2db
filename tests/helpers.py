"""Helpers shared by the behaviour tests: prove a database unchanged, recompute history stats,
build history records to import, wait for a condition, find the store's PostgreSQL sessions,
and write down figures for docs/reliability.md.

Import it like tests/workers.py (`from tests import helpers` under TYPE_CHECKING, else
`import helpers`): pytest puts tests/ on sys.path, mypy knows the module as tests.helpers.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import sqlite3
import threading
import time
import uuid
from collections.abc import Callable, Iterable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, NamedTuple

import pytest
from sqlalchemy import Select, create_engine, inspect, literal_column, select, table, text
from sqlalchemy.engine import URL, Engine, make_url
from sqlalchemy.pool import NullPool

from vibecc.state_store import (
    Change,
    DurationPercentiles,
    HistoryStats,
    ImportResult,
    Pipeline,
    PipelineHistory,
    PipelineState,
    Project,
    StateStore,
    Transition,
)
from vibecc.state_store.models import metadata
from vibecc.state_store.queries import buckets

T0 = datetime(2025, 1, 2, 3, 4, 5, 123456, tzinfo=UTC)
"""A fixed instant to build history around (microseconds on purpose)."""
WAIT = 30.0
"""Seconds to wait for a condition (a helper process ready, a backend blocked or gone) before failing."""
STORE_APP = "vibecc-state-store"
"""The application_name of every PostgreSQL session the store opens."""
TABLES = tuple(table.name for table in metadata.sorted_tables)
"""Every table of the store."""


def until(
    condition: Callable[[], object], what: str, *, timeout: float = WAIT, interval: float = 0.02
) -> None:
    """Poll `condition()` until it is true; fail the test after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"gave up waiting for {what}")
        time.sleep(interval)


def ended_by_close(store: StateStore, call: Callable[[], object]) -> list[object]:
    """What `call`, a wait started on another thread, returned once the store was closed
    0.2 s later (empty if it raised); fails the test if the wait outlives close()."""
    result: list[object] = []
    waiter = threading.Thread(target=lambda: result.append(call()))
    waiter.start()
    time.sleep(0.2)
    store.close()
    waiter.join(30)
    if waiter.is_alive():
        pytest.fail("the wait outlived close()")
    return result


def write_during_pauses(store: StateStore, project_id: str, monkeypatch: pytest.MonkeyPatch) -> list[float]:
    """From now on each pause of `store` (a linger) first creates a pipeline of `project_id`,
    so a write commits during the linger; returns the list of the pauses' seconds as they
    come (0 for a call without a linger, which writes nothing)."""
    pauses: list[float] = []
    pause = store.database.pause

    def write_meanwhile(seconds: float) -> None:
        pauses.append(seconds)
        if seconds:
            store.create_pipeline(project_id, len(pauses), "t", "b")
        pause(seconds)

    monkeypatch.setattr(store.database, "pause", write_meanwhile)
    return pauses


class Snapshot(NamedTuple):
    """Row counts per table and one checksum over every row of every table."""

    counts: dict[str, int]
    checksum: str


def database_url(location: str | Path) -> URL:
    """The SQLAlchemy URL of a store location as the fixtures hand it out (path or URL)."""
    raw = str(location)
    if "://" in raw:
        return make_url(raw)
    return URL.create("sqlite+pysqlite", database=str(Path(raw).absolute()))


def snapshot(store_url: str | Path) -> Snapshot:
    """Counts and a checksum of all rows in all tables (alembic_version included).

    Values are read raw (untyped "*"), so the checksum sees what the engine stores, not
    what the library makes of it; rows are sorted, so engine row order does not matter.
    Two equal snapshots of one database mean its data did not change.
    """
    engine = create_engine(database_url(store_url), poolclass=NullPool)
    counts: dict[str, int] = {}
    digest = hashlib.sha256()
    try:
        with engine.connect() as conn:
            for name in sorted(inspect(conn).get_table_names()):
                everything: Select[Any] = select(literal_column("*")).select_from(table(name))
                lines = sorted(repr(tuple(row)) for row in conn.execute(everything))
                counts[name] = len(lines)
                digest.update(f"[{name}]\n".encode())
                for line in lines:
                    digest.update(line.encode("utf-8", "backslashreplace") + b"\n")
    finally:
        engine.dispose()
    return Snapshot(counts, digest.hexdigest())


def kept_percentiles_of(records: Iterable[PipelineHistory]) -> DurationPercentiles:
    """The duration percentiles the kept histogram must give for these rows: the exact
    nearest-rank duration, read as the value of its bucket (the bucket order is the value
    order, so the ranks fall in the same bucket)."""
    durations = sorted(r.duration_seconds for r in records)
    if not durations:
        return DurationPercentiles(None, None)

    def at(percent: int) -> float:
        exact = durations[max(1, math.ceil(percent / 100 * len(durations))) - 1]
        return buckets.whole_seconds(buckets.bucket(exact * 1000))

    return DurationPercentiles(at(50), at(95))


class Replayed(NamedTuple):
    """What the change log says is live: projects, active pipelines with their versions, and
    history record ids."""

    projects: set[str]
    pipelines: dict[str, int]
    history: set[str]


def every_change(store: StateStore, cursor: int = 0, *, limit: int = 500) -> list[Change]:
    """Every change after `cursor`, read page by page (of `limit`) as a follower would."""
    found: list[Change] = []
    while True:
        page = store.changes_since(cursor, limit=limit)
        found += page.changes
        if page.next_cursor == cursor:
            return found
        cursor = page.next_cursor


def replay(changes: Iterable[Change]) -> Replayed:
    """The live ids (and pipeline versions) that applying the changes in order gives."""
    live = Replayed(set(), {}, set())
    for change in changes:
        key = change.entity_id
        if change.kind == "project":
            (live.projects.discard if change.op == "deleted" else live.projects.add)(key)
        elif change.kind == "pipeline":
            if change.op in ("archived", "deleted"):
                del live.pipelines[key]
            else:
                assert change.version is not None, change
                live.pipelines[key] = change.version
        elif change.op == "pruned":
            live.history.remove(key)
        else:
            live.history.add(key)
    return live


def stats_of(records: Iterable[PipelineHistory]) -> HistoryStats:
    """HistoryStats recomputed from history rows, the way the contract defines them."""
    kept = list(records)
    if not kept:
        return HistoryStats(0, 0, 0, 0.0, 0.0, 0.0)
    count = len(kept)
    return HistoryStats(
        total_completed=count,
        total_merged=sum(r.final_state == PipelineState.MERGED for r in kept),
        total_failed=sum(r.final_state == PipelineState.FAILED for r in kept),
        avg_duration_seconds=sum(r.duration_seconds for r in kept) / count,
        avg_retries_ci=sum(r.total_retries_ci for r in kept) / count,
        avg_retries_review=sum(r.total_retries_review for r in kept) / count,
    )


def history_record(
    *,
    project_id: str,
    completed_at: datetime = T0,
    duration_seconds: int = 60,
    final_state: PipelineState = PipelineState.MERGED,
    record_id: str | None = None,
    ticket_id: str = "1",
    retries_ci: int = 0,
    retries_review: int = 0,
) -> PipelineHistory:
    """A valid history record, e.g. for import_history (a new uuid unless `record_id` is given)."""
    return PipelineHistory(
        id=record_id or str(uuid.uuid4()),
        project_id=project_id,
        ticket_id=ticket_id,
        ticket_title=f"ticket {ticket_id}",
        final_state=final_state,
        branch_name=f"vibecc/{ticket_id}",
        pr_id=None,
        pr_url=None,
        total_retries_ci=retries_ci,
        total_retries_review=retries_review,
        started_at=completed_at - timedelta(seconds=duration_seconds),
        completed_at=completed_at,
        duration_seconds=duration_seconds,
    )


def timeline_of(
    record: PipelineHistory, *between: PipelineState, feedback: str | None = None
) -> tuple[Transition, ...]:
    """A timeline for a history record: QUEUED at its start, then each state of `between`
    (CODING and TESTING unless given) and its final state, evenly spaced up to its completion;
    the last transition carries `feedback`."""
    states = [PipelineState.QUEUED, *(between or (PipelineState.CODING, PipelineState.TESTING))]
    states.append(PipelineState(record.final_state))
    step = (record.completed_at - record.started_at) / len(states)
    return tuple(
        Transition(
            pipeline_id=record.id,
            seq=n + 1,
            from_state=states[n - 1] if n else None,
            to_state=state,
            at=record.started_at + step * n,
            retry_count_ci=min(n, record.total_retries_ci),
            retry_count_review=0,
            feedback=feedback if n == len(states) - 1 else None,
            reconstructed=False,
            seconds_in_state=None,
        )
        for n, state in enumerate(states)
    )


def is_utc(value: datetime) -> bool:
    """True for a timezone-aware datetime at offset zero."""
    return value.tzinfo is not None and value.utcoffset() == timedelta(0)


def truncate_tables(engine: Engine) -> None:
    """Empty every table of a PostgreSQL store (its schema and alembic_version stay), and
    start the change log's counter again, as in a new store."""
    with engine.begin() as conn:
        conn.execute(text(f"TRUNCATE {', '.join(t for t in TABLES if t != 'change_counter')}"))
        conn.execute(text("UPDATE change_counter SET last_seq = 0, pruned_through = 0"))


def newest_first(records: Iterable[PipelineHistory]) -> list[PipelineHistory]:
    """History rows in get_history order: newest completed_at first, ties by id descending."""
    return sorted(records, key=lambda r: (r.completed_at, r.id), reverse=True)


def all_history(store: StateStore) -> list[PipelineHistory]:
    """Every history row of `store`, oldest first (iter_history order)."""
    return list(store.iter_history())


def finished(
    store: StateStore, project: Project, ticket: int, state: str = "merged", **changes: Any
) -> Pipeline:
    """A new pipeline of `project` for `ticket`, moved to `state` (and the other `changes`)."""
    pipeline = store.create_pipeline(project.id, ticket, f"ticket {ticket}", f"vibecc/{ticket}")
    return store.update_pipeline(pipeline.id, state=state, **changes)


def import_at(
    store: StateStore,
    project_id: str,
    offsets: list[int],
    *,
    final_state: PipelineState = PipelineState.MERGED,
    retries_ci: int = 0,
) -> list[PipelineHistory]:
    """Import one record completed at T0 + each offset (seconds); return them."""
    records = [
        history_record(
            project_id=project_id,
            completed_at=T0 + timedelta(seconds=s),
            final_state=final_state,
            retries_ci=retries_ci,
        )
        for s in offsets
    ]
    assert store.import_history(records) == ImportResult(len(records), 0)
    return records


def record_figure(name: str, value: int | str, engine: str = "") -> None:
    """Append a measured figure for docs/reliability.md (see bench/reliability_figures.py) when
    VIBECC_RELIABILITY_FIGURES names a file; name "fault" with a description notes a fault the
    store came through."""
    target = os.environ.get("VIBECC_RELIABILITY_FIGURES")
    if target:
        with open(target, "a", encoding="utf-8") as out:
            out.write(json.dumps({"figure": name, "engine": engine, "value": value}) + "\n")


# -- the store's sessions on a PostgreSQL server ------------------------------------------------


def where(url: str | URL) -> str:
    """How a StorageError names the PostgreSQL database of `url`: name, host and port, no password."""
    parsed = make_url(url)
    port = f":{parsed.port}" if parsed.port else ""
    return f"PostgreSQL database {parsed.database!r} on {parsed.host}{port}"


def _on_admin_database(url: str | URL, query: str, params: dict[str, Any]) -> list[Any]:
    """The first column of `query` run on the server of `url`, from its "postgres" database."""
    admin = create_engine(make_url(url).set(database="postgres"), poolclass=NullPool)
    try:
        with admin.connect() as conn:
            return list(conn.execute(text(query), params).scalars())
    finally:
        admin.dispose()


def store_backends(url: str | URL, *, waiting_on_lock: bool = False) -> list[int]:
    """Process ids of the store's sessions (by application name) on the PostgreSQL database of
    `url`; with `waiting_on_lock`, only those waiting on a lock."""
    query = "SELECT pid FROM pg_stat_activity WHERE datname = :db AND application_name = :app"
    if waiting_on_lock:
        query += " AND wait_event_type = 'Lock'"
    return _on_admin_database(url, query, {"db": make_url(url).database, "app": STORE_APP})


def terminate_backends(url: str | URL, pids: list[int]) -> None:
    """pg_terminate_backend each of `pids` on the server of `url`, and wait until they are gone
    (it only signals; a backend exits a moment later)."""
    for pid in pids:
        _on_admin_database(url, "SELECT pg_terminate_backend(:pid)", {"pid": pid})

    def gone() -> bool:
        alive = "SELECT pid FROM pg_stat_activity WHERE pid = ANY(:pids)"
        return not _on_admin_database(url, alive, {"pids": pids})

    until(gone, f"backends {pids} to exit")


# -- fault tests: a store with some of everything, and what a caller sees of it -----------------


def fill(store: StateStore) -> None:
    """A project "faults" with active, finished and archived pipelines."""
    project = store.create_project("faults", "acme/faults")
    for n in range(6):
        pipeline = store.create_pipeline(project.id, n, f"ticket {n}", "main", "body " * 50)
        if n % 3 == 0:
            store.update_pipeline(pipeline.id, state=PipelineState.MERGED, retry_count_ci=n)
            store.archive_pipeline(pipeline.id)


def contents(store: StateStore) -> tuple[Any, ...]:
    """Everything a caller can see, to compare before and after a fault."""
    return (
        store.list_projects(),
        store.list_pipelines(),
        store.get_history(limit=10_000),
        store.get_history_stats(),
    )


def integrity(path: Path) -> str:
    """What SQLite's PRAGMA integrity_check says of the file at `path` ("ok" when sound)."""
    conn = sqlite3.connect(path)
    try:
        return "; ".join(str(row[0]) for row in conn.execute("PRAGMA integrity_check"))
    finally:
        conn.close()


def filled_file(path: Path) -> tuple[Any, ...]:
    """Make a SQLite store at `path`, fill() it and close it; return its contents()."""
    with StateStore(path) as store:
        fill(store)
        return contents(store)
