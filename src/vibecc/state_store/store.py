"""StateStore: the whole public API.

Each public method checks its arguments (rules), runs one transaction (db.session.Database)
of query functions (queries/, where its SQL is) and maps the result to records or errors.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from datetime import UTC, datetime
from functools import partial
from typing import Any

from sqlalchemy import Connection
from sqlalchemy.engine import URL

from . import migrate
from . import rules as check
from .db.dialects import EngineOptions
from .db.session import Database
from .db.urls import mask, to_url
from .errors import (
    CursorExpiredError,
    HistoryNotFoundError,
    PipelineExistsError,
    PipelineNotFoundError,
    ProjectExistsError,
    ProjectHasActivePipelinesError,
    ProjectNotFoundError,
    StaleVersionError,
    StorageError,
    ValidationError,
)
from .queries import changes, history, pipelines, projects, rows, stages, stats, transitions
from .queries.changes import Entry
from .records import (
    CLEAR,
    UNSET,
    ChangePage,
    Clear,
    DeletedProject,
    DurationPercentiles,
    HistoryCursor,
    HistoryPage,
    HistoryStats,
    ImportResult,
    Pipeline,
    PipelineHistory,
    PipelineState,
    Project,
    StageStats,
    Transition,
    Unset,
)

__all__ = ["CLEAR", "MAX_BATCH", "MAX_PAGE", "UNSET", "Progress", "StateStore"]

MAX_PAGE = 10_000
"""The most history rows one page may ask for."""
MAX_BATCH = 100_000
"""The largest batch_size of import, prune, iteration and copy."""
MAX_LINGER = 60
"""The longest linger of wait_for_changes, in seconds."""
Progress = Callable[[int], None]
"""Called with the number of rows just done, after each batch."""


def now() -> datetime:
    return datetime.now(UTC)


def new_id() -> str:
    return str(uuid.uuid4())


class StateStore:
    """Projects, active pipelines and their history in one SQLite file or PostgreSQL database.

    Args:
        db_path: a filesystem path (parent folders are created), ":memory:", or an
            SQLAlchemy URL (``sqlite:///...``, ``postgresql+psycopg://...``).
        auto_migrate: upgrade an older schema on open; when False an older schema raises
            SchemaVersionError instead.
        pool_size, max_overflow, pool_timeout: the connection pool.
        connect_timeout: seconds to wait for a PostgreSQL connection.
        busy_timeout: seconds a write waits for SQLite's write lock before StorageError (first
            behind this process's other writers, then behind other processes: up to twice this).
        statement_timeout: seconds a PostgreSQL statement may run (None: no limit).

    One instance may be shared by many threads.

    Raises:
        StorageError: the database cannot be opened.
        SchemaVersionError: the schema is ahead of this code, or behind it with auto_migrate=False.
    """

    def __init__(
        self,
        db_path: str | os.PathLike[str] | URL = "vibecc.db",
        *,
        auto_migrate: bool = True,
        pool_size: int = 5,
        max_overflow: int = 10,
        pool_timeout: float = 30.0,
        connect_timeout: float = 10.0,
        busy_timeout: float = 10.0,
        statement_timeout: float | None = None,
    ) -> None:
        url = to_url(db_path)
        options = EngineOptions(
            pool_size=check.integer("pool_size", pool_size, minimum=1, maximum=1000),
            max_overflow=check.integer("max_overflow", max_overflow, minimum=0, maximum=1000),
            pool_timeout=check.seconds("pool_timeout", pool_timeout),
            connect_timeout=check.seconds("connect_timeout", connect_timeout),
            busy_timeout=check.seconds("busy_timeout", busy_timeout),
            statement_timeout=None
            if statement_timeout is None
            else check.seconds("statement_timeout", statement_timeout),
        )
        self._db = Database(url, options)
        try:
            with self._db.translating():
                migrate.ensure_schema(self._db.engine, auto_migrate=auto_migrate)
                self._db.dialect.prepare(self._db.engine)
        except BaseException:
            self.close()
            raise

    # -- lifecycle -------------------------------------------------------------------------

    @property
    def url(self) -> str:
        """The database URL with any password masked."""
        return mask(self._db.url)

    @property
    def dialect(self) -> str:
        """ "sqlite" or "postgresql"."""
        return self._db.dialect.name

    @property
    def database(self) -> Database:
        """The engine and transactions underneath (for whole-store operations in ops/)."""
        return self._db

    def close(self) -> None:
        """Close every connection; later calls raise StorageError.

        Calls other threads are making meanwhile are interrupted when they do not finish
        within a moment (they raise StorageError; what they had not committed is rolled back),
        and close returns only once each of them has closed its connection: afterwards no
        file handle or server session of this store stays open.
        """
        self._db.close()

    def __enter__(self) -> StateStore:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"StateStore({self.url!r})"

    # -- projects --------------------------------------------------------------------------

    def create_project(
        self,
        name: str,
        repo: str,
        base_branch: str = "main",
        github_project_id: int | None = None,
        max_retries_ci: int = 3,
        max_retries_review: int = 3,
    ) -> Project:
        """Add a project.

        Raises:
            ProjectExistsError: a project with that repo exists, in any case ("ACME/P" and
                "acme/p" are one GitHub repository).
            ValidationError: an argument is not acceptable.
        """
        stamp = now()
        project = Project(
            id=new_id(),
            name=check.project_field("name", name),
            repo=check.project_field("repo", repo),
            base_branch=check.project_field("base_branch", base_branch),
            github_project_id=check.project_field("github_project_id", github_project_id),
            max_retries_ci=check.project_field("max_retries_ci", max_retries_ci),
            max_retries_review=check.project_field("max_retries_review", max_retries_review),
            created_at=stamp,
            updated_at=stamp,
        )
        exists = ProjectExistsError(
            f"a project with repo {project.repo!r} exists already (repos ignore case)"
        )

        def create(conn: Connection) -> None:
            projects.insert(conn, project)
            changes.log(conn, [Entry("project", project.id, project.id, "created")], stamp)

        self._db.write(create, unique=exists)
        return project

    def get_project(self, project_id: str) -> Project:
        """The project with that id. Raises ProjectNotFoundError."""
        project_id = check.identifier("project_id", project_id)
        found = self._db.read(lambda conn: projects.by_id(conn, project_id))
        if found is None:
            raise ProjectNotFoundError(f"project {project_id} not found")
        return found

    def get_project_by_repo(self, repo: str) -> Project:
        """The project of `repo` ("owner/name", any case, as on GitHub). Raises ProjectNotFoundError."""
        repo = check.repo(repo)
        found = self._db.read(lambda conn: projects.by_repo(conn, repo))
        if found is None:
            raise ProjectNotFoundError(f"project with repo {repo!r} not found")
        return found

    def list_projects(self) -> list[Project]:
        """Every project, ordered by name (then id)."""
        return self._db.read(projects.every)

    def list_deleted_projects(self) -> list[DeletedProject]:
        """Every deleted project as it was named when deleted, oldest deletion first: its
        history stays, and this names it (get_history(project_id=...) still finds it)."""
        return self._db.read(projects.deleted)

    def update_project(
        self,
        project_id: str,
        *,
        name: str | Unset | None = UNSET,
        base_branch: str | Unset | None = UNSET,
        github_project_id: int | Clear | Unset | None = UNSET,
        max_retries_ci: int | Unset | None = UNSET,
        max_retries_review: int | Unset | None = UNSET,
    ) -> Project:
        """Change the fields given a value; updated_at moves when something changes.

        A field left out, or given as None, stays as it is (so a PATCH handler can pass None
        for every field its request did not contain). `github_project_id=CLEAR` removes the
        stored GitHub project number. With nothing to change, the project is returned as it
        is and nothing is written.

        Raises:
            ProjectNotFoundError, ValidationError.
        """
        project_id = check.identifier("project_id", project_id)
        given = {
            "name": name,
            "base_branch": base_branch,
            "github_project_id": github_project_id,
            "max_retries_ci": max_retries_ci,
            "max_retries_review": max_retries_review,
        }
        values: dict[str, Any] = {}
        for field, value in given.items():
            if field == "github_project_id" and value is CLEAR:
                values[field] = None
            elif _given(value, field):
                values[field] = check.project_field(field, value)
        if not values:
            return self.get_project(project_id)
        values["updated_at"] = stamp = now()

        def update(conn: Connection) -> Project | None:
            found = projects.update_fields(conn, project_id, values)
            if found is not None:
                changes.log(conn, [Entry("project", project_id, project_id, "updated")], stamp)
            return found

        found = self._db.write(update)
        if found is None:
            raise ProjectNotFoundError(f"project {project_id} not found")
        return found

    def delete_project(self, project_id: str) -> None:
        """Delete a project whose pipelines are all finished.

        Finished (MERGED/FAILED) pipelines not yet in history are archived in the same
        transaction; the project's history stays, and list_deleted_projects names it.

        Raises:
            ProjectNotFoundError, ProjectHasActivePipelinesError.
        """
        project_id = check.identifier("project_id", project_id)

        def delete(conn: Connection) -> None:
            found = projects.lock(conn, project_id)
            if found is None:
                raise ProjectNotFoundError(f"project {project_id} not found")
            # Finished pipelines first, then count what is left: a pipeline that turned
            # active meanwhile is not deleted (PostgreSQL re-checks the state under the row
            # lock), and raising rolls the deletions back.
            finished = pipelines.take_finished_of_project(conn, project_id)
            active = pipelines.count(conn, project_id, None)
            if active:
                raise ProjectHasActivePipelinesError(
                    f"project {project_id} has {active} active pipeline(s); finish or delete them first"
                )
            stamp = now()
            inserted = _archived(
                conn, history.insert(conn, [rows.history_from_pipeline(p, stamp) for p in finished])
            )
            projects.delete_and_remember(conn, found, stamp)
            saved = {r.id for r in inserted}
            changes.log(
                conn,
                [
                    *(e for p in finished for e in _moved_to_history(p.id, project_id, p.id in saved)),
                    Entry("project", project_id, project_id, "deleted"),
                ],
                stamp,
            )

        self._db.write(delete)

    # -- pipelines -------------------------------------------------------------------------

    def create_pipeline(
        self,
        project_id: str,
        ticket_id: str | int,
        ticket_title: str,
        branch_name: str,
        ticket_body: str = "",
    ) -> Pipeline:
        """Start a pipeline for a ticket: state QUEUED, retry counts 0, version 1.

        Raises:
            ProjectNotFoundError: no project has that id.
            PipelineExistsError: the project has an active pipeline for that ticket.
            ValidationError: an argument is not acceptable.
        """
        stamp = now()
        pipeline = Pipeline(
            id=new_id(),
            project_id=check.identifier("project_id", project_id),
            ticket_id=check.ticket_id(ticket_id),
            ticket_title=check.pipeline_field("ticket_title", ticket_title),
            ticket_body=check.pipeline_field("ticket_body", ticket_body),
            state=PipelineState.QUEUED,
            branch_name=check.pipeline_field("branch_name", branch_name),
            pr_id=None,
            pr_url=None,
            retry_count_ci=0,
            retry_count_review=0,
            feedback=None,
            created_at=stamp,
            updated_at=stamp,
            version=1,
        )

        def create(conn: Connection) -> None:
            pipelines.insert(conn, pipeline)
            transitions.first(conn, pipeline)
            changes.log(conn, [_pipeline_change(pipeline, "created")], stamp)

        self._db.write(
            create,
            unique=PipelineExistsError(
                f"project {project_id} has an active pipeline for ticket {pipeline.ticket_id!r} already"
            ),
            foreign_key=ProjectNotFoundError(f"project {project_id} not found"),
        )
        return pipeline

    def get_pipeline(self, pipeline_id: str) -> Pipeline:
        """The active pipeline with that id. Raises PipelineNotFoundError."""
        pipeline_id = check.identifier("pipeline_id", pipeline_id)
        found = self._db.read(lambda conn: pipelines.by_id(conn, pipeline_id))
        if found is None:
            raise PipelineNotFoundError(f"pipeline {pipeline_id} not found")
        return found

    def get_pipeline_by_ticket(self, project_id: str, ticket_id: str | int) -> Pipeline:
        """The project's active pipeline for a ticket. Raises PipelineNotFoundError."""
        project_id = check.identifier("project_id", project_id)
        ticket = check.ticket_id(ticket_id)
        found = self._db.read(lambda conn: pipelines.by_ticket(conn, project_id, ticket))
        if found is None:
            raise PipelineNotFoundError(f"no active pipeline for ticket {ticket!r} in project {project_id}")
        return found

    def list_pipelines(
        self, project_id: str | None = None, state: PipelineState | str | None = None
    ) -> list[Pipeline]:
        """Active pipelines, newest first (ties by id), optionally of one project and/or state."""
        owner = check.optional_identifier("project_id", project_id)
        wanted = None if state is None else check.state("state", state)
        return self._db.read(lambda conn: pipelines.listed(conn, owner, wanted))

    def count_by_state(self, project_id: str | None = None) -> dict[PipelineState, int]:
        """How many active pipelines are in each state (every state, 0 where none), in one
        query: the board's counts without loading a pipeline."""
        owner = check.optional_identifier("project_id", project_id)
        return self._db.read(lambda conn: pipelines.count_by_state(conn, owner))

    def get_timeline(self, pipeline_id: str) -> list[Transition]:
        """Every state the pipeline went through, in order, with the time spent in each: until
        the next transition, until its archive, or still open (None) while it is active.

        Raises:
            PipelineNotFoundError: neither an active pipeline nor a history record has the id.
        """
        pipeline_id = check.identifier("pipeline_id", pipeline_id)

        def timeline(conn: Connection) -> list[Transition] | None:
            if pipelines.state(conn, pipeline_id) is not None:
                return transitions.of_pipeline(conn, pipeline_id, None)
            record = history.by_id(conn, pipeline_id)
            if record is None:
                return None
            return transitions.of_pipeline(conn, pipeline_id, record.completed_at)

        found = self._db.read(timeline, snapshot=True)
        if found is None:
            raise PipelineNotFoundError(f"no active pipeline or history record {pipeline_id}")
        return found

    def get_timelines(self, pipeline_ids: Iterable[str]) -> dict[str, tuple[Transition, ...]]:
        """The timelines of many pipelines or runs at once (an export's), each as get_timeline
        gives it, read in one snapshot with one query per 1,000 ids.

        Returns:
            Every id given as a key; an id without transitions (unknown, or a run imported
            without its timeline) maps to an empty tuple.

        Raises:
            ValidationError: not an iterable of ids (a single str is not), or more than MAX_BATCH.
        """
        ids = sorted(set(check.identifiers("pipeline_ids", pipeline_ids, maximum=MAX_BATCH)))
        return self._db.read(lambda conn: transitions.of_pipelines(conn, ids), snapshot=True)

    def count_pipelines(self, project_id: str | None = None, state: PipelineState | str | None = None) -> int:
        """How many active pipelines there are, optionally of one project and/or state."""
        owner = check.optional_identifier("project_id", project_id)
        wanted = None if state is None else check.state("state", state)
        return self._db.read(lambda conn: pipelines.count(conn, owner, wanted))

    def update_pipeline(
        self,
        pipeline_id: str,
        *,
        state: PipelineState | str | Unset = UNSET,
        pr_id: int | Unset | None = UNSET,
        pr_url: str | Unset | None = UNSET,
        retry_count_ci: int | Unset = UNSET,
        retry_count_review: int | Unset = UNSET,
        feedback: str | Unset | None = UNSET,
        expected_version: int | None = None,
    ) -> Pipeline:
        """Change the given fields; version +1.

        A field left out stays as it is; None clears pr_id, pr_url and feedback (the
        orchestrator clears feedback after a success this way). Any state may follow any
        state: transitions are the orchestrator's business.

        Args:
            expected_version: write only if the stored version is this one.

        Raises:
            PipelineNotFoundError.
            ValidationError: a value is not acceptable, or no field was given.
            StaleVersionError: the stored version is not `expected_version`; nothing written.
        """
        pipeline_id = check.identifier("pipeline_id", pipeline_id)
        given = {
            "state": state,
            "pr_id": pr_id,
            "pr_url": pr_url,
            "retry_count_ci": retry_count_ci,
            "retry_count_review": retry_count_review,
            "feedback": feedback,
        }
        values = {
            field: check.pipeline_field(field, value) for field, value in given.items() if value is not UNSET
        }
        if "state" in values:
            values["state"] = values["state"].value
        if expected_version is not None:
            expected_version = check.version("expected_version", expected_version)
        if not values:
            # A write of nothing would still move the version and make other writers stale.
            raise ValidationError(f"nothing to update for pipeline {pipeline_id}: give at least one field")

        def update(conn: Connection) -> Pipeline | int | None:
            found = pipelines.update_fields(conn, pipeline_id, values, expected_version, now())
            if found is None:
                return pipelines.version(conn, pipeline_id)
            if "state" in values:
                transitions.append(conn, found, feedback_changed="feedback" in values)
            changes.log(conn, [_pipeline_change(found, "updated")], found.updated_at)
            return found

        result = self._db.write(update)
        if isinstance(result, Pipeline):
            return result
        if result is None:
            raise PipelineNotFoundError(f"pipeline {pipeline_id} not found")
        raise StaleVersionError(
            f"pipeline {pipeline_id} is at version {result}, not the expected {expected_version}; "
            "nothing written"
        )

    def claim_pipeline(
        self,
        *,
        project_id: str | None = None,
        state: PipelineState | str = PipelineState.QUEUED,
        new_state: PipelineState | str = PipelineState.CODING,
        max_active: int | None = None,
    ) -> Pipeline | None:
        """Atomically take the oldest pipeline in `state`, move it to `new_state` (version +1).

        Concurrent claimers never get the same pipeline and never wait on each other's row
        locks (PostgreSQL: FOR UPDATE SKIP LOCKED; SQLite: one immediate transaction).

        Args:
            max_active: claim only while fewer than this many of the project's pipelines are
                in CODING, TESTING or REVIEW (needs `project_id`); concurrent claimers of one
                project take turns, so together they never exceed it.

        Returns:
            The claimed pipeline, or None when no pipeline is in `state` (or the project is
            at capacity).
        """
        source = check.state("state", state)
        target = check.state("new_state", new_state)
        owner = check.optional_identifier("project_id", project_id)
        if max_active is not None:
            max_active = check.integer("max_active", max_active, minimum=1, maximum=check.MAX_INT32)
            if owner is None:
                raise ValidationError("max_active is a project's capacity: give project_id with it")

        def claim(conn: Connection) -> Pipeline | None:
            if max_active is not None and owner is not None:
                # Claims of one project queue on its row (PostgreSQL), so each one counts
                # what the one before it committed: the capacity holds under any concurrency.
                if not projects.lock_for_claims(conn, owner):
                    return None
                if pipelines.working(conn, owner) >= max_active:
                    return None
            claimed = pipelines.claim(conn, source, target, owner, now())
            if claimed is not None:
                transitions.append(conn, claimed, feedback_changed=False)
                changes.log(conn, [_pipeline_change(claimed, "claimed")], claimed.updated_at)
            return claimed

        return self._db.write(claim)

    def delete_pipeline(self, pipeline_id: str) -> None:
        """Delete an active pipeline without archiving it. Raises PipelineNotFoundError."""
        pipeline_id = check.identifier("pipeline_id", pipeline_id)

        def delete(conn: Connection) -> bool:
            project_id = pipelines.delete_one(conn, pipeline_id)
            if project_id is None:
                return False
            if history.by_id(conn, pipeline_id) is None:  # a saved run keeps its timeline
                transitions.delete_of(conn, [pipeline_id])
            changes.log(conn, [Entry("pipeline", pipeline_id, project_id, "deleted")], now())
            return True

        if not self._db.write(delete):
            raise PipelineNotFoundError(f"pipeline {pipeline_id} not found")

    def save_to_history(self, pipeline: Pipeline) -> PipelineHistory:
        """Copy a finished (MERGED or FAILED) pipeline into history, completed now; the
        pipeline stays active. What is saved is the stored pipeline, which must be the record
        given (same version, same fields).

        Idempotent: saving the same pipeline again returns the existing record.

        Raises:
            ValidationError: the pipeline is not finished, or not a valid Pipeline record.
            PipelineNotFoundError: no active pipeline (and no history record) has its id.
            StaleVersionError: the stored pipeline is not the record given; nothing written.
        """
        check.pipeline_record(pipeline)
        check.finished(pipeline.id, check.state("pipeline.state", pipeline.state))
        stamp = now()

        def save(conn: Connection) -> PipelineHistory:
            existing = history.by_id(conn, pipeline.id)
            if existing is not None:
                return existing
            stored = pipelines.by_id(conn, pipeline.id)
            if stored is None:
                raise PipelineNotFoundError(f"pipeline {pipeline.id} not found")
            if stored != pipeline:
                raise StaleVersionError(
                    f"pipeline {pipeline.id} is stored at version {stored.version} and differs from "
                    "the record given; nothing written"
                )
            inserted = _archived(conn, history.insert(conn, [rows.history_from_pipeline(stored, stamp)]))
            changes.log(conn, [Entry("history", r.id, r.project_id, "created") for r in inserted], stamp)
            # PostgreSQL: an archive of the pipeline committed the record just now; it is kept.
            found = inserted[0] if inserted else history.by_id(conn, pipeline.id)
            if found is None:  # archived and pruned by others within this call
                raise StaleVersionError(
                    f"pipeline {pipeline.id} left history during the save; nothing written"
                )
            return found

        return self._db.write(save)

    def archive_pipeline(self, pipeline_id: str) -> PipelineHistory:
        """Move a finished (MERGED or FAILED) pipeline into history and delete it, in one
        transaction.

        A crash leaves the pipeline either fully active or fully archived. If it was saved
        to history before, that record is kept and returned.

        Raises:
            PipelineNotFoundError.
            ValidationError: the pipeline is not finished; nothing written.
        """
        pipeline_id = check.identifier("pipeline_id", pipeline_id)

        def archive(conn: Connection) -> PipelineHistory:
            # Only a finished pipeline is taken, so a refused archive deletes nothing.
            taken = pipelines.take_finished(conn, pipeline_id)
            if taken is None:
                stored = pipelines.state(conn, pipeline_id)
                if stored is None:
                    raise PipelineNotFoundError(f"pipeline {pipeline_id} not found")
                check.finished(pipeline_id, stored)
                # PostgreSQL: it was finished by a transaction that committed just now.
                raise StaleVersionError(
                    f"pipeline {pipeline_id} was finished by another writer during the archive; "
                    "nothing written, archive it again"
                )
            stamp = now()
            inserted = _archived(conn, history.insert(conn, [rows.history_from_pipeline(taken, stamp)]))
            changes.log(conn, _moved_to_history(taken.id, taken.project_id, bool(inserted)), stamp)
            found = inserted[0] if inserted else history.by_id(conn, pipeline_id)
            if found is None:
                # PostgreSQL: the record it was saved to before was pruned by a prune that
                # committed between the insert (which found it) and this read.
                raise StaleVersionError(
                    f"pipeline {pipeline_id}'s history record was pruned during the archive; "
                    "nothing written, archive it again"
                )
            return found

        return self._db.write(archive)

    # -- history ---------------------------------------------------------------------------

    def get_history(
        self,
        project_id: str | None = None,
        final_state: PipelineState | str | None = None,
        limit: int = 100,
        offset: int = 0,
        *,
        before: HistoryCursor | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
    ) -> list[PipelineHistory]:
        """Finished pipelines, newest completed first (ties by id).

        Args:
            limit: at most this many rows (1 to 10,000).
            offset: rows to skip; prefer `before`, which stays fast and stable on deep pages.
            before: continue after this cursor (see HistoryCursor.after and get_history_page).
            since, until: completed_at within [since, until).
        """
        where = _filter(project_id, final_state, since, until)
        limit = check.integer("limit", limit, minimum=1, maximum=MAX_PAGE)
        offset = check.integer("offset", offset, minimum=0)
        cursor = _cursor(before)
        return self._db.read(lambda conn: history.page(conn, where, limit, offset, cursor))

    def get_history_page(
        self,
        project_id: str | None = None,
        final_state: PipelineState | str | None = None,
        limit: int = 100,
        *,
        before: HistoryCursor | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
    ) -> HistoryPage:
        """Like get_history, with the cursor of the next page (None on the last one)."""
        where = _filter(project_id, final_state, since, until)
        limit = check.integer("limit", limit, minimum=1, maximum=MAX_PAGE)
        cursor = _cursor(before)
        items = self._db.read(lambda conn: history.page(conn, where, limit + 1, 0, cursor))
        if len(items) <= limit:
            return HistoryPage(tuple(items), None)
        return HistoryPage(tuple(items[:limit]), HistoryCursor.after(items[limit - 1]))

    def get_history_record(self, history_id: str) -> PipelineHistory:
        """The history record with that id (an archived pipeline's id). Raises HistoryNotFoundError."""
        history_id = check.identifier("history_id", history_id)
        found = self._db.read(lambda conn: history.by_id(conn, history_id))
        if found is None:
            raise HistoryNotFoundError(f"history record {history_id} not found")
        return found

    def get_history_stats(
        self,
        project_id: str | None = None,
        *,
        since: datetime | None = None,
        until: datetime | None = None,
    ) -> HistoryStats:
        """Totals and averages over history; all zero when there is none.

        Without a window it reads the per-project totals kept with every history write, so it
        costs the same at any history size; with `since`/`until` it scans the window by index.
        """
        where = _filter(project_id, None, since, until)
        if since is None and until is None:
            return self._db.read(lambda conn: stats.kept(conn, where.project_id))
        return self._db.read(lambda conn: history.aggregates(conn, where))

    def get_stage_stats(
        self,
        project_id: str | None = None,
        *,
        since: datetime | None = None,
        until: datetime | None = None,
    ) -> dict[PipelineState, StageStats]:
        """Time finished pipelines spent in each state: visits, total, mean, p50 and p95.

        Without a window it reads the histogram kept with every archive, so it costs the same
        at any history size; its percentiles are within 4.9% of the exact ones. With
        `since`/`until` (the runs completed in that window) it scans the window and is exact.
        """
        where = _filter(project_id, None, since, until)
        if since is None and until is None:
            return self._db.read(lambda conn: stages.kept(conn, where.project_id))
        return self._db.read(lambda conn: stages.scanned(conn, where.project_id, where.since, where.until))

    def get_duration_percentiles(
        self,
        project_id: str | None = None,
        *,
        since: datetime | None = None,
        until: datetime | None = None,
        exact: bool = False,
    ) -> DurationPercentiles:
        """p50 and p95 of duration_seconds by nearest rank (None when history is empty).

        Without a window it reads the duration histogram kept with every history write, so it
        costs the same at any history size, within 4.9% of the exact values. With
        `since`/`until`, or `exact=True`, it ranks the matching rows by index and is exact.
        """
        where = _filter(project_id, None, since, until)
        if not check.flag("exact", exact) and since is None and until is None:
            return self._db.read(lambda conn: stats.percentiles(conn, where.project_id))
        return self._db.read(lambda conn: history.percentiles(conn, where), snapshot=True)

    def count_history(
        self,
        project_id: str | None = None,
        final_state: PipelineState | str | None = None,
        *,
        since: datetime | None = None,
        until: datetime | None = None,
    ) -> int:
        """How many history rows match."""
        where = _filter(project_id, final_state, since, until)
        return self._db.read(lambda conn: history.count(conn, where))

    def iter_history(
        self,
        project_id: str | None = None,
        final_state: PipelineState | str | None = None,
        *,
        since: datetime | None = None,
        until: datetime | None = None,
        batch_size: int = 1000,
    ) -> Iterator[PipelineHistory]:
        """Every matching row, oldest completed first, read in batches: memory stays bounded.

        Each batch is its own read, so rows archived meanwhile may or may not appear; none
        appears twice and none that existed throughout is missed.
        """
        # Checked now, not at the first next(): a generator would defer the error.
        where = _filter(project_id, final_state, since, until)
        batch_size = check.integer("batch_size", batch_size, minimum=1, maximum=MAX_BATCH)
        return self._scan(where, batch_size)

    def _scan(self, where: history.Filter, batch_size: int) -> Iterator[PipelineHistory]:
        batch: list[PipelineHistory] = []
        while True:
            after = HistoryCursor.after(batch[-1]) if batch else None
            batch = self._db.read(partial(history.scan, where=where, limit=batch_size, after=after))
            yield from batch
            if len(batch) < batch_size:
                return

    def import_history(
        self,
        records: Iterable[PipelineHistory],
        *,
        timelines: Mapping[str, Sequence[Transition]] | None = None,
        batch_size: int = 1000,
        progress: Progress | None = None,
    ) -> ImportResult:
        """Add history records as they are (ids, timestamps); skip ids already present.

        Each batch is one transaction and moves the kept stats with it: the history totals,
        and the stage histogram by the visits of the runs it adds.

        Args:
            timelines: the transitions of runs by id (as get_timelines gives them), stored with
                the records that are added; a record skipped keeps its timeline, a run whose
                id has transitions already (an active pipeline's) keeps those, and entries
                for ids not among the records are not used. All are checked before anything
                is written.

        Raises:
            ValidationError: a timeline is not acceptable (nothing is written), or a record is
                not (earlier batches stay imported).
        """
        batch_size = check.integer("batch_size", batch_size, minimum=1, maximum=MAX_BATCH)
        check.callback("progress", progress)
        given = {} if timelines is None else check.timelines("timelines", timelines)
        if isinstance(records, PipelineHistory | str | bytes) or not isinstance(records, Iterable):
            raise ValidationError(
                f"records must be an iterable of PipelineHistory records, got {type(records).__name__}"
            )
        inserted = skipped = 0
        batch: list[PipelineHistory] = []

        def add(conn: Connection) -> int:
            added = history.insert(conn, batch)
            transitions.insert_timelines(conn, [(r, given[r.id]) for r in added if r.id in given])
            _archived(conn, added)
            changes.log(conn, [Entry("history", r.id, r.project_id, "imported") for r in added], now())
            return len(added)

        def flush() -> None:
            nonlocal inserted, skipped
            added = self._db.write(add)
            inserted += added
            skipped += len(batch) - added
            if progress is not None:
                progress(len(batch))
            batch.clear()

        for record in records:
            batch.append(check.history_record(record))
            if len(batch) >= batch_size:
                flush()
        if batch:
            flush()
        return ImportResult(inserted, skipped)

    def prune_history(
        self,
        *,
        before: datetime,
        project_id: str | None = None,
        batch_size: int = 1000,
        dry_run: bool = False,
        progress: Progress | None = None,
    ) -> int:
        """Delete history completed before `before`, oldest first, each batch its own
        transaction (a huge prune never holds the write lock for long). Active pipelines
        are never touched.

        Returns:
            The rows deleted (or, with dry_run, that would be).
        """
        before = check.timestamp("before", before)
        batch_size = check.integer("batch_size", batch_size, minimum=1, maximum=MAX_BATCH)
        dry_run = check.flag("dry_run", dry_run)
        check.callback("progress", progress)
        where = _filter(project_id, None, None, before)
        if dry_run:
            return self._db.read(lambda conn: history.count(conn, where))
        total = 0
        while True:
            gone = len(self._db.write(partial(_prune_batch, where=where, limit=batch_size)))
            total += gone
            if progress is not None and gone:
                progress(gone)
            # A short batch is not the end when another prune runs beside this one: under READ
            # COMMITTED (PostgreSQL) rows it deleted drop out of this batch after it was chosen.
            # So the end is a fresh look that finds no row left before the cut-off.
            if gone < batch_size and not self._db.read(lambda conn: history.exists(conn, where)):
                return total

    # -- change log ------------------------------------------------------------------------

    def changes_since(
        self,
        cursor: int = 0,
        *,
        limit: int = 1000,
        project_id: str | None = None,
        wait: float = 0.0,
        linger: float = 0.0,
    ) -> ChangePage:
        """The changes committed after `cursor`, oldest first: at most `limit` (1 to 10,000),
        only those of one project when `project_id` is given.

        Pass the page's next_cursor to the next call (or to wait_for_changes): reading on that
        way never returns a change twice and never skips one, whatever writers do meanwhile.
        Start from 0, or from the next_cursor of a first call made after loading the tables.

        Args:
            wait: seconds (0 to 86,400) to wait, when nothing was committed after `cursor`,
                for a change to be (as wait_for_changes waits), then read the page; an empty
                page at the end of it, or when the store is closed during the linger or the
                wait. A follower calling only this reads the log once per page.
            linger: seconds (0 to 60) to let pass before reading, as in wait_for_changes.

        Raises:
            CursorExpiredError: the cursor is older than the retained log (prune_changes
                removed changes after it) or beyond its end; resynchronise from the tables.
        """
        cursor = check.integer("cursor", cursor, minimum=0)
        limit = check.integer("limit", limit, minimum=1, maximum=MAX_PAGE)
        owner = check.optional_identifier("project_id", project_id)
        wait = check.wait_seconds("wait", wait)
        gather = check.wait_seconds("linger", linger, maximum=MAX_LINGER)

        def read() -> tuple[ChangePage, int]:
            last, pruned, found = self._db.read(lambda conn: changes.page(conn, cursor, limit, owner))
            _check_cursor(cursor, last, pruned)
            # A short page has read everything up to `last` (in the same snapshot), matching
            # or not.
            return ChangePage(tuple(found), found[-1].seq if len(found) == limit else last), last

        self._db.pause(gather)
        try:
            page, last = read()
            if wait and last == cursor and self._db.wait(_head, cursor, wait, changes.CHANNEL, last=last):
                page, _ = read()
        except StorageError:
            if (gather or wait) and self._db.closed:
                return ChangePage((), cursor)  # as a wait that close() ends: nothing more comes
            raise
        return page

    def wait_for_changes(self, cursor: int, *, timeout: float, linger: float = 0.0) -> bool:
        """Return True as soon as a change after `cursor` is committed (at once if one is),
        False when `timeout` seconds (0 to 86,400) pass without one.

        PostgreSQL wakes on a notification sent by the writing transaction (delivered at its
        commit) and looks anyway every 0.25 s, so a missed notification or a pooler that
        delivers none only delays it; SQLite looks at PRAGMA data_version every 10 ms on an
        idle connection. Either way the answer comes from the committed log, never from the
        notification alone. Returns False early when the store is being closed.

        Args:
            linger: seconds (0 to 60) to let pass before looking, so that what commits
                meanwhile comes in one page: a follower that reads after each call reads at
                most 1/linger pages a second however busy the writers are (a dashboard's many
                followers then cost the writers little), and sees a change at most `linger`
                late; a change committed once the linger has passed wakes it at once.

        Raises:
            CursorExpiredError: the cursor is beyond the log's end.
        """
        cursor = check.integer("cursor", cursor, minimum=0)
        wait = check.wait_seconds("timeout", timeout)
        gather = check.wait_seconds("linger", linger, maximum=MAX_LINGER)
        self._db.pause(gather)
        try:
            last = self._db.read(_head)
        except StorageError:
            if self._db.closed:  # closed before or while it looked: the wait is over
                return False
            raise
        if cursor > last:
            _check_cursor(cursor, last, 0)
        return self._db.wait(_head, cursor, wait, changes.CHANNEL, last=last)

    def prune_changes(
        self, *, before: datetime | None = None, keep: int | None = None, batch_size: int = 10_000
    ) -> int:
        """Remove old changes from the log: those written before `before` (oldest first, up to
        the first one written at or after it), or all but the newest `keep`; one of the two.
        Each batch is its own transaction. Readers whose cursor falls in the removed part get
        CursorExpiredError and resynchronise.

        Returns:
            The changes removed.
        """
        if (before is None) == (keep is None):
            raise ValidationError("prune_changes needs one of before= or keep=")
        if before is not None:
            before = check.timestamp("before", before)
        if keep is not None:
            keep = check.integer("keep", keep, minimum=0)
        batch_size = check.integer("batch_size", batch_size, minimum=1, maximum=MAX_BATCH)
        # The end is fixed first: changes written during the prune are not chased.
        target = self._db.read(lambda conn: _prune_target(conn, before, keep))
        total = 0
        while gone := self._db.write(lambda conn: _prune_changes(conn, target, batch_size)):
            total += gone
        return total

    def change_cursor(self) -> int:
        """The cursor of the newest committed change. A reader starting out takes it, loads
        the tables, then reads on with changes_since from it: nothing committed after the
        load began is missed (a change made during the load may be seen both ways)."""
        return self._db.read(lambda conn: changes.head(conn)[0])


def _head(conn: Connection) -> int:
    """The change log's last number."""
    return changes.head(conn)[0]


def _check_cursor(cursor: int, last: int, pruned: int) -> None:
    if cursor < pruned:
        raise CursorExpiredError(
            f"cursor {cursor} is older than the change log, which starts after change {pruned} "
            "(pruned); resynchronise from the tables and read on from changes_since's next_cursor"
        )
    if cursor > last:
        raise CursorExpiredError(
            f"cursor {cursor} is beyond the change log, whose last change is {last} (was the "
            "database replaced?); resynchronise from the tables"
        )


def _prune_batch(conn: Connection, where: history.Filter, limit: int) -> list[PipelineHistory]:
    """One batch of a prune: the oldest history rows and their pipelines' transitions."""
    gone = history.prune_batch(conn, where, limit)
    stages.bump(conn, stages.visits_of_runs(conn, gone), sign=-1)
    transitions.delete_of(conn, [record.id for record in gone])
    changes.log(conn, [Entry("history", r.id, r.project_id, "pruned") for r in gone], now())
    return gone


def _archived(conn: Connection, inserted: list[PipelineHistory]) -> list[PipelineHistory]:
    """Count the time the newly archived runs spent in each state into the kept histogram."""
    stages.bump(conn, stages.visits_of_runs(conn, inserted), sign=1)
    return inserted


def _prune_target(conn: Connection, before: datetime | None, keep: int | None) -> int:
    """The newest change prune_changes removes: the last written before `before`, or the
    last but `keep`."""
    if before is not None:
        return changes.through_before(conn, before)
    return changes.head(conn)[0] - (keep or 0)


def _prune_changes(conn: Connection, target: int, limit: int) -> int:
    """One batch of prune_changes: up to `limit` of the oldest changes up to `target`."""
    _, pruned = changes.head(conn)
    through = min(target, pruned + limit)
    return changes.prune_through(conn, through) if through > pruned else 0


def _pipeline_change(pipeline: Pipeline, op: str) -> Entry:
    return Entry("pipeline", pipeline.id, pipeline.project_id, op, pipeline.version)


def _moved_to_history(pipeline_id: str, project_id: str, recorded: bool) -> list[Entry]:
    """A finished pipeline leaving the active table; its history record when this wrote it
    (one saved before keeps the change of that save)."""
    moved = [Entry("pipeline", pipeline_id, project_id, "archived")]
    return [*moved, Entry("history", pipeline_id, project_id, "created")] if recorded else moved


def _given(value: object, field: str) -> bool:
    """True when an update_project argument asks for a change (None and UNSET do not)."""
    if value is CLEAR:
        raise ValidationError(f"{field} cannot be cleared; only github_project_id can")
    return value is not None and value is not UNSET


def _filter(
    project_id: str | None,
    final_state: PipelineState | str | None,
    since: datetime | None,
    until: datetime | None,
) -> history.Filter:
    """The checked history filters of a call."""
    return history.Filter(
        project_id=check.optional_identifier("project_id", project_id),
        final_state=None if final_state is None else check.state("final_state", final_state),
        since=None if since is None else check.timestamp("since", since),
        until=None if until is None else check.timestamp("until", until),
    )


def _cursor(before: HistoryCursor | None) -> HistoryCursor | None:
    if before is None:
        return None
    if not isinstance(before, HistoryCursor):
        raise ValidationError(f"before must be a HistoryCursor, got {type(before).__name__}")
    return HistoryCursor(
        completed_at=check.timestamp("before.completed_at", before.completed_at),
        id=check.identifier("before.id", before.id),
    )
