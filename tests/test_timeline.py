"""Every change of a pipeline's state is a transition, written in the same transaction; the
timeline of an active or archived pipeline; board counts; claims bounded by capacity."""

from __future__ import annotations

import itertools
import threading
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING

import pytest
from sqlalchemy import func, select

from vibecc.state_store import (
    Pipeline,
    PipelineNotFoundError,
    PipelineState,
    Project,
    StaleVersionError,
    StateStore,
    ValidationError,
    migrate,
)
from vibecc.state_store.models import transitions

if TYPE_CHECKING:
    from tests import helpers
else:
    import helpers

QUEUED, CODING, TESTING, REVIEW, MERGED, FAILED = PipelineState


def _rows(store: StateStore, pipeline_id: str) -> int:
    """Transitions stored for a pipeline, counted in the table itself."""
    with store.database.engine.connect() as conn:
        found = conn.execute(
            select(func.count()).select_from(transitions).where(transitions.c.pipeline_id == pipeline_id)
        )
        return int(found.scalar_one())


@pytest.fixture
def project(store: StateStore) -> Project:
    return store.create_project("Timeline", "acme/timeline")


def test_a_new_pipeline_has_one_open_transition_into_queued(store: StateStore, project: Project) -> None:
    pipeline = store.create_pipeline(project.id, 1, "t", "b")
    [first] = store.get_timeline(pipeline.id)
    assert (first.pipeline_id, first.seq, first.from_state, first.to_state) == (pipeline.id, 1, None, QUEUED)
    assert first.at == pipeline.created_at
    assert (first.retry_count_ci, first.retry_count_review, first.feedback) == (0, 0, None)
    assert first.reconstructed is False
    assert first.seconds_in_state is None  # still queued


def test_each_state_change_appends_one_transition_with_the_counters_after_it(
    store: StateStore, project: Project
) -> None:
    pipeline = store.create_pipeline(project.id, 1, "t", "b")
    store.update_pipeline(pipeline.id, state=CODING)
    testing = store.update_pipeline(pipeline.id, state=TESTING, pr_id=7)
    retried = store.update_pipeline(pipeline.id, state=CODING, retry_count_ci=1, feedback="CI failed: lint")
    store.update_pipeline(pipeline.id, state=TESTING)
    done = store.update_pipeline(pipeline.id, state=MERGED, feedback=None)

    timeline = store.get_timeline(pipeline.id)
    assert [(t.seq, t.from_state, t.to_state) for t in timeline] == [
        (1, None, QUEUED),
        (2, QUEUED, CODING),
        (3, CODING, TESTING),
        (4, TESTING, CODING),
        (5, CODING, TESTING),
        (6, TESTING, MERGED),
    ]
    assert timeline[2].at == testing.updated_at
    assert (timeline[3].retry_count_ci, timeline[3].feedback, timeline[3].at) == (
        1,
        "CI failed: lint",
        retried.updated_at,
    )
    assert timeline[4].feedback is None  # feedback is kept only when the write changed it
    assert timeline[5].at == done.updated_at
    # Time in each state runs to the next transition; the last stays open while active.
    for earlier, later in itertools.pairwise(timeline):
        assert earlier.seconds_in_state == (later.at - earlier.at).total_seconds()
    assert timeline[-1].seconds_in_state is None


def test_writes_that_do_not_change_the_state_append_nothing(store: StateStore, project: Project) -> None:
    pipeline = store.create_pipeline(project.id, 1, "t", "b")
    store.update_pipeline(pipeline.id, state=QUEUED)  # the state it is in
    store.update_pipeline(pipeline.id, retry_count_ci=2, feedback="flaky")
    store.update_pipeline(pipeline.id, pr_url="https://github.com/acme/timeline/pull/1")
    assert _rows(store, pipeline.id) == 1
    assert [t.to_state for t in store.get_timeline(pipeline.id)] == [QUEUED]


def test_a_refused_update_appends_nothing(store: StateStore, project: Project) -> None:
    pipeline = store.create_pipeline(project.id, 1, "t", "b")
    store.update_pipeline(pipeline.id, state=CODING)
    with pytest.raises(StaleVersionError):
        store.update_pipeline(pipeline.id, state=TESTING, expected_version=1)
    with pytest.raises(ValidationError):
        store.update_pipeline(pipeline.id, state="shipped")
    assert [t.to_state for t in store.get_timeline(pipeline.id)] == [QUEUED, CODING]


def test_a_claim_is_a_transition(store: StateStore, project: Project) -> None:
    pipeline = store.create_pipeline(project.id, 1, "t", "b")
    claimed = store.claim_pipeline(project_id=project.id)
    assert claimed is not None
    last = store.get_timeline(pipeline.id)[-1]
    assert (last.seq, last.from_state, last.to_state, last.at) == (2, QUEUED, CODING, claimed.updated_at)
    # A claim into the state it comes from changes nothing, so it appends nothing.
    store.claim_pipeline(state=CODING, new_state=CODING)
    assert _rows(store, pipeline.id) == 2


