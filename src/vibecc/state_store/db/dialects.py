"""Database location -> Engine, and everything that differs between SQLite and PostgreSQL."""

from __future__ import annotations

import sqlite3
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy import Connection, Engine, Table, create_engine, event, text
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import URL
from sqlalchemy.exc import ArgumentError, DBAPIError
from sqlalchemy.pool import StaticPool

from ..errors import SchemaVersionError, StateStoreError, StorageError, ValidationError
from .files import create_private_file, read_only_uri
from .urls import MEMORY

SQLITE_BUSY = 5
SQLITE_LOCKED = 6
SQLITE_READONLY = 8
SQLITE_CANTOPEN = 14
Upsert = sqlite.Insert | postgresql.Insert
BEGIN = "sqlite_begin"
"""Execution option naming the statement that opens a SQLite transaction: "BEGIN IMMEDIATE"
(a write: the write lock from the start, so it never fails upgrading a read lock), "BEGIN"
(a read of several statements; the default) or "" (a one-statement read, which SQLite runs
as a transaction of its own)."""
WAIT_POLL = 0.25
"""Seconds between looks while waiting for a commit, where the engine tells of none."""
SQLITE_WAIT_POLL = 0.01
"""Seconds between looks at SQLite's data_version while waiting for a commit."""
PG_WAIT_POLL = 0.25
"""Seconds a PostgreSQL wait lets pass without a notification before it looks anyway."""
BEGIN_WAIT = "sqlite_begin_wait"
"""Execution option: seconds a BEGIN retries while SQLite answers "busy" (default: busy_timeout)."""
# Any constant works; it only has to be the same in every process (ASCII "vibecc").
_PG_MIGRATION_LOCK = 0x766962656363
_SESSION_SETTINGS = "SET TIME ZONE 'UTC'; SET DateStyle = 'ISO, MDY'; SET IntervalStyle = 'postgres'"
"""What every PostgreSQL session of the store runs with, whatever the server's, database's,
role's or client environment's defaults."""


@dataclass(frozen=True, slots=True)
class EngineOptions:
    """Connection settings; the defaults suit one orchestrator on one machine."""

    pool_size: int = 5
    max_overflow: int = 10
    pool_timeout: float = 30.0
    connect_timeout: float = 10.0
    busy_timeout: float = 10.0
    statement_timeout: float | None = None


class Dialect:
    """What differs between engines, in one place; store.py calls only these."""

    name = "generic"

    def __init__(self, url: URL, options: EngineOptions) -> None:
        self.url = url
        self.options = options

    def create_engine(self) -> Engine:
        raise NotImplementedError

    def prepare(self, engine: Engine) -> None:
        """Settings kept in the database itself, made once its schema is accepted."""

    write_lock: threading.RLock | None = None
    """Held around each write transaction in this process, when the engine needs it."""
    read_lock: threading.RLock | None = None
    """Held around each read transaction in this process, when the engine needs it."""
    shared_connection = False
    """True when every call uses the same connection (SQLite ":memory:")."""
    drops_connections = False
    """True when the server may close a pooled connection while it is idle (a restart, an
    idle timeout): the first statement of a call then fails, and the call is retried once."""

    def transaction_options(self, *, write: bool, snapshot: bool) -> dict[str, Any]:
        """Execution options of the connection of one call: how its transaction begins."""
        return {}

    def explain(self, exc: BaseException) -> str | None:
        """What the user can do about a database error, when this engine knows more."""
        return None

    def idle_options(self) -> dict[str, Any]:
        """Execution options of a connection whose statements run outside any transaction."""
        return {}

    def wait_for_commit(
        self,
        conn: Connection,
        ready: Callable[[], bool],
        deadline: float,
        stopped: Callable[[], bool],
        channel: str,
    ) -> bool:
        """Until ready() or the monotonic `deadline` (False), looking again every WAIT_POLL."""

        def pause(remaining: float) -> bool:
            time.sleep(min(remaining, WAIT_POLL))
            return True

        return _wait_until(ready, deadline, stopped, pause)

    def interrupt(self, conn: Connection) -> None:
        """Make the statement running on `conn` (in another thread) fail at once."""

    def lock_for_copy(self, conn: Connection) -> None:
        """Keep other copies (and writers of projects) out of this transaction's database
        until it ends; SQLite's write transactions exclude each other already."""


