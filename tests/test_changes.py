"""The change log: one change per committed write, in commit order, read by cursor without
duplicates or gaps; refused writes log nothing; retention and expired cursors; waiting."""

from __future__ import annotations

import subprocess
import sys
import threading
import time
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

import pytest

from vibecc.state_store import (
    Change,
    CursorExpiredError,
    PipelineExistsError,
    PipelineNotFoundError,
    PipelineState,
    Project,
    StaleVersionError,
    StateStore,
    ValidationError,
    copy_store,
)
from vibecc.state_store.models import changes as changes_table

if TYPE_CHECKING:
    from tests import helpers
else:
    import helpers

QUEUED, CODING, TESTING, REVIEW, MERGED, FAILED = PipelineState


def log(store: StateStore, cursor: int = 0) -> list[Change]:
    """Every change after `cursor`, read page by page."""
    return helpers.every_change(store, cursor, limit=3)


def shape(changes: list[Change]) -> list[tuple[str, str, str, int | None]]:
    return [(c.kind, c.entity_id, c.op, c.version) for c in changes]


def test_every_kind_of_write_logs_its_changes_in_order(store: StateStore) -> None:
    project = store.create_project("Log", "acme/log")
    store.update_project(project.id, name="Log 2")
    first = store.create_pipeline(project.id, 1, "t", "b")
    store.update_pipeline(first.id, pr_id=7)
    claimed = store.claim_pipeline(project_id=project.id)
    assert claimed is not None
    done = store.update_pipeline(first.id, state=MERGED)
    store.save_to_history(done)
    store.archive_pipeline(first.id)
    gone = store.create_pipeline(project.id, 2, "t", "b")
    store.delete_pipeline(gone.id)
    [imported] = helpers.import_at(store, project.id, [0])
    store.prune_history(before=helpers.T0 + timedelta(seconds=1))
    last = helpers.finished(store, project, 3)
    store.delete_project(project.id)

    p, f, g, h, x = project.id, first.id, gone.id, imported.id, last.id
    assert shape(log(store)) == [
        ("project", p, "created", None),
        ("project", p, "updated", None),
        ("pipeline", f, "created", 1),
        ("pipeline", f, "updated", 2),
        ("pipeline", f, "claimed", 3),
        ("pipeline", f, "updated", 4),
        ("history", f, "created", None),
        ("pipeline", f, "archived", None),  # saved before: its history change was the save's
        ("pipeline", g, "created", 1),
        ("pipeline", g, "deleted", None),
        ("history", h, "imported", None),
        ("history", h, "pruned", None),
        ("pipeline", x, "created", 1),
        ("pipeline", x, "updated", 2),
        ("pipeline", x, "archived", None),  # archived by delete_project, in its transaction
        ("history", x, "created", None),
        ("project", p, "deleted", None),
    ]
    changes = log(store)
    assert [c.seq for c in changes] == list(range(1, len(changes) + 1))
    assert {c.project_id for c in changes} == {p}
    assert all(c.at.tzinfo is UTC for c in changes)


def test_an_archive_logs_the_pipeline_leaving_and_its_record(store: StateStore, project: Project) -> None:
    done = helpers.finished(store, project, 1, "failed")
    cursor = store.change_cursor()

    record = store.archive_pipeline(done.id)

    assert shape(log(store, cursor)) == [
        ("pipeline", done.id, "archived", None),
        ("history", record.id, "created", None),
    ]
    assert len({c.at for c in log(store, cursor)}) == 1, "one write, one commit time"


def test_refused_and_empty_writes_log_nothing(store: StateStore, project: Project) -> None:
    pipeline = store.create_pipeline(project.id, 1, "t", "b")
    cursor = store.change_cursor()
    with pytest.raises(StaleVersionError):
        store.update_pipeline(pipeline.id, pr_id=1, expected_version=9)
    with pytest.raises(PipelineNotFoundError):
        store.update_pipeline("no-such-pipeline", pr_id=1)
    with pytest.raises(PipelineExistsError):
        store.create_pipeline(project.id, 1, "t", "b")
    with pytest.raises(ValidationError):
        store.archive_pipeline(pipeline.id)  # not finished
    with pytest.raises(ValidationError):
        store.update_pipeline(pipeline.id)
    store.update_project(project.id)  # nothing to change: nothing written
    assert store.claim_pipeline(state=REVIEW) is None
    assert store.import_history([]).inserted == 0
    assert store.prune_history(before=helpers.T0) == 0
    again = helpers.import_at(store, project.id, [5])
    store.import_history(again)  # present already: skipped

    assert shape(log(store, cursor)) == [("history", again[0].id, "imported", None)]


