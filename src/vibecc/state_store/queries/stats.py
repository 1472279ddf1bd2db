"""The per-project history totals and duration histogram, kept in the transaction of every
history write, so stats and duration percentiles without a window cost the same at any
history size."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from functools import cache

from sqlalchemy import Connection, Executable, bindparam, delete, func, select
from sqlalchemy.dialects import postgresql, sqlite

from ..models import duration_histogram, history_stats
from ..records import DurationPercentiles, HistoryStats, PipelineHistory, PipelineState
from . import buckets, rows

SUMS = (
    "total_completed",
    "total_merged",
    "total_failed",
    "sum_duration_seconds",
    "sum_retries_ci",
    "sum_retries_review",
)
"""The kept columns, in the order rows.stats_from_sums reads them."""

_DROP_EMPTY = delete(history_stats).where(
    history_stats.c.project_id == bindparam("project_id"), history_stats.c.total_completed == 0
)
_D = duration_histogram.c
_DROP_EMPTY_DURATIONS = delete(duration_histogram).where(
    _D.project_id == bindparam("project_id"), _D.bucket == bindparam("bucket"), _D.runs == 0
)
_DURATIONS = select(_D.bucket, func.sum(_D.runs)).group_by(_D.bucket).order_by(_D.bucket)
_DURATIONS_OF_PROJECT = (
    select(_D.bucket, _D.runs).where(_D.project_id == bindparam("project_id")).order_by(_D.bucket)
)


@cache
def _bump(dialect: str) -> Executable:
    """Add parameters named like SUMS to the totals of parameter "project_id"."""
    insert = sqlite.insert if dialect == "sqlite" else postgresql.insert
    statement = insert(history_stats).values(
        project_id=bindparam("project_id"), **{name: bindparam(name) for name in SUMS}
    )
    return statement.on_conflict_do_update(
        index_elements=[history_stats.c.project_id],
        set_={name: history_stats.c[name] + statement.excluded[name] for name in SUMS},
    )


@cache
def _kept(by_project: bool) -> Executable:
    statement = select(*(func.sum(history_stats.c[name]) for name in SUMS))
    if by_project:
        statement = statement.where(history_stats.c.project_id == bindparam("project_id"))
    return statement


def kept(conn: Connection, project_id: str | None) -> HistoryStats:
    """The stats of all history (or one project's) from the kept totals."""
    sums = conn.execute(_kept(project_id is not None), {"project_id": project_id}).one()
    return rows.stats_from_sums(sums)


@cache
def _bump_durations(dialect: str) -> Executable:
    insert = sqlite.insert if dialect == "sqlite" else postgresql.insert
    statement = insert(duration_histogram)
    return statement.on_conflict_do_update(
        index_elements=[_D.project_id, _D.bucket], set_={"runs": _D.runs + statement.excluded.runs}
    )


def percentiles(conn: Connection, project_id: str | None) -> DurationPercentiles:
    """p50 and p95 of all durations (or one project's) from the kept histogram: a read of at
    most one row per bucket, within buckets.RELATIVE_ERROR of the exact nearest-rank values."""
    if project_id is None:
        found = conn.execute(_DURATIONS).all()
    else:
        found = conn.execute(_DURATIONS_OF_PROJECT, {"project_id": project_id}).all()
    counts = [(rows.stored_int("bucket", index), int(runs)) for index, runs in found if runs > 0]
    total = sum(n for _, n in counts)
    if not total:
        return DurationPercentiles(None, None)
    p50, p95 = (buckets.percentile(counts, total, p, buckets.whole_seconds) for p in (50, 95))
    return DurationPercentiles(p50, p95)


def bump(conn: Connection, records: Iterable[PipelineHistory], *, sign: int) -> None:
    """Add (sign=1) or take away (sign=-1) the records from the per-project totals and
    duration histogram."""
    totals: dict[str, list[int]] = defaultdict(lambda: [0] * len(SUMS))
    runs: dict[tuple[str, int], int] = defaultdict(int)
    for r in records:
        runs[r.project_id, buckets.bucket(r.duration_seconds * 1000)] += sign
        t = totals[r.project_id]
        t[0] += 1
        t[1] += r.final_state == PipelineState.MERGED
        t[2] += r.final_state == PipelineState.FAILED
        t[3] += r.duration_seconds
        t[4] += r.total_retries_ci
        t[5] += r.total_retries_review
    if not totals:
        return
    # Sorted, so two writers touching the same projects lock their rows in the same order.
    params = [
        {
            "project_id": project_id,
            **{name: sign * v for name, v in zip(SUMS, totals[project_id], strict=True)},
        }
        for project_id in sorted(totals)
    ]
    conn.execute(_bump(conn.dialect.name), params)
    cells = [{"project_id": p, "bucket": b, "runs": n} for (p, b), n in sorted(runs.items())]
    conn.execute(_bump_durations(conn.dialect.name), cells)
    if sign < 0:
        # A project whose history is all gone has no totals, as if it never had any; and only
        # the cells this call emptied go (a scan of every cell would lock other writers' rows).
        conn.execute(_DROP_EMPTY, [{"project_id": p["project_id"]} for p in params])
        emptied = [{"project_id": c["project_id"], "bucket": c["bucket"]} for c in cells]
        conn.execute(_DROP_EMPTY_DURATIONS, emptied)
