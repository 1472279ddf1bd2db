"""Database: one store's engine, and the one way a call runs: in a transaction of its own.

A call hands `read` or `write` a function of a connection. The function runs inside a
transaction begun, committed and rolled back through SQLAlchemy; every statement goes through
SQLAlchemy's execution, so engine events, `echo` and instrumentation see all of them. Any
database error comes out translated by errors.translate.

PostgreSQL connections are not pinged on checkout. A connection the server dropped while it
sat in the pool fails at its call's first statement: then, and only then (nothing of the call
ran, so nothing can have been committed), the call runs once more on a fresh connection.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from threading import Condition, RLock
from typing import TypeVar

from sqlalchemy import Connection, Engine, event
from sqlalchemy.engine import URL
from sqlalchemy.exc import DBAPIError, SQLAlchemyError

from ..errors import StateStoreError, StorageError, translate
from .dialects import EngineOptions, dialect_for
from .urls import describe
from .watch import CommitWatch

T = TypeVar("T")
Work = Callable[[Connection], T]

CLOSE_GRACE = 1.0
"""Seconds close() lets other threads' calls finish before it interrupts them."""
WAIT_POLL = 0.01
"""Seconds between looks at ":memory:" while waiting for a commit."""
PAUSE_SLICE = 0.05
"""Seconds between looks at whether the store was closed during a pause."""
_KINDS = ("write", "read", "snapshot", "idle")
"""Kinds of call: a write transaction, a read, a read in one snapshot, and a wait outside
any transaction."""


