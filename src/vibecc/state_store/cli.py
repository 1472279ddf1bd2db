"""vibecc-state: the command-line tool of the state store. The only module (with its cli_*
parts) that prints or exits.

Exit codes: 0 success; 1 operational error (the database is unreachable, locked, on the wrong
schema revision, a project still has active pipelines, ...); 2 bad usage or bad input (unknown
option, invalid value, a record or destination that exists already, a copy target that is not
empty); 3 not found. Errors are one line on stderr; --debug adds the traceback.
"""

from __future__ import annotations

import os
import sys
import traceback
from collections.abc import Sequence
from typing import Any, NoReturn

import click

from .cli_common import DEFAULT_DB, CommandFailed, Env, failure
from .errors import (
    AlreadyExistsError,
    NotFoundError,
    StateStoreError,
    TargetNotEmptyError,
    ValidationError,
)

PROG = "vibecc-state"


def exit_code(exc: StateStoreError) -> int:
    """3 for not found, 2 for bad input, 1 for everything else."""
    if isinstance(exc, NotFoundError):
        return 3
    if isinstance(exc, ValidationError | AlreadyExistsError | TargetNotEmptyError):
        return 2
    return 1


class Tool(click.Group):
    """The root group: turns errors into one line on stderr and an exit code."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except (click.ClickException, click.exceptions.Exit, click.Abort, BrokenPipeError):
            raise
        except StateStoreError as exc:
            raise self._failed(ctx, exc, str(exc), exit_code(exc)) from exc
        except Exception as exc:  # a bug: still one line, the traceback with --debug
            message = f"unexpected {type(exc).__name__}: {exc} (run with --debug for the traceback)"
            raise self._failed(ctx, exc, message, 1) from exc

    @staticmethod
    def _failed(ctx: click.Context, exc: Exception, message: str, code: int) -> CommandFailed:
        env = ctx.find_object(Env)
        if env is not None and env.debug:
            traceback.print_exception(exc, file=sys.stderr)
        secret = env.password if env is not None else None
        if secret and len(secret) >= 3:  # shorter ones would garble the message more than hide
            message = message.replace(secret, "***")
        return failure(message.splitlines()[0] if message else type(exc).__name__, code)

    def main(
        self,
        args: Sequence[str] | None = None,
        prog_name: str | None = None,
        complete_var: str | None = None,
        standalone_mode: bool = True,
        **extra: Any,
    ) -> Any:
        if not standalone_mode:
            return super().main(args, prog_name, complete_var, False, **extra)
        try:
            result = super().main(args, prog_name or PROG, complete_var, False, **extra)
        except click.UsageError as exc:
            hint = f" (see '{exc.ctx.command_path} --help')" if exc.ctx is not None else ""
            _fail(f"{exc.format_message()}{hint}", exc.exit_code)
        except click.ClickException as exc:
            _fail(exc.format_message(), exc.exit_code)
        except click.Abort:
            _fail("aborted", 1)
        except BrokenPipeError:
            # The reader went away (`export | head`): stop quietly, and keep Python from
            # complaining when it flushes stdout at exit.
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
            sys.exit(1)
        sys.exit(result if isinstance(result, int) else 0)


def _fail(message: str, code: int) -> NoReturn:
    click.echo(f"Error: {message}", err=True)
    sys.exit(code)


@click.group(
    PROG, cls=Tool, context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100}
)
@click.option(
    "--db",
    metavar="PATH|URL",
    envvar="VIBECC_DATABASE_URL",
    show_envvar=True,
    default=DEFAULT_DB,
    show_default=f"./{DEFAULT_DB}",
    help="SQLite file or database URL (sqlite:///..., postgresql://user@host/db).",
)
@click.option("--debug", is_flag=True, help="Show the traceback of an error.")
@click.version_option(package_name="vibecc-state-store", prog_name=PROG)
@click.pass_context
def cli(ctx: click.Context, db: str, debug: bool) -> None:
    """Inspect and operate a VibeCC state store: projects, active pipelines, history.

    \b
    Exit codes: 0 ok, 1 operational error, 2 bad usage or input (also: the record,
    backup file or copy target exists already), 3 not found.
    """
    env = Env(db, debug)
    ctx.obj = env
    ctx.call_on_close(env.close)


def _register() -> None:
    from .cli_db import db
    from .cli_history import export, history, import_, prune
    from .cli_ops import backup, copy, demo, report
    from .cli_projects import pipelines, projects

    for command in (db, projects, pipelines, history, prune, export, import_, backup, copy, report, demo):
        cli.add_command(command)


_register()


def main() -> None:
    """Entry point of the `vibecc-state` console script."""
    cli.main(prog_name=PROG)
