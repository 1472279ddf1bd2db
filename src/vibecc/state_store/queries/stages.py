"""Time spent in each state: a histogram per project and state (buckets.py) and its sum over
projects (stage_totals), both kept in the transaction of each archive and prune, and the scan
of a window of history when one is asked for. Percentiles read from the histogram are within
buckets.RELATIVE_ERROR (4.9%) of the exact ones; totals and means are exact (sums in ms)."""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Iterable, Sequence
from datetime import datetime
from functools import cache
from typing import Any

from sqlalchemy import Connection, Executable, Table, bindparam, delete, select
from sqlalchemy.dialects import postgresql, sqlite

from ..models import history, stage_histogram, stage_totals, transitions
from ..records import PipelineHistory, PipelineState, StageStats
from . import buckets, rows

Visit = tuple[str, PipelineState, int]
"""(project id, state, milliseconds spent in it)."""

_H = stage_histogram.c
# A cell is dropped only once it holds nothing (no visit, no time): dropping one with time
# left over would take that time from the project's figures and not from the totals.
_DROP_EMPTY = delete(stage_histogram).where(
    _H.project_id == bindparam("project_id"),
    _H.state == bindparam("state"),
    _H.bucket == bindparam("bucket"),
    _H.visits == 0,
    _H.sum_ms == 0,
)
_T = stage_totals.c
_DROP_EMPTY_TOTALS = delete(stage_totals).where(
    _T.state == bindparam("state"), _T.bucket == bindparam("bucket"), _T.visits == 0, _T.sum_ms == 0
)
_KEPT = select(_T.state, _T.bucket, _T.visits, _T.sum_ms)
_KEPT_OF_PROJECT = select(_H.state, _H.bucket, _H.visits, _H.sum_ms).where(
    _H.project_id == bindparam("project_id")
)


@cache
def _bump(dialect: str, table: Table) -> Executable:
    insert = sqlite.insert if dialect == "sqlite" else postgresql.insert
    statement = insert(table)
    return statement.on_conflict_do_update(
        index_elements=list(table.primary_key.columns),
        set_={
            "visits": table.c.visits + statement.excluded.visits,
            "sum_ms": table.c.sum_ms + statement.excluded.sum_ms,
        },
    )


def bump(conn: Connection, visits: Iterable[Visit], *, sign: int) -> None:
    """Add (sign=1) or take away (sign=-1) visits from the kept histogram and its totals."""
    cells: dict[tuple[str, str, int], list[int]] = defaultdict(lambda: [0, 0])
    for project_id, state, ms in visits:
        cell = cells[project_id, state.value, buckets.bucket(ms)]
        cell[0] += sign
        cell[1] += sign * ms
    if not cells:
        return
    # Sorted, so two writers touching the same cells lock them in the same order.
    params = [
        {"project_id": p, "state": s, "bucket": b, "visits": n, "sum_ms": total}
        for (p, s, b), (n, total) in sorted(cells.items())
    ]
    conn.execute(_bump(conn.dialect.name, stage_histogram), params)
    if sign < 0:
        # Only the cells this call emptied: a scan of every cell would lock other writers' rows.
        conn.execute(_DROP_EMPTY, [{k: p[k] for k in ("project_id", "state", "bucket")} for p in params])
    add_totals(conn, params)


def add_totals(conn: Connection, cells: Iterable[dict[str, Any]]) -> None:
    """Add stage_histogram cells (their visits and sum_ms, negative to take away) to the
    totals over projects, dropping the totals this emptied. So each total stays the sum of its
    cells, whatever they hold: a total can be emptied by an addition too (a cell below zero,
    which a run counted differently at archive and at prune leaves)."""
    totals: dict[tuple[str, int], list[int]] = defaultdict(lambda: [0, 0])
    for cell in cells:
        total = totals[cell["state"], cell["bucket"]]
        total[0] += cell["visits"]
        total[1] += cell["sum_ms"]
    # Sorted like the cells: every writer locks the totals' rows in one order.
    params = [
        {"state": s, "bucket": b, "visits": n, "sum_ms": ms} for (s, b), (n, ms) in sorted(totals.items())
    ]
    if not params:
        return
    conn.execute(_bump(conn.dialect.name, stage_totals), params)
    conn.execute(_DROP_EMPTY_TOTALS, [{"state": p["state"], "bucket": p["bucket"]} for p in params])


