"""Timelines in bulk: get_timelines reads many runs' timelines one query per 1,000 ids."""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

import pytest

import vibecc.state_store.store as store_module
from vibecc.state_store import (
    PipelineState,
    Project,
    StateStore,
    ValidationError,
)
from vibecc.state_store.store import MAX_BATCH

if TYPE_CHECKING:
    from tests import helpers
else:
    import helpers

QUEUED, CODING, TESTING, REVIEW, MERGED, FAILED = PipelineState


@pytest.fixture
def project(store: StateStore) -> Project:
    return store.create_project("Timelines", "acme/timelines")


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> list[datetime]:
    """The store's clock, moved on by 7.25 s at each reading, so every visit has a length."""
    moment = [helpers.T0]

    def now() -> datetime:
        moment[0] += timedelta(seconds=7.25)
        return moment[0]

    monkeypatch.setattr(store_module, "now", now)
    return moment


def walk(store: StateStore, project: Project, ticket: int, *states: PipelineState) -> str:
    """A pipeline of `project` moved through `states` in turn; its id."""
    pipeline = store.create_pipeline(project.id, ticket, f"ticket {ticket}", f"vibecc/{ticket}")
    for n, state in enumerate(states):
        store.update_pipeline(pipeline.id, state=state, retry_count_ci=n, feedback=f"step {n}")
    return pipeline.id


# -- get_timelines ------------------------------------------------------------------------------


def test_get_timelines_gives_each_id_what_get_timeline_gives(
    store: StateStore, project: Project, clock: list[datetime]
) -> None:
    active = walk(store, project, 1, CODING, TESTING)
    archived = walk(store, project, 2, CODING, REVIEW, MERGED)
    store.archive_pipeline(archived)
    saved = walk(store, project, 3, CODING, FAILED)  # in history, and still active
    store.save_to_history(store.get_pipeline(saved))
    [imported] = helpers.import_at(store, project.id, [0])  # a run imported without a timeline
    unknown = str(uuid.uuid4())

    found = store.get_timelines([active, archived, saved, imported.id, unknown, active])
    assert set(found) == {active, archived, saved, imported.id, unknown}
    for pipeline_id in (active, archived, saved, imported.id):
        assert found[pipeline_id] == tuple(store.get_timeline(pipeline_id))
    assert len(found[archived]) == 4
    assert found[active][-1].seconds_in_state is None  # open while active
    assert found[archived][-1].seconds_in_state is not None
    assert found[imported.id] == found[unknown] == ()
    assert store.get_timelines([]) == {}


def test_get_timelines_takes_up_to_max_batch_ids(store: StateStore) -> None:
    ids = (f"id-{n}" for n in range(MAX_BATCH))
    assert len(store.get_timelines(ids)) == MAX_BATCH
    with pytest.raises(ValidationError, match=f"at most {MAX_BATCH:,} ids"):
        store.get_timelines(f"id-{n}" for n in range(MAX_BATCH + 1))


@pytest.mark.parametrize(
    ("bad", "fragment"),
    [
        (None, "pipeline_ids must be an iterable of ids, got NoneType"),
        (7, "got int"),
        ("3f2a-one-id", "got str"),
        (b"bytes", "got bytes"),
        ([None], r"pipeline_ids\[0\] must be a str"),
        (["ok", True], r"pipeline_ids\[1\] must be a str"),
        ([b"id"], "must be a str, got bytes"),
        (["x" * 37], "at most 36 characters"),
        ([""], "must not be empty"),
        (["a\x00b"], "NUL"),
        (["\ud800"], "not valid Unicode"),
    ],
)
def test_get_timelines_refuses_what_is_not_ids(store: StateStore, bad: Any, fragment: str) -> None:
    with pytest.raises(ValidationError, match=fragment):
        store.get_timelines(bad)
