"""The cases of the hostile-input tests (tests/test_bad_input_*.py): each names a call on a small
world (a project with an active pipeline and a history record), the StateStoreError it must
raise and a fragment of its message; check() runs one and proves the database unchanged.
"""

from __future__ import annotations

import enum
import uuid
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import pytest

from vibecc.state_store import Pipeline, PipelineHistory, Project, StateStore, ValidationError

if TYPE_CHECKING:
    from tests import helpers
else:
    import helpers

MISSING = str(uuid.uuid4())
INJECTION = "'; DROP TABLE projects; --"
NAIVE = datetime(2025, 1, 1, 12, 0, 0)
AWARE = datetime(2025, 1, 1, 12, 0, 0, tzinfo=UTC)
OVER_1_MIB = "é" * (2**19 + 1)  # 524,289 characters but 1,048,578 bytes of UTF-8
OVER_1_MIB_ASCII = "x" * (2**20 + 1)
INVALID_BRANCHES = [
    "-x", "a..b", "a b", "a~b", "a^b", "a:b", "a?b", "a*b", "a[b", "a\\b",
    "/a", "a/", "a//b", "a.", ".a", "a/.b", "a.lock", "a@{b", "@", "HEAD",
]  # fmt: skip


class Ref(enum.Enum):
    """Stands for an id of the test's world in a case's arguments."""

    PROJECT = "project"
    PIPELINE = "pipeline"
    HISTORY = "history"


@dataclass(frozen=True)
class World:
    """What each case starts from: a project with an active pipeline (version 2) and history."""

    store: StateStore
    project: Project
    pipeline: Pipeline
    record: PipelineHistory

    def resolve(self, value: Any) -> Any:
        if value is Ref.PROJECT:
            return self.project.id
        if value is Ref.PIPELINE:
            return self.pipeline.id
        if value is Ref.HISTORY:
            return self.record.id
        return value


Action = Callable[[World], object]


def call(method: str, *args: Any, **kwargs: Any) -> Action:
    def run(world: World) -> object:
        result = getattr(world.store, method)(
            *(world.resolve(a) for a in args), **{k: world.resolve(v) for k, v in kwargs.items()}
        )
        # iter_history checks its arguments when iterated.
        return list(result) if method == "iter_history" else result

    return run


def import_changed(changes: dict[str, Any]) -> Action:
    """Import the world's history record under a new id with `changes` applied."""
    return lambda w: w.store.import_history([replace(w.record, **{"id": MISSING, **changes})])


def case(label: str, action: Action, error: type[Exception], match: str) -> Any:
    return pytest.param(action, error, match, id=label)


def bad(label: str, method: str, *args: Any, match: str, **kwargs: Any) -> Any:
    """A case that must raise ValidationError."""
    return case(f"{method}-{label}", call(method, *args, **kwargs), ValidationError, match)


def make_world(store: StateStore) -> World:
    """The world every case starts from: a project with an active pipeline (version 2) and a
    history record."""
    project = store.create_project("Acme", "acme/widgets", github_project_id=3)
    pipeline = store.create_pipeline(project.id, 1, "Active", "vibecc/1", ticket_body="body")
    pipeline = store.update_pipeline(pipeline.id, pr_id=10, pr_url="https://github.com/acme/widgets/pull/10")
    done = store.create_pipeline(project.id, 2, "Done", "vibecc/2")
    store.update_pipeline(done.id, state="merged", retry_count_ci=1)
    record = store.archive_pipeline(done.id)
    return World(store, project, pipeline, record)


def check(store: StateStore, store_url: str, action: Action, error: type[Exception], match: str) -> None:
    """Run `action` on a fresh world: it raises `error` matching `match`, and nothing changed."""
    world = make_world(store)
    before = helpers.snapshot(store_url)

    with pytest.raises(error, match=match):
        action(world)

    assert helpers.snapshot(store_url) == before
    assert world.store.get_pipeline(world.pipeline.id) == world.pipeline