def test_the_timeline_stays_with_the_history_record(store: StateStore, project: Project) -> None:
    pipeline = store.create_pipeline(project.id, 1, "t", "b")
    store.update_pipeline(pipeline.id, state=CODING)
    store.update_pipeline(pipeline.id, state=FAILED, feedback="gave up")
    record = store.archive_pipeline(pipeline.id)

    timeline = store.get_timeline(pipeline.id)
    assert [t.to_state for t in timeline] == [QUEUED, CODING, FAILED]
    assert timeline[-1].feedback == "gave up"
    # Archived: the last state ran until the pipeline was completed.
    assert timeline[-1].seconds_in_state == (record.completed_at - timeline[-1].at).total_seconds()
    assert all(t.seconds_in_state is not None and t.seconds_in_state >= 0 for t in timeline)


def test_deleting_a_pipeline_deletes_its_timeline(store: StateStore, project: Project) -> None:
    pipeline = store.create_pipeline(project.id, 1, "t", "b")
    store.update_pipeline(pipeline.id, state=CODING)
    store.delete_pipeline(pipeline.id)
    assert _rows(store, pipeline.id) == 0
    with pytest.raises(PipelineNotFoundError, match=pipeline.id):
        store.get_timeline(pipeline.id)


def test_pruning_history_deletes_the_pruned_runs_timelines(store: StateStore, project: Project) -> None:
    kept = store.create_pipeline(project.id, 1, "t", "b")
    pruned = store.create_pipeline(project.id, 2, "t", "b")
    for pipeline in (kept, pruned):
        store.update_pipeline(pipeline.id, state=MERGED)
    store.archive_pipeline(pruned.id)
    store.archive_pipeline(kept.id)
    cutoff = store.get_history_record(kept.id).completed_at  # `pruned` completed before it
    assert store.prune_history(before=cutoff) == 1
    assert _rows(store, pruned.id) == 0
    assert _rows(store, kept.id) == 2


@pytest.mark.parametrize("bad", [None, "", 7, b"id", "x" * 37])
def test_get_timeline_refuses_a_bad_id(store: StateStore, bad: object) -> None:
    with pytest.raises(ValidationError):
        store.get_timeline(bad)  # type: ignore[arg-type]


def test_get_timeline_of_an_unknown_id(store: StateStore) -> None:
    with pytest.raises(PipelineNotFoundError, match="no active pipeline or history record nope"):
        store.get_timeline("nope")


def test_count_by_state_counts_every_state_in_one_query(store: StateStore, project: Project) -> None:
    other = store.create_project("Other", "acme/other")
    for n in range(3):
        store.create_pipeline(project.id, n, "t", "b")
    store.create_pipeline(other.id, 1, "t", "b")
    store.claim_pipeline(project_id=project.id)
    store.update_pipeline(store.create_pipeline(project.id, 9, "t", "b").id, state=REVIEW)

    assert store.count_by_state(project.id) == {
        QUEUED: 2,
        CODING: 1,
        TESTING: 0,
        REVIEW: 1,
        MERGED: 0,
        FAILED: 0,
    }
    assert store.count_by_state()[QUEUED] == 3
    assert sum(store.count_by_state().values()) == len(store.list_pipelines()) == 5
    assert store.count_by_state(other.id)[QUEUED] == 1
    assert set(store.count_by_state("unknown").values()) == {0}


def test_claims_stop_at_the_projects_capacity(store: StateStore, project: Project) -> None:
    for n in range(4):
        store.create_pipeline(project.id, n, "t", "b")
    first = store.claim_pipeline(project_id=project.id, max_active=2)
    second = store.claim_pipeline(project_id=project.id, max_active=2)
    assert first is not None
    assert second is not None
    assert store.claim_pipeline(project_id=project.id, max_active=2) is None
    store.update_pipeline(first.id, state=MERGED)  # frees a place
    assert store.claim_pipeline(project_id=project.id, max_active=2) is not None
    assert store.count_by_state(project.id)[QUEUED] == 1


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"max_active": 0}, "max_active must be between 1"),
        ({"max_active": True}, "max_active must be an int"),
        ({"max_active": "2"}, "max_active must be an int"),
    ],
)
def test_claim_capacity_refuses_bad_values(
    store: StateStore, project: Project, kwargs: dict[str, object], message: str
) -> None:
    store.create_pipeline(project.id, 1, "t", "b")
    with pytest.raises(ValidationError, match=message):
        store.claim_pipeline(project_id=project.id, **kwargs)  # type: ignore[arg-type]
    with pytest.raises(ValidationError, match="give project_id"):
        store.claim_pipeline(max_active=1)
    assert store.count_by_state(project.id)[QUEUED] == 1