def test_pages_filter_by_project_and_never_repeat_or_skip(store: StateStore, project: Project) -> None:
    other = store.create_project("Other", "acme/other")
    for ticket in range(7):
        store.create_pipeline((project, other)[ticket % 2].id, ticket, "t", "b")
    everything = log(store)

    mine: list[Change] = []
    cursor = 0
    while True:
        page = store.changes_since(cursor, limit=2, project_id=project.id)
        assert page.next_cursor >= cursor
        mine += page.changes
        if page.next_cursor == cursor:
            break
        cursor = page.next_cursor

    assert mine == [c for c in everything if c.project_id == project.id]
    assert cursor == everything[-1].seq, "a filtered reader still reads on to the end"
    assert store.changes_since(cursor).changes == ()


def test_a_page_of_exactly_the_limit_continues_from_its_last_change(
    store: StateStore, project: Project
) -> None:
    for ticket in range(3):
        store.create_pipeline(project.id, ticket, "t", "b")
    head = store.change_cursor()

    page = store.changes_since(head - 2, limit=2)

    assert [c.seq for c in page.changes] == [head - 1, head]
    assert page.next_cursor == head
    assert store.changes_since(page.next_cursor).changes == ()


def test_pruned_and_future_cursors_expire(store: StateStore, project: Project) -> None:
    for ticket in range(6):
        store.create_pipeline(project.id, ticket, "t", "b")
    head = store.change_cursor()

    assert store.prune_changes(keep=2, batch_size=2) == head - 2

    with pytest.raises(
        CursorExpiredError, match=rf"cursor 0 is older than the change log.*after change {head - 2}"
    ):
        store.changes_since(0)
    with pytest.raises(CursorExpiredError, match=rf"cursor {head + 1} is beyond the change log"):
        store.changes_since(head + 1)
    with pytest.raises(CursorExpiredError, match="beyond"):
        store.wait_for_changes(head + 5, timeout=0)
    assert [c.seq for c in store.changes_since(head - 2).changes] == [head - 1, head]
    assert store.prune_changes(keep=2) == 0


def test_prune_by_age_removes_only_older_changes(store: StateStore, project: Project) -> None:
    store.create_pipeline(project.id, 1, "t", "b")
    cut = datetime.now(UTC)
    time.sleep(0.002)
    late = store.create_pipeline(project.id, 2, "t", "b")

    removed = store.prune_changes(before=cut)

    assert removed == 2  # the project and the first pipeline
    assert shape(log(store, removed)) == [("pipeline", late.id, "created", 1)]
    assert store.prune_changes(before=cut) == 0


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        ({"cursor": -1}, "cursor must be between 0"),
        ({"cursor": None}, "cursor must be an int"),
        ({"cursor": True}, "cursor must be an int"),
        ({"cursor": "3"}, "cursor must be an int"),
        ({"limit": 0}, "limit must be between 1 and 10000"),
        ({"limit": 10_001}, "limit must be between 1 and 10000"),
        ({"project_id": ""}, "project_id must not be empty"),
    ],
)
def test_changes_since_refuses_bad_arguments(
    store: StateStore, arguments: dict[str, Any], message: str
) -> None:
    with pytest.raises(ValidationError, match=message):
        store.changes_since(**arguments)


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        ({"keep": 1, "before": datetime.now(UTC)}, "one of before= or keep="),
        ({}, "one of before= or keep="),
        ({"keep": -1}, "keep must be between 0"),
        ({"keep": 1.5}, "keep must be an int"),
        ({"before": datetime(2025, 1, 1)}, "before must be a timezone-aware"),
        ({"keep": 1, "batch_size": 0}, "batch_size must be between 1"),
    ],
)
def test_prune_changes_refuses_bad_arguments(
    store: StateStore, project: Project, arguments: dict[str, Any], message: str
) -> None:
    head = store.change_cursor()
    with pytest.raises(ValidationError, match=message):
        store.prune_changes(**arguments)
    assert len(log(store)) == head


