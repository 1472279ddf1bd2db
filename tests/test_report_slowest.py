"""The report's slowest tickets: the longest runs completed in the window, longest first, each
split into the stretches its timeline tells (what it does not tell shown as unknown)."""

from __future__ import annotations

import re
from datetime import timedelta
from typing import TYPE_CHECKING

from vibecc.state_store import PipelineState, StateStore, migrate
from vibecc.state_store.cli.report import SLOWEST, Segment, collect
from vibecc.state_store.cli.report_html import render

if TYPE_CHECKING:
    from tests import helpers
    from tests.test_report import parse
    from tests.test_report_stages import T0, Clock, Step, clock, walk
else:
    import helpers
    from test_report import parse
    from test_report_stages import T0, Clock, Step, clock, walk

__all__ = ["clock"]  # the store's clock, a fixture of these tests too

QUEUED, CODING, TESTING, REVIEW, MERGED, FAILED = PipelineState


def known(segments: tuple[Segment, ...]) -> list[tuple[str, float]]:
    return [(s.state.value if s.state else "unknown", s.seconds) for s in segments]


def test_the_longest_runs_of_the_window_longest_first(store: StateStore, clock: Clock) -> None:
    web = store.create_project("Web", "acme/web")
    api = store.create_project("Api", "acme/api")
    # Ticket 4 takes as long as ticket 2 and completes later: it comes first.
    for ticket, seconds in [(1, 100), (2, 500), (3, 300), (4, 500), (5, 50), (6, 400), (7, 200)]:
        walk(store, clock, web, ticket, [(QUEUED, 10), (CODING, seconds - 10), (MERGED, 0)])
        clock.advance(3600)
    middle = clock.now
    walk(store, clock, api, 8, [(QUEUED, 10), (CODING, 340), (FAILED, 0)])

    data = collect(store, web.id)
    assert SLOWEST == 5
    assert [(r.repo, r.ticket_id, r.duration_seconds) for r in data.slowest] == [
        ("acme/web", "4", 500),
        ("acme/web", "2", 500),
        ("acme/web", "6", 400),
        ("acme/web", "3", 300),
        ("acme/web", "7", 200),
    ]
    everyone = collect(store)
    assert [(r.repo, r.ticket_id) for r in everyone.slowest][2:4] == [("acme/web", "6"), ("acme/api", "8")]
    assert everyone.slowest[3].final_state is FAILED
    # Only runs completed in the window: tickets 1 to 4 are before this one.
    windowed = collect(store, since=T0 + timedelta(hours=3, minutes=30), until=middle)
    assert [r.ticket_id for r in windowed.slowest] == ["6", "7", "5"]


def test_a_run_is_split_into_the_stretches_of_its_timeline(store: StateStore, clock: Clock) -> None:
    project = store.create_project("Web", "acme/web")
    steps: list[Step] = [
        (QUEUED, 10),
        (CODING, 60),
        (TESTING, 30),
        (CODING, 40, "CI failed"),
        (TESTING, 20),
        (REVIEW, 50),
    ]
    run = walk(store, clock, project, 1, [*steps, (MERGED, 1)])
    [slow] = collect(store).slowest
    timeline = store.get_timeline(run)
    assert known(slow.segments) == [(t.to_state.value, t.seconds_in_state) for t in timeline]
    assert known(slow.segments) == [
        ("queued", 10),
        ("coding", 60),
        ("testing", 30),
        ("coding", 40),
        ("testing", 20),
        ("review", 50),
        ("merged", 1),
    ]
    assert [s.feedback for s in slow.segments] == [None, None, None, "CI failed", None, None, None]
    assert (slow.title, slow.duration_seconds) == ("ticket 1", 211)


def test_what_a_timeline_does_not_tell_is_unknown(store: StateStore, clock: Clock) -> None:
    project = store.create_project("Web", "acme/web")
    [imported] = helpers.import_at(store, project.id, [0])  # an imported run has no timeline
    # Saved to history, then changed on: what came after the save is not part of that run.
    pipeline = store.create_pipeline(project.id, 2, "saved", "b")
    clock.advance(5)
    store.update_pipeline(pipeline.id, state=CODING)
    clock.advance(100)
    saved = store.save_to_history(store.update_pipeline(pipeline.id, state=MERGED))
    clock.advance(7)
    store.update_pipeline(pipeline.id, state=REVIEW)
    clock.advance(1000)

    runs = {r.ticket_id: r for r in collect(store).slowest}
    assert known(runs[imported.ticket_id].segments) == [("unknown", imported.duration_seconds)]
    assert known(runs["2"].segments) == [("queued", 5), ("coding", 100), ("merged", 0)]
    assert runs["2"].duration_seconds == saved.duration_seconds == 105


def test_reconstructed_transitions_are_shown_as_unknown(fresh_db: object, clock: Clock) -> None:
    with StateStore(fresh_db()) as store:  # type: ignore[operator]
        project = store.create_project("Old", "acme/old")
        old = walk(store, clock, project, 1, [(QUEUED, 5), (CODING, 50), (MERGED, 1)])
        ongoing = store.create_pipeline(project.id, 2, "t", "b")
        clock.advance(20)
        store.update_pipeline(ongoing.id, state=CODING)
        clock.advance(30)
        # A store from before timelines: each pipeline keeps one transition, reconstructed.
        migrate.downgrade(store.database.engine, "0003")
        migrate.upgrade(store.database.engine)
        store.update_pipeline(ongoing.id, state=TESTING)
        clock.advance(40)
        store.update_pipeline(ongoing.id, state=MERGED)
        clock.advance(2)
        store.archive_pipeline(ongoing.id)

        runs = {r.ticket_id: r for r in collect(store).slowest}
        assert [t.reconstructed for t in store.get_timeline(old)] == [True]
        assert known(runs["1"].segments) == [("unknown", 56)]
        # QUEUED and CODING before the upgrade are not known; what came after is.
        assert known(runs["2"].segments) == [("unknown", 50), ("testing", 40), ("merged", 2)]
        page = render(collect(store))
    lanes = re.findall(r'<div class="run" data-total="(\d+)">(.*?)</div></div>', page)
    assert [total for total, _ in lanes] == ["92", "56"]
    assert re.findall(r'<rect class="(\w+)"', lanes[0][1]) == ["unknown", "testing", "merged"]
    assert "testing 40s · merged 2s · unknown 50s" in lanes[0][1]


def test_the_lanes_are_drawn_on_the_scale_of_the_longest(store: StateStore, clock: Clock) -> None:
    project = store.create_project("Web", "acme/web")
    walk(store, clock, project, 1, [(QUEUED, 100), (CODING, 300), (MERGED, 0)])
    walk(store, clock, project, 2, [(QUEUED, 50), (CODING, 100), (TESTING, 50), (MERGED, 0)])
    page = render(collect(store))
    lanes = re.findall(r'<svg class="lane"[^>]*>(.*?)</svg>', page)
    widths = [[float(w) for w in re.findall(r'width="([\d.]+)"', lane)] for lane in lanes]
    assert widths == [[250.0, 750.0, 0.0], [125.0, 250.0, 125.0, 0.0]]
    tips = parse(page).tooltips_of["slowest"]
    assert tips[:3] == ["queued: 1m 40s", "coding: 5m 00s", "merged: 0s"]
    assert "Slowest 2 tickets, stage by stage" in page