class SQLiteDialect(Dialect):
    name = "sqlite"

    def __init__(self, url: URL, options: EngineOptions) -> None:
        super().__init__(url, options)
        self.memory = url.database in (None, "", MEMORY)
        self.read_only = False
        # One writer at a time within the process: threads queue on this lock instead of
        # sleeping in SQLite's busy handler; other processes are kept out by BEGIN IMMEDIATE.
        # An in-memory database is one shared connection, so its reads queue too.
        self.write_lock = threading.RLock()
        self.read_lock = self.write_lock if self.memory else None
        self.shared_connection = self.memory

    def create_engine(self) -> Engine:
        busy_ms = int(self.options.busy_timeout * 1000)
        wait = self.options.busy_timeout
        if self.memory:
            engine = create_engine(
                "sqlite://",
                poolclass=StaticPool,
                connect_args={"check_same_thread": False},
            )
        else:
            path = Path(str(self.url.database))
            create_private_file(path)
            uri = read_only_uri(path)
            self.read_only = uri is not None
            creator = None
            if uri is not None:
                timeout = self.options.busy_timeout

                def creator() -> sqlite3.Connection:
                    return sqlite3.connect(uri, uri=True, timeout=timeout, check_same_thread=False)

            engine = create_engine(
                self.url,
                pool_size=self.options.pool_size,
                max_overflow=self.options.max_overflow,
                pool_timeout=self.options.pool_timeout,
                connect_args={"timeout": self.options.busy_timeout, "check_same_thread": False},
                **({"creator": creator} if creator is not None else {}),
            )

        @event.listens_for(engine, "connect")
        def _configure(dbapi_conn: Any, _record: Any) -> None:
            # The driver's own transaction handling is off; begin() below sends BEGIN.
            dbapi_conn.isolation_level = None
            cursor = dbapi_conn.cursor()
            try:
                cursor.execute(f"PRAGMA busy_timeout = {busy_ms:d}")
                cursor.execute("PRAGMA synchronous = FULL")
                cursor.execute("PRAGMA foreign_keys = ON")
            finally:
                cursor.close()

        @event.listens_for(engine, "begin")
        def _begin(conn: Connection) -> None:
            # SQLAlchemy's documented recipe ("Serializable isolation / Savepoints /
            # Transactional DDL" for pysqlite): the driver's own BEGIN is off, this sends it.
            options = conn.get_execution_options()
            statement = options.get(BEGIN, "BEGIN")
            if statement:
                _retry_busy(lambda: conn.exec_driver_sql(statement), options.get(BEGIN_WAIT, wait))

        return engine

    def idle_options(self) -> dict[str, Any]:
        return {BEGIN: ""}

    def wait_for_commit(
        self,
        conn: Connection,
        ready: Callable[[], bool],
        deadline: float,
        stopped: Callable[[], bool],
        channel: str,
    ) -> bool:
        # PRAGMA data_version changes when another connection commits to the file, in this
        # process or another: a look costs no table read, so it can be taken often.
        def version() -> object:
            return conn.exec_driver_sql("PRAGMA data_version").scalar()

        seen = [version()]

        def pause(remaining: float) -> bool:
            time.sleep(min(remaining, SQLITE_WAIT_POLL))
            now = version()
            changed, seen[0] = now != seen[0], now
            return changed

        return _wait_until(ready, deadline, stopped, pause)

    def transaction_options(self, *, write: bool, snapshot: bool) -> dict[str, Any]:
        if write:
            return {BEGIN: "BEGIN IMMEDIATE"}
        # WAL reads are snapshots: a read of several statements opens a transaction so that
        # they all see the same data; a one-statement read is one already.
        return {BEGIN: "BEGIN" if snapshot else ""}

    def prepare(self, engine: Engine) -> None:
        if self.memory or self.read_only:
            return
        # WAL: readers never block the writer (and FULL above: a commit survives power loss).
        # Switched only once the schema check has accepted the file, so a refused file is
        # left byte for byte as it was. The mode is stored in the file: one switch serves all.
        with engine.connect() as conn:
            conn.execution_options(**{BEGIN: ""})  # the mode cannot change inside a transaction
            if conn.exec_driver_sql("PRAGMA journal_mode").scalar() != "wal":
                # Connections switching a new file at once get SQLITE_BUSY straight away,
                # not after the busy handler: retry, as for BEGIN.
                wait = self.options.busy_timeout
                _retry_busy(lambda: conn.exec_driver_sql("PRAGMA journal_mode = WAL"), wait)
            conn.commit()

    def interrupt(self, conn: Connection) -> None:
        raw = conn.connection.driver_connection
        if raw is not None:
            raw.interrupt()  # sqlite3 documents it as callable from another thread

    def explain(self, exc: BaseException) -> str | None:
        if not self.read_only or not _is_code(exc, SQLITE_READONLY, SQLITE_CANTOPEN):
            return None
        return (
            "this user may not write the database or its folder; SQLite reads a WAL database in "
            "such a folder only while its -wal and -shm files exist (the writing process has it "
            "open): make the folder writable for this user, or read a copy made by "
            "`vibecc-state backup`"
        )


