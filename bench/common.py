"""What the benchmarks share: timing and tables, waiting for a quiet machine, PostgreSQL
scratch databases and the machine's description. The driver baselines are in bench/direct.py."""

from __future__ import annotations

import os
import platform
import re
import sqlite3
import statistics
import subprocess
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, TypeVar

import psycopg
import sqlalchemy.exc
from sqlalchemy import event

from vibecc.state_store import StateStore, StorageError

T = TypeVar("T")
Statement = tuple[str, Any]
"""SQL in the driver's parameter style, and its parameters."""

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "bench" / "out"
PG_HOST = os.environ.get("VIBECC_BENCH_PG_HOST", "127.0.0.1")
PG_PORT = int(os.environ.get("VIBECC_BENCH_PG_PORT", "5432"))
PG_USER = os.environ.get("VIBECC_BENCH_PG_USER", "postgres")

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


def cpu_times() -> tuple[int, int]:
    """(all, idle) CPU time of every core so far, in clock ticks, from /proc/stat."""
    values = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    idle = values[3] + values[4]  # idle + iowait
    return sum(values[:8]), idle


def busy_between(first: tuple[int, int], second: tuple[int, int]) -> float:
    """Share of all cores busy (any process) between two cpu_times() samples."""
    return 1.0 - (second[1] - first[1]) / max(1, second[0] - first[0])


def cpu_busy(seconds: float = 1.0) -> float:
    """Share of all cores busy (any process) over the next `seconds`, from /proc/stat."""
    first = cpu_times()
    time.sleep(seconds)
    return busy_between(first, cpu_times())


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
    """Drop databases named vibecc_bench_<prefix>* left by runs that broke: only those nobody
    is connected to, and without FORCE, so a run going on beside this one keeps its database."""
    with pg_admin() as conn:
        names = [
            r[0]
            for r in conn.execute(
                "SELECT datname FROM pg_database d WHERE datname LIKE %s AND NOT EXISTS "
                "(SELECT 1 FROM pg_stat_activity a WHERE a.datname = d.datname)",
                (f"vibecc\\_bench\\_{prefix}%",),
            )
        ]
    for name in names:
        _check_name(name)
        try:
            with pg_admin() as conn:
                conn.execute(f'DROP DATABASE IF EXISTS "{name}"')
        except psycopg.errors.ObjectInUse:
            pass  # someone connected meanwhile: it is in use after all


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


# -- the store's SQL -----------------------------------------------------------------------


def statements_sent(store: StateStore, call: Callable[[], object]) -> list[Statement]:
    """Every statement the store sends to the driver during `call`, as SQLAlchemy's
    before_cursor_execute event hands it over: SQL and driver parameters."""
    sent: list[Statement] = []

    def record(conn: Any, cursor: Any, statement: str, parameters: Any, *_: Any) -> None:
        sent.append((statement, parameters))

    engine = store.database.engine
    event.listen(engine, "before_cursor_execute", record)
    try:
        call()
    finally:
        event.remove(engine, "before_cursor_execute", record)
    return sent
