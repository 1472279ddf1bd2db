"""History: save/archive, pages and cursors, windows, stats, percentiles, import, prune."""

from __future__ import annotations

import math
import uuid
from dataclasses import replace
from datetime import UTC, datetime, timedelta, timezone
from typing import TYPE_CHECKING, Any

import pytest

from vibecc.state_store import (
    HistoryCursor,
    HistoryNotFoundError,
    HistoryStats,
    ImportResult,
    Pipeline,
    PipelineHistory,
    PipelineNotFoundError,
    PipelineState,
    Project,
    StaleVersionError,
    StateStore,
    ValidationError,
)

if TYPE_CHECKING:
    from tests import helpers
else:
    import helpers

T0 = helpers.T0


@pytest.fixture
def project(store: StateStore) -> Project:
    return store.create_project("Acme", "acme/widgets")


def finished(
    store: StateStore, project: Project, ticket: int, state: str = "merged", **changes: Any
) -> Pipeline:
    """A new pipeline of `project` moved to `state` (and the other `changes`)."""
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
        helpers.history_record(
            project_id=project_id,
            completed_at=T0 + timedelta(seconds=s),
            final_state=final_state,
            retries_ci=retries_ci,
        )
        for s in offsets
    ]
    assert store.import_history(records) == ImportResult(len(records), 0)
    return records


def newest_first(records: list[PipelineHistory]) -> list[PipelineHistory]:
    return sorted(records, key=lambda r: (r.completed_at, r.id), reverse=True)


def all_history(store: StateStore) -> list[PipelineHistory]:
    return list(store.iter_history())


# -- save_to_history / archive_pipeline ---------------------------------------------------------


def test_save_to_history_copies_pipeline(store: StateStore, project: Project) -> None:
    pipeline = finished(
        store,
        project,
        7,
        pr_id=70,
        pr_url="https://github.com/acme/widgets/pull/70",
        retry_count_ci=2,
        retry_count_review=1,
    )
    before = datetime.now(UTC)

    record = store.save_to_history(pipeline)

    after = datetime.now(UTC)
    assert record == PipelineHistory(
        id=pipeline.id,
        project_id=project.id,
        ticket_id="7",
        ticket_title="ticket 7",
        final_state=PipelineState.MERGED,
        branch_name="vibecc/7",
        pr_id=70,
        pr_url="https://github.com/acme/widgets/pull/70",
        total_retries_ci=2,
        total_retries_review=1,
        started_at=pipeline.created_at,
        completed_at=record.completed_at,
        duration_seconds=record.duration_seconds,
    )
    assert before <= record.completed_at <= after
    assert helpers.is_utc(record.completed_at)
    assert record.duration_seconds == int((record.completed_at - pipeline.created_at).total_seconds())
    assert store.get_pipeline(pipeline.id) == pipeline
    assert store.get_history_record(pipeline.id) == record


