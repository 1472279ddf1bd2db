"""stage_totals: the stage histogram summed over projects, which get_stage_stats() reads. Kept
in the transaction of every write of the histogram (archive, save, delete of a project, import,
prune), by concurrent writers too, and filled by migration 0007 from the histogram stored."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import func, select

import vibecc.state_store.store as store_module
from vibecc.state_store import PipelineHistory, PipelineState, StateStore, migrate
from vibecc.state_store.models import stage_histogram, stage_totals
from vibecc.state_store.queries import buckets

QUEUED, CODING, TESTING, REVIEW, MERGED, FAILED = PipelineState
T0 = datetime.fromisoformat("2026-03-02T09:00:00+00:00")


def totals(store: StateStore) -> list[tuple[str, int, int, int]]:
    with store.database.engine.connect() as conn:
        found = conn.execute(select(stage_totals).order_by(*stage_totals.primary_key))
        return [(s, b, n, ms) for s, b, n, ms in found]


def summed(store: StateStore) -> list[tuple[str, int, int, int]]:
    """stage_histogram summed over projects, by a GROUP BY: what stage_totals must hold (a
    sum of nothing, no visit and no time, is no row)."""
    h = stage_histogram.c
    query = select(h.state, h.bucket, func.sum(h.visits), func.sum(h.sum_ms)).group_by(h.state, h.bucket)
    with store.database.engine.connect() as conn:
        return sorted((s, int(b), int(n), int(ms)) for s, b, n, ms in conn.execute(query) if n or ms)


def ticket(store: StateStore, project_id: str, n: int, *, state: PipelineState = MERGED) -> str:
    pipeline = store.create_pipeline(project_id, n, "t", "b")
    for step in (CODING, TESTING, state):
        store.update_pipeline(pipeline.id, state=step)
    return pipeline.id


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> list[datetime]:
    """The store's clock, one minute further (times the ticket number) at each read."""
    now = [T0]

    def tick() -> datetime:
        now[0] += timedelta(seconds=61)
        return now[0]

    monkeypatch.setattr(store_module, "now", tick)
    return now


def test_every_write_of_the_histogram_keeps_the_totals_equal_to_its_sum(
    store: StateStore, clock: list[datetime]
) -> None:
    one, two = (store.create_project(f"P{i}", f"acme/p{i}") for i in range(2))
    for n in range(6):
        store.archive_pipeline(ticket(store, (one, two)[n % 2].id, n, state=(MERGED, FAILED)[n % 3 == 0]))
    saved = ticket(store, one.id, 10)
    store.save_to_history(store.get_pipeline(saved))
    store.archive_pipeline(saved)
    assert totals(store) == summed(store) != []
    ticket(store, two.id, 11, state=FAILED)
    store.delete_project(two.id)  # archives the finished pipeline: its stages count
    assert totals(store) == summed(store)
    imported = [store.get_history(one.id, limit=1)[0]]
    timelines = store.get_timelines([imported[0].id])
    store.prune_history(before=clock[0] + timedelta(days=1), project_id=one.id)
    store.import_history(imported, timelines=timelines)
    assert totals(store) == summed(store) != []
    store.prune_history(before=clock[0] + timedelta(days=1))
    assert totals(store) == summed(store) == []  # emptied cells are dropped, not kept at zero


