"""The reference model of the model-based tests (tests/test_model.py, tests/test_model_stats.py):
the store as plain dicts, the strategies that draw calls' arguments, fresh databases per example,
and the base of the state machine whose rules are in tests/model_rules.py and
tests/model_history_rules.py.

The model adopts the timestamps and ids the store hands out (it cannot know them) and checks
everything else, including the orders those timestamps set.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import TYPE_CHECKING, ClassVar, TypeVar

from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine
from sqlalchemy import create_engine

from vibecc.state_store import (
    CLEAR,
    Pipeline,
    PipelineHistory,
    PipelineState,
    Project,
    StateStore,
    StateStoreError,
)

if TYPE_CHECKING:
    from tests import helpers
else:
    import helpers

T = TypeVar("T")

UNKNOWN_ID = "00000000-0000-4000-8000-00000000dead"
GHOST_PROJECT = "ghost-project"
# Lower-case ASCII only: PostgreSQL orders text by the database collation, SQLite by bytes;
# the test server uses C.UTF-8, where the two agree (see docs/reliability.md).
NAMES = ("alpha", "beta", "gamma")
REPOS = ("acme/api", "acme/web", "umbrella/core", "umbrella/ui", "ACME/Api", "Umbrella/UI")
"""Repos differing only in case are one GitHub repository: one project between them."""
BRANCHES = ("main", "develop", "feature/login", "fix/crash-1")
TICKETS: tuple[str | int, ...] = ("1", "2", "ABC-3", 7)
STATES = tuple(PipelineState)
FAR_PAST = datetime(2000, 1, 1, tzinfo=UTC)
FAR_FUTURE = datetime(2100, 1, 1, tzinfo=UTC)
IMPORT_BASE = datetime(2024, 1, 1, tzinfo=UTC)
STEPS = 30

SAFE_CHARS = st.characters(exclude_categories=["Cs"], exclude_characters="\x00")
BODY = st.text(SAFE_CHARS, max_size=20)
LINE = st.text(SAFE_CHARS, min_size=1, max_size=20).filter(lambda s: s.strip() != "")
PICK = st.integers(min_value=-1, max_value=7)
"""Which known record a rule acts on: an index into the records in creation order; -1 an unknown id."""
RETRIES = st.integers(min_value=0, max_value=50)
PR_URL = st.integers(min_value=1, max_value=10**6).map(lambda n: f"https://github.com/acme/api/pull/{n}")
PIPELINE_CHANGES = st.fixed_dictionaries(
    {},
    optional={
        "state": st.sampled_from(STATES),
        "pr_id": st.none() | st.integers(min_value=1, max_value=2**63 - 1),
        "pr_url": st.none() | PR_URL,
        "retry_count_ci": RETRIES,
        "retry_count_review": RETRIES,
        "feedback": st.none() | BODY,
    },
)
PROJECT_CHANGES = st.fixed_dictionaries(
    {},
    optional={
        "name": st.none() | st.sampled_from(NAMES),
        "base_branch": st.none() | st.sampled_from(BRANCHES),
        "github_project_id": st.none() | st.just(CLEAR) | st.integers(min_value=1, max_value=2**63 - 1),
        "max_retries_ci": st.none() | st.integers(min_value=0, max_value=1000),
        "max_retries_review": st.none() | st.integers(min_value=0, max_value=1000),
    },
)
"""None leaves a field as it is (as the REST API's PATCH passes it); CLEAR removes the GitHub id."""
MOMENT = st.tuples(st.integers(min_value=-2, max_value=12), st.sampled_from((-1, 0, 1)))
"""A point in time near a known timestamp: (index, microseconds to add); -1/-2 far past/future."""


def imported(ids: list[str]) -> st.SearchStrategy[PipelineHistory]:
    """History records as a migration from another system would bring them."""
    return st.builds(
        lambda record_id, project, ticket, title, final, branch, pr_id, retries, start, length, zone: (
            PipelineHistory(
                id=record_id,
                project_id=project,
                ticket_id=ticket,
                ticket_title=title,
                final_state=final,
                branch_name=branch,
                pr_id=pr_id,
                pr_url=None if pr_id is None else f"https://github.com/acme/api/pull/{pr_id}",
                total_retries_ci=retries[0],
                total_retries_review=retries[1],
                started_at=(IMPORT_BASE + timedelta(microseconds=start)).astimezone(zone),
                completed_at=(IMPORT_BASE + timedelta(microseconds=start + length)).astimezone(zone),
                duration_seconds=length // 1_000_000,
            )
        ),
        st.sampled_from([f"imp-{n}" for n in range(6)] + ids),
        st.sampled_from((GHOST_PROJECT, UNKNOWN_ID)),
        st.sampled_from(("1", "2", "9")),
        LINE,
        st.sampled_from((PipelineState.MERGED, PipelineState.FAILED)),
        st.sampled_from(BRANCHES),
        st.none() | st.integers(min_value=1, max_value=99),
        st.tuples(RETRIES, RETRIES),
        st.integers(min_value=0, max_value=4).map(lambda n: n * 500_000),  # equal completed_at: ties by id
        st.sampled_from((0, 1, 999_999, 86_400_000_000)),
        st.sampled_from((UTC, timezone(timedelta(hours=2)), timezone(timedelta(hours=-7, minutes=-30)))),
    )


# -- the reference model --------------------------------------------------------------------------


def archived(pipeline: Pipeline, completed_at: datetime) -> PipelineHistory:
    """What archiving `pipeline` at `completed_at` must put into history."""
    return PipelineHistory(
        id=pipeline.id,
        project_id=pipeline.project_id,
        ticket_id=pipeline.ticket_id,
        ticket_title=pipeline.ticket_title,
        final_state=pipeline.state,
        branch_name=pipeline.branch_name,
        pr_id=pipeline.pr_id,
        pr_url=pipeline.pr_url,
        total_retries_ci=pipeline.retry_count_ci,
        total_retries_review=pipeline.retry_count_review,
        started_at=pipeline.created_at,
        completed_at=completed_at,
        duration_seconds=max(0, int((completed_at - pipeline.created_at).total_seconds())),
    )


@dataclass
class Model:
    """The store as plain dicts, in creation order."""

    projects: dict[str, Project] = field(default_factory=dict)
    pipelines: dict[str, Pipeline] = field(default_factory=dict)
    history: dict[str, PipelineHistory] = field(default_factory=dict)
    project_ids: list[str] = field(default_factory=list)
    """Every project id ever handed out, deleted ones included."""
    pipeline_ids: list[str] = field(default_factory=list)
    snapshots: list[Pipeline] = field(default_factory=list)
    """Every pipeline record the store returned, stale versions included."""
    deleted: dict[str, tuple[str, str]] = field(default_factory=dict)
    """Deleted project id -> (name, repo) as they were when deleted."""
    timelines: dict[str, list[tuple[PipelineState | None, PipelineState, datetime]]] = field(
        default_factory=dict
    )
    """Pipeline id -> its transitions (from, to, at), kept after archive, gone with a prune."""
    stage_visits: dict[str, list[tuple[PipelineState, int]]] = field(default_factory=dict)
    """Archived run -> (state, ms) of each state it went through, as counted when its history
    record was written."""

    def count_stages(self, pipeline_id: str, completed_at: datetime) -> None:
        timeline = self.timelines[pipeline_id]
        ends = [at for _, _, at in timeline[1:]] + [completed_at]
        self.stage_visits[pipeline_id] = [
            (to_state, max(0, round((end - at).total_seconds() * 1000)))
            for (_, to_state, at), end in zip(timeline, ends, strict=True)
        ]

    def forget(self, pipeline_id: str) -> None:
        """A pipeline deleted or its history pruned: its timeline and stage visits go."""
        self.timelines.pop(pipeline_id, None)
        self.stage_visits.pop(pipeline_id, None)

    def history_rows(
        self,
        project_id: str | None = None,
        final_state: PipelineState | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
    ) -> list[PipelineHistory]:
        return [
            r
            for r in self.history.values()
            if (project_id is None or r.project_id == project_id)
            and (final_state is None or r.final_state is final_state)
            and (since is None or r.completed_at >= since)
            and (until is None or r.completed_at < until)
        ]

    def moments(self) -> list[datetime]:
        times = {r.completed_at for r in self.history.values()}
        times.update(p.created_at for p in self.pipelines.values())
        return sorted(times)


def pick(ids: list[str], index: int) -> str:
    return UNKNOWN_ID if index < 0 or not ids else ids[index % len(ids)]


def outcome(action: Callable[[], T]) -> T | StateStoreError:
    """What a call returned, or the state store error it raised."""
    try:
        return action()
    except StateStoreError as exc:
        return exc


def expect_error(result: object, expected: type[StateStoreError]) -> None:
    assert type(result) is expected, f"expected {expected.__name__}, got {result!r}"


def ok(result: T | StateStoreError) -> T:
    assert not isinstance(result, StateStoreError), f"unexpected {type(result).__name__}: {result}"
    return result


def assert_utc(*stamps: datetime) -> None:
    for stamp in stamps:
        assert stamp.utcoffset() == timedelta(0), stamp


# -- fresh databases per example ----------------------------------------------------------------


class Fresh:
    """Hands out a store on an empty database of one engine, once per hypothesis example."""

    def __init__(self, store_url: str, engine_name: str, scratch: Path) -> None:
        self.url = store_url
        self.engine_name = engine_name
        self.examples = 0
        self.steps = 0
        if engine_name == "sqlite":
            self.template = scratch / "model-template.db"
            shutil.copy(store_url, self.template)
        else:
            self.admin = create_engine(store_url, pool_size=1)

    def open(self) -> StateStore:
        self.examples += 1
        if self.engine_name == "sqlite":
            path = Path(self.url)
            for suffix in ("-wal", "-shm"):
                Path(f"{path}{suffix}").unlink(missing_ok=True)
            shutil.copy(self.template, path)
        else:
            helpers.truncate_tables(self.admin)
        return StateStore(self.url, pool_size=2)

    def close(self) -> None:
        if self.engine_name != "sqlite":
            self.admin.dispose()


def examples(minimum: int) -> int:
    """At least `minimum`, more when the loaded hypothesis profile asks for more (profile "long")."""
    return max(minimum, settings().max_examples)


# -- the base of the state machine --------------------------------------------------------------


class MachineBase(RuleBasedStateMachine):
    """The store under test and the model; a subclass sets `fresh`, the rules come from the
    mixins of tests/model_rules.py and tests/model_history_rules.py."""

    fresh: ClassVar[Fresh]

    def __init__(self) -> None:
        super().__init__()
        self.store = self.fresh.open()
        self.model = Model()

    def teardown(self) -> None:
        self.store.close()

    # -- helpers ----------------------------------------------------------------------------------

    def _seen(self, pipeline: Pipeline) -> Pipeline:
        assert_utc(pipeline.created_at, pipeline.updated_at)
        self.model.pipelines[pipeline.id] = pipeline
        self.model.snapshots.append(pipeline)
        return pipeline

    def _moment(self, choice: tuple[int, int]) -> datetime:
        index, shift = choice
        if index == -1:
            return FAR_PAST
        if index == -2:
            return FAR_FUTURE
        moments = self.model.moments()
        if not moments:
            return FAR_FUTURE
        return moments[index % len(moments)] + timedelta(microseconds=shift)

    def _project_filter(self, index: int | None) -> str | None:
        return None if index is None else pick(self.model.project_ids, index)
