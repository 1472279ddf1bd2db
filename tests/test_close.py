"""close() while other threads are mid-call: they finish or raise StorageError, and once close
returns no file handle or server session of the store is left open."""

from __future__ import annotations

import os
import threading
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.pool import NullPool

from vibecc.state_store import PipelineState, StateStore, StorageError

if TYPE_CHECKING:
    from tests import helpers
    from tests.conftest import PostgresServer
else:
    import helpers

WAIT = helpers.WAIT
THREADS = 6


def _open_sqlite_files(path: str) -> list[str]:
    """This process's open file descriptors on the database file and its -wal and -shm."""
    names = {os.path.realpath(path + suffix) for suffix in ("", "-wal", "-shm")}
    found = []
    for fd in os.listdir("/proc/self/fd"):
        try:
            target = os.readlink(f"/proc/self/fd/{fd}")
        except OSError:
            continue
        if target in names:
            found.append(target)
    return found


def _hammer(store: StateStore, project_id: str, stop: threading.Event, outcomes: list[Any]) -> None:
    """Create, update, archive and read until told to stop or the store is closed."""
    n = 0
    while not stop.is_set():
        n += 1
        try:
            pipeline = store.create_pipeline(project_id, f"{threading.get_ident()}-{n}", "t", "main")
            store.update_pipeline(pipeline.id, state=PipelineState.MERGED)
            store.archive_pipeline(pipeline.id)
            outcomes.append(len(store.list_projects()))
        except StorageError as exc:
            outcomes.append(exc)
            return
        except Exception as exc:  # anything else is a failure of the test
            outcomes.append(exc)
            return


def test_close_while_threads_are_mid_call_leaves_nothing_open(store_url: str, engine_name: str) -> None:
    store = StateStore(store_url, pool_size=THREADS)
    project = store.create_project("Close", "acme/close")
    stop = threading.Event()
    outcomes: list[list[Any]] = [[] for _ in range(THREADS)]
    threads = [
        threading.Thread(target=_hammer, args=(store, project.id, stop, outcomes[n])) for n in range(THREADS)
    ]
    for thread in threads:
        thread.start()
    helpers.until(lambda: all(len(o) >= 2 for o in outcomes), "every thread to be working")

    store.close()

    if engine_name == "sqlite":
        assert _open_sqlite_files(store_url) == [], "the closed store still holds the database files"
    else:
        helpers.until(lambda: not helpers.store_backends(store_url), "the store's server sessions to end")
    stop.set()
    for thread in threads:
        thread.join(WAIT)
        assert not thread.is_alive()
    for done in outcomes:
        assert all(o == 1 for o in done[:-1]), done
        last = done[-1]
        assert last == 1 or isinstance(last, StorageError), last
        assert not isinstance(last, StorageError) or "closed" in str(last), last
    with pytest.raises(StorageError, match="the store is closed"):
        store.list_projects()
    # Each finished round archived one pipeline; a round cut short by close() committed at most
    # its create, update or archive, never half of one.
    rounds = sum(o == 1 for done in outcomes for o in done)
    with StateStore(store_url) as again:
        assert rounds <= again.count_history() <= rounds + THREADS
        assert len(again.list_pipelines()) <= THREADS


def test_close_interrupts_a_call_that_waits_on_the_server(pg_server: PostgresServer) -> None:
    """A call blocked behind another session's row lock is cancelled, not waited for."""
    url = pg_server.create_database()
    store = StateStore(url)
    project = store.create_project("Close", "acme/close")
    pipeline = store.create_pipeline(project.id, 1, "t", "main")
    holder = create_engine(url, poolclass=NullPool)
    outcome: list[BaseException | None] = []
    try:
        with holder.connect() as conn:
            conn.execute(text("SELECT 1 FROM pipelines WHERE id = :id FOR UPDATE"), {"id": pipeline.id})

            def blocked() -> None:
                try:
                    store.update_pipeline(pipeline.id, feedback="never")
                    outcome.append(None)
                except BaseException as exc:
                    outcome.append(exc)

            thread = threading.Thread(target=blocked)
            thread.start()
            helpers.until(
                lambda: helpers.store_backends(url, waiting_on_lock=True),
                "the update to wait on the row lock",
            )
            store.close()
            thread.join(WAIT)
            conn.rollback()
    finally:
        holder.dispose()
    assert len(outcome) == 1
    assert isinstance(outcome[0], StorageError), outcome
    assert "closed during the call" in str(outcome[0])
    helpers.until(lambda: not helpers.store_backends(url), "the store's server sessions to end")
    with StateStore(url) as again:
        assert again.get_pipeline(pipeline.id).feedback is None, "the cancelled update was rolled back"


def test_a_closed_memory_store_never_answers_from_a_new_empty_database() -> None:
    store = StateStore(":memory:")
    store.create_project("Kept", "acme/kept")
    seen: list[Any] = []
    stop = threading.Event()

    def read() -> None:
        while not stop.is_set():
            try:
                seen.append(len(store.list_projects()))
            except StorageError as exc:
                seen.append(exc)
                return

    threads = [threading.Thread(target=read) for _ in range(4)]
    for thread in threads:
        thread.start()
    helpers.until(lambda: len(seen) > 20, "the readers to read")
    store.close()
    stop.set()
    for thread in threads:
        thread.join(WAIT)
    answers = [s for s in seen if not isinstance(s, StorageError)]
    assert answers
    assert set(answers) == {1}, "a call answered from an empty database"
    assert all("closed" in str(s) for s in seen if isinstance(s, StorageError))
    with pytest.raises(StorageError, match="the store is closed"):
        store.list_projects()


def test_close_twice_and_from_several_threads_is_harmless(tmp_path: Path) -> None:
    store = StateStore(tmp_path / "vibecc.db")
    store.create_project("P", "acme/p")
    closers = [threading.Thread(target=store.close) for _ in range(4)]
    for closer in closers:
        closer.start()
    for closer in closers:
        closer.join(WAIT)
    store.close()
    assert _open_sqlite_files(str(tmp_path / "vibecc.db")) == []


def test_a_second_close_returns_only_when_the_first_is_done(pg_server: PostgresServer) -> None:
    """Two threads closing one store: neither returns while a call is still holding a session."""
    url = pg_server.create_database()
    store = StateStore(url)
    project = store.create_project("Close", "acme/close")
    pipeline = store.create_pipeline(project.id, 1, "t", "main")
    holder = create_engine(url, poolclass=NullPool)
    with holder.connect() as conn:
        conn.execute(text("SELECT 1 FROM pipelines WHERE id = :id FOR UPDATE"), {"id": pipeline.id})
        worker = threading.Thread(target=lambda: _expect_storage_error(store, pipeline.id))
        worker.start()
        helpers.until(
            lambda: helpers.store_backends(url, waiting_on_lock=True), "the update to wait on the row lock"
        )
        first = threading.Thread(target=store.close)
        first.start()
        helpers.until(lambda: store.database.closed, "the first close to begin")
        store.close()  # the second: returns only once the first has closed everything
        assert not worker.is_alive(), "the second close returned while a call was still running"
        helpers.until(lambda: not helpers.store_backends(url), "the store's server sessions to end")
        first.join(WAIT)
        conn.rollback()
    holder.dispose()


def _expect_storage_error(store: StateStore, pipeline_id: str) -> None:
    with pytest.raises(StorageError, match="closed"):
        store.update_pipeline(pipeline_id, feedback="never")
