"""The history half of StateStore: pages, stats, bulk import, streaming export and pruning."""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Iterator
from contextlib import AbstractContextManager
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

from sqlalchemy import ColumnElement, Connection, Select, and_, case, delete, func, or_, select

from . import rows
from . import validation as check
from .errors import HistoryNotFoundError, ValidationError
from .models import history, history_stats
from .records import (
    DurationPercentiles,
    HistoryCursor,
    HistoryPage,
    HistoryStats,
    PipelineHistory,
    PipelineState,
)

if TYPE_CHECKING:
    from .engine import Dialect

MAX_PAGE = 10_000
MAX_BATCH = 100_000
Progress = Callable[[int], None]
"""Called with the number of rows just done, after each batch."""


@dataclass(frozen=True, slots=True)
class ImportResult:
    """What import_history did: rows added, and rows skipped because their id was present."""

    inserted: int
    skipped: int


class HistoryMixin:
    """History queries and bulk paths; mixed into StateStore."""

    if TYPE_CHECKING:
        _dialect: Dialect

        def _read(self) -> AbstractContextManager[Connection]: ...
        def _write(self) -> AbstractContextManager[Connection]: ...

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
        check.integer("limit", limit, minimum=1, maximum=MAX_PAGE)
        check.integer("offset", offset, minimum=0)
        return self._history(project_id, final_state, limit, offset, before, since, until)

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
        check.integer("limit", limit, minimum=1, maximum=MAX_PAGE)
        items = self._history(project_id, final_state, limit + 1, 0, before, since, until)
        if len(items) <= limit:
            return HistoryPage(tuple(items), None)
        return HistoryPage(tuple(items[:limit]), HistoryCursor.after(items[limit - 1]))

    def _history(
        self,
        project_id: str | None,
        final_state: PipelineState | str | None,
        limit: int,
        offset: int,
        before: HistoryCursor | None,
        since: datetime | None,
        until: datetime | None,
    ) -> list[PipelineHistory]:
        statement = _filtered(select(*rows.HISTORY_COLUMNS), project_id, final_state, since, until)
        if before is not None:
            if not isinstance(before, HistoryCursor):
                raise ValidationError(f"before must be a HistoryCursor, got {type(before).__name__}")
            statement = statement.where(_beyond(before.completed_at, before.id, newer=False))
        statement = statement.order_by(history.c.completed_at.desc(), history.c.id.desc()).limit(limit)
        if offset:
            statement = statement.offset(offset)
        with self._read() as conn:
            return [rows.history_record(row) for row in conn.execute(statement)]

    def get_history_record(self, history_id: str) -> PipelineHistory:
        """The history record with that id (an archived pipeline's id). Raises HistoryNotFoundError."""
        check.identifier("history_id", history_id)
        with self._read() as conn:
            record = rows.existing_history(conn, history_id)
        if record is None:
            raise HistoryNotFoundError(f"history record {history_id} not found")
        return record

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
        if since is None and until is None:
            statement = select(*(func.sum(history_stats.c[name]) for name in rows.STATS_SUMS))
            if project_id is not None:
                statement = statement.where(
                    history_stats.c.project_id == check.identifier("project_id", project_id)
                )
        else:
            statement = _filtered(select(*_aggregates()), project_id, None, since, until)
        with self._read() as conn:
            sums = conn.execute(statement).one()
        return rows.stats_from_sums(sums)

    def get_duration_percentiles(
        self,
        project_id: str | None = None,
        *,
        since: datetime | None = None,
        until: datetime | None = None,
    ) -> DurationPercentiles:
        """p50 and p95 of duration_seconds by nearest rank (None when history is empty)."""
        base = _filtered(select(history.c.duration_seconds), project_id, None, since, until)
        with self._read() as conn:
            count = conn.execute(select(func.count()).select_from(base.subquery())).scalar_one()
            if not count:
                return DurationPercentiles(None, None)

            def at(percent: int) -> float:
                rank = max(1, math.ceil(percent / 100 * count))
                ranked = base.order_by(history.c.duration_seconds).offset(rank - 1).limit(1)
                return float(conn.execute(ranked).scalar_one())

            return DurationPercentiles(p50=at(50), p95=at(95))

    def count_history(
        self,
        project_id: str | None = None,
        final_state: PipelineState | str | None = None,
        *,
        since: datetime | None = None,
        until: datetime | None = None,
    ) -> int:
        """How many history rows match."""
        base = _filtered(select(func.count()).select_from(history), project_id, final_state, since, until)
        with self._read() as conn:
            return int(conn.execute(base).scalar_one())

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
        base = _filtered(select(*rows.HISTORY_COLUMNS), project_id, final_state, since, until)
        check.integer("batch_size", batch_size, minimum=1, maximum=MAX_BATCH)
        base = base.order_by(history.c.completed_at, history.c.id).limit(batch_size)
        after: tuple[datetime, str] | None = None
        while True:
            statement = base if after is None else base.where(_beyond(*after, newer=True))
            with self._read() as conn:
                batch = [rows.history_record(row) for row in conn.execute(statement)]
            yield from batch
            if len(batch) < batch_size:
                return
            after = (batch[-1].completed_at, batch[-1].id)

    def import_history(
        self, records: Iterable[PipelineHistory], *, batch_size: int = 1000, progress: Progress | None = None
    ) -> ImportResult:
        """Add history records as they are (ids, timestamps); skip ids already present.

        Each batch is one transaction and moves the kept stats with it.

        Raises:
            ValidationError: a record is not acceptable; earlier batches stay imported.
        """
        check.integer("batch_size", batch_size, minimum=1, maximum=MAX_BATCH)
        inserted = skipped = 0
        batch: list[PipelineHistory] = []

        def flush() -> None:
            nonlocal inserted, skipped
            with self._write() as conn:
                added = len(rows.insert_history(conn, self._dialect, batch))
            inserted += added
            skipped += len(batch) - added
            if progress is not None:
                progress(len(batch))
            batch.clear()

        for record in records:
            batch.append(check_history_record(record))
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
        check.integer("batch_size", batch_size, minimum=1, maximum=MAX_BATCH)
        if dry_run:
            return self.count_history(project_id, until=before)
        oldest = _filtered(select(history.c.id), project_id, None, None, before)
        oldest = oldest.order_by(history.c.completed_at, history.c.id).limit(batch_size)
        total = 0
        while True:
            with self._write() as conn:
                ids = list(conn.execute(oldest).scalars())
                gone = [
                    rows.history_record(row)
                    for row in conn.execute(
                        delete(history).where(history.c.id.in_(ids)).returning(*rows.HISTORY_COLUMNS)
                    )
                ]
                rows.bump_stats(conn, self._dialect, gone, sign=-1)
            total += len(gone)
            if progress is not None and gone:
                progress(len(gone))
            if len(ids) < batch_size:
                return total


