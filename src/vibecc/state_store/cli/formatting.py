"""How the command-line tool and the HTML report show numbers, times and the board: pure
helpers both use, so a duration or a board column reads the same on a terminal and on the page."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, datetime

from ..records import Pipeline, PipelineState

# Shown as escapes wherever text reaches a terminal: C0 and C1 control characters and DEL
# (stored text comes from ticket trackers anyone can write to, and must not move the cursor,
# ring the bell or retitle the terminal), the Unicode line and paragraph separators (which
# end a line for Python and some terminals), the bidirectional overrides and isolates (which
# reorder what is shown), and lone surrogates: the bytes of a file name that is not UTF-8,
# which would reach the terminal raw (0x9b is CSI to a terminal reading 8-bit controls).
_UNSAFE = (
    *range(0x20),
    0x7F,
    *range(0x80, 0xA0),
    0x2028,
    0x2029,
    *range(0x202A, 0x202F),
    *range(0x2066, 0x206A),
    *range(0xD800, 0xE000),
)
_ESCAPES = {
    code: f"\\x{code:02x}"
    if code < 0x100
    else f"\\x{code - 0xDC00:02x}"
    if 0xDC80 <= code < 0xDD00
    else f"\\u{code:04x}"
    for code in _UNSAFE
}
_KEEP_LINES = {code: escape for code, escape in _ESCAPES.items() if chr(code) not in "\n\t"}


def plain(value: str) -> str:
    """Text made safe to print, keeping its line breaks and tabs: every other control
    character escaped (``\\x1b``)."""
    return value.translate(_KEEP_LINES)


def one_line(value: str) -> str:
    """Text made safe to print on one line: every control character escaped, line breaks and
    tabs too (``\\n``)."""
    return value.translate(_ESCAPES)


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


def when_exactly(moment: datetime) -> str:
    """A timestamp for people where the order within a minute matters: UTC to the second."""
    return moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S")


def by_state(pipelines: Iterable[Pipeline]) -> dict[PipelineState, list[Pipeline]]:
    """The columns of a board: pipelines per state, oldest first, in the order of the states.

    Every active state has its column, empty or not; MERGED and FAILED only when a pipeline
    is in them (one that finished but was not archived yet).
    """
    columns: dict[PipelineState, list[Pipeline]] = {state: [] for state in PipelineState.active()}
    for p in sorted(pipelines, key=lambda p: (p.created_at, p.id)):
        columns.setdefault(p.state, []).append(p)
    return {state: columns[state] for state in PipelineState if state in columns}
