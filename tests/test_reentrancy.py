"""Calls made from inside a call (a progress callback), and close() against a call that is
between statements: refused or interrupted, and never half-committed."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

import pytest

from vibecc.state_store import StateStore, StorageError, copy_store

if TYPE_CHECKING:
    from tests import helpers
else:
    import helpers


def _fill(store: StateStore, records: int) -> None:
    project = store.create_project("Source", "acme/source")
    store.import_history([helpers.history_record(project_id=project.id) for _ in range(records)])


def _empty(location: str) -> bool:
    with StateStore(location) as target:
        return not (target.list_projects() or target.count_history() or target.list_pipelines())


def test_close_stops_a_call_between_statements_and_nothing_is_committed(
    store: StateStore, fresh_db: Callable[[], str]
) -> None:
    """copy_store's progress callback is slow, so the copy spends its time between statements,
    where interrupting the running statement does nothing: close() still ends it."""
    _fill(store, 40)
    location = fresh_db()
    target = StateStore(location)
    batches: list[int] = []
    outcome: list[BaseException] = []

    def slow(_table: str, rows: int) -> None:
        batches.append(rows)
        time.sleep(0.2)

    def copy() -> None:
        try:
            copy_store(store, target, batch_size=1, progress=slow)
        except BaseException as exc:
            outcome.append(exc)

    worker = threading.Thread(target=copy)
    worker.start()
    helpers.until(lambda: len(batches) >= 2, "the copy to be under way")
    target.close()
    worker.join(30)
    assert not worker.is_alive()
    # It was stopped part-way: 40 history rows alone are 40 batches.
    assert len(batches) < 40
    assert len(outcome) == 1
    assert isinstance(outcome[0], StorageError)
    assert "closed during the call" in str(outcome[0])
    assert _empty(location)


def test_close_from_inside_a_call_is_refused_and_the_call_rolls_back(
    store: StateStore, fresh_db: Callable[[], str]
) -> None:
    _fill(store, 3)
    location = fresh_db()
    target = StateStore(location)
    with pytest.raises(StorageError, match=r"close\(\) was called from inside one of the store's calls"):
        copy_store(store, target, progress=lambda _table, _rows: target.close())
    target.close()
    assert _empty(location)


def test_a_write_from_inside_a_write_is_refused_and_the_call_rolls_back(
    store: StateStore, fresh_db: Callable[[], str]
) -> None:
    """It would wait for the write lock its own thread holds: SQLite until busy_timeout,
    PostgreSQL (the copy's table lock) for ever."""
    _fill(store, 3)
    location = fresh_db()
    with StateStore(location) as target:

        def progress(_table: str, _rows: int) -> None:
            target.create_project("Inner", "acme/inner")

        with pytest.raises(StorageError, match="a write of the store was made from inside another"):
            copy_store(store, target, progress=progress)
    assert _empty(location)


def test_a_read_from_inside_a_write_runs_on_its_own_connection(
    store: StateStore, fresh_db: Callable[[], str]
) -> None:
    """It sees what is committed (nothing of the copy yet) and leaves the copy whole."""
    _fill(store, 3)
    location = fresh_db()
    seen: list[int] = []
    with StateStore(location) as target:
        copy_store(store, target, progress=lambda _table, _rows: seen.append(len(target.list_projects())))
        assert seen
        assert set(seen) == {0}
        assert len(target.list_projects()) == 1
        assert target.count_history() == 3


def test_a_nested_read_cannot_commit_an_in_memory_copy(store: StateStore) -> None:
    """ ":memory:" is one shared connection: a nested call would have committed the copy's
    open transaction. It is refused, and the failed copy leaves the target empty."""
    _fill(store, 3)
    with StateStore(":memory:") as target:

        def read(_table: str, _rows: int) -> None:
            target.list_projects()

        with pytest.raises(StorageError, match="a call of the store was made from inside another"):
            copy_store(store, target, progress=read)
        assert target.list_projects() == []
        assert target.count_history() == 0


def test_a_pool_timeout_is_one_line_without_sqlalchemys_link(store_url: str) -> None:
    with StateStore(store_url, pool_size=1, max_overflow=0, pool_timeout=0.2) as store:
        project = store.create_project("Pool", "acme/pool")
        with store.database.engine.connect(), pytest.raises(StorageError) as caught:
            store.get_project(project.id)
    message = str(caught.value)
    assert "QueuePool limit of size 1 overflow 0 reached" in message
    assert "sqlalche.me" not in message
    assert "Background" not in message
