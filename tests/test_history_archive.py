"""History writes from pipelines: save_to_history and archive_pipeline copy the stored pipeline,
once (the history id is the pipeline id), and only a finished one."""

from __future__ import annotations

import uuid
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING

import pytest

from vibecc.state_store import (
    HistoryNotFoundError,
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


def test_save_to_history_copies_pipeline(store: StateStore, project: Project) -> None:
    pipeline = helpers.finished(
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
    pipeline = helpers.finished(store, project, 1, state="failed")
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
    pipeline = helpers.finished(store, project, 1, retry_count_ci=4)

    first = store.save_to_history(pipeline)
    second = store.save_to_history(pipeline)
    third = store.save_to_history(store.update_pipeline(pipeline.id, state="failed"))

    assert first == second == third
    assert store.count_history() == 1
    assert store.get_history_stats() == helpers.stats_of([first])
    assert store.get_history_stats().avg_retries_ci == 4.0


def test_archive_moves_pipeline_into_history(store: StateStore, project: Project) -> None:
    pipeline = helpers.finished(store, project, 3, state="failed", feedback="tests fail")
    other = helpers.finished(store, project, 4)

    record = store.archive_pipeline(pipeline.id)

    assert (record.id, record.final_state, record.ticket_id) == (pipeline.id, PipelineState.FAILED, "3")
    assert record.started_at == pipeline.created_at
    with pytest.raises(PipelineNotFoundError):
        store.get_pipeline(pipeline.id)
    assert store.list_pipelines() == [other]
    assert store.get_history() == [record]
    assert store.get_history_stats() == helpers.stats_of([record])


def test_archive_unknown_pipeline_raises(store: StateStore, project: Project) -> None:
    pipeline = helpers.finished(store, project, 1)
    store.archive_pipeline(pipeline.id)
    missing = str(uuid.uuid4())

    with pytest.raises(PipelineNotFoundError, match=missing):
        store.archive_pipeline(missing)
    with pytest.raises(PipelineNotFoundError, match=pipeline.id):
        store.archive_pipeline(pipeline.id)
    assert store.count_history() == 1


def test_archive_after_save_keeps_saved_record(store: StateStore, project: Project) -> None:
    pipeline = helpers.finished(store, project, 1, retry_count_ci=1)
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
    helpers.import_at(store, project.id, [0])
    missing = str(uuid.uuid4())

    with pytest.raises(HistoryNotFoundError, match=missing):
        store.get_history_record(missing)


def test_an_archive_whose_saved_record_is_pruned_meanwhile_writes_nothing(
    store: StateStore, project: Project, store_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """PostgreSQL, READ COMMITTED: the insert finds the record saved before (so inserts
    nothing), then a prune commits its deletion before the archive reads it back. The
    archive is refused as stale, with nothing written, never an AssertionError or None."""
    from vibecc.state_store.queries import history as history_queries

    pipeline = helpers.finished(store, project, 1)
    store.save_to_history(pipeline)
    before = helpers.snapshot(store_url)
    monkeypatch.setattr(history_queries, "by_id", lambda conn, history_id: None)

    with pytest.raises(StaleVersionError, match="pruned during the archive; nothing written"):
        store.archive_pipeline(pipeline.id)

    monkeypatch.undo()
    assert helpers.snapshot(store_url) == before
    assert store.get_pipeline(pipeline.id) == pipeline
