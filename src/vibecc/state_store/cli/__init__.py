"""vibecc-state: the command-line tool of the state store. The only module (with its cli_*
parts) that prints or exits.

Exit codes: 0 success; 1 operational error (the database is unreachable, locked, on the wrong
schema revision, a project still has active pipelines, ...); 2 bad usage or bad input (unknown
option, invalid value, a record or destination that exists already, a copy target that is not
empty); 3 not found; 130 interrupted (Ctrl-C). Errors are one line on stderr, with every
control character escaped; --debug adds the traceback.

Click's standalone mode reports the errors: every failure is turned into a CommandFailed (a
ClickException carrying the exit code) on its way out of the root group.
"""

from __future__ import annotations

import errno
import logging
import traceback
from typing import Any

import click
from click.core import ParameterSource

from ..errors import (
    AlreadyExistsError,
    NotFoundError,
    StateStoreError,
    TargetNotEmptyError,
    ValidationError,
)
from .common import DEFAULT_DB, PROG, CommandFailed, Env, Group, failure, interrupted
from .formatting import plain


def exit_code(exc: StateStoreError) -> int:
    """3 for not found, 2 for bad input, 1 for everything else."""
    if isinstance(exc, NotFoundError):
        return 3
    if isinstance(exc, ValidationError | AlreadyExistsError | TargetNotEmptyError):
        return 2
    return 1


class Tool(Group):
    """The root group: turns every error into one line on stderr and an exit code."""

    def make_context(
        self, info_name: str | None, args: list[str], parent: click.Context | None = None, **extra: Any
    ) -> click.Context:
        try:
            return super().make_context(info_name, args, parent, **extra)
        except click.UsageError as exc:
            raise self._usage(exc) from exc

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except (click.exceptions.Exit, click.Abort):
            raise
        except click.UsageError as exc:
            raise self._failed(ctx, exc, self._usage(exc).message, exc.exit_code) from exc
        except click.ClickException as exc:
            message = exc.message if isinstance(exc, CommandFailed) else exc.format_message()
            raise self._failed(ctx, exc, message, exc.exit_code) from exc
        except KeyboardInterrupt as exc:
            raise self._failed(ctx, exc, "interrupted", 130) from None
        except StateStoreError as exc:
            if interrupted(exc):
                raise self._failed(ctx, exc, "interrupted", 130) from None
            raise self._failed(ctx, exc, str(exc), exit_code(exc)) from exc
        except OSError as exc:
            if exc.errno == errno.EPIPE:
                raise  # the reader went away (`export | head`): click's standalone mode stops quietly
            where = f"{exc.filename}: " if exc.filename else ""
            raise self._failed(ctx, exc, f"{where}{exc.strerror or exc}", 1) from exc
        except Exception as exc:  # a bug: still one line, the traceback with --debug
            raise self._failed(ctx, exc, _unexpected(exc), 1) from exc

    @staticmethod
    def _usage(exc: click.UsageError) -> CommandFailed:
        hint = f" (see '{exc.ctx.command_path} --help')" if exc.ctx is not None else ""
        return failure(f"{exc.format_message()}{hint}", exc.exit_code)

    @staticmethod
    def _failed(ctx: click.Context, exc: BaseException, message: str, code: int) -> CommandFailed:
        env = ctx.find_object(Env)
        secrets = [] if env is None else [s for s in (env.password, *env.secrets) if s]

        def scrub(text: str) -> str:
            for secret in secrets:
                if len(secret) >= 3:  # shorter ones would garble the message more than they hide
                    text = text.replace(secret, "***")
            return text

        if env is not None and env.debug:
            click.echo(plain(scrub("".join(traceback.format_exception(exc)))), err=True, nl=False)
        # Line breaks in the message (a file name may hold one) are escaped, not cut off.
        return failure(scrub(message).strip() or type(exc).__name__, code)


def _unexpected(exc: BaseException) -> str:
    lines = str(exc).strip().splitlines()
    return (
        f"unexpected {type(exc).__name__}: {lines[0] if lines else ''} (run with --debug for the traceback)"
    )


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
    help="SQLite file or database URL (sqlite:///..., postgresql://user@host/db, postgres://...).",
)
@click.option("--debug", is_flag=True, help="Show the traceback of an error.")
@click.version_option(package_name="vibecc-state-store", prog_name=PROG)
@click.pass_context
def cli(ctx: click.Context, db: str, debug: bool) -> None:
    """Inspect and operate a VibeCC state store: projects, active pipelines, history.

    Only `db upgrade` creates or upgrades a database (and `demo` a new file, `import` and
    `copy --to` one named explicitly). Dates are YYYY-MM-DD or ISO-8601 timestamps, in UTC
    unless they carry an offset; --until and --before are exclusive.

    \b
    Exit codes: 0 ok, 1 operational error, 2 bad usage or input (also: the record,
    backup file or copy target exists already), 3 not found, 130 interrupted.

    \b
    Example:
      vibecc-state --db /srv/vibecc/vibecc.db pipelines list --project acme/web
    """
    explicit = ctx.get_parameter_source("db") is ParameterSource.COMMANDLINE
    env = Env(db, debug, explicit=explicit)
    ctx.obj = env
    ctx.call_on_close(env.close)


def _register() -> None:
    from .changes import changes
    from .db import db
    from .demo import demo
    from .exchange import export, import_
    from .history import history, prune
    from .ops import backup, copy, report
    from .projects import pipelines, projects

    for command in (
        db,
        projects,
        pipelines,
        history,
        changes,
        prune,
        export,
        import_,
        backup,
        copy,
        report,
        demo,
    ):
        cli.add_command(command)


_register()


def main() -> None:
    """Entry point of the `vibecc-state` console script."""
    # The driver logs warnings of its own about connections the server dropped (a message of
    # several lines); the error the command reports is the one line that says what happened.
    logging.getLogger("psycopg").addHandler(logging.NullHandler())
    logging.getLogger("psycopg").propagate = False
    cli.main(prog_name=PROG)