class Database:
    """The engine of one store, its calls in flight, and closing it."""

    def __init__(self, url: URL, options: EngineOptions) -> None:
        self.url = url
        self.where = describe(url)
        self._closed = True
        self._disposed = True
        self._calls = 0
        # Each call's connection, and whether a statement has run on it yet.
        self._in_flight: dict[Connection, bool] = {}
        self._calls_done = Condition()
        # Set once close() has waited CLOSE_GRACE: from then on no call runs another
        # statement or commits.
        self._interrupting = False
        self._local = threading.local()  # .calls: this thread's calls in progress (write flags)
        self._watch = CommitWatch()
        self.dialect = dialect_for(url, options)
        self.engine = self.dialect.create_engine()
        event.listen(self.engine, "before_cursor_execute", self._before_statement)
        if self.dialect.drops_connections:
            event.listen(self.engine, "after_cursor_execute", self._ran)
        self._errors = (SQLAlchemyError, OSError, self.engine.dialect.loaded_dbapi.Error)
        # One engine per kind of transaction, sharing the pool: Engine.execution_options sets
        # how its connections begin once, instead of on every call's connection.
        self._engines: dict[str, Engine] = {}
        for kind in _KINDS:
            begins = self.dialect.transaction_options(write=kind == "write", snapshot=kind == "snapshot")
            if kind == "idle":
                begins = self.dialect.idle_options()
            self._engines[kind] = self.engine.execution_options(**begins) if begins else self.engine
        self._closed = self._disposed = False

    @property
    def closed(self) -> bool:
        """True once close() has begun."""
        return self._closed

    # -- calls -----------------------------------------------------------------------------

    def read(self, work: Work[T], *, snapshot: bool = False) -> T:
        """Run `work` in a read transaction. Its statements may see different commits (READ
        COMMITTED on both engines) unless `snapshot`: then all see the same data."""
        return self._call(work, kind="snapshot" if snapshot else "read")

    def write(
        self,
        work: Work[T],
        *,
        unique: StateStoreError | None = None,
        foreign_key: StateStoreError | None = None,
    ) -> T:
        """Run `work` in a write transaction (on SQLite it holds the write lock from BEGIN);
        `unique` and `foreign_key` are raised when the call breaks such a constraint."""
        return self._call(work, kind="write", unique=unique, foreign_key=foreign_key)

    def wait(self, head: Work[int], cursor: int, timeout: float, channel: str, *, last: int) -> bool:
        """Wait until `head` (a read of the change log's last number) passes `cursor`, or
        `timeout` seconds pass (False; also when the store is being closed).

        `last` is the head read by this thread's latest call; the head is read again each
        time the engine tells of a commit by another connection (SQLite: PRAGMA data_version;
        PostgreSQL: a notification on `channel`) and at least every few hundred ms. One
        connection watches for all the threads of this store that wait (db/watch.py), outside
        any transaction, so waiters never take the pool from writers and hold back no cleanup
        or checkpoint. Heads are published with the time their read began, so a read that
        began earlier never replaces a later one's head (db/watch.py).
        """
        deadline = time.monotonic() + timeout
        self._watch.publish(last, self._local.__dict__.get("began", -math.inf))
        if last > cursor:
            return True
        try:
            if self.dialect.shared_connection:
                # ":memory:" is one connection for every thread: holding it would keep writers out.
                while True:
                    remaining = deadline - time.monotonic()
                    if remaining <= 0 or self._closed:
                        return False
                    time.sleep(min(remaining, WAIT_POLL))
                    if self._closed:
                        return False
                    if self._watch.publish(self.read(head), self._local.began) > cursor:
                        return True

            def watch(until: float) -> bool:
                def watching(conn: Connection) -> bool:
                    def passed() -> bool:
                        began = time.monotonic()
                        return self._watch.publish(head(conn), began) > cursor

                    return self.dialect.wait_for_commit(conn, passed, until, lambda: self._closed, channel)

                return self._call(watching, kind="idle")

            return self._watch.wait_past(cursor, deadline, lambda: self._closed, watch)
        except StorageError:
            if self._closed:  # a look close() refused or interrupted: the wait is over
                return False
            raise

    def pause(self, seconds: float) -> None:
        """Sleep `seconds`, or less when the store is closed meanwhile."""
        end = time.monotonic() + seconds
        while not self._closed and (remaining := end - time.monotonic()) > 0:
            time.sleep(min(remaining, PAUSE_SLICE))

    @contextmanager
    def translating(self) -> Iterator[None]:
        """Turn any database error escaping the block into a StateStoreError."""
        try:
            yield
        except self._errors as exc:
            raise self._translate(exc) from exc

    def _call(
        self,
        work: Work[T],
        *,
        kind: str,
        unique: StateStoreError | None = None,
        foreign_key: StateStoreError | None = None,
    ) -> T:
        write = kind == "write"
        outer: list[bool] = self._local.__dict__.setdefault("calls", [])
        self._local.began = time.monotonic()  # when this thread's latest call began (wait())
        if outer and (self.dialect.shared_connection or (write and any(outer))):
            # A callback (copy_store's progress) calling back into the store runs while this
            # thread's call is open: on the one shared connection of ":memory:" it would run
            # inside that call's transaction (and commit it), and a write would wait for the
            # write lock this thread holds itself. Reads on their own connection are fine.
            raise StorageError(
                f"{self.where}: a {'write' if write else 'call'} of the store was made from inside "
                "another of its calls (a progress callback); make it after that call returns"
            )
        with self._calls_done:
            if self._closed:
                raise StorageError(f"{self.where}: the store is closed")
            self._calls += 1
        outer.append(write)
        lock = self.dialect.write_lock if write else self.dialect.read_lock
        engine = self._engines[kind]
        try:
            try:
                return self._attempt(work, lock, engine, may_retry=True)
            except _Dropped:
                return self._attempt(work, lock, engine, may_retry=False)
        except self._errors as exc:
            if isinstance(exc, StateStoreError):
                raise
            if self._closed:
                raise StorageError(f"{self.where}: the store was closed during the call") from exc
            raise self._translate(exc, unique=unique, foreign_key=foreign_key) from exc
        finally:
            outer.pop()
            with self._calls_done:
                self._calls -= 1
                self._calls_done.notify_all()

    def _attempt(self, work: Work[T], lock: RLock | None, engine: Engine, *, may_retry: bool) -> T:
        locked = False
        conn: Connection | None = None
        try:
            if lock is not None:
                wait = self.dialect.options.busy_timeout
                locked = lock.acquire(timeout=wait)
                if not locked:
                    raise StorageError(f"{self.where} is locked: no write slot within {wait:g} s")
            conn = engine.connect()
            with self._calls_done:
                if self._closed:  # closed while this call waited for a lock or a connection
                    raise StorageError(f"{self.where}: the store is closed")
                self._in_flight[conn] = False
            transaction = conn.begin()
            try:
                result = work(conn)
                self._check_not_interrupted()
                transaction.commit()
            except BaseException as exc:
                _rollback(conn)
                dropped = isinstance(exc, DBAPIError) and exc.connection_invalidated
                ran = self._in_flight.get(conn, True)
                if may_retry and dropped and self.dialect.drops_connections and not ran:
                    raise _Dropped from exc  # before its first statement: nothing of the call ran
                raise
            return result
        finally:
            if conn is not None:
                self._release(conn)
            if locked:
                assert lock is not None  # noqa: S101 (narrows the type: locked means a lock was taken)
                lock.release()

    def _check_not_interrupted(self) -> None:
        if self._interrupting:
            raise StorageError(f"{self.where}: the store was closed during the call")

    def _before_statement(self, *_: object) -> None:
        # The engine's before_cursor_execute event: a call that close() has interrupted stops
        # at its next statement, whatever it is doing between statements.
        self._check_not_interrupted()

    def _ran(self, conn: Connection, *_: object) -> None:
        if conn in self._in_flight:
            self._in_flight[conn] = True

    def _release(self, conn: Connection) -> None:
        """Hand a finished call's connection back, or close it for good once the store is closed."""
        with self._calls_done:
            self._in_flight.pop(conn, None)
            closing = self._closed
        if closing:
            conn.invalidate()  # closes the driver connection now, not when the pool is collected
        conn.close()

    def _translate(
        self,
        exc: BaseException,
        *,
        unique: StateStoreError | None = None,
        foreign_key: StateStoreError | None = None,
    ) -> StateStoreError:
        return translate(
            exc, self.where, unique=unique, foreign_key=foreign_key, hint=self.dialect.explain(exc)
        )

    # -- closing ---------------------------------------------------------------------------

    def close(self) -> None:
        """Close every connection. Calls other threads are making meanwhile are interrupted
        when they do not finish within CLOSE_GRACE; close returns once each has closed its
        connection, so no file handle or server session stays open."""
        if self._local.__dict__.get("calls"):
            raise StorageError(
                f"{self.where}: close() was called from inside one of the store's calls (a "
                "progress callback); close the store after that call returns"
            )
        with self._calls_done:
            if self._closed:
                # Another thread is closing (or has closed) it: return when that is done too.
                self._calls_done.wait_for(lambda: self._disposed)
                return
            self._closed = True
            if not self._calls_done.wait_for(lambda: not self._calls, timeout=CLOSE_GRACE):
                self._interrupting = True
                for conn in list(self._in_flight):
                    self.dialect.interrupt(conn)
                self._calls_done.wait_for(lambda: not self._calls)
        try:
            self.engine.dispose()
        finally:
            with self._calls_done:
                self._disposed = True
                self._calls_done.notify_all()


class _Dropped(Exception):
    """A call's connection was dropped before its first statement ran: run the call again."""


def _rollback(conn: Connection) -> None:
    """Roll back a failed call's transaction; a connection that cannot even roll back is
    dropped, so the pool never hands it out again."""
    try:
        conn.rollback()
    except Exception:
        conn.invalidate()
