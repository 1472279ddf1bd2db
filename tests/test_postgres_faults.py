"""PostgreSQL going away, refusing us, or making us wait: callers only ever see StorageError, and
the same StateStore works again once the server does. A backend killed or timed out in the middle
of a multi-statement write (archive_pipeline, delete_project) leaves nothing of it. Also the pool
settings, on both engines."""

from __future__ import annotations

import logging
import os
import re
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from typing import TYPE_CHECKING

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.pool import NullPool, QueuePool

from vibecc.state_store import HistoryNotFoundError, PipelineState, StateStore, StorageError

if TYPE_CHECKING:
    from tests import helpers, pg_private
    from tests.conftest import PostgresServer
else:
    import helpers
    import pg_private

PASSWORD = "s3cr3t-XYZ"
"""The password of the private server the outage test stops and starts."""


def _assert_password_hidden(error: StorageError) -> None:
    """The driver's error is chained, and no link of the chain shows the password."""
    chain: list[BaseException] = []
    exc: BaseException | None = error
    while exc is not None and exc not in chain:
        chain.append(exc)
        exc = exc.__cause__ or exc.__context__
    assert len(chain) > 1, "the driver's error is not chained"
    for link in chain:
        assert PASSWORD not in str(link), type(link)
        assert PASSWORD not in repr(link), type(link)


@pytest.fixture
def pg_url(pg_server: PostgresServer) -> str:
    """A new, empty database on the test server."""
    return pg_server.create_database()


# -- backends terminated ---------------------------------------------------------------------


def test_terminated_idle_connections_are_replaced_on_the_same_store(pg_url: str) -> None:
    with StateStore(pg_url) as store:
        project = store.create_project("Faults", "acme/faults")
        # Several threads at once, so the pool holds more than one connection to lose.
        with ThreadPoolExecutor(max_workers=4) as pool:
            created = list(
                pool.map(lambda n: store.create_pipeline(project.id, f"T-{n}", "Job", f"job-{n}"), range(8))
            )
        backends = helpers.store_backends(pg_url)
        assert backends, "the store holds no pooled connection to terminate"
        helpers.terminate_backends(pg_url, backends)

        # Each call whose pooled connection is dead fails at its first statement and runs
        # again, once, on a fresh connection.
        with ThreadPoolExecutor(max_workers=4) as pool:
            seen = list(pool.map(lambda p: store.get_pipeline(p.id), created))
        assert seen == created
        updated = store.update_pipeline(created[0].id, state=PipelineState.CODING, expected_version=1)
        assert updated.version == 2
        assert not set(backends) & set(helpers.store_backends(pg_url))


def test_connection_terminated_mid_call_raises_storage_error(pg_url: str) -> None:
    """A call whose connection is lost after its first statement ran is not run again (its
    transaction may have done work): StorageError, and nothing of it is kept."""
    url = pg_url
    with StateStore(url) as store:
        project = store.create_project("Faults", "acme/faults")
        pipeline = store.create_pipeline(project.id, "T-1", "Job", "job-1")
        pipeline = store.update_pipeline(pipeline.id, state=PipelineState.MERGED)
        holder = create_engine(url, pool_size=1)
        try:
            with holder.connect() as conn, ThreadPoolExecutor(max_workers=1) as pool, conn.begin():
                conn.execute(text("SELECT id FROM pipelines FOR UPDATE"))
                # delete_project locks the project row (its first statement), then waits on the
                # held pipeline row in its second.
                call = pool.submit(store.delete_project, project.id)
                helpers.until(
                    lambda: helpers.store_backends(url, waiting_on_lock=True),
                    "the store's delete to wait on the lock",
                )
                helpers.terminate_backends(url, helpers.store_backends(url))
                with pytest.raises(StorageError, match=rf"{re.escape(helpers.where(url))}.*terminat"):
                    call.result(timeout=helpers.WAIT)
        finally:
            holder.dispose()
        assert store.get_pipeline(pipeline.id) == pipeline
        assert store.get_project(project.id) == project
        assert store.update_pipeline(pipeline.id, feedback="kept").version == pipeline.version + 1


