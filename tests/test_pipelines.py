"""Active pipelines: create, read, list, update (with optimistic versions), claim, delete."""

from __future__ import annotations

import itertools
import uuid
from dataclasses import replace
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import pytest

import vibecc.state_store.store as store_module
from vibecc.state_store import (
    Pipeline,
    PipelineExistsError,
    PipelineNotFoundError,
    PipelineState,
    Project,
    ProjectNotFoundError,
    StaleVersionError,
    StateStore,
    ValidationError,
)

if TYPE_CHECKING:
    from tests import helpers
else:
    import helpers

FIXED_NOW = datetime(2025, 6, 1, 12, 0, 0, 250000, tzinfo=UTC)


def test_create_pipeline_starts_queued(store: StateStore, project: Project) -> None:
    pipeline = store.create_pipeline(project.id, "17", "Fix the thing", "vibecc/17", ticket_body="Body")

    assert uuid.UUID(pipeline.id)
    assert pipeline.project_id == project.id
    assert (pipeline.ticket_id, pipeline.ticket_title, pipeline.ticket_body) == (
        "17",
        "Fix the thing",
        "Body",
    )
    assert pipeline.branch_name == "vibecc/17"
    assert pipeline.state is PipelineState.QUEUED
    assert (pipeline.retry_count_ci, pipeline.retry_count_review, pipeline.version) == (0, 0, 1)
    assert (pipeline.pr_id, pipeline.pr_url, pipeline.feedback) == (None, None, None)
    assert pipeline.created_at == pipeline.updated_at
    assert helpers.is_utc(pipeline.created_at)
    assert store.get_pipeline(pipeline.id) == pipeline


def test_create_pipeline_default_body_is_empty(store: StateStore, project: Project) -> None:
    pipeline = store.create_pipeline(project.id, 1, "t", "b")

    assert pipeline.ticket_body == ""
    assert pipeline.ticket_id == "1"
    assert store.get_pipeline(pipeline.id).ticket_body == ""


def test_create_pipeline_unknown_project_raises(store: StateStore, project: Project) -> None:
    missing = str(uuid.uuid4())

    with pytest.raises(ProjectNotFoundError, match=missing):
        store.create_pipeline(missing, 1, "t", "b")

    assert store.list_pipelines() == []


@pytest.mark.parametrize(("first", "second"), [(42, "42"), ("42", 42), (42, 42), ("ABC-7", "ABC-7")])
def test_create_pipeline_same_ticket_raises(
    store: StateStore, project: Project, first: str | int, second: str | int
) -> None:
    existing = store.create_pipeline(project.id, first, "t", "b1")

    with pytest.raises(PipelineExistsError, match=str(second)):
        store.create_pipeline(project.id, second, "other", "b2")

    assert store.list_pipelines() == [existing]


def test_same_ticket_in_another_project_is_allowed(store: StateStore, project: Project) -> None:
    other = store.create_project("Other", "acme/other")
    first = store.create_pipeline(project.id, 42, "t", "b")

    second = store.create_pipeline(other.id, 42, "t", "b")

    assert store.get_pipeline_by_ticket(project.id, 42) == first
    assert store.get_pipeline_by_ticket(other.id, "42") == second


def test_ticket_can_start_again_after_archive_or_delete(store: StateStore, project: Project) -> None:
    first = store.create_pipeline(project.id, 42, "t", "b")
    store.update_pipeline(first.id, state=PipelineState.MERGED)
    store.archive_pipeline(first.id)
    second = store.create_pipeline(project.id, 42, "t", "b")
    store.delete_pipeline(second.id)

    third = store.create_pipeline(project.id, "42", "t", "b")

    assert len({first.id, second.id, third.id}) == 3
    assert store.get_pipeline_by_ticket(project.id, 42) == third


