"""Following the change log with changes_since alone: `wait` holds the call until something
after the cursor is committed (one read per page when writers are busy), `linger` gathers what
commits meanwhile into one page; close() ends a waiting call with an empty page."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from functools import partial
from typing import TYPE_CHECKING, Any

import pytest

from vibecc.state_store import (
    ChangePage,
    CursorExpiredError,
    Project,
    StateStore,
    ValidationError,
)
from vibecc.state_store.queries import changes as store_changes

if TYPE_CHECKING:
    from tests import helpers
else:
    import helpers


def reads_of_the_log(store: StateStore, monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Counts each read transaction of `store` from now on."""
    reads: list[str] = []
    read = store.database.read

    def counted(work: Any, **options: Any) -> Any:
        reads.append(getattr(work, "__name__", "?"))
        return read(work, **options)

    monkeypatch.setattr(store.database, "read", counted)
    return reads


def test_a_change_already_there_comes_at_once_in_one_read(
    store: StateStore, project: Project, monkeypatch: pytest.MonkeyPatch
) -> None:
    head = store.change_cursor()
    store.create_pipeline(project.id, 1, "t", "b")
    reads = reads_of_the_log(store, monkeypatch)
    started = time.monotonic()
    page = store.changes_since(head, wait=600)
    assert [c.op for c in page.changes] == ["created"]
    assert page.next_cursor == head + 1
    assert len(reads) == 1
    assert time.monotonic() - started < 300, "waited although a change was there"


def test_a_wait_returns_the_change_another_thread_commits(store: StateStore, project: Project) -> None:
    head = store.change_cursor()
    writer = threading.Timer(0.2, lambda: store.create_pipeline(project.id, 1, "t", "b"))
    writer.start()
    try:
        page = store.changes_since(head, wait=60)
    finally:
        writer.join()
    assert [(c.kind, c.op) for c in page.changes] == [("pipeline", "created")]
    assert page.next_cursor == head + 1


def test_a_wait_that_times_out_returns_an_empty_page_at_the_cursor(
    store: StateStore, project: Project
) -> None:
    head = store.change_cursor()
    assert store.changes_since(head, wait=0.05) == ChangePage((), head)
    assert store.changes_since(head) == ChangePage((), head)


def test_another_projects_changes_end_the_wait_and_move_the_cursor(
    store: StateStore, project: Project
) -> None:
    """A filtered follower is not held while the log grows with other projects' changes: it
    gets an empty page whose next_cursor is past them."""
    other = store.create_project("Other", "acme/other")
    head = store.change_cursor()
    store.create_pipeline(other.id, 1, "t", "b")
    started = time.monotonic()
    page = store.changes_since(head, project_id=project.id, wait=600)
    assert page == ChangePage((), head + 1)
    assert time.monotonic() - started < 300


def test_a_linger_passes_before_the_read(
    store: StateStore, project: Project, monkeypatch: pytest.MonkeyPatch
) -> None:
    """What commits during the linger is in the page; without one nothing pauses."""
    head = store.change_cursor()
    pauses = helpers.write_during_pauses(store, project.id, monkeypatch)
    assert store.changes_since(head).changes == ()
    assert [c.op for c in store.changes_since(head, linger=0.01).changes] == ["created"]
    assert pauses == [0.0, 0.01]


@pytest.mark.parametrize(("wait", "linger"), [(600, 0), (0, 60)], ids=["wait", "linger"])
def test_close_ends_a_waiting_read_with_an_empty_page(store_url: str, wait: float, linger: float) -> None:
    store = StateStore(store_url)
    head = store.change_cursor()
    read = partial(store.changes_since, head, wait=wait, linger=linger)
    assert helpers.ended_by_close(store, read) == [ChangePage((), head)]


def test_a_follower_reads_every_change_once_in_order_while_a_writer_runs(
    store: StateStore, project: Project
) -> None:
    head = store.change_cursor()
    count = 30

    def write() -> None:
        for n in range(count):
            store.create_pipeline(project.id, n, "t", "b")
            time.sleep(0.005)

    writer = threading.Thread(target=write)
    writer.start()
    seen: list[int] = []
    cursor = head
    try:
        while len(seen) < count:
            page = store.changes_since(cursor, limit=7, wait=60, linger=0.01)
            assert page.changes, "a wait ended without a change while the writer was still writing"
            seen.extend(c.seq for c in page.changes)
            cursor = page.next_cursor
    finally:
        writer.join()
    assert seen == list(range(head + 1, head + count + 1))


