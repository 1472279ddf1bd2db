"""`vibecc-state export` and `import`: history out and back in, as JSON Lines or CSV."""

from __future__ import annotations

import csv
import io
import os
import stat
import sys
from collections.abc import Iterable, Iterator
from contextlib import contextmanager, suppress
from datetime import datetime
from pathlib import Path
from typing import IO, TextIO

import click

from ..errors import StateStoreError, ValidationError
from ..ops.exchange import (
    FORMATS,
    HISTORY_FIELDS,
    Run,
    csv_row,
    history_line,
    import_runs,
    read_runs,
    with_timelines,
)
from ..records import PipelineHistory
from ..store import StateStore
from . import common
from .args import history_owner_id, project_option, window_options
from .common import CommandFailed, Env, Interrupted, emit_json, interrupted, json_option, pass_env, say
from .formatting import one_line
from .history import batch_option
from .progress import Meter, progress


@click.command()
@click.option("--format", "fmt", type=click.Choice(FORMATS), default="jsonl", show_default=True)
@project_option
@window_options
@pass_env
def export(
    env: Env, fmt: str, project_ref: str | None, since: datetime | None, until: datetime | None
) -> None:
    """Write history to stdout, oldest first, streaming: JSON Lines, or CSV with a header row.

    Either format goes back in with `import`, every field exactly (an empty CSV cell is a
    missing PR). JSON Lines also carry each run's timeline (its state transitions, under
    "timeline"); CSV has no timelines. --project also takes a deleted project, by its id or
    its last repo. On a terminal, control characters in CSV cells are shown escaped; into a
    file or a pipe they are written as they are stored.

    \b
    Example:
      vibecc-state export --format csv --since 2025-01-01 > history.csv
    """
    store = env.store()
    project = history_owner_id(store, project_ref)
    total = store.count_history(project, since=since, until=until)
    records = store.iter_history(project, since=since, until=until)
    with _utf8_stdout() as out, progress("exporting history", total) as meter:
        try:
            _write(out, fmt, store, records, meter, terminal=common.stdout_is_terminal())
        except (KeyboardInterrupt, StateStoreError) as exc:
            if not interrupted(exc):
                raise
            raise Interrupted(
                f"interrupted after {meter.done:,} of {total:,} record(s): the output is incomplete"
            ) from None


def _write(
    out: TextIO,
    fmt: str,
    store: StateStore,
    records: Iterable[PipelineHistory],
    meter: Meter,
    *,
    terminal: bool,
) -> None:
    if fmt == "jsonl":
        for record, timeline in with_timelines(store, records):
            out.write(history_line(record, timeline) + "\n")  # JSON escapes every control character
            meter.add(1)
        return
    # RFC 4180 ends records with CRLF, and Python's csv module quotes a lone CR in a cell only
    # when CR ends lines; on a terminal every control character is escaped anyway.
    writer = csv.writer(out, lineterminator="\n" if terminal else "\r\n")
    writer.writerow(HISTORY_FIELDS)
    for record in records:
        cells = csv_row(record)
        writer.writerow([one_line(cell) for cell in cells] if terminal else cells)
        meter.add(1)


@contextmanager
def _utf8_stdout() -> Iterator[TextIO]:
    """stdout as UTF-8 whatever the locale, with newlines written as they are."""
    sys.stdout.flush()
    buffer = getattr(sys.stdout, "buffer", None)
    if buffer is None:
        yield sys.stdout
        return
    out = io.TextIOWrapper(buffer, encoding="utf-8", newline="", write_through=True)
    try:
        yield out
    finally:
        with suppress(BrokenPipeError):
            out.flush()
        out.detach()


@click.command("import")
@click.argument("file", type=click.Path(exists=True, dir_okay=False, allow_dash=True, path_type=Path))
@click.option(
    "--format",
    "fmt",
    type=click.Choice(FORMATS),
    help="The format of FILE  [default: told from its first line]",
)
@batch_option
@json_option
@pass_env
def import_(env: Env, file: Path, fmt: str | None, batch_size: int, as_json: bool) -> None:
    """Add history from FILE as `export` writes it, JSON Lines or CSV (- reads stdin).

    JSON Lines bring each run's timeline with it (lines without one, from older exports,
    add runs without a timeline); CSV carries no timelines. Records whose id is present
    already are skipped, their timelines untouched. A malformed line stops the import
    naming its line; nothing of its batch is written, earlier batches stay. Into a database
    named with --db that does not exist yet, import creates a new store (and removes it
    again when the import fails before writing anything).

    \b
    Example:
      vibecc-state --db restored.db import history.jsonl
      vibecc-state export | vibecc-state --db copy.db import -
    """
    stdin = str(file) == "-"
    name = "stdin" if stdin else str(file)
    try:
        source: IO[bytes] = sys.stdin.buffer if stdin else file.open("rb")
    except OSError as exc:
        raise CommandFailed(f"cannot read {file}: {exc.strerror or exc}") from None
    try:
        _import(env, source, name, fmt, batch_size, as_json)
    finally:
        if not stdin:
            source.close()


def _import(env: Env, source: IO[bytes], name: str, fmt: str | None, batch_size: int, as_json: bool) -> None:
    size = _size(source)
    committed = 0

    def count(n: int) -> None:
        nonlocal committed
        committed += n

    with progress(f"importing {name}", None) as meter:
        try:
            runs = _counted(read_runs(source, fmt, read=lambda done: meter.at(done, size)), meter)
            store = env.store(create=env.explicit)
            result = import_runs(store, runs, batch_size=batch_size, progress=count)
        except (KeyboardInterrupt, StateStoreError) as exc:
            if committed == 0:
                env.discard_new_database()
            if interrupted(exc):
                raise Interrupted(
                    f"interrupted: {committed:,} record(s) in batches already committed were imported "
                    "or skipped as present; the batch in progress was not written"
                ) from None
            if isinstance(exc, ValidationError):
                done = (
                    f"nothing from its batch was written ({committed:,} record(s) in earlier batches "
                    "were imported or skipped)"
                    if committed
                    else "nothing was imported"
                )
                raise ValidationError(f"{name} {exc}; {done}") from exc
            raise
    if as_json:
        emit_json({"inserted": result.inserted, "skipped": result.skipped})
    else:
        say(f"imported {result.inserted} history record(s), skipped {result.skipped} already present")


def _size(source: IO[bytes]) -> int | None:
    """The size of a regular file, which drives the time left; None for a pipe."""
    try:
        info = os.fstat(source.fileno())
    except (OSError, ValueError, io.UnsupportedOperation):
        return None
    return info.st_size if stat.S_ISREG(info.st_mode) and info.st_size else None


def _counted(runs: Iterable[Run], meter: Meter) -> Iterator[Run]:
    for run in runs:
        meter.add(1)
        yield run
