"""Schema revisions: one head, models == migrations, round trips with data, schemas behind or
ahead of the code, concurrent first opens, exact round trips, offline SQL and collations."""

from __future__ import annotations

import itertools
import multiprocessing
import queue
import sqlite3
import traceback
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
from sqlalchemy import create_engine, inspect, text
from sqlalchemy.pool import NullPool

from vibecc.state_store import (
    HistoryStats,
    Pipeline,
    PipelineHistory,
    PipelineState,
    Project,
    SchemaVersionError,
    StateStore,
    migrate,
)

if TYPE_CHECKING:
    from multiprocessing.queues import Queue
    from multiprocessing.synchronize import Barrier

    from tests import helpers
else:
    import helpers

TABLES = {"projects", "pipelines", "pipeline_history", "history_stats"}


def stored_revisions(location: str) -> list[str]:
    engine = create_engine(helpers.database_url(location), poolclass=NullPool)
    try:
        with engine.connect() as conn:
            return list(conn.execute(text("SELECT version_num FROM alembic_version")).scalars())
    finally:
        engine.dispose()


def populate(store: StateStore) -> None:
    """Projects, pipelines in every state (some written several times) and history."""
    acme = store.create_project("Acme", "acme/widgets", github_project_id=2**31 - 1, max_retries_ci=5)
    other = store.create_project("Other", "acme/other", base_branch="develop")
    for ticket, state in enumerate(PipelineState):
        pipeline = store.create_pipeline(
            acme.id, ticket, f"t{ticket}", f"vibecc/{ticket}", ticket_body="body"
        )
        store.update_pipeline(pipeline.id, state=state, pr_id=ticket + 1, feedback=f"fb {ticket}")
    for ticket in (10, 11):
        pipeline = store.create_pipeline(other.id, ticket, "done", "b")
        store.update_pipeline(pipeline.id, state="failed" if ticket % 2 else "merged", retry_count_ci=ticket)
        store.archive_pipeline(pipeline.id)
    store.import_history(
        [
            helpers.history_record(project_id=acme.id, duration_seconds=3600, retries_ci=2),
            helpers.history_record(project_id="gone-project", final_state=PipelineState.FAILED),
        ]
    )


def contents(store: StateStore) -> tuple[list[Project], list[Pipeline], list[PipelineHistory], HistoryStats]:
    return (
        store.list_projects(),
        store.list_pipelines(),
        list(store.iter_history()),
        store.get_history_stats(),
    )


# -- the revision scripts -------------------------------------------------------------------------


def test_one_head_and_it_is_migrate_head() -> None:
    assert migrate.script().get_heads() == [migrate.HEAD]
    # HEAD comes from Alembic; the newest script file, 0007, says the same on its own.
    newest = sorted((Path(migrate.__file__).parent / "migrations" / "versions").glob("[0-9]*.py"))[-1]
    assert newest.name.startswith("0007_")
    assert f'\nrevision = "{migrate.HEAD}"\n' in newest.read_text(encoding="utf-8")
    assert migrate.HEAD == migrate.head() == "0007"
    chain = migrate.revisions()
    assert chain[-1].revision == migrate.HEAD
    assert chain[0].down_revision is None
    assert all(later.down_revision == earlier.revision for earlier, later in itertools.pairwise(chain))
    assert all(r.message for r in chain)


def test_models_match_migrations_on_fresh_database(fresh_db: Callable[[], str]) -> None:
    with StateStore(fresh_db()) as store:
        assert migrate.check(store.database.engine) == []
        assert migrate.current(store.database.engine) == migrate.HEAD
        assert set(inspect(store.database.engine).get_table_names()) >= TABLES


