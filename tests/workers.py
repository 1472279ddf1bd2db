"""What the concurrency tests' child processes run, and the harness that starts them.

Children are started with the spawn method, so each one imports this module afresh and opens
its own StateStore: nothing is shared with the parent but the database. Every worker takes a
Gate first; it waits on the gate's barrier right before the racing call, so the processes
really start the race together. A worker returns plain data; an exception escaping it is
sent back as a traceback and fails the test.
"""

from __future__ import annotations

import itertools
import multiprocessing
import queue
import time
import traceback
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from multiprocessing.context import SpawnProcess
from multiprocessing.queues import Queue
from multiprocessing.synchronize import Barrier, Event
from types import TracebackType
from typing import Any

from vibecc.state_store import (
    Pipeline,
    PipelineExistsError,
    PipelineNotFoundError,
    PipelineState,
    StaleVersionError,
    StateStore,
    StateStoreError,
)

BARRIER_TIMEOUT = 30.0
"""Seconds a worker waits for the others at a barrier before the race counts as broken."""

RACED_UPDATE = (7, 5, 4242)
"""The retry_count_ci, retry_count_review and pr_id update_each writes; archive_each's history
rows show whether the update came first."""


@dataclass(frozen=True)
class Gate:
    """A child's index and the primitives it shares with the other children."""

    index: int
    barrier: Barrier
    stop: Event

    def wait(self) -> None:
        self.barrier.wait(timeout=BARRIER_TIMEOUT)


Worker = Callable[..., Any]
Span = tuple[float, float]
"""When a racing call started and when it returned, by time.monotonic() (one clock for every
process of the machine on Linux)."""


def overlapped(spans: Iterable[Span]) -> bool:
    """Whether two of the calls ran at the same time: the race really happened."""
    ordered = sorted(spans)
    return any(later[0] < earlier[1] for earlier, later in itertools.pairwise(ordered))


def _run(worker: Worker, gate: Gate, results: Queue[tuple[int, bool, Any]], args: tuple[Any, ...]) -> None:
    try:
        outcome = worker(gate, *args)
    except BaseException:
        # Release the others from the barrier at once instead of letting them time out.
        gate.barrier.abort()
        results.put((gate.index, False, traceback.format_exc()))
    else:
        results.put((gate.index, True, outcome))


class Race:
    """Child processes that start together and report one result each."""

    def __init__(self, parties: int) -> None:
        self._ctx = multiprocessing.get_context("spawn")
        self._barrier = self._ctx.Barrier(parties)
        self._stop = self._ctx.Event()
        self._results: Queue[tuple[int, bool, Any]] = self._ctx.Queue()
        self._processes: list[SpawnProcess] = []
        self._done: dict[int, Any] = {}

    def __enter__(self) -> Race:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        for process in self._processes:
            if exc_type is not None and process.is_alive():
                process.terminate()
            process.join(timeout=BARRIER_TIMEOUT)
            if process.is_alive():
                process.kill()
                process.join()

    def start(self, worker: Worker, *args: Any) -> int:
        """Start `worker(gate, *args)` in a new process; return its index."""
        index = len(self._processes)
        gate = Gate(index, self._barrier, self._stop)
        process = self._ctx.Process(target=_run, args=(worker, gate, self._results, args), daemon=True)
        process.start()
        self._processes.append(process)
        return index

    def stop(self) -> None:
        """Set the event that the looping workers (readers) watch."""
        self._stop.set()

    def wait_for(self, indices: range | list[int], timeout: float = 60.0) -> list[Any]:
        """The results of the given children, in index order; a child that raised fails the test."""
        wanted = set(indices)
        while not wanted <= self._done.keys():
            try:
                index, ok, outcome = self._results.get(timeout=timeout)
            except queue.Empty:
                missing = sorted(wanted - self._done.keys())
                raise AssertionError(f"no result from workers {missing} within {timeout} s") from None
            if not ok:
                raise AssertionError(f"worker {index} raised:\n{outcome}")
            self._done[index] = outcome
        return [self._done[i] for i in sorted(wanted)]

    def wait_all(self, timeout: float = 60.0) -> list[Any]:
        return self.wait_for(range(len(self._processes)), timeout)