class PostgresDialect(Dialect):
    name = "postgresql"

    def create_engine(self) -> Engine:
        options = self.options
        connect_args: dict[str, Any] = {
            "connect_timeout": max(1, int(options.connect_timeout)),
            "application_name": "vibecc-state-store",
            # Sent when connecting, so it wins over PGCLIENTENCODING and database or role
            # defaults before anything is read (SQLAlchemy's first query included).
            "client_encoding": "utf8",
        }
        if options.statement_timeout is not None:
            connect_args["options"] = f"-c statement_timeout={int(options.statement_timeout * 1000):d}"
        refused: StateStoreError | None = None
        try:
            engine = create_engine(
                self.url,
                pool_size=options.pool_size,
                max_overflow=options.max_overflow,
                pool_timeout=options.pool_timeout,
                connect_args=connect_args,
            )
        except ImportError:
            refused = StorageError(
                "PostgreSQL needs the psycopg driver: pip install 'vibecc-state-store[postgres]'"
            )
        except (ArgumentError, ValueError):
            # e.g. ?port=abc. Raised outside this handler: SQLAlchemy's message quotes the
            # value, which may be a password, and must not even be the error's context.
            refused = ValidationError(
                "db_path is not a valid PostgreSQL URL (a query parameter SQLAlchemy refuses)"
            )
        if refused is not None:
            raise refused

        # SQLAlchemy's documented recipe for session settings on connect (see "Setting
        # Alternate Search Paths on Connect"); inserted first so it runs before anything else.
        @event.listens_for(engine, "connect", insert=True)
        def _utc(dbapi_conn: Any, _record: Any) -> None:
            # Every session in UTC, whatever the server's default or the client's PGTZ: a
            # timestamp near year 1 or 9999 that is valid in UTC may not exist in another
            # zone, and psycopg hands out datetimes in the session's zone.
            # DateStyle and IntervalStyle likewise: the driver parses ISO output only, and a
            # database, role or PGDATESTYLE default may say otherwise.
            autocommit = dbapi_conn.autocommit
            dbapi_conn.autocommit = True
            cursor = dbapi_conn.cursor()
            try:
                cursor.execute(_SESSION_SETTINGS)
            finally:
                cursor.close()
                dbapi_conn.autocommit = autocommit

        return engine

    drops_connections = True

    def transaction_options(self, *, write: bool, snapshot: bool) -> dict[str, Any]:
        if snapshot:
            return {"isolation_level": "REPEATABLE READ"}
        # A read whose statements may each see their own commits is a statement per
        # transaction anyway: in autocommit it costs one round trip each, not a BEGIN and a
        # COMMIT more (SQLAlchemy's documented DBAPI autocommit, set at checkout, reset at return).
        return {} if write else {"isolation_level": "AUTOCOMMIT"}

    def idle_options(self) -> dict[str, Any]:
        # Outside a transaction: a session inside one gets its notifications only at its end.
        return {"isolation_level": "AUTOCOMMIT"}

    def wait_for_commit(
        self,
        conn: Connection,
        ready: Callable[[], bool],
        deadline: float,
        stopped: Callable[[], bool],
        channel: str,
    ) -> bool:
        # Writers notify `channel` in their transaction, so the notification arrives at their
        # commit. It is only a wake-up: the fallback look every PG_WAIT_POLL finds a commit
        # whose notification was missed, or a server (a transaction-mode pooler) that
        # delivers none. LISTEN comes before the first look, so no commit falls between.
        raw = conn.connection.driver_connection
        if raw is None:  # pragma: no cover (a checked-out connection always has one)
            raise StorageError("the connection was closed while waiting")
        conn.exec_driver_sql(f"LISTEN {channel}")

        def pause(remaining: float) -> bool:
            for _ in raw.notifies(timeout=min(remaining, PG_WAIT_POLL), stop_after=1):
                pass
            return True

        try:
            passed = _wait_until(ready, deadline, stopped, pause)
        except BaseException:
            # Interrupted inside the driver's wait (Ctrl-C): the connection's state is not
            # known, so it is dropped rather than asked to UNLISTEN.
            conn.invalidate()
            raise
        conn.exec_driver_sql(f"UNLISTEN {channel}")
        return passed

    def interrupt(self, conn: Connection) -> None:
        raw = conn.connection.driver_connection
        if raw is not None:
            raw.cancel()  # psycopg sends a cancel request on its own connection to the server

    def lock_for_copy(self, conn: Connection) -> None:
        # Conflicts with itself and with every writer of these tables, not with readers: a
        # second copy waits, then finds the target no longer empty, and an import, archive or
        # create into the target waits until the copy is committed and verified.
        conn.execute(
            text(
                "LOCK TABLE projects, pipelines, pipeline_history, deleted_projects, history_stats, "
                "pipeline_transitions, stage_histogram, stage_totals, duration_histogram "
                "IN SHARE ROW EXCLUSIVE MODE"
            )
        )


