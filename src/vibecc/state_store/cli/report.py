"""The data of the HTML report, read from the store in bounded memory (history is streamed
and binned as it goes, keeping only the slowest runs). report_html.render turns it into the page."""

from __future__ import annotations

import heapq
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from typing import Any

from ..errors import PipelineNotFoundError
from ..ops.exchange import stats_dict
from ..records import Pipeline, PipelineHistory, PipelineState, StageStats, Transition
from ..store import StateStore
from .formatting import by_state

DURATION_EDGES = (0, 60, 300, 900, 1800, 3600, 7200, 14400, 28800, 86400)
DURATION_LABELS = ("<1m", "1-5m", "5-15m", "15-30m", "30-60m", "1-2h", "2-4h", "4-8h", "8-24h", "1d+")
RETRY_BUCKETS = 6
"""Tickets with 0, 1, 2, 3, 4 and 5 or more retries (CI + review)."""
MAX_DAILY_BARS = 120
STAGES = (PipelineState.QUEUED, PipelineState.CODING, PipelineState.TESTING, PipelineState.REVIEW)
"""The stages of the weekly chart: the states a ticket is worked in."""
STAGE_WEEKS = 12
"""The weekly stage chart shows at most this many weeks, the newest last."""
SLOWEST = 5
"""How many of the longest runs of the window the report draws stage by stage."""


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
class StageWeek:
    """The time in each state of the runs completed in one week (Monday to Monday, UTC): what
    get_stage_stats gives for [since, until), the week cut to the report's window."""

    week: date
    since: datetime
    until: datetime | None
    stages: dict[PipelineState, StageStats]


@dataclass(frozen=True, slots=True)
class Segment:
    """A stretch of a run in one state; state None when the timeline does not tell (a run
    imported or finished before the store kept timelines). `feedback` is what the transition
    into it recorded."""

    state: PipelineState | None
    seconds: float
    feedback: str | None = None