# -- server stopped and started ---------------------------------------------------------------


@pytest.fixture
def private_server() -> Iterator[pg_private.PrivatePostgres]:
    """A PostgreSQL server of this test's own, to stop and start; removed whatever happens.
    The shared test server is never stopped."""
    try:
        server = pg_private.PrivatePostgres(PASSWORD)
    except pg_private.PrivatePostgresUnavailable as exc:
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(f"CI=true and no private PostgreSQL server can run here: {exc}")
        pytest.skip(f"no private PostgreSQL server can run here: {exc}")
    try:
        server.start()
        yield server
    finally:
        server.remove()


@pytest.mark.pg_only  # counted with the PostgreSQL tests, though it brings its own server
def test_server_outage_raises_storage_error_and_the_same_store_recovers(
    private_server: pg_private.PrivatePostgres, caplog: pytest.LogCaptureFixture
) -> None:
    admin = create_engine(private_server.url, isolation_level="AUTOCOMMIT", poolclass=NullPool)
    with admin.connect() as conn:
        conn.execute(text('CREATE DATABASE "vibecc_outage"'))
    admin.dispose()
    url = private_server.url.set(database="vibecc_outage")
    where = re.escape(helpers.where(url))
    caplog.set_level(logging.DEBUG)
    with StateStore(url.render_as_string(hide_password=False), connect_timeout=2) as store:
        project = store.create_project("Outage", "acme/outage")
        pipeline = store.create_pipeline(project.id, "T-1", "Job", "job-1")

        private_server.stop()
        assert not private_server.accepting(), "the server still accepts connections"
        try:
            with pytest.raises(StorageError, match=where) as read:
                store.get_pipeline(pipeline.id)
            with pytest.raises(StorageError, match=where) as update:
                store.update_pipeline(pipeline.id, state=PipelineState.CODING)
            with pytest.raises(StorageError, match=where) as create:
                store.create_pipeline(project.id, "T-2", "Job", "job-2")
        finally:
            private_server.start()
        assert private_server.accepting()
        for raised in (read, update, create):
            _assert_password_hidden(raised.value)
        assert PASSWORD not in caplog.text

        assert store.get_pipeline(pipeline.id) == pipeline
        assert store.update_pipeline(pipeline.id, state=PipelineState.CODING).version == 2
        assert store.create_pipeline(project.id, "T-2", "Job", "job-2").version == 1
        assert len(store.list_pipelines()) == 2


# -- a backend killed or timed out in the middle of a multi-statement write ---------------


@contextmanager
def stats_row_locked(url: str, project_id: str) -> Iterator[None]:
    """Hold the project's history_stats row lock: every history write of the project waits on it
    after it has already deleted pipeline rows and inserted history rows."""
    holder = create_engine(url, isolation_level="AUTOCOMMIT", poolclass=NullPool)
    try:
        with holder.connect() as conn:
            conn.exec_driver_sql("BEGIN")
            locked = conn.execute(
                text("SELECT project_id FROM history_stats WHERE project_id = :p FOR UPDATE"),
                {"p": project_id},
            ).all()
            assert locked, "the project has no stats row to lock"
            try:
                yield
            finally:
                conn.exec_driver_sql("ROLLBACK")
    finally:
        holder.dispose()


def _in_thread(call: Callable[[], object]) -> tuple[threading.Thread, list[BaseException]]:
    failures: list[BaseException] = []

    def run() -> None:
        try:
            call()
        except BaseException as exc:
            failures.append(exc)

    thread = threading.Thread(target=run)
    thread.start()
    return thread, failures


