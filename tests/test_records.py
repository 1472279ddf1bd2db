"""Records handed to callers (frozen, slotted, exact fields, UTC) and the exception hierarchy."""

from __future__ import annotations

import dataclasses
import sys
import uuid
from datetime import UTC, datetime, timedelta, timezone
from enum import StrEnum
from typing import TYPE_CHECKING, Any

import pytest

from vibecc.state_store import (
    AlreadyExistsError,
    CopyVerificationError,
    DurationPercentiles,
    HistoryCursor,
    HistoryNotFoundError,
    HistoryPage,
    HistoryStats,
    ImportResult,
    NotFoundError,
    Pipeline,
    PipelineExistsError,
    PipelineHistory,
    PipelineNotFoundError,
    PipelineState,
    Project,
    ProjectExistsError,
    ProjectHasActivePipelinesError,
    ProjectNotFoundError,
    SchemaVersionError,
    StaleVersionError,
    StateStore,
    StateStoreError,
    StorageError,
    TargetNotEmptyError,
    ValidationError,
)

if TYPE_CHECKING:
    from tests import helpers
else:
    import helpers

PROJECT_FIELDS = (
    "id",
    "name",
    "repo",
    "base_branch",
    "github_project_id",
    "max_retries_ci",
    "max_retries_review",
    "created_at",
    "updated_at",
)
PIPELINE_FIELDS = (
    "id",
    "project_id",
    "ticket_id",
    "ticket_title",
    "ticket_body",
    "state",
    "branch_name",
    "pr_id",
    "pr_url",
    "retry_count_ci",
    "retry_count_review",
    "feedback",
    "created_at",
    "updated_at",
    "version",
)
HISTORY_FIELDS = (
    "id",
    "project_id",
    "ticket_id",
    "ticket_title",
    "final_state",
    "branch_name",
    "pr_id",
    "pr_url",
    "total_retries_ci",
    "total_retries_review",
    "started_at",
    "completed_at",
    "duration_seconds",
)
NOW = datetime(2025, 3, 4, 5, 6, 7, tzinfo=UTC)
# Setting a name that is not a field of a frozen slotted dataclass raises AttributeError from
# Python 3.12 on; Python 3.11's generated __setattr__ calls super() with the pre-slots class and
# raises TypeError instead (CPython gh-90055). Either way nothing is written.
NOT_SETTABLE = (AttributeError, TypeError) if sys.version_info < (3, 12) else AttributeError


def sample_records() -> list[Any]:
    project = Project("p", "n", "acme/x", "main", None, 3, 3, NOW, NOW)
    pipeline = Pipeline(
        "i", "p", "1", "t", "", PipelineState.QUEUED, "b", None, None, 0, 0, None, NOW, NOW, 1
    )
    record = helpers.history_record(project_id="p")
    return [
        project,
        pipeline,
        record,
        HistoryStats(0, 0, 0, 0.0, 0.0, 0.0),
        HistoryCursor(NOW, "i"),
        HistoryPage((record,), None),
        DurationPercentiles(None, None),
        ImportResult(1, 0),
    ]


@pytest.mark.parametrize("record", sample_records(), ids=lambda r: type(r).__name__)
def test_records_are_frozen_dataclasses_with_slots(record: Any) -> None:
    first = dataclasses.fields(record)[0].name

    with pytest.raises(dataclasses.FrozenInstanceError, match=f"cannot assign to field '{first}'"):
        setattr(record, first, getattr(record, first))
    with pytest.raises(dataclasses.FrozenInstanceError, match=f"cannot delete field '{first}'"):
        delattr(record, first)
    with pytest.raises(NOT_SETTABLE):
        record.not_a_field = 1
    assert "__slots__" in type(record).__dict__
    assert not hasattr(record, "__dict__")


@pytest.mark.parametrize(
    ("cls", "names"),
    [(Project, PROJECT_FIELDS), (Pipeline, PIPELINE_FIELDS), (PipelineHistory, HISTORY_FIELDS)],
)
def test_record_field_names(cls: type, names: tuple[str, ...]) -> None:
    assert tuple(f.name for f in dataclasses.fields(cls)) == names


