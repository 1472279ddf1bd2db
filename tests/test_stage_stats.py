"""Time in each stage: the histogram kept with every archive and prune, against the exact
figures a scan of the same runs gives."""

from __future__ import annotations

import math
import random
from datetime import datetime, timedelta

import pytest

import vibecc.state_store.store as store_module
from vibecc.state_store import PipelineState, Project, StageStats, StateStore, ValidationError
from vibecc.state_store.queries.buckets import RELATIVE_ERROR

QUEUED, CODING, TESTING, REVIEW, MERGED, FAILED = PipelineState
T0 = datetime.fromisoformat("2026-03-02T09:00:00+00:00")
EVER = datetime.fromisoformat("0001-01-02T00:00:00+00:00")


class Clock:
    """The store's clock, moved by hand."""

    def __init__(self) -> None:
        self.now = T0

    def advance(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> Clock:
    clock = Clock()
    monkeypatch.setattr(store_module, "now", lambda: clock.now)
    return clock


@pytest.fixture
def project(store: StateStore) -> Project:
    return store.create_project("Stages", "acme/stages")


def run(
    store: StateStore, clock: Clock, project: Project, ticket: int, stages: list[tuple[PipelineState, float]]
) -> str:
    """A pipeline that spends each (state, seconds) in turn from QUEUED, then is archived."""
    pipeline = store.create_pipeline(project.id, ticket, "t", "b")
    for state, seconds in stages:
        if state is not QUEUED:
            store.update_pipeline(pipeline.id, state=state)
        clock.advance(seconds)
    store.archive_pipeline(pipeline.id)
    return pipeline.id


def close_to(estimate: float | None, exact: float | None) -> bool:
    assert estimate is not None
    assert exact is not None
    return abs(estimate - exact) <= RELATIVE_ERROR * exact + 0.001


def test_one_run_gives_each_state_its_time(store: StateStore, clock: Clock, project: Project) -> None:
    run(store, clock, project, 1, [(QUEUED, 10), (CODING, 60), (TESTING, 30), (MERGED, 5)])
    kept = store.get_stage_stats(project.id)
    assert set(kept) == set(PipelineState)
    for state, seconds in [(QUEUED, 10), (CODING, 60), (TESTING, 30), (MERGED, 5)]:
        stats = kept[state]
        assert (stats.state, stats.visits, stats.total_seconds, stats.mean_seconds) == (
            state,
            1,
            seconds,
            seconds,
        )
        assert close_to(stats.p50_seconds, seconds)
        assert close_to(stats.p95_seconds, seconds)
    assert kept[REVIEW] == StageStats(REVIEW, 0, 0.0, None, None, None)
    exact = store.get_stage_stats(project.id, since=EVER)
    assert exact[CODING] == StageStats(CODING, 1, 60.0, 60.0, 60.0, 60.0)


def test_kept_percentiles_are_within_the_stated_error_of_a_scan(
    store: StateStore, clock: Clock, project: Project
) -> None:
    chance = random.Random(7)
    for ticket in range(60):
        stages = [(QUEUED, chance.uniform(0, 5))]
        for _ in range(chance.randint(1, 3)):  # CI retries go back to CODING
            stages += [(CODING, chance.lognormvariate(5, 1)), (TESTING, chance.lognormvariate(4, 1.5))]
        stages += [(REVIEW, chance.expovariate(1 / 600)), (chance.choice([MERGED, FAILED]), 1)]
        run(store, clock, project, ticket, stages)

    kept = store.get_stage_stats()
    exact = store.get_stage_stats(since=EVER)
    for state in PipelineState:
        assert kept[state].visits == exact[state].visits
        assert math.isclose(kept[state].total_seconds, exact[state].total_seconds, abs_tol=1e-9)
        if exact[state].visits:
            assert close_to(kept[state].p50_seconds, exact[state].p50_seconds), state
            assert close_to(kept[state].p95_seconds, exact[state].p95_seconds), state
    assert kept[CODING].visits >= 60


def test_a_window_counts_the_runs_completed_in_it(store: StateStore, clock: Clock, project: Project) -> None:
    run(store, clock, project, 1, [(QUEUED, 1), (CODING, 100), (MERGED, 0)])
    middle = clock.now + timedelta(seconds=1)
    clock.advance(3600)
    run(store, clock, project, 2, [(QUEUED, 1), (CODING, 200), (MERGED, 0)])
    assert store.get_stage_stats(until=middle)[CODING].total_seconds == 100
    assert store.get_stage_stats(since=middle)[CODING].total_seconds == 200
    assert store.get_stage_stats(project.id, since=EVER)[CODING].visits == 2
    assert store.get_stage_stats("other", since=EVER)[CODING].visits == 0


def test_pruned_runs_leave_the_kept_histogram(store: StateStore, clock: Clock, project: Project) -> None:
    run(store, clock, project, 1, [(QUEUED, 1), (CODING, 50), (FAILED, 1)])
    cut = clock.now + timedelta(seconds=1)
    clock.advance(10)
    run(store, clock, project, 2, [(QUEUED, 2), (CODING, 70), (MERGED, 1)])
    store.prune_history(before=cut)
    kept = store.get_stage_stats(project.id)
    assert (kept[CODING].visits, kept[CODING].total_seconds) == (1, 70)
    assert kept[FAILED].visits == 0
    store.prune_history(before=clock.now + timedelta(days=1))
    assert all(stats.visits == 0 for stats in store.get_stage_stats().values())


def test_a_run_saved_then_archived_counts_once(store: StateStore, clock: Clock, project: Project) -> None:
    pipeline = store.create_pipeline(project.id, 1, "t", "b")
    clock.advance(20)
    done = store.update_pipeline(pipeline.id, state=MERGED)
    clock.advance(5)
    store.save_to_history(done)
    clock.advance(5)
    store.archive_pipeline(pipeline.id)
    kept = store.get_stage_stats(project.id)
    assert (kept[QUEUED].visits, kept[QUEUED].total_seconds, kept[MERGED].total_seconds) == (1, 20, 5)


def test_deleting_a_project_archives_its_finished_runs_stages(
    store: StateStore, clock: Clock, project: Project
) -> None:
    pipeline = store.create_pipeline(project.id, 1, "t", "b")
    clock.advance(30)
    store.update_pipeline(pipeline.id, state=FAILED)
    clock.advance(3)
    store.delete_project(project.id)
    kept = store.get_stage_stats(project.id)
    assert (kept[QUEUED].total_seconds, kept[FAILED].total_seconds) == (30, 3)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"project_id": 5}, "project_id must be a str"),
        ({"since": datetime(2026, 1, 1)}, "since must be a timezone-aware datetime"),
        ({"until": "yesterday"}, "until must be a timezone-aware datetime"),
    ],
)
def test_bad_arguments_are_refused(store: StateStore, kwargs: dict[str, object], message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        store.get_stage_stats(**kwargs)  # type: ignore[arg-type]


def _kept_equals_recount(store: StateStore) -> None:
    kept, recount = store.get_stage_stats(), store.get_stage_stats(since=EVER)
    for state in PipelineState:
        assert kept[state].visits == recount[state].visits, state
        assert math.isclose(kept[state].total_seconds, recount[state].total_seconds, abs_tol=1e-9), state


def test_a_saved_run_counts_up_to_its_record_whatever_the_pipeline_does_next(
    store: StateStore, clock: Clock, project: Project
) -> None:
    """save_to_history leaves the pipeline active, and it may change state again: the run of
    the record ends at its completed_at, at the save, at an archive and at a prune alike."""
    pipeline = store.create_pipeline(project.id, 1, "t", "b")
    clock.advance(10)
    store.update_pipeline(pipeline.id, state=CODING)
    clock.advance(20)
    saved = store.save_to_history(store.update_pipeline(pipeline.id, state=MERGED))
    clock.advance(7)
    store.update_pipeline(pipeline.id, state=CODING)
    clock.advance(40)
    store.update_pipeline(pipeline.id, state=FAILED)
    clock.advance(1)
    assert store.archive_pipeline(pipeline.id) == saved  # the earlier record is kept
    kept = store.get_stage_stats(project.id)
    assert (kept[QUEUED].total_seconds, kept[CODING].visits, kept[CODING].total_seconds) == (10, 1, 20)
    assert (kept[MERGED].visits, kept[MERGED].total_seconds, kept[FAILED].visits) == (1, 0, 0)
    _kept_equals_recount(store)
    store.prune_history(before=clock.now + timedelta(days=1))
    assert all(stats.visits == 0 for stats in store.get_stage_stats().values())


def test_deleting_a_saved_pipeline_keeps_its_records_timeline(
    store: StateStore, clock: Clock, project: Project
) -> None:
    pipeline = store.create_pipeline(project.id, 1, "t", "b")
    clock.advance(15)
    store.save_to_history(store.update_pipeline(pipeline.id, state=MERGED))
    store.delete_pipeline(pipeline.id)
    assert [t.to_state for t in store.get_timeline(pipeline.id)] == [QUEUED, MERGED]
    assert store.get_stage_stats(project.id)[QUEUED].total_seconds == 15
    _kept_equals_recount(store)
    store.prune_history(before=clock.now + timedelta(days=1))
    assert all(stats.visits == 0 for stats in store.get_stage_stats().values())
