"""The pipeline half of StateStore: active pipelines, optimistic updates, claims, archiving."""

from __future__ import annotations

from typing import Any

from sqlalchemy.exc import IntegrityError

from . import compiled as run
from . import rows
from . import statements as sql
from . import validation as check
from .base import UNSET, StoreBase, Unset, new_id, now
from .errors import (
    PipelineExistsError,
    PipelineNotFoundError,
    ProjectNotFoundError,
    StaleVersionError,
    ValidationError,
)
from .records import Pipeline, PipelineHistory, PipelineState


class PipelinesMixin(StoreBase):
    """Pipeline calls; mixed into StateStore."""

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
            ticket_title=check.ticket_title(ticket_title),
            ticket_body=check.long_text("ticket_body", ticket_body),
            state=PipelineState.QUEUED,
            branch_name=check.branch("branch_name", branch_name),
            pr_id=None,
            pr_url=None,
            retry_count_ci=0,
            retry_count_review=0,
            feedback=None,
            created_at=stamp,
            updated_at=stamp,
            version=1,
        )
        with self._write() as conn:
            try:
                run.execute(conn, sql.INSERT_PIPELINE, rows.values_of(pipeline))
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
            row = run.first(conn, sql.PIPELINE_BY_ID, {"id": pipeline_id})
        if row is None:
            raise PipelineNotFoundError(f"pipeline {pipeline_id} not found")
        return rows.pipeline(row)

    def get_pipeline_by_ticket(self, project_id: str, ticket_id: str | int) -> Pipeline:
        """The project's active pipeline for a ticket. Raises PipelineNotFoundError."""
        check.identifier("project_id", project_id)
        ticket = check.ticket_id(ticket_id)
        with self._read() as conn:
            params = {"project_id": project_id, "ticket_id": ticket}
            row = run.first(conn, sql.PIPELINE_BY_TICKET, params)
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
            return [rows.pipeline(row) for row in run.rows(conn, statement, params)]

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
        check.identifier("pipeline_id", pipeline_id)
        values: dict[str, Any] = {}
        if state is not UNSET:
            values["state"] = check.state("state", state).value
        if pr_id is not UNSET:
            values["pr_id"] = check.optional_integer("pr_id", pr_id, minimum=1)
        if pr_url is not UNSET:
            values["pr_url"] = None if pr_url is None else check.pr_url(pr_url)
        if retry_count_ci is not UNSET:
            values["retry_count_ci"] = check.retry_count("retry_count_ci", retry_count_ci)
        if retry_count_review is not UNSET:
            values["retry_count_review"] = check.retry_count("retry_count_review", retry_count_review)
        if feedback is not UNSET:
            values["feedback"] = None if feedback is None else check.long_text("feedback", feedback)
        if expected_version is not None:
            check.integer("expected_version", expected_version, minimum=1, maximum=check.MAX_INT32)
        if not values:
            # A write of nothing would still move the version and make other writers stale.
            raise ValidationError(f"nothing to update for pipeline {pipeline_id}: give at least one field")
        statement = sql.update_pipeline(frozenset(values), expected_version is not None)
        values.update(_id=pipeline_id, _version=expected_version, updated_at=now())
        with self._write() as conn:
            row = run.first(conn, statement, values)
            if row is None:
                stored = run.scalar(conn, sql.PIPELINE_VERSION, {"id": pipeline_id})
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
        params: dict[str, Any] = {"_from": source.value, "_to": target.value, "_now": now()}
        if project_id is not None:
            params["_project_id"] = check.identifier("project_id", project_id)
        with self._write() as conn:
            row = run.first(conn, sql.claim_pipeline(project_id is not None), params)
        return rows.pipeline(row) if row is not None else None

    def delete_pipeline(self, pipeline_id: str) -> None:
        """Delete an active pipeline without archiving it. Raises PipelineNotFoundError."""
        check.identifier("pipeline_id", pipeline_id)
        with self._write() as conn:
            deleted = run.execute(conn, sql.DELETE_PIPELINE, {"id": pipeline_id})
        if not deleted:
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
        if not isinstance(pipeline, Pipeline):
            raise ValidationError(f"pipeline must be a Pipeline record, got {type(pipeline).__name__}")
        _check_pipeline_record(pipeline)
        _require_finished(pipeline.id, check.state("pipeline.state", pipeline.state))
        stamp = now()
        with self._write() as conn:
            existing = rows.existing_history(conn, pipeline.id)
            if existing is not None:
                return existing
            row = run.first(conn, sql.PIPELINE_BY_ID, {"id": pipeline.id})
            if row is None:
                raise PipelineNotFoundError(f"pipeline {pipeline.id} not found")
            stored = rows.pipeline(row)
            if stored != pipeline:
                raise StaleVersionError(
                    f"pipeline {pipeline.id} is stored at version {stored.version} and differs from "
                    "the record given; nothing written"
                )
            inserted = rows.insert_history(
                conn, self._dialect.name, [rows.history_from_pipeline(stored, stamp)]
            )
        return inserted[0]

    def archive_pipeline(self, pipeline_id: str) -> PipelineHistory:
        """Move a finished (MERGED or FAILED) pipeline into history and delete it, in one
        transaction.

        A crash leaves the pipeline either fully active or fully archived. If it was saved
        to history before, that record is kept and returned.

        Raises:
            PipelineNotFoundError.
            ValidationError: the pipeline is not finished; nothing written.
        """
        check.identifier("pipeline_id", pipeline_id)
        with self._write() as conn:
            # Only a finished pipeline is taken, so a refused archive deletes nothing.
            row = run.first(conn, sql.TAKE_FINISHED_PIPELINE, {"id": pipeline_id})
            if row is None:
                stored = run.scalar(conn, sql.PIPELINE_STATE, {"id": pipeline_id})
                if stored is None:
                    raise PipelineNotFoundError(f"pipeline {pipeline_id} not found")
                _require_finished(pipeline_id, rows.state(stored))
                # PostgreSQL: it was finished by a transaction that committed just now.
                raise StaleVersionError(
                    f"pipeline {pipeline_id} was finished by another writer during the archive; "
                    "nothing written, archive it again"
                )
            record = rows.history_from_pipeline(rows.pipeline(row), now())
            inserted = rows.insert_history(conn, self._dialect.name, [record])
            result = inserted[0] if inserted else rows.existing_history(conn, pipeline_id)
        assert result is not None
        return result


