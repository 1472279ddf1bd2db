"""What the benchmarks share: timing and tables, PostgreSQL scratch databases, the machine's
description, and the store's calls written directly on the drivers (stdlib sqlite3, psycopg 3)
with the same statements, transaction boundaries and result records, as the fair baseline."""

from __future__ import annotations

import os
import platform
import re
import sqlite3
import statistics
import subprocess
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import fields
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

import psycopg
import sqlalchemy.exc

from vibecc.state_store import (
    HistoryCursor,
    HistoryStats,
    Pipeline,
    PipelineHistory,
    PipelineState,
    StorageError,
)

T = TypeVar("T")

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "bench" / "out"
PG_HOST = os.environ.get("VIBECC_BENCH_PG_HOST", "127.0.0.1")
PG_PORT = int(os.environ.get("VIBECC_BENCH_PG_PORT", "5432"))
PG_USER = os.environ.get("VIBECC_BENCH_PG_USER", "postgres")

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
STATES = {state.value: state for state in PipelineState}


# -- timing and output ---------------------------------------------------------------------


def timed(action: Callable[[], object], repeat: int, warmup: int = 10) -> list[float]:
    """Seconds taken by each of `repeat` calls of `action`, after `warmup` untimed calls."""
    for _ in range(warmup):
        action()
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        action()
        times.append(time.perf_counter() - start)
    return times


def median(values: Sequence[float]) -> float:
    return float(statistics.median(values))


def table(headers: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    """A Markdown table, columns padded so it also reads well in a terminal."""
    cells = [[str(h) for h in headers], *[[str(c) for c in row] for row in rows]]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]

    def line(row: Sequence[str]) -> str:
        return "| " + " | ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)) + " |"

    rule = "|" + "|".join("-" * (w + 2) for w in widths) + "|"
    return "\n".join([line(cells[0]), rule, *(line(r) for r in cells[1:])])


def verdict(ok: bool) -> str:
    return "ok" if ok else "MISSED"


def cpu_busy(seconds: float = 1.0) -> float:
    """Share of all cores busy (any process) over the next `seconds`, from /proc/stat."""

    def sample() -> tuple[int, int]:
        values = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
        idle = values[3] + values[4]  # idle + iowait
        return sum(values[:8]), idle

    total0, idle0 = sample()
    time.sleep(seconds)
    total1, idle1 = sample()
    return 1.0 - (idle1 - idle0) / max(1, total1 - total0)


def wait_quiet(limit: float = 0.25, max_wait: float = 900.0) -> None:
    """Wait (up to `max_wait` s) until other processes leave the CPUs mostly idle: on a small
    shared machine a test suite running next to the benchmark would decide its numbers."""
    deadline = time.monotonic() + max_wait
    busy = cpu_busy(2.0)
    if busy <= limit:
        return
    print(f"# machine busy ({busy:.0%} CPU); waiting up to {max_wait:.0f} s for it to go quiet", flush=True)
    while time.monotonic() < deadline:
        busy = cpu_busy(5.0)
        if busy <= limit:
            return
    print(f"# still {busy:.0%} busy after {max_wait:.0f} s; measuring anyway (numbers are noisy)", flush=True)


def load() -> str:
    return " ".join(Path("/proc/loadavg").read_text().split()[:3])


# -- PostgreSQL scratch databases ----------------------------------------------------------


def pg_dsn(database: str) -> str:
    return f"host={PG_HOST} port={PG_PORT} user={PG_USER} dbname={database}"


def pg_url(database: str) -> str:
    return f"postgresql+psycopg://{PG_USER}@{PG_HOST}:{PG_PORT}/{database}"


def pg_admin() -> psycopg.Connection[Any]:
    return psycopg.connect(pg_dsn("postgres"), autocommit=True)


def pg_exists(name: str) -> bool:
    with pg_admin() as conn:
        return conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,)).fetchone() is not None


def pg_create(name: str) -> str:
    """Create (or re-create) database `name`; return its SQLAlchemy URL."""
    _check_name(name)
    with pg_admin() as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{name}"')
    return pg_url(name)


def pg_drop(name: str) -> None:
    _check_name(name)
    with pg_admin() as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def pg_wait(max_wait: float = 180.0) -> None:
    """Wait until the server takes connections (other users of this machine restart it)."""
    deadline = time.monotonic() + max_wait
    while True:
        try:
            with pg_admin() as conn:
                conn.execute("SELECT 1")
            return
        except psycopg.OperationalError:
            if time.monotonic() > deadline:
                raise
            time.sleep(1.0)


class RunAgain(Exception):
    """A run broke for a reason outside the code measured (a lost server); run it again."""