# -- workers ---------------------------------------------------------------------------------


def create_same_tickets(
    gate: Gate, url: str, project_id: str, rounds: int
) -> tuple[list[tuple[str, str]], list[Span]]:
    """Each round, create the pipeline of ticket T-<round>, racing the other processes; return
    each round's outcome and when its call ran."""
    outcomes: list[tuple[str, str]] = []
    spans: list[Span] = []
    with StateStore(url) as store:
        for round_ in range(rounds):
            gate.wait()
            started = time.monotonic()
            try:
                created = store.create_pipeline(project_id, f"T-{round_}", f"Race {round_}", f"race-{round_}")
            except PipelineExistsError as exc:
                outcomes.append(("exists", str(exc)))
            except StateStoreError as exc:
                outcomes.append((type(exc).__name__, str(exc)))
            else:
                outcomes.append(("created", created.id))
            spans.append((started, time.monotonic()))
    return outcomes, spans


def increment_retries(gate: Gate, url: str, pipeline_id: str, times: int) -> int:
    """Add 1 to retry_count_ci `times` times with optimistic locking; return the stale retries."""
    stale = 0
    with StateStore(url) as store:
        gate.wait()
        for _ in range(times):
            while True:
                current = store.get_pipeline(pipeline_id)
                try:
                    store.update_pipeline(
                        pipeline_id,
                        retry_count_ci=current.retry_count_ci + 1,
                        expected_version=current.version,
                    )
                except StaleVersionError:
                    stale += 1
                else:
                    break
    return stale


def claim_until_empty(gate: Gate, url: str) -> tuple[list[str], list[Span]]:
    """Claim QUEUED pipelines (moving them to CODING) until none is left; return their ids and
    when each claim call ran."""
    claimed: list[str] = []
    spans: list[Span] = []
    with StateStore(url) as store:
        gate.wait()
        while True:
            started = time.monotonic()
            pipeline = store.claim_pipeline()
            spans.append((started, time.monotonic()))
            if pipeline is None:
                break
            if pipeline.state is not PipelineState.CODING or pipeline.version != 2:
                raise AssertionError(f"claim returned {pipeline}")
            claimed.append(pipeline.id)
    return claimed, spans


def archive_each(
    gate: Gate, url: str, pipeline_ids: list[str]
) -> tuple[list[tuple[int, int, int | None]], list[Span]]:
    """Each round, archive one pipeline; return the history rows' (retries ci, review, pr_id)
    and when each call ran."""
    archived: list[tuple[int, int, int | None]] = []
    spans: list[Span] = []
    with StateStore(url) as store:
        for pipeline_id in pipeline_ids:
            gate.wait()
            started = time.monotonic()
            record = store.archive_pipeline(pipeline_id)
            spans.append((started, time.monotonic()))
            archived.append((record.total_retries_ci, record.total_retries_review, record.pr_id))
    return archived, spans


def update_each(gate: Gate, url: str, pipeline_ids: list[str]) -> tuple[list[str], list[Span]]:
    """Each round, write RACED_UPDATE to one pipeline; return "updated" or "not_found" per round
    and when each call ran."""
    outcomes: list[str] = []
    spans: list[Span] = []
    with StateStore(url) as store:
        for pipeline_id in pipeline_ids:
            gate.wait()
            started = time.monotonic()
            try:
                retry_ci, retry_review, pr_id = RACED_UPDATE
                store.update_pipeline(
                    pipeline_id, retry_count_ci=retry_ci, retry_count_review=retry_review, pr_id=pr_id
                )
            except PipelineNotFoundError:
                outcomes.append("not_found")
            else:
                outcomes.append("updated")
            spans.append((started, time.monotonic()))
    return outcomes, spans


# -- SQLite writers and readers ---------------------------------------------------------------
# A writer takes every pipeline through the same three versions and then archives it:
#   v1 QUEUED, no retries, no feedback (create_pipeline)
#   v2 CODING, retry_count_ci=1, feedback "v2"
#   v3 MERGED or FAILED, retry_count_ci=1, retry_count_review=1, pr_id, feedback "v3"
# so any pipeline a reader sees must match one of these rows field for field.


