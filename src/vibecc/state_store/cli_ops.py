"""`vibecc-state backup`, `copy`, `report` and `demo`."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from pathlib import Path

import click
from rich.table import Table
from rich.text import Text

from .backup import BackupExistsError, backup_sqlite
from .cli_common import (
    BadInput,
    Env,
    console,
    emit_json,
    find_project,
    json_option,
    pass_env,
    progress,
    project_option,
    repos,
    since_option,
    until_option,
)
from .cli_history import stats_of
from .cli_views import STATE_STYLE, board, copy_table, stats_table
from .demo import SAMPLE, TicketRun, run_demo
from .history import MAX_BATCH
from .report import collect
from .report_html import render
from .transfer import copy_store


@click.command()
@click.argument("dest", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--force", is_flag=True, help="Replace DEST if it exists.")
@json_option
@pass_env
def backup(env: Env, dest: Path, force: bool, as_json: bool) -> None:
    """Copy a SQLite store to DEST while it is in use, then integrity_check the copy.

    The copy is one moment of the database even while an orchestrator keeps writing, and it
    is created readable by its owner only. For PostgreSQL use pg_dump.
    """
    if env.url.get_backend_name() != "sqlite":
        raise BadInput(
            f"backup copies SQLite files; {env.where} is PostgreSQL: use pg_dump "
            "(e.g. pg_dump --format=custom --file=FILE DBNAME)",
        )
    with progress("backing up", None) as advance:
        done = 0

        def step(copied: int, total: int) -> None:
            nonlocal done
            advance(copied - done, total)
            done = copied

        try:
            result = backup_sqlite(env.url, dest, force=force, progress=step)
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
    click.echo(f"backed up {result.source} to {result.dest}: {result.bytes:,} bytes, integrity_check ok")
    click.echo(f"rows: {counts}")


@click.command()
@click.option("--to", "target", required=True, metavar="PATH|URL", help="An empty store to copy into.")
@click.option("--batch-size", type=click.IntRange(1, MAX_BATCH), default=1000, show_default=True)
@json_option
@pass_env
def copy(env: Env, target: str, batch_size: int, as_json: bool) -> None:
    """Copy every project, pipeline and history record into an EMPTY store (any engine), then
    verify row counts and checksums table by table. A target with data is refused (exit 2)."""
    store = env.store()
    total = len(store.list_projects()) + len(store.list_pipelines()) + store.count_history()
    with progress("copying", total) as advance:
        report = copy_store(store, target, batch_size=batch_size, progress=lambda _table, n: advance(n))
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
        click.echo(f"copied {report.rows} rows; every table verified")


@click.command()
@click.option(
    "--html", "path", required=True, type=click.Path(dir_okay=False, path_type=Path), help="File to write."
)
@project_option
@since_option
@until_option
@pass_env
def report(
    env: Env, path: Path, project_ref: str | None, since: datetime | None, until: datetime | None
) -> None:
    """Write a self-contained HTML report: throughput, durations, retries, the board, stats."""
    store = env.store()
    project = find_project(store, project_ref) if project_ref else None
    scope = f"{project.name} ({project.repo})" if project else "All projects"
    window = "".join(
        [f", since {since:%Y-%m-%d}" if since else "", f", until {until:%Y-%m-%d}" if until else ""]
    )
    data = collect(
        store,
        project.id if project else None,
        since=since,
        until=until,
        title=f"VibeCC pipelines: {project.repo if project else 'all projects'}",
        scope=scope + window,
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(render(data), encoding="utf-8")
    click.echo(
        f"wrote {path} ({path.stat().st_size / 1024:.0f} KiB): {data.stats['total_completed']} finished, "
        f"{sum(len(cards) for cards in data.board.values())} active"
    )


@click.command()
@click.option(
    "--tickets", type=click.IntRange(1, 500), default=6, show_default=True, help="New tickets to walk."
)
@click.option(
    "--seed-history",
    type=click.IntRange(0, 10_000),
    default=0,
    metavar="N",
    help="First import N invented finished tickets of the past two weeks, titled [sample].",
)
@click.option(
    "--leave-active",
    type=click.IntRange(0, 500),
    default=0,
    metavar="K",
    help="Leave the last K new tickets in progress, so the board has cards.",
)
@pass_env
def demo(env: Env, tickets: int, seed_history: int, leave_active: int) -> None:
    """Play the orchestrator on a demo project (vibecc/demo), then show the board and stats.

    Tickets are claimed and moved QUEUED -> CODING -> TESTING -> REVIEW -> MERGED with
    expected_version on every write; one needs a second CI run, one ends FAILED, and each is
    archived when it is finished. Running it again first finishes what an earlier run left in
    progress, then continues with the next ticket numbers.
    """
    if leave_active > tickets:
        raise BadInput(f"--leave-active {leave_active} is more than --tickets {tickets}")
    store = env.store(create=True)
    result = run_demo(store, tickets, seed_history=seed_history, leave_active=leave_active)
    out = console()
    out.print(Text.assemble(("Demo project ", ""), (result.project.repo, "bold"), f" in {env.where}"))
    if result.seeded:
        first, last = result.seeded[0], result.seeded[-1]
        out.print(
            Text(
                f"Imported {len(result.seeded)} invented tickets of the past two weeks as history "
                f"(#{first}-#{last}, titled {SAMPLE}): sample data, not walked."
            )
        )
    out.print(_walked(result.runs))
    out.print()
    active = store.list_pipelines(result.project.id)
    if active:
        out.print(board(active, repos(store)))
    else:
        out.print("Board: empty, every demo ticket is finished and archived.")
    out.print()
    stats = stats_of(store, result.project.id, None, None)
    out.print(stats_table(stats, f"History of {result.project.repo}"))
    if stats["p95_duration_seconds"] is not None and stats["p95_duration_seconds"] < 60:
        out.print(
            "Durations are ~0s: the demo walks each ticket in an instant "
            "(--seed-history 30 adds invented tickets that took a while).",
            style="dim",
        )
    prefix = f"vibecc-state --db {env.shown}"
    out.print(Text(f"Try: {prefix} history list\n     {prefix} report --html report.html", style="dim"))


def _walked(runs: Sequence[TicketRun]) -> Table:
    walked = Table(box=None, show_header=True, title="Tickets walked", title_justify="left", pad_edge=False)
    walked.add_column("Ticket", no_wrap=True)
    walked.add_column("Path")
    walked.add_column("Now", no_wrap=True)
    for run in runs:
        now = Text(run.state.value + (" (archived)" if run.archived else ""), style=STATE_STYLE[run.state])
        path = ("(resumed) " if run.resumed else "") + " → ".join(run.steps)
        walked.add_row(f"#{run.ticket_id}", path, now)
    return walked
