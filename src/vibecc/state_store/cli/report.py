"""The data of the HTML report, read from the store in bounded memory (history is streamed
and binned as it goes). report_html.render turns it into the page."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any

from ..ops.exchange import stats_dict
from ..records import Pipeline, PipelineState
from ..store import StateStore
from .formatting import by_state

DURATION_EDGES = (0, 60, 300, 900, 1800, 3600, 7200, 14400, 28800, 86400)
DURATION_LABELS = ("<1m", "1-5m", "5-15m", "15-30m", "30-60m", "1-2h", "2-4h", "4-8h", "8-24h", "1d+")
RETRY_BUCKETS = 6
"""Tickets with 0, 1, 2, 3, 4 and 5 or more retries (CI + review)."""
MAX_DAILY_BARS = 120


@dataclass(frozen=True, slots=True)
class Bar:
    """One category of a stacked chart: merged and failed tickets."""

    label: str
    merged: int
    failed: int


@dataclass(frozen=True, slots=True)
class Card:
    """An active pipeline on the board."""

    ticket_id: str
    title: str
    repo: str
    pr_id: int | None
    retries_ci: int
    retries_review: int
    updated_at: datetime


@dataclass(frozen=True, slots=True)
class ReportData:
    title: str
    scope: str
    generated_at: datetime
    stats: dict[str, Any]
    finished: tuple[Bar, ...]
    finished_unit: str
    durations: tuple[Bar, ...]
    retries: tuple[Bar, ...]
    board: dict[str, tuple[Card, ...]]


def collect(
    store: StateStore,
    project_id: str | None = None,
    *,
    since: datetime | None = None,
    until: datetime | None = None,
    title: str = "VibeCC pipelines",
    scope: str = "all projects",
) -> ReportData:
    """Read everything the report shows; the numbers are those of `history stats`."""
    stats = stats_dict(
        store.get_history_stats(project_id, since=since, until=until),
        store.get_duration_percentiles(project_id, since=since, until=until),
    )
    days: Counter[tuple[date, bool]] = Counter()
    durations: Counter[tuple[int, bool]] = Counter()
    retries: Counter[tuple[int, bool]] = Counter()
    for record in store.iter_history(project_id, since=since, until=until):
        merged = record.final_state is PipelineState.MERGED
        days[(record.completed_at.astimezone(UTC).date(), merged)] += 1
        durations[(_duration_bin(record.duration_seconds), merged)] += 1
        tries = record.total_retries_ci + record.total_retries_review
        retries[(min(tries, RETRY_BUCKETS - 1), merged)] += 1
    finished, unit = _per_day(days, since, until)
    repos = {p.id: p.repo for p in store.list_projects()}
    return ReportData(
        title=title,
        scope=scope,
        generated_at=datetime.now(UTC),
        stats=stats,
        finished=finished,
        finished_unit=unit,
        durations=tuple(
            Bar(label, durations[(i, True)], durations[(i, False)]) for i, label in enumerate(DURATION_LABELS)
        ),
        retries=tuple(
            Bar(f"{i}+" if i == RETRY_BUCKETS - 1 else str(i), retries[(i, True)], retries[(i, False)])
            for i in range(RETRY_BUCKETS)
        ),
        board=_board(store.list_pipelines(project_id), repos),
    )


def _duration_bin(seconds: int) -> int:
    return sum(1 for edge in DURATION_EDGES[1:] if seconds >= edge)


def _per_day(
    counts: Counter[tuple[date, bool]], since: datetime | None, until: datetime | None
) -> tuple[tuple[Bar, ...], str]:
    """Bars per UTC day from the first to the last day (per week when that is too many)."""
    if not counts:
        return (), "day"
    seen = [day for day, _ in counts]
    first, last = min(seen), max(seen)
    # Show the asked window's empty ends too, unless they would swamp the bars.
    if since is not None and (first - since.astimezone(UTC).date()).days <= MAX_DAILY_BARS // 4:
        first = since.astimezone(UTC).date()
    end = (until - timedelta(microseconds=1)) if until is not None else datetime.now(UTC)
    if (end.astimezone(UTC).date() - last).days <= MAX_DAILY_BARS // 4:
        last = max(last, end.astimezone(UTC).date())
    span = (last - first).days + 1
    if span <= MAX_DAILY_BARS:
        days = [first + timedelta(days=i) for i in range(span)]
        return tuple(Bar(d.isoformat(), counts[(d, True)], counts[(d, False)]) for d in days), "day"
    weekly: Counter[tuple[date, bool]] = Counter()
    for (day, merged), n in counts.items():
        weekly[(day - timedelta(days=day.weekday()), merged)] += n
    start = first - timedelta(days=first.weekday())
    weeks = [start + timedelta(weeks=i) for i in range((last - start).days // 7 + 1)]
    return tuple(Bar(w.isoformat(), weekly[(w, True)], weekly[(w, False)]) for w in weeks), "week"


def _board(pipelines: list[Pipeline], repos: dict[str, str]) -> dict[str, tuple[Card, ...]]:
    return {
        state.value: tuple(
            Card(
                ticket_id=p.ticket_id,
                title=p.ticket_title,
                repo=repos.get(p.project_id, p.project_id),
                pr_id=p.pr_id,
                retries_ci=p.retry_count_ci,
                retries_review=p.retry_count_review,
                updated_at=p.updated_at,
            )
            for p in cards
        )
        for state, cards in by_state(pipelines).items()
    }
