"""What every command of the command-line tool shares: the selected database, output in
tables or JSON, date arguments, progress bars and the error type that carries an exit code."""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any, Protocol

import click
from rich.console import Console
from sqlalchemy import Engine
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import ArgumentError, DBAPIError, SQLAlchemyError

from .engine import EngineOptions, describe, dialect_for, mask, to_url
from .errors import StorageError, ValidationError
from .records import PipelineState, Project
from .store import StateStore

DEFAULT_DB = "vibecc.db"


class Advance(Protocol):
    """Move a progress bar on by `n` (and set its total once that is known)."""

    def __call__(self, n: int, total: int | None = None) -> None: ...


class CommandFailed(click.ClickException):
    """A failure the tool reports in one line on stderr; exit code 1."""


class BadInput(CommandFailed):
    """Bad usage or input; exit code 2."""

    exit_code = 2


class NotFound(CommandFailed):
    """What was asked for does not exist; exit code 3."""

    exit_code = 3


def failure(message: str, exit_code: int) -> CommandFailed:
    """The CommandFailed of that exit code (1, 2 or 3)."""
    return {2: BadInput, 3: NotFound}.get(exit_code, CommandFailed)(message)


@dataclass
class Env:
    """The database the command works on, opened on first use and closed at exit."""

    db: str
    debug: bool = False
    _store: StateStore | None = field(default=None, repr=False)
    _engine: Engine | None = field(default=None, repr=False)

    @property
    def url(self) -> URL:
        """--db as a URL.

        Raises:
            ValidationError: the library refuses it (an unsupported database, say).
            BadInput: it cannot be parsed (a port that is not a number, say), for which
                make_url raises ArgumentError or a plain ValueError.
        """
        try:
            return to_url(self.db)
        except ValidationError:
            raise
        except (ArgumentError, ValueError):
            # Not the URL itself: make_url's message may quote it, password and all.
            raise BadInput("--db is not a valid database URL (is the port a number?)") from None

    @property
    def where(self) -> str:
        """The database for messages: host and name or path, never a password."""
        return describe(self.url)

    @property
    def shown(self) -> str:
        """--db as given, with any password masked."""
        return mask(self.db) if "://" in self.db else self.db

    @property
    def password(self) -> str | None:
        """The password in --db, to keep it out of messages; None when there is none.

        Never raises: it is looked up while another error is being reported.
        """
        if "://" not in self.db:
            return None
        try:
            secret = make_url(self.db).password
        except (ArgumentError, ValueError):  # unparseable: nothing was taken as a password
            return None
        return str(secret) if secret else None

    def store(self, *, create: bool = False) -> StateStore:
        """The store; only commands that write (create=True) create or upgrade a database."""
        if self._store is None:
            self._require_existing(create)
            self._store = StateStore(self.url, auto_migrate=create)
        return self._store

    def engine(self, *, create: bool = False) -> Engine:
        """A plain engine that never migrates on its own, for the `db` commands."""
        if self._engine is None:
            self._require_existing(create)
            self._engine = dialect_for(self.url, EngineOptions()).create_engine()
        return self._engine

    def _require_existing(self, create: bool) -> None:
        url = self.url
        if create or url.get_backend_name() != "sqlite" or not url.database:
            return
        if not Path(url.database).is_file():
            raise StorageError(
                f"no SQLite database at {url.database} (select one with --db or VIBECC_DATABASE_URL; "
                "`vibecc-state db upgrade` creates a new one)"
            )

    def close(self) -> None:
        if self._store is not None:
            self._store.close()
        if self._engine is not None:
            self._engine.dispose()


pass_env = click.make_pass_decorator(Env)
json_option = click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")


@contextmanager
def storage_errors(env: Env) -> Iterator[None]:
    """Report database errors of the raw engine (db commands) like the store does."""
    try:
        yield
    except SQLAlchemyError as exc:
        orig = exc.orig if isinstance(exc, DBAPIError) and exc.orig is not None else exc
        lines = str(orig).strip().splitlines()
        raise StorageError(f"{env.where}: {lines[0] if lines else type(orig).__name__}") from exc


