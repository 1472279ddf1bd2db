"""Query plans of the store's own statements on a big store, for bench/scale.py: the SQL and
parameters the store sends to the driver are captured while the call runs, then explained on
the driver (EXPLAIN QUERY PLAN on SQLite, EXPLAIN (ANALYZE, BUFFERS) on PostgreSQL)."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Any

from bench.common import Statement, statements_sent
from bench.direct import DirectPostgres, DirectSQLite
from vibecc.state_store import HistoryCursor, PipelineState, StateStore
from vibecc.state_store.queries import history


def captured(store: StateStore, call: Callable[[], Any]) -> Statement | None:
    """The last SELECT the store sends to the driver during `call` (None if none)."""
    selects = [sent for sent in statements_sent(store, call) if sent[0].lstrip().upper().startswith("SELECT")]
    return selects[-1] if selects else None


def explain(
    engine: str,
    store: StateStore,
    direct: DirectSQLite | DirectPostgres,
    project: str,
    cursor: HistoryCursor,
    since: datetime,
    scan_at: HistoryCursor,
) -> str:
    """The plans of the store's statements; `cursor` is the 10,000-deep page's, `scan_at` the
    cursor an iter_history batch deep in the whole history continues after."""
    calls: dict[str, tuple[Callable[[], Any], Statement]] = {
        "first page": (
            lambda: store.get_history(project_id=project, limit=100),
            direct.history_query(project, 100),
        ),
        "10,000-deep page": (
            lambda: store.get_history(project_id=project, limit=100, before=cursor),
            direct.history_query(project, 100, before=cursor),
        ),
        "stats 7 days, one project": (
            lambda: store.get_history_stats(project, since=since),
            direct.stats_query(project, since),
        ),
        "stats 7 days, all": (lambda: store.get_history_stats(since=since), direct.stats_query(None, since)),
        "list_pipelines(project, state)": (
            lambda: store.list_pipelines(project, PipelineState.QUEUED),
            direct.list_query(project, PipelineState.QUEUED),
        ),
    }
    statements: dict[str, Statement] = {}
    for name, (call, same_sql) in calls.items():
        seen = captured(store, call)
        # Should the store ever run a statement elsewhere, the baseline's copy stands in.
        statements[name if seen else f"{name} (the baseline's copy of the store's SQL)"] = seen or same_sql
    # An iter_history batch after the first is the keyset one: the query function it runs,
    # continued after the deep cursor.
    batch = captured(
        store, lambda: store.database.read(lambda conn: history.scan(conn, history.Filter(), 1000, scan_at))
    )
    if batch is not None:
        statements["iter_history batch of 1,000 after the deep cursor"] = batch
    statements["10,000-deep page without the completed_at bound (before ddce41c), on the driver"] = (
        direct.history_query(project, 100, before=cursor, bounded=False)
    )
    statements["iter_history batch without the bound (before ddce41c), on the driver"] = direct.scan_query(
        scan_at, 1000, bounded=False
    )
    out = [f"\n## {engine}: query plans\n"]
    for name, (sql, params) in statements.items():
        out.append(f"### {name}\n\n```\n{' '.join(sql.split())}\n--\n" + "\n".join(plan(direct, sql, params)))
        out.append("```\n")
    return "\n".join(out)


def plan(direct: DirectSQLite | DirectPostgres, sql: str, params: Any) -> list[str]:
    if isinstance(direct, DirectSQLite):
        rows = direct.conn.execute(f"EXPLAIN QUERY PLAN {sql}", params).fetchall()
        return [f"{'  ' * _depth(rows, row)}{row[3]}" for row in rows]
    with direct.conn.cursor() as cur:
        cur.execute(f"EXPLAIN (ANALYZE, BUFFERS, COSTS OFF) {sql}", params)
        lines = [str(row[0]) for row in cur.fetchall()]
    direct.conn.rollback()
    return lines


def _depth(plan: list[Any], row: Any) -> int:
    parents = {r[0]: r[1] for r in plan}
    depth, parent = 0, row[1]
    while parent in parents:
        depth, parent = depth + 1, parents[parent]
    return depth
