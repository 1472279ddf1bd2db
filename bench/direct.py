"""The store's calls written directly on the drivers (stdlib sqlite3, psycopg 3) with the same
statements, transaction boundaries and result records: the fair baseline of the benchmarks."""

from __future__ import annotations

import sqlite3
import uuid
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import fields
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import psycopg

from bench import direct_timelines as timelines
from bench.common import pg_dsn
from bench.direct_changes import ChangeLog, archived, created, updated
from vibecc.state_store import (
    HistoryCursor,
    HistoryStats,
    Pipeline,
    PipelineHistory,
    PipelineState,
)

PIPELINE_FIELDS = [f.name for f in fields(Pipeline)]
HISTORY_FIELDS = [f.name for f in fields(PipelineHistory)]
PIPELINE_COLS = ", ".join(PIPELINE_FIELDS)
HISTORY_COLS = ", ".join(HISTORY_FIELDS)
STATS_COLS = (
    "total_completed",
    "total_merged",
    "total_failed",
    "sum_duration_seconds",
    "sum_retries_ci",
    "sum_retries_review",
)
"""The kept totals: the columns of the history_stats table, named here so that the baseline
runs against any version of the package (bench/compare.py)."""
STATES = {state.value: state for state in PipelineState}


def sqlite_stamp(value: datetime) -> str:
    """How the store keeps a timestamp in SQLite: UTC wall time, ISO text with microseconds."""
    return value.astimezone(UTC).replace(tzinfo=None).isoformat(" ", "microseconds")


def sqlite_time(value: str) -> datetime:
    return datetime.fromisoformat(value + "+00:00")


def pg_time(value: datetime) -> datetime:
    return value.astimezone(UTC)


def _same(value: datetime) -> datetime:
    return value


def history_from(source: Pipeline, completed_at: datetime) -> PipelineHistory:
    duration = max(0, int((completed_at - source.created_at).total_seconds()))
    ticket = (source.id, source.project_id, source.ticket_id, source.ticket_title, source.state)
    work = (source.branch_name, source.pr_id, source.pr_url, source.retry_count_ci, source.retry_count_review)
    return PipelineHistory(*ticket, *work, source.created_at, completed_at, duration)


def stats_from(sums: Sequence[Any] | None) -> HistoryStats:
    completed, merged, failed, duration, ci, review = (int(s or 0) for s in (sums or (0,) * 6))
    if not completed:
        return HistoryStats(0, 0, 0, 0.0, 0.0, 0.0)
    return HistoryStats(completed, merged, failed, duration / completed, ci / completed, review / completed)


_UPDATABLE = ("state", "pr_id", "pr_url", "retry_count_ci", "retry_count_review", "feedback")


