"""Active pipelines: their statements, built once, and the functions that run them."""

from __future__ import annotations

from dataclasses import fields
from datetime import datetime
from functools import cache
from typing import Any

from sqlalchemy import Connection, Executable, bindparam, case, delete, func, select, update

from ..models import pipelines
from ..records import Pipeline, PipelineState
from . import rows

COLUMNS = [pipelines.c[f.name] for f in fields(Pipeline)]
"""In the order of the record's fields, so a row unpacks straight into a record."""
_FINISHED = pipelines.c.state.in_([state.value for state in PipelineState if state.is_terminal])

_INSERT = pipelines.insert()
_BY_ID = select(*COLUMNS).where(pipelines.c.id == bindparam("id"))
_BY_TICKET = select(*COLUMNS).where(
    pipelines.c.project_id == bindparam("project_id"), pipelines.c.ticket_id == bindparam("ticket_id")
)
_VERSION = select(pipelines.c.version).where(pipelines.c.id == bindparam("id"))
_STATE = select(pipelines.c.state).where(pipelines.c.id == bindparam("id"))
_DELETE = delete(pipelines).where(pipelines.c.id == bindparam("id"))
_DELETE_ONE = _DELETE.returning(pipelines.c.project_id)
_TAKE_FINISHED = _DELETE.where(_FINISHED).returning(*COLUMNS)
_TAKE_FINISHED_OF_PROJECT = (
    delete(pipelines).where(pipelines.c.project_id == bindparam("project_id"), _FINISHED).returning(*COLUMNS)
)


@cache
def _filtered(count: bool, by_project: bool, by_state: bool) -> Executable:
    statement = select(func.count()).select_from(pipelines) if count else select(*COLUMNS)
    if by_project:
        statement = statement.where(pipelines.c.project_id == bindparam("project_id"))
    if by_state:
        statement = statement.where(pipelines.c.state == bindparam("state"))
    if count:
        return statement
    return statement.order_by(pipelines.c.created_at.desc(), pipelines.c.id.desc())


def _not_before(now: Any) -> Any:
    """`now`, or the stored updated_at when that is later: a writer that read the clock before
    it waited for the row lock (PostgreSQL) must not stamp the pipeline, and its transition,
    earlier than the write before it. Both engines compare the stored form (SQLite's text sorts
    like the time)."""
    return case((pipelines.c.updated_at > now, pipelines.c.updated_at), else_=now)


@cache
def _update(names: frozenset[str], versioned: bool) -> Executable:
    """UPDATE pipelines setting `names` and updated_at from parameters of the same names,
    version + 1; with `versioned`, only while the version equals parameter "_version"."""
    values: dict[str, Any] = {name: bindparam(name) for name in sorted(names)}
    values["updated_at"] = _not_before(bindparam("updated_at", type_=pipelines.c.updated_at.type))
    values["version"] = pipelines.c.version + 1
    statement = update(pipelines).where(pipelines.c.id == bindparam("_id"))
    if versioned:
        statement = statement.where(pipelines.c.version == bindparam("_version"))
    return statement.values(values).returning(*COLUMNS)


@cache
def _claim(by_project: bool) -> Executable:
    """Move the oldest pipeline in state "_from" to "_to"; SKIP LOCKED on PostgreSQL."""
    oldest = select(pipelines.c.id).where(pipelines.c.state == bindparam("_from"))
    if by_project:
        oldest = oldest.where(pipelines.c.project_id == bindparam("_project_id"))
    oldest = (
        oldest.order_by(pipelines.c.created_at, pipelines.c.id).limit(1).with_for_update(skip_locked=True)
    )
    return (
        update(pipelines)
        .where(pipelines.c.id == oldest.scalar_subquery())
        .values(
            state=bindparam("_to"),
            version=pipelines.c.version + 1,
            updated_at=_not_before(bindparam("_now", type_=pipelines.c.updated_at.type)),
        )
        .returning(*COLUMNS)
    )


def insert(conn: Connection, pipeline: Pipeline) -> None:
    conn.execute(_INSERT, rows.values_of(pipeline))


def by_id(conn: Connection, pipeline_id: str) -> Pipeline | None:
    row = conn.execute(_BY_ID, {"id": pipeline_id}).first()
    return None if row is None else rows.pipeline(row)


