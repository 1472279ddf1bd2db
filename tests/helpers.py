"""Helpers shared by the behaviour tests: prove a database unchanged, recompute history stats,
and build history records to import.

Import it like tests/workers.py (`from tests import helpers` under TYPE_CHECKING, else
`import helpers`): pytest puts tests/ on sys.path, mypy knows the module as tests.helpers.
"""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Iterable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, NamedTuple

from sqlalchemy import Select, create_engine, inspect, literal_column, select, table
from sqlalchemy.engine import URL, make_url
from sqlalchemy.pool import NullPool

from vibecc.state_store import HistoryStats, PipelineHistory, PipelineState

T0 = datetime(2025, 1, 2, 3, 4, 5, 123456, tzinfo=UTC)
"""A fixed instant to build history around (microseconds on purpose)."""


class Snapshot(NamedTuple):
    """Row counts per table and one checksum over every row of every table."""

    counts: dict[str, int]
    checksum: str


def database_url(location: str | Path) -> URL:
    """The SQLAlchemy URL of a store location as the fixtures hand it out (path or URL)."""
    raw = str(location)
    if "://" in raw:
        return make_url(raw)
    return URL.create("sqlite+pysqlite", database=str(Path(raw).absolute()))


def snapshot(store_url: str | Path) -> Snapshot:
    """Counts and a checksum of all rows in all tables (alembic_version included).

    Values are read raw (untyped "*"), so the checksum sees what the engine stores, not
    what the library makes of it; rows are sorted, so engine row order does not matter.
    Two equal snapshots of one database mean its data did not change.
    """
    engine = create_engine(database_url(store_url), poolclass=NullPool)
    counts: dict[str, int] = {}
    digest = hashlib.sha256()
    try:
        with engine.connect() as conn:
            for name in sorted(inspect(conn).get_table_names()):
                everything: Select[Any] = select(literal_column("*")).select_from(table(name))
                lines = sorted(repr(tuple(row)) for row in conn.execute(everything))
                counts[name] = len(lines)
                digest.update(f"[{name}]\n".encode())
                for line in lines:
                    digest.update(line.encode("utf-8", "backslashreplace") + b"\n")
    finally:
        engine.dispose()
    return Snapshot(counts, digest.hexdigest())


def stats_of(records: Iterable[PipelineHistory]) -> HistoryStats:
    """HistoryStats recomputed from history rows, the way the contract defines them."""
    kept = list(records)
    if not kept:
        return HistoryStats(0, 0, 0, 0.0, 0.0, 0.0)
    count = len(kept)
    return HistoryStats(
        total_completed=count,
        total_merged=sum(r.final_state == PipelineState.MERGED for r in kept),
        total_failed=sum(r.final_state == PipelineState.FAILED for r in kept),
        avg_duration_seconds=sum(r.duration_seconds for r in kept) / count,
        avg_retries_ci=sum(r.total_retries_ci for r in kept) / count,
        avg_retries_review=sum(r.total_retries_review for r in kept) / count,
    )


def history_record(
    *,
    project_id: str,
    completed_at: datetime = T0,
    duration_seconds: int = 60,
    final_state: PipelineState = PipelineState.MERGED,
    record_id: str | None = None,
    ticket_id: str = "1",
    retries_ci: int = 0,
    retries_review: int = 0,
) -> PipelineHistory:
    """A valid history record, e.g. for import_history (a new uuid unless `record_id` is given)."""
    return PipelineHistory(
        id=record_id or str(uuid.uuid4()),
        project_id=project_id,
        ticket_id=ticket_id,
        ticket_title=f"ticket {ticket_id}",
        final_state=final_state,
        branch_name=f"vibecc/{ticket_id}",
        pr_id=None,
        pr_url=None,
        total_retries_ci=retries_ci,
        total_retries_review=retries_review,
        started_at=completed_at - timedelta(seconds=duration_seconds),
        completed_at=completed_at,
        duration_seconds=duration_seconds,
    )


def is_utc(value: datetime) -> bool:
    """True for a timezone-aware datetime at offset zero."""
    return value.tzinfo is not None and value.utcoffset() == timedelta(0)
