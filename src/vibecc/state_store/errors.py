"""The exception hierarchy: one base class, one subclass per failure."""

from __future__ import annotations


class StateStoreError(Exception):
    """Base class of every error the state store raises."""


class NotFoundError(StateStoreError):
    """A record that was asked for does not exist."""


class ProjectNotFoundError(NotFoundError):
    """No project has the given id or repo."""


class PipelineNotFoundError(NotFoundError):
    """No active pipeline has the given id, or the given project and ticket."""


class HistoryNotFoundError(NotFoundError):
    """No history record has the given id."""


class AlreadyExistsError(StateStoreError):
    """A record would duplicate one that exists."""


class ProjectExistsError(AlreadyExistsError):
    """A project with that repo exists already."""


class PipelineExistsError(AlreadyExistsError):
    """The project has an active pipeline for that ticket already."""


class ProjectHasActivePipelinesError(StateStoreError):
    """The project still has pipelines that are not finished."""


class StaleVersionError(StateStoreError):
    """The pipeline's stored version is not the expected one; nothing was written."""


class ValidationError(StateStoreError, ValueError):
    """An argument is not acceptable; nothing was written."""


class SchemaVersionError(StateStoreError):
    """The database schema is behind or ahead of this code."""


class TargetNotEmptyError(StateStoreError):
    """A copy was asked into a store that already holds data; nothing was written."""


class CopyVerificationError(StateStoreError):
    """A copy finished but the target does not hold exactly what the source holds."""


class CursorExpiredError(StateStoreError):
    """A change-log cursor points before the retained log (pruned) or beyond its end (the
    database was replaced): changes in between cannot be read, so resynchronise from the
    tables and read on from the cursor changes_since gives then."""


class StorageError(StateStoreError):
    """The database cannot do the work: locked, read-only, full, unreachable or damaged."""


class BackupExistsError(AlreadyExistsError):
    """The backup destination exists and replacing it was not asked for."""


# -- translating database errors -----------------------------------------------------------

# SQLite extended result codes and PostgreSQL SQLSTATEs of the violations a call can name.
_SQLITE_VIOLATIONS = {2067: "unique", 1555: "unique", 787: "foreign_key"}
_PG_VIOLATIONS = {"23505": "unique", "23503": "foreign_key"}


def violation(exc: BaseException) -> str | None:
    """Which constraint a database error broke ("unique", "foreign_key"), told by the
    SQLite extended result code or the PostgreSQL SQLSTATE, never by the message."""
    orig = _driver_error(exc)
    code = getattr(orig, "sqlite_errorcode", None)
    if isinstance(code, int):
        return _SQLITE_VIOLATIONS.get(code)
    sqlstate = getattr(orig, "sqlstate", None)
    return _PG_VIOLATIONS.get(sqlstate) if isinstance(sqlstate, str) else None


def translate(
    exc: BaseException,
    where: str,
    *,
    unique: StateStoreError | None = None,
    foreign_key: StateStoreError | None = None,
    hint: str | None = None,
) -> StateStoreError:
    """The StateStoreError to raise (from `exc`) for an error of the database at `where`.

    A StateStoreError stays as it is. A broken unique or foreign key constraint becomes the
    error the call names for it; anything else is a StorageError with the database's
    description, the first line of the driver's message (never SQLAlchemy's SQL and parameter
    dump) and, when the engine knows one, what to do about it.
    """
    if isinstance(exc, StateStoreError):
        return exc
    kind = violation(exc)
    if kind == "unique" and unique is not None:
        return unique
    if kind == "foreign_key" and foreign_key is not None:
        return foreign_key
    return StorageError(f"{where}: {reason(exc)}" + (f" ({hint})" if hint else ""))


def reason(exc: BaseException) -> str:
    """The first line of the driver's message for a database error."""
    orig = _driver_error(exc)
    lines = str(orig).strip().splitlines()
    # SQLAlchemy's own errors (a pool timeout) end with a link to its documentation.
    first = lines[0].partition(" (Background on this error at:")[0] if lines else ""
    return first or type(orig).__name__


def _driver_error(exc: BaseException) -> BaseException:
    # SQLAlchemy's DBAPIError wraps the driver's exception as .orig; errors.py names no
    # SQLAlchemy class, so that every module can import it.
    orig = getattr(exc, "orig", None)
    return orig if isinstance(orig, BaseException) else exc
