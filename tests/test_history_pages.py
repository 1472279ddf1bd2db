"""Reading history: newest first with ties by id, filters, limit and offset, since/until windows,
pages that follow cursors, cursor tokens, and bounds that overflow in UTC."""

from __future__ import annotations

import uuid
from dataclasses import replace
from datetime import datetime, timedelta, timezone
from typing import TYPE_CHECKING, Any

import pytest

from vibecc.state_store import (
    HistoryCursor,
    PipelineHistory,
    PipelineState,
    Project,
    StateStore,
    ValidationError,
)

if TYPE_CHECKING:
    from tests import helpers
else:
    import helpers


def test_get_history_newest_first_ties_by_id_desc(store: StateStore, project: Project) -> None:
    records = helpers.import_at(store, project.id, [5, 0, 5, 3, 5, 0, 9])

    assert store.get_history() == helpers.newest_first(records)


def test_get_history_filters_limit_offset(store: StateStore, project: Project) -> None:
    other = store.create_project("Other", "acme/other")
    mine = helpers.import_at(store, project.id, [1, 2, 3, 4], final_state=PipelineState.MERGED)
    mine += helpers.import_at(store, project.id, [5, 6], final_state=PipelineState.FAILED)
    theirs = helpers.import_at(store, other.id, [2, 7], final_state=PipelineState.FAILED)
    everything = helpers.newest_first(mine + theirs)

    assert store.get_history(project_id=project.id) == helpers.newest_first(mine)
    assert store.get_history(final_state="failed") == [r for r in everything if r.final_state == "failed"]
    assert store.get_history(project.id, PipelineState.MERGED) == helpers.newest_first(mine[:4])
    assert store.get_history(limit=3) == everything[:3]
    assert store.get_history(limit=3, offset=3) == everything[3:6]
    assert store.get_history(offset=7) == everything[7:]
    assert store.get_history(offset=8) == []
    assert store.count_history() == 8
    assert store.count_history(project.id) == 6
    assert store.count_history(project.id, "failed") == 2
    assert store.count_history(final_state=PipelineState.MERGED) == 4


def test_since_inclusive_until_exclusive(store: StateStore, project: Project) -> None:
    records = helpers.import_at(store, project.id, [0, 10, 20, 30])
    t10, t20 = records[1].completed_at, records[2].completed_at

    assert store.get_history(since=t10) == helpers.newest_first(records[1:])
    assert store.get_history(until=t20) == helpers.newest_first(records[:2])
    assert store.get_history(since=t10, until=t20) == [records[1]]
    assert store.get_history(since=t20, until=t20) == []
    assert store.count_history(since=t10, until=t20 + timedelta(microseconds=1)) == 2
    assert store.get_history_stats(since=t10, until=t20) == helpers.stats_of([records[1]])


def test_window_bounds_in_other_time_zones(store: StateStore, project: Project) -> None:
    records = helpers.import_at(store, project.id, [0, 10, 20])
    tokyo = timezone(timedelta(hours=9))
    since = records[1].completed_at.astimezone(tokyo)

    assert store.get_history(since=since) == helpers.newest_first(records[1:])
    assert store.get_history(until=since) == [records[0]]


def test_pages_follow_cursors_to_the_end(store: StateStore, project: Project) -> None:
    records = helpers.import_at(store, project.id, [i // 3 for i in range(23)])
    expected = helpers.newest_first(records)

    pages = [store.get_history_page(limit=5)]
    while pages[-1].next_cursor is not None:
        pages.append(store.get_history_page(limit=5, before=pages[-1].next_cursor))

    assert [len(p.items) for p in pages] == [5, 5, 5, 5, 3]
    assert [r for p in pages for r in p.items] == expected
    assert pages[0].next_cursor == HistoryCursor.after(expected[4])


def test_last_full_page_has_no_next_cursor(store: StateStore, project: Project) -> None:
    records = helpers.import_at(store, project.id, list(range(6)))

    first = store.get_history_page(limit=3)
    second = store.get_history_page(limit=3, before=first.next_cursor)

    assert second.items == tuple(helpers.newest_first(records)[3:])
    assert second.next_cursor is None
    assert store.get_history_page(limit=10).next_cursor is None


def test_cursor_pages_stable_while_new_rows_arrive(store: StateStore, project: Project) -> None:
    records = helpers.import_at(store, project.id, [i // 2 for i in range(12)])
    seen: list[PipelineHistory] = []
    page = store.get_history_page(limit=4)
    ticket = 100
    while True:
        seen.extend(page.items)
        for _ in range(2):
            ticket += 1
            store.archive_pipeline(helpers.finished(store, project, ticket).id)
        if page.next_cursor is None:
            break
        page = store.get_history_page(limit=4, before=page.next_cursor)

    assert seen == helpers.newest_first(records)
    assert store.count_history() == 12 + 3 * 2


def test_get_history_before_cursor(store: StateStore, project: Project) -> None:
    records = helpers.newest_first(helpers.import_at(store, project.id, [0, 0, 1, 1, 2]))

    after_second = store.get_history(before=HistoryCursor.after(records[1]))

    assert after_second == records[2:]
    assert store.get_history(before=HistoryCursor.after(records[-1])) == []


def test_cursor_token_round_trip(store: StateStore, project: Project) -> None:
    record = helpers.import_at(store, project.id, [0])[0]
    cursor = HistoryCursor.after(record)

    token = str(cursor)

    assert HistoryCursor.parse(token) == cursor
    assert token.isascii()
    assert record.id not in token
    assert store.get_history(before=HistoryCursor.parse(token)) == []


@pytest.mark.parametrize("token", ["", "not a token", "!!!!", "MjAyNQ==", str(uuid.uuid4())])
def test_cursor_parse_rejects_garbage(token: str) -> None:
    with pytest.raises(ValidationError, match="not a history cursor"):
        HistoryCursor.parse(token)


FAR_EAST_YEAR_1 = datetime(1, 1, 1, tzinfo=timezone(timedelta(hours=5)))


@pytest.mark.parametrize(
    "call",
    [
        lambda s: s.get_history(since=FAR_EAST_YEAR_1),
        lambda s: s.get_history_stats(until=FAR_EAST_YEAR_1),
        lambda s: s.count_history(since=FAR_EAST_YEAR_1),
        lambda s: s.prune_history(before=FAR_EAST_YEAR_1),
        lambda s: s.import_history(
            [replace(helpers.history_record(project_id=str(uuid.uuid4())), started_at=FAR_EAST_YEAR_1)]
        ),
    ],
)
def test_timestamps_that_overflow_in_utc_are_invalid(
    store: StateStore, store_url: str, project: Project, call: Any
) -> None:
    """Year 1 at +05:00 is before year 1 in UTC: refused as input, not an OverflowError."""
    before = helpers.snapshot(store_url)
    with pytest.raises(ValidationError, match="out of range"):
        call(store)
    assert helpers.snapshot(store_url) == before