def test_totals_stay_the_sum_when_a_run_is_counted_differently_at_prune(
    store: StateStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A record imported under an active pipeline's id with a completion ahead of the
    pipeline's next transitions is counted with one CODING visit at import and another at
    prune, which leaves a cell below zero beside another project's cell in the same bucket
    (170 s and 175 s: one bucket); the totals follow the cells through it, and a later archive
    that brings a cell back to nothing drops its total too."""
    moment = [T0]
    monkeypatch.setattr(store_module, "now", lambda: moment[0])

    def at(seconds: float) -> None:
        moment[0] = T0 + timedelta(seconds=seconds)

    p, q = (store.create_project(f"P{i}", f"acme/p{i}") for i in range(2))
    done = store.create_pipeline(q.id, 1, "t", "b")
    store.update_pipeline(done.id, state=CODING)
    at(170)
    store.update_pipeline(done.id, state=MERGED)
    store.archive_pipeline(done.id)
    at(1000)
    active = store.update_pipeline(store.create_pipeline(p.id, 2, "t", "b").id, state=CODING)
    far = T0 + timedelta(days=3650)
    record = PipelineHistory(
        id=active.id,
        project_id=p.id,
        ticket_id="2",
        ticket_title="t",
        final_state=MERGED,
        branch_name="b",
        pr_id=None,
        pr_url=None,
        total_retries_ci=0,
        total_retries_review=0,
        started_at=active.created_at,
        completed_at=far,
        duration_seconds=int((far - active.created_at).total_seconds()),
    )
    store.import_history([record])
    at(1175)
    store.update_pipeline(active.id, state=TESTING)
    at(4000)
    store.prune_history(before=far + timedelta(seconds=1), project_id=p.id)
    assert totals(store) == summed(store)
    cell = (CODING.value, buckets.bucket(170_000))
    assert (*cell, 0, -5_000) in totals(store)  # no visit left, but time: kept
    store.prune_history(before=far + timedelta(seconds=1), project_id=q.id)
    assert totals(store) == summed(store)
    assert (*cell, -1, -175_000) in totals(store)  # below zero
    again = store.create_pipeline(p.id, 3, "t", "b")
    store.update_pipeline(again.id, state=CODING)
    at(4175)
    store.archive_pipeline(store.update_pipeline(again.id, state=MERGED).id)
    assert totals(store) == summed(store)
    assert cell not in {(state, bucket) for state, bucket, _, _ in totals(store)}  # back to nothing


def test_get_stage_stats_reads_the_totals(store: StateStore, clock: list[datetime]) -> None:
    """Over all projects the figures are the totals', per project the project's cells'."""
    project = store.create_project("P", "acme/p")
    store.archive_pipeline(ticket(store, project.id, 1))
    every, of_project = store.get_stage_stats(), store.get_stage_stats(project.id)
    assert every == of_project
    assert (every[CODING].visits, every[CODING].total_seconds) == (1, 61)
    with store.database.engine.begin() as conn:
        conn.execute(stage_totals.update().values(visits=stage_totals.c.visits + 1))
    assert store.get_stage_stats()[CODING].visits == 2
    assert store.get_stage_stats(project.id)[CODING].visits == 1


def test_concurrent_archives_in_many_projects_keep_the_totals_exact(store_url: str) -> None:
    """Four threads, each on its own connection, archive runs at once in their own projects:
    every archive moves the same total rows, and none of its counts is lost."""
    with StateStore(store_url, pool_size=4) as store:
        projects = [store.create_project(f"P{i}", f"acme/p{i}").id for i in range(4)]
        start = threading.Barrier(4)

        def work(i: int) -> None:
            ids = [ticket(store, projects[i], n) for n in range(8)]
            start.wait()
            for pipeline_id in ids:
                store.archive_pipeline(pipeline_id)

        with ThreadPoolExecutor(max_workers=4) as pool:
            list(pool.map(work, range(4)))
        assert totals(store) == summed(store)
        assert sum(n for state, _, n, _ in totals(store) if state == CODING.value) == 32


def test_upgrading_to_0007_fills_the_totals_from_the_histogram(fresh_db: Any, clock: list[datetime]) -> None:
    with StateStore(fresh_db()) as store:
        for i in range(2):
            project = store.create_project(f"P{i}", f"acme/p{i}")
            for n in range(3):
                store.archive_pipeline(ticket(store, project.id, n))
        kept = totals(store)
        assert kept == summed(store) != []
        migrate.downgrade(store.database.engine, "0006")
        migrate.upgrade(store.database.engine)

        assert totals(store) == kept
        assert migrate.check(store.database.engine) == []
