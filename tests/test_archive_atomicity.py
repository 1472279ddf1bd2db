"""archive_pipeline and delete_project are one transaction: a failure part-way changes nothing.

The failure is injected into the query functions store.py calls after deleting the pipeline
rows (queries.history.insert): either instead of the history insert, right after it, or in
the stats update it makes (queries.stats.bump).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import pytest

from vibecc.state_store import Pipeline, PipelineState, Project, StateStore
from vibecc.state_store.queries import history, stats

if TYPE_CHECKING:
    from tests import helpers
else:
    import helpers

INJECTED = "injected failure"


def _fail(*args: Any, **kwargs: Any) -> Any:
    raise RuntimeError(INJECTED)


def _insert_then_fail(real: Callable[..., Any]) -> Callable[..., Any]:
    def insert(*args: Any, **kwargs: Any) -> Any:
        real(*args, **kwargs)
        raise RuntimeError(INJECTED)

    return insert


def inject(monkeypatch: pytest.MonkeyPatch, where: str) -> None:
    if where == "instead_of_history_insert":
        monkeypatch.setattr(history, "insert", _fail)
    elif where == "after_history_insert":
        monkeypatch.setattr(history, "insert", _insert_then_fail(history.insert))
    else:
        monkeypatch.setattr(stats, "bump", _fail)


WHERE = ["instead_of_history_insert", "after_history_insert", "in_stats_update"]


@pytest.fixture
def project(store: StateStore) -> Project:
    project = store.create_project("Acme", "acme/widgets")
    # Some history already, so "stats unchanged" is not just "stats still zero".
    for ticket, state in [(100, "merged"), (101, "failed")]:
        earlier = store.create_pipeline(project.id, ticket, "earlier", "b")
        store.update_pipeline(earlier.id, state=state, retry_count_ci=2)
        store.archive_pipeline(earlier.id)
    return project


def finished(store: StateStore, project: Project, ticket: int, state: str) -> Pipeline:
    pipeline = store.create_pipeline(project.id, ticket, "t", f"b{ticket}")
    return store.update_pipeline(pipeline.id, state=state, pr_id=ticket, retry_count_review=1)


@pytest.mark.parametrize("where", WHERE)
def test_failed_archive_changes_nothing(
    store: StateStore, store_url: str, project: Project, monkeypatch: pytest.MonkeyPatch, where: str
) -> None:
    pipeline = finished(store, project, 1, "merged")
    stats = store.get_history_stats()
    history = store.get_history()
    before = helpers.snapshot(store_url)
    inject(monkeypatch, where)

    with pytest.raises(RuntimeError, match=INJECTED):
        store.archive_pipeline(pipeline.id)

    monkeypatch.undo()
    assert store.get_pipeline(pipeline.id) == pipeline
    assert store.count_history() == 2
    assert store.get_history() == history
    assert store.get_history_stats() == stats
    assert store.get_history_stats(project.id) == helpers.stats_of(history)
    assert helpers.snapshot(store_url) == before
    # The store is still usable, and the same archive now goes through.
    record = store.archive_pipeline(pipeline.id)
    assert record.id == pipeline.id
    assert store.get_history_stats() == helpers.stats_of(store.get_history())


@pytest.mark.parametrize("where", WHERE)
def test_failed_archive_of_saved_pipeline_changes_nothing(
    store: StateStore, store_url: str, project: Project, monkeypatch: pytest.MonkeyPatch, where: str
) -> None:
    pipeline = finished(store, project, 1, "failed")
    saved = store.save_to_history(pipeline)
    stats = store.get_history_stats()
    before = helpers.snapshot(store_url)
    inject(monkeypatch, where)

    with pytest.raises(RuntimeError, match=INJECTED):
        store.archive_pipeline(pipeline.id)

    monkeypatch.undo()
    assert store.get_pipeline(pipeline.id).version == pipeline.version
    assert store.get_history_record(pipeline.id) == saved
    assert store.get_history_stats() == stats
    assert helpers.snapshot(store_url) == before


@pytest.mark.parametrize("where", WHERE)
def test_failed_save_to_history_changes_nothing(
    store: StateStore, store_url: str, project: Project, monkeypatch: pytest.MonkeyPatch, where: str
) -> None:
    pipeline = finished(store, project, 1, "merged")
    before = helpers.snapshot(store_url)
    inject(monkeypatch, where)

    with pytest.raises(RuntimeError, match=INJECTED):
        store.save_to_history(pipeline)

    monkeypatch.undo()
    assert helpers.snapshot(store_url) == before


@pytest.mark.parametrize("where", WHERE)
def test_failed_delete_project_changes_nothing(
    store: StateStore, store_url: str, project: Project, monkeypatch: pytest.MonkeyPatch, where: str
) -> None:
    merged = finished(store, project, 1, "merged")
    failed = finished(store, project, 2, "failed")
    stats = store.get_history_stats()
    before = helpers.snapshot(store_url)
    inject(monkeypatch, where)

    with pytest.raises(RuntimeError, match=INJECTED):
        store.delete_project(project.id)

    monkeypatch.undo()
    assert store.get_project(project.id) == project
    assert store.list_pipelines(project_id=project.id) == [failed, merged]
    assert {p.state for p in store.list_pipelines()} == {PipelineState.MERGED, PipelineState.FAILED}
    assert store.count_history() == 2
    assert store.get_history_stats() == stats
    assert helpers.snapshot(store_url) == before
    store.delete_project(project.id)
    assert store.count_history() == 4
    assert store.get_history_stats() == helpers.stats_of(store.get_history())


@pytest.mark.parametrize("where", WHERE)
def test_failed_import_batch_changes_nothing(
    store: StateStore, store_url: str, project: Project, monkeypatch: pytest.MonkeyPatch, where: str
) -> None:
    records = [helpers.history_record(project_id=project.id, duration_seconds=d) for d in (1, 2, 3)]
    before = helpers.snapshot(store_url)
    inject(monkeypatch, where)

    with pytest.raises(RuntimeError, match=INJECTED):
        store.import_history(records, batch_size=10)

    monkeypatch.undo()
    assert helpers.snapshot(store_url) == before