def test_base_head_base_head_with_data(fresh_db: Callable[[], str]) -> None:
    location = fresh_db()
    with StateStore(location) as store:
        populate(store)
        projects, pipelines, history, stats = contents(store)

        migrate.downgrade(store.database.engine, "0001")

        assert migrate.current(store.database.engine) == "0001"
        assert "history_stats" not in inspect(store.database.engine).get_table_names()
        with store.database.engine.connect() as conn:
            states = set(conn.execute(text("SELECT state FROM pipelines")).scalars())
            finals = set(conn.execute(text("SELECT final_state FROM pipeline_history")).scalars())
        assert states == {s.name for s in PipelineState}
        assert finals == {"MERGED", "FAILED"}

        migrate.upgrade(store.database.engine)

        assert migrate.check(store.database.engine) == []
        assert store.list_projects() == projects
        # 0001 has no version column: the upgrade starts every pipeline again at version 1.
        assert store.list_pipelines() == [
            Pipeline(**{**{f: getattr(p, f) for f in p.__dataclass_fields__}, "version": 1})
            for p in pipelines
        ]
        assert list(store.iter_history()) == history
        assert store.get_history_stats() == stats == helpers.stats_of(history)
        assert store.get_history_stats("gone-project").total_failed == 1

        migrate.downgrade(store.database.engine, "base")

        assert migrate.current(store.database.engine) is None
        assert not TABLES & set(inspect(store.database.engine).get_table_names())

        migrate.upgrade(store.database.engine)

        assert migrate.check(store.database.engine) == []
        assert contents(store) == ([], [], [], HistoryStats(0, 0, 0, 0.0, 0.0, 0.0))
        populate(store)
        assert store.get_history_stats() == helpers.stats_of(store.iter_history())


# -- databases behind or ahead of the code --------------------------------------------------------


def test_older_schema_refused_without_auto_migrate(fresh_db: Callable[[], str]) -> None:
    location = fresh_db()
    with StateStore(location) as store:
        populate(store)
        projects, _, history, stats = contents(store)
        migrate.downgrade(store.database.engine, "0001")
    before = helpers.snapshot(location)

    with pytest.raises(
        SchemaVersionError, match=r"revision 0001, this code needs 0007.*vibecc-state db upgrade"
    ):
        StateStore(location, auto_migrate=False)

    assert helpers.snapshot(location) == before
    with StateStore(location) as store:
        assert migrate.current(store.database.engine) == migrate.HEAD
        assert store.list_projects() == projects
        assert list(store.iter_history()) == history
        assert store.get_history_stats() == stats
        assert len(store.list_pipelines()) == len(PipelineState)
    assert stored_revisions(location) == [migrate.HEAD]


@pytest.mark.parametrize("auto_migrate", [True, False])
def test_newer_schema_refused(fresh_db: Callable[[], str], auto_migrate: bool) -> None:
    location = fresh_db()
    with StateStore(location) as store:
        populate(store)
    engine = create_engine(helpers.database_url(location), poolclass=NullPool)
    with engine.begin() as conn:
        conn.execute(text("UPDATE alembic_version SET version_num = 'ffff9999'"))
    engine.dispose()
    before = helpers.snapshot(location)

    with pytest.raises(SchemaVersionError, match=r"ffff9999, newer than this code \(head 0007\)"):
        StateStore(location, auto_migrate=auto_migrate)

    assert helpers.snapshot(location) == before
    assert stored_revisions(location) == ["ffff9999"]


def test_database_without_schema_refused_without_auto_migrate(fresh_db: Callable[[], str]) -> None:
    location = fresh_db()

    with pytest.raises(SchemaVersionError, match="no state store schema"):
        StateStore(location, auto_migrate=False)

    assert not TABLES & set(helpers.snapshot(location).counts)


# -- first opens racing each other ------------------------------------------------------------------


def _open_when_released(location: str, barrier: Barrier, results: Queue[tuple[str, str]]) -> None:
    """Child process: wait for the others, open the store at the same instant, report back."""
    try:
        barrier.wait(timeout=60)
        with StateStore(location) as store:
            project = store.create_project("p", f"acme/{uuid.uuid4().hex}")
            results.put(("ok", project.id))
    except BaseException:
        results.put(("error", traceback.format_exc()))


def collect(children: list[Any], results: Any) -> list[tuple[str, str]]:
    """Each child's report; a child that dies without one fails the test at once."""
    outcomes: list[tuple[str, str]] = []
    try:
        while len(outcomes) < len(children):
            try:
                outcomes.append(results.get(timeout=1))
            except queue.Empty:
                if not any(child.is_alive() for child in children) and results.empty():
                    codes = [child.exitcode for child in children]
                    pytest.fail(f"children exited {codes} without reporting; got {outcomes}")
    finally:
        for child in children:
            child.join(timeout=60)
    return outcomes