def visits_of_runs(conn: Connection, records: Sequence[PipelineHistory]) -> list[Visit]:
    """The state visits of these finished runs, from their transitions (the last one ends at
    the run's completion); visits whose start is reconstructed are not known, so not counted."""
    if not records:
        return []
    completed = {r.id: r.completed_at for r in records}
    ids = sorted(completed)
    found: list[Any] = []
    for start in range(0, len(ids), rows.IDS_PER_STATEMENT):
        found += conn.execute(_RUNS_TRANSITIONS, {"ids": ids[start : start + rows.IDS_PER_STATEMENT]}).all()
    return _visits(found, completed)


_RUNS_TRANSITIONS = (
    select(
        transitions.c.pipeline_id,
        transitions.c.project_id,
        transitions.c.to_state,
        transitions.c.at,
        transitions.c.reconstructed,
    )
    .where(transitions.c.pipeline_id.in_(bindparam("ids", expanding=True)))
    .order_by(transitions.c.pipeline_id, transitions.c.seq)
)


def _visits(found: Sequence[Any], completed: dict[str, datetime]) -> list[Visit]:
    """The visits of runs up to their completion. A pipeline saved to history may go on
    changing state: what comes after its record's completed_at is not part of that run, so
    the visits are the same whenever they are counted (at the save, at a prune, in a scan)."""
    visits: list[Visit] = []
    for i, (pipeline_id, project_id, state, at, reconstructed) in enumerate(found):
        done = completed[pipeline_id]
        if at > done:
            continue
        following = found[i + 1] if i + 1 < len(found) else None
        end = min(following[3], done) if following is not None and following[0] == pipeline_id else done
        if not reconstructed:
            visits.append((project_id, rows.state(state), max(0, round((end - at).total_seconds() * 1000))))
    return visits


def kept(conn: Connection, project_id: str | None) -> dict[PipelineState, StageStats]:
    """Stage statistics from the kept histogram: a read of at most states x buckets rows."""
    statement = _KEPT if project_id is None else _KEPT_OF_PROJECT
    by_stored: dict[str, list[tuple[int, int, int]]] = defaultdict(list)
    for stored, index, visits, total_ms in conn.execute(statement, {"project_id": project_id}).all():
        if rows.stored_int("stage histogram visits", visits) > 0:
            bucket = rows.stored_int("stage histogram bucket", index)
            by_stored[stored].append((bucket, visits, rows.stored_int("stage histogram sum_ms", total_ms)))
    cells = {rows.state(stored): found for stored, found in by_stored.items()}
    return {state: _from_histogram(state, sorted(cells.get(state, []))) for state in PipelineState}


def _from_histogram(state: PipelineState, cells: list[tuple[int, int, int]]) -> StageStats:
    visits = sum(n for _, n, _ in cells)
    total = sum(ms for _, _, ms in cells) / 1000
    if not visits:
        return StageStats(state, 0, 0.0, None, None, None)

    counts = [(index, n) for index, n, _ in cells]
    p50, p95 = (buckets.percentile(counts, visits, percent) for percent in (50, 95))
    return StageStats(state, visits, total, total / visits, p50, p95)


_WINDOW_TRANSITIONS = (
    select(
        transitions.c.pipeline_id,
        transitions.c.project_id,
        transitions.c.to_state,
        transitions.c.at,
        transitions.c.reconstructed,
        history.c.completed_at,
    )
    .join(history, history.c.id == transitions.c.pipeline_id)
    .order_by(transitions.c.pipeline_id, transitions.c.seq)
)


def scanned(
    conn: Connection, project_id: str | None, since: datetime | None, until: datetime | None
) -> dict[PipelineState, StageStats]:
    """Stage statistics, exact, over the runs completed within [since, until): a scan of the
    window's history rows (by their completed_at index) and of their transitions."""
    statement = _WINDOW_TRANSITIONS
    if project_id is not None:
        statement = statement.where(history.c.project_id == project_id)
    if since is not None:
        statement = statement.where(history.c.completed_at >= since)
    if until is not None:
        statement = statement.where(history.c.completed_at < until)
    found = conn.execute(statement).all()
    completed = {row[0]: row[5] for row in found}
    durations: dict[PipelineState, list[int]] = defaultdict(list)
    for _, state, ms in _visits([row[:5] for row in found], completed):
        durations[state].append(ms)
    return {state: _exact(state, sorted(durations[state])) for state in PipelineState}


def _exact(state: PipelineState, ms: list[int]) -> StageStats:
    if not ms:
        return StageStats(state, 0, 0.0, None, None, None)
    total = sum(ms) / 1000

    def at(percent: int) -> float:
        return ms[max(1, math.ceil(percent / 100 * len(ms))) - 1] / 1000

    return StageStats(state, len(ms), total, total / len(ms), at(50), at(95))