def test_get_pipeline_unknown_id_raises(store: StateStore, project: Project) -> None:
    store.create_pipeline(project.id, 1, "t", "b")
    missing = str(uuid.uuid4())

    with pytest.raises(PipelineNotFoundError, match=missing):
        store.get_pipeline(missing)


@pytest.mark.parametrize("ticket", [1, "1"])
def test_get_pipeline_by_ticket(store: StateStore, project: Project, ticket: int | str) -> None:
    pipeline = store.create_pipeline(project.id, 1, "t", "b")
    store.create_pipeline(project.id, 2, "t", "b")

    assert store.get_pipeline_by_ticket(project.id, ticket) == pipeline


def test_get_pipeline_by_ticket_unknown_raises(store: StateStore, project: Project) -> None:
    store.create_pipeline(project.id, 1, "t", "b")

    with pytest.raises(PipelineNotFoundError, match="'2'"):
        store.get_pipeline_by_ticket(project.id, 2)
    with pytest.raises(PipelineNotFoundError, match="'1'"):
        store.get_pipeline_by_ticket(str(uuid.uuid4()), 1)


def test_list_pipelines_newest_first_with_filters(store: StateStore, project: Project) -> None:
    other = store.create_project("Other", "acme/other")
    made: list[Pipeline] = []
    for ticket in range(6):
        owner = project if ticket % 2 == 0 else other
        made.append(store.create_pipeline(owner.id, ticket, "t", "b"))
    made[1] = store.update_pipeline(made[1].id, state="coding")
    made[4] = store.update_pipeline(made[4].id, state=PipelineState.CODING)
    newest_first = sorted(made, key=lambda p: (p.created_at, p.id), reverse=True)

    assert store.list_pipelines() == newest_first
    assert store.list_pipelines(project_id=project.id) == [
        p for p in newest_first if p.project_id == project.id
    ]
    assert store.list_pipelines(state="coding") == [made[4], made[1]]
    assert store.list_pipelines(state=PipelineState.QUEUED) == [
        p for p in newest_first if p.state is PipelineState.QUEUED
    ]
    assert store.list_pipelines(project_id=other.id, state="coding") == [made[1]]
    assert store.list_pipelines(project_id=other.id, state="merged") == []


def test_list_pipelines_ties_broken_by_id_desc(
    store: StateStore, project: Project, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(store_module, "now", lambda: FIXED_NOW)
    made = [store.create_pipeline(project.id, ticket, "t", "b") for ticket in range(8)]

    listed = store.list_pipelines()

    assert {p.created_at for p in listed} == {FIXED_NOW}
    assert [p.id for p in listed] == sorted((p.id for p in made), reverse=True)


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("state", PipelineState.TESTING),
        ("pr_id", 123),
        ("pr_url", "https://github.com/acme/widgets/pull/123"),
        ("retry_count_ci", 2),
        ("retry_count_review", 5),
        ("feedback", "CI failed:\nline 2"),
    ],
)
def test_update_pipeline_changes_only_given_field(
    store: StateStore, project: Project, field: str, value: Any
) -> None:
    pipeline = store.create_pipeline(project.id, 1, "t", "b", ticket_body="body")
    bystander = store.create_pipeline(project.id, 2, "t", "b")

    updated = store.update_pipeline(pipeline.id, **{field: value})

    expected = replace(pipeline, **{field: value}, version=2, updated_at=updated.updated_at)
    assert updated == expected
    assert updated.updated_at > pipeline.updated_at
    assert store.get_pipeline(pipeline.id) == updated
    assert store.get_pipeline(bystander.id) == bystander


def test_update_pipeline_state_accepts_value_string(store: StateStore, project: Project) -> None:
    pipeline = store.create_pipeline(project.id, 1, "t", "b")

    updated = store.update_pipeline(pipeline.id, state="review")

    assert updated.state is PipelineState.REVIEW