def _wait_until(
    ready: Callable[[], bool],
    deadline: float,
    stopped: Callable[[], bool],
    pause: Callable[[float], bool],
) -> bool:
    """Look with ready() at once and after each pause(remaining seconds) that says something
    may have changed; False at the deadline or once stopped()."""
    while not ready():
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0 or stopped():
                return False
            if pause(remaining):
                break
    return True


def upsert(dialect_name: str, table: Table) -> Upsert:
    """INSERT with the ON CONFLICT clauses of the named engine (SQLite and PostgreSQL share them)."""
    return sqlite.insert(table) if dialect_name == "sqlite" else postgresql.insert(table)


@contextmanager
def migration_lock(engine: Engine, sqlite_wait: float) -> Iterator[Connection]:
    """A connection in a transaction that no other process migrating this database can enter:
    SQLite's write lock (BEGIN IMMEDIATE) or a PostgreSQL advisory lock, held until commit."""
    with engine.connect() as conn:
        if conn.dialect.name != "sqlite":
            with conn.begin():
                conn.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": _PG_MIGRATION_LOCK})
                yield conn
            return
        # Rebuilding a table that others reference needs foreign keys off, and the pragma only
        # takes effect outside a transaction: it runs with no BEGIN before it.
        conn.execution_options(**{BEGIN: ""})
        conn.exec_driver_sql("PRAGMA foreign_keys = OFF")
        conn.commit()
        try:
            conn.execution_options(**{BEGIN: "BEGIN IMMEDIATE", BEGIN_WAIT: sqlite_wait})
            with conn.begin():
                yield conn
                broken = conn.exec_driver_sql("PRAGMA foreign_key_check").all()
                if broken:
                    raise SchemaVersionError(f"migration left broken foreign keys: {broken[:5]}")
        finally:
            if not conn.invalidated:
                conn.execution_options(**{BEGIN: ""})
                conn.exec_driver_sql("PRAGMA foreign_keys = ON")
                conn.commit()


def dialect_for(url: URL, options: EngineOptions) -> Dialect:
    return (
        SQLiteDialect(url, options) if url.get_backend_name() == "sqlite" else PostgresDialect(url, options)
    )


def is_busy(exc: BaseException) -> bool:
    """True for SQLite's "database is locked" family (SQLITE_BUSY / SQLITE_LOCKED and extended codes)."""
    return _is_code(exc, SQLITE_BUSY, SQLITE_LOCKED)


def _is_code(exc: BaseException, *primary: int) -> bool:
    """True when a SQLite error's primary result code is one of `primary`."""
    orig = getattr(exc, "orig", exc)
    code = getattr(orig, "sqlite_errorcode", None)
    return isinstance(code, int) and code & 0xFF in primary


def _retry_busy(action: Any, timeout: float) -> None:
    """Run `action`, retrying on SQLITE_BUSY the busy handler did not absorb, up to `timeout`."""
    deadline = time.monotonic() + timeout
    delay = 0.001
    while True:
        try:
            action()
            return
        except (DBAPIError, sqlite3.Error) as exc:
            if not is_busy(exc) or time.monotonic() + delay > deadline:
                raise
        time.sleep(delay)
        delay = min(delay * 2, 0.05)
