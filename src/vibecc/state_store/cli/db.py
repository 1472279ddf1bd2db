"""`vibecc-state db ...`: schema revisions. These commands use a plain engine, so opening a
database on an older schema never migrates it behind the user's back."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import click
from rich import box
from rich.table import Table
from rich.text import Text

from .. import migrate
from ..errors import ValidationError
from .common import (
    BadInput,
    CommandFailed,
    Env,
    Group,
    confirm,
    console,
    emit_json,
    json_option,
    pass_env,
    say,
    say_lines,
    storage_errors,
    yes_option,
)
from .formatting import one_line


@contextmanager
def _alembic_errors() -> Iterator[None]:
    """Alembic's CommandError (an unknown revision, an upgrade SQLite cannot render offline) is
    about what was asked, so it is bad input."""
    from alembic.util import CommandError

    try:
        yield
    except CommandError as exc:
        raise ValidationError(str(exc).strip().splitlines()[0]) from exc


@click.group(cls=Group)
def db() -> None:
    """Schema revisions: upgrade, downgrade, current, history, check, sql.

    \b
    Example:
      vibecc-state --db /srv/vibecc/vibecc.db db upgrade
    """


@db.command()
@click.argument("revision", default="head")
@pass_env
def upgrade(env: Env, revision: str) -> None:
    """Upgrade the schema to REVISION (default: head); creates a new SQLite file.

    The only command that creates or upgrades a store (besides `demo` on a new file and
    `import` or `copy --to` into one named explicitly).

    \b
    Example:
      vibecc-state --db new.db db upgrade
    """
    engine = env.engine(create=True)
    with storage_errors(env), _alembic_errors():
        before = migrate.current(engine)
        migrate.upgrade(engine, revision)
        after = migrate.current(engine)
    if before == after:
        say(f"{env.where} is at revision {after} already")
    else:
        say(f"upgraded {env.where} from {before or 'an empty database'} to {after}")


@db.command()
@click.argument("revision")
@yes_option
@pass_env
def downgrade(env: Env, revision: str, yes: bool) -> None:
    """Downgrade the schema to REVISION ("base" removes every table and all data).

    Asks first (data in dropped columns and tables is lost); --yes skips the question, and
    without a terminal to ask on --yes is needed.

    \b
    Example:
      vibecc-state --db old.db db downgrade 0002 --yes
    """
    engine = env.engine()
    with storage_errors(env):
        before = migrate.current(engine)
    confirm(
        f"downgrade {env.where} from {before} to {revision}, losing the data of dropped columns and tables",
        yes=yes,
    )
    with storage_errors(env), _alembic_errors():
        migrate.downgrade(engine, revision)
        after = migrate.current(engine)
    say(f"downgraded {env.where} from {before} to {after or 'base (no tables)'}")


@db.command()
@json_option
@pass_env
def current(env: Env, as_json: bool) -> None:
    """Show the schema revision of the database.

    \b
    Example:
      vibecc-state db current --json
    """
    with storage_errors(env):
        revision = migrate.current(env.engine())
    if as_json:
        emit_json({"revision": revision, "head": migrate.HEAD, "at_head": revision == migrate.HEAD})
    elif revision == migrate.HEAD:
        say(f"{revision} (head)")
    else:
        say(f"{revision or 'no revision'} (head is {migrate.HEAD}; run `{env.command('db upgrade')}`)")


@db.command()
@json_option
@pass_env
def history(env: Env, as_json: bool) -> None:
    """List the schema revisions, oldest first, marking the database's.

    \b
    Example:
      vibecc-state db history
    """
    with storage_errors(env):
        stored = migrate.current(env.engine())
    revisions = migrate.revisions()
    if as_json:
        emit_json(
            [
                {
                    "revision": r.revision,
                    "down_revision": r.down_revision,
                    "message": r.message,
                    "current": r.revision == stored,
                    "head": r.revision == migrate.HEAD,
                }
                for r in revisions
            ]
        )
        return
    table = Table(box=box.SIMPLE_HEAD)
    for name in ("Revision", "Down", "Description", ""):
        table.add_column(name)
    for r in revisions:
        marks = [
            m for m, on in (("current", r.revision == stored), ("head", r.revision == migrate.HEAD)) if on
        ]
        table.add_row(
            Text(r.revision, style="bold"),
            r.down_revision or "-",
            Text(r.message.splitlines()[0] if r.message else ""),
            Text(", ".join(marks), style="green"),
        )
    console().print(table)


@db.command()
@json_option
@pass_env
def check(env: Env, as_json: bool) -> None:
    """Exit 0 when the schema is at head and matches the models; else list what differs, exit 1.

    \b
    Example:
      vibecc-state db check || vibecc-state db upgrade
    """
    engine = env.engine()
    with storage_errors(env):
        revision = migrate.current(engine)
        problems = migrate.check(engine)
    if as_json:
        emit_json({"ok": not problems, "revision": revision, "head": migrate.HEAD, "problems": problems})
    elif not problems:
        say(f"ok: {env.where} is at head {migrate.HEAD} and matches the models")
    else:
        for problem in problems:
            say(f"- {problem}")
    if problems:
        raise CommandFailed(f"schema of {env.where} differs from the models ({len(problems)} difference(s))")


@db.command()
@click.argument("revision", default="head")
@click.option("--from", "start", metavar="REV", help="Start from this revision instead of an empty database.")
@pass_env
def sql(env: Env, revision: str, start: str | None) -> None:
    """Print the upgrade to REVISION as SQL for the selected engine; touches no database.

    \b
    Example:
      vibecc-state --db postgresql://dba@db.example/vibecc db sql > upgrade.sql
    """
    if start is not None:
        order = [r.revision for r in migrate.revisions()]
        target = order[-1] if revision == "head" else revision
        if start in order and target in order and order.index(start) >= order.index(target):
            shown = f"--from {one_line(start)} must be older than {one_line(target)}"
            raise BadInput(f"{shown}: nothing to upgrade")
    with _alembic_errors():
        text = migrate.upgrade_sql(env.url.get_backend_name(), revision, start)
    say_lines(text)
