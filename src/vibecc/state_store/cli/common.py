"""What every command of the command-line tool shares: the selected database (opened without
ever creating or migrating it unless the command may), command groups, the errors that carry
an exit code, confirmation, and output that never lets stored text drive the terminal."""

from __future__ import annotations

import functools
import json
import os
import re
import shlex
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import click
from rich.console import Console
from sqlalchemy import Engine, inspect
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import ArgumentError, SQLAlchemyError

from .. import migrate
from ..db.dialects import EngineOptions, dialect_for
from ..db.urls import describe, mask, to_url
from ..errors import SchemaVersionError, StorageError, ValidationError, translate
from ..store import StateStore
from .formatting import one_line, plain

DEFAULT_DB = "vibecc.db"
PROG = "vibecc-state"

# -- errors ----------------------------------------------------------------------------------


class CommandFailed(click.ClickException):
    """A failure reported in one line on stderr, every control character escaped; exit code 1."""

    def format_message(self) -> str:
        return one_line(self.message)


class BadInput(CommandFailed):
    """Bad usage or input; exit code 2."""

    exit_code = 2


class NotFound(CommandFailed):
    """What was asked for does not exist; exit code 3."""

    exit_code = 3


class Interrupted(CommandFailed):
    """Ctrl-C; exit code 130 like a shell's, the message says what was already committed."""

    exit_code = 130


def failure(message: str, exit_code: int) -> CommandFailed:
    """The CommandFailed of that exit code (1, 2, 3 or 130)."""
    return {2: BadInput, 3: NotFound, 130: Interrupted}.get(exit_code, CommandFailed)(message)


