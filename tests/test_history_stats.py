"""History stats and duration percentiles: values, filters and windows, and the kept per-project
totals against a recomputation after every kind of history write."""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING

import pytest

from vibecc.state_store import (
    HistoryStats,
    PipelineState,
    Project,
    StateStore,
)
from vibecc.state_store.queries.buckets import RELATIVE_ERROR

if TYPE_CHECKING:
    from tests import helpers
else:
    import helpers


def test_stats_all_zero_on_empty_history(store: StateStore, project: Project) -> None:
    stats = store.get_history_stats()

    assert stats == HistoryStats(0, 0, 0, 0.0, 0.0, 0.0)
    assert stats.success_rate == 0.0
    assert all(
        isinstance(v, float)
        for v in (stats.avg_duration_seconds, stats.avg_retries_ci, stats.avg_retries_review)
    )
    assert store.get_history_stats(project.id) == stats
    assert store.get_history_stats(since=helpers.T0) == stats


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
        rows = helpers.all_history(store)
        assert store.get_history_stats() == helpers.stats_of(rows)
        for p in (project, other):
            assert store.get_history_stats(p.id) == helpers.stats_of(r for r in rows if r.project_id == p.id)
            mine = [r for r in rows if r.project_id == p.id]
            assert store.get_duration_percentiles(p.id) == helpers.kept_percentiles_of(mine)
        assert store.get_duration_percentiles() == helpers.kept_percentiles_of(rows)

    check()
    for ticket in range(4):
        store.archive_pipeline(
            helpers.finished(store, project, ticket, "failed" if ticket % 2 else "merged").id
        )
    check()
    saved = helpers.finished(store, other, 1, retry_count_review=2)
    store.save_to_history(saved)
    store.save_to_history(saved)
    check()
    store.archive_pipeline(saved.id)
    check()
    old = helpers.import_at(store, other.id, [0, 1, 2], final_state=PipelineState.FAILED, retries_ci=3)
    store.import_history(old)
    check()
    store.prune_history(before=helpers.T0 + timedelta(seconds=2), batch_size=1)
    check()
    store.delete_project(other.id)
    check()
    store.prune_history(before=datetime.now(UTC) + timedelta(days=1), project_id=project.id)
    check()
    assert store.get_history_stats(project.id) == HistoryStats(0, 0, 0, 0.0, 0.0, 0.0)


def test_windowed_stats_match_recomputation(store: StateStore, project: Project) -> None:
    other = store.create_project("Other", "acme/other")
    helpers.import_at(store, project.id, list(range(0, 100, 7)), retries_ci=2)
    helpers.import_at(store, other.id, list(range(0, 100, 11)), final_state=PipelineState.FAILED)
    since, until = helpers.T0 + timedelta(seconds=20), helpers.T0 + timedelta(seconds=77)
    rows = [r for r in helpers.all_history(store) if since <= r.completed_at < until]

    assert store.get_history_stats(since=since, until=until) == helpers.stats_of(rows)
    assert store.get_history_stats(project.id, since=since) == helpers.stats_of(
        r for r in helpers.all_history(store) if r.project_id == project.id and r.completed_at >= since
    )
    assert store.get_history_stats(until=helpers.T0) == HistoryStats(0, 0, 0, 0.0, 0.0, 0.0)


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

    kept = store.get_duration_percentiles()
    exact = store.get_duration_percentiles(exact=True)

    assert exact.p50 == nearest_rank(durations, 50)
    assert exact.p95 == nearest_rank(durations, 95)
    assert isinstance(exact.p50, float)
    assert kept.p50 is not None
    assert kept.p95 is not None
    assert within_kept_error(kept.p50, nearest_rank(durations, 50))
    assert within_kept_error(kept.p95, nearest_rank(durations, 95))


def within_kept_error(estimate: float, exact: float) -> bool:
    return abs(estimate - exact) <= RELATIVE_ERROR * exact


def test_kept_percentiles_of_short_runs_are_exact(store: StateStore, project: Project) -> None:
    """Under 10 s a bucket holds one whole second, and the kept percentile is that second."""
    durations = [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11] * 3
    store.import_history(
        [helpers.history_record(project_id=project.id, duration_seconds=d) for d in durations]
    )

    kept = store.get_duration_percentiles()

    assert (kept.p50, kept.p95) == (nearest_rank(durations, 50), nearest_rank(durations, 95))


def test_percentiles_filtered(store: StateStore, project: Project) -> None:
    other = store.create_project("Other", "acme/other")
    store.import_history(
        [helpers.history_record(project_id=project.id, duration_seconds=d) for d in (1, 2, 3)]
        + [helpers.history_record(project_id=other.id, duration_seconds=d) for d in (100, 200)]
    )

    mine = store.get_duration_percentiles(project.id)
    theirs = store.get_duration_percentiles(other.id)
    window = store.get_duration_percentiles(until=helpers.T0)

    exact = store.get_duration_percentiles(other.id, exact=True)

    assert (mine.p50, mine.p95) == (2.0, 3.0)
    assert theirs.p50 is not None
    assert theirs.p95 is not None
    assert within_kept_error(theirs.p50, 100.0)
    assert within_kept_error(theirs.p95, 200.0)
    assert (exact.p50, exact.p95) == (100.0, 200.0)
    assert (window.p50, window.p95) == (None, None)