def pg_drop_leftovers(prefix: str) -> None:
    """Drop databases named vibecc_bench_<prefix>* left by runs that broke."""
    with pg_admin() as conn:
        names = [
            r[0]
            for r in conn.execute(
                "SELECT datname FROM pg_database WHERE datname LIKE %s", (f"vibecc\\_bench\\_{prefix}%",)
            )
        ]
    for name in names:
        pg_drop(name)


def retrying(action: Callable[..., T], *args: Any, attempts: int = 3) -> T:
    """Run `action(*args)`, again (after the server is back) when a PostgreSQL connection broke."""
    for attempt in range(1, attempts + 1):
        try:
            return action(*args)
        except (psycopg.OperationalError, StorageError, sqlalchemy.exc.OperationalError, RunAgain) as exc:
            if attempt == attempts:
                raise
            reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            print(f"# PostgreSQL connection lost ({reason}); server restarted? run again", flush=True)
            time.sleep(2.0)
            pg_wait()
    raise AssertionError("unreachable")


def _check_name(name: str) -> None:
    if not re.fullmatch(r"vibecc_bench_[a-z0-9_]+", name):
        raise ValueError(f"refusing to touch database {name!r}: not a vibecc_bench_* name")


def remove_sqlite(path: Path) -> None:
    for suffix in ("", "-wal", "-shm", "-journal"):
        Path(f"{path}{suffix}").unlink(missing_ok=True)


# -- the machine ---------------------------------------------------------------------------


def machine() -> dict[str, str]:
    """CPU, cores, memory, the filesystem under bench/out, and the software versions."""
    OUT.mkdir(parents=True, exist_ok=True)
    cpu = "unknown"
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            cpu = line.split(":", 1)[1].strip()
            break
    mem_kb = 0
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemTotal:"):
            mem_kb = int(line.split()[1])
    df = subprocess.run(
        ["df", "-h", "--output=source,fstype,size", str(OUT)], capture_output=True, text=True, check=False
    ).stdout.splitlines()
    try:
        with pg_admin() as conn:
            row = conn.execute("SHOW server_version").fetchone()
            pg_version = str(row[0]) if row else "?"
    except psycopg.Error as exc:
        pg_version = f"unreachable ({str(exc).strip().splitlines()[0]})"
    return {
        "cpu": cpu,
        "cores": str(os.cpu_count()),
        "memory": f"{mem_kb / 1024 / 1024:.1f} GiB",
        "bench/out filesystem": " ".join(df[-1].split()) if df else "?",
        "python": platform.python_version(),
        "sqlite": sqlite3.sqlite_version,
        "postgresql": pg_version,
        "psycopg": psycopg.__version__,
        "code": _code_version(),
        "load average": load(),
    }


def _code_version() -> str:
    def git(*args: str) -> str:
        return subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True, check=False).stdout

    head = git("log", "-1", "--format=%h %s").strip()
    dirty = git("status", "--porcelain", "--", "src").strip()
    return f"{head}{' (+ uncommitted changes in src/)' if dirty else ''}"


def print_machine() -> None:
    for key, value in machine().items():
        print(f"# {key}: {value}")


# -- direct driver baselines ---------------------------------------------------------------


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

    # -- dialect hooks

    def begin_write(self) -> None:
        raise NotImplementedError

    def begin_read(self) -> None:
        raise NotImplementedError

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
        self.begin_read()
        cur = self.conn.cursor()
        try:
            yield cur
        finally:
            cur.close()
            self.conn.commit()

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
        params = [*values.values(), self.bind_time(datetime.now(UTC)), pipeline_id]
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
        return self.pipeline(row)

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
        return result

    def get_history(
        self,
        project_id: str | None = None,
        limit: int = 100,
        *,
        before: HistoryCursor | None = None,
        since: datetime | None = None,
        bounded: bool = False,
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
        bounded: bool = False,
    ) -> tuple[str, list[Any]]:
        """The page query and its parameters. With `bounded`, the keyset condition also says
        completed_at <= cursor, which lets both engines start the index range at the cursor."""
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
        self, after: HistoryCursor | None, limit: int, *, bounded: bool = False
    ) -> tuple[str, list[Any]]:
        """One batch of iter_history (oldest first, after a cursor), in the store's keyset form
        or, with `bounded`, with the extra completed_at >= cursor that starts the index range."""
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
    BEGIN IMMEDIATE for writes, BEGIN for reads."""

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

    def begin_read(self) -> None:
        self.conn.execute("BEGIN")


class DirectPostgres(Direct):
    """psycopg 3, autocommit off: the driver opens the transaction, each call commits it."""

    mark = "%s"

    def __init__(self, database: str) -> None:
        super().__init__(psycopg.connect(pg_dsn(database), autocommit=False))
        self.bind_time = _same
        self.load_time = pg_time

    def begin_write(self) -> None:
        pass

    def begin_read(self) -> None:
        pass
