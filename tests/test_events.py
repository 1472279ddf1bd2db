"""Every statement the store runs goes through SQLAlchemy's execution: engine events, echo
logging and instrumentation see all of them, and SQLAlchemy begins, commits and rolls back.

On SQLite the driver's own trace callback (sqlite3.Connection.set_trace_callback) lists what
really reached the database, so the events are checked against it: nothing runs unseen.
"""

from __future__ import annotations

import logging
import sqlite3
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
import pytest
from sqlalchemy import Connection, Engine, event, update

from vibecc.state_store import (
    CLEAR,
    HistoryCursor,
    PipelineHistory,
    PipelineState,
    ProjectExistsError,
    StateStore,
    copy_store,
)
from vibecc.state_store.models import projects
from vibecc.state_store.queries import changes as store_queries


class Seen:
    """What one engine did: statements seen by each event, and commits and rollbacks."""

    def __init__(self) -> None:
        self.before: list[str] = []
        self.after: list[str] = []
        self.traced: list[str] = []
        self.commits = 0
        self.rollbacks = 0

    def clear(self) -> None:
        # In place: the trace callbacks hold the list's append.
        for seen in (self.before, self.after, self.traced):
            seen.clear()
        self.commits = self.rollbacks = 0


@contextmanager
def watching(engine: Engine, *, trace: bool = True) -> Iterator[Seen]:
    seen = Seen()

    def before(conn: Any, cursor: Any, statement: str, parameters: Any, context: Any, many: bool) -> None:
        # The driver runs (and traces) an executemany once per parameter set.
        seen.before.extend([statement] * (len(parameters) if many else 1))

    def after(conn: Any, cursor: Any, statement: str, parameters: Any, context: Any, many: bool) -> None:
        seen.after.extend([statement] * (len(parameters) if many else 1))

    def commit(conn: Any) -> None:
        seen.commits += 1

    def rollback(conn: Any) -> None:
        seen.rollbacks += 1

    def traced(dbapi_conn: Any, _record: Any) -> None:
        # A connection the pool makes from now on reports every statement SQLite runs.
        dbapi_conn.set_trace_callback(seen.traced.append)

    listeners: list[tuple[str, Callable[..., Any]]] = [
        ("before_cursor_execute", before),
        ("after_cursor_execute", after),
        ("commit", commit),
        ("rollback", rollback),
    ]
    if trace and engine.dialect.name == "sqlite":
        listeners.append(("connect", traced))
        engine.dispose()  # so every connection of the calls below is a traced one
    for name, fn in listeners:
        event.listen(engine, name, fn)
    try:
        yield seen
    finally:
        for name, fn in listeners:
            event.remove(engine, name, fn)


def _every_public_call(store: StateStore) -> dict[str, Callable[[], object]]:
    """One call of each public method, in an order in which each one succeeds."""
    state: dict[str, Any] = {}
    stamp = datetime.now(UTC)

    def make_project() -> None:
        state["project"] = store.create_project("Events", "acme/events")

    def make_pipeline() -> None:
        state["pipeline"] = store.create_pipeline(state["project"].id, 1, "t", "b")

    def finish() -> None:
        state["pipeline"] = store.update_pipeline(state["pipeline"].id, state=PipelineState.MERGED)

    def second() -> None:
        state["second"] = store.create_pipeline(state["project"].id, 2, "t", "b")

    imported = PipelineHistory(
        id="imported-1",
        project_id="gone-project",
        ticket_id="9",
        ticket_title="old",
        final_state=PipelineState.FAILED,
        branch_name="b",
        pr_id=None,
        pr_url=None,
        total_retries_ci=0,
        total_retries_review=0,
        started_at=stamp - timedelta(days=400),
        completed_at=stamp - timedelta(days=399),
        duration_seconds=86400,
    )
    return {
        "create_project": make_project,
        "get_project": lambda: store.get_project(state["project"].id),
        "get_project_by_repo": lambda: store.get_project_by_repo("acme/events"),
        "list_projects": store.list_projects,
        "update_project": lambda: store.update_project(state["project"].id, github_project_id=CLEAR),
        "create_pipeline": make_pipeline,
        "get_pipeline": lambda: store.get_pipeline(state["pipeline"].id),
        "get_pipeline_by_ticket": lambda: store.get_pipeline_by_ticket(state["project"].id, 1),
        "list_pipelines": lambda: store.list_pipelines(state["project"].id, PipelineState.QUEUED),
        "count_pipelines": lambda: store.count_pipelines(state["project"].id),
        "update_pipeline": finish,
        "save_to_history": lambda: store.save_to_history(state["pipeline"]),
        "archive_pipeline": lambda: store.archive_pipeline(state["pipeline"].id),
        "create_pipeline (second)": second,
        "claim_pipeline": lambda: store.claim_pipeline(project_id=state["project"].id),
        "delete_pipeline": lambda: store.delete_pipeline(state["second"].id),
        "get_history": lambda: store.get_history(state["project"].id, before=HistoryCursor(stamp, "z")),
        "get_history_page": lambda: store.get_history_page(limit=1),
        "get_history_record": lambda: store.get_history_record(state["pipeline"].id),
        "get_history_stats": store.get_history_stats,
        "get_history_stats (window)": lambda: store.get_history_stats(since=stamp - timedelta(days=1)),
        "get_duration_percentiles": store.get_duration_percentiles,
        "count_history": store.count_history,
        "iter_history": lambda: list(store.iter_history(batch_size=1)),
        "import_history": lambda: store.import_history([imported]),
        "prune_history": lambda: store.prune_history(before=stamp - timedelta(days=30)),
        "delete_project": lambda: store.delete_project(state["project"].id),
        "list_deleted_projects": store.list_deleted_projects,
    }


