"""One StateStore shared by 8 threads: no errors, no lost writes, no double claims."""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, TypeVar

from vibecc.state_store import Pipeline, PipelineState, StaleVersionError, StateStore

if TYPE_CHECKING:
    from tests import helpers, workers
else:
    import helpers
    import workers

THREADS = 8
T = TypeVar("T")


def run_together(work: Callable[[int], T]) -> list[T]:
    """Run work(0..THREADS-1) on THREADS threads released at the same moment; re-raise any error."""
    start = threading.Barrier(THREADS, timeout=30)

    def task(index: int) -> T:
        start.wait()
        return work(index)

    with ThreadPoolExecutor(THREADS) as pool:
        futures = [pool.submit(task, i) for i in range(THREADS)]
        return [f.result(timeout=120) for f in futures]


def test_increments_with_expected_version_lose_nothing(store: StateStore) -> None:
    project = store.create_project("Acme", "acme/widgets")
    pipeline = store.create_pipeline(project.id, 1, "t", "b")
    rounds = 10

    def increment(_: int) -> int:
        conflicts = 0
        for _ in range(rounds):
            while True:
                current = store.get_pipeline(pipeline.id)
                try:
                    store.update_pipeline(
                        pipeline.id,
                        retry_count_ci=current.retry_count_ci + 1,
                        expected_version=current.version,
                    )
                    break
                except StaleVersionError:
                    conflicts += 1
        return conflicts

    conflicts = run_together(increment)

    final = store.get_pipeline(pipeline.id)
    assert final.retry_count_ci == THREADS * rounds
    assert final.version == 1 + THREADS * rounds
    assert sum(conflicts) > 0, "no update was ever stale: the threads never raced"


def test_creates_updates_archives_from_many_threads(store: StateStore) -> None:
    per_thread = 5

    def lifecycle(index: int) -> list[str]:
        project = store.create_project(f"project {index}", f"acme/repo-{index}")
        archived = []
        for ticket in range(per_thread):
            pipeline = store.create_pipeline(project.id, ticket, f"t{ticket}", f"vibecc/{ticket}")
            store.update_pipeline(pipeline.id, state="coding")
            store.update_pipeline(pipeline.id, state="testing", pr_id=ticket + 1, retry_count_ci=index)
            final = "merged" if ticket % 2 else "failed"
            store.update_pipeline(pipeline.id, state=final, retry_count_review=ticket)
            archived.append(store.archive_pipeline(pipeline.id).id)
        store.create_pipeline(project.id, "left", "stays active", "vibecc/left")
        return archived

    archived = [i for ids in run_together(lifecycle) for i in ids]

    assert len(set(archived)) == THREADS * per_thread
    history = list(store.iter_history())
    assert sorted(r.id for r in history) == sorted(archived)
    assert all(r.version == 1 for r in store.list_pipelines())
    assert len(store.list_pipelines()) == THREADS
    assert len(store.list_projects()) == THREADS
    assert store.get_history_stats() == helpers.stats_of(history)
    for project in store.list_projects():
        mine = [r for r in history if r.project_id == project.id]
        assert len(mine) == per_thread
        assert store.get_history_stats(project.id) == helpers.stats_of(mine)
        assert {r.total_retries_ci for r in mine} == {int(project.repo.rsplit("-", 1)[1])}


def test_concurrent_claims_never_hand_out_a_pipeline_twice(store: StateStore) -> None:
    project = store.create_project("Acme", "acme/widgets")
    made = [store.create_pipeline(project.id, ticket, "t", "b") for ticket in range(40)]

    def claim_all(_: int) -> tuple[list[Pipeline], list[workers.Span]]:
        claimed: list[Pipeline] = []
        spans: list[workers.Span] = []
        while True:
            started = time.monotonic()
            pipeline = store.claim_pipeline()
            spans.append((started, time.monotonic()))
            if pipeline is None:
                return claimed, spans
            claimed.append(pipeline)

    per_thread = run_together(claim_all)
    claimed = [p for batch, _ in per_thread for p in batch]

    assert workers.overlapped(span for _, spans in per_thread for span in spans), "no two claims overlapped"
    assert Counter(p.id for p in claimed) == Counter(p.id for p in made)
    assert all(p.state is PipelineState.CODING and p.version == 2 for p in claimed)
    assert store.list_pipelines(state="queued") == []