@dataclass(frozen=True, slots=True)
class SlowRun:
    """One of the longest runs of the window, with its stretches from start to completion."""

    repo: str
    ticket_id: str
    title: str
    final_state: PipelineState
    completed_at: datetime
    duration_seconds: int
    segments: tuple[Segment, ...]


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
    stage_weeks: tuple[StageWeek, ...] = ()
    stages: dict[PipelineState, StageStats] = field(default_factory=dict)
    slowest: tuple[SlowRun, ...] = ()


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
    longest: list[tuple[int, datetime, str, PipelineHistory]] = []
    for record in store.iter_history(project_id, since=since, until=until):
        merged = record.final_state is PipelineState.MERGED
        days[(record.completed_at.astimezone(UTC).date(), merged)] += 1
        durations[(_duration_bin(record.duration_seconds), merged)] += 1
        tries = record.total_retries_ci + record.total_retries_review
        retries[(min(tries, RETRY_BUCKETS - 1), merged)] += 1
        # A min-heap of the longest so far (the id is unique, so records are never compared).
        heapq.heappush(longest, (record.duration_seconds, record.completed_at, record.id, record))
        if len(longest) > SLOWEST:
            heapq.heappop(longest)
    finished, unit = _per_day(days, since, until)
    deleted = {p.id: f"{p.repo} (deleted)" for p in store.list_deleted_projects()}
    repos = {p.id: p.repo for p in store.list_projects()}
    weeks = (
        _stage_weeks(store, project_id, min(d for d, _ in days), max(d for d, _ in days), since, until)
        if days
        else ()
    )
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
        stage_weeks=weeks,
        stages=store.get_stage_stats(project_id, since=since, until=until),
        slowest=tuple(
            _slow_run(store, record, deleted | repos) for *_, record in sorted(longest, reverse=True)
        ),
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
    start = first - timedelta(days=first.weekday())
    if (last - start).days // 7 + 1 <= MAX_DAILY_BARS:
        weekly: Counter[tuple[date, bool]] = Counter()
        for (day, merged), n in counts.items():
            weekly[(day - timedelta(days=day.weekday()), merged)] += n
        weeks = [start + timedelta(weeks=i) for i in range((last - start).days // 7 + 1)]
        return tuple(Bar(w.isoformat(), weekly[(w, True)], weekly[(w, False)]) for w in weeks), "week"
    # Years, or tens, hundreds, ... of years: never more than MAX_DAILY_BARS bars (a history
    # from year 1 to 9999 is 520,000 weeks).
    step = 1
    while (last.year - first.year) // step + 1 > MAX_DAILY_BARS:
        step *= 10
    grouped: Counter[tuple[int, bool]] = Counter()
    for (day, merged), n in counts.items():
        grouped[((day.year - first.year) // step, merged)] += n
    spans = range((last.year - first.year) // step + 1)
    bars = tuple(Bar(str(first.year + i * step), grouped[(i, True)], grouped[(i, False)]) for i in spans)
    return bars, "year" if step == 1 else f"{step} years"


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


def _monday(day: date) -> date:
    return day - timedelta(days=day.weekday())


def _stage_weeks(
    store: StateStore,
    project_id: str | None,
    oldest: date,
    newest: date,
    since: datetime | None,
    until: datetime | None,
) -> tuple[StageWeek, ...]:
    """The last STAGE_WEEKS weeks of the window that hold runs, each read with get_stage_stats
    (an exact scan of the runs completed that week)."""
    last = _monday(newest)
    end = (until - timedelta(microseconds=1)) if until is not None else datetime.now(UTC)
    # Up to the window's end when it is near, as the daily chart does.
    near, reach = _monday(end.astimezone(UTC).date()), _shifted(last, STAGE_WEEKS // 4)
    if last <= near and (reach is None or near <= reach):
        last = near
    first = max(_monday(oldest), _shifted(last, -(STAGE_WEEKS - 1)) or _monday(oldest))
    weeks = []
    week: date | None = first
    while week is not None and week <= last:
        start = datetime.combine(week, time(), UTC)
        following = _shifted(week, 1)
        stop = datetime.combine(following, time(), UTC) if following is not None else None
        lower = max(start, since) if since is not None else start
        upper = min((t for t in (stop, until) if t is not None), default=None)
        weeks.append(
            StageWeek(week, lower, upper, store.get_stage_stats(project_id, since=lower, until=upper))
        )
        week = following
    return tuple(weeks)


def _shifted(week: date, weeks: int) -> date | None:
    """`week` moved by that many weeks; None past the range of dates."""
    try:
        return week + timedelta(weeks=weeks)
    except OverflowError:
        return None


def _slow_run(store: StateStore, record: PipelineHistory, repos: dict[str, str]) -> SlowRun:
    try:
        timeline: Sequence[Transition] = store.get_timeline(record.id)
    except PipelineNotFoundError:  # pruned since it was read
        timeline = ()
    return SlowRun(
        repo=repos.get(record.project_id, record.project_id),
        ticket_id=record.ticket_id,
        title=record.ticket_title,
        final_state=record.final_state,
        completed_at=record.completed_at,
        duration_seconds=record.duration_seconds,
        segments=segments(record, timeline),
    )


def segments(record: PipelineHistory, timeline: Sequence[Transition]) -> tuple[Segment, ...]:
    """The stretches of a finished run from its start to its completion, by its timeline.

    What the timeline does not tell is one unknown stretch: time before its first transition
    (all of a run without one, e.g. an imported record) and the span of a reconstructed
    transition, whose states between are not known. Transitions after the completion (a
    pipeline saved to history that went on changing) are not part of the run.
    """
    start, end = record.started_at, record.completed_at
    marks = [t for t in timeline if t.at <= end]
    out: list[Segment] = []

    def add(state: PipelineState | None, seconds: float, feedback: str | None) -> None:
        if state is None and out and out[-1].state is None:
            out[-1] = Segment(None, out[-1].seconds + seconds)
        else:
            out.append(Segment(state, seconds, feedback))

    opening = marks[0].at if marks else end
    if opening > start:
        add(None, (opening - start).total_seconds(), None)
    for i, mark in enumerate(marks):
        stop = marks[i + 1].at if i + 1 < len(marks) else end
        seconds = max(0.0, (stop - max(mark.at, start)).total_seconds())
        if mark.reconstructed:
            add(None, seconds, None)
        else:
            add(mark.to_state, seconds, mark.feedback)
    return tuple(out)