def test_concurrent_claims_never_exceed_the_capacity(store_url: str) -> None:
    """Eight threads, each on its own connection, claim with max_active=3 at once: three
    claims succeed, whatever the interleaving, and the board never shows more working."""
    with StateStore(store_url, pool_size=8) as store:
        project = store.create_project("Busy", "acme/busy")
        for n in range(12):
            store.create_pipeline(project.id, n, "t", "b")
        start = threading.Barrier(8)

        def claim(_: int) -> bool:
            start.wait()
            return store.claim_pipeline(project_id=project.id, max_active=3) is not None

        with ThreadPoolExecutor(max_workers=8) as pool:
            won = list(pool.map(claim, range(8)))
        assert won.count(True) == 3
        assert store.count_by_state(project.id)[CODING] == 3


def test_concurrent_state_changes_get_consecutive_numbers(store_url: str) -> None:
    with StateStore(store_url, pool_size=4) as store:
        project = store.create_project("Race", "acme/race")
        pipeline = store.create_pipeline(project.id, 1, "t", "b")
        states = [CODING, TESTING, REVIEW] * 10
        start = threading.Barrier(4)

        def change(n: int) -> None:
            start.wait()
            for state in states[n::4]:
                store.update_pipeline(pipeline.id, state=state)

        with ThreadPoolExecutor(max_workers=4) as pool:
            list(pool.map(change, range(4)))
        timeline = store.get_timeline(pipeline.id)
        assert [t.seq for t in timeline] == list(range(1, len(timeline) + 1))
        for earlier, later in itertools.pairwise(timeline):
            assert later.from_state == earlier.to_state != later.to_state
            # A writer that read the clock before waiting for the row lock stamps no earlier.
            assert later.at >= earlier.at
        assert timeline[-1].to_state == store.get_pipeline(pipeline.id).state


def test_upgrading_an_older_store_reconstructs_one_transition_each(fresh_db: object) -> None:
    location = fresh_db()  # type: ignore[operator]
    with StateStore(location) as store:
        project = store.create_project("Old", "acme/old")
        active = store.create_pipeline(project.id, 1, "t", "b")
        active = store.update_pipeline(active.id, state=REVIEW, retry_count_ci=2)
        saved = store.update_pipeline(store.create_pipeline(project.id, 2, "t", "b").id, state=MERGED)
        store.save_to_history(saved)  # in history and still active
        done = store.update_pipeline(store.create_pipeline(project.id, 3, "t", "b").id, state=FAILED)
        record = store.archive_pipeline(done.id)
        imported = helpers.history_record(project_id=project.id)
        store.import_history([imported])
        migrate.downgrade(store.database.engine, "0003")
        migrate.upgrade(store.database.engine)

        for pipeline_id, state, at in [
            (active.id, REVIEW, active.created_at),
            (saved.id, MERGED, saved.created_at),
            (record.id, FAILED, record.started_at),
            (imported.id, imported.final_state, imported.started_at),
        ]:
            [only] = store.get_timeline(pipeline_id)
            assert (only.seq, only.from_state, only.to_state, only.at) == (1, None, state, at)
            assert only.reconstructed is True
        assert store.get_timeline(active.id)[0].retry_count_ci == 2
        # Writing on from there continues the reconstructed timeline.
        store.update_pipeline(active.id, state=MERGED)
        assert [t.from_state for t in store.get_timeline(active.id)] == [None, REVIEW]


def test_a_save_racing_an_archive_returns_the_record_or_not_found(store_url: str) -> None:
    """Under READ COMMITTED the archive may commit the record between the save's look and its
    insert: the save then returns the kept record (or finds the pipeline gone), never fails."""
    with StateStore(store_url, pool_size=4) as store:
        project = store.create_project("Race", "acme/race")
        outcomes: list[str] = []
        for n in range(20):
            pipeline = store.update_pipeline(store.create_pipeline(project.id, n, "t", "b").id, state=MERGED)
            start = threading.Barrier(2)

            def save(pipeline: Pipeline = pipeline, start: threading.Barrier = start) -> None:
                start.wait()
                try:
                    outcomes.append("saved" if store.save_to_history(pipeline).id == pipeline.id else "?")
                except PipelineNotFoundError:
                    outcomes.append("gone")

            def archive(pipeline: Pipeline = pipeline, start: threading.Barrier = start) -> None:
                start.wait()
                store.archive_pipeline(pipeline.id)

            with ThreadPoolExecutor(max_workers=2) as pool:
                for future in [pool.submit(save), pool.submit(archive)]:
                    future.result()
        assert len(outcomes) == 20
        assert set(outcomes) <= {"saved", "gone"}
        assert store.count_history() == 20