def by_ticket(conn: Connection, project_id: str, ticket_id: str) -> Pipeline | None:
    row = conn.execute(_BY_TICKET, {"project_id": project_id, "ticket_id": ticket_id}).first()
    return None if row is None else rows.pipeline(row)


def listed(conn: Connection, project_id: str | None, state: PipelineState | None) -> list[Pipeline]:
    """Newest first (ties by id), of one project and/or state when given."""
    statement = _filtered(False, project_id is not None, state is not None)
    params = {"project_id": project_id, "state": None if state is None else state.value}
    return [rows.pipeline(row) for row in conn.execute(statement, params)]


def count(conn: Connection, project_id: str | None, state: PipelineState | None) -> int:
    statement = _filtered(True, project_id is not None, state is not None)
    params = {"project_id": project_id, "state": None if state is None else state.value}
    return int(conn.execute(statement, params).scalar_one())


_BY_STATE = select(pipelines.c.state, func.count()).group_by(pipelines.c.state)
_BY_STATE_OF_PROJECT = _BY_STATE.where(pipelines.c.project_id == bindparam("project_id"))
_WORKING = [PipelineState.CODING.value, PipelineState.TESTING.value, PipelineState.REVIEW.value]
"""The states that take a worker: a project's capacity (claim's max_active) counts these."""
_WORKING_OF_PROJECT = (
    select(func.count())
    .select_from(pipelines)
    .where(pipelines.c.project_id == bindparam("project_id"), pipelines.c.state.in_(_WORKING))
)


def count_by_state(conn: Connection, project_id: str | None) -> dict[PipelineState, int]:
    """Active pipelines per state (every state, 0 where none), in one query."""
    statement = _BY_STATE if project_id is None else _BY_STATE_OF_PROJECT
    counts = dict.fromkeys(PipelineState, 0)
    for stored, n in conn.execute(statement, {"project_id": project_id}):
        counts[rows.state(stored)] = int(n)
    return counts


def working(conn: Connection, project_id: str) -> int:
    """How many of the project's pipelines are in CODING, TESTING or REVIEW."""
    return int(conn.execute(_WORKING_OF_PROJECT, {"project_id": project_id}).scalar_one())


def update_fields(
    conn: Connection, pipeline_id: str, values: dict[str, Any], expected_version: int | None, now: datetime
) -> Pipeline | None:
    """Set the columns in `values`, version + 1; None when the pipeline is absent or (with
    `expected_version`) at another version."""
    statement = _update(frozenset(values), expected_version is not None)
    params = {**values, "_id": pipeline_id, "_version": expected_version, "updated_at": now}
    row = conn.execute(statement, params).first()
    return None if row is None else rows.pipeline(row)


def version(conn: Connection, pipeline_id: str) -> int | None:
    found = conn.execute(_VERSION, {"id": pipeline_id}).scalar()
    return None if found is None else int(found)


def state(conn: Connection, pipeline_id: str) -> PipelineState | None:
    found = conn.execute(_STATE, {"id": pipeline_id}).scalar()
    return None if found is None else rows.state(found)


def claim(
    conn: Connection, source: PipelineState, target: PipelineState, project_id: str | None, now: datetime
) -> Pipeline | None:
    params = {"_from": source.value, "_to": target.value, "_now": now, "_project_id": project_id}
    row = conn.execute(_claim(project_id is not None), params).first()
    return None if row is None else rows.pipeline(row)


def delete_one(conn: Connection, pipeline_id: str) -> str | None:
    """Delete the pipeline; its project's id, or None when there was no such pipeline."""
    found = conn.execute(_DELETE_ONE, {"id": pipeline_id}).scalar()
    return None if found is None else str(found)


def take_finished(conn: Connection, pipeline_id: str) -> Pipeline | None:
    """Delete the pipeline if it is finished (MERGED or FAILED), returning it as it was."""
    row = conn.execute(_TAKE_FINISHED, {"id": pipeline_id}).first()
    return None if row is None else rows.pipeline(row)


def take_finished_of_project(conn: Connection, project_id: str) -> list[Pipeline]:
    """Delete the project's finished pipelines, returning them as they were."""
    return [rows.pipeline(row) for row in conn.execute(_TAKE_FINISHED_OF_PROJECT, {"project_id": project_id})]
