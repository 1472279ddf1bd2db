"""StateStore: the public API. Each public call is one transaction; database errors are
translated into StateStoreError subclasses here and nowhere else."""

from __future__ import annotations

import enum
import os
import sqlite3
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any, Final

from sqlalchemy import Connection
from sqlalchemy.engine import URL
from sqlalchemy.exc import DBAPIError, IntegrityError, SQLAlchemyError

from . import migrate, rows
from . import statements as sql
from . import validation as check
from .engine import EngineOptions, describe, dialect_for, mask, to_url
from .errors import (
    PipelineExistsError,
    PipelineNotFoundError,
    ProjectExistsError,
    ProjectHasActivePipelinesError,
    ProjectNotFoundError,
    StaleVersionError,
    StateStoreError,
    StorageError,
    ValidationError,
)
from .history import HistoryMixin
from .records import Pipeline, PipelineHistory, PipelineState, Project


class _Unset(enum.Enum):
    token = 0


UNSET: Final = _Unset.token
"""Default of optional update arguments: the field is left as it is."""


def _now() -> datetime:
    return datetime.now(UTC)


def _new_id() -> str:
    return str(uuid.uuid4())


class StateStore(HistoryMixin):
    """Projects, active pipelines and their history in one SQLite file or PostgreSQL database.

    Args:
        db_path: a filesystem path (parent folders are created), ":memory:", or an
            SQLAlchemy URL (``sqlite:///...``, ``postgresql+psycopg://...``).
        auto_migrate: upgrade an older schema on open; when False an older schema raises
            SchemaVersionError instead.
        pool_size, max_overflow, pool_timeout: the connection pool.
        connect_timeout: seconds to wait for a PostgreSQL connection.
        busy_timeout: seconds a write waits for SQLite's write lock before StorageError.
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
        self._closed = True
        url = to_url(db_path)
        options = EngineOptions(
            pool_size=check.integer("pool_size", pool_size, minimum=1, maximum=1000),
            max_overflow=check.integer("max_overflow", max_overflow, minimum=0, maximum=1000),
            pool_timeout=_seconds("pool_timeout", pool_timeout),
            connect_timeout=_seconds("connect_timeout", connect_timeout),
            busy_timeout=_seconds("busy_timeout", busy_timeout),
            statement_timeout=None
            if statement_timeout is None
            else _seconds("statement_timeout", statement_timeout),
        )
        self._url = url
        self._dialect = dialect_for(url, options)
        self._engine = self._dialect.create_engine()
        self._closed = False
        try:
            with self._translate():
                migrate.ensure_schema(self._engine, auto_migrate=auto_migrate)
                self._dialect.prepare(self._engine)
        except BaseException:
            self.close()
            raise

    # -- lifecycle -------------------------------------------------------------------------

    @property
    def url(self) -> str:
        """The database URL with any password masked."""
        return mask(self._url)

    @property
    def dialect(self) -> str:
        """ "sqlite" or "postgresql"."""
        return self._dialect.name

    def close(self) -> None:
        """Close every pooled connection; later calls raise StorageError."""
        if not self._closed:
            self._closed = True
            self._engine.dispose()

    def __enter__(self) -> StateStore:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"StateStore({self.url!r})"

    # -- transactions ----------------------------------------------------------------------

    @contextmanager
    def _translate(self) -> Iterator[None]:
        """Turn any database error escaping the block into StorageError."""
        try:
            yield
        except StateStoreError:
            raise
        except (SQLAlchemyError, sqlite3.Error, OSError) as exc:
            # sqlite3.Error too: engine.sqlite_begin sends BEGIN to the driver directly.
            raise StorageError(f"{describe(self._url)}: {_reason(exc)}") from exc

    @contextmanager
    def _read(self, *, snapshot: bool = False) -> Iterator[Connection]:
        """A read transaction; with snapshot=True every statement in it sees the same data."""
        if self._closed:
            raise StorageError(f"{describe(self._url)}: the store is closed")
        with (
            self._translate(),
            self._dialect.read_guard(),
            self._engine.connect().execution_options(**self._dialect.read_options(snapshot)) as conn,
        ):
            self._dialect.begin(conn, write=False)
            yield conn
            conn.commit()

    @contextmanager
    def _write(self) -> Iterator[Connection]:
        if self._closed:
            raise StorageError(f"{describe(self._url)}: the store is closed")
        with self._translate(), self._dialect.write_guard(), self._engine.connect() as conn:
            self._dialect.begin(conn, write=True)
            yield conn
            conn.commit()

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
            ProjectExistsError: a project with that repo exists.
            ValidationError: an argument is not acceptable.
        """
        now = _now()
        project = Project(
            id=_new_id(),
            name=check.name(name),
            repo=check.repo(repo),
            base_branch=check.branch("base_branch", base_branch),
            github_project_id=check.optional_integer("github_project_id", github_project_id, minimum=1),
            max_retries_ci=check.integer(
                "max_retries_ci", max_retries_ci, minimum=0, maximum=check.MAX_RETRIES_LIMIT
            ),
            max_retries_review=check.integer(
                "max_retries_review", max_retries_review, minimum=0, maximum=check.MAX_RETRIES_LIMIT
            ),
            created_at=now,
            updated_at=now,
        )
        with self._write() as conn:
            try:
                conn.execute(sql.INSERT_PROJECT, rows.values_of(project))
            except IntegrityError as exc:
                if self._dialect.violation(exc) == "unique":
                    raise ProjectExistsError(f"a project with repo {project.repo!r} exists already") from exc
                raise
        return project

    def get_project(self, project_id: str) -> Project:
        """The project with that id. Raises ProjectNotFoundError."""
        check.identifier("project_id", project_id)
        with self._read() as conn:
            row = conn.execute(sql.PROJECT_BY_ID, {"id": project_id}).first()
        if row is None:
            raise ProjectNotFoundError(f"project {project_id} not found")
        return rows.project(row)

    def get_project_by_repo(self, repo: str) -> Project:
        """The project of `repo` ("owner/name"). Raises ProjectNotFoundError."""
        check.repo(repo)
        with self._read() as conn:
            row = conn.execute(sql.PROJECT_BY_REPO, {"repo": repo}).first()
        if row is None:
            raise ProjectNotFoundError(f"project with repo {repo!r} not found")
        return rows.project(row)

    def list_projects(self) -> list[Project]:
        """Every project, ordered by name (then id)."""
        with self._read() as conn:
            return [rows.project(row) for row in conn.execute(sql.ALL_PROJECTS).all()]

    def update_project(
        self,
        project_id: str,
        *,
        name: str | _Unset = UNSET,
        base_branch: str | _Unset = UNSET,
        github_project_id: int | _Unset | None = UNSET,
        max_retries_ci: int | _Unset = UNSET,
        max_retries_review: int | _Unset = UNSET,
    ) -> Project:
        """Change the given fields (None clears github_project_id); updated_at moves.

        Raises:
            ProjectNotFoundError, ValidationError.
        """
        check.identifier("project_id", project_id)
        values: dict[str, Any] = {}
        if name is not UNSET:
            values["name"] = check.name(name)
        if base_branch is not UNSET:
            values["base_branch"] = check.branch("base_branch", base_branch)
        if github_project_id is not UNSET:
            values["github_project_id"] = check.optional_integer(
                "github_project_id", github_project_id, minimum=1
            )
        if max_retries_ci is not UNSET:
            values["max_retries_ci"] = check.integer(
                "max_retries_ci", max_retries_ci, minimum=0, maximum=check.MAX_RETRIES_LIMIT
            )
        if max_retries_review is not UNSET:
            values["max_retries_review"] = check.integer(
                "max_retries_review", max_retries_review, minimum=0, maximum=check.MAX_RETRIES_LIMIT
            )
        statement = sql.update_project(frozenset(values))
        values.update(_id=project_id, updated_at=_now())
        with self._write() as conn:
            row = conn.execute(statement, values).first()
        if row is None:
            raise ProjectNotFoundError(f"project {project_id} not found")
        return rows.project(row)

    def delete_project(self, project_id: str) -> None:
        """Delete a project whose pipelines are all finished.

        Finished (MERGED/FAILED) pipelines not yet in history are archived in the same
        transaction; the project's history stays.

        Raises:
            ProjectNotFoundError, ProjectHasActivePipelinesError.
        """
        check.identifier("project_id", project_id)
        with self._write() as conn:
            if conn.execute(sql.LOCK_PROJECT, {"id": project_id}).first() is None:
                raise ProjectNotFoundError(f"project {project_id} not found")
            active = conn.execute(sql.COUNT_ACTIVE, {"id": project_id}).scalar_one()
            if active:
                raise ProjectHasActivePipelinesError(
                    f"project {project_id} has {active} active pipeline(s); finish or delete them first"
                )
            finished = conn.execute(sql.DELETE_PROJECT_PIPELINES, {"id": project_id}).all()
            now = _now()
            archived = [rows.history_from_pipeline(rows.pipeline(row), now) for row in finished]
            rows.insert_history(conn, self._dialect.name, archived)
            conn.execute(sql.DELETE_PROJECT, {"id": project_id})

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
        now = _now()
        pipeline = Pipeline(
            id=_new_id(),
            project_id=check.identifier("project_id", project_id),
            ticket_id=check.ticket_id(ticket_id),
            ticket_title=check.ticket_title(ticket_title),
            ticket_body=check.long_text("ticket_body", ticket_body),
            state=PipelineState.QUEUED,
            branch_name=check.branch("branch_name", branch_name),
            pr_id=None,
            pr_url=None,
            retry_count_ci=0,
            retry_count_review=0,
            feedback=None,
            created_at=now,
            updated_at=now,
            version=1,
        )
        with self._write() as conn:
            try:
                conn.execute(sql.INSERT_PIPELINE, rows.values_of(pipeline))
            except IntegrityError as exc:
                violation = self._dialect.violation(exc)
                if violation == "unique":
                    raise PipelineExistsError(
                        f"project {project_id} has an active pipeline for ticket "
                        f"{pipeline.ticket_id!r} already"
                    ) from exc
                if violation == "foreign_key":
                    raise ProjectNotFoundError(f"project {project_id} not found") from exc
                raise
        return pipeline

    def get_pipeline(self, pipeline_id: str) -> Pipeline:
        """The active pipeline with that id. Raises PipelineNotFoundError."""
        check.identifier("pipeline_id", pipeline_id)
        with self._read() as conn:
            row = conn.execute(sql.PIPELINE_BY_ID, {"id": pipeline_id}).first()
        if row is None:
            raise PipelineNotFoundError(f"pipeline {pipeline_id} not found")
        return rows.pipeline(row)

    def get_pipeline_by_ticket(self, project_id: str, ticket_id: str | int) -> Pipeline:
        """The project's active pipeline for a ticket. Raises PipelineNotFoundError."""
        check.identifier("project_id", project_id)
        ticket = check.ticket_id(ticket_id)
        with self._read() as conn:
            params = {"project_id": project_id, "ticket_id": ticket}
            row = conn.execute(sql.PIPELINE_BY_TICKET, params).first()
        if row is None:
            raise PipelineNotFoundError(f"no active pipeline for ticket {ticket!r} in project {project_id}")
        return rows.pipeline(row)

    def list_pipelines(
        self, project_id: str | None = None, state: PipelineState | str | None = None
    ) -> list[Pipeline]:
        """Active pipelines, newest first (ties by id), optionally of one project and/or state."""
        params: dict[str, Any] = {}
        if project_id is not None:
            params["project_id"] = check.identifier("project_id", project_id)
        if state is not None:
            params["state"] = check.state("state", state).value
        statement = sql.list_pipelines("project_id" in params, "state" in params)
        with self._read() as conn:
            return [rows.pipeline(row) for row in conn.execute(statement, params).all()]

    def update_pipeline(
        self,
        pipeline_id: str,
        *,
        state: PipelineState | str | _Unset = UNSET,
        pr_id: int | _Unset | None = UNSET,
        pr_url: str | _Unset | None = UNSET,
        retry_count_ci: int | _Unset = UNSET,
        retry_count_review: int | _Unset = UNSET,
        feedback: str | _Unset | None = UNSET,
        expected_version: int | None = None,
    ) -> Pipeline:
        """Change the given fields (None clears pr_id, pr_url, feedback); version +1.

        Any state may follow any state: transitions are the orchestrator's business.

        Args:
            expected_version: write only if the stored version is this one.

        Raises:
            PipelineNotFoundError, ValidationError.
            StaleVersionError: the stored version is not `expected_version`; nothing written.
        """
        check.identifier("pipeline_id", pipeline_id)
        values: dict[str, Any] = {}
        if state is not UNSET:
            values["state"] = check.state("state", state).value
        if pr_id is not UNSET:
            values["pr_id"] = check.optional_integer("pr_id", pr_id, minimum=1)
        if pr_url is not UNSET:
            values["pr_url"] = None if pr_url is None else check.pr_url(pr_url)
        if retry_count_ci is not UNSET:
            values["retry_count_ci"] = check.integer(
                "retry_count_ci", retry_count_ci, minimum=0, maximum=check.MAX_INT32
            )
        if retry_count_review is not UNSET:
            values["retry_count_review"] = check.integer(
                "retry_count_review", retry_count_review, minimum=0, maximum=check.MAX_INT32
            )
        if feedback is not UNSET:
            values["feedback"] = None if feedback is None else check.long_text("feedback", feedback)
        if expected_version is not None:
            check.integer("expected_version", expected_version, minimum=1, maximum=check.MAX_INT32)
        statement = sql.update_pipeline(frozenset(values), expected_version is not None)
        values.update(_id=pipeline_id, _version=expected_version, updated_at=_now())
        with self._write() as conn:
            row = conn.execute(statement, values).first()
            if row is None:
                stored = conn.execute(sql.PIPELINE_VERSION, {"id": pipeline_id}).scalar()
        if row is not None:
            return rows.pipeline(row)
        if stored is None:
            raise PipelineNotFoundError(f"pipeline {pipeline_id} not found")
        raise StaleVersionError(
            f"pipeline {pipeline_id} is at version {stored}, not the expected {expected_version}; "
            "nothing written"
        )

    def claim_pipeline(
        self,
        *,
        project_id: str | None = None,
        state: PipelineState | str = PipelineState.QUEUED,
        new_state: PipelineState | str = PipelineState.CODING,
    ) -> Pipeline | None:
        """Atomically take the oldest pipeline in `state`, move it to `new_state` (version +1).

        Concurrent claimers never get the same pipeline and never wait on each other's row
        locks (PostgreSQL: FOR UPDATE SKIP LOCKED; SQLite: one immediate transaction).

        Returns:
            The claimed pipeline, or None when no pipeline is in `state`.
        """
        source = check.state("state", state)
        target = check.state("new_state", new_state)
        params: dict[str, Any] = {"_from": source.value, "_to": target.value, "_now": _now()}
        if project_id is not None:
            params["_project_id"] = check.identifier("project_id", project_id)
        with self._write() as conn:
            row = conn.execute(sql.claim_pipeline(project_id is not None), params).first()
        return rows.pipeline(row) if row is not None else None

    def delete_pipeline(self, pipeline_id: str) -> None:
        """Delete an active pipeline without archiving it. Raises PipelineNotFoundError."""
        check.identifier("pipeline_id", pipeline_id)
        with self._write() as conn:
            deleted = conn.execute(sql.DELETE_PIPELINE, {"id": pipeline_id}).rowcount
        if not deleted:
            raise PipelineNotFoundError(f"pipeline {pipeline_id} not found")

    # -- history ---------------------------------------------------------------------------

    def save_to_history(self, pipeline: Pipeline) -> PipelineHistory:
        """Copy a pipeline into history (completed now); the pipeline stays active.

        Idempotent: saving the same pipeline again returns the existing record.
        """
        if not isinstance(pipeline, Pipeline):
            raise ValidationError(f"pipeline must be a Pipeline record, got {type(pipeline).__name__}")
        _check_pipeline_record(pipeline)
        record = rows.history_from_pipeline(pipeline, _now())
        with self._write() as conn:
            inserted = rows.insert_history(conn, self._dialect.name, [record])
            if inserted:
                return inserted[0]
            existing = rows.existing_history(conn, pipeline.id)
        assert existing is not None, "a history row that blocked the insert has gone"
        return existing

    def archive_pipeline(self, pipeline_id: str) -> PipelineHistory:
        """Move a pipeline into history and delete it, in one transaction.

        A crash leaves the pipeline either fully active or fully archived. If it was saved
        to history before, that record is kept and returned.

        Raises:
            PipelineNotFoundError.
        """
        check.identifier("pipeline_id", pipeline_id)
        with self._write() as conn:
            row = conn.execute(sql.TAKE_PIPELINE, {"id": pipeline_id}).first()
            if row is None:
                raise PipelineNotFoundError(f"pipeline {pipeline_id} not found")
            record = rows.history_from_pipeline(rows.pipeline(row), _now())
            inserted = rows.insert_history(conn, self._dialect.name, [record])
            result = inserted[0] if inserted else rows.existing_history(conn, pipeline_id)
        assert result is not None
        return result


