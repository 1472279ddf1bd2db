"""Every statement the store runs, built once with bound parameters.

Building a SQLAlchemy statement costs more than running it on SQLite, so calls never build
one: they pick a prebuilt statement (or one cached per combination of optional filters and
updated fields) and pass the values as parameters.
"""

from __future__ import annotations

from dataclasses import fields
from functools import cache
from typing import Any

from sqlalchemy import (
    ColumnElement,
    Executable,
    Select,
    and_,
    bindparam,
    case,
    delete,
    func,
    or_,
    select,
    update,
)

from .engine import upsert
from .models import deleted_projects, history, history_stats, pipelines, projects
from .records import DeletedProject, Pipeline, PipelineHistory, PipelineState, Project

# Columns in the order of the records' fields, so a row unpacks straight into a record.
PROJECT_COLUMNS = [projects.c[f.name] for f in fields(Project)]
PIPELINE_COLUMNS = [pipelines.c[f.name] for f in fields(Pipeline)]
HISTORY_COLUMNS = [history.c[f.name] for f in fields(PipelineHistory)]
DELETED_PROJECT_COLUMNS = [deleted_projects.c[f.name] for f in fields(DeletedProject)]
STATS_SUMS = (
    "total_completed",
    "total_merged",
    "total_failed",
    "sum_duration_seconds",
    "sum_retries_ci",
    "sum_retries_review",
)

FINISHED_STATES = [state.value for state in PipelineState if state.is_terminal]

# -- projects ------------------------------------------------------------------------------

INSERT_PROJECT = projects.insert()
PROJECT_BY_ID = select(*PROJECT_COLUMNS).where(projects.c.id == bindparam("id"))
# lower(repo): the expression of the unique index uq_projects_lower_repo, which serves it.
PROJECT_BY_REPO = select(*PROJECT_COLUMNS).where(func.lower(projects.c.repo) == func.lower(bindparam("repo")))
ALL_PROJECTS = select(*PROJECT_COLUMNS).order_by(projects.c.name, projects.c.id)
PROJECT_TO_DELETE = select(projects.c.id, projects.c.name, projects.c.repo).where(
    projects.c.id == bindparam("id")
)
RECORD_DELETED_PROJECT = deleted_projects.insert()
DELETED_PROJECTS = select(*DELETED_PROJECT_COLUMNS).order_by(
    deleted_projects.c.deleted_at, deleted_projects.c.id
)
# FOR UPDATE (PostgreSQL) keeps new pipelines of the project out until the delete commits.
LOCK_PROJECT = PROJECT_TO_DELETE.with_for_update()
# Equalities, not IN: an IN list is an expanding parameter, which compiled.py cannot run.
DELETE_FINISHED_PIPELINES = (
    delete(pipelines)
    .where(
        pipelines.c.project_id == bindparam("id"),
        or_(*(pipelines.c.state == state for state in FINISHED_STATES)),
    )
    .returning(*PIPELINE_COLUMNS)
)
COUNT_PIPELINES = select(func.count()).select_from(pipelines).where(pipelines.c.project_id == bindparam("id"))
DELETE_PROJECT = delete(projects).where(projects.c.id == bindparam("id"))


@cache
def update_project(fields: frozenset[str]) -> Executable:
    """UPDATE projects setting `fields` (and updated_at) from parameters of the same names."""
    values: dict[str, Any] = {name: bindparam(name) for name in sorted(fields | {"updated_at"})}
    return (
        update(projects).where(projects.c.id == bindparam("_id")).values(values).returning(*PROJECT_COLUMNS)
    )


# -- pipelines -----------------------------------------------------------------------------

INSERT_PIPELINE = pipelines.insert()
PIPELINE_BY_ID = select(*PIPELINE_COLUMNS).where(pipelines.c.id == bindparam("id"))
PIPELINE_BY_TICKET = select(*PIPELINE_COLUMNS).where(
    pipelines.c.project_id == bindparam("project_id"), pipelines.c.ticket_id == bindparam("ticket_id")
)
PIPELINE_VERSION = select(pipelines.c.version).where(pipelines.c.id == bindparam("id"))
PIPELINE_STATE = select(pipelines.c.state).where(pipelines.c.id == bindparam("id"))
DELETE_PIPELINE = delete(pipelines).where(pipelines.c.id == bindparam("id"))
TAKE_FINISHED_PIPELINE = DELETE_PIPELINE.where(
    or_(*(pipelines.c.state == state for state in FINISHED_STATES))
).returning(*PIPELINE_COLUMNS)


@cache
def list_pipelines(by_project: bool, by_state: bool) -> Executable:
    statement = select(*PIPELINE_COLUMNS)
    if by_project:
        statement = statement.where(pipelines.c.project_id == bindparam("project_id"))
    if by_state:
        statement = statement.where(pipelines.c.state == bindparam("state"))
    return statement.order_by(pipelines.c.created_at.desc(), pipelines.c.id.desc())


@cache
def update_pipeline(fields: frozenset[str], versioned: bool) -> Executable:
    """UPDATE pipelines setting `fields` from parameters of the same names; version +1.

    With `versioned`, only the row whose version equals parameter "_version" is updated.
    """
    values: dict[str, Any] = {name: bindparam(name) for name in sorted(fields)}
    values["updated_at"] = bindparam("updated_at")
    values["version"] = pipelines.c.version + 1
    statement = update(pipelines).where(pipelines.c.id == bindparam("_id"))
    if versioned:
        statement = statement.where(pipelines.c.version == bindparam("_version"))
    return statement.values(values).returning(*PIPELINE_COLUMNS)