@pytest.mark.parametrize("field", ["pr_id", "pr_url", "feedback"])
def test_update_pipeline_none_clears(store: StateStore, project: Project, field: str) -> None:
    pipeline = store.create_pipeline(project.id, 1, "t", "b")
    store.update_pipeline(pipeline.id, pr_id=9, pr_url="http://example.com/pr/9", feedback="bad")
    clear: dict[str, Any] = {field: None}

    cleared = store.update_pipeline(pipeline.id, **clear)

    assert getattr(cleared, field) is None
    assert cleared.version == 3
    stored = store.get_pipeline(pipeline.id)
    assert stored == cleared
    others = {"pr_id": 9, "pr_url": "http://example.com/pr/9", "feedback": "bad"}
    del others[field]
    assert {name: getattr(stored, name) for name in others} == others


def test_every_update_moves_version_and_updated_at(store: StateStore, project: Project) -> None:
    pipeline = store.create_pipeline(project.id, 1, "t", "b")
    seen = [pipeline]
    for count in range(5):
        seen.append(store.update_pipeline(pipeline.id, retry_count_ci=count))
    seen.append(store.update_pipeline(pipeline.id, feedback=None))

    assert [p.version for p in seen] == list(range(1, 8))
    stamps = [p.updated_at for p in seen]
    assert stamps == sorted(set(stamps))
    assert {p.created_at for p in seen} == {pipeline.created_at}


def test_update_with_no_field_is_refused_and_writes_nothing(
    store: StateStore, project: Project, store_url: str
) -> None:
    """A write of nothing would move the version and make every other writer stale."""
    pipeline = store.create_pipeline(project.id, 1, "t", "b")
    before = helpers.snapshot(store_url)

    with pytest.raises(ValidationError, match="nothing to update"):
        store.update_pipeline(pipeline.id)
    with pytest.raises(ValidationError, match="nothing to update"):
        store.update_pipeline(pipeline.id, expected_version=pipeline.version)

    assert helpers.snapshot(store_url) == before
    assert store.update_pipeline(pipeline.id, pr_id=3, expected_version=1).version == 2


def test_none_clears_the_nullable_fields_of_a_pipeline(store: StateStore, project: Project) -> None:
    """The orchestrator clears feedback after a success by passing feedback=None."""
    pipeline = store.create_pipeline(project.id, 1, "t", "b")
    filled = store.update_pipeline(
        pipeline.id, pr_id=7, pr_url="https://github.com/acme/widgets/pull/7", feedback="CI failed"
    )

    cleared = store.update_pipeline(pipeline.id, pr_id=None, pr_url=None, feedback=None)

    assert (cleared.pr_id, cleared.pr_url, cleared.feedback) == (None, None, None)
    assert cleared.version == filled.version + 1
    assert store.get_pipeline(pipeline.id) == cleared


def test_any_state_may_follow_any_state(store: StateStore, project: Project) -> None:
    pipeline = store.create_pipeline(project.id, 1, "t", "b")
    version = pipeline.version
    for before, after in itertools.product(PipelineState, repeat=2):
        store.update_pipeline(pipeline.id, state=before)
        updated = store.update_pipeline(pipeline.id, state=after)
        version += 2
        assert (updated.state, updated.version) == (after, version), (before, after)
    assert store.get_pipeline(pipeline.id).version == version


def test_update_with_expected_version(store: StateStore, project: Project) -> None:
    pipeline = store.create_pipeline(project.id, 1, "t", "b")

    updated = store.update_pipeline(pipeline.id, retry_count_ci=1, expected_version=1)

    assert (updated.retry_count_ci, updated.version) == (1, 2)


@pytest.mark.parametrize("expected", [1, 3, 1000])
def test_update_with_stale_version_writes_nothing(
    store: StateStore, project: Project, store_url: str, expected: int
) -> None:
    pipeline = store.create_pipeline(project.id, 1, "t", "b")
    current = store.update_pipeline(pipeline.id, state="coding")
    before = helpers.snapshot(store_url)

    with pytest.raises(
        StaleVersionError, match=rf"{pipeline.id} is at version 2, not the expected {expected}"
    ):
        store.update_pipeline(pipeline.id, state="failed", feedback="x", expected_version=expected)

    assert store.get_pipeline(pipeline.id) == current
    assert helpers.snapshot(store_url) == before


