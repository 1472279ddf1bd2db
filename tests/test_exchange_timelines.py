"""Timelines in bulk: get_timelines reads many runs' timelines one query per 1,000 ids, and
import_history(timelines=...) stores them with the records it adds, moving the stage histogram
in the same transaction, so a store copied record by record keeps its timelines and stage stats."""

from __future__ import annotations

import uuid
from dataclasses import replace
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

import pytest
from sqlalchemy import event

import vibecc.state_store.store as store_module
from vibecc.state_store import (
    ImportResult,
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
EVER = datetime.fromisoformat("0001-01-02T00:00:00+00:00")


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


def statements_on_transitions(store: StateStore) -> list[str]:
    """The SQL statements the store sends that read pipeline_transitions, from now on."""
    seen: list[str] = []

    def note(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        if "pipeline_transitions" in statement:
            seen.append(statement)

    event.listen(store.database.engine, "before_cursor_execute", note)
    return seen


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


def test_get_timelines_reads_one_query_per_thousand_ids(store: StateStore, project: Project) -> None:
    records = [
        helpers.history_record(project_id=project.id, completed_at=helpers.T0 + timedelta(minutes=n))
        for n in range(1200)
    ]
    # Every third run has a timeline, so runs with and without one meet at the chunks' edges.
    given = {r.id: helpers.timeline_of(r) for n, r in enumerate(records) if n % 3 == 0}
    assert store.import_history(records, timelines=given) == ImportResult(1200, 0)
    unknown = [str(uuid.uuid4()) for _ in range(1300)]
    ids = [r.id for r in records] + unknown

    seen = statements_on_transitions(store)
    found = store.get_timelines(iter(ids))
    assert len(seen) == 3  # 2,500 ids
    assert set(found) == set(ids)
    assert {key for key, timeline in found.items() if timeline} == set(given)
    for record in records[:7] + records[995:1005] + records[-3:]:
        assert found[record.id] == tuple(store.get_timeline(record.id))
    for key, timeline in given.items():
        assert [replace(t, seconds_in_state=None) for t in found[key]] == list(timeline)


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


# -- import_history(timelines=...) ----------------------------------------------------------------


def test_runs_imported_with_their_timelines_give_the_sources_timelines_and_stage_stats(
    store: StateStore, clock: list[datetime], fresh_db: Any
) -> None:
    web, api = store.create_project("Web", "acme/web"), store.create_project("Api", "acme/api")
    for pipeline_id in (
        walk(store, web, 1, CODING, TESTING, MERGED),
        walk(store, web, 2, CODING, TESTING, CODING, TESTING, REVIEW, MERGED),
        walk(store, api, 3, CODING, FAILED),
    ):
        store.archive_pipeline(pipeline_id)
    records = list(store.iter_history())
    assert store.get_stage_stats()[CODING].visits == 4  # something to compare

    with StateStore(fresh_db()) as target:
        timelines = store.get_timelines(r.id for r in records)
        result = target.import_history(records, timelines=timelines, batch_size=2)
        assert result == ImportResult(3, 0)
        for record in records:
            assert target.get_timeline(record.id) == store.get_timeline(record.id)
        assert target.get_stage_stats() == store.get_stage_stats()
        for project in (web, api):
            assert target.get_stage_stats(project.id) == store.get_stage_stats(project.id)
        assert target.get_stage_stats(since=EVER) == store.get_stage_stats(since=EVER)
        assert target.get_history_stats() == store.get_history_stats()


def test_seconds_in_state_given_with_a_timeline_are_not_used(store: StateStore, project: Project) -> None:
    record = helpers.history_record(project_id=project.id, duration_seconds=90)
    given = tuple(replace(t, seconds_in_state=1e9) for t in helpers.timeline_of(record))
    store.import_history([record], timelines={record.id: given})
    stored = store.get_timeline(record.id)
    assert [t.seconds_in_state for t in stored] == [22.5, 22.5, 22.5, 22.5]  # from the times
    assert store.get_stage_stats()[QUEUED].total_seconds == 22.5


def test_runs_present_already_keep_their_timelines(
    store: StateStore, project: Project, store_url: str, clock: list[datetime]
) -> None:
    archived = walk(store, project, 1, CODING, MERGED)
    store.archive_pipeline(archived)
    record = helpers.history_record(project_id=project.id)
    store.import_history([record], timelines={record.id: helpers.timeline_of(record)})
    before = helpers.snapshot(store_url)

    again = [store.get_history_record(archived), record]
    other = {r.id: helpers.timeline_of(r, REVIEW, feedback="not this one") for r in again}
    assert store.import_history(again, timelines=other) == ImportResult(0, 2)
    assert helpers.snapshot(store_url) == before


def test_a_run_with_the_id_of_an_active_pipeline_keeps_the_pipelines_transitions(
    store: StateStore, project: Project, clock: list[datetime]
) -> None:
    active = walk(store, project, 1, CODING)
    record = helpers.history_record(
        project_id=project.id, record_id=active, completed_at=clock[0] + timedelta(minutes=5)
    )
    assert store.import_history([record], timelines={active: helpers.timeline_of(record)}) == ImportResult(
        1, 0
    )
    assert [t.to_state for t in store.get_timeline(active)] == [QUEUED, CODING]
    # The kept histogram counts the run's visits from the transitions stored for it, as a scan does.
    kept, exact = store.get_stage_stats(), store.get_stage_stats(since=EVER)
    assert [(s.visits, s.total_seconds) for s in kept.values()] == [
        (s.visits, s.total_seconds) for s in exact.values()
    ]
    assert kept[CODING].visits == 1
    store.delete_pipeline(active)
    assert store.prune_history(before=record.completed_at + timedelta(seconds=1)) == 1
    assert all(s.visits == 0 for s in store.get_stage_stats().values())


Mutation = Any
"""(record, its valid timeline as a list) -> the timeline given instead."""
BAD_TIMELINES: dict[str, tuple[Mutation, str]] = {
    "another-run": (
        lambda r, t: [replace(t[0], pipeline_id=str(uuid.uuid4())), *t[1:]],
        r"timeline\[0\]\.pipeline_id is not the run's id",
    ),
    "seq-from-0": (lambda r, t: [replace(t[0], seq=0), *t[1:]], r"timeline\[0\]\.seq must be between 1"),
    "seq-gap": (
        lambda r, t: [t[0], *(replace(x, seq=x.seq + 1) for x in t[1:])],
        r"timeline\[1\]\.seq must be 2 \(1, 2, \.\.\. without gaps\), got 3",
    ),
    "seq-bool": (lambda r, t: [replace(t[0], seq=True), *t[1:]], r"timeline\[0\]\.seq must be an int"),
    "seq-str": (lambda r, t: [replace(t[0], seq="1"), *t[1:]], r"timeline\[0\]\.seq must be an int"),
    "first-from-a-state": (
        lambda r, t: [replace(t[0], from_state=CODING), *t[1:]],
        r"timeline\[0\]\.from_state must be None",
    ),
    "from-not-the-state-before": (
        lambda r, t: [*t[:2], replace(t[2], from_state=REVIEW), *t[3:]],
        r"timeline\[2\]\.from_state must be 'coding'",
    ),
    "into-the-same-state": (
        lambda r, t: [t[0], replace(t[1], to_state=QUEUED), *t[2:]],
        r"timeline\[1\]\.to_state must differ from its from_state 'queued'",
    ),
    "unknown-state": (
        lambda r, t: [t[0], replace(t[1], to_state="shipped"), *t[2:]],
        r"timeline\[1\]\.to_state must be a PipelineState",
    ),
    "naive-at": (
        lambda r, t: [t[0], replace(t[1], at=t[1].at.replace(tzinfo=None)), *t[2:]],
        r"timeline\[1\]\.at must be a timezone-aware datetime",
    ),
    "at-goes-back": (
        lambda r, t: [*t[:2], replace(t[2], at=t[1].at - timedelta(microseconds=1)), *t[3:]],
        r"timeline\[2\]\.at must not be before",
    ),
    "negative-retries": (
        lambda r, t: [replace(t[0], retry_count_ci=-1), *t[1:]],
        r"timeline\[0\]\.retry_count_ci must be between 0",
    ),
    "too-many-retries": (
        lambda r, t: [*t[:3], replace(t[3], retry_count_review=1_000_001)],
        r"timeline\[3\]\.retry_count_review must be between 0 and 1000000",
    ),
    "feedback-too-long": (
        lambda r, t: [*t[:3], replace(t[3], feedback="é" * (1 << 19) + "x")],
        r"timeline\[3\]\.feedback must be at most 1048576 bytes",
    ),
    "feedback-nul": (
        lambda r, t: [replace(t[0], feedback="a\x00b"), *t[1:]],
        r"timeline\[0\]\.feedback must not contain a NUL",
    ),
    "feedback-bytes": (
        lambda r, t: [replace(t[0], feedback=b"x"), *t[1:]],
        r"timeline\[0\]\.feedback must be a str",
    ),
    "reconstructed-str": (
        lambda r, t: [replace(t[0], reconstructed="no"), *t[1:]],
        r"timeline\[0\]\.reconstructed must be a bool",
    ),
    "not-a-transition": (
        lambda r, t: [t[0], {"seq": 2}],
        r"timeline\[1\] must be a Transition record, got dict",
    ),
    "a-str": (lambda r, t: "queued", "timeline must be a sequence of Transition records"),
    "a-set": (lambda r, t: set(t), "timeline must be a sequence of Transition records"),
    "none": (lambda r, t: None, "timeline must be a sequence of Transition records"),
}


@pytest.mark.parametrize("case", sorted(BAD_TIMELINES))
def test_a_bad_timeline_is_refused_naming_the_run_and_field_and_nothing_is_written(
    store: StateStore, project: Project, store_url: str, case: str
) -> None:
    mutate, fragment = BAD_TIMELINES[case]
    records = [
        helpers.history_record(project_id=project.id, completed_at=helpers.T0 + timedelta(hours=n))
        for n in range(3)
    ]
    timelines: dict[str, Any] = {r.id: helpers.timeline_of(r) for r in records}
    victim = records[2]
    timelines[victim.id] = mutate(victim, list(timelines[victim.id]))
    before = helpers.snapshot(store_url)
    # In batches of one: the runs before the bad one are not written either.
    with pytest.raises(ValidationError, match=f"run {victim.id} {fragment}"):
        store.import_history(records, timelines=timelines, batch_size=1)
    assert helpers.snapshot(store_url) == before


@pytest.mark.parametrize(
    ("bad", "fragment"),
    [
        ([], "timelines must map run ids to timelines, got list"),
        ("timeline", "timelines must map run ids to timelines, got str"),
        ({b"id": ()}, "a run id of timelines must be a str"),
        ({"x" * 37: ()}, "a run id of timelines must be at most 36 characters"),
        ({"": ()}, "a run id of timelines must not be empty"),
        ({"not-among-the-records": [None]}, r"run not-among-the-records timeline\[0\] must be a Transition"),
    ],
)
def test_timelines_must_map_run_ids_to_timelines(
    store: StateStore, project: Project, store_url: str, bad: Any, fragment: str
) -> None:
    before = helpers.snapshot(store_url)
    with pytest.raises(ValidationError, match=fragment):
        store.import_history([helpers.history_record(project_id=project.id)], timelines=bad)
    assert helpers.snapshot(store_url) == before


def test_runs_without_a_timeline_import_as_before(store: StateStore, project: Project) -> None:
    records = [helpers.history_record(project_id=project.id) for _ in range(2)]
    timelines = {records[0].id: helpers.timeline_of(records[0]), records[1].id: ()}
    assert store.import_history(records, timelines=timelines) == ImportResult(2, 0)
    assert store.get_timeline(records[1].id) == []
    assert len(store.get_timeline(records[0].id)) == 4
    assert store.get_stage_stats()[CODING].visits == 1
