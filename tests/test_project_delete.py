"""Deleting a project: refused while a pipeline is active, otherwise its finished pipelines are
archived, its history and stats stay, and its name and repo are kept among the deleted projects."""

from __future__ import annotations

import threading
import uuid
from typing import TYPE_CHECKING

import pytest
from sqlalchemy import create_engine, text

from vibecc.state_store import (
    PipelineState,
    ProjectHasActivePipelinesError,
    ProjectNotFoundError,
    StateStore,
)

if TYPE_CHECKING:
    from tests import helpers
    from tests.conftest import PostgresServer
else:
    import helpers


def test_delete_project_without_pipelines(store: StateStore) -> None:
    project = store.create_project("Acme", "acme/widgets")
    other = store.create_project("Other", "acme/other")

    store.delete_project(project.id)

    with pytest.raises(ProjectNotFoundError):
        store.get_project(project.id)
    assert store.list_projects() == [other]


def test_delete_project_unknown_id_raises(store: StateStore) -> None:
    missing = str(uuid.uuid4())

    with pytest.raises(ProjectNotFoundError, match=missing):
        store.delete_project(missing)


@pytest.mark.parametrize("state", PipelineState.active())
def test_delete_project_with_active_pipeline_raises(store: StateStore, state: PipelineState) -> None:
    project = store.create_project("Acme", "acme/widgets")
    finished = store.create_pipeline(project.id, 1, "done", "b1")
    finished = store.update_pipeline(finished.id, state=PipelineState.MERGED)
    active = store.create_pipeline(project.id, 2, "busy", "b2")
    active = store.update_pipeline(active.id, state=state)

    with pytest.raises(ProjectHasActivePipelinesError, match=project.id):
        store.delete_project(project.id)

    assert store.get_project(project.id) == project
    assert store.get_pipeline(active.id) == active
    assert store.get_pipeline(finished.id) == finished
    assert store.count_history() == 0


def test_delete_project_archives_finished_pipelines(store: StateStore) -> None:
    project = store.create_project("Acme", "acme/widgets")
    merged = store.create_pipeline(project.id, 1, "one", "b1")
    merged = store.update_pipeline(merged.id, state="merged", pr_id=11, retry_count_ci=2)
    failed = store.create_pipeline(project.id, 2, "two", "b2")
    failed = store.update_pipeline(failed.id, state="failed", retry_count_review=3)
    saved = store.save_to_history(failed)
    other = store.create_project("Other", "acme/other")
    other_pipeline = store.create_pipeline(other.id, 1, "other", "b")

    store.delete_project(project.id)

    assert store.list_pipelines() == [other_pipeline]
    history = store.get_history(project_id=project.id)
    assert {r.id for r in history} == {merged.id, failed.id}
    assert store.get_history_record(failed.id) == saved
    archived = store.get_history_record(merged.id)
    assert (archived.final_state, archived.pr_id, archived.total_retries_ci) == (PipelineState.MERGED, 11, 2)
    assert archived.started_at == merged.created_at
    assert store.get_history_stats(project.id) == helpers.stats_of(history)
    assert store.get_history_stats() == helpers.stats_of(store.get_history())


def test_delete_project_keeps_its_history_and_stats(store: StateStore) -> None:
    project = store.create_project("Acme", "acme/widgets")
    for ticket, state in [(1, "merged"), (2, "failed"), (3, "merged")]:
        pipeline = store.create_pipeline(project.id, ticket, "t", f"b{ticket}")
        store.update_pipeline(pipeline.id, state=state, retry_count_ci=ticket)
        store.archive_pipeline(pipeline.id)
    history = store.get_history(project_id=project.id)
    stats = store.get_history_stats(project.id)

    store.delete_project(project.id)

    assert store.get_history(project_id=project.id) == history
    assert store.get_history_stats(project.id) == stats == helpers.stats_of(history)
    assert stats.total_completed == 3


def test_deleted_projects_keep_their_name_and_repo(store: StateStore) -> None:
    kept = store.create_project("Kept", "acme/kept")
    gone = store.create_project("Gone", "acme/gone")
    assert store.list_deleted_projects() == []

    store.delete_project(gone.id)

    [deleted] = store.list_deleted_projects()
    assert (deleted.id, deleted.name, deleted.repo) == (gone.id, "Gone", "acme/gone")
    assert helpers.is_utc(deleted.deleted_at)
    assert deleted.deleted_at >= gone.created_at
    assert store.list_projects() == [kept]


def test_a_refused_delete_records_no_deleted_project(store: StateStore) -> None:
    project = store.create_project("Acme", "acme/widgets")
    store.create_pipeline(project.id, 1, "t", "b")

    with pytest.raises(ProjectHasActivePipelinesError):
        store.delete_project(project.id)

    assert store.list_deleted_projects() == []
    assert store.get_project(project.id) == project


def test_repo_can_be_reused_after_delete(store: StateStore) -> None:
    project = store.create_project("Acme", "acme/widgets")
    store.delete_project(project.id)

    again = store.create_project("Acme again", "acme/widgets")

    assert again.id != project.id
    assert store.get_project_by_repo("acme/widgets") == again


def test_delete_project_keeps_a_pipeline_that_turned_active_meanwhile(pg_server: PostgresServer) -> None:
    """A finished pipeline moved back to work while delete_project runs is neither archived
    nor deleted: the delete re-checks the state under the row lock and gives up."""
    # PostgreSQL only: on SQLite writes queue whole, so no writer gets in between.
    store_url = pg_server.create_database()
    store = StateStore(store_url)
    project = store.create_project("Acme", "acme/widgets")
    pipeline = store.create_pipeline(project.id, 1, "t", "b")
    store.update_pipeline(pipeline.id, state=PipelineState.FAILED)
    other = create_engine(store_url, pool_size=2)
    outcome: list[BaseException | None] = []
    try:
        with other.connect() as conn:
            conn.execute(
                text("UPDATE pipelines SET state = 'coding', version = version + 1 WHERE id = :id"),
                {"id": pipeline.id},
            )

            def delete() -> None:
                try:
                    store.delete_project(project.id)
                    outcome.append(None)
                except BaseException as exc:
                    outcome.append(exc)

            worker = threading.Thread(target=delete)
            worker.start()
            helpers.until(
                lambda: helpers.store_backends(store_url, waiting_on_lock=True),
                "the store's delete to wait on the row lock",
            )
            conn.commit()
            worker.join(30)
    finally:
        other.dispose()
    assert len(outcome) == 1, outcome
    assert isinstance(outcome[0], ProjectHasActivePipelinesError), outcome
    assert store.get_pipeline(pipeline.id).state == PipelineState.CODING
    assert store.get_project(project.id) == project
    assert store.count_history() == 0
    store.close()
