"""StateStore: the public API. Each public call is one transaction; database errors are
translated into StateStoreError subclasses here and nowhere else."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager
from threading import Condition, RLock
from typing import Any

from sqlalchemy import Connection
from sqlalchemy.engine import URL
from sqlalchemy.exc import DBAPIError, SQLAlchemyError

from . import migrate
from . import validation as check
from .base import CLEAR, UNSET, StoreBase
from .engine import ConnectionCache, EngineOptions, dialect_for
from .errors import StateStoreError, StorageError, ValidationError
from .history import HistoryMixin
from .pipelines import PipelinesMixin
from .projects import ProjectsMixin
from .urls import describe, mask, to_url

__all__ = ["CLEAR", "UNSET", "StateStore"]

_CLOSE_GRACE = 1.0
"""Seconds close() lets other threads' calls finish before it interrupts them."""


class StateStore(ProjectsMixin, PipelinesMixin, HistoryMixin, StoreBase):
    """Projects, active pipelines and their history in one SQLite file or PostgreSQL database.

    Args:
        db_path: a filesystem path (parent folders are created), ":memory:", or an
            SQLAlchemy URL (``sqlite:///...``, ``postgresql+psycopg://...``).
        auto_migrate: upgrade an older schema on open; when False an older schema raises
            SchemaVersionError instead.
        pool_size, max_overflow, pool_timeout: the connection pool.
        connect_timeout: seconds to wait for a PostgreSQL connection.
        busy_timeout: seconds a write waits for SQLite's write lock before StorageError (first
            behind this process's other writers, then behind other processes: up to twice this).
        statement_timeout: seconds a PostgreSQL statement may run (None: no limit).

    One instance may be shared by many threads.

    Raises:
        StorageError: the database cannot be opened.
        SchemaVersionError: the schema is ahead of this code, or behind it with auto_migrate=False.
    """

    def __init__(
        self,
        db_path: str | os.PathLike[str] | URL = "vibecc.db",
        *,
        auto_migrate: bool = True,
        pool_size: int = 5,
        max_overflow: int = 10,
        pool_timeout: float = 30.0,
        connect_timeout: float = 10.0,
        busy_timeout: float = 10.0,
        statement_timeout: float | None = None,
    ) -> None:
        self._closed = True
        self._disposed = True
        self._calls = 0
        self._in_flight: set[Connection] = set()
        self._calls_done = Condition()
        url = to_url(db_path)
        options = EngineOptions(
            pool_size=check.integer("pool_size", pool_size, minimum=1, maximum=1000),
            max_overflow=check.integer("max_overflow", max_overflow, minimum=0, maximum=1000),
            pool_timeout=_seconds("pool_timeout", pool_timeout),
            connect_timeout=_seconds("connect_timeout", connect_timeout),
            busy_timeout=_seconds("busy_timeout", busy_timeout),
            statement_timeout=None
            if statement_timeout is None
            else _seconds("statement_timeout", statement_timeout),
        )
        self._url = url
        self._dialect = dialect_for(url, options)
        self._engine = self._dialect.create_engine()
        self._connections = ConnectionCache(self._engine, self._dialect.max_idle)
        # The driver's own errors too: BEGIN and COMMIT go to the driver directly.
        self._database_errors = (SQLAlchemyError, OSError, self._engine.dialect.loaded_dbapi.Error)
        self._closed = self._disposed = False
        try:
            with self._translate():
                migrate.ensure_schema(self._engine, auto_migrate=auto_migrate)
                self._dialect.prepare(self._engine)
        except BaseException:
            self.close()
            raise

    # -- lifecycle -------------------------------------------------------------------------

    @property
    def url(self) -> str:
        """The database URL with any password masked."""
        return mask(self._url)

    @property
    def dialect(self) -> str:
        """ "sqlite" or "postgresql"."""
        return self._dialect.name

    def close(self) -> None:
        """Close every connection; later calls raise StorageError.

        Calls other threads are making meanwhile are interrupted when they do not finish
        within a moment (they raise StorageError; what they had not committed is rolled back),
        and close returns only once each of them has closed its connection: afterwards no
        file handle or server session of this store stays open.
        """
        with self._calls_done:
            if self._closed:
                # Another thread is closing (or has closed) it: return when that is done too.
                self._calls_done.wait_for(lambda: self._disposed)
                return
            self._closed = True
            if not self._calls_done.wait_for(lambda: not self._calls, timeout=_CLOSE_GRACE):
                for conn in self._in_flight:
                    self._dialect.interrupt(conn)
                self._calls_done.wait_for(lambda: not self._calls)
        try:
            self._connections.clear(closing=True)
            self._engine.dispose()
        finally:
            with self._calls_done:
                self._disposed = True
                self._calls_done.notify_all()

    def __enter__(self) -> StateStore:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"StateStore({self.url!r})"

    # -- transactions ----------------------------------------------------------------------

    @contextmanager
    def _translate(self) -> Iterator[None]:
        """Turn any database error escaping the block into StorageError."""
        try:
            yield
        except StateStoreError:
            raise
        except self._database_errors as exc:
            raise self._storage_error(exc) from exc

    def _storage_error(self, exc: BaseException) -> StorageError:
        """The StorageError for a database error: which database, the driver's first line, and
        what to do about it when the engine knows."""
        hint = self._dialect.explain(exc)
        return StorageError(f"{describe(self._url)}: {_reason(exc)}" + (f" ({hint})" if hint else ""))

    def _read(self, *, snapshot: bool = False) -> AbstractContextManager[Connection]:
        """A read transaction; with snapshot=True every statement in it sees the same data."""
        return self._transaction(self._dialect.read_lock, write=False, snapshot=snapshot)

    def _write(self) -> AbstractContextManager[Connection]:
        """A write transaction; on SQLite it holds the database's write lock from the start."""
        return self._transaction(self._dialect.write_lock, write=True, snapshot=False)

    @contextmanager
    def _transaction(self, lock: RLock | None, *, write: bool, snapshot: bool) -> Iterator[Connection]:
        # One generator, not nested context managers: this runs around every call.
        with self._calls_done:
            if self._closed:
                raise StorageError(f"{describe(self._url)}: the store is closed")
            self._calls += 1
        busy = self._dialect.options.busy_timeout
        # A snapshot that needs another isolation level (PostgreSQL) gets a connection of its
        # own, which the pool resets on return; SQLite's WAL reads are snapshots anyway.
        options = self._dialect.read_options(snapshot)
        locked = False
        conn: Connection | None = None
        try:
            if lock is not None:
                locked = lock.acquire(timeout=busy)
                if not locked:
                    raise StorageError(f"{describe(self._url)} is locked: no write slot within {busy:g} s")
            if options:
                conn = self._engine.connect().execution_options(**options)
            else:
                conn = self._connections.take()
            with self._calls_done:
                if self._closed:  # closed while this call waited for a lock or a connection
                    raise StorageError(f"{describe(self._url)}: the store is closed")
                self._in_flight.add(conn)
            self._dialect.begin(conn, write=write)
            yield conn
            _commit(conn)
        except BaseException as exc:
            if conn is not None:
                _rollback(conn)
            if isinstance(exc, StateStoreError) or not isinstance(exc, self._database_errors):
                raise
            if self._closed:
                raise StorageError(f"{describe(self._url)}: the store was closed during the call") from exc
            raise self._storage_error(exc) from exc
        finally:
            if conn is not None:
                self._release(conn, cached=not options)
            if locked:
                assert lock is not None
                lock.release()
            with self._calls_done:
                self._calls -= 1
                self._calls_done.notify_all()

    def _release(self, conn: Connection, *, cached: bool) -> None:
        """Hand a finished call's connection back, or close it for good once the store is closed."""
        with self._calls_done:
            self._in_flight.discard(conn)
            closing = self._closed
        if closing:
            conn.invalidate()  # closes the driver connection now, not when the pool is collected
            conn.close()
        elif cached and not conn.invalidated:
            self._connections.give(conn)
        else:
            conn.close()


def _commit(conn: Connection) -> None:
    """Commit what SQLAlchemy began and what ran on the driver directly (compiled.py)."""
    if conn.in_transaction():
        conn.commit()
    raw = conn.connection.driver_connection
    assert raw is not None
    raw.commit()


def _rollback(conn: Connection) -> None:
    """Roll back a failed call's transaction, on SQLAlchemy's side and the driver's; a
    connection that cannot even roll back is dropped from the pool."""
    try:
        if conn.in_transaction():
            conn.rollback()
        raw = conn.connection.driver_connection
        if raw is not None:
            raw.rollback()
    except Exception:  # the connection is broken: the pool must not hand it out again
        conn.invalidate()


def _seconds(field: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0 < value <= 86400:
        raise ValidationError(f"{field} must be a number of seconds in (0, 86400], got {value!r}")
    return float(value)


def _reason(exc: BaseException) -> str:
    """The first line of the driver's message, without SQLAlchemy's SQL and parameter dump."""
    orig = exc.orig if isinstance(exc, DBAPIError) and exc.orig is not None else exc
    text = str(orig).strip().splitlines()
    return text[0] if text else type(orig).__name__