def test_expired_cursors_are_refused_before_any_wait(store: StateStore, project: Project) -> None:
    head = store.change_cursor()
    with pytest.raises(CursorExpiredError, match="beyond the change log"):
        store.changes_since(head + 5, wait=600)


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        ({"wait": -1}, r"wait must be a number of seconds in \[0, 86400\]"),
        ({"wait": float("nan")}, r"wait must be a number of seconds"),
        ({"wait": 86_401}, r"wait must be a number of seconds"),
        ({"wait": True}, r"wait must be a number of seconds"),
        ({"wait": None}, r"wait must be a number of seconds"),
        ({"linger": 61}, r"linger must be a number of seconds in \[0, 60\]"),
        ({"linger": "1"}, r"linger must be a number of seconds"),
    ],
)
def test_bad_waits_and_lingers_are_refused(
    store: StateStore, arguments: dict[str, Any], message: str
) -> None:
    with pytest.raises(ValidationError, match=message):
        store.changes_since(0, **arguments)


def test_a_head_read_before_another_waiters_cannot_hide_a_commit_from_its_reader(
    store: StateStore, project: Project, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Follower A reads an empty page and is held before it waits; a change commits and
    follower B, from the newer cursor, starts watching (until the store closes). A's head, read
    first, must not replace B's newer one: A gets the change instead of sleeping through its
    wait (on SQLite the watcher looks again only when another connection commits)."""
    head = store.change_cursor()
    a_read, release_a, b_watching = threading.Event(), threading.Event(), threading.Event()
    page = store_changes.page

    def held_page(conn: Any, cursor: int, limit: int, project_id: str | None) -> Any:
        found = page(conn, cursor, limit, project_id)
        if threading.current_thread().name == "A":
            a_read.set()
            release_a.wait(30)
        return found

    watch = store.database.dialect.wait_for_commit

    def watching(conn: Any, ready: Callable[[], bool], *args: Any) -> bool:
        def looked() -> bool:
            passed = ready()  # B's look has published the newer head
            if threading.current_thread().name == "B":
                b_watching.set()
            return passed

        return watch(conn, looked, *args)

    monkeypatch.setattr(store_changes, "page", held_page)
    monkeypatch.setattr(store.database.dialect, "wait_for_commit", watching)
    result: dict[str, ChangePage] = {}
    a = threading.Thread(name="A", target=lambda: result.setdefault("A", store.changes_since(head, wait=5)))
    a.start()
    try:
        assert a_read.wait(30)
        store.create_pipeline(project.id, 1, "t", "b")
        b = threading.Thread(
            name="B",
            target=lambda: result.setdefault("B", store.changes_since(head + 1, wait=600)),
            daemon=True,
        )
        b.start()
        assert b_watching.wait(30), "B never started watching"
    finally:
        release_a.set()
        a.join(60)
    assert [c.seq for c in result["A"].changes] == [head + 1]


def test_close_during_the_look_of_a_memory_stores_wait_ends_it_with_an_empty_page(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """ ":memory:" waits by reading the head every 10 ms; a close() landing on such a read
    ends the wait like any other close, without an error."""
    store = StateStore(":memory:")
    head = store.change_cursor()
    read = store.database.read
    reads: list[int] = []

    def closing_at_the_second(work: Any, **options: Any) -> Any:
        reads.append(1)
        if len(reads) == 2:  # the first look of the wait, after the page
            store.close()
        return read(work, **options)

    monkeypatch.setattr(store.database, "read", closing_at_the_second)
    assert store.changes_since(head, wait=600) == ChangePage((), head)
    assert len(reads) == 2


def test_a_wait_whose_first_look_close_refuses_returns_false(
    store: StateStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    read = store.database.read

    def closing(work: Any, **options: Any) -> Any:
        store.close()
        return read(work, **options)

    monkeypatch.setattr(store.database, "read", closing)
    assert store.wait_for_changes(0, timeout=600) is False