class Direct:
    """The store's calls on a raw DB-API connection: one transaction per call, same SQL.

    Subclasses set the placeholder style, how a write transaction begins, and how stored
    timestamps come back.
    """

    mark = "?"
    bind_time: Callable[[datetime], Any]
    load_time: Callable[[Any], datetime]

    def __init__(self, conn: Any) -> None:
        self.conn = conn
        cur = conn.cursor()
        sqlite = isinstance(conn, sqlite3.Connection)
        names = timelines.table_names(cur, sqlite)
        self.timelines, self.durations = timelines.tables(names)
        self.changes = ChangeLog(names, mark=self.mark, postgresql=not sqlite)
        cur.close()
        conn.commit()

    # -- dialect hooks

    def begin_write(self) -> None:
        raise NotImplementedError

    def begin_read(self) -> None:
        pass

    def end_read(self) -> None:
        pass

    def close(self) -> None:
        self.conn.close()

    # -- transactions

    @contextmanager
    def write(self) -> Iterator[Any]:
        self.begin_write()
        cur = self.conn.cursor()
        try:
            yield cur
        except BaseException:
            self.conn.rollback()
            raise
        else:
            self.conn.commit()
        finally:
            cur.close()

    @contextmanager
    def read(self) -> Iterator[Any]:
        """A one-statement read, as the store runs one: outside a transaction (SQLite: no
        BEGIN; PostgreSQL: autocommit, one round trip)."""
        self.begin_read()
        cur = self.conn.cursor()
        try:
            yield cur
        finally:
            cur.close()
            self.end_read()

    def marks(self, n: int) -> str:
        return ", ".join([self.mark] * n)

    # -- records

    def pipeline(self, row: Sequence[Any]) -> Pipeline:
        values = list(row)
        values[5] = STATES[values[5]]
        values[12] = self.load_time(values[12])
        values[13] = self.load_time(values[13])
        return Pipeline(*values)

    def history(self, row: Sequence[Any]) -> PipelineHistory:
        values = list(row)
        values[4] = STATES[values[4]]
        values[10] = self.load_time(values[10])
        values[11] = self.load_time(values[11])
        return PipelineHistory(*values)

    # -- the calls

    def create_pipeline(
        self,
        project_id: str,
        ticket_id: str | int,
        ticket_title: str,
        branch_name: str,
        ticket_body: str = "",
    ) -> Pipeline:
        now = datetime.now(UTC)
        head = (str(uuid.uuid4()), project_id, str(ticket_id), ticket_title, ticket_body)
        record = Pipeline(*head, PipelineState.QUEUED, branch_name, None, None, 0, 0, None, now, now, 1)
        values = [getattr(record, name) for name in PIPELINE_FIELDS]
        values[5] = record.state.value
        values[12] = values[13] = self.bind_time(now)
        sql = f"INSERT INTO pipelines ({PIPELINE_COLS}) VALUES ({self.marks(len(values))})"  # noqa: S608
        with self.write() as cur:
            cur.execute(sql, values)
            if self.timelines:
                timelines.first(cur, self.mark, self.bind_time, record)
            self.changes.write(cur, created(record.id, project_id), values[12])  # created_at
        return record

    def get_pipeline(self, pipeline_id: str) -> Pipeline:
        with self.read() as cur:
            cur.execute(f"SELECT {PIPELINE_COLS} FROM pipelines WHERE id = {self.mark}", (pipeline_id,))  # noqa: S608
            row = cur.fetchone()
        if row is None:
            raise LookupError(pipeline_id)
        return self.pipeline(row)

    def list_pipelines(self, project_id: str | None = None, state: str | None = None) -> list[Pipeline]:
        sql, params = self.list_query(project_id, state)
        with self.read() as cur:
            cur.execute(sql, params)
            return [self.pipeline(row) for row in cur.fetchall()]

    def list_query(self, project_id: str | None, state: str | None) -> tuple[str, list[Any]]:
        where, params = [], []
        if project_id is not None:
            where.append(f"project_id = {self.mark}")
            params.append(project_id)
        if state is not None:
            where.append(f"state = {self.mark}")
            params.append(str(state))
        clause = f" WHERE {' AND '.join(where)}" if where else ""
        sql = f"SELECT {PIPELINE_COLS} FROM pipelines{clause} ORDER BY created_at DESC, id DESC"  # noqa: S608
        return sql, params

    def update_pipeline(self, pipeline_id: str, **changes: Any) -> Pipeline:
        values = {name: changes[name] for name in _UPDATABLE if name in changes}
        if "state" in values:
            values["state"] = str(values["state"])
        sets = [f"{name} = {self.mark}" for name in values]
        sets += ["version = version + 1", f"updated_at = {self.mark}"]
        stamp = self.bind_time(datetime.now(UTC))
        params = [*values.values(), stamp, pipeline_id]
        sql = (
            f"UPDATE pipelines SET {', '.join(sets)} WHERE id = {self.mark} "  # noqa: S608
            f"RETURNING {PIPELINE_COLS}"
        )
        with self.write() as cur:
            cur.execute(sql, params)
            row = cur.fetchone()
            if row is None:
                cur.execute(f"SELECT version FROM pipelines WHERE id = {self.mark}", (pipeline_id,))  # noqa: S608
                raise LookupError(pipeline_id)
            after = self.pipeline(row)
            if self.timelines and "state" in values:
                timelines.append(cur, self.mark, self.bind_time, after, "feedback" in values)
            self.changes.write(cur, updated(after.id, after.project_id, after.version), stamp)
        return after

    def archive_pipeline(self, pipeline_id: str) -> PipelineHistory:
        m = self.mark
        with self.write() as cur:
            cur.execute(f"DELETE FROM pipelines WHERE id = {m} RETURNING {PIPELINE_COLS}", (pipeline_id,))  # noqa: S608
            row = cur.fetchone()
            if row is None:
                raise LookupError(pipeline_id)
            record = history_from(self.pipeline(row), datetime.now(UTC))
            values = [getattr(record, name) for name in HISTORY_FIELDS]
            values[4] = record.final_state.value
            values[10] = self.bind_time(record.started_at)
            values[11] = self.bind_time(record.completed_at)
            cur.execute(
                f"INSERT INTO pipeline_history ({HISTORY_COLS}) VALUES ({self.marks(len(values))}) "  # noqa: S608
                f"ON CONFLICT (id) DO NOTHING RETURNING {HISTORY_COLS}",
                values,
            )
            inserted = cur.fetchone()
            if inserted is None:
                self.changes.write(cur, archived(record.id, record.project_id, False), values[11])
                cur.execute(f"SELECT {HISTORY_COLS} FROM pipeline_history WHERE id = {m}", (pipeline_id,))  # noqa: S608
                return self.history(cur.fetchone())
            result = self.history(inserted)
            deltas = (
                1,
                int(result.final_state == PipelineState.MERGED),
                int(result.final_state == PipelineState.FAILED),
                result.duration_seconds,
                result.total_retries_ci,
                result.total_retries_review,
            )
            sets = ", ".join(f"{c} = history_stats.{c} + excluded.{c}" for c in STATS_COLS)
            cur.execute(
                f"INSERT INTO history_stats (project_id, {', '.join(STATS_COLS)}) "  # noqa: S608
                f"VALUES ({self.marks(7)}) ON CONFLICT (project_id) DO UPDATE SET {sets}",
                (result.project_id, *deltas),
            )
            if self.timelines:
                timelines.archived(cur, self.mark, self.load_time, result, self.durations)
            self.changes.write(cur, archived(result.id, result.project_id, True), values[11])
        return result

    def get_history(
        self,
        project_id: str | None = None,
        limit: int = 100,
        *,
        before: HistoryCursor | None = None,
        since: datetime | None = None,
        bounded: bool = True,
    ) -> list[PipelineHistory]:
        return self.history_rows(
            *self.history_query(project_id, limit, before=before, since=since, bounded=bounded)
        )

    def history_query(
        self,
        project_id: str | None,
        limit: int,
        *,
        before: HistoryCursor | None = None,
        since: datetime | None = None,
        bounded: bool = True,
    ) -> tuple[str, list[Any]]:
        """The page query and its parameters, in the store's keyset form: completed_at <= cursor
        starts the index range at the cursor. `bounded=False` gives the form without that bound
        (the store's before ddce41c), which reads every row newer than the cursor."""
        where, params = self._window(project_id, since)
        if before is not None:
            m = self.mark
            stamp = self.bind_time(before.completed_at)
            if bounded:
                where.append(f"completed_at <= {m} AND (completed_at < {m} OR id < {m})")
            else:
                where.append(f"(completed_at < {m} OR (completed_at = {m} AND id < {m}))")
            params += [stamp, stamp, before.id]
        clause = f" WHERE {' AND '.join(where)}" if where else ""
        sql = (
            f"SELECT {HISTORY_COLS} FROM pipeline_history{clause} "  # noqa: S608
            f"ORDER BY completed_at DESC, id DESC LIMIT {self.mark}"
        )
        return sql, [*params, limit]

    def scan_query(
        self, after: HistoryCursor | None, limit: int, *, bounded: bool = True
    ) -> tuple[str, list[Any]]:
        """One batch of iter_history (oldest first, after a cursor) in the store's keyset form,
        whose completed_at >= cursor starts the index range; `bounded=False`: without it."""
        m = self.mark
        where, params = "", []
        if after is not None:
            stamp = self.bind_time(after.completed_at)
            if bounded:
                where = f" WHERE completed_at >= {m} AND (completed_at > {m} OR id > {m})"
            else:
                where = f" WHERE (completed_at > {m} OR (completed_at = {m} AND id > {m}))"
            params = [stamp, stamp, after.id]
        sql = (
            f"SELECT {HISTORY_COLS} FROM pipeline_history{where} "  # noqa: S608
            f"ORDER BY completed_at, id LIMIT {m}"
        )
        return sql, [*params, limit]

    def scan_cursor(self, depth: int) -> HistoryCursor:
        """The iter_history cursor after the first `depth` rows (oldest first), depth >= 1."""
        with self.read() as cur:
            cur.execute(
                f"SELECT completed_at, id FROM pipeline_history ORDER BY completed_at, id "  # noqa: S608
                f"LIMIT 1 OFFSET {self.mark}",
                (depth - 1,),
            )
            at, key = cur.fetchone()
        return HistoryCursor(self.load_time(at), key)

    def history_rows(self, sql: str, params: list[Any]) -> list[PipelineHistory]:
        with self.read() as cur:
            cur.execute(sql, params)
            return [self.history(row) for row in cur.fetchall()]

    def get_history_stats(
        self, project_id: str | None = None, *, since: datetime | None = None
    ) -> HistoryStats:
        sql, params = self.stats_query(project_id, since)
        with self.read() as cur:
            cur.execute(sql, params)
            return stats_from(cur.fetchone())

    def stats_query(self, project_id: str | None, since: datetime | None) -> tuple[str, list[Any]]:
        """The kept totals without a window; with one, an aggregate over the window's rows."""
        if since is None:
            sql = f"SELECT {', '.join(f'sum({c})' for c in STATS_COLS)} FROM history_stats"  # noqa: S608
            params: list[Any] = []
            if project_id is not None:
                sql += f" WHERE project_id = {self.mark}"
                params.append(project_id)
            return sql, params
        where, params = self._window(project_id, since)
        sql = (
            "SELECT count(*), sum(CASE WHEN final_state = 'merged' THEN 1 ELSE 0 END), "  # noqa: S608
            "sum(CASE WHEN final_state = 'failed' THEN 1 ELSE 0 END), sum(duration_seconds), "
            "sum(total_retries_ci), sum(total_retries_review) "
            f"FROM pipeline_history WHERE {' AND '.join(where)}"
        )
        return sql, params

    def _window(self, project_id: str | None, since: datetime | None) -> tuple[list[str], list[Any]]:
        where: list[str] = []
        params: list[Any] = []
        if project_id is not None:
            where.append(f"project_id = {self.mark}")
            params.append(project_id)
        if since is not None:
            where.append(f"completed_at >= {self.mark}")
            params.append(self.bind_time(since))
        return where, params


