"""Run a prebuilt statement on the driver: SQLAlchemy compiles it once per engine, the call
then costs one driver execute.

SQLAlchemy's own execution path does far more per statement (execution context, events,
result objects) than a single-row write on SQLite costs; the calls the orchestrator makes on
every ticket run through here. Parameters and results go through the column types' own bind
and result processors, and a statement's driver errors come out as SQLAlchemy's exception
classes (a lost connection invalidated, as SQLAlchemy would), so everything above this module
sees the same values and errors either way. BEGIN and COMMIT also go to the driver directly
(engine.sqlite_begin, store._commit); the store translates their driver errors itself.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, cast

from sqlalchemy import Connection, Dialect
from sqlalchemy.exc import DBAPIError
from sqlalchemy.sql.compiler import SQLCompiler
from sqlalchemy.sql.expression import ClauseElement, Executable

Processor = Callable[[Any], Any]
_REQUIRED = object()


class Compiled:
    """One statement compiled for one dialect, with its parameter and result handling."""

    __slots__ = ("params", "positional", "results", "sql")

    def __init__(self, statement: Executable, dialect: Dialect) -> None:
        compiled = cast(ClauseElement, statement).compile(dialect=dialect)
        assert isinstance(compiled, SQLCompiler)
        self.sql = compiled.string
        self.positional = compiled.positional
        by_name = {name: bind for bind, name in compiled.bind_names.items()}
        order = compiled.positiontup if compiled.positional else list(by_name)
        assert order is not None
        self.params: list[tuple[str, Any, Processor | None]] = []
        for name in order:
            bind = by_name[name]
            if bind.expanding:
                raise ValueError(f"expanding parameter {name!r} cannot be run on the driver directly")
            default = _REQUIRED if bind.required or bind.callable else bind.effective_value
            self.params.append((name, default, bind.type.dialect_impl(dialect).bind_processor(dialect)))
        self.results = [
            (i, processor)
            for i, column in enumerate(compiled._result_columns)
            if (processor := column[3].dialect_impl(dialect).result_processor(dialect, None)) is not None
        ]

    def arguments(self, given: Mapping[str, Any]) -> tuple[Any, ...] | dict[str, Any]:
        values = []
        for name, default, processor in self.params:
            value = given.get(name, default)
            if value is _REQUIRED:
                raise KeyError(f"statement needs parameter {name!r}")
            values.append(value if processor is None else processor(value))
        if self.positional:
            return tuple(values)
        return dict(zip((name for name, _, _ in self.params), values, strict=True))


_CACHE: dict[tuple[int, str], tuple[Executable, Compiled]] = {}


def _compiled(statement: Executable, dialect: Dialect) -> Compiled:
    key = (id(statement), dialect.name)
    found = _CACHE.get(key)
    if found is None:
        # The entry holds the statement itself, so its id() can never be handed to another
        # object while the entry exists (a builder racing another thread may make a
        # statement that is used once and then only kept alive here).
        found = _CACHE[key] = (statement, Compiled(statement, dialect))
    return found[1]


def rows(conn: Connection, statement: Executable, params: Mapping[str, Any]) -> list[list[Any]]:
    """All rows the statement returns, as lists of processed values."""
    compiled = _compiled(statement, conn.dialect)
    cursor = _execute(conn, compiled, params)
    try:
        fetched = [list(row) for row in cursor.fetchall()]
    finally:
        cursor.close()
    for row in fetched:
        for i, processor in compiled.results:
            row[i] = processor(row[i])
    return fetched


def first(conn: Connection, statement: Executable, params: Mapping[str, Any]) -> list[Any] | None:
    """The first row, or None."""
    found = rows(conn, statement, params)
    return found[0] if found else None


def scalar(conn: Connection, statement: Executable, params: Mapping[str, Any]) -> Any:
    """The first column of the first row, or None when there is no row."""
    row = first(conn, statement, params)
    return None if row is None else row[0]


def execute(conn: Connection, statement: Executable, params: Mapping[str, Any]) -> int:
    """Run a statement that returns no rows; the number of rows it changed."""
    cursor = _execute(conn, _compiled(statement, conn.dialect), params)
    try:
        return int(cursor.rowcount)
    finally:
        cursor.close()


def _execute(conn: Connection, compiled: Compiled, params: Mapping[str, Any]) -> Any:
    raw = conn.connection.driver_connection
    assert raw is not None
    arguments = compiled.arguments(params)
    dbapi = conn.dialect.loaded_dbapi
    cursor = raw.cursor()
    try:
        cursor.execute(compiled.sql, arguments)
    except dbapi.Error as exc:
        cursor.close()
        lost = conn.dialect.is_disconnect(exc, conn.connection.dbapi_connection, None)
        if lost:
            conn.invalidate(exc)
        raise DBAPIError.instance(
            compiled.sql,
            None,
            exc,
            dbapi.Error,
            hide_parameters=True,
            connection_invalidated=lost,
            dialect=conn.dialect,
        ) from exc
    return cursor