def check_history_record(record: Any) -> PipelineHistory:
    """Validate a history record given from outside (import, copy)."""
    if not isinstance(record, PipelineHistory):
        raise ValidationError(f"expected a PipelineHistory record, got {type(record).__name__}")
    check.identifier("id", record.id)
    check.identifier("project_id", record.project_id)
    check.ticket_id(record.ticket_id)
    check.ticket_title(record.ticket_title)
    check.state("final_state", record.final_state)
    check.branch("branch_name", record.branch_name)
    check.optional_integer("pr_id", record.pr_id, minimum=1)
    if record.pr_url is not None:
        check.pr_url(record.pr_url)
    check.integer("total_retries_ci", record.total_retries_ci, minimum=0)
    check.integer("total_retries_review", record.total_retries_review, minimum=0)
    check.integer("duration_seconds", record.duration_seconds, minimum=0)
    for field in ("started_at", "completed_at"):
        _aware(field, getattr(record, field))
    return record


def _aware(field: str, value: Any) -> datetime:
    if not isinstance(value, datetime) or value.tzinfo is None:
        raise ValidationError(f"{field} must be a timezone-aware datetime, got {value!r}")
    return value


def _filtered(
    statement: Select[Any],
    project_id: str | None,
    final_state: PipelineState | str | None,
    since: datetime | None,
    until: datetime | None,
) -> Select[Any]:
    if project_id is not None:
        statement = statement.where(history.c.project_id == check.identifier("project_id", project_id))
    if final_state is not None:
        statement = statement.where(history.c.final_state == check.state("final_state", final_state).value)
    if since is not None:
        statement = statement.where(history.c.completed_at >= _aware("since", since))
    if until is not None:
        statement = statement.where(history.c.completed_at < _aware("until", until))
    return statement


def _beyond(completed_at: datetime, history_id: str, *, newer: bool) -> ColumnElement[bool]:
    """Rows after (completed_at, id) in ascending (newer=True) or descending order.

    Spelled out rather than a row-value comparison so both engines use the index range.
    """
    if newer:
        return or_(
            history.c.completed_at > completed_at,
            and_(history.c.completed_at == completed_at, history.c.id > history_id),
        )
    return or_(
        history.c.completed_at < completed_at,
        and_(history.c.completed_at == completed_at, history.c.id < history_id),
    )


def _aggregates() -> list[Any]:
    def count_of(state: PipelineState) -> Any:
        return func.sum(case((history.c.final_state == state.value, 1), else_=0))

    return [
        func.count(),
        count_of(PipelineState.MERGED),
        count_of(PipelineState.FAILED),
        func.sum(history.c.duration_seconds),
        func.sum(history.c.total_retries_ci),
        func.sum(history.c.total_retries_review),
    ]
