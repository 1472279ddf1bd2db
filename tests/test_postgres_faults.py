"""PostgreSQL going away, refusing us, or making us wait: callers only ever see StorageError, and
the same StateStore works again once the server does. Also the pool settings, on both engines."""

from __future__ import annotations

import logging
import os
import re
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING

import pytest
from sqlalchemy import Engine, create_engine, text
from sqlalchemy.engine import URL, make_url
from sqlalchemy.pool import NullPool, QueuePool

from vibecc.state_store import PipelineState, StateStore, StorageError

if TYPE_CHECKING:
    from tests import pg_private
    from tests.conftest import PostgresServer
else:
    import pg_private

PASSWORD = "s3cr3t-XYZ"
STORE_APP = "vibecc-state-store"
WAIT = 30.0
"""Seconds to wait for the server to reach a state (up, down, a backend gone) before giving up."""


def _until(condition_met: Callable[[], bool], what: str) -> None:
    """Poll `condition_met()` until it is true; fail the test after WAIT seconds."""
    deadline = time.monotonic() + WAIT
    while not condition_met():
        if time.monotonic() > deadline:
            pytest.fail(f"gave up waiting for {what}")
        time.sleep(0.05)


def _database(url: str) -> str:
    name = make_url(url).database
    assert name is not None
    return name


def _where(url: str | URL) -> str:
    """How a StorageError names the database of `url`: name, host and port, no password."""
    parsed = make_url(url) if isinstance(url, str) else url
    port = f":{parsed.port}" if parsed.port else ""
    return f"PostgreSQL database {parsed.database!r} on {parsed.host}{port}"


def _store_backends(admin: Engine, database: str) -> list[int]:
    with admin.connect() as conn:
        found = conn.execute(
            text("SELECT pid FROM pg_stat_activity WHERE datname = :db AND application_name = :app"),
            {"db": database, "app": STORE_APP},
        )
        return list(found.scalars())


def _terminate(admin: Engine, pids: list[int]) -> None:
    with admin.connect() as conn:
        for pid in pids:
            conn.execute(text("SELECT pg_terminate_backend(:pid)"), {"pid": pid})

    def gone() -> bool:
        with admin.connect() as conn:
            alive = conn.execute(
                text("SELECT 1 FROM pg_stat_activity WHERE pid = ANY(:pids)"), {"pids": pids}
            )
            return alive.first() is None

    # pg_terminate_backend only signals; the backend exits a moment later.
    _until(gone, f"backends {pids} to exit")


def _waiting_on_lock(admin: Engine, database: str) -> bool:
    with admin.connect() as conn:
        waiting = conn.execute(
            text(
                "SELECT 1 FROM pg_stat_activity WHERE datname = :db "
                "AND application_name = :app AND wait_event_type = 'Lock'"
            ),
            {"db": database, "app": STORE_APP},
        )
        return waiting.first() is not None


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
def admin(pg_server: PostgresServer) -> Iterator[Engine]:
    """An autocommit superuser engine on the server's admin database."""
    engine = create_engine(pg_server.admin_url, isolation_level="AUTOCOMMIT")
    yield engine
    engine.dispose()


# -- backends terminated ---------------------------------------------------------------------


def test_terminated_idle_connections_are_replaced_on_the_same_store(
    pg_server: PostgresServer, admin: Engine
) -> None:
    url = pg_server.create_database()
    with StateStore(url) as store:
        project = store.create_project("Faults", "acme/faults")
        # Several threads at once, so the pool holds more than one connection to lose.
        with ThreadPoolExecutor(max_workers=4) as pool:
            created = list(
                pool.map(lambda n: store.create_pipeline(project.id, f"T-{n}", "Job", f"job-{n}"), range(8))
            )
        backends = _store_backends(admin, _database(url))
        assert backends, "the store holds no pooled connection to terminate"
        _terminate(admin, backends)

        # Each call whose pooled connection is dead fails at its first statement and runs
        # again, once, on a fresh connection.
        with ThreadPoolExecutor(max_workers=4) as pool:
            seen = list(pool.map(lambda p: store.get_pipeline(p.id), created))
        assert seen == created
        updated = store.update_pipeline(created[0].id, state=PipelineState.CODING, expected_version=1)
        assert updated.version == 2
        assert not set(backends) & set(_store_backends(admin, _database(url)))


def test_connection_terminated_mid_call_raises_storage_error(
    pg_server: PostgresServer, admin: Engine
) -> None:
    """A call whose connection is lost after its first statement ran is not run again (its
    transaction may have done work): StorageError, and nothing of it is kept."""
    url = pg_server.create_database()
    database = _database(url)
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
                _until(lambda: _waiting_on_lock(admin, database), "the store's delete to wait on the lock")
                _terminate(admin, _store_backends(admin, database))
                with pytest.raises(StorageError, match=rf"{re.escape(_where(url))}.*terminat"):
                    call.result(timeout=WAIT)
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
    where = re.escape(_where(url))
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


# -- refused at open -------------------------------------------------------------------------


def _unreachable(request: pytest.FixtureRequest, case: str) -> URL:
    if case == "connection refused":
        return URL.create(
            "postgresql+psycopg",
            username="vibecc_app",
            password=PASSWORD,
            host="127.0.0.1",
            port=1,
            database="vibecc_prod",
        )
    server: URL = request.getfixturevalue("pg_server").admin_url
    if case == "unknown role":
        return server.set(username="vibecc_no_such_role", password=PASSWORD)
    return server.set(password=PASSWORD, database="vibecc_no_such_database")


@pytest.mark.parametrize(
    "case",
    [
        "connection refused",
        pytest.param("unknown role", marks=pytest.mark.pg_only),
        pytest.param("unknown database", marks=pytest.mark.pg_only),
    ],
)
def test_open_failure_names_host_and_database_and_never_the_password(
    request: pytest.FixtureRequest, case: str, caplog: pytest.LogCaptureFixture
) -> None:
    url = _unreachable(request, case)
    caplog.set_level(logging.DEBUG)
    with pytest.raises(StorageError) as raised:
        StateStore(url.render_as_string(hide_password=False), connect_timeout=2)

    message = str(raised.value)
    assert _where(url) in message
    _assert_password_hidden(raised.value)
    assert PASSWORD not in caplog.text


# -- statement timeout and pool ----------------------------------------------------------------


def test_statement_timeout_turns_a_lock_wait_into_storage_error(pg_server: PostgresServer) -> None:
    url = pg_server.create_database()
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
