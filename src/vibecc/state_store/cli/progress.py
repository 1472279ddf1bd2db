"""Progress of long commands (import, copy, export, prune, backup), always on stderr.

On a terminal a bar shows the rows done, their rate and the time left; elsewhere (a log, a
pipe, cron) one line every REPORT_EVERY seconds says the rows done and the rate, so that a
long job is never silent and stdout stays clean for the data.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import click

from . import common
from .formatting import one_line

REPORT_EVERY = 5.0
"""Seconds between progress lines when stderr is not a terminal."""
_REDRAW_EVERY = 0.1


class Meter:
    """Counts the rows (or pages) a command has done and shows it on stderr.

    `total` is the number of rows when known. Commands that know their position in something
    else (the bytes of an import file) report it with at(), which then drives the time left.
    """

    def __init__(self, description: str, total: int | None, unit: str = "rows") -> None:
        self.description = one_line(description)
        self.total = total
        self.unit = unit
        self.done = 0
        self._position: tuple[int, int | None] | None = None
        self._started = time.monotonic()
        self._last_line = self._started
        self._last_draw = 0.0
        self._bar: Any = None
        self._task: Any = None

    def add(self, n: int) -> None:
        """`n` more rows done."""
        self.done += n
        self._tick()

    def at(self, done: int, total: int | None) -> None:
        """The position in what drives the time left (bytes read of a file, pages copied)."""
        self._position = (done, total)
        self._tick()

    @property
    def count(self) -> int:
        """The rows done; the position when only that is reported (pages of a backup)."""
        return self._position[0] if self._position is not None and not self.done else self.done

    @property
    def rate(self) -> float:
        elapsed = time.monotonic() - self._started
        return self.count / elapsed if elapsed > 0 else 0.0

    def _tick(self) -> None:
        now = time.monotonic()
        if self._bar is not None:
            if now - self._last_draw >= _REDRAW_EVERY:
                self._draw(now)
        elif now - self._last_line >= REPORT_EVERY:
            self._last_line = now
            click.echo(self.line(), err=True)

    def line(self) -> str:
        """The progress line written off a terminal."""
        of = f" of {self.total:,}" if self.total is not None else ""
        share = ""
        done, total = self._position or (self.done, self.total)
        if total:
            share = f" ({min(100.0, 100 * done / total):.0f}%)"
        return f"{self.description}: {self.count:,}{of} {self.unit}{share}, {self.rate:,.0f} {self.unit}/s"

    def _draw(self, now: float) -> None:
        self._last_draw = now
        done, total = self._position or (self.done, self.total)
        self._bar.update(self._task, completed=done, total=total, rows=self.count, rate=self.rate)

    def start_bar(self) -> None:
        from rich.console import Console
        from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

        of = f" of {self.total:,}" if self.total is not None else ""
        self._bar = Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            TextColumn(f"{{task.fields[rows]:,}}{of} {self.unit}"),
            TextColumn(f"{{task.fields[rate]:,.0f}} {self.unit}/s"),
            TimeElapsedColumn(),
            TextColumn("elapsed,"),
            TimeRemainingColumn(),
            TextColumn("left"),
            console=Console(stderr=True, force_terminal=True),
            redirect_stdout=False,
            redirect_stderr=False,
            transient=True,
        )
        self._bar.start()
        self._task = self._bar.add_task(self.description, total=self.total, rows=0, rate=0.0)

    def stop(self) -> None:
        if self._bar is not None:
            self._bar.stop()
            self._bar = None


@contextmanager
def progress(description: str, total: int | None, unit: str = "rows") -> Iterator[Meter]:
    """A Meter for the block: a bar when stderr is a terminal, else a line every few seconds."""
    meter = Meter(description, total, unit)
    if common.stderr_is_terminal():
        meter.start_bar()
    try:
        yield meter
    finally:
        meter.stop()
