"""Several OS processes racing on one store: the guarantees hold on SQLite and PostgreSQL.

Every race runs in real processes (spawn), each with its own StateStore, started together on a
barrier; see workers.py.
"""

from __future__ import annotations

from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from sqlalchemy import create_engine, text

from vibecc.state_store import PipelineNotFoundError, PipelineState, StateStore

if TYPE_CHECKING:
    from tests import workers
    from tests.conftest import PostgresServer
else:
    import workers

PROCESSES = 4


def test_duplicate_creation_has_one_winner(store: StateStore, store_url: str) -> None:
    rounds = 8
    project = store.create_project("Race", "acme/race")
    with workers.Race(PROCESSES) as race:
        for _ in range(PROCESSES):
            race.start(workers.create_same_tickets, store_url, project.id, rounds)
        per_process, spans = zip(*race.wait_all(), strict=True)

    assert any(workers.overlapped(s[round_] for s in spans) for round_ in range(rounds)), (
        "in no round did two creations run at the same time"
    )
    for round_ in range(rounds):
        outcomes = [process_outcomes[round_] for process_outcomes in per_process]
        kinds = Counter(kind for kind, _ in outcomes)
        assert kinds == {"created": 1, "exists": PROCESSES - 1}, outcomes
        assert all(f"'T-{round_}' already" in detail for kind, detail in outcomes if kind == "exists")
        winner = next(detail for kind, detail in outcomes if kind == "created")
        assert store.get_pipeline_by_ticket(project.id, f"T-{round_}").id == winner
    assert len(store.list_pipelines()) == rounds


def test_optimistic_increments_lose_no_update(store: StateStore, store_url: str) -> None:
    times = 25
    project = store.create_project("Counter", "acme/counter")
    pipeline = store.create_pipeline(project.id, "T-1", "Count", "count")
    with workers.Race(PROCESSES) as race:
        for _ in range(PROCESSES):
            race.start(workers.increment_retries, store_url, pipeline.id, times)
        stale = race.wait_all()

    final = store.get_pipeline(pipeline.id)
    assert final.retry_count_ci == PROCESSES * times, f"stale retries per process: {stale}"
    assert final.version == 1 + PROCESSES * times
    assert sum(stale) > 0, "no update was ever stale: the processes never raced"


def test_concurrent_claimers_take_each_pipeline_once(store: StateStore, store_url: str) -> None:
    queued = 60
    project = store.create_project("Queue", "acme/queue")
    ids = [store.create_pipeline(project.id, f"T-{n}", f"Job {n}", f"job-{n}").id for n in range(queued)]
    with workers.Race(PROCESSES) as race:
        for _ in range(PROCESSES):
            race.start(workers.claim_until_empty, store_url)
        per_process = race.wait_all()
        claimed = [pipeline_id for claims, _ in per_process for pipeline_id in claims]

    assert workers.overlapped(span for _, spans in per_process for span in spans), (
        "no two claims ran at the same time"
    )
    assert len(claimed) == queued, Counter(claimed).most_common(3)
    assert set(claimed) == set(ids)
    assert store.list_pipelines(state=PipelineState.QUEUED) == []
    coding = store.list_pipelines(state=PipelineState.CODING)
    assert {(p.id, p.version) for p in coding} == {(i, 2) for i in ids}


def test_claim_skips_a_row_locked_by_another_transaction(pg_server: PostgresServer) -> None:
    url = pg_server.create_database()
    with StateStore(url) as store:
        project = store.create_project("Locks", "acme/locks")
        oldest, second, third = (
            store.create_pipeline(project.id, f"T-{n}", f"Job {n}", f"job-{n}").id for n in range(3)
        )
        holder = create_engine(url, pool_size=1)
        try:
            with holder.connect() as conn, ThreadPoolExecutor(max_workers=1) as pool:
                with conn.begin():
                    conn.execute(text("SELECT id FROM pipelines WHERE id = :id FOR UPDATE"), {"id": oldest})
                    future = pool.submit(store.claim_pipeline)
                    try:
                        claimed = future.result(timeout=10)
                    except FutureTimeout:
                        pytest.fail("claim_pipeline waited on the row lock held by another transaction")
                    # The lock holder's transaction ends here, so a blocked claim could finish.
                assert claimed is not None
                assert claimed.id == second
                assert store.get_pipeline(oldest).state is PipelineState.QUEUED
        finally:
            holder.dispose()
        claims = [store.claim_pipeline() for _ in range(3)]
        assert [c.id if c else None for c in claims] == [oldest, third, None]