@cache
def claim_pipeline(by_project: bool) -> Executable:
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
        .values(state=bindparam("_to"), version=pipelines.c.version + 1, updated_at=bindparam("_now"))
        .returning(*PIPELINE_COLUMNS)
    )


# -- history -------------------------------------------------------------------------------

HISTORY_BY_ID = select(*HISTORY_COLUMNS).where(history.c.id == bindparam("id"))


@cache
def insert_history(dialect: str) -> Executable:
    """INSERT a history row unless its id is present; RETURNING only the rows inserted."""
    return (
        upsert(dialect, history)
        .on_conflict_do_nothing(index_elements=[history.c.id])
        .returning(*HISTORY_COLUMNS)
    )


@cache
def bump_stats(dialect: str) -> Executable:
    """Add parameters named like STATS_SUMS to the totals of parameter "project_id"."""
    statement = upsert(dialect, history_stats).values(
        project_id=bindparam("project_id"), **{name: bindparam(name) for name in STATS_SUMS}
    )
    return statement.on_conflict_do_update(
        index_elements=[history_stats.c.project_id],
        set_={name: history_stats.c[name] + statement.excluded[name] for name in STATS_SUMS},
    )


@cache
def kept_stats(by_project: bool) -> Executable:
    statement = select(*(func.sum(history_stats.c[name]) for name in STATS_SUMS))
    if by_project:
        statement = statement.where(history_stats.c.project_id == bindparam("project_id"))
    return statement


def history_filter(statement: Select[Any], flags: HistoryFilter) -> Select[Any]:
    project, state, since, until = flags
    if project:
        statement = statement.where(history.c.project_id == bindparam("project_id"))
    if state:
        statement = statement.where(history.c.final_state == bindparam("final_state"))
    if since:
        statement = statement.where(
            history.c.completed_at >= bindparam("since", type_=history.c.completed_at.type)
        )
    if until:
        statement = statement.where(
            history.c.completed_at < bindparam("until", type_=history.c.completed_at.type)
        )
    return statement


HistoryFilter = tuple[bool, bool, bool, bool]
"""Which of project_id, final_state, since, until are given."""


@cache
def history_page(flags: HistoryFilter, keyset: bool, offset: bool) -> Executable:
    """Newest completed first; with `keyset`, only rows after cursor (_at, _id)."""
    statement = history_filter(select(*HISTORY_COLUMNS), flags)
    if keyset:
        statement = statement.where(beyond(newer=False))
    statement = statement.order_by(history.c.completed_at.desc(), history.c.id.desc())
    statement = statement.limit(bindparam("_limit"))
    return statement.offset(bindparam("_offset")) if offset else statement


@cache
def history_scan(flags: HistoryFilter, keyset: bool) -> Executable:
    """Oldest completed first, batch by batch, continuing after (_at, _id)."""
    statement = history_filter(select(*HISTORY_COLUMNS), flags)
    if keyset:
        statement = statement.where(beyond(newer=True))
    return statement.order_by(history.c.completed_at, history.c.id).limit(bindparam("_limit"))


@cache
def history_count(flags: HistoryFilter) -> Executable:
    return history_filter(select(func.count()).select_from(history), flags)


@cache
def history_exists(flags: HistoryFilter) -> Executable:
    """One matching row's id, or none: whether any row matches, without counting them all."""
    return history_filter(select(history.c.id), flags).limit(1)


@cache
def history_aggregates(flags: HistoryFilter) -> Executable:
    def count_of(state: PipelineState) -> Any:
        return func.sum(case((history.c.final_state == state.value, 1), else_=0))

    columns = [
        func.count(),
        count_of(PipelineState.MERGED),
        count_of(PipelineState.FAILED),
        func.sum(history.c.duration_seconds),
        func.sum(history.c.total_retries_ci),
        func.sum(history.c.total_retries_review),
    ]
    return history_filter(select(*columns), flags)


@cache
def duration_at_rank(flags: HistoryFilter) -> Executable:
    statement = history_filter(select(history.c.duration_seconds), flags)
    return statement.order_by(history.c.duration_seconds).offset(bindparam("_offset")).limit(1)


@cache
def prune_batch(flags: HistoryFilter) -> Executable:
    """DELETE the oldest `_limit` matching history rows, RETURNING them (for the stats)."""
    oldest = history_filter(select(history.c.id), flags)
    oldest = oldest.order_by(history.c.completed_at, history.c.id).limit(bindparam("_limit"))
    return delete(history).where(history.c.id.in_(oldest.scalar_subquery())).returning(*HISTORY_COLUMNS)


DROP_EMPTY_STATS = delete(history_stats).where(
    history_stats.c.project_id == bindparam("project_id"), history_stats.c.total_completed == 0
)


def beyond(*, newer: bool) -> ColumnElement[bool]:
    """Rows after cursor (_at, _id) in ascending (newer=True) or descending order.

    The leading `completed_at >= / <= _at` bound lets both engines start the index scan at the
    cursor; the OR alone (or a row-value comparison) scans every row before it.
    """
    at = bindparam("_at", type_=history.c.completed_at.type)
    key = bindparam("_id", type_=history.c.id.type)
    if newer:
        return and_(
            history.c.completed_at >= at,
            or_(history.c.completed_at > at, history.c.id > key),
        )
    return and_(
        history.c.completed_at <= at,
        or_(history.c.completed_at < at, history.c.id < key),
    )