def test_readers_see_whole_writes(store: StateStore) -> None:
    project = store.create_project("Acme", "acme/widgets")
    pipeline = store.create_pipeline(project.id, 1, "t", "b")
    writes = 40
    written = threading.Event()

    def work(index: int) -> list[tuple[int, int]]:
        if index == 0:
            try:
                for n in range(1, writes + 1):
                    store.update_pipeline(pipeline.id, retry_count_ci=n, retry_count_review=n)
            finally:
                written.set()
            return []
        seen = []
        while not written.is_set():  # read for as long as the writer writes
            current = store.get_pipeline(pipeline.id)
            seen.append((current.retry_count_ci, current.retry_count_review))
        return seen

    observed = [pair for seen in run_together(work) for pair in seen]

    assert all(ci == review for ci, review in observed)
    assert any(0 < ci < writes for ci, _ in observed), "no read fell between the first and last write"
    assert store.get_pipeline(pipeline.id).version == writes + 1


def test_more_threads_than_connections_all_get_served(store_url: str) -> None:
    """Idle connections the store keeps for the next call go back to the pool while anyone
    waits on it, so a small pool serves many threads instead of timing them out."""
    with StateStore(store_url, pool_size=1, max_overflow=0, pool_timeout=10) as small:
        project = small.create_project("Acme", "acme/widgets")
        small.create_pipeline(project.id, 1, "t", "b")
        # A snapshot read (its own connection on PostgreSQL) right after an ordinary call.
        assert small.get_duration_percentiles().p50 is None

        def read(_: int) -> int:
            total = 0
            for _ in range(20):
                total += len(small.list_pipelines(project.id))
                total += small.get_history_stats().total_completed
            return total

        assert run_together(read) == [20] * THREADS


_COLD_START = """
import gc, itertools, json, sys, threading
sys.setswitchinterval(1e-6)  # switch threads as often as possible
from vibecc.state_store import StateStore

FIELDS = {"pr_id": 7, "retry_count_ci": 2, "retry_count_review": 3, "feedback": "f", "state": "testing"}
combos = [c for n in range(1, len(FIELDS) + 1) for c in itertools.combinations(sorted(FIELDS), n)]
RACERS = 4
store = StateStore(sys.argv[1], pool_size=RACERS)
project = store.create_project("Cold", "acme/cold")
wrong = []

def work(start, pipeline, combo, versioned):
    start.wait()
    try:
        changes = {name: FIELDS[name] for name in combo}
        got = store.update_pipeline(pipeline.id, **changes, expected_version=1 if versioned else None)
        if any(getattr(got, name) != FIELDS[name] for name in combo) or got.version != 2:
            wrong.append(f"{combo}: {got}")
    except Exception as exc:
        wrong.append(f"{combo}: {type(exc).__name__}: {exc}")

# One combination after another, each first used by RACERS threads at once: a statement made
# twice by the race is freed before the next combination makes its own.
for number, (combo, versioned) in enumerate(itertools.product(combos, (False, True))):
    start = threading.Barrier(RACERS)
    pipelines = [store.create_pipeline(project.id, f"{number}-{n}", "t", "main") for n in range(RACERS)]
    threads = [threading.Thread(target=work, args=(start, p, combo, versioned)) for p in pipelines]
    for t in threads: t.start()
    for t in threads: t.join()
    gc.collect()
print(json.dumps(wrong))
"""


def test_threads_racing_every_statements_first_use_run_the_right_sql(store_url: str) -> None:
    """A fresh process where every field combination of update_pipeline is first used by two
    threads at once: each gets its own SQL, whatever statement objects the race made."""
    import json
    import subprocess
    import sys

    done = subprocess.run(
        [sys.executable, "-c", _COLD_START, store_url], capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert json.loads(done.stdout) == []
