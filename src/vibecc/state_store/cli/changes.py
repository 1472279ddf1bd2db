"""`vibecc-state changes` (the change log, read once or followed like `tail -f`) and the
watching behind `pipelines list --watch`."""

from __future__ import annotations

import signal
import sys
import threading
import time
from collections.abc import Callable, Sequence
from types import FrameType, TracebackType
from typing import Any

import click
from rich.console import RenderableType
from rich.live import Live

from ..errors import CursorExpiredError, StateStoreError
from ..ops.exchange import to_dict
from ..records import Change
from ..store import StateStore
from .args import history_owner, names
from .common import CommandFailed, Env, Interrupted, console, interrupted, json_text, pass_env, say
from .views import changes_table

WAIT_SECONDS = 0.5
"""How long one wait for a commit lasts (a commit ends it at once): the longest a Ctrl-C
waits to be acted on."""
PAGE = 1000
"""Changes read per call: a batch printed, then flushed."""
REDRAW_GAP = 0.1
"""The least time between two redraws of a watched board: a burst of commits is drawn once
at its end instead of once per commit, so a busy store is not read in a loop."""
NOW = "now"


class Cursor(click.ParamType[int | str, Any]):
    """A change-log cursor: a number of 0 or more, or "now" (the newest committed change)."""

    name = "CURSOR"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> int | str:
        if isinstance(value, int):
            return value
        text = str(value).strip()
        if text.lower() == NOW:
            return NOW
        if text.isascii() and text.isdigit():
            return int(text)
        self.fail(f"{value!r} is not a cursor (a number of 0 or more, or 'now')", param, ctx)


@click.command()
@click.option(
    "--since",
    type=Cursor(),
    default="0",
    show_default=True,
    help="Only changes after this cursor: the one a previous run printed, or 'now'.",
)
@click.option(
    "--project",
    "project_ref",
    metavar="REPO|ID",
    help="Only changes of this project (owner/name or its id; also a deleted project).",
)
@click.option("--limit", type=click.IntRange(1), help="Stop after N changes.")
@click.option("--follow", "-f", is_flag=True, help="Keep printing changes as they commit, until Ctrl-C.")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object per change (JSON Lines).")
@pass_env
def changes(
    env: Env, since: int | str, project_ref: str | None, limit: int | None, follow: bool, as_json: bool
) -> None:
    """Print the change log: every committed write of a project, pipeline or history record,
    in commit order (seq, time, kind, op, id, project, version).

    Prints the changes after --since and exits, saying on stderr the cursor to read on from;
    reading on from it never shows a change twice nor skips one. --follow keeps printing as
    changes commit; Ctrl-C stops it (exit 130) with the cursor to resume from. A cursor the
    log no longer reaches (pruned, or from another database) is an error (exit 1): reload the
    state from the tables and read on from a cursor taken before that (`--since now`).

    \b
    Example:
      vibecc-state changes --since 1200 --project acme/web --follow --json
    """
    store = env.store()
    owner = history_owner(store, project_ref).id if project_ref is not None else None
    cursor = store.change_cursor() if since == NOW else int(since)
    reader = _Reader(store, owner, cursor, _Output(store, as_json=as_json))
    try:
        reader.run(limit=limit, follow=follow)
    except CursorExpiredError as exc:
        raise CommandFailed(_expired(env, store, reader.cursor)) from exc
    except (KeyboardInterrupt, StateStoreError) as exc:
        if not interrupted(exc):
            raise
        raise Interrupted(
            f"interrupted after {reader.shown} change(s); resume with --since {reader.cursor}"
        ) from None
    say(f"{reader.shown} change(s); read on with --since {reader.cursor}", err=True)


class _Output:
    """Prints batches of changes as one table (the header with the first batch) or as JSON
    Lines, flushing after each."""

    def __init__(self, store: StateStore, *, as_json: bool) -> None:
        self.store = store
        self.as_json = as_json
        self.header = True
        self.repos: dict[str, str] = {}
        self.unknown: set[str] = set()
        """Project ids without a repo even after the repos were last looked up."""

    def batch(self, found: Sequence[Change]) -> None:
        if not found:
            return
        if self.as_json:
            lines = (json_text(to_dict(c), separators=(",", ":")) for c in found)
            click.echo("\n".join(lines))
        else:
            self._look_up_repos(found)
            out = console()
            out.print(changes_table(found, self.repos, header=self.header, width=out.width))
            self.header = False
        sys.stdout.flush()

    def _look_up_repos(self, found: Sequence[Change]) -> None:
        """Repos of the projects changes name, looked up again when one is new to it."""
        ids = {c.project_id for c in found if c.project_id is not None}
        if ids - self.repos.keys() - self.unknown:
            self.repos = names(self.store)
            self.unknown = ids - self.repos.keys()