def _check_pipeline_record(pipeline: Pipeline) -> None:
    check.identifier("pipeline.id", pipeline.id)
    check.identifier("pipeline.project_id", pipeline.project_id)
    check.ticket_id(pipeline.ticket_id)
    check.ticket_title(pipeline.ticket_title)
    check.state("pipeline.state", pipeline.state)
    check.branch("pipeline.branch_name", pipeline.branch_name)
    check.optional_integer("pipeline.pr_id", pipeline.pr_id, minimum=1)
    if pipeline.pr_url is not None:
        check.pr_url(pipeline.pr_url)
    check.integer("pipeline.retry_count_ci", pipeline.retry_count_ci, minimum=0, maximum=check.MAX_INT32)
    check.integer(
        "pipeline.retry_count_review", pipeline.retry_count_review, minimum=0, maximum=check.MAX_INT32
    )
    if not isinstance(pipeline.created_at, datetime) or pipeline.created_at.tzinfo is None:
        raise ValidationError("pipeline.created_at must be a timezone-aware datetime")


def _seconds(field: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0 < value <= 86400:
        raise ValidationError(f"{field} must be a number of seconds in (0, 86400], got {value!r}")
    return float(value)


def _reason(exc: BaseException) -> str:
    """The first line of the driver's message, without SQLAlchemy's SQL and parameter dump."""
    orig = exc.orig if isinstance(exc, DBAPIError) and exc.orig is not None else exc
    text = str(orig).strip().splitlines()
    return text[0] if text else type(orig).__name__