def test_update_unknown_pipeline_raises(store: StateStore, project: Project) -> None:
    missing = str(uuid.uuid4())

    with pytest.raises(PipelineNotFoundError, match=missing):
        store.update_pipeline(missing, state="coding")
    with pytest.raises(PipelineNotFoundError, match=missing):
        store.update_pipeline(missing, state="coding", expected_version=1)


def test_claim_takes_oldest_queued(store: StateStore, project: Project) -> None:
    made = [store.create_pipeline(project.id, ticket, "t", "b") for ticket in range(3)]

    claimed = store.claim_pipeline()

    assert claimed is not None
    assert claimed.id == made[0].id
    assert (claimed.state, claimed.version) == (PipelineState.CODING, 2)
    assert claimed.updated_at > made[0].updated_at
    assert store.get_pipeline(made[0].id) == claimed
    assert store.get_pipeline(made[1].id) == made[1]


def test_claims_go_in_created_order_then_none(store: StateStore, project: Project) -> None:
    made = [store.create_pipeline(project.id, ticket, "t", "b") for ticket in range(4)]

    claimed = [store.claim_pipeline() for _ in range(5)]

    assert [c.id if c else None for c in claimed] == [p.id for p in made] + [None]


def test_claim_with_nothing_to_claim_returns_none(store: StateStore, project: Project) -> None:
    assert store.claim_pipeline() is None
    pipeline = store.create_pipeline(project.id, 1, "t", "b")
    store.update_pipeline(pipeline.id, state="review")

    assert store.claim_pipeline() is None
    assert store.get_pipeline(pipeline.id).version == 2


def test_claim_filters_by_project_and_states(store: StateStore, project: Project) -> None:
    other = store.create_project("Other", "acme/other")
    older = store.create_pipeline(project.id, 1, "t", "b")
    store.update_pipeline(older.id, state="testing")
    mine = store.create_pipeline(other.id, 2, "t", "b")
    store.update_pipeline(mine.id, state="testing")

    claimed = store.claim_pipeline(project_id=other.id, state="testing", new_state=PipelineState.REVIEW)

    assert claimed is not None
    assert (claimed.id, claimed.state, claimed.version) == (mine.id, PipelineState.REVIEW, 3)
    assert store.get_pipeline(older.id).state is PipelineState.TESTING
    assert store.claim_pipeline(project_id=other.id, state="testing") is None


def test_claim_ties_broken_by_id(
    store: StateStore, project: Project, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(store_module, "now", lambda: FIXED_NOW)
    made = [store.create_pipeline(project.id, ticket, "t", "b") for ticket in range(5)]

    claimed = [store.claim_pipeline() for _ in made]

    assert [c.id for c in claimed if c] == sorted(p.id for p in made)


def test_delete_pipeline(store: StateStore, project: Project) -> None:
    pipeline = store.create_pipeline(project.id, 1, "t", "b")
    store.update_pipeline(pipeline.id, state="merged")
    other = store.create_pipeline(project.id, 2, "t", "b")

    store.delete_pipeline(pipeline.id)

    with pytest.raises(PipelineNotFoundError):
        store.get_pipeline(pipeline.id)
    assert store.list_pipelines() == [other]
    assert store.count_history() == 0
    with pytest.raises(PipelineNotFoundError, match=pipeline.id):
        store.delete_pipeline(pipeline.id)


def test_delete_unknown_pipeline_raises(store: StateStore, project: Project) -> None:
    missing = str(uuid.uuid4())

    with pytest.raises(PipelineNotFoundError, match=missing):
        store.delete_pipeline(missing)