def interrupted(exc: BaseException) -> bool:
    """True when Ctrl-C caused `exc`: a KeyboardInterrupt, or an error raised while one was
    being handled (a driver error of the rollback that followed it, say)."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        if isinstance(current, KeyboardInterrupt):
            return True
        seen.add(id(current))
        current = current.__cause__ or current.__context__
    return False


# -- command groups --------------------------------------------------------------------------


class Group(click.Group):
    """A command group that, run without a subcommand, prints its help on stdout and exits 0."""

    def __init__(self, name: str | None = None, commands: Any = None, **attrs: Any) -> None:
        attrs["invoke_without_command"] = True
        super().__init__(name, commands, **attrs)
        self.callback = _help_without_subcommand(self.callback)


def _help_without_subcommand(callback: Callable[..., Any] | None) -> Callable[..., Any]:
    def run(*args: Any, **kwargs: Any) -> Any:
        ctx = click.get_current_context()
        if ctx.invoked_subcommand is None:
            click.echo(ctx.get_help(), color=ctx.color)
            ctx.exit(0)
        return None if callback is None else callback(*args, **kwargs)

    return run if callback is None else functools.wraps(callback)(run)


# -- the database ----------------------------------------------------------------------------

_POSTGRES_SCHEME = re.compile(r"^postgres(?=[+:])", re.IGNORECASE)


@dataclass
class Env:
    """The database the command works on, opened on first use and closed at exit.

    `explicit` is True when --db was given on the command line (not taken from the
    environment or the default): only then may `import` create a new store.
    """

    db: str
    debug: bool = False
    explicit: bool = False
    secrets: list[str] = field(default_factory=list, repr=False)
    """Passwords of other databases the command named (copy --to), kept out of messages."""
    _store: StateStore | None = field(default=None, repr=False)
    _engine: Engine | None = field(default=None, repr=False)
    _created: list[Path] = field(default_factory=list, repr=False)

    @property
    def url(self) -> URL:
        """--db as a URL. Raises BadInput when it is not a path or URL the store accepts."""
        return database_url(self.db, "--db")

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
        return password_of(self.db)

    def command(self, rest: str) -> str:
        """`vibecc-state [--db DB] REST` to suggest in a message (--db when it was given)."""
        return f"{PROG} --db {shlex.quote(self.shown)} {rest}" if self.explicit else f"{PROG} {rest}"

    def store(self, *, create: bool = False) -> StateStore:
        """The store at the current schema. A database is never migrated, and created only with
        create=True when it does not exist yet (or has no tables at all).

        Raises:
            StorageError: there is no database (and create is False).
            SchemaVersionError: the schema is not the current one; says which command upgrades it.
        """
        if self._store is None:
            self._store, created = open_store(self.url, self.command("db upgrade"), create=create)
            self._created.extend(created)
        return self._store

    def engine(self, *, create: bool = False) -> Engine:
        """A plain engine that never migrates on its own, for the `db` commands."""
        if self._engine is None:
            url = self.url
            if not create:
                require_file(url, self.command("db upgrade"))
            self._engine = dialect_for(url, EngineOptions()).create_engine()
        return self._engine

    def discard_new_database(self) -> None:
        """Remove the SQLite file this command created, if it holds no rows, with the folders
        made for it: a failed import or copy leaves nothing behind."""
        if self._store is not None and self._created:
            discard_if_empty(self._store, self._created)
            self._store = None
            self._created.clear()

    def close(self) -> None:
        if self._store is not None:
            self._store.close()
        if self._engine is not None:
            self._engine.dispose()


def database_url(location: str, option: str) -> URL:
    """A --db or --to value as the library's URL; BadInput (naming the option) when it is not one.

    postgres:// (the spelling many hosting services hand out) is taken as postgresql://.
    """
    if not location.strip():
        raise BadInput(f"{option} must be a non-empty path or database URL")
    try:
        location.encode("utf-8")
    except UnicodeEncodeError:  # bytes of a file name that is not UTF-8: the driver cannot take it
        raise BadInput(f"{option} must be UTF-8 text, got {quoted(location)}") from None
    try:
        return to_url(_POSTGRES_SCHEME.sub("postgresql", location))
    except ValidationError as exc:
        raise BadInput(str(exc).replace("db_path", option)) from None
    except (ArgumentError, ValueError):
        # Not the URL itself: make_url's message may quote it, password and all.
        raise BadInput(f"{option} is not a valid database URL (is the port a number?)") from None


def password_of(location: str) -> str | None:
    """The password in a database URL, or None. Never raises."""
    if "://" not in location:
        return None
    try:
        secret = make_url(_POSTGRES_SCHEME.sub("postgresql", location)).password
    except (ArgumentError, ValueError):  # unparseable: nothing was taken as a password
        return None
    return str(secret) if secret else None


def _sqlite_file(url: URL) -> Path | None:
    if url.get_backend_name() != "sqlite" or url.database in (None, "", ":memory:"):
        return None
    return Path(str(url.database))


def require_file(url: URL, upgrade: str) -> None:
    """Raise StorageError when `url` names a SQLite file that does not exist."""
    path = _sqlite_file(url)
    if path is not None and not path.is_file():
        raise StorageError(
            f"no SQLite database at {path} (select one with --db or VIBECC_DATABASE_URL; "
            f"`{upgrade}` creates a new one)"
        )


def open_store(url: URL, upgrade: str, *, create: bool) -> tuple[StateStore, list[Path]]:
    """Open a store without migrating it; with `create`, make a new one where there is none.

    Returns the store and what this call created: the SQLite file and the folders made for it.
    """
    path = _sqlite_file(url)
    if path is not None and not path.exists() and create:
        made = [path, *(f for f in path.parents if not f.exists())]
        try:
            return StateStore(url), made
        except BaseException as exc:
            # Failed or interrupted (Ctrl-C) while making the new store: its schema was
            # written in one transaction, rolled back, so nothing is lost by removing it.
            _remove(made)
            if isinstance(exc, KeyboardInterrupt):
                raise Interrupted(
                    f"interrupted while creating {one_line(str(path))}; nothing was written"
                ) from None
            raise
    require_file(url, upgrade)
    try:
        return StateStore(url, auto_migrate=False), []
    except SchemaVersionError as exc:
        if create and _has_no_tables(url):
            return StateStore(url), []
        raise SchemaVersionError(str(exc).replace(migrate.UPGRADE_HINT, f"run `{upgrade}`")) from exc


def _has_no_tables(url: URL) -> bool:
    engine = dialect_for(url, EngineOptions()).create_engine()
    try:
        with engine.connect() as conn:
            return not inspect(conn).get_table_names()
    except SQLAlchemyError:
        return False
    finally:
        engine.dispose()


def discard_if_empty(store: StateStore, created: list[Path]) -> None:
    """Close `store` and, when it holds no rows, remove the files and folders in `created`."""
    try:
        empty = not (
            store.list_projects()
            or store.count_pipelines()
            or store.count_history()
            or store.list_deleted_projects()
        )
    except StorageError:
        empty = False
    store.close()
    if empty:
        _remove(created)


def _remove(created: list[Path]) -> None:
    """Remove a SQLite file with its side files, then the folders made for it, deepest first."""
    path, *folders = created
    for suffix in ("", "-wal", "-shm", "-journal"):
        Path(f"{path}{suffix}").unlink(missing_ok=True)
    for folder in folders:
        try:
            folder.rmdir()
        except OSError:
            return


pass_env = click.make_pass_decorator(Env)
json_option = click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
yes_option = click.option("--yes", is_flag=True, help="Do not ask for confirmation.")


@contextmanager
def storage_errors(env: Env) -> Iterator[None]:
    """Report database errors of the raw engine (db commands) like the store does."""
    try:
        yield
    except SQLAlchemyError as exc:
        raise translate(exc, env.where) from exc


# -- output ----------------------------------------------------------------------------------

PIPE_WIDTH = 120


def console() -> Console:
    """A console on the current stdout (looked up per call, so tests can capture it).

    Off a terminal (and without COLUMNS set), tables get room enough that names and titles
    come out whole rather than cut to the 80 columns rich assumes for a pipe.
    """
    chosen = sys.stdout.isatty() or "COLUMNS" in os.environ
    return Console(file=sys.stdout, highlight=False, width=None if chosen else PIPE_WIDTH)


def stdin_is_terminal() -> bool:
    return sys.stdin.isatty()


def stdout_is_terminal() -> bool:
    return sys.stdout.isatty()


def stderr_is_terminal() -> bool:
    return sys.stderr.isatty()


def quoted(value: object) -> str:
    """A value given on the command line, quoted for a message and cut to 60 characters."""
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def say(message: str, *, err: bool = False) -> None:
    """One line for the operator, every control character of stored or given text escaped."""
    click.echo(one_line(message), err=err)


def say_lines(text: str) -> None:
    """Lines for the operator (each kept on its own line), control characters escaped."""
    click.echo(plain(text), nl=False)


# JSON escapes C0 controls itself; these pass through it as they are (lone surrogates: the
# bytes of a file name that is not UTF-8).
_JSON_ESCAPES = {
    code: f"\\u{code:04x}"
    for code in (
        0x7F,
        *range(0x80, 0xA0),
        0x2028,
        0x2029,
        *range(0x202A, 0x202F),
        *range(0x2066, 0x206A),
        *range(0xD800, 0xE000),
    )
}


def json_text(data: Any, **options: Any) -> str:
    """JSON with every control character escaped, so stored text cannot drive a terminal."""
    return json.dumps(data, ensure_ascii=False, **options).translate(_JSON_ESCAPES)


def emit_json(data: Any) -> None:
    click.echo(json_text(data, indent=2))


def iso(moment: datetime | None) -> str | None:
    """ISO-8601 in UTC with an explicit +00:00 offset, the one format of every JSON output."""
    return None if moment is None else moment.astimezone(UTC).isoformat()


def confirm(action: str, *, yes: bool) -> None:
    """Ask whether to do `action` ("delete 3 history records ...") on stderr, unless `yes`.

    Raises:
        BadInput: stdin is not a terminal and `yes` is False: nothing can be asked.
        CommandFailed: the answer was no.
        Interrupted: Ctrl-C at the question.
    """
    if yes:
        return
    if not stdin_is_terminal():
        raise BadInput(f"would {action}: give --yes to do it (stdin is not a terminal, so it cannot ask)")
    try:
        click.confirm(one_line(f"{action[:1].upper()}{action[1:]}?"), abort=True, err=True)
    except click.Abort as exc:
        if interrupted(exc):
            raise Interrupted(f"interrupted; did not {action}") from None
        raise CommandFailed(f"not confirmed; did not {action}") from None