# Ages end well below the next whole second: the store reads the clock a moment after the test.
@pytest.mark.parametrize(("age", "whole"), [(0.2, 0), (59.4, 59), (90.3, 90), (86400 * 3 + 1.2, 259201)])
def test_duration_is_whole_seconds(
    store: StateStore, project: Project, age: float, whole: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    import vibecc.state_store.store as store_module

    started = datetime.now(UTC) - timedelta(seconds=age)
    monkeypatch.setattr(store_module, "now", lambda: started)  # the pipeline began `age` ago
    pipeline = finished(store, project, 1, state="failed")
    monkeypatch.undo()

    record = store.save_to_history(pipeline)

    assert record.started_at == pipeline.created_at == started
    assert record.duration_seconds == whole
    assert record.final_state is PipelineState.FAILED


def test_save_to_history_saves_the_stored_pipeline_not_a_record_made_up(
    store: StateStore, project: Project, store_url: str
) -> None:
    """A stale or forged record cannot put a pipeline into history as it never was."""
    queued = store.create_pipeline(project.id, 1, "t", "b")
    before = helpers.snapshot(store_url)

    with pytest.raises(StaleVersionError, match="differs from the record given"):
        store.save_to_history(replace(queued, state=PipelineState.MERGED))
    with pytest.raises(PipelineNotFoundError, match="no-such-pipeline"):
        store.save_to_history(replace(queued, id="no-such-pipeline", state=PipelineState.MERGED))
    assert helpers.snapshot(store_url) == before
    merged = store.update_pipeline(queued.id, state=PipelineState.MERGED)
    current = store.update_pipeline(queued.id, feedback="done")
    with pytest.raises(StaleVersionError, match="stored at version 3"):
        store.save_to_history(merged)  # an older snapshot of it
    assert store.count_history() == 0

    assert store.save_to_history(current).final_state is PipelineState.MERGED
    assert store.count_history() == 1


def test_save_to_history_is_idempotent(store: StateStore, project: Project) -> None:
    pipeline = finished(store, project, 1, retry_count_ci=4)

    first = store.save_to_history(pipeline)
    second = store.save_to_history(pipeline)
    third = store.save_to_history(store.update_pipeline(pipeline.id, state="failed"))

    assert first == second == third
    assert store.count_history() == 1
    assert store.get_history_stats() == helpers.stats_of([first])
    assert store.get_history_stats().avg_retries_ci == 4.0


def test_archive_moves_pipeline_into_history(store: StateStore, project: Project) -> None:
    pipeline = finished(store, project, 3, state="failed", feedback="tests fail")
    other = finished(store, project, 4)

    record = store.archive_pipeline(pipeline.id)

    assert (record.id, record.final_state, record.ticket_id) == (pipeline.id, PipelineState.FAILED, "3")
    assert record.started_at == pipeline.created_at
    with pytest.raises(PipelineNotFoundError):
        store.get_pipeline(pipeline.id)
    assert store.list_pipelines() == [other]
    assert store.get_history() == [record]
    assert store.get_history_stats() == helpers.stats_of([record])


def test_archive_unknown_pipeline_raises(store: StateStore, project: Project) -> None:
    pipeline = finished(store, project, 1)
    store.archive_pipeline(pipeline.id)
    missing = str(uuid.uuid4())

    with pytest.raises(PipelineNotFoundError, match=missing):
        store.archive_pipeline(missing)
    with pytest.raises(PipelineNotFoundError, match=pipeline.id):
        store.archive_pipeline(pipeline.id)
    assert store.count_history() == 1


def test_archive_after_save_keeps_saved_record(store: StateStore, project: Project) -> None:
    pipeline = finished(store, project, 1, retry_count_ci=1)
    saved = store.save_to_history(pipeline)
    store.update_pipeline(pipeline.id, state="failed", retry_count_ci=5)

    archived = store.archive_pipeline(pipeline.id)

    assert archived == saved
    assert store.get_history() == [saved]
    assert store.get_history_stats() == helpers.stats_of([saved])
    assert store.list_pipelines() == []


@pytest.mark.parametrize("state", PipelineState.active())
def test_only_finished_pipelines_go_to_history(
    store: StateStore, project: Project, store_url: str, state: PipelineState
) -> None:
    """History holds merged and failed pipelines; an unfinished one is refused, nothing written."""
    pipeline = store.create_pipeline(project.id, 1, "t", "b")
    if state is not PipelineState.QUEUED:
        pipeline = store.update_pipeline(pipeline.id, state=state)
    before = helpers.snapshot(store_url)

    with pytest.raises(ValidationError, match=f"is {state.value}; only merged or failed"):
        store.archive_pipeline(pipeline.id)
    with pytest.raises(ValidationError, match=f"is {state.value}; only merged or failed"):
        store.save_to_history(pipeline)

    assert helpers.snapshot(store_url) == before
    assert store.get_pipeline(pipeline.id) == pipeline


def test_get_history_record_unknown_raises(store: StateStore, project: Project) -> None:
    import_at(store, project.id, [0])
    missing = str(uuid.uuid4())

    with pytest.raises(HistoryNotFoundError, match=missing):
        store.get_history_record(missing)


# -- get_history: order, filters, pages ---------------------------------------------------------


def test_get_history_newest_first_ties_by_id_desc(store: StateStore, project: Project) -> None:
    records = import_at(store, project.id, [5, 0, 5, 3, 5, 0, 9])

    assert store.get_history() == newest_first(records)


def test_get_history_filters_limit_offset(store: StateStore, project: Project) -> None:
    other = store.create_project("Other", "acme/other")
    mine = import_at(store, project.id, [1, 2, 3, 4], final_state=PipelineState.MERGED)
    mine += import_at(store, project.id, [5, 6], final_state=PipelineState.FAILED)
    theirs = import_at(store, other.id, [2, 7], final_state=PipelineState.FAILED)
    everything = newest_first(mine + theirs)

    assert store.get_history(project_id=project.id) == newest_first(mine)
    assert store.get_history(final_state="failed") == [r for r in everything if r.final_state == "failed"]
    assert store.get_history(project.id, PipelineState.MERGED) == newest_first(mine[:4])
    assert store.get_history(limit=3) == everything[:3]
    assert store.get_history(limit=3, offset=3) == everything[3:6]
    assert store.get_history(offset=7) == everything[7:]
    assert store.get_history(offset=8) == []
    assert store.count_history() == 8
    assert store.count_history(project.id) == 6
    assert store.count_history(project.id, "failed") == 2
    assert store.count_history(final_state=PipelineState.MERGED) == 4


def test_since_inclusive_until_exclusive(store: StateStore, project: Project) -> None:
    records = import_at(store, project.id, [0, 10, 20, 30])
    t10, t20 = records[1].completed_at, records[2].completed_at

    assert store.get_history(since=t10) == newest_first(records[1:])
    assert store.get_history(until=t20) == newest_first(records[:2])
    assert store.get_history(since=t10, until=t20) == [records[1]]
    assert store.get_history(since=t20, until=t20) == []
    assert store.count_history(since=t10, until=t20 + timedelta(microseconds=1)) == 2
    assert store.get_history_stats(since=t10, until=t20) == helpers.stats_of([records[1]])


def test_window_bounds_in_other_time_zones(store: StateStore, project: Project) -> None:
    records = import_at(store, project.id, [0, 10, 20])
    tokyo = timezone(timedelta(hours=9))
    since = records[1].completed_at.astimezone(tokyo)

    assert store.get_history(since=since) == newest_first(records[1:])
    assert store.get_history(until=since) == [records[0]]


def test_pages_follow_cursors_to_the_end(store: StateStore, project: Project) -> None:
    records = import_at(store, project.id, [i // 3 for i in range(23)])
    expected = newest_first(records)

    pages = [store.get_history_page(limit=5)]
    while pages[-1].next_cursor is not None:
        pages.append(store.get_history_page(limit=5, before=pages[-1].next_cursor))

    assert [len(p.items) for p in pages] == [5, 5, 5, 5, 3]
    assert [r for p in pages for r in p.items] == expected
    assert pages[0].next_cursor == HistoryCursor.after(expected[4])


def test_last_full_page_has_no_next_cursor(store: StateStore, project: Project) -> None:
    records = import_at(store, project.id, list(range(6)))

    first = store.get_history_page(limit=3)
    second = store.get_history_page(limit=3, before=first.next_cursor)

    assert second.items == tuple(newest_first(records)[3:])
    assert second.next_cursor is None
    assert store.get_history_page(limit=10).next_cursor is None


def test_cursor_pages_stable_while_new_rows_arrive(store: StateStore, project: Project) -> None:
    records = import_at(store, project.id, [i // 2 for i in range(12)])
    seen: list[PipelineHistory] = []
    page = store.get_history_page(limit=4)
    ticket = 100
    while True:
        seen.extend(page.items)
        for _ in range(2):
            ticket += 1
            store.archive_pipeline(finished(store, project, ticket).id)
        if page.next_cursor is None:
            break
        page = store.get_history_page(limit=4, before=page.next_cursor)

    assert seen == newest_first(records)
    assert store.count_history() == 12 + 3 * 2


def test_get_history_before_cursor(store: StateStore, project: Project) -> None:
    records = newest_first(import_at(store, project.id, [0, 0, 1, 1, 2]))

    after_second = store.get_history(before=HistoryCursor.after(records[1]))

    assert after_second == records[2:]
    assert store.get_history(before=HistoryCursor.after(records[-1])) == []


def test_cursor_token_round_trip(store: StateStore, project: Project) -> None:
    record = import_at(store, project.id, [0])[0]
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


# -- stats and percentiles ----------------------------------------------------------------------


def test_stats_all_zero_on_empty_history(store: StateStore, project: Project) -> None:
    stats = store.get_history_stats()

    assert stats == HistoryStats(0, 0, 0, 0.0, 0.0, 0.0)
    assert stats.success_rate == 0.0
    assert all(
        isinstance(v, float)
        for v in (stats.avg_duration_seconds, stats.avg_retries_ci, stats.avg_retries_review)
    )
    assert store.get_history_stats(project.id) == stats
    assert store.get_history_stats(since=T0) == stats


def test_stats_values_and_success_rate(store: StateStore, project: Project) -> None:
    store.import_history(
        [
            helpers.history_record(project_id=project.id, duration_seconds=10, retries_ci=1),
            helpers.history_record(project_id=project.id, duration_seconds=20, retries_review=3),
            helpers.history_record(project_id=project.id, duration_seconds=31, retries_ci=2),
            helpers.history_record(
                project_id=project.id, duration_seconds=0, final_state=PipelineState.FAILED, retries_ci=1
            ),
        ]
    )

    stats = store.get_history_stats()

    assert stats == HistoryStats(4, 3, 1, 15.25, 1.0, 0.75)
    assert all(
        isinstance(v, float)
        for v in (stats.avg_duration_seconds, stats.avg_retries_ci, stats.avg_retries_review)
    )
    assert stats.success_rate == 0.75


def test_kept_stats_match_recomputation_through_every_write(store: StateStore, project: Project) -> None:
    other = store.create_project("Other", "acme/other")

    def check() -> None:
        rows = all_history(store)
        assert store.get_history_stats() == helpers.stats_of(rows)
        for p in (project, other):
            assert store.get_history_stats(p.id) == helpers.stats_of(r for r in rows if r.project_id == p.id)

    check()
    for ticket in range(4):
        store.archive_pipeline(finished(store, project, ticket, "failed" if ticket % 2 else "merged").id)
    check()
    saved = finished(store, other, 1, retry_count_review=2)
    store.save_to_history(saved)
    store.save_to_history(saved)
    check()
    store.archive_pipeline(saved.id)
    check()
    old = import_at(store, other.id, [0, 1, 2], final_state=PipelineState.FAILED, retries_ci=3)
    store.import_history(old)
    check()
    store.prune_history(before=T0 + timedelta(seconds=2), batch_size=1)
    check()
    store.delete_project(other.id)
    check()
    store.prune_history(before=datetime.now(UTC) + timedelta(days=1), project_id=project.id)
    check()
    assert store.get_history_stats(project.id) == HistoryStats(0, 0, 0, 0.0, 0.0, 0.0)


def test_windowed_stats_match_recomputation(store: StateStore, project: Project) -> None:
    other = store.create_project("Other", "acme/other")
    import_at(store, project.id, list(range(0, 100, 7)), retries_ci=2)
    import_at(store, other.id, list(range(0, 100, 11)), final_state=PipelineState.FAILED)
    since, until = T0 + timedelta(seconds=20), T0 + timedelta(seconds=77)
    rows = [r for r in all_history(store) if since <= r.completed_at < until]

    assert store.get_history_stats(since=since, until=until) == helpers.stats_of(rows)
    assert store.get_history_stats(project.id, since=since) == helpers.stats_of(
        r for r in all_history(store) if r.project_id == project.id and r.completed_at >= since
    )
    assert store.get_history_stats(until=T0) == HistoryStats(0, 0, 0, 0.0, 0.0, 0.0)


def nearest_rank(durations: list[int], percent: int) -> float:
    ordered = sorted(durations)
    rank = max(1, math.ceil(percent * len(ordered) / 100))
    return float(ordered[rank - 1])


def test_percentiles_none_on_empty(store: StateStore, project: Project) -> None:
    percentiles = store.get_duration_percentiles()

    assert (percentiles.p50, percentiles.p95) == (None, None)


@pytest.mark.parametrize("count", [1, 2, 3, 19, 20, 21, 40, 100, 101])
def test_percentiles_nearest_rank(store: StateStore, project: Project, count: int) -> None:
    durations = [(i * 37) % 1000 for i in range(count)]
    store.import_history(
        [helpers.history_record(project_id=project.id, duration_seconds=d) for d in durations]
    )

    percentiles = store.get_duration_percentiles()

    assert percentiles.p50 == nearest_rank(durations, 50)
    assert percentiles.p95 == nearest_rank(durations, 95)
    assert isinstance(percentiles.p50, float)


def test_percentiles_filtered(store: StateStore, project: Project) -> None:
    other = store.create_project("Other", "acme/other")
    store.import_history(
        [helpers.history_record(project_id=project.id, duration_seconds=d) for d in (1, 2, 3)]
        + [helpers.history_record(project_id=other.id, duration_seconds=d) for d in (100, 200)]
    )

    mine = store.get_duration_percentiles(project.id)
    theirs = store.get_duration_percentiles(other.id)
    window = store.get_duration_percentiles(until=T0)

    assert (mine.p50, mine.p95) == (2.0, 3.0)
    assert (theirs.p50, theirs.p95) == (100.0, 200.0)
    assert (window.p50, window.p95) == (None, None)


# -- iter_history / import_history -------------------------------------------------------------


@pytest.mark.parametrize("batch_size", [1, 3, 10, 11, 1000])
def test_iter_history_oldest_first_in_batches(store: StateStore, project: Project, batch_size: int) -> None:
    records = import_at(store, project.id, [i // 4 for i in range(10)] + [-5])

    streamed = list(store.iter_history(batch_size=batch_size))

    assert streamed == list(reversed(newest_first(records)))


def test_iter_history_filters(store: StateStore, project: Project) -> None:
    other = store.create_project("Other", "acme/other")
    mine = import_at(store, project.id, [0, 1, 2], final_state=PipelineState.FAILED)
    import_at(store, other.id, [0, 1, 2])

    assert list(store.iter_history(project.id, batch_size=2)) == mine
    assert list(store.iter_history(final_state="failed", since=mine[1].completed_at)) == mine[1:]
    assert list(store.iter_history(until=T0)) == []


def test_import_keeps_records_verbatim(store: StateStore, project: Project) -> None:
    tokyo = timezone(timedelta(hours=9))
    record = replace(
        helpers.history_record(project_id=project.id, final_state=PipelineState.FAILED, retries_ci=2),
        pr_id=2**63 - 1,
        pr_url="https://github.com/acme/widgets/pull/1",
        started_at=T0.astimezone(tokyo),
        duration_seconds=123,
    )

    result = store.import_history([record])

    stored = store.get_history_record(record.id)
    assert result == ImportResult(inserted=1, skipped=0)
    assert stored == record
    assert helpers.is_utc(stored.started_at)
    assert stored.started_at == T0


def test_import_skips_existing_ids(store: StateStore, project: Project) -> None:
    first = [helpers.history_record(project_id=project.id, duration_seconds=d) for d in (1, 2, 3)]
    store.import_history(first)
    archived = store.archive_pipeline(finished(store, project, 9).id)
    changed = replace(first[0], duration_seconds=999, final_state=PipelineState.FAILED)
    new = helpers.history_record(project_id=project.id, duration_seconds=4)
    duplicate_of_archived = replace(new, id=archived.id)

    result = store.import_history([changed, new, duplicate_of_archived, first[2]], batch_size=2)

    assert result == ImportResult(inserted=1, skipped=3)
    assert store.get_history_record(first[0].id) == first[0]
    assert store.get_history_record(archived.id) == archived
    assert store.count_history() == 5
    assert store.get_history_stats() == helpers.stats_of(all_history(store))


def test_import_duplicate_ids_within_one_batch(store: StateStore, project: Project) -> None:
    record = helpers.history_record(project_id=project.id)

    result = store.import_history([record, replace(record, duration_seconds=5)])

    assert result == ImportResult(inserted=1, skipped=1)
    assert store.get_history() == [record]
    assert store.get_history_stats() == helpers.stats_of([record])


@pytest.mark.parametrize("count", [0, 1, 3, 4, 5, 9])
def test_import_batch_boundaries(store: StateStore, project: Project, count: int) -> None:
    records = [helpers.history_record(project_id=project.id, duration_seconds=i) for i in range(count)]
    done: list[int] = []

    result = store.import_history(iter(records), batch_size=4, progress=done.append)

    assert result == ImportResult(count, 0)
    assert sum(done) == count
    assert all(0 < n <= 4 for n in done)
    assert sorted(r.id for r in all_history(store)) == sorted(r.id for r in records)
    assert store.get_history_stats() == helpers.stats_of(records)


# -- prune_history ------------------------------------------------------------------------------


@pytest.mark.parametrize("old", [0, 1, 3, 4, 5, 9])
def test_prune_batch_boundaries(store: StateStore, project: Project, old: int) -> None:
    cutoff = T0 + timedelta(hours=1)
    doomed = import_at(store, project.id, [-i for i in range(old)], final_state=PipelineState.FAILED)
    kept = import_at(store, project.id, [3600, 3601, 7200])
    active = finished(store, project, 1)
    queued = store.create_pipeline(project.id, 2, "t", "b")

    assert store.prune_history(before=cutoff, batch_size=4, dry_run=True) == old
    assert store.count_history() == old + 3
    pruned = store.prune_history(before=cutoff, batch_size=4)

    assert pruned == old
    assert all_history(store) == kept
    assert not {r.id for r in doomed} & {r.id for r in all_history(store)}
    assert store.list_pipelines() == [queued, active]
    assert store.get_history_stats() == helpers.stats_of(kept)


def test_prune_only_given_project(store: StateStore, project: Project) -> None:
    other = store.create_project("Other", "acme/other")
    import_at(store, project.id, [0, 1])
    theirs = import_at(store, other.id, [0, 1])

    assert store.prune_history(before=T0 + timedelta(days=1), project_id=project.id, dry_run=True) == 2
    assert store.prune_history(before=T0 + timedelta(days=1), project_id=project.id) == 2

    assert all_history(store) == theirs
    assert store.get_history_stats(project.id) == HistoryStats(0, 0, 0, 0.0, 0.0, 0.0)
    assert store.get_history_stats() == helpers.stats_of(theirs)


def test_prune_before_is_exclusive(store: StateStore, project: Project) -> None:
    records = import_at(store, project.id, [0, 1, 2])
    progress: list[int] = []

    pruned = store.prune_history(before=records[1].completed_at, progress=progress.append)

    assert pruned == 1
    assert progress == [1]
    assert all_history(store) == records[1:]


# -- edges found in review ----------------------------------------------------------------------


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


def test_iter_history_checks_its_arguments_at_the_call(store: StateStore, project: Project) -> None:
    with pytest.raises(ValidationError, match="batch_size"):
        store.iter_history(batch_size=0)


def test_prune_batch_larger_than_any_parameter_limit(store: StateStore, project: Project) -> None:
    """One prune batch of 40,000 rows: more than SQLite's 32,766 and close to PostgreSQL's
    65,535 bound parameters, had the ids been sent as parameters."""
    records = [
        helpers.history_record(project_id=project.id, completed_at=T0 + timedelta(seconds=i))
        for i in range(40_000)
    ]
    store.import_history(records, batch_size=10_000)

    assert store.prune_history(before=T0 + timedelta(days=1), batch_size=100_000) == 40_000
    assert store.count_history() == 0
    assert store.get_history_stats() == HistoryStats(0, 0, 0, 0.0, 0.0, 0.0)
