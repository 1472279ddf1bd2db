"""The report's time in each stage: per week, the figures of get_stage_stats for the runs
completed that week, drawn to scale; over the window, the per-stage table; stored text escaped."""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING

import pytest

import vibecc.state_store.store as store_module
from vibecc.state_store import UNSET, PipelineState, Project, StageStats, StateStore
from vibecc.state_store.cli.formatting import duration
from vibecc.state_store.cli.report import STAGE_WEEKS, STAGES, collect
from vibecc.state_store.cli.report_html import render

if TYPE_CHECKING:
    from tests import helpers
    from tests.test_report import parse
else:
    import helpers
    from test_report import parse

QUEUED, CODING, TESTING, REVIEW, MERGED, FAILED = PipelineState
T0 = datetime(2024, 1, 1, 9, tzinfo=UTC)
"""A Monday, long enough ago that a report's window never reaches the weeks after it."""
WEEK_A, WEEK_B, WEEK_C = (T0.replace(hour=0) + timedelta(weeks=n) for n in range(3))
UNSAFE = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f\u2028\u2029\u202a-\u202e\u2066-\u2069]")

Step = tuple[PipelineState, float] | tuple[PipelineState, float, str]
"""(state, seconds spent in it), optionally with the feedback written with the change into it."""


class Clock:
    """The store's clock, moved by hand."""

    def __init__(self) -> None:
        self.now = T0

    def advance(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> Clock:
    clock = Clock()
    monkeypatch.setattr(store_module, "now", lambda: clock.now)
    return clock


def walk(store: StateStore, clock: Clock, project: Project, ticket: int | str, steps: Sequence[Step]) -> str:
    """A pipeline that spends each step in turn from QUEUED, then is archived; its id."""
    pipeline = store.create_pipeline(project.id, ticket, f"ticket {ticket}", "vibecc/work")
    for step in steps:
        if step[0] is not QUEUED:
            store.update_pipeline(pipeline.id, state=step[0], feedback=step[2] if len(step) == 3 else UNSET)
        clock.advance(step[1])
    store.archive_pipeline(pipeline.id)
    return pipeline.id


@pytest.fixture
def weeks(store: StateStore, clock: Clock) -> Project:
    """acme/web: two runs in week A, none in week B, one in week C; acme/api: one in week B."""
    web = store.create_project("Web", "acme/web")
    walk(store, clock, web, 1, [(QUEUED, 10), (CODING, 100), (TESTING, 50), (REVIEW, 300), (MERGED, 1)])
    walk(
        store,
        clock,
        web,
        2,
        [
            (QUEUED, 20),
            (CODING, 200),
            (TESTING, 30),
            (CODING, 60, "CI failed"),
            (TESTING, 40),
            (REVIEW, 100),
            (FAILED, 2),
        ],
    )
    api = store.create_project("Api", "acme/api")
    clock.now = WEEK_B + timedelta(days=2)
    walk(store, clock, api, 7, [(QUEUED, 1), (CODING, 7000), (MERGED, 1)])
    clock.now = WEEK_C + timedelta(days=1)
    walk(store, clock, web, 3, [(QUEUED, 5), (CODING, 1000), (TESTING, 10), (REVIEW, 20), (MERGED, 1)])
    return web


def spent(stats: dict[PipelineState, StageStats]) -> dict[PipelineState, float]:
    """The seconds in each stage of the weekly chart."""
    return {state: stats[state].total_seconds for state in STAGES}


def test_each_week_holds_the_stage_stats_of_the_runs_completed_in_it(
    store: StateStore, weeks: Project
) -> None:
    data = collect(store, weeks.id)
    assert [w.week for w in data.stage_weeks] == [WEEK_A.date(), WEEK_B.date(), WEEK_C.date()]
    for week in data.stage_weeks:
        assert (week.since, week.until) == (
            datetime.combine(week.week, datetime.min.time(), UTC),
            datetime.combine(week.week, datetime.min.time(), UTC) + timedelta(weeks=1),
        )
        assert week.stages == store.get_stage_stats(weeks.id, since=week.since, until=week.until)
    a, b, c = data.stage_weeks
    assert spent(a.stages) == {QUEUED: 30, CODING: 360, TESTING: 120, REVIEW: 400}
    assert a.stages[CODING].visits == 3
    assert spent(b.stages) == dict.fromkeys(STAGES, 0)  # an empty week is shown, with nothing in it
    assert spent(c.stages) == {QUEUED: 5, CODING: 1000, TESTING: 10, REVIEW: 20}
    assert data.stages == store.get_stage_stats(weeks.id)
    assert data.stages[CODING].visits == 4

    everyone = collect(store)  # acme/api's run fills week B
    assert spent(everyone.stage_weeks[1].stages)[CODING] == 7000
    assert everyone.stages == store.get_stage_stats()


def test_a_window_cuts_its_first_and_last_week_and_shows_its_empty_end(
    store: StateStore, weeks: Project
) -> None:
    since, until = WEEK_B + timedelta(days=1), WEEK_C + timedelta(days=12)
    data = collect(store, since=since, until=until)
    assert [w.week for w in data.stage_weeks] == [
        WEEK_B.date(),
        WEEK_C.date(),
        (WEEK_C + timedelta(weeks=1)).date(),
    ]
    assert data.stage_weeks[0].since == since
    assert data.stage_weeks[-1].until == until
    for week in data.stage_weeks:
        assert week.stages == store.get_stage_stats(since=week.since, until=week.until)
    assert spent(data.stage_weeks[-1].stages) == dict.fromkeys(STAGES, 0)
    # The weeks cover the window: their visits and times add up to those of the window.
    assert data.stages == store.get_stage_stats(since=since, until=until)
    for state in PipelineState:
        assert sum(w.stages[state].visits for w in data.stage_weeks) == data.stages[state].visits
        assert sum(w.stages[state].total_seconds for w in data.stage_weeks) == pytest.approx(
            data.stages[state].total_seconds
        )
    assert data.stages[CODING].total_seconds == 8000  # week A's runs are before the window


def test_at_most_the_last_weeks_are_drawn(store: StateStore, clock: Clock) -> None:
    project = store.create_project("Web", "acme/web")
    for n in range(STAGE_WEEKS + 4):
        clock.now = T0 + timedelta(weeks=n)
        walk(store, clock, project, n, [(QUEUED, 1), (CODING, 60 + n), (MERGED, 0)])
    data = collect(store)
    assert len(data.stage_weeks) == STAGE_WEEKS
    assert data.stage_weeks[-1].week == (WEEK_A + timedelta(weeks=STAGE_WEEKS + 3)).date()
    assert [spent(w.stages)[CODING] for w in data.stage_weeks] == [60 + n for n in range(4, STAGE_WEEKS + 4)]


def test_no_weeks_on_an_empty_store_and_no_stage_times_without_timelines(store: StateStore) -> None:
    empty = collect(store)
    assert (empty.stage_weeks, empty.slowest) == ((), ())
    assert all(s.visits == 0 for s in empty.stages.values())
    html = render(empty)
    assert "No finished tickets in this window." in html
    assert 'id="stages"' in html

    project = store.create_project("Old", "acme/old")
    helpers.import_at(store, project.id, [0, 86_400 * 8])  # imported runs: no timelines
    imported = collect(store)
    assert [w.week for w in imported.stage_weeks] == [
        (helpers.T0 - timedelta(days=helpers.T0.weekday())).date(),
        (helpers.T0 + timedelta(days=7 - helpers.T0.weekday())).date(),
    ]
    assert all(spent(w.stages) == dict.fromkeys(STAGES, 0) for w in imported.stage_weeks)
    page = render(imported)
    stages = _section(page, "stages")
    assert "No time in stages recorded for the tickets finished in these weeks." in stages
    assert "<svg" not in stages
    assert "<table" not in stages


def _section(html: str, key: str) -> str:
    found = re.search(rf'<section class="panel" id="{key}">(.*?)</section>', html, re.S)
    assert found, key
    return found.group(1)


def test_the_weekly_chart_and_table_draw_those_figures(store: StateStore, weeks: Project) -> None:
    data = collect(store, weeks.id)
    html = render(data)
    page = parse(html)
    assert page.tooltips_of["stages"] == [
        "week of 2024-01-01: queued 30s, coding 6m 00s, testing 2m 00s, review 6m 40s",
        "week of 2024-01-08: queued 0s, coding 0s, testing 0s, review 0s",
        "week of 2024-01-15: queued 5s, coding 16m 40s, testing 10s, review 20s",
    ]
    chart = _section(html, "stages")
    bars = re.findall(r"<g><title>.*?</title>(.*?)</g>", chart)
    heights = [
        {name: float(h) for name, h in re.findall(r'<rect class="(\w+)"[^>]*height="([\d.]+)"', bar)}
        for bar in bars
    ]
    assert heights[1] == {}  # nothing drawn for the empty week
    # Drawn to one scale: each rectangle's height is in proportion to its seconds.
    per_second = heights[2]["coding"] / 1000
    for bar, week in zip(heights, data.stage_weeks, strict=True):
        for name, height in bar.items():
            assert height == pytest.approx(
                week.stages[PipelineState(name)].total_seconds * per_second, abs=0.1
            )
    rows = dict(re.findall(r'<tr data-state="(\w+)">(.*?)</tr>', chart))
    assert list(rows) == [state.value for state in PipelineState]
    coding = data.stages[CODING]
    assert (coding.visits, coding.mean_seconds, coding.total_seconds) == (4, 340, 1360)
    cells = re.findall(r"<td>([^<]*)</td>", rows["coding"])
    assert cells == ["4", "5m 40s", duration(coding.p50_seconds), duration(coding.p95_seconds), "22m 40s"]
    assert re.findall(r"<td>([^<]*)</td>", rows["failed"]) == ["1", "2s", "2s", "2s", "2s"]
    assert "Slowest 3 tickets, stage by stage" in " ".join(page.text)


HOSTILE = "</title></svg><script>alert(1)</script>\x1b]0;pwn\x07\x9b2J\u202e&amp;"


def test_hostile_stored_text_is_shown_escaped_and_breaks_nothing(store: StateStore, clock: Clock) -> None:
    project = store.create_project(HOSTILE, "acme/web")
    ticket = "<img/src=x>\x1b[31m"
    walk(store, clock, project, ticket, [(QUEUED, 5), (CODING, 50, HOSTILE + "\nline two"), (MERGED, 1)])
    pipeline = store.create_pipeline(project.id, 2, HOSTILE, "b")
    store.update_pipeline(pipeline.id, state=REVIEW, feedback=HOSTILE)
    orphan = "\x1b]0;x\x07<b>gone</b>"  # history of a project that left no name: its id is shown
    record = helpers.history_record(project_id=orphan, ticket_id=ticket, duration_seconds=9)
    store.import_history([replace(record, branch_name="vibecc/gone")])
    html = render(collect(store, title=HOSTILE, scope=HOSTILE))
    page = parse(html)  # every element closed in order: the text broke out of nothing
    assert page.tags["script"] == 0
    assert not UNSAFE.search(html)
    assert "<img" not in html
    assert "<b>gone" not in html
    text = " ".join(page.text)
    assert "acme/web#<img/src=x>\\x1b[31m" in text
    assert "\\x1b]0;x\\x07<b>gone</b>#<img/src=x>\\x1b[31m" in text
    # The feedback is the coding stretch's tooltip, on one line, escaped.
    [tip] = [t for t in page.tooltips_of["slowest"] if t.startswith("coding")]
    shown = "</title></svg><script>alert(1)</script>\\x1b]0;pwn\\x07\\x9b2J\\u202e&amp;"
    assert tip == f"coding: 50s ({shown}\\x0aline two)"