def test_state_aliases_are_read_only() -> None:
    pipeline, record = sample_records()[1:3]

    assert pipeline.pipeline_state is pipeline.state is PipelineState.QUEUED
    assert record.final_pipeline_state is record.final_state is PipelineState.MERGED
    for cls, alias in ((Pipeline, "pipeline_state"), (PipelineHistory, "final_pipeline_state")):
        attribute = cls.__dict__[alias]
        assert isinstance(attribute, property)
        assert attribute.fset is None
        assert attribute.fdel is None
    with pytest.raises(NOT_SETTABLE):
        pipeline.pipeline_state = PipelineState.FAILED
    with pytest.raises(NOT_SETTABLE):
        record.final_pipeline_state = PipelineState.FAILED
    assert pipeline.state is PipelineState.QUEUED
    assert record.final_state is PipelineState.MERGED


def test_pipeline_state_is_a_str_enum() -> None:
    assert issubclass(PipelineState, StrEnum)
    assert [s.value for s in PipelineState] == ["queued", "coding", "testing", "review", "merged", "failed"]
    queued: str = "queued"
    assert queued == PipelineState.QUEUED
    assert PipelineState.QUEUED in {"queued"}
    assert PipelineState("merged") is PipelineState.MERGED
    assert f"{PipelineState.REVIEW}" == "review"
    with pytest.raises(ValueError, match="QUEUED"):
        PipelineState("QUEUED")


@pytest.mark.parametrize(("state", "terminal"), [(s, s.value in ("merged", "failed")) for s in PipelineState])
def test_is_terminal(state: PipelineState, terminal: bool) -> None:
    assert state.is_terminal is terminal
    assert (state in PipelineState.active()) is not terminal


def test_success_rate() -> None:
    assert HistoryStats(4, 3, 1, 1.0, 0.0, 0.0).success_rate == 0.75
    assert HistoryStats(3, 0, 3, 1.0, 0.0, 0.0).success_rate == 0.0
    assert HistoryStats(0, 0, 0, 0.0, 0.0, 0.0).success_rate == 0.0


def test_every_datetime_handed_out_is_utc(store: StateStore) -> None:
    project = store.create_project("Acme", "acme/widgets")
    project = store.update_project(project.id, name="Acme 2")
    kept = store.create_pipeline(project.id, 1, "t", "b")
    kept = store.update_pipeline(kept.id, state="coding")
    archived = store.create_pipeline(project.id, 2, "t", "b")
    store.update_pipeline(archived.id, state="merged")
    record = store.archive_pipeline(archived.id)
    berlin = timezone(timedelta(hours=2))
    imported = dataclasses.replace(
        helpers.history_record(project_id=project.id, completed_at=NOW.astimezone(berlin)),
        started_at=(NOW - timedelta(hours=1)).astimezone(berlin),
    )
    store.import_history([imported])
    claimed = store.create_pipeline(project.id, 3, "t", "b")

    stamps: list[datetime] = [
        project.created_at,
        project.updated_at,
        *(d for p in store.list_projects() for d in (p.created_at, p.updated_at)),
        *(d for p in store.list_pipelines() for d in (p.created_at, p.updated_at)),
        kept.updated_at,
        record.started_at,
        record.completed_at,
        *(d for h in store.get_history() for d in (h.started_at, h.completed_at)),
        *(d for h in store.iter_history() for d in (h.started_at, h.completed_at)),
        store.get_history_record(imported.id).completed_at,
        store.get_pipeline_by_ticket(project.id, 1).created_at,
        store.get_project_by_repo("acme/widgets").updated_at,
    ]
    claim = store.claim_pipeline()
    assert claim is not None
    assert claim.id == claimed.id
    stamps += [claim.created_at, claim.updated_at]

    assert all(helpers.is_utc(s) for s in stamps), stamps
    assert store.get_history_record(imported.id).completed_at == NOW
    assert store.get_history_record(imported.id).started_at == NOW - timedelta(hours=1)


