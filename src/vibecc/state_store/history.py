"""The history half of StateStore: pages, stats, bulk import, streaming export and pruning."""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from . import compiled as run
from . import rows
from . import statements as sql
from . import validation as check
from .base import StoreBase
from .errors import HistoryNotFoundError, StorageError, ValidationError
from .records import (
    DurationPercentiles,
    HistoryCursor,
    HistoryPage,
    HistoryStats,
    PipelineHistory,
    PipelineState,
)

MAX_PAGE = 10_000
MAX_BATCH = 100_000
Progress = Callable[[int], None]
"""Called with the number of rows just done, after each batch."""


@dataclass(frozen=True, slots=True)
class ImportResult:
    """What import_history did: rows added, and rows skipped because their id was present."""

    inserted: int
    skipped: int


class HistoryMixin(StoreBase):
    """History queries and bulk paths; mixed into StateStore."""

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
        params, flags = _filters(project_id, final_state, since, until)
        if before is not None:
            if not isinstance(before, HistoryCursor):
                raise ValidationError(f"before must be a HistoryCursor, got {type(before).__name__}")
            params.update(
                _at=check.timestamp("before.completed_at", before.completed_at),
                _id=check.identifier("before.id", before.id),
            )
        params.update(_limit=limit, _offset=offset)
        statement = sql.history_page(flags, before is not None, offset > 0)
        with self._read() as conn:
            return [rows.history_record(row) for row in run.rows(conn, statement, params)]

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
            params = {} if project_id is None else {"project_id": check.identifier("project_id", project_id)}
            statement = sql.kept_stats(project_id is not None)
        else:
            params, flags = _filters(project_id, None, since, until)
            statement = sql.history_aggregates(flags)
        with self._read() as conn:
            sums = run.rows(conn, statement, params)[0]
        return rows.stats_from_sums(sums)

    def get_duration_percentiles(
        self,
        project_id: str | None = None,
        *,
        since: datetime | None = None,
        until: datetime | None = None,
    ) -> DurationPercentiles:
        """p50 and p95 of duration_seconds by nearest rank (None when history is empty)."""
        params, flags = _filters(project_id, None, since, until)
        with self._read(snapshot=True) as conn:
            count = run.scalar(conn, sql.history_count(flags), params)
            if not count:
                return DurationPercentiles(None, None)

            def at(percent: int) -> float:
                rank = max(1, math.ceil(percent / 100 * count))
                found = run.scalar(conn, sql.duration_at_rank(flags), {**params, "_offset": rank - 1})
                if type(found) is not int:  # a hand-edited or damaged row
                    raise StorageError(f"a stored duration_seconds is not an int: {str(found)[:40]!r}")
                return float(found)

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
        params, flags = _filters(project_id, final_state, since, until)
        with self._read() as conn:
            return int(run.scalar(conn, sql.history_count(flags), params))

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
        params, flags = _filters(project_id, final_state, since, until)
        check.integer("batch_size", batch_size, minimum=1, maximum=MAX_BATCH)
        params["_limit"] = batch_size
        return self._scan(params, flags, batch_size)

    def _scan(
        self, params: dict[str, Any], flags: sql.HistoryFilter, batch_size: int
    ) -> Iterator[PipelineHistory]:
        keyset = False
        while True:
            with self._read() as conn:
                batch = [
                    rows.history_record(row)
                    for row in run.rows(conn, sql.history_scan(flags, keyset), params)
                ]
            yield from batch
            if len(batch) < batch_size:
                return
            keyset = True
            params.update(_at=batch[-1].completed_at, _id=batch[-1].id)

    def import_history(
        self, records: Iterable[PipelineHistory], *, batch_size: int = 1000, progress: Progress | None = None
    ) -> ImportResult:
        """Add history records as they are (ids, timestamps); skip ids already present.

        Each batch is one transaction and moves the kept stats with it.

        Raises:
            ValidationError: a record is not acceptable; earlier batches stay imported.
        """
        check.integer("batch_size", batch_size, minimum=1, maximum=MAX_BATCH)
        check.callback("progress", progress)
        if isinstance(records, PipelineHistory | str | bytes) or not isinstance(records, Iterable):
            raise ValidationError(
                f"records must be an iterable of PipelineHistory records, got {type(records).__name__}"
            )
        inserted = skipped = 0
        batch: list[PipelineHistory] = []

        def flush() -> None:
            nonlocal inserted, skipped
            with self._write() as conn:
                added = len(rows.insert_history(conn, self._dialect.name, batch))
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
        check.timestamp("before", before)
        check.integer("batch_size", batch_size, minimum=1, maximum=MAX_BATCH)
        check.callback("progress", progress)
        if dry_run:
            return self.count_history(project_id, until=before)
        params, flags = _filters(project_id, None, None, before)
        params["_limit"] = batch_size
        total = 0
        while True:
            with self._write() as conn:
                gone = [rows.history_record(row) for row in run.rows(conn, sql.prune_batch(flags), params)]
                rows.bump_stats(conn, self._dialect.name, gone, sign=-1)
            total += len(gone)
            if progress is not None and gone:
                progress(len(gone))
            # A short batch is not the end when another prune runs beside this one: under READ
            # COMMITTED (PostgreSQL) rows it deleted drop out of this batch after it was chosen.
            # So the end is a fresh look that finds no row left before the cut-off.
            if len(gone) < batch_size and not self._any_history(params, flags):
                return total

    def _any_history(self, params: dict[str, Any], flags: sql.HistoryFilter) -> bool:
        with self._read() as conn:
            return run.first(conn, sql.history_exists(flags), params) is not None


def check_history_record(record: Any) -> PipelineHistory:
    """Validate a history record given from outside (import, copy)."""
    if not isinstance(record, PipelineHistory):
        raise ValidationError(f"expected a PipelineHistory record, got {type(record).__name__}")
    check.identifier("id", record.id)
    check.identifier("project_id", record.project_id)
    check.stored_ticket_id("ticket_id", record.ticket_id)
    check.ticket_title(record.ticket_title)
    if not check.state("final_state", record.final_state).is_terminal:
        raise ValidationError(
            f"final_state of history record {record.id} is {PipelineState(record.final_state).value}; "
            "history holds merged or failed pipelines only"
        )
    check.branch("branch_name", record.branch_name)
    check.optional_integer("pr_id", record.pr_id, minimum=1)
    if record.pr_url is not None:
        check.pr_url(record.pr_url)
    check.retry_count("total_retries_ci", record.total_retries_ci)
    check.retry_count("total_retries_review", record.total_retries_review)
    check.duration("duration_seconds", record.duration_seconds)
    for field in ("started_at", "completed_at"):
        check.timestamp(field, getattr(record, field))
    return record


def _filters(
    project_id: str | None,
    final_state: PipelineState | str | None,
    since: datetime | None,
    until: datetime | None,
) -> tuple[dict[str, Any], sql.HistoryFilter]:
    """Validated parameters of the optional history filters, and which are given."""
    params: dict[str, Any] = {}
    if project_id is not None:
        params["project_id"] = check.identifier("project_id", project_id)
    if final_state is not None:
        params["final_state"] = check.state("final_state", final_state).value
    if since is not None:
        params["since"] = check.timestamp("since", since)
    if until is not None:
        params["until"] = check.timestamp("until", until)
    flags = (project_id is not None, final_state is not None, since is not None, until is not None)
    return params, flags