# -- output ----------------------------------------------------------------------------------

PIPE_WIDTH = 120


def console() -> Console:
    """A console on the current stdout (looked up per call, so tests can capture it).

    Off a terminal (and without COLUMNS set), tables get room enough that names and titles
    come out whole rather than cut to the 80 columns rich assumes for a pipe.
    """
    chosen = sys.stdout.isatty() or "COLUMNS" in os.environ
    return Console(file=sys.stdout, highlight=False, width=None if chosen else PIPE_WIDTH)


def stderr_is_terminal() -> bool:
    return sys.stderr.isatty()


def emit_json(data: Any) -> None:
    click.echo(json.dumps(data, indent=2, ensure_ascii=False))


@contextmanager
def progress(description: str, total: int | None) -> Iterator[Advance]:
    """A progress bar on stderr when stderr is a terminal; silent otherwise."""
    if not stderr_is_terminal():
        yield _ignore
        return
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    bar = Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=Console(stderr=True, force_terminal=True),
        redirect_stdout=False,
        redirect_stderr=False,
        transient=True,
    )
    with bar:
        task = bar.add_task(description, total=total)

        def advance(n: int, total: int | None = None) -> None:
            bar.update(task, advance=n, total=total)

        yield advance


def _ignore(n: int, total: int | None = None) -> None:
    return None


def iso(moment: datetime | None) -> str | None:
    """ISO-8601 in UTC with an explicit +00:00 offset, the one format of every JSON output."""
    return None if moment is None else moment.astimezone(UTC).isoformat()


# -- arguments -------------------------------------------------------------------------------


class UTCDateTime(click.ParamType[datetime, Any]):
    """YYYY-MM-DD (midnight UTC) or a full ISO-8601 timestamp; naive means UTC."""

    name = "DATE"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> datetime:
        if isinstance(value, datetime):
            return value if value.tzinfo else value.replace(tzinfo=UTC)
        try:
            if len(value) == 10:
                day = date.fromisoformat(value)
                return datetime(day.year, day.month, day.day, tzinfo=UTC)
            moment = datetime.fromisoformat(value)
        except (TypeError, ValueError):
            self.fail(f"{value!r} is not a date (YYYY-MM-DD) or an ISO-8601 timestamp", param, ctx)
        try:
            return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)
        except OverflowError:  # 0001-01-01T00:00+05:00 is before the first moment in UTC
            self.fail(f"{value!r} is out of the range of dates", param, ctx)


DATE = UTCDateTime()
STATE = click.Choice([s.value for s in PipelineState], case_sensitive=False)
since_option = click.option("--since", type=DATE, help="Only what completed at or after DATE.")
until_option = click.option("--until", type=DATE, help="Only what completed before DATE.")
project_option = click.option("--project", "project_ref", metavar="REPO|ID", help="Only this project.")


MAX_DAYS = 36_500
"""The longest span in days an option takes (about a century)."""


def days_ago(days: int) -> datetime:
    """Now minus `days` days. Raises BadInput when that is before the first representable date."""
    try:
        return datetime.now(UTC) - timedelta(days=days)
    except OverflowError:
        raise BadInput(f"{days} days ago is out of the range of dates") from None


def find_project(store: StateStore, ref: str) -> Project:
    """A project by repo ("owner/name") or by id. Raises ProjectNotFoundError."""
    return store.get_project_by_repo(ref) if "/" in ref else store.get_project(ref)


def project_id(store: StateStore, ref: str | None) -> str | None:
    return None if ref is None else find_project(store, ref).id


def repos(store: StateStore) -> dict[str, str]:
    """project id -> repo, for showing history and pipelines by repo."""
    return {p.id: p.repo for p in store.list_projects()}
