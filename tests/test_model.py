"""Model-based tests: random sequences of every public call, run against the store and against a
plain in-memory model of it, must agree after every step on records, order and error classes.

Each example starts from an empty database: SQLite gets a fresh copy of a migrated file,
PostgreSQL has its four tables emptied. The model adopts the timestamps and ids the store hands
out (it cannot know them) and checks everything else, including the orders those timestamps set.

With VIBECC_RELIABILITY_FIGURES set, the examples run are appended to that file (see
bench/reliability_figures.py).
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any, ClassVar, TypeVar

from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    invariant,
    precondition,
    rule,
    run_state_machine_as_test,
)
from sqlalchemy import create_engine, text

from vibecc.state_store import (
    CLEAR,
    UNSET,
    HistoryCursor,
    HistoryNotFoundError,
    HistoryStats,
    ImportResult,
    Pipeline,
    PipelineExistsError,
    PipelineHistory,
    PipelineNotFoundError,
    PipelineState,
    Project,
    ProjectExistsError,
    ProjectHasActivePipelinesError,
    ProjectNotFoundError,
    StaleVersionError,
    StateStore,
    StateStoreError,
    ValidationError,
)
from vibecc.state_store.models import Base

TABLES = tuple(table.name for table in Base.metadata.sorted_tables)
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


def _imported(ids: list[str]) -> st.SearchStrategy[PipelineHistory]:
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


def stats_of(records: Iterable[PipelineHistory]) -> HistoryStats:
    """History stats recomputed from rows, the way the documentation defines them."""
    rows = list(records)
    if not rows:
        return HistoryStats(0, 0, 0, 0.0, 0.0, 0.0)
    count = len(rows)
    return HistoryStats(
        total_completed=count,
        total_merged=sum(r.final_state is PipelineState.MERGED for r in rows),
        total_failed=sum(r.final_state is PipelineState.FAILED for r in rows),
        avg_duration_seconds=sum(r.duration_seconds for r in rows) / count,
        avg_retries_ci=sum(r.total_retries_ci for r in rows) / count,
        avg_retries_review=sum(r.total_retries_review for r in rows) / count,
    )


def newest_first(records: Iterable[PipelineHistory]) -> list[PipelineHistory]:
    return sorted(records, key=lambda r: (r.completed_at, r.id), reverse=True)


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
            with self.admin.begin() as conn:
                conn.execute(text(f"TRUNCATE {', '.join(TABLES)}"))
        return StateStore(self.url, pool_size=2)

    def close(self) -> None:
        if self.engine_name != "sqlite":
            self.admin.dispose()


def record_figure(name: str, engine_name: str, value: int) -> None:
    """Append a measured figure for docs/reliability.md when VIBECC_RELIABILITY_FIGURES names a file."""
    target = os.environ.get("VIBECC_RELIABILITY_FIGURES")
    if target:
        with open(target, "a", encoding="utf-8") as out:
            out.write(json.dumps({"figure": name, "engine": engine_name, "value": value}) + "\n")


def examples(minimum: int) -> int:
    """At least `minimum`, more when the loaded hypothesis profile asks for more (profile "long")."""
    return max(minimum, settings().max_examples)


# -- the state machine --------------------------------------------------------------------------


class StoreMachine(RuleBasedStateMachine):
    """Every public call of StateStore against Model; a subclass sets `fresh`."""

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

    # -- projects ---------------------------------------------------------------------------------

    @rule(
        name=st.sampled_from(NAMES),
        repo=st.sampled_from(REPOS),
        base_branch=st.sampled_from(BRANCHES),
        github_project_id=st.none() | st.integers(min_value=1, max_value=2**63 - 1),
        retries=st.tuples(st.integers(0, 1000), st.integers(0, 1000)),
    )
    def create_project(
        self,
        name: str,
        repo: str,
        base_branch: str,
        github_project_id: int | None,
        retries: tuple[int, int],
    ) -> None:
        result = outcome(
            lambda: self.store.create_project(name, repo, base_branch, github_project_id, *retries)
        )
        if any(p.repo.lower() == repo.lower() for p in self.model.projects.values()):
            expect_error(result, ProjectExistsError)
            return
        created = ok(result)
        assert created == Project(
            created.id,
            name,
            repo,
            base_branch,
            github_project_id,
            *retries,
            created.created_at,
            created.created_at,
        )
        assert_utc(created.created_at)
        assert created.id not in self.model.project_ids
        self.model.projects[created.id] = created
        self.model.project_ids.append(created.id)

    @rule(index=PICK, changes=PROJECT_CHANGES)
    def update_project(self, index: int, changes: dict[str, Any]) -> None:
        project_id = pick(self.model.project_ids, index)
        result = outcome(lambda: self.store.update_project(project_id, **changes))
        if project_id not in self.model.projects:
            expect_error(result, ProjectNotFoundError)
            return
        updated = ok(result)
        current = self.model.projects[project_id]
        effective: dict[str, Any] = {
            field: None if value is CLEAR else value for field, value in changes.items() if value is not None
        }
        if not effective:
            assert updated == current, "nothing to change: nothing written"
            return
        assert updated == replace(current, **effective, updated_at=updated.updated_at)
        assert updated.updated_at > current.updated_at
        assert_utc(updated.updated_at)
        self.model.projects[project_id] = updated

    @rule(index=PICK)
    def delete_project(self, index: int) -> None:
        project_id = pick(self.model.project_ids, index)
        result = outcome(lambda: self.store.delete_project(project_id))
        if project_id not in self.model.projects:
            expect_error(result, ProjectNotFoundError)
            return
        own = [p for p in self.model.pipelines.values() if p.project_id == project_id]
        if any(not p.state.is_terminal for p in own):
            expect_error(result, ProjectHasActivePipelinesError)
            return
        assert ok(result) is None
        gone = self.model.projects.pop(project_id)
        self.model.deleted[project_id] = (gone.name, gone.repo)
        finished_at: set[datetime] = set()
        for pipeline in own:
            del self.model.pipelines[pipeline.id]
            if pipeline.id in self.model.history:
                continue  # saved before: that record is kept as it was
            stored = self.store.get_history_record(pipeline.id)
            assert stored == archived(pipeline, stored.completed_at)
            assert_utc(stored.completed_at)
            finished_at.add(stored.completed_at)
            self.model.history[pipeline.id] = stored
        assert len(finished_at) <= 1, "one delete_project archives everything at one moment"

    @rule(index=PICK)
    def get_project(self, index: int) -> None:
        project_id = pick(self.model.project_ids, index)
        result = outcome(lambda: self.store.get_project(project_id))
        if project_id in self.model.projects:
            assert result == self.model.projects[project_id]
        else:
            expect_error(result, ProjectNotFoundError)

    @rule(repo=st.sampled_from(REPOS))
    def get_project_by_repo(self, repo: str) -> None:
        result = outcome(lambda: self.store.get_project_by_repo(repo))
        matching = [p for p in self.model.projects.values() if p.repo.lower() == repo.lower()]
        if matching:
            assert result == matching[0]
        else:
            expect_error(result, ProjectNotFoundError)

    # -- pipelines --------------------------------------------------------------------------------

    @rule(
        index=PICK, ticket=st.sampled_from(TICKETS), title=LINE, branch=st.sampled_from(BRANCHES), body=BODY
    )
    def create_pipeline(self, index: int, ticket: str | int, title: str, branch: str, body: str) -> None:
        project_id = pick(self.model.project_ids, index)
        result = outcome(lambda: self.store.create_pipeline(project_id, ticket, title, branch, body))
        if project_id not in self.model.projects:
            expect_error(result, ProjectNotFoundError)
            return
        if any(
            p.project_id == project_id and p.ticket_id == str(ticket) for p in self.model.pipelines.values()
        ):
            expect_error(result, PipelineExistsError)
            return
        created = ok(result)
        assert created == Pipeline(
            id=created.id,
            project_id=project_id,
            ticket_id=str(ticket),
            ticket_title=title,
            ticket_body=body,
            state=PipelineState.QUEUED,
            branch_name=branch,
            pr_id=None,
            pr_url=None,
            retry_count_ci=0,
            retry_count_review=0,
            feedback=None,
            created_at=created.created_at,
            updated_at=created.created_at,
            version=1,
        )
        assert created.id not in self.model.pipeline_ids
        self.model.pipeline_ids.append(created.id)
        self._seen(created)

    @rule(
        index=PICK,
        changes=PIPELINE_CHANGES,
        version=st.sampled_from(("none", "current", "older", "newer")),
    )
    def update_pipeline(self, index: int, changes: dict[str, Any], version: str) -> None:
        pipeline_id = pick(self.model.pipeline_ids, index)
        current = self.model.pipelines.get(pipeline_id)
        stored_version = current.version if current is not None else 1
        expected_version = {
            "none": None,
            "current": stored_version,
            "older": stored_version - 1 if stored_version > 1 else stored_version + 2,
            "newer": stored_version + 1,
        }[version]
        result = outcome(
            lambda: self.store.update_pipeline(pipeline_id, **changes, expected_version=expected_version)
        )
        if not changes:
            expect_error(result, ValidationError)  # nothing to update: nothing written
            return
        if current is None:
            expect_error(result, PipelineNotFoundError)
            return
        if expected_version is not None and expected_version != current.version:
            expect_error(result, StaleVersionError)
            return
        updated = ok(result)
        assert updated == replace(
            current, **changes, version=current.version + 1, updated_at=updated.updated_at
        )
        self._seen(updated)

    @rule(
        index=st.none() | PICK,
        states=st.none() | st.tuples(st.sampled_from(STATES), st.sampled_from(STATES)),
    )
    def claim_pipeline(self, index: int | None, states: tuple[PipelineState, PipelineState] | None) -> None:
        project_id = self._project_filter(index)
        source, target = states or (PipelineState.QUEUED, PipelineState.CODING)
        if states is None:
            result = outcome(lambda: self.store.claim_pipeline(project_id=project_id))
        else:
            result = outcome(
                lambda: self.store.claim_pipeline(project_id=project_id, state=source, new_state=target)
            )
        waiting = [
            p
            for p in self.model.pipelines.values()
            if p.state is source and (project_id is None or p.project_id == project_id)
        ]
        if not waiting:
            assert ok(result) is None
            return
        oldest = min(waiting, key=lambda p: (p.created_at, p.id))
        claimed = ok(result)
        assert claimed is not None
        assert claimed == replace(
            oldest, state=target, version=oldest.version + 1, updated_at=claimed.updated_at
        )
        self._seen(claimed)

    @rule(index=PICK)
    def delete_pipeline(self, index: int) -> None:
        pipeline_id = pick(self.model.pipeline_ids, index)
        result = outcome(lambda: self.store.delete_pipeline(pipeline_id))
        if pipeline_id not in self.model.pipelines:
            expect_error(result, PipelineNotFoundError)
            return
        assert ok(result) is None
        del self.model.pipelines[pipeline_id]

    @rule(index=PICK)
    def get_pipeline(self, index: int) -> None:
        pipeline_id = pick(self.model.pipeline_ids, index)
        result = outcome(lambda: self.store.get_pipeline(pipeline_id))
        if pipeline_id in self.model.pipelines:
            assert result == self.model.pipelines[pipeline_id]
        else:
            expect_error(result, PipelineNotFoundError)

    @rule(index=PICK, ticket=st.sampled_from(TICKETS))
    def get_pipeline_by_ticket(self, index: int, ticket: str | int) -> None:
        project_id = pick(self.model.project_ids, index)
        result = outcome(lambda: self.store.get_pipeline_by_ticket(project_id, ticket))
        matching = [
            p
            for p in self.model.pipelines.values()
            if p.project_id == project_id and p.ticket_id == str(ticket)
        ]
        if matching:
            assert result == matching[0]
        else:
            expect_error(result, PipelineNotFoundError)

    @rule(index=st.none() | PICK, state=st.none() | st.sampled_from(STATES))
    def list_pipelines(self, index: int | None, state: PipelineState | None) -> None:
        project_id = self._project_filter(index)
        expected = [
            p
            for p in self.model.pipelines.values()
            if (project_id is None or p.project_id == project_id) and (state is None or p.state is state)
        ]
        expected.sort(key=lambda p: (p.created_at, p.id), reverse=True)
        assert self.store.list_pipelines(project_id, state) == expected

    # -- history ----------------------------------------------------------------------------------

    @precondition(lambda self: bool(self.model.snapshots))
    @rule(index=st.integers(min_value=0, max_value=40))
    def save_to_history(self, index: int) -> None:
        snapshot = self.model.snapshots[index % len(self.model.snapshots)]
        result = outcome(lambda: self.store.save_to_history(snapshot))
        if not snapshot.state.is_terminal:
            expect_error(result, ValidationError)  # only finished pipelines go to history
            return
        if snapshot.id in self.model.history:
            assert ok(result) == self.model.history[snapshot.id], "saving again returns the kept record"
            return
        if snapshot.id not in self.model.pipelines:
            expect_error(result, PipelineNotFoundError)
            return
        if snapshot != self.model.pipelines[snapshot.id]:
            expect_error(result, StaleVersionError)  # what is saved is the stored pipeline
            return
        saved = ok(result)
        assert saved == archived(snapshot, saved.completed_at)
        assert_utc(saved.completed_at)
        self.model.history[snapshot.id] = saved

    @rule(index=PICK)
    def archive_pipeline(self, index: int) -> None:
        pipeline_id = pick(self.model.pipeline_ids, index)
        result = outcome(lambda: self.store.archive_pipeline(pipeline_id))
        pipeline = self.model.pipelines.get(pipeline_id)
        if pipeline is None:
            expect_error(result, PipelineNotFoundError)
            return
        if not pipeline.state.is_terminal:
            expect_error(result, ValidationError)  # it stays active
            return
        del self.model.pipelines[pipeline_id]
        record = ok(result)
        if pipeline_id in self.model.history:
            assert record == self.model.history[pipeline_id], "an earlier save_to_history record is kept"
            return
        assert record == archived(pipeline, record.completed_at)
        assert_utc(record.completed_at)
        self.model.history[pipeline_id] = record

    @rule(data=st.data(), batch_size=st.integers(min_value=1, max_value=4))
    def import_history(self, data: st.DataObject, batch_size: int) -> None:
        records = data.draw(st.lists(_imported(list(self.model.history)), max_size=6), label="records")
        result = ok(outcome(lambda: self.store.import_history(records, batch_size=batch_size)))
        inserted = 0
        for record in records:
            if record.id not in self.model.history:
                self.model.history[record.id] = record
                inserted += 1
        assert result == ImportResult(inserted, len(records) - inserted)

    @rule(
        moment=MOMENT,
        index=st.none() | PICK,
        batch_size=st.integers(min_value=1, max_value=3),
        dry_run=st.booleans(),
    )
    def prune_history(
        self, moment: tuple[int, int], index: int | None, batch_size: int, dry_run: bool
    ) -> None:
        before = self._moment(moment)
        project_id = self._project_filter(index)
        doomed = self.model.history_rows(project_id, until=before)
        result = ok(
            outcome(
                lambda: self.store.prune_history(
                    before=before, project_id=project_id, batch_size=batch_size, dry_run=dry_run
                )
            )
        )
        assert result == len(doomed)
        if not dry_run:
            for record in doomed:
                del self.model.history[record.id]

    @rule(
        index=st.none() | PICK,
        final_state=st.none() | st.sampled_from(STATES),
        limit=st.integers(min_value=1, max_value=5),
        offset=st.integers(min_value=0, max_value=3),
        cursor=st.none()
        | st.tuples(st.integers(min_value=0, max_value=20), st.sampled_from(("same", "-", "~"))),
        window=st.none() | st.tuples(MOMENT, MOMENT),
    )
    def get_history(
        self,
        index: int | None,
        final_state: PipelineState | None,
        limit: int,
        offset: int,
        cursor: tuple[int, str] | None,
        window: tuple[tuple[int, int], tuple[int, int]] | None,
    ) -> None:
        project_id = self._project_filter(index)
        since, until = (None, None) if window is None else (self._moment(window[0]), self._moment(window[1]))
        expected = newest_first(self.model.history_rows(project_id, final_state, since, until))
        before = None
        if cursor is not None and self.model.history:
            known = list(self.model.history.values())
            anchor = known[cursor[0] % len(known)]
            before = HistoryCursor(anchor.completed_at, anchor.id if cursor[1] == "same" else cursor[1])
            assert HistoryCursor.parse(str(before)) == before
            expected = [r for r in expected if (r.completed_at, r.id) < (before.completed_at, before.id)]
        got = self.store.get_history(
            project_id, final_state, limit, offset, before=before, since=since, until=until
        )
        assert got == expected[offset : offset + limit]
        page = self.store.get_history_page(
            project_id, final_state, limit, before=before, since=since, until=until
        )
        assert list(page.items) == expected[:limit]
        more = len(expected) > limit
        assert page.next_cursor == (HistoryCursor.after(expected[limit - 1]) if more else None)
        assert self.store.count_history(project_id, final_state, since=since, until=until) == len(
            self.model.history_rows(project_id, final_state, since, until)
        )

    @rule(
        index=st.none() | PICK,
        final_state=st.none() | st.sampled_from(STATES),
        batch_size=st.integers(min_value=1, max_value=3),
    )
    def iter_history(self, index: int | None, final_state: PipelineState | None, batch_size: int) -> None:
        project_id = self._project_filter(index)
        expected = newest_first(self.model.history_rows(project_id, final_state))[::-1]
        assert list(self.store.iter_history(project_id, final_state, batch_size=batch_size)) == expected

    @rule(index=st.integers(min_value=-1, max_value=40))
    def get_history_record(self, index: int) -> None:
        history_id = pick(self.model.pipeline_ids + [f"imp-{n}" for n in range(6)], index)
        result = outcome(lambda: self.store.get_history_record(history_id))
        if history_id in self.model.history:
            assert result == self.model.history[history_id]
        else:
            expect_error(result, HistoryNotFoundError)

    @rule(index=st.none() | PICK, window=st.none() | st.tuples(MOMENT, MOMENT))
    def get_history_stats(
        self, index: int | None, window: tuple[tuple[int, int], tuple[int, int]] | None
    ) -> None:
        project_id = self._project_filter(index)
        if window is None:
            got = self.store.get_history_stats(project_id)
            assert got == stats_of(self.model.history_rows(project_id))
            return
        since, until = self._moment(window[0]), self._moment(window[1])
        got = self.store.get_history_stats(project_id, since=since, until=until)
        assert got == stats_of(self.model.history_rows(project_id, since=since, until=until))

    # -- after every step -------------------------------------------------------------------------

    @invariant()
    def agrees_with_model(self) -> None:
        self.fresh.steps += 1
        assert self.store.list_projects() == sorted(
            self.model.projects.values(), key=lambda p: (p.name, p.id)
        )
        assert self.store.list_pipelines() == sorted(
            self.model.pipelines.values(), key=lambda p: (p.created_at, p.id), reverse=True
        )
        assert self.store.get_history(limit=10_000) == newest_first(self.model.history.values())
        assert self.store.get_history_stats() == stats_of(self.model.history.values())
        deleted = {p.id: (p.name, p.repo) for p in self.store.list_deleted_projects()}
        assert deleted == self.model.deleted
        for project_id in {r.project_id for r in self.model.history.values()}:
            assert self.store.get_history_stats(project_id) == stats_of(self.model.history_rows(project_id))


def test_store_agrees_with_model(store_url: str, engine_name: str, tmp_path: Path) -> None:
    """At least 200 random call sequences per engine; more under --hypothesis-profile=long."""
    fresh = Fresh(store_url, engine_name, tmp_path)

    class Machine(StoreMachine):
        pass

    Machine.fresh = fresh
    try:
        run_state_machine_as_test(
            Machine, settings=settings(max_examples=examples(200), stateful_step_count=STEPS, deadline=None)
        )
    finally:
        fresh.close()
    assert fresh.examples >= examples(200)
    record_figure("model_examples", engine_name, fresh.examples)
    record_figure("model_steps", engine_name, fresh.steps)


# -- kept history stats against a recomputation ---------------------------------------------------

HISTORY_OPS = st.lists(
    st.one_of(
        st.tuples(st.just("start"), st.integers(0, 2), st.sampled_from(STATES), RETRIES, RETRIES),
        st.tuples(st.just("archive"), st.integers(0, 20)),
        st.tuples(st.just("save"), st.integers(0, 20)),
        st.tuples(
            st.just("finish"),
            st.integers(0, 2),
            st.sampled_from((PipelineState.MERGED, PipelineState.FAILED)),
        ),
        st.tuples(st.just("delete_project"), st.integers(0, 2)),
        st.tuples(st.just("import"), st.lists(_imported([]), max_size=5), st.integers(1, 3)),
        st.tuples(st.just("prune"), st.integers(-1, 30), st.none() | st.integers(0, 2), st.integers(1, 3)),
    ),
    max_size=25,
)


def _run_history_op(store: StateStore, projects: list[str], serial: int, op: tuple[Any, ...]) -> None:
    kind = op[0]
    active = store.list_pipelines()
    # Deleted projects stay in `projects` (their history and stats stay too); writes go to live ones.
    live = [p.id for p in store.list_projects()]
    if kind == "start" and live:
        _, index, state, ci, review = op
        project_id = live[index % len(live)]
        pipeline = store.create_pipeline(project_id, f"t{serial}", "title", "main")
        store.update_pipeline(pipeline.id, state=state, retry_count_ci=ci, retry_count_review=review)
    elif kind in ("archive", "save") and (finished := [p for p in active if p.state.is_terminal]):
        pipeline = finished[op[1] % len(finished)]
        if kind == "archive":
            store.archive_pipeline(pipeline.id)
        else:
            store.save_to_history(pipeline)
    elif kind == "finish" and live:
        for pipeline in store.list_pipelines(live[op[1] % len(live)]):
            store.update_pipeline(pipeline.id, state=op[2])
    elif kind == "delete_project" and live:
        with contextlib.suppress(ProjectHasActivePipelinesError):
            store.delete_project(live[op[1] % len(live)])
    elif kind == "import":
        store.import_history(op[1], batch_size=op[2])
    elif kind == "prune":
        stamps = sorted(r.completed_at for r in store.iter_history())
        before = FAR_FUTURE if op[1] < 0 or not stamps else stamps[op[1] % len(stamps)]
        project_id = None if op[2] is None else projects[op[2] % len(projects)]
        store.prune_history(before=before, project_id=project_id, batch_size=op[3])


def test_kept_stats_equal_recomputation(store_url: str, engine_name: str, tmp_path: Path) -> None:
    """After random archive / save / import / prune / delete_project sequences, the per-project
    totals kept with every history write equal the stats recomputed from the rows."""
    fresh = Fresh(store_url, engine_name, tmp_path)

    @settings(max_examples=examples(100), deadline=None)
    @given(ops=HISTORY_OPS)
    def check(ops: list[tuple[Any, ...]]) -> None:
        with fresh.open() as store:
            projects = [store.create_project(f"p{n}", f"acme/p{n}").id for n in range(3)]
            for serial, op in enumerate(ops):
                _run_history_op(store, projects, serial, op)
            rows = list(store.iter_history(batch_size=7))
            assert rows == newest_first(store.get_history(limit=10_000))[::-1]
            assert store.get_history_stats() == stats_of(rows)
            assert store.get_history_stats(since=FAR_PAST) == stats_of(rows)
            for project_id in {r.project_id for r in rows} | set(projects) | {GHOST_PROJECT}:
                own = [r for r in rows if r.project_id == project_id]
                assert store.get_history_stats(project_id) == stats_of(own)
                assert store.get_history_stats(project_id) == stats_of(store.iter_history(project_id))

    try:
        check()
    finally:
        fresh.close()
    record_figure("stats_examples", engine_name, fresh.examples)


def test_unset_is_the_default_of_every_update_argument(store: StateStore) -> None:
    """The model passes only the fields it changes; UNSET must leave the others alone."""
    project = store.create_project("alpha", "acme/api", github_project_id=5)
    same = store.update_project(project.id, github_project_id=UNSET, name=UNSET)
    assert same == project, "nothing to change: nothing written, updated_at stays"
    renamed = store.update_project(project.id, github_project_id=UNSET, name="beta")
    assert renamed == replace(project, name="beta", updated_at=renamed.updated_at)
    pipeline = store.create_pipeline(project.id, 1, "title", "main")
    store.update_pipeline(pipeline.id, pr_id=3, feedback="f")
    kept = store.update_pipeline(pipeline.id, pr_id=UNSET, feedback=UNSET, state=UNSET, retry_count_ci=1)
    assert (kept.pr_id, kept.feedback, kept.state, kept.retry_count_ci, kept.version) == (
        3,
        "f",
        PipelineState.QUEUED,
        1,
        3,
    )
