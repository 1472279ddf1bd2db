"""Two callers of one bulk path at once (prune, import, copy): on PostgreSQL under READ
COMMITTED, and on SQLite, both end as if they had run one after the other.

Each test checks that the two calls really overlapped (both were past their first batch while
the other had not finished), so a run where they happened not to meet fails instead of passing.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from vibecc.state_store import (
    CopyReport,
    PipelineHistory,
    PipelineState,
    StateStore,
    TargetNotEmptyError,
    copy_store,
)

if TYPE_CHECKING:
    from tests import helpers
else:
    import helpers

ROWS = 3000
BATCH = 25


class Overlap:
    """Progress moments of two callers, to prove they ran at the same time."""

    def __init__(self) -> None:
        self.moments: dict[str, list[float]] = {"a": [], "b": []}

    def tick(self, who: str) -> Callable[..., None]:
        def progress(*_: Any) -> None:
            self.moments[who].append(time.monotonic())
            time.sleep(0)  # let the other thread in between batches

        return progress

    def happened(self) -> bool:
        a, b = self.moments["a"], self.moments["b"]
        return bool(a and b) and a[0] < b[-1] and b[0] < a[-1]


class Call:
    """One call's result (or exception) and when it ran."""

    def __init__(self) -> None:
        self.result: Any = None
        self.started = self.ended = 0.0


def _both(a: Callable[[], Any], b: Callable[[], Any], calls: list[Call] | None = None) -> tuple[Any, Any]:
    """Run a and b in two threads released together; their results or exceptions."""
    start = threading.Barrier(2)
    results: dict[str, Any] = {}
    timing = {"a": Call(), "b": Call()}

    def run(name: str, call: Callable[[], Any]) -> None:
        start.wait()
        timing[name].started = time.monotonic()
        try:
            results[name] = call()
        except BaseException as exc:
            results[name] = exc
        timing[name].ended = time.monotonic()

    threads = [threading.Thread(target=run, args=item) for item in (("a", a), ("b", b))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
        assert not thread.is_alive(), "a bulk call hung"
    if calls is not None:
        calls.extend(timing.values())
    return results["a"], results["b"]


def _records(project_id: str, count: int) -> list[PipelineHistory]:
    return [
        helpers.history_record(
            project_id=project_id,
            record_id=f"h{n:05d}",
            completed_at=helpers.T0 + timedelta(seconds=n),
            duration_seconds=n % 97,
            final_state=PipelineState.FAILED if n % 5 == 0 else PipelineState.MERGED,
            retries_ci=n % 3,
        )
        for n in range(count)
    ]


def test_two_prunes_at_once_leave_no_row_before_the_cut_off(store: StateStore) -> None:
    project = store.create_project("Prune", "acme/prune")
    store.import_history(_records(project.id, ROWS), batch_size=1000)
    cut_off = helpers.T0 + timedelta(seconds=ROWS - 100)
    calls: list[Call] = []

    first, second = _both(
        lambda: store.prune_history(before=cut_off, batch_size=BATCH),
        lambda: store.prune_history(before=cut_off, batch_size=BATCH),
        calls,
    )

    # The calls overlapped. Their batches need not both delete rows: on PostgreSQL one prune
    # often keeps choosing the rows the other is deleting and finds them gone, which is the
    # very race (a short batch that is not the end) this test is about.
    assert calls[0].started < calls[1].ended, "the two prunes did not run at the same time"
    assert calls[1].started < calls[0].ended, "the two prunes did not run at the same time"
    assert isinstance(first, int), first
    assert isinstance(second, int), second
    assert first + second == ROWS - 100
    assert store.count_history(until=cut_off) == 0
    assert store.count_history() == 100
    assert store.get_history_stats() == helpers.stats_of(store.iter_history())
    assert store.get_duration_percentiles() == helpers.kept_percentiles_of(store.iter_history())


def test_two_imports_of_overlapping_ids_in_opposite_orders_both_finish(store: StateStore) -> None:
    """Inserted in id order within each batch, so PostgreSQL never finds a deadlock."""
    project = store.create_project("Import", "acme/import")
    records = _records(project.id, ROWS)
    # The same ids in every batch of both, in opposite orders: the shape that deadlocks.
    opposite = [r for at in range(0, ROWS, BATCH) for r in reversed(records[at : at + BATCH])]
    overlap = Overlap()

    first, second = _both(
        lambda: store.import_history(records, batch_size=BATCH, progress=overlap.tick("a")),
        lambda: store.import_history(opposite, batch_size=BATCH, progress=overlap.tick("b")),
    )

    assert overlap.happened(), "the two imports did not run at the same time"
    assert first.inserted + second.inserted == ROWS, (first, second)
    assert first.skipped + second.skipped == ROWS
    assert store.count_history() == ROWS
    assert store.get_history_stats() == helpers.stats_of(records)
    assert store.get_duration_percentiles() == helpers.kept_percentiles_of(records)


def test_two_copies_into_one_empty_store_copy_once(store: StateStore, fresh_db: Any) -> None:
    project = store.create_project("Copy", "acme/copy")
    store.import_history(_records(project.id, ROWS), batch_size=1000)
    target = fresh_db()
    StateStore(target).close()
    calls: list[Call] = []

    first, second = _both(
        lambda: copy_store(store, target, batch_size=BATCH),
        lambda: copy_store(store, target, batch_size=BATCH),
        calls,
    )

    outcomes = sorted(type(r).__name__ for r in (first, second))
    assert outcomes == ["CopyReport", "TargetNotEmptyError"], (first, second)
    refused = first if isinstance(first, TargetNotEmptyError) else second
    assert "not empty" in str(refused)
    with StateStore(target) as copied:
        assert copied.count_history() == ROWS
        assert copied.get_history_stats() == store.get_history_stats()
        assert copied.list_projects() == store.list_projects()
    # One copy waited for the other's whole transaction (PostgreSQL: the table lock; SQLite:
    # the write lock), so their batches cannot interleave; the calls themselves overlapped.
    assert calls[0].started < calls[1].ended
    assert calls[1].started < calls[0].ended


def test_a_write_into_the_target_waits_for_the_copy(store: StateStore, fresh_db: Any) -> None:
    """A copy holds its target: an import into it that starts meanwhile commits only after the
    copy committed and verified (and skips the ids the copy brought), never in between."""
    project = store.create_project("Copy", "acme/copy")
    records = _records(project.id, ROWS)
    store.import_history(records, batch_size=1000)
    target = fresh_db()
    StateStore(target).close()
    started = threading.Event()
    calls: list[Call] = []

    def copy() -> Any:
        return copy_store(store, target, batch_size=BATCH, progress=lambda *_: started.set())

    def write_into_target() -> Any:
        started.wait(60)
        with StateStore(target) as there:
            extra = _records(project.id, ROWS + 50)[ROWS - 10 :]  # 10 being copied, 50 new
            return there.import_history(extra)

    report, imported = _both(copy, write_into_target, calls)

    assert isinstance(report, CopyReport), report
    assert imported.inserted == 50
    assert imported.skipped == 10
    assert calls[1].started < calls[0].ended, "the import did not start during the copy"
    assert calls[1].ended >= calls[0].ended, "the import committed before the copy did"
    with StateStore(target) as there:
        assert there.count_history() == ROWS + 50
        assert there.get_history_stats() == helpers.stats_of(there.iter_history())
        assert there.get_duration_percentiles() == helpers.kept_percentiles_of(there.iter_history())