def _require_finished(pipeline_id: str, state: PipelineState) -> None:
    if not state.is_terminal:
        raise ValidationError(
            f"pipeline {pipeline_id} is {state.value}; only merged or failed pipelines go to history"
        )


def _check_pipeline_record(pipeline: Pipeline) -> None:
    """Every field of a pipeline record handed back in (save_to_history)."""
    check.identifier("pipeline.id", pipeline.id)
    check.identifier("pipeline.project_id", pipeline.project_id)
    check.stored_ticket_id("pipeline.ticket_id", pipeline.ticket_id)
    check.ticket_title(pipeline.ticket_title)
    check.long_text("pipeline.ticket_body", pipeline.ticket_body)
    check.state("pipeline.state", pipeline.state)
    check.branch("pipeline.branch_name", pipeline.branch_name)
    check.optional_integer("pipeline.pr_id", pipeline.pr_id, minimum=1)
    if pipeline.pr_url is not None:
        check.pr_url(pipeline.pr_url)
    check.retry_count("pipeline.retry_count_ci", pipeline.retry_count_ci)
    check.retry_count("pipeline.retry_count_review", pipeline.retry_count_review)
    if pipeline.feedback is not None:
        check.long_text("pipeline.feedback", pipeline.feedback)
    check.timestamp("pipeline.created_at", pipeline.created_at)
    check.timestamp("pipeline.updated_at", pipeline.updated_at)
    check.integer("pipeline.version", pipeline.version, minimum=1, maximum=check.MAX_INT32)
