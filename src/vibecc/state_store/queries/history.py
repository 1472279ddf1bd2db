"""History: finished pipelines, their statements, built once per combination of filters,
and the functions that run them. Every write moves the kept stats in the same transaction."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, fields
from datetime import datetime
from functools import cache
from typing import Any

from sqlalchemy import (
    ColumnElement,
    Connection,
    Executable,
    Select,
    and_,
    bindparam,
    case,
    delete,
    func,
    or_,
    select,
)
from sqlalchemy.dialects import postgresql, sqlite

from ..models import history
from ..records import DurationPercentiles, HistoryCursor, HistoryStats, PipelineHistory, PipelineState
from . import rows, stats

COLUMNS = [history.c[f.name] for f in fields(PipelineHistory)]
"""In the order of the record's fields, so a row unpacks straight into a record."""
_BY_ID = select(*COLUMNS).where(history.c.id == bindparam("id"))


@dataclass(frozen=True, slots=True)
class Filter:
    """The optional history filters of a call, already checked."""

    project_id: str | None = None
    final_state: PipelineState | None = None
    since: datetime | None = None
    until: datetime | None = None

    @property
    def shape(self) -> tuple[bool, bool, bool, bool]:
        """Which filters are given: the key of the statements built for them."""
        return (
            self.project_id is not None,
            self.final_state is not None,
            self.since is not None,
            self.until is not None,
        )

    @property
    def params(self) -> dict[str, Any]:
        state = None if self.final_state is None else self.final_state.value
        return {"project_id": self.project_id, "final_state": state, "since": self.since, "until": self.until}


Shape = tuple[bool, bool, bool, bool]


def _where(statement: Select[Any], shape: Shape) -> Select[Any]:
    project, state, since, until = shape
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


def _beyond(*, newer: bool) -> ColumnElement[bool]:
    """Rows after cursor (_at, _id) in ascending (newer=True) or descending order.

    The leading `completed_at >= / <= _at` bound lets both engines start the index scan at the
    cursor; the OR alone (or a row-value comparison) scans every row before it.
    """
    at = bindparam("_at", type_=history.c.completed_at.type)
    key = bindparam("_id", type_=history.c.id.type)
    if newer:
        return and_(history.c.completed_at >= at, or_(history.c.completed_at > at, history.c.id > key))
    return and_(history.c.completed_at <= at, or_(history.c.completed_at < at, history.c.id < key))


@cache
def _page(shape: Shape, keyset: bool, offset: bool) -> Executable:
    """Newest completed first; with `keyset`, only rows after cursor (_at, _id)."""
    statement = _where(select(*COLUMNS), shape)
    if keyset:
        statement = statement.where(_beyond(newer=False))
    statement = statement.order_by(history.c.completed_at.desc(), history.c.id.desc()).limit(
        bindparam("_limit")
    )
    return statement.offset(bindparam("_offset")) if offset else statement


@cache
def _scan(shape: Shape, keyset: bool) -> Executable:
    """Oldest completed first, batch by batch, continuing after (_at, _id)."""
    statement = _where(select(*COLUMNS), shape)
    if keyset:
        statement = statement.where(_beyond(newer=True))
    return statement.order_by(history.c.completed_at, history.c.id).limit(bindparam("_limit"))


@cache
def _count(shape: Shape) -> Executable:
    return _where(select(func.count()).select_from(history), shape)


@cache
def _exists(shape: Shape) -> Executable:
    """One matching row's id, or none: whether any row matches, without counting them all."""
    return _where(select(history.c.id), shape).limit(1)


@cache
def _aggregates(shape: Shape) -> Executable:
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
    return _where(select(*columns), shape)


@cache
def _duration_at_rank(shape: Shape) -> Executable:
    statement = _where(select(history.c.duration_seconds), shape)
    return statement.order_by(history.c.duration_seconds).offset(bindparam("_offset")).limit(1)