@pytest.mark.parametrize("timeout", [-1, float("nan"), float("inf"), 86_401, True, None, "1"])
def test_wait_refuses_bad_timeouts(store: StateStore, timeout: object) -> None:
    with pytest.raises(ValidationError, match=r"timeout must be a number of seconds in \[0, 86400\]"):
        store.wait_for_changes(0, timeout=timeout)  # type: ignore[arg-type]


def test_wait_returns_at_once_when_a_change_is_there_and_false_at_the_timeout(
    store: StateStore, project: Project
) -> None:
    head = store.change_cursor()
    assert store.wait_for_changes(head - 1, timeout=0) is True
    assert store.wait_for_changes(head, timeout=0) is False
    assert store.wait_for_changes(head, timeout=0.05) is False


@pytest.mark.parametrize("linger", [-1, float("nan"), float("inf"), 61, True, None, "1"])
def test_wait_refuses_bad_lingers(store: StateStore, linger: object) -> None:
    with pytest.raises(ValidationError, match=r"linger must be a number of seconds in \[0, 60\]"):
        store.wait_for_changes(0, timeout=0, linger=linger)  # type: ignore[arg-type]


def test_a_lingering_wait_returns_what_commits_meanwhile_in_one_page(
    store: StateStore, project: Project, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The linger passes before the wait looks: a write made during it is seen by that look
    and is in the page the follower reads next; without a linger nothing pauses."""
    head = store.change_cursor()
    pauses = helpers.write_during_pauses(store, project.id, monkeypatch)
    assert store.wait_for_changes(head, timeout=0) is False
    assert store.wait_for_changes(head, timeout=0, linger=0.01) is True
    assert pauses == [0.0, 0.01]
    assert [c.op for c in store.changes_since(head).changes] == ["created"]


def test_wait_wakes_for_a_commit_made_by_another_thread(store: StateStore, project: Project) -> None:
    head = store.change_cursor()
    writer = threading.Timer(0.2, lambda: store.create_pipeline(project.id, 1, "t", "b"))
    writer.start()
    try:
        woke = store.wait_for_changes(head, timeout=60)
    finally:
        writer.join()
    assert woke is True
    assert shape(log(store, head))[0][2] == "created"


def test_wait_wakes_for_a_commit_of_another_process(store_url: str, project: Project) -> None:
    with StateStore(store_url) as watcher:
        head = watcher.change_cursor()
        started = time.monotonic()
        child = subprocess.Popen([sys.executable, "-c", _WRITE_LATER, store_url, project.id])
        try:
            woke = watcher.wait_for_changes(head, timeout=120)
        finally:
            assert child.wait(60) == 0
        assert woke is True
        assert time.monotonic() - started < 120
        assert [c.op for c in watcher.changes_since(head).changes] == ["created"]


_WRITE_LATER = """
import sys, time
from vibecc.state_store import StateStore
time.sleep(0.3)
with StateStore(sys.argv[1]) as store:
    store.create_pipeline(sys.argv[2], 1, "t", "b")
"""


@pytest.mark.parametrize("waiting", [{"timeout": 600}, {"timeout": 0, "linger": 60}], ids=["wait", "linger"])
def test_close_ends_a_wait_in_another_thread(store_url: str, waiting: dict[str, float]) -> None:
    """close() cuts short a wait for a commit and a linger alike."""
    store = StateStore(store_url)
    assert helpers.ended_by_close(store, lambda: store.wait_for_changes(0, **waiting)) == [False]


def test_concurrent_writers_and_a_following_reader_agree_on_one_gapless_order(store_url: str) -> None:
    """Writers commit in any interleaving; a reader following meanwhile sees every change
    exactly once, in the order of the final log, which is numbered 1..n without a gap."""
    with StateStore(store_url) as setup:
        project = setup.create_project("Race", "acme/race")
        start = setup.change_cursor()
    writers, per_writer = 4, 25
    seen: list[Change] = []
    done = threading.Event()

    def write(n: int) -> None:
        with StateStore(store_url) as mine:
            for i in range(per_writer):
                pipeline = mine.create_pipeline(project.id, f"{n}-{i}", "t", "b")
                mine.update_pipeline(pipeline.id, state=CODING)

    def follow() -> None:
        with StateStore(store_url) as reader:
            cursor = start
            while True:
                finished = done.is_set()
                page = reader.changes_since(cursor, limit=7)
                seen.extend(page.changes)
                cursor = page.next_cursor
                if finished and not page.changes:
                    return
                reader.wait_for_changes(cursor, timeout=0.05)

    follower = threading.Thread(target=follow)
    follower.start()
    threads = [threading.Thread(target=write, args=(n,)) for n in range(writers)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    done.set()
    follower.join(120)

    with StateStore(store_url) as check:
        final = log(check, start)
    assert len(final) == writers * per_writer * 2
    assert [c.seq for c in final] == list(range(start + 1, start + 1 + len(final)))
    assert seen == final


def test_many_waiting_threads_share_one_connection_and_leave_the_pool_to_writers(
    store_url: str,
) -> None:
    """Twice as many waiters as the pool has connections: a write still gets one at once
    and wakes them all."""
    with StateStore(store_url, pool_size=2, max_overflow=0, pool_timeout=5) as store:
        project = store.create_project("Many", "acme/many")
        head = store.change_cursor()
        woke: list[bool] = []
        waiters = [
            threading.Thread(target=lambda: woke.append(store.wait_for_changes(head, timeout=120)))
            for _ in range(4)
        ]
        for waiter in waiters:
            waiter.start()
        time.sleep(0.3)
        store.create_pipeline(project.id, 1, "t", "b")  # StorageError if waiters held the pool
        for waiter in waiters:
            waiter.join(60)
        assert woke == [True] * 4


def test_prune_by_age_stops_at_the_first_change_written_at_or_after_the_cut(
    store: StateStore, project: Project
) -> None:
    """A change's time is its writer's clock before commit: a later number may carry an
    earlier time. Such a change, and those after it, are kept."""
    cut = datetime.now(UTC)
    slow = store.create_pipeline(project.id, 1, "t", "b")
    fast = store.create_pipeline(project.id, 2, "t", "b")
    head = store.change_cursor()
    with store.database.engine.begin() as conn:
        # The first stamped after the cut; the next, numbered after it, stamped before.
        for seq, at in ((head - 1, cut + timedelta(seconds=1)), (head, cut - timedelta(seconds=1))):
            conn.execute(changes_table.update().where(changes_table.c.seq == seq), {"at": at})

    assert store.prune_changes(before=cut) == head - 2  # the project's creation, and no more

    assert [c.entity_id for c in log(store, head - 2)] == [slow.id, fast.id]


def test_a_copy_starts_the_targets_log_again_and_expires_its_cursors(
    store: StateStore, project: Project, fresh_db: Any
) -> None:
    store.create_pipeline(project.id, 1, "t", "b")
    with StateStore(fresh_db()) as target:
        # A target whose tables are empty again but whose log has changes and a follower.
        [record] = helpers.import_at(target, project.id, [0])
        target.prune_history(before=record.completed_at + timedelta(seconds=1))
        follower = target.change_cursor()
        assert follower == 2

        copy_store(store, target)

        with pytest.raises(CursorExpiredError, match="older than the change log"):
            target.changes_since(follower)
        assert target.wait_for_changes(follower, timeout=0) is True  # wakes it to resynchronise
        start = target.change_cursor()
        assert start == follower + 1
        assert target.changes_since(start).changes == ()
        pipeline = target.create_pipeline(project.id, 2, "t", "b")
        assert shape(log(target, start)) == [("pipeline", pipeline.id, "created", 1)]


def test_closing_a_memory_store_ends_its_waits_with_false() -> None:
    store = StateStore(":memory:")
    assert helpers.ended_by_close(store, lambda: store.wait_for_changes(0, timeout=600)) == [False]
