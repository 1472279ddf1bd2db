"""`vibecc-state backup`, `copy` and `report`."""

from __future__ import annotations

import os
import shlex
import uuid
from contextlib import suppress
from datetime import datetime
from pathlib import Path

import click

from ..db.files import private_folders
from ..db.urls import mask
from ..errors import BackupExistsError, StateStoreError
from ..ops.backup import backup_sqlite
from ..ops.copy import CopyReport, copy_store
from ..store import MAX_BATCH, StateStore
from .args import history_owner, project_option, window_options
from .common import (
    PROG,
    BadInput,
    CommandFailed,
    Env,
    Interrupted,
    console,
    database_url,
    discard_if_empty,
    emit_json,
    interrupted,
    json_option,
    open_store,
    pass_env,
    password_of,
    say,
)
from .formatting import one_line
from .progress import progress
from .report import collect
from .report_html import render
from .views import copy_table


@click.command()
@click.argument("dest", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--force", is_flag=True, help="Replace DEST if it exists.")
@json_option
@pass_env
def backup(env: Env, dest: Path, force: bool, as_json: bool) -> None:
    """Copy a SQLite store to DEST while it is in use, then integrity_check the copy.

    The copy is one moment of the database even while an orchestrator keeps writing; it is
    created readable by its owner only, and missing folders of DEST owner-only too. For
    PostgreSQL use pg_dump.

    \b
    Example:
      vibecc-state --db /srv/vibecc/vibecc.db backup /srv/backups/vibecc-$(date +%F).db
    """
    if env.url.get_backend_name() != "sqlite":
        raise BadInput(
            f"backup copies SQLite files; {env.where} is PostgreSQL: use pg_dump "
            "(e.g. pg_dump --format=custom --file=FILE DBNAME)",
        )
    with progress("backing up", None, unit="pages") as meter:
        try:
            result = backup_sqlite(env.url, dest, force=force, progress=meter.at)
        except BackupExistsError as exc:
            raise BadInput(f"{exc}; use --force to replace it") from exc
    if as_json:
        emit_json(
            {
                "source": result.source,
                "dest": result.dest,
                "pages": result.pages,
                "bytes": result.bytes,
                "integrity_check": "ok",
                "rows": result.rows,
            }
        )
        return
    counts = ", ".join(f"{n} {name}" for name, n in result.rows.items())
    say(f"backed up {result.source} to {result.dest}: {result.bytes:,} bytes, integrity_check ok")
    say(f"rows: {counts}")


@click.command()
@click.option("--to", "target", required=True, metavar="PATH|URL", help="An empty store to copy into.")
@click.option("--batch-size", type=click.IntRange(1, MAX_BATCH), default=1000, show_default=True)
@json_option
@pass_env
def copy(env: Env, target: str, batch_size: int, as_json: bool) -> None:
    """Copy every project, pipeline and history record into an EMPTY store (any engine), then
    verify row counts and checksums table by table. A target with data is refused (exit 2).
    The change log is not copied: the target's starts again after the copy.

    The target is written in one transaction: a failed or interrupted copy leaves it empty.
    A SQLite target that does not exist is created (folders owner-only), and removed again
    when the copy fails.

    \b
    Example:
      vibecc-state --db vibecc.db copy --to postgresql://vibecc@db.example/vibecc
    """
    store = env.store()
    url = database_url(target, "--to")
    secret = password_of(target)
    if secret:
        env.secrets.append(secret)
    shown = mask(target) if "://" in target else target
    dst, created = open_store(url, f"{PROG} --db {shlex.quote(shown)} db upgrade", create=True)
    try:
        report = _copy(store, dst, batch_size)
    except BaseException:
        if created:
            discard_if_empty(dst, created)
        raise
    finally:
        dst.close()
    if as_json:
        emit_json(
            {
                "source": report.source,
                "target": report.target,
                "rows": report.rows,
                "tables": [
                    {
                        "table": t.table,
                        "source_rows": t.source_rows,
                        "target_rows": t.target_rows,
                        "source_checksum": t.source_checksum,
                        "target_checksum": t.target_checksum,
                        "matches": t.matches,
                    }
                    for t in report.tables
                ],
            }
        )
    else:
        console().print(copy_table(report))
        say(f"copied {report.rows} rows; every table verified")
        say(
            "the change log is not copied: the target's starts again after the copy and cursors "
            "given out on it before expire, so readers of the target start from its tables"
        )


def _copy(store: StateStore, dst: StateStore, batch_size: int) -> CopyReport:
    total = len(store.list_projects()) + store.count_pipelines() + store.count_history()
    with progress("copying", total) as meter:
        try:
            return copy_store(store, dst, batch_size=batch_size, progress=lambda _table, n: meter.add(n))
        except (KeyboardInterrupt, StateStoreError) as exc:
            if not interrupted(exc):
                raise
            raise Interrupted(_interrupted_copy(dst)) from None


def _interrupted_copy(dst: StateStore) -> str:
    try:
        empty = not (dst.list_projects() or dst.count_history())
    except StateStoreError:
        empty = True  # it cannot be read: nothing was committed to it either
    if empty:
        return "interrupted: nothing was copied, the target's transaction was rolled back"
    return "interrupted as the copy committed: the target holds it, but it was not verified here"


@click.command()
@click.option(
    "--html",
    "given",
    required=True,
    type=click.Path(dir_okay=False, allow_dash=True),
    help="File to write (- for stdout).",
)
@project_option
@window_options
@pass_env
def report(
    env: Env, given: str, project_ref: str | None, since: datetime | None, until: datetime | None
) -> None:
    """Write a self-contained HTML report: throughput, durations, retries, time in each stage
    per week, the slowest tickets stage by stage, the board, stats.

    The file is created readable by its owner only (0600), missing folders owner-only too;
    --project also takes a deleted project, by its id or its last repo.

    \b
    Example:
      vibecc-state report --html reports/web.html --project acme/web --since 2025-01-01
    """
    path = Path(given)
    # "", ".", a folder ("reports/", which Path would turn into a file "reports").
    if not path.name or given.endswith(("/", os.sep)):
        raise BadInput(f"--html needs a file name, got {one_line(given)!r}")
    store = env.store()
    owner = history_owner(store, project_ref) if project_ref else None
    scope = (
        f"{owner.name} ({owner.label})" if owner and owner.name else owner.label if owner else "All projects"
    )
    window = "".join(
        [f", since {since:%Y-%m-%d}" if since else "", f", until {until:%Y-%m-%d}" if until else ""]
    )
    data = collect(
        store,
        owner.id if owner else None,
        since=since,
        until=until,
        title=f"VibeCC pipelines: {owner.label if owner else 'all projects'}",
        scope=scope + window,
    )
    html = render(data)
    summary = (
        f"{data.stats['total_completed']} finished, {sum(len(cards) for cards in data.board.values())} active"
    )
    if str(path) == "-":
        click.echo(html, nl=False)
        return
    _write_private(path, html)
    say(f"wrote {path} ({len(html.encode()) / 1024:.0f} KiB): {summary}")


def _write_private(path: Path, text: str) -> None:
    """Write `text` to `path` as a new file readable by its owner only, put in place by rename
    (through a symbolic link, the file it names). Into something that is not a regular file
    (/dev/null, a FIFO) the text is written as it is, never replacing it."""
    target = path.resolve() if path.is_symlink() else path
    temporary = target.with_name(f".{target.name}.{uuid.uuid4().hex[:8]}.tmp")
    try:
        if target.exists() and not target.is_file():
            with open(target, "w", encoding="utf-8") as out:
                out.write(text)
            return
        private_folders(target.parent)
        fd = os.open(temporary, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as out:
            os.fchmod(out.fileno(), 0o600)
            out.write(text)
        os.replace(temporary, target)
    except OSError as exc:
        with suppress(OSError):
            temporary.unlink()
        raise CommandFailed(f"cannot write the report {path}: {exc.strerror or exc}") from None