ERROR_PARENTS: list[tuple[type[Exception], tuple[type[Exception], ...]]] = [
    (NotFoundError, (StateStoreError,)),
    (ProjectNotFoundError, (NotFoundError, StateStoreError)),
    (PipelineNotFoundError, (NotFoundError, StateStoreError)),
    (HistoryNotFoundError, (NotFoundError, StateStoreError)),
    (AlreadyExistsError, (StateStoreError,)),
    (ProjectExistsError, (AlreadyExistsError, StateStoreError)),
    (PipelineExistsError, (AlreadyExistsError, StateStoreError)),
    (ValidationError, (StateStoreError, ValueError)),
    (ProjectHasActivePipelinesError, (StateStoreError,)),
    (StaleVersionError, (StateStoreError,)),
    (SchemaVersionError, (StateStoreError,)),
    (StorageError, (StateStoreError,)),
    (TargetNotEmptyError, (StateStoreError,)),
    (CopyVerificationError, (StateStoreError,)),
    (StateStoreError, (Exception,)),
]


@pytest.mark.parametrize(("error", "parents"), ERROR_PARENTS, ids=lambda e: getattr(e, "__name__", ""))
def test_error_hierarchy(error: type[Exception], parents: tuple[type[Exception], ...]) -> None:
    assert all(issubclass(error, parent) for parent in parents)
    assert error.__doc__


def test_not_found_errors_are_distinct() -> None:
    assert not issubclass(ProjectNotFoundError, PipelineNotFoundError)
    assert not issubclass(PipelineExistsError, ProjectExistsError)
    assert not issubclass(ValidationError, NotFoundError)


def test_error_messages_name_what_and_which(store: StateStore) -> None:
    project = store.create_project("Acme", "acme/widgets")
    pipeline = store.create_pipeline(project.id, "PROJ-9", "t", "b")
    missing = str(uuid.uuid4())
    cases: list[tuple[type[Exception], str, Any]] = [
        (ProjectNotFoundError, missing, lambda: store.get_project(missing)),
        (ProjectNotFoundError, "acme/none", lambda: store.get_project_by_repo("acme/none")),
        (PipelineNotFoundError, missing, lambda: store.update_pipeline(missing, feedback="x")),
        (HistoryNotFoundError, missing, lambda: store.get_history_record(missing)),
        (ProjectExistsError, "acme/widgets", lambda: store.create_project("x", "acme/widgets")),
        (PipelineExistsError, "PROJ-9", lambda: store.create_pipeline(project.id, "PROJ-9", "t", "b")),
        (ProjectHasActivePipelinesError, project.id, lambda: store.delete_project(project.id)),
        (
            StaleVersionError,
            pipeline.id,
            lambda: store.update_pipeline(pipeline.id, feedback="x", expected_version=5),
        ),
        (ValidationError, "max_retries_ci", lambda: store.create_project("x", "acme/y", max_retries_ci=-4)),
        (ValidationError, "-4", lambda: store.create_project("x", "acme/y", max_retries_ci=-4)),
        (ValidationError, "pr_url", lambda: store.update_pipeline(pipeline.id, pr_url="ftp://host/x")),
        (ValidationError, "ftp://host/x", lambda: store.update_pipeline(pipeline.id, pr_url="ftp://host/x")),
        (ValidationError, "branch_name", lambda: store.create_pipeline(project.id, 1, "t", "a..b")),
        (ValidationError, "a..b", lambda: store.create_pipeline(project.id, 1, "t", "a..b")),
        (ValidationError, "state", lambda: store.update_pipeline(pipeline.id, state="done")),
        (ValidationError, "done", lambda: store.update_pipeline(pipeline.id, state="done")),
        (ValidationError, "repo", lambda: store.create_project("x", "not-a-repo")),
        (ValidationError, "not-a-repo", lambda: store.create_project("x", "not-a-repo")),
    ]
    for error, needle, call in cases:
        with pytest.raises(error) as caught:
            call()
        assert needle in str(caught.value), (error, needle, str(caught.value))