class DirectSQLite(Direct):
    """stdlib sqlite3 with the store's pragmas: WAL, synchronous=FULL, foreign keys, busy timeout;
    BEGIN IMMEDIATE for writes; reads without BEGIN, as the store's one-statement reads."""

    def __init__(self, path: str | Path, busy_timeout: float = 10.0) -> None:
        conn = sqlite3.connect(path, timeout=busy_timeout, isolation_level=None, check_same_thread=False)
        conn.execute(f"PRAGMA busy_timeout = {int(busy_timeout * 1000):d}")
        if conn.execute("PRAGMA journal_mode").fetchone()[0] != "wal":
            conn.execute("PRAGMA journal_mode = WAL")
        conn.execute("PRAGMA synchronous = FULL")
        conn.execute("PRAGMA foreign_keys = ON")
        super().__init__(conn)
        self.bind_time = sqlite_stamp
        self.load_time = sqlite_time

    def begin_write(self) -> None:
        self.conn.execute("BEGIN IMMEDIATE")


class DirectPostgres(Direct):
    """psycopg 3, autocommit off: the driver opens a write's transaction, the call commits it;
    reads run in autocommit."""

    mark = "%s"

    def __init__(self, database: str) -> None:
        super().__init__(psycopg.connect(pg_dsn(database), autocommit=False))
        self.bind_time = _same
        self.load_time = pg_time

    def begin_write(self) -> None:
        pass

    def begin_read(self) -> None:
        self.conn.autocommit = True

    def end_read(self) -> None:
        self.conn.autocommit = False