class _Reader:
    """Reads the log from a cursor; `cursor` is always just after the last batch printed."""

    def __init__(self, store: StateStore, project: str | None, cursor: int, output: _Output) -> None:
        self.store = store
        self.project = project
        self.cursor = cursor
        self.output = output
        self.shown = 0

    def run(self, *, limit: int | None, follow: bool) -> None:
        """Print up to `limit` changes: those there now, and with `follow` those to come."""
        with CtrlC() as ctrl_c:
            while limit is None or self.shown < limit:
                size = PAGE if limit is None else min(PAGE, limit - self.shown)
                page = self.store.changes_since(self.cursor, limit=size, project_id=self.project)
                self.output.batch(page.changes)
                self.shown += len(page.changes)
                self.cursor = page.next_cursor
                ctrl_c.check()
                if len(page.changes) < size:  # read up to the newest change
                    if not follow:
                        return
                    self.store.wait_for_changes(self.cursor, timeout=WAIT_SECONDS)
                    ctrl_c.check()


class CtrlC:
    """Ctrl-C as a flag that check() turns into KeyboardInterrupt between calls of the store.

    A KeyboardInterrupt raised anywhere (the default) may land inside a store call, between
    taking a lock and the block that releases it, and leave closing the store waiting for
    ever; or between printing a batch and moving the cursor past it. Here it is acted on at
    the next check: at most WAIT_SECONDS later. A second Ctrl-C interrupts at once (a write
    blocked on a reader that stopped reading).
    """

    def __init__(self) -> None:
        self.pressed = False
        self._previous: Any = None
        self._installed = False

    def __enter__(self) -> CtrlC:
        if threading.current_thread() is threading.main_thread():  # the one that gets signals
            self._previous = signal.signal(signal.SIGINT, self._press)
            self._installed = True
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self._installed:
            signal.signal(signal.SIGINT, signal.SIG_DFL if self._previous is None else self._previous)

    def _press(self, number: int, frame: FrameType | None) -> None:
        if self.pressed:
            raise KeyboardInterrupt
        self.pressed = True

    def check(self) -> None:
        """Raise KeyboardInterrupt when Ctrl-C was pressed."""
        if self.pressed:
            raise KeyboardInterrupt


def _expired(env: Env, store: StateStore, cursor: int) -> str:
    try:
        last: int | None = store.change_cursor()
    except StateStoreError:
        last = None
    if last is not None and cursor > last:
        why = (
            f"cursor {cursor} is beyond the change log, whose last change is {last} "
            "(was the database replaced or restored?)"
        )
    else:
        why = f"cursor {cursor} is older than the change log: the changes after it were pruned"
    return (
        f"{why}; resynchronise: take the cursor `{env.command('changes --since now')}` prints, "
        "reload the state from the tables (pipelines list, projects list, history list), "
        "then read on with --since that cursor"
    )


def watch(store: StateStore, render: Callable[[], RenderableType]) -> None:
    """Show render(), and again each time a change commits, until Ctrl-C (Interrupted).

    On a terminal the drawing is replaced in place (rich's Live); elsewhere (a pipe, a log)
    each drawing is printed after the last.
    """
    out = console()
    try:
        with CtrlC() as ctrl_c:
            cursor = store.change_cursor()  # taken before reading, so nothing after it is missed
            shown = render()
            if out.is_terminal:
                with Live(
                    shown, console=out, auto_refresh=False, redirect_stdout=False, redirect_stderr=False
                ) as live:
                    while True:
                        cursor = _next_commit(store, cursor, ctrl_c)
                        live.update(render(), refresh=True)
            else:
                while True:
                    out.print(shown)
                    sys.stdout.flush()
                    cursor = _next_commit(store, cursor, ctrl_c)
                    shown = render()
    except (KeyboardInterrupt, StateStoreError) as exc:
        if not interrupted(exc):
            raise
        raise Interrupted("interrupted; stopped watching") from None


def _next_commit(store: StateStore, cursor: int, ctrl_c: CtrlC) -> int:
    """Wait for a change after `cursor`; the newest cursor once one came."""
    started = time.monotonic()
    while not store.wait_for_changes(cursor, timeout=WAIT_SECONDS):
        ctrl_c.check()
    time.sleep(max(0.0, REDRAW_GAP - (time.monotonic() - started)))
    ctrl_c.check()
    return store.change_cursor()