def test_archive_racing_update_ends_in_one_order(store: StateStore, store_url: str) -> None:
    rounds = 10
    project = store.create_project("Archive race", "acme/archive-race")
    ids = [store.create_pipeline(project.id, f"T-{n}", f"Job {n}", f"job-{n}").id for n in range(2 * rounds)]
    for pipeline_id in ids:  # only finished pipelines go to history
        store.update_pipeline(pipeline_id, state=PipelineState.MERGED)
    halves = [ids[:rounds], ids[rounds:]]
    with workers.Race(PROCESSES) as race:
        for half in halves:
            race.start(workers.archive_each, store_url, half)
            race.start(workers.update_each, store_url, half)
        per_process = race.wait_all()

    # Per half of the ids, in start order: the archiving process, then the updating one.
    archives, updates = per_process[0::2], per_process[1::2]
    archive_rows = [row for rows, _ in archives for row in rows]
    update_outcomes = [outcome for outcomes, _ in updates for outcome in outcomes]
    archive_spans = [span for _, spans in archives for span in spans]
    update_spans = [span for _, spans in updates for span in spans]
    assert any(workers.overlapped(pair) for pair in zip(archive_spans, update_spans, strict=True)), (
        "no archive ran at the same time as its update"
    )

    before = (0, 0, None)
    after = workers.RACED_UPDATE
    outcomes = list(zip(ids, archive_rows, update_outcomes, strict=True))
    for pipeline_id, archived, update in outcomes:
        record = store.get_history_record(pipeline_id)
        stored = (record.total_retries_ci, record.total_retries_review, record.pr_id)
        assert stored == archived
        assert stored == (after if update == "updated" else before), (pipeline_id, update, stored)
        with pytest.raises(PipelineNotFoundError, match=pipeline_id):
            store.get_pipeline(pipeline_id)
    assert store.list_pipelines() == []
    assert store.count_history() == len(ids)
    updated = sum(update == "updated" for _, _, update in outcomes)
    stats = store.get_history_stats()
    assert stats.total_completed == len(ids)
    assert stats.avg_retries_ci * len(ids) == pytest.approx(after[0] * updated)


def test_sqlite_writers_and_readers_never_see_locks_or_half_writes(tmp_path: Path) -> None:
    """SQLite only: its locking (WAL, BEGIN IMMEDIATE, busy timeout) is what is under test."""
    writers, readers, cycles = 4, 2, 30
    path = str(tmp_path / "busy" / "vibecc.db")
    with StateStore(path) as store:
        project_ids = [store.create_project(f"P{n}", f"acme/p{n}").id for n in range(2)]
    with workers.Race(writers + readers) as race:
        writer_ids = [race.start(workers.write_lifecycles, path, project_ids, cycles) for _ in range(writers)]
        reader_ids = [race.start(workers.read_consistently, path) for _ in range(readers)]
        merged = sum(race.wait_for(writer_ids))
        race.stop()
        reads = race.wait_for(reader_ids)

    assert [problems for _, problems, _ in reads] == [[]] * readers
    assert all(mid_write for _, _, mid_write in reads), f"a reader never read while a writer wrote: {reads}"
    total = writers * cycles
    with StateStore(path) as store:
        assert store.list_pipelines() == []
        kept = store.get_history_stats()
        recomputed = store.get_history_stats(since=store.get_history(limit=total)[-1].completed_at)
        assert kept == recomputed
        assert (kept.total_completed, kept.total_merged) == (total, merged)
        assert store.count_history() == total