@cache
def _prune_batch(shape: Shape) -> Executable:
    """DELETE the oldest `_limit` matching rows, RETURNING them (for the kept stats)."""
    oldest = _where(select(history.c.id), shape).order_by(history.c.completed_at, history.c.id)
    oldest = oldest.limit(bindparam("_limit"))
    return delete(history).where(history.c.id.in_(oldest.scalar_subquery())).returning(*COLUMNS)


@cache
def _insert(dialect: str) -> Executable:
    """INSERT a history row unless its id is present; RETURNING only the rows inserted."""
    insert = sqlite.insert if dialect == "sqlite" else postgresql.insert
    return insert(history).on_conflict_do_nothing(index_elements=[history.c.id]).returning(*COLUMNS)


def by_id(conn: Connection, history_id: str) -> PipelineHistory | None:
    row = conn.execute(_BY_ID, {"id": history_id}).first()
    return None if row is None else rows.history_record(row)


def insert(conn: Connection, records: Sequence[PipelineHistory]) -> list[PipelineHistory]:
    """Insert the records whose id is new and count them into the kept stats; those inserted."""
    if not records:
        return []
    # In id order: two writers inserting overlapping ids take the unique index's locks in the
    # same order, so on PostgreSQL one waits for the other instead of both deadlocking.
    params = sorted((rows.values_of(r) for r in records), key=lambda values: values["id"])
    found = conn.execute(_insert(conn.dialect.name), params).all()
    inserted = [rows.history_record(row) for row in found]
    stats.bump(conn, inserted, sign=1)
    return inserted


def page(
    conn: Connection, where: Filter, limit: int, offset: int, before: HistoryCursor | None
) -> list[PipelineHistory]:
    """Newest completed first (ties by id), after `before` when given."""
    params = {**where.params, "_limit": limit, "_offset": offset}
    if before is not None:
        params.update(_at=before.completed_at, _id=before.id)
    statement = _page(where.shape, before is not None, offset > 0)
    return [rows.history_record(row) for row in conn.execute(statement, params)]


def scan(conn: Connection, where: Filter, limit: int, after: HistoryCursor | None) -> list[PipelineHistory]:
    """The next `limit` rows, oldest completed first, after the cursor `after` when given."""
    params = {**where.params, "_limit": limit}
    if after is not None:
        params.update(_at=after.completed_at, _id=after.id)
    return [rows.history_record(row) for row in conn.execute(_scan(where.shape, after is not None), params)]


def count(conn: Connection, where: Filter) -> int:
    return int(conn.execute(_count(where.shape), where.params).scalar_one())


def exists(conn: Connection, where: Filter) -> bool:
    return conn.execute(_exists(where.shape), where.params).first() is not None


def aggregates(conn: Connection, where: Filter) -> HistoryStats:
    """Stats over the matching rows, by scanning them (the window's index)."""
    return rows.stats_from_sums(conn.execute(_aggregates(where.shape), where.params).one())


def percentiles(conn: Connection, where: Filter) -> DurationPercentiles:
    """p50 and p95 of duration_seconds by nearest rank; run it in a snapshot."""
    total = count(conn, where)
    if not total:
        return DurationPercentiles(None, None)

    def at(percent: int) -> float:
        rank = max(1, math.ceil(percent / 100 * total))
        found = conn.execute(_duration_at_rank(where.shape), {**where.params, "_offset": rank - 1}).scalar()
        return float(rows.stored_int("duration_seconds", found))

    return DurationPercentiles(p50=at(50), p95=at(95))


def prune_batch(conn: Connection, where: Filter, limit: int) -> list[PipelineHistory]:
    """Delete the oldest `limit` matching rows and take them out of the kept stats."""
    gone = [
        rows.history_record(row)
        for row in conn.execute(_prune_batch(where.shape), {**where.params, "_limit": limit})
    ]
    stats.bump(conn, gone, sign=-1)
    return gone