def test_processes_opening_a_new_database_at_once(fresh_db: Callable[[], str]) -> None:
    location = fresh_db()
    processes = 2
    context = multiprocessing.get_context("spawn")
    barrier = context.Barrier(processes)
    results: Any = context.Queue()
    children = [
        context.Process(target=_open_when_released, args=(location, barrier, results))
        for _ in range(processes)
    ]
    for child in children:
        child.start()

    outcomes = collect(children, results)

    assert [kind for kind, _ in outcomes] == ["ok"] * processes, outcomes
    assert [child.exitcode for child in children] == [0] * processes
    assert stored_revisions(location) == [migrate.HEAD]
    with StateStore(location, auto_migrate=False) as store:
        assert migrate.check(store.database.engine) == []
        assert sorted(p.id for p in store.list_projects()) == sorted(detail for _, detail in outcomes)


def test_stamps_and_times_survive_round_trip_exactly(fresh_db: Callable[[], str]) -> None:
    location = fresh_db()
    with StateStore(location) as store:
        project = store.create_project("Acme", "acme/widgets")
        record = helpers.history_record(
            project_id=project.id, completed_at=datetime(2024, 2, 29, 23, 59, 59, 999999, tzinfo=UTC)
        )
        store.import_history([record])
        migrate.downgrade(store.database.engine, "0001")
        migrate.upgrade(store.database.engine)

        assert store.get_history_record(record.id) == record
        assert store.get_project(project.id) == project
        assert store.get_history(since=record.completed_at) == [record]
        assert store.get_history(until=record.completed_at + timedelta(microseconds=1)) == [record]


def test_offline_upgrade_sql_builds_the_same_schema_as_the_online_upgrade(
    engine_name: str, fresh_db: Callable[[], str]
) -> None:
    """`vibecc-state db sql` hands a DBA the whole upgrade; run by hand it must give the schema
    the models expect (SQLite renders its table rebuilds from the baseline tables)."""
    script = migrate.upgrade_sql(engine_name)
    location = fresh_db()
    if engine_name == "sqlite":
        Path(location).parent.mkdir(parents=True)
        with sqlite3.connect(location) as conn:
            conn.executescript(script)
        url = f"sqlite:///{location}"
    else:
        url = location
        engine = create_engine(url, poolclass=NullPool)
        with engine.begin() as conn:
            conn.exec_driver_sql(script)
        engine.dispose()
    engine = create_engine(url, poolclass=NullPool)
    try:
        assert migrate.current(engine) == migrate.HEAD
        assert migrate.check(engine) == []
    finally:
        engine.dispose()


def test_keys_and_names_compare_by_code_point_on_postgresql(pg_server: Any) -> None:
    """Alembic's comparison does not look at collations, so this checks them directly: every
    id, project id and project name is COLLATE "C" after the migrations."""
    url = pg_server.create_database()
    StateStore(url).close()
    engine = create_engine(url, poolclass=NullPool)
    try:
        with engine.connect() as conn:
            found = conn.execute(
                text(
                    "SELECT table_name, column_name FROM information_schema.columns "
                    "WHERE table_schema = 'public' AND collation_name = 'C' ORDER BY 1, 2"
                )
            ).all()
    finally:
        engine.dispose()
    assert [tuple(row) for row in found] == [
        ("changes", "entity_id"),
        ("changes", "project_id"),
        ("deleted_projects", "id"),
        ("duration_histogram", "project_id"),
        ("history_stats", "project_id"),
        ("pipeline_history", "id"),
        ("pipeline_history", "project_id"),
        ("pipeline_transitions", "pipeline_id"),
        ("pipeline_transitions", "project_id"),
        ("pipelines", "id"),
        ("pipelines", "project_id"),
        ("projects", "id"),
        ("projects", "name"),
        ("stage_histogram", "project_id"),
    ]
