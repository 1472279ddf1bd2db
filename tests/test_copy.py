"""copy_store: every record arrives exactly, batch by batch, in one transaction, or not at all."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
from sqlalchemy import Table, func, select
from sqlalchemy.exc import OperationalError

from vibecc.state_store import (
    DeletedProject,
    DurationPercentiles,
    HistoryStats,
    Pipeline,
    PipelineHistory,
    PipelineState,
    Project,
    StageStats,
    StateStore,
    StorageError,
    TargetNotEmptyError,
    Transition,
    ValidationError,
    copy_store,
)
from vibecc.state_store.models import duration_histogram, stage_histogram, stage_totals
from vibecc.state_store.queries import stats as stats_module

if TYPE_CHECKING:
    from tests import helpers
    from tests.conftest import PostgresServer
else:
    import helpers

TABLES = ("projects", "pipelines", "pipeline_history", "deleted_projects", "history_stats")


@dataclass(frozen=True)
class Contents:
    """Everything a store gives back through its public API."""

    projects: list[Project]
    deleted_projects: list[DeletedProject]
    pipelines: list[Pipeline]
    history: list[PipelineHistory]
    stats: HistoryStats
    stats_by_project: dict[str, HistoryStats]
    percentiles: dict[str | None, DurationPercentiles]
    timelines: dict[str, list[Transition]]
    stages: dict[PipelineState, StageStats]


def contents(store: StateStore) -> Contents:
    history = store.get_history(limit=10_000)
    project_ids = {p.id for p in store.list_projects()} | {r.project_id for r in history}
    return Contents(
        projects=store.list_projects(),
        deleted_projects=store.list_deleted_projects(),
        pipelines=store.list_pipelines(),
        history=history,
        stats=store.get_history_stats(),
        stats_by_project={pid: store.get_history_stats(pid) for pid in sorted(project_ids)},
        percentiles={pid: store.get_duration_percentiles(pid) for pid in [None, *sorted(project_ids)]},
        stages=store.get_stage_stats(),
        timelines={
            key: store.get_timeline(key)
            for key in sorted({p.id for p in store.list_pipelines()} | {r.id for r in history})
        },
    )


def populate(store: StateStore) -> dict[str, int]:
    """Projects, pipelines in every state, archived and imported history; return rows per table."""
    alpha = store.create_project("Alpha", "acme/alpha", github_project_id=7, max_retries_ci=5)
    beta = store.create_project("Bêta ünïcödé 🚀", "acme/beta", base_branch="develop", max_retries_review=0)
    gone = store.create_project("Gone", "acme/gone")
    store.create_project("Idle", "acme/idle")

    for n, state in enumerate(PipelineState):
        project = (alpha, beta)[n % 2]
        pipeline = store.create_pipeline(
            project.id, f"ACT-{n}", f"Tâche {n} — ✓", f"vibecc/act-{n}", ticket_body=f"line 1\nligne 2 é {n}"
        )
        if state is not PipelineState.QUEUED:
            store.update_pipeline(
                pipeline.id,
                state=state,
                pr_id=100 + n,
                pr_url=f"https://github.com/acme/alpha/pull/{100 + n}",
                retry_count_ci=n,
                retry_count_review=n % 3,
                feedback=f"Feedback {n}: ça marche pas 🙃",
            )

    archived = 0
    for n, (project, final) in enumerate(
        [(alpha, "merged"), (alpha, "failed"), (beta, "merged"), (gone, "failed"), (gone, "merged")]
    ):
        pipeline = store.create_pipeline(project.id, f"ARC-{n}", f"Archived {n}", f"vibecc/arc-{n}")
        store.update_pipeline(
            pipeline.id, state=final, retry_count_ci=n, retry_count_review=2 * n, pr_id=n + 1
        )
        store.archive_pipeline(pipeline.id)
        archived += 1
    store.delete_project(gone.id)

    imported = [
        helpers.history_record(
            project_id=(alpha, beta)[n % 2].id,
            completed_at=helpers.T0 + timedelta(days=n, microseconds=n),
            duration_seconds=30 * n + 1,
            final_state=PipelineState.FAILED if n % 3 == 0 else PipelineState.MERGED,
            ticket_id=f"OLD-{n}",
            retries_ci=n % 4,
            retries_review=n % 2,
        )
        for n in range(6)
    ]
    store.import_history(imported)
    return {
        "projects": 3,
        "pipelines": len(PipelineState),
        "pipeline_history": archived + len(imported),
        "deleted_projects": 1,
        "history_stats": 3,
        "pipeline_transitions": sum(len(timeline) for timeline in contents(store).timelines.values()),
        "stage_histogram": _cells(store, stage_histogram),
        "duration_histogram": _cells(store, duration_histogram),
        "stage_totals": _cells(store, stage_totals),
    }


def _cells(store: StateStore, histogram: Table) -> int:
    """Rows of a kept histogram (one per bucket in use, per project and state)."""
    with store.database.engine.connect() as conn:
        return int(conn.execute(select(func.count()).select_from(histogram)).scalar_one())


def test_sqlite_to_postgresql_to_sqlite_keeps_every_record(pg_server: PostgresServer, tmp_path: Path) -> None:
    source_path, final_path = tmp_path / "source.db", tmp_path / "final.db"
    middle_url = pg_server.create_database()
    with StateStore(source_path) as source:
        counts = populate(source)
        expected = contents(source)

    there = copy_store(source_path, middle_url, batch_size=3)
    back = copy_store(middle_url, final_path, batch_size=3)

    with StateStore(middle_url) as middle:
        assert contents(middle) == expected
    with StateStore(final_path) as final:
        assert contents(final) == expected
    for report in (there, back):
        assert {t.table: (t.source_rows, t.target_rows) for t in report.tables} == {
            name: (count, count) for name, count in counts.items()
        }
        assert all(t.source_checksum == t.target_checksum for t in report.tables)
        rebuilt = {"history_stats", "duration_histogram", "stage_totals"}
        assert report.rows == sum(n for table, n in counts.items() if table not in rebuilt)
    # The checksums describe the records, not the engine: both legs agree table by table.
    assert [t.source_checksum for t in there.tables] == [t.source_checksum for t in back.tables]
    assert "postgresql" in there.target
    assert back.source == there.target


def test_copy_to_an_empty_store_reports_progress_per_batch(store: StateStore, fresh_db: Any) -> None:
    counts = populate(store)
    expected = contents(store)
    calls: list[tuple[str, int]] = []
    target_location = fresh_db()

    report = copy_store(store, target_location, batch_size=3, progress=lambda t, n: calls.append((t, n)))

    batches = [
        (table, min(3, counts[table] - done))
        for table in (
            "projects",
            "pipelines",
            "pipeline_history",
            "deleted_projects",
            "pipeline_transitions",
            "stage_histogram",
        )
        for done in range(0, counts[table], 3)
    ]
    assert calls == batches
    assert sum(n for _, n in calls) == report.rows
    with StateStore(target_location) as target:
        assert contents(target) == expected


def test_copy_reads_the_source_in_one_snapshot(store: StateStore, fresh_db: Any) -> None:
    populate(store)
    expected = contents(store)
    project = store.list_projects()[0]
    victim = next(p for p in store.list_pipelines() if p.state.is_terminal)
    target_location = fresh_db()
    changed: list[str] = []

    def change_source(table: str, rows: int) -> None:
        # After the first batch, while the copy still has every table to read.
        if not changed:
            changed.append(store.create_project("Late", "acme/late").id)
            store.create_pipeline(project.id, "LATE-1", "Late", "late-1")
            store.archive_pipeline(victim.id)

    copy_store(store, target_location, batch_size=2, progress=change_source)

    assert changed
    assert contents(store) != expected
    with StateStore(target_location) as target:
        assert contents(target) == expected


@pytest.mark.parametrize("existing", ["project", "history only"])
def test_target_not_empty_is_refused_and_left_unchanged(
    store: StateStore, fresh_db: Any, existing: str
) -> None:
    populate(store)
    target_location = fresh_db()
    with StateStore(target_location) as target:
        if existing == "project":
            target.create_project("Mine", "acme/mine")
        else:
            target.import_history([helpers.history_record(project_id="f" * 36)])
    before = helpers.snapshot(target_location)

    table = "projects" if existing == "project" else "pipeline_history"
    with pytest.raises(
        TargetNotEmptyError, match=rf"is not empty \(table {table} has rows\); nothing written"
    ):
        copy_store(store, target_location, batch_size=3)
    assert helpers.snapshot(target_location) == before


def test_same_database_is_refused(store: StateStore, store_url: str) -> None:
    populate(store)
    before = helpers.snapshot(store_url)
    for target in (store, store_url):
        with pytest.raises(ValidationError, match="source and target are the same database"):
            copy_store(store, target)
    assert helpers.snapshot(store_url) == before


@pytest.mark.parametrize(
    "spelling",
    [
        pytest.param(lambda path: f"sqlite:///{path}", id="sqlite-url"),
        pytest.param(lambda path: f"sqlite+pysqlite:///{path}", id="sqlite+pysqlite-url"),
        pytest.param(lambda path: str(path.parent / ".." / path.parent.name / path.name), id="dotdot-path"),
        pytest.param(lambda path: str(path.parent / "alias.db"), id="symlink"),
    ],
)
def test_same_sqlite_file_spelled_differently_is_refused(tmp_path: Path, spelling: Any) -> None:
    path = tmp_path / "one" / "vibecc.db"
    with StateStore(path) as store:
        (path.parent / "alias.db").symlink_to(path)
        with pytest.raises(ValidationError, match="source and target are the same database"):
            copy_store(store, spelling(path))


def test_same_postgresql_database_spelled_differently_is_refused(pg_server: PostgresServer) -> None:
    url = pg_server.create_database()
    with StateStore(url) as store:
        # libpq's default port, written out or left out, and the driver left to the store.
        port = None if store.database.url.port == 5432 else store.database.url.port or 5432
        spelled = store.database.url.set(drivername="postgresql", port=port)
        with pytest.raises(ValidationError, match="source and target are the same database"):
            copy_store(store, spelled.render_as_string(hide_password=False))


def test_two_in_memory_stores_are_different_databases() -> None:
    with StateStore(":memory:") as source, StateStore(":memory:") as target:
        source.create_project("Alpha", "acme/alpha")
        report = copy_store(source, target)
        assert target.list_projects() == source.list_projects()
        assert report.rows == 1


def _fail_after_first_history_batch(monkeypatch: pytest.MonkeyPatch) -> None:
    original = stats_module.bump

    def bump_then_fail(*args: Any, **kwargs: Any) -> None:
        original(*args, **kwargs)
        raise OperationalError("INSERT INTO history_stats", {}, Exception("disk I/O error (simulated)"))

    monkeypatch.setattr(stats_module, "bump", bump_then_fail)


class ProgressFailed(Exception):
    pass


def _progress_fails_after_first_history_batch(table: str, rows: int) -> None:
    if table == "pipeline_history":
        raise ProgressFailed("callback gave up")


@pytest.mark.parametrize("failure", ["database error", "progress callback"])
def test_failure_mid_copy_leaves_the_target_empty(
    store: StateStore, fresh_db: Any, monkeypatch: pytest.MonkeyPatch, failure: str
) -> None:
    counts = populate(store)
    assert counts["pipeline_history"] > 3, "the copy must fail with history batches still to come"
    target_location = fresh_db()
    StateStore(target_location).close()
    empty = helpers.snapshot(target_location)

    with monkeypatch.context() as patch:
        if failure == "database error":
            _fail_after_first_history_batch(patch)
            with pytest.raises(StorageError, match=r"disk I/O error \(simulated\)"):
                copy_store(store, target_location, batch_size=3)
        else:
            with pytest.raises(ProgressFailed, match="callback gave up"):
                copy_store(
                    store, target_location, batch_size=3, progress=_progress_fails_after_first_history_batch
                )

    assert helpers.snapshot(target_location) == empty
    with StateStore(target_location) as target:
        assert target.list_projects() == []
        assert target.count_history() == 0
    # Nothing was left half-done: the same target takes a full copy now.
    report = copy_store(store, target_location, batch_size=3)
    assert {t.table: t.target_rows for t in report.tables} == counts


@pytest.mark.parametrize("batch_size", [0, -1, 100_001, True, 2.5, "3"])
def test_bad_batch_size_is_refused_before_anything_is_opened(
    store: StateStore, tmp_path: Path, batch_size: Any
) -> None:
    target = tmp_path / "never" / "vibecc.db"
    with pytest.raises(ValidationError, match="batch_size must be"):
        copy_store(store, target, batch_size=batch_size)
    assert not target.exists()


def test_copy_after_a_project_history_was_pruned_away(store: StateStore, fresh_db: Any) -> None:
    """A project whose whole history was pruned has no kept totals left over, so the copy,
    which rebuilds the totals from the rows, verifies."""
    project = store.create_project("Pruned", "acme/pruned")
    pipeline = store.create_pipeline(project.id, 1, "t", "b")
    store.update_pipeline(pipeline.id, state=PipelineState.MERGED)
    archived = store.archive_pipeline(pipeline.id)
    assert store.prune_history(before=archived.completed_at + timedelta(seconds=1)) == 1
    kept = store.create_project("Kept", "acme/kept")
    finished = store.create_pipeline(kept.id, 2, "t", "b")
    store.update_pipeline(finished.id, state=PipelineState.FAILED)
    store.archive_pipeline(finished.id)

    target_location = fresh_db()
    report = copy_store(store, target_location)

    assert all(t.matches for t in report.tables)
    with StateStore(target_location) as target:
        assert contents(target) == contents(store)
        assert target.get_history_stats(project.id) == store.get_history_stats(project.id)
