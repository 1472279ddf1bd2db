"""Streaming, importing and pruning history: iter_history in batches, import_history keeping
records verbatim and skipping known ids, prune_history in batches of any size."""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta, timezone
from typing import TYPE_CHECKING

import pytest

from vibecc.state_store import (
    HistoryStats,
    ImportResult,
    PipelineState,
    Project,
    StateStore,
    ValidationError,
)

if TYPE_CHECKING:
    from tests import helpers
else:
    import helpers


# -- iter_history / import_history -------------------------------------------------------------


@pytest.mark.parametrize("batch_size", [1, 3, 10, 11, 1000])
def test_iter_history_oldest_first_in_batches(store: StateStore, project: Project, batch_size: int) -> None:
    records = helpers.import_at(store, project.id, [i // 4 for i in range(10)] + [-5])

    streamed = list(store.iter_history(batch_size=batch_size))

    assert streamed == list(reversed(helpers.newest_first(records)))


def test_iter_history_filters(store: StateStore, project: Project) -> None:
    other = store.create_project("Other", "acme/other")
    mine = helpers.import_at(store, project.id, [0, 1, 2], final_state=PipelineState.FAILED)
    helpers.import_at(store, other.id, [0, 1, 2])

    assert list(store.iter_history(project.id, batch_size=2)) == mine
    assert list(store.iter_history(final_state="failed", since=mine[1].completed_at)) == mine[1:]
    assert list(store.iter_history(until=helpers.T0)) == []


def test_import_keeps_records_verbatim(store: StateStore, project: Project) -> None:
    tokyo = timezone(timedelta(hours=9))
    record = replace(
        helpers.history_record(project_id=project.id, final_state=PipelineState.FAILED, retries_ci=2),
        pr_id=2**63 - 1,
        pr_url="https://github.com/acme/widgets/pull/1",
        started_at=helpers.T0.astimezone(tokyo),
        duration_seconds=123,
    )

    result = store.import_history([record])

    stored = store.get_history_record(record.id)
    assert result == ImportResult(inserted=1, skipped=0)
    assert stored == record
    assert helpers.is_utc(stored.started_at)
    assert stored.started_at == helpers.T0


def test_import_skips_existing_ids(store: StateStore, project: Project) -> None:
    first = [helpers.history_record(project_id=project.id, duration_seconds=d) for d in (1, 2, 3)]
    store.import_history(first)
    archived = store.archive_pipeline(helpers.finished(store, project, 9).id)
    changed = replace(first[0], duration_seconds=999, final_state=PipelineState.FAILED)
    new = helpers.history_record(project_id=project.id, duration_seconds=4)
    duplicate_of_archived = replace(new, id=archived.id)

    result = store.import_history([changed, new, duplicate_of_archived, first[2]], batch_size=2)

    assert result == ImportResult(inserted=1, skipped=3)
    assert store.get_history_record(first[0].id) == first[0]
    assert store.get_history_record(archived.id) == archived
    assert store.count_history() == 5
    assert store.get_history_stats() == helpers.stats_of(helpers.all_history(store))


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
    assert sorted(r.id for r in helpers.all_history(store)) == sorted(r.id for r in records)
    assert store.get_history_stats() == helpers.stats_of(records)


# -- prune_history ------------------------------------------------------------------------------


@pytest.mark.parametrize("old", [0, 1, 3, 4, 5, 9])
def test_prune_batch_boundaries(store: StateStore, project: Project, old: int) -> None:
    cutoff = helpers.T0 + timedelta(hours=1)
    doomed = helpers.import_at(store, project.id, [-i for i in range(old)], final_state=PipelineState.FAILED)
    kept = helpers.import_at(store, project.id, [3600, 3601, 7200])
    active = helpers.finished(store, project, 1)
    queued = store.create_pipeline(project.id, 2, "t", "b")

    assert store.prune_history(before=cutoff, batch_size=4, dry_run=True) == old
    assert store.count_history() == old + 3
    pruned = store.prune_history(before=cutoff, batch_size=4)

    assert pruned == old
    assert helpers.all_history(store) == kept
    assert not {r.id for r in doomed} & {r.id for r in helpers.all_history(store)}
    assert store.list_pipelines() == [queued, active]
    assert store.get_history_stats() == helpers.stats_of(kept)


def test_prune_only_given_project(store: StateStore, project: Project) -> None:
    other = store.create_project("Other", "acme/other")
    helpers.import_at(store, project.id, [0, 1])
    theirs = helpers.import_at(store, other.id, [0, 1])

    assert (
        store.prune_history(before=helpers.T0 + timedelta(days=1), project_id=project.id, dry_run=True) == 2
    )
    assert store.prune_history(before=helpers.T0 + timedelta(days=1), project_id=project.id) == 2

    assert helpers.all_history(store) == theirs
    assert store.get_history_stats(project.id) == HistoryStats(0, 0, 0, 0.0, 0.0, 0.0)
    assert store.get_history_stats() == helpers.stats_of(theirs)


def test_prune_before_is_exclusive(store: StateStore, project: Project) -> None:
    records = helpers.import_at(store, project.id, [0, 1, 2])
    progress: list[int] = []

    pruned = store.prune_history(before=records[1].completed_at, progress=progress.append)

    assert pruned == 1
    assert progress == [1]
    assert helpers.all_history(store) == records[1:]


def test_iter_history_checks_its_arguments_at_the_call(store: StateStore, project: Project) -> None:
    with pytest.raises(ValidationError, match="batch_size"):
        store.iter_history(batch_size=0)


def test_prune_batch_larger_than_any_parameter_limit(store: StateStore, project: Project) -> None:
    """One prune batch of 40,000 rows: more than SQLite's 32,766 and close to PostgreSQL's
    65,535 bound parameters, had the ids been sent as parameters."""
    records = [
        helpers.history_record(project_id=project.id, completed_at=helpers.T0 + timedelta(seconds=i))
        for i in range(40_000)
    ]
    store.import_history(records, batch_size=10_000)

    assert store.prune_history(before=helpers.T0 + timedelta(days=1), batch_size=100_000) == 40_000
    assert store.count_history() == 0
    assert store.get_history_stats() == HistoryStats(0, 0, 0, 0.0, 0.0, 0.0)
