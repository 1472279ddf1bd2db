"""How the command-line tool and the HTML report show numbers, times and the board: pure
helpers both use, so a duration or a board column reads the same on a terminal and on the page."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, datetime

from .records import Pipeline, PipelineState


def duration(seconds: float | None) -> str:
    """45s, 12m 03s, 2h 05m, 3d 4h; "-" when there is none."""
    if seconds is None:
        return "-"
    whole = round(seconds)
    if whole < 60:
        return f"{whole}s"
    minutes, secs = divmod(whole, 60)
    if minutes < 60:
        return f"{minutes}m {secs:02d}s"
    hours, minutes = divmod(minutes, 60)
    if hours < 24:
        return f"{hours}h {minutes:02d}m"
    days, hours = divmod(hours, 24)
    return f"{days}d {hours}h"


def percent(share: float) -> str:
    """0.8125 -> 81.2%."""
    return f"{share * 100:.1f}%"


def when(moment: datetime) -> str:
    """A timestamp for people: UTC to the minute."""
    return moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M")


def by_state(pipelines: Iterable[Pipeline]) -> dict[PipelineState, list[Pipeline]]:
    """The columns of a board: pipelines per state, oldest first, in the order of the states.

    Every active state has its column, empty or not; MERGED and FAILED only when a pipeline
    is in them (one that finished but was not archived yet).
    """
    columns: dict[PipelineState, list[Pipeline]] = {state: [] for state in PipelineState.active()}
    for p in sorted(pipelines, key=lambda p: (p.created_at, p.id)):
        columns.setdefault(p.state, []).append(p)
    return {state: columns[state] for state in PipelineState if state in columns}
