"""copy_store: move a whole store (projects, active pipelines, history) between engines.

The source is read in one snapshot and streamed in batches; the target is written in one
transaction, so a failed copy leaves it empty; both sides are counted and checksummed table
by table before that transaction commits, so a copy that does not verify is rolled back too.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import ExitStack
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, Table, func, select

from .. import rules as check
from ..db.urls import same_database
from ..errors import CopyVerificationError, StorageError, TargetNotEmptyError, ValidationError
from ..models import (
    deleted_projects,
    duration_histogram,
    history,
    history_stats,
    pipelines,
    projects,
    stage_histogram,
    stage_totals,
    transitions,
)
from ..queries import changes, rows, stages, stats
from ..store import MAX_BATCH, StateStore

COPIED = (projects, pipelines, history, deleted_projects, transitions, stage_histogram)
"""Tables copied row by row, parents first."""
REBUILT = (history_stats, duration_histogram, stage_totals)
"""Kept with every history write on the target as on the source, then compared."""
VERIFIED = (*COPIED, *REBUILT)
_RECORD_OF: dict[str, Callable[[Any], Any]] = {
    projects.name: rows.project,
    pipelines.name: rows.pipeline,
    history.name: rows.history_record,
    deleted_projects.name: rows.deleted_project,
    transitions.name: lambda row: rows.transition(row, None),
    stage_histogram.name: rows.stage_cell,
}
CopyProgress = Callable[[str, int], None]
"""Called with a table name and the rows just copied into it."""


@dataclass(frozen=True, slots=True)
class TableCopy:
    """One table on both sides after a copy."""

    table: str
    source_rows: int
    target_rows: int
    source_checksum: str
    target_checksum: str

    @property
    def matches(self) -> bool:
        return self.source_rows == self.target_rows and self.source_checksum == self.target_checksum


@dataclass(frozen=True, slots=True)
class CopyReport:
    """The verified outcome of copy_store: every table's rows and checksums on both sides."""

    source: str
    target: str
    tables: tuple[TableCopy, ...]

    @property
    def rows(self) -> int:
        return sum(t.target_rows for t in self.tables if t.table not in {r.name for r in REBUILT})


def copy_store(
    source: StateStore | str | os.PathLike[str],
    target: StateStore | str | os.PathLike[str],
    *,
    batch_size: int = 1000,
    progress: CopyProgress | None = None,
) -> CopyReport:
    """Copy every project, active pipeline and history record from `source` into `target`,
    keeping ids, versions and timestamps exactly.

    The target is migrated first and must be empty. Memory stays bounded by `batch_size`.
    The change log is not copied: the target's log starts again, empty, and every cursor
    given out on the target before expires (CursorExpiredError), so its readers start from its
    tables (change_cursor(), then changes_since).

    Raises:
        TargetNotEmptyError: the target holds data; nothing was written.
        CopyVerificationError: a table would differ between the two sides; the copy is rolled
            back and nothing was written.
        ValidationError: source and target are the same database, or batch_size is invalid.
    """
    batch_size = check.integer("batch_size", batch_size, minimum=1, maximum=MAX_BATCH)
    check.callback("progress", progress)
    with ExitStack() as stack:
        src = source if isinstance(source, StateStore) else stack.enter_context(StateStore(source))
        dst = target if isinstance(target, StateStore) else stack.enter_context(StateStore(target))
        if src is dst or same_database(src.database.url, dst.database.url):
            raise ValidationError(f"source and target are the same database: {src.url}")

        def copy(target_conn: Connection) -> CopyReport:
            dst.database.dialect.lock_for_copy(target_conn)
            _require_empty(target_conn, dst.url)
            source_sums = src.database.read(
                lambda source_conn: _copy_tables(source_conn, target_conn, batch_size, progress),
                snapshot=True,
            )
            # Verified inside the target's transaction: a copy that does not match is rolled
            # back and the target stays empty.
            target_sums = {table.name: _checksum(target_conn, table) for table in VERIFIED}
            report = _report(src, dst, source_sums, target_sums)
            changes.restart(target_conn)  # last: the counter row is held until the commit
            return report

        report = dst.database.write(copy)
    return report


def _report(
    src: StateStore,
    dst: StateStore,
    source_sums: dict[str, tuple[int, str]],
    target_sums: dict[str, tuple[int, str]],
) -> CopyReport:
    report = CopyReport(
        source=src.url,
        target=dst.url,
        tables=tuple(
            TableCopy(
                name, source_sums[name][0], target_sums[name][0], source_sums[name][1], target_sums[name][1]
            )
            for name in (t.name for t in VERIFIED)
        ),
    )
    broken = [t.table for t in report.tables if not t.matches]
    if broken:
        raise CopyVerificationError(
            f"copy to {dst.url} differs from the source in {', '.join(broken)}; nothing written"
        )
    return report


def _require_empty(conn: Connection, where: str) -> None:
    for table in VERIFIED:
        if conn.execute(select(func.count()).select_from(table)).scalar_one():
            raise TargetNotEmptyError(
                f"target {where} is not empty (table {table.name} has rows); nothing written"
            )


def _copy_tables(
    source: Connection,
    target: Connection,
    batch_size: int,
    progress: CopyProgress | None,
) -> dict[str, tuple[int, str]]:
    sums: dict[str, tuple[int, str]] = {}
    for table in COPIED:
        digest = _Checksum()
        for batch in _stream(source, table, batch_size):
            # Read as records first: a hand-edited or damaged row is a StorageError, not copied on.
            records = [_RECORD_OF[table.name](row) for row in batch]
            digest.add_all(batch)
            target.execute(table.insert(), [row._asdict() for row in batch])
            if table is history:
                stats.bump(target, records, sign=1)
            elif table is stage_histogram:
                stages.add_totals(target, [row._asdict() for row in batch])
            if progress is not None:
                progress(table.name, len(batch))
        sums[table.name] = digest.result()
    for table in REBUILT:
        sums[table.name] = _checksum(source, table)
    return sums


def _stream(conn: Connection, table: Table, batch_size: int) -> Iterator[Sequence[Any]]:
    statement = select(*table.c).order_by(*table.primary_key.columns)
    # Per statement, not conn.execution_options(): that would stick to a cached connection.
    result = conn.execute(statement, execution_options={"stream_results": True, "yield_per": batch_size})
    yield from result.partitions()


def _checksum(conn: Connection, table: Table) -> tuple[int, str]:
    digest = _Checksum()
    for batch in _stream(conn, table, 5000):
        digest.add_all(batch)
    return digest.result()


class _Checksum:
    """Order-independent: the sum, modulo 2**64, of a SHA-256 prefix of each row."""

    def __init__(self) -> None:
        self.count = 0
        self.total = 0

    def add_all(self, batch: Iterable[Sequence[Any]]) -> None:
        for row in batch:
            canonical = json.dumps(list(row), default=_canonical, ensure_ascii=False, separators=(",", ":"))
            self.total += int.from_bytes(hashlib.sha256(canonical.encode("utf-8")).digest()[:8], "big")
            self.count += 1

    def result(self) -> tuple[int, str]:
        return self.count, f"{self.total % 2**64:016x}"


def _canonical(value: Any) -> str:
    if isinstance(value, datetime):
        return value.isoformat()
    # Only a hand-edited or damaged row holds anything else (bytes in a text column, say).
    raise StorageError(f"a stored value cannot be copied: a {type(value).__name__}")