def test_postgres_backend_killed_mid_archive_changes_nothing(pg_url: str) -> None:
    with StateStore(pg_url) as store:
        helpers.fill(store)
        project = store.list_projects()[0]
        victim = store.update_pipeline(store.list_pipelines()[0].id, state=PipelineState.FAILED)
        before = helpers.contents(store)
        with stats_row_locked(pg_url, project.id):
            thread, failures = _in_thread(lambda: store.archive_pipeline(victim.id))
            helpers.until(
                lambda: helpers.store_backends(pg_url, waiting_on_lock=True), "the archive to block"
            )
            helpers.terminate_backends(pg_url, helpers.store_backends(pg_url, waiting_on_lock=True))
            thread.join(helpers.WAIT)
        assert len(failures) == 1, failures
        assert type(failures[0]) is StorageError, failures
        assert "terminating connection" in str(failures[0])
        assert helpers.contents(store) == before, "a half-done archive became visible"
        with pytest.raises(HistoryNotFoundError):
            store.get_history_record(victim.id)
        # The server goes on killing the store's idle connections between calls; the pool replaces them.
        helpers.terminate_backends(pg_url, helpers.store_backends(pg_url))
        archived = store.archive_pipeline(victim.id)
        assert (archived.id, archived.final_state) == (victim.id, PipelineState.FAILED)
        assert store.get_history_stats().total_completed == before[3].total_completed + 1
    helpers.record_figure("fault", "PostgreSQL backend terminated in the middle of archive_pipeline")


def test_postgres_statement_timeout_mid_delete_project_changes_nothing(pg_url: str) -> None:
    with StateStore(pg_url, statement_timeout=0.5) as store:
        helpers.fill(store)
        project = store.list_projects()[0]
        for pipeline in store.list_pipelines():
            store.update_pipeline(pipeline.id, state=PipelineState.MERGED)
        before = helpers.contents(store)
        with stats_row_locked(pg_url, project.id), pytest.raises(StorageError, match="statement timeout"):
            store.delete_project(project.id)
        assert helpers.contents(store) == before, "a half-done delete_project became visible"
        store.delete_project(project.id)
        assert store.list_projects() == []
        assert store.get_history_stats().total_completed == before[3].total_completed + len(before[1])
    helpers.record_figure("fault", "PostgreSQL statement_timeout in the middle of delete_project")


# -- statement timeout and pool ----------------------------------------------------------------


def test_statement_timeout_turns_a_lock_wait_into_storage_error(pg_url: str) -> None:
    url = pg_url
    with StateStore(url, statement_timeout=0.5) as store:
        project = store.create_project("Timeout", "acme/timeout")
        holder = create_engine(url, pool_size=1)
        try:
            with holder.connect() as conn, conn.begin():
                # Should the store wait without a limit, the server ends this lock after 10 s.
                conn.execute(text("SET LOCAL idle_in_transaction_session_timeout = '10s'"))
                conn.execute(text("LOCK TABLE pipelines IN ACCESS EXCLUSIVE MODE"))
                with pytest.raises(StorageError, match="statement timeout"):
                    store.create_pipeline(project.id, "T-1", "Job", "job-1")
                with pytest.raises(StorageError, match="statement timeout"):
                    store.list_pipelines()
        finally:
            holder.dispose()
        created = store.create_pipeline(project.id, "T-1", "Job", "job-1")
        assert store.list_pipelines() == [created]


def test_pool_settings_are_honoured(store_url: str) -> None:
    with StateStore(store_url, pool_size=2, max_overflow=0, pool_timeout=1) as store:
        pool = store.database.engine.pool
        assert isinstance(pool, QueuePool)
        assert pool.size() == 2
        project = store.create_project("Pool", "acme/pool")
        with (
            store.database.engine.connect(),
            store.database.engine.connect(),
            pytest.raises(StorageError, match="QueuePool limit of size 2 overflow 0 reached"),
        ):
            store.get_project(project.id)

        def work(n: int) -> str:
            created = store.create_pipeline(project.id, f"T-{n}", "Job", f"job-{n}")
            assert store.get_pipeline(created.id) == created
            store.update_pipeline(created.id, state=PipelineState.CODING, expected_version=1)
            return created.ticket_id

        with ThreadPoolExecutor(max_workers=8) as threads:
            tickets = list(threads.map(work, range(40)))
        assert sorted(tickets) == sorted(f"T-{n}" for n in range(40))
        assert len(store.list_pipelines(state=PipelineState.CODING)) == 40
