"""The per-project history totals, kept in the transaction of every history write, so stats
without a window cost the same at any history size."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from functools import cache

from sqlalchemy import Connection, Executable, bindparam, delete, func, select
from sqlalchemy.dialects import postgresql, sqlite

from ..models import history_stats
from ..records import HistoryStats, PipelineHistory, PipelineState
from . import rows

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


def bump(conn: Connection, records: Iterable[PipelineHistory], *, sign: int) -> None:
    """Add (sign=1) or take away (sign=-1) the records from the per-project totals."""
    totals: dict[str, list[int]] = defaultdict(lambda: [0] * len(SUMS))
    for r in records:
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
    if sign < 0:
        # A project whose history is all gone has no totals, as if it never had any.
        conn.execute(_DROP_EMPTY, [{"project_id": p["project_id"]} for p in params])