def test_every_call_runs_its_statements_through_the_engine_events(store: StateStore) -> None:
    engine = store.database.engine
    with watching(engine) as seen:
        for name, call in _every_public_call(store).items():
            seen.clear()
            call()
            assert seen.before, f"{name} ran no statement the engine events saw"
            assert seen.after == seen.before, name
            if store.dialect == "sqlite":
                # What SQLite ran, less what the driver sends itself on commit() and
                # rollback() (SQLAlchemy's commit and rollback events count those).
                ran = [
                    s for s in seen.traced if s not in ("COMMIT", "ROLLBACK") and not s.startswith("PRAGMA")
                ]
                assert len(ran) == len(seen.before), (name, ran, seen.before)


def test_write_calls_begin_through_sqlalchemy_and_commit_once(store: StateStore) -> None:
    """SQLite: the begin event sends BEGIN IMMEDIATE first. PostgreSQL: the driver begins on
    its own, so no BEGIN is executed. Either way SQLAlchemy commits, once."""
    with watching(store.database.engine) as seen:
        store.create_project("Events", "acme/events")
    if store.dialect == "sqlite":
        assert seen.before[0] == "BEGIN IMMEDIATE"
    else:
        assert not [s for s in seen.before if s.upper().startswith("BEGIN")]
    # The project, then its change: the counter moved and the change inserted, last.
    assert [s.split(" (")[0].split(" SET ")[0] for s in seen.before[-3:]] == [
        "INSERT INTO projects",
        "UPDATE change_counter",
        "INSERT INTO changes",
    ]
    assert seen.commits == 1
    assert seen.rollbacks == 0


def test_a_failed_call_is_rolled_back_through_sqlalchemy(store: StateStore) -> None:
    store.create_project("Events", "acme/events")
    with watching(store.database.engine) as seen, pytest.raises(ProjectExistsError):
        store.create_project("Again", "ACME/events")
    assert seen.rollbacks == 1
    assert seen.commits == 0


def test_echo_logging_shows_the_store_statements(store: StateStore, caplog: pytest.LogCaptureFixture) -> None:
    project = store.create_project("Events", "acme/events")
    with caplog.at_level(logging.INFO, logger="sqlalchemy.engine.Engine"):
        store.get_project(project.id)
    logged = " ".join(record.getMessage() for record in caplog.records)
    assert "FROM projects" in logged


def test_copy_runs_through_the_engine_events_on_both_sides(store: StateStore) -> None:
    store.create_project("Events", "acme/events")
    with StateStore(":memory:") as target, watching(target.database.engine, trace=False) as seen:
        copy_store(store, target)
    assert any(s.startswith("INSERT INTO projects") for s in seen.before)
    assert seen.commits == 1


def _in_transaction(conn: Connection) -> bool:
    """Whether the driver connection under `conn` is inside a transaction right now."""
    raw = conn.connection.driver_connection
    if isinstance(raw, sqlite3.Connection):
        return raw.in_transaction
    assert isinstance(raw, psycopg.Connection)
    return raw.info.transaction_status != psycopg.pq.TransactionStatus.IDLE


def test_a_read_opens_no_transaction_and_the_writes_after_it_on_its_connection_do(
    store: StateStore,
) -> None:
    """A read that needs no snapshot is one statement per transaction anyway: it runs without
    BEGIN and COMMIT (PostgreSQL: autocommit, one round trip). The connection goes back to the
    pool in its usual mode, so a write on it later is one transaction, and a snapshot read
    one too."""
    project = store.create_project("Events", "acme/events")
    db = store.database

    def read(conn: Connection) -> tuple[int, bool]:
        store_queries.head(conn)
        return id(conn.connection.driver_connection), _in_transaction(conn)

    def written(conn: Connection) -> tuple[int, bool]:
        conn.execute(update(projects).where(projects.c.id == project.id).values(name="Events"))
        return id(conn.connection.driver_connection), _in_transaction(conn)

    read_on: set[int] = set()
    both = 0
    for _ in range(3 * db.dialect.options.pool_size):
        raw, open_transaction = db.read(read)
        assert not open_transaction
        read_on.add(raw)
        raw, open_transaction = db.write(written)
        assert open_transaction
        both += raw in read_on
        assert db.read(lambda conn: (store_queries.head(conn), _in_transaction(conn))[1], snapshot=True)
    assert both, "no write ran on a connection a read had used"
