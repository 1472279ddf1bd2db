"""`vibecc-state history ...`, `prune`, `export` and `import`."""

from __future__ import annotations

import csv
import sys
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import IO, Any

import click

from .cli_common import (
    DATE,
    MAX_DAYS,
    Advance,
    Env,
    console,
    days_ago,
    emit_json,
    iso,
    json_option,
    pass_env,
    progress,
    project_id,
    project_option,
    repos,
    since_option,
    until_option,
)
from .cli_views import history_table, stats_table
from .errors import ValidationError
from .exchange import HISTORY_FIELDS, csv_row, history_line, read_history, stats_dict, to_dict
from .history import MAX_BATCH, MAX_PAGE
from .records import PipelineHistory
from .store import StateStore

batch_option = click.option(
    "--batch-size",
    type=click.IntRange(1, MAX_BATCH),
    default=1000,
    show_default=True,
    help="Rows per transaction.",
)


@click.group()
def history() -> None:
    """Finished pipelines: list and stats."""


@history.command("list")
@project_option
@click.option("--state", type=click.Choice(["merged", "failed"], case_sensitive=False), help="Final state.")
@since_option
@until_option
@click.option("--limit", type=click.IntRange(1, MAX_PAGE), default=50, show_default=True)
@json_option
@pass_env
def list_history(
    env: Env,
    project_ref: str | None,
    state: str | None,
    since: datetime | None,
    until: datetime | None,
    limit: int,
    as_json: bool,
) -> None:
    """List finished pipelines, newest first."""
    store = env.store()
    project = project_id(store, project_ref)
    records = store.get_history(project, state, limit, since=since, until=until)
    if as_json:
        emit_json([to_dict(r) for r in records])
        return
    total = store.count_history(project, state, since=since, until=until)
    caption = f"{total} finished pipeline(s)" + (
        f", newest {len(records)} shown" if total > len(records) else ""
    )
    console().print(history_table(records, repos(store), caption))


def stats_of(
    store: StateStore, project: str | None, since: datetime | None, until: datetime | None
) -> dict[str, Any]:
    return stats_dict(
        store.get_history_stats(project, since=since, until=until),
        store.get_duration_percentiles(project, since=since, until=until),
    )


@history.command("stats")
@project_option
@since_option
@until_option
@json_option
@pass_env
def history_stats(
    env: Env, project_ref: str | None, since: datetime | None, until: datetime | None, as_json: bool
) -> None:
    """Totals, success rate, durations (average, p50, p95) and average retries."""
    store = env.store()
    project = project_id(store, project_ref)
    stats = stats_of(store, project, since, until)
    if as_json:
        emit_json({"project_id": project, "since": iso(since), "until": iso(until), **stats})
        return
    scope = project_ref or "all projects"
    window = "".join([f" since {iso(since)}" if since else "", f" until {iso(until)}" if until else ""])
    console().print(stats_table(stats, f"History of {scope}{window}"))


@click.command()
@click.option("--before", type=DATE, help="Delete history completed before DATE.")
@click.option(
    "--keep-days",
    type=click.IntRange(0, MAX_DAYS),
    help=f"Delete history older than N days (0 to {MAX_DAYS:,}).",
)
@project_option
@click.option("--dry-run", is_flag=True, help="Only count what would be deleted.")
@batch_option
@json_option
@pass_env
def prune(
    env: Env,
    before: datetime | None,
    keep_days: int | None,
    project_ref: str | None,
    dry_run: bool,
    batch_size: int,
    as_json: bool,
) -> None:
    """Delete old history, oldest first, in batches (active pipelines are never touched)."""
    if (before is None) == (keep_days is None):
        raise click.UsageError("give exactly one of --before and --keep-days")
    cutoff = before if before is not None else days_ago(keep_days or 0)
    store = env.store()
    project = project_id(store, project_ref)
    if dry_run:
        count = store.prune_history(before=cutoff, project_id=project, dry_run=True)
    else:
        with progress("pruning history", store.count_history(project, until=cutoff)) as advance:
            count = store.prune_history(
                before=cutoff, project_id=project, batch_size=batch_size, progress=advance
            )
    if as_json:
        emit_json({"before": iso(cutoff), "project_id": project, "dry_run": dry_run, "deleted": count})
    elif dry_run:
        click.echo(f"would delete {count} history record(s) completed before {iso(cutoff)} (dry run)")
    else:
        click.echo(f"deleted {count} history record(s) completed before {iso(cutoff)}")


@click.command()
@click.option("--format", "fmt", type=click.Choice(["jsonl", "csv"]), default="jsonl", show_default=True)
@project_option
@since_option
@until_option
@pass_env
def export(
    env: Env, fmt: str, project_ref: str | None, since: datetime | None, until: datetime | None
) -> None:
    """Write history to stdout, oldest first, streaming (JSON Lines or CSV)."""
    store = env.store()
    project = project_id(store, project_ref)
    out = sys.stdout
    writer = csv.writer(out) if fmt == "csv" else None
    if writer is not None:
        writer.writerow(HISTORY_FIELDS)
    with progress("exporting history", store.count_history(project, since=since, until=until)) as advance:
        for record in store.iter_history(project, since=since, until=until):
            if writer is not None:
                writer.writerow(csv_row(record))
            else:
                out.write(history_line(record) + "\n")
            advance(1)
    out.flush()


@click.command("import")
@click.argument("file", type=click.Path(exists=True, dir_okay=False, allow_dash=True, path_type=Path))
@batch_option
@json_option
@pass_env
def import_(env: Env, file: Path, batch_size: int, as_json: bool) -> None:
    """Add history from a JSON Lines FILE (as `export` writes; - for stdin).

    Records whose id is present already are skipped. A malformed line stops the import
    naming its line; nothing of its batch is written, earlier batches stay.
    """
    store = env.store(create=True)
    done = 0

    def count(n: int) -> None:
        nonlocal done
        done += n

    stdin = str(file) == "-"
    source: IO[bytes] = sys.stdin.buffer if stdin else file.open("rb")
    size = None if stdin else file.stat().st_size
    try:
        with progress(f"importing {file}", size) as advance:
            records = _records(source, advance)
            try:
                result = store.import_history(records, batch_size=batch_size, progress=count)
            except ValidationError as exc:
                raise ValidationError(
                    f"{file} {exc}; nothing from its batch was written "
                    f"({done} record(s) in earlier batches were imported or skipped)"
                ) from exc
    finally:
        if not stdin:
            source.close()
    if as_json:
        emit_json({"inserted": result.inserted, "skipped": result.skipped})
    else:
        click.echo(f"imported {result.inserted} history record(s), skipped {result.skipped} already present")


def _records(source: IO[bytes], advance: Advance) -> Iterator[PipelineHistory]:
    def lines() -> Iterator[bytes]:
        for line in source:
            advance(len(line))
            yield line

    return read_history(lines())