def lifecycle_problem(pipeline: Pipeline) -> str | None:
    """Why `pipeline` is not one of the rows a writer can leave behind (None if it is)."""
    expected: dict[int, tuple[set[PipelineState], int, int, int | None, str | None]] = {
        1: ({PipelineState.QUEUED}, 0, 0, None, None),
        2: ({PipelineState.CODING}, 1, 0, None, "v2"),
        3: ({PipelineState.MERGED, PipelineState.FAILED}, 1, 1, 7, "v3"),
    }
    if pipeline.version not in expected:
        return f"unexpected version: {pipeline}"
    states, retry_ci, retry_review, pr_id, feedback = expected[pipeline.version]
    seen = (pipeline.retry_count_ci, pipeline.retry_count_review, pipeline.pr_id, pipeline.feedback)
    if pipeline.state not in states or seen != (retry_ci, retry_review, pr_id, feedback):
        return f"half-written pipeline: {pipeline}"
    return None


def write_lifecycles(gate: Gate, path: str, project_ids: list[str], cycles: int) -> int:
    """Create, move through v2 and v3, and archive `cycles` pipelines; return how many merged."""
    merged = 0
    with StateStore(path) as store:
        gate.wait()
        for cycle in range(cycles):
            project_id = project_ids[cycle % len(project_ids)]
            created = store.create_pipeline(project_id, f"w{gate.index}-{cycle}", "Lifecycle", f"w/{cycle}")
            store.update_pipeline(created.id, state=PipelineState.CODING, retry_count_ci=1, feedback="v2")
            final = PipelineState.MERGED if cycle % 3 else PipelineState.FAILED
            store.update_pipeline(created.id, state=final, retry_count_review=1, pr_id=7, feedback="v3")
            store.archive_pipeline(created.id)
            merged += final is PipelineState.MERGED
    return merged


def read_consistently(gate: Gate, path: str) -> tuple[int, list[str], int]:
    """Read through the public API until told to stop; return the rounds read, any violations,
    and the rounds that saw an active pipeline (read while a writer was mid-lifecycle: before
    and after the writers, nothing is active).

    Each round reads, in this order: history ids (h1), active pipelines (a1, a2), history ids
    (h2), count, stats, count. Archiving is one transaction, and ids are never reused, so:
    nothing in h1 is active later (a1), whatever left the active set by a2 is in history by h2,
    and the kept stats lie between the history counts read around them.
    """
    problems: list[str] = []
    rounds = mid_write = 0
    with StateStore(path) as store:
        gate.wait()
        while not gate.stop.is_set() and len(problems) < 10:
            rounds += 1
            h1 = {record.id for record in store.get_history(limit=10_000)}
            active_1 = store.list_pipelines()
            active_2 = store.list_pipelines()
            history_2 = store.get_history(limit=10_000)
            count_1 = store.count_history()
            stats = store.get_history_stats()
            count_2 = store.count_history()
            a1 = {p.id for p in active_1}
            a2 = {p.id for p in active_2}
            h2 = {record.id for record in history_2}
            mid_write += bool(a1 or a2)
            if a1 & h1:
                problems.append(f"archived yet still active: {sorted(a1 & h1)}")
            if not (a1 - a2) <= h2:
                problems.append(f"left the active set but not in history: {sorted((a1 - a2) - h2)}")
            if not h1 <= h2:
                problems.append(f"history rows vanished: {sorted(h1 - h2)}")
            if not count_1 <= stats.total_completed <= count_2:
                problems.append(f"stats {stats.total_completed} not within counts {count_1}..{count_2}")
            if stats.total_completed != stats.total_merged + stats.total_failed:
                problems.append(f"stats totals disagree: {stats}")
            if stats.total_completed and (stats.avg_retries_ci, stats.avg_retries_review) != (1.0, 1.0):
                problems.append(f"stats averages off: {stats}")
            problems.extend(p for p in map(lifecycle_problem, active_1 + active_2) if p)
            problems.extend(
                f"history row not from a v3 pipeline: {r}"
                for r in history_2
                if (r.total_retries_ci, r.total_retries_review, r.pr_id) != (1, 1, 7)
            )
    return rounds, problems, mid_write
