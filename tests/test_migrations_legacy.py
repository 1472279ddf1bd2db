"""Databases made by the earlier state store: SQLite files upgraded with every row (or refused
untouched), and finished duplicates of an active ticket moved to history on every engine."""

from __future__ import annotations

import hashlib
import sqlite3
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
from sqlalchemy import DateTime, bindparam, text

from vibecc.state_store import (
    HistoryStats,
    Pipeline,
    PipelineExistsError,
    PipelineHistory,
    PipelineState,
    Project,
    ProjectExistsError,
    SchemaVersionError,
    StateStore,
    migrate,
)

if TYPE_CHECKING:
    from tests import helpers
else:
    import helpers

if TYPE_CHECKING:
    from tests.legacy_data import (
        GONE,
        LEGACY_DDL,
        LEGACY_HISTORY,
        LEGACY_PIPELINES,
        LEGACY_PROJECTS,
        P1,
        P2,
        P3,
    )
    from tests.test_migrations import stored_revisions
else:
    from legacy_data import GONE, LEGACY_DDL, LEGACY_HISTORY, LEGACY_PIPELINES, LEGACY_PROJECTS, P1, P2, P3
    from test_migrations import stored_revisions


def utc(naive: str) -> datetime:
    return datetime.fromisoformat(naive).replace(tzinfo=UTC)


def make_legacy_file(path: Path) -> list[str]:
    """A database as the earlier state store left it; returns its history ids."""
    history_ids = [str(uuid.uuid4()) for _ in LEGACY_HISTORY]
    with sqlite3.connect(path) as conn:
        conn.executescript(LEGACY_DDL)
        conn.executemany("INSERT INTO projects VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)", LEGACY_PROJECTS)
        conn.executemany(
            "INSERT INTO pipelines VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            [(*row, row[-1]) for row in LEGACY_PIPELINES],
        )
        conn.executemany(
            "INSERT INTO pipeline_history VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            [
                (
                    hid,
                    project,
                    ticket,
                    f"title {ticket}",
                    final,
                    f"vibecc/{ticket}",
                    pr,
                    None,
                    ci,
                    rev,
                    s,
                    c,
                    d,
                )
                for hid, (project, ticket, final, pr, ci, rev, s, c, d) in zip(
                    history_ids, LEGACY_HISTORY, strict=True
                )
            ],
        )
    conn.close()
    return history_ids


def file_digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_legacy_sqlite_file_is_upgraded_with_every_row(tmp_path: Path) -> None:
    path = tmp_path / "legacy.db"
    history_ids = make_legacy_file(path)

    with StateStore(path) as store:
        assert migrate.current(store.database.engine) == migrate.HEAD
        assert migrate.check(store.database.engine) == []
        assert store.list_projects() == sorted(
            (
                Project(pid, name, repo, branch, gh, ci, rev, utc(created), utc(updated))
                for pid, name, repo, branch, gh, ci, rev, created, updated in LEGACY_PROJECTS
            ),
            key=lambda p: p.name,
        )
        expected_pipelines = {
            pid: Pipeline(
                pid, project, ticket, title, body or "", PipelineState(state.lower()), branch, pr, url,
                ci, rev, feedback, utc(created), utc(created), 1,
            )
            for pid, project, ticket, title, body, state, branch, pr, url, ci, rev, feedback, created
            in LEGACY_PIPELINES
        }  # fmt: skip
        assert {p.id: p for p in store.list_pipelines()} == expected_pipelines
        assert [p.id for p in store.list_pipelines()] == ["a6", "a5", "a4", "a3", "a2", "a1"]
        expected_history = {
            hid: PipelineHistory(
                hid, project, ticket, f"title {ticket}", PipelineState(final.lower()), f"vibecc/{ticket}", pr,
                None, ci, rev, utc(started), utc(completed), duration,
            )
            for hid, (project, ticket, final, pr, ci, rev, started, completed, duration)
            in zip(history_ids, LEGACY_HISTORY, strict=True)
        }  # fmt: skip
        history = list(store.iter_history())
        assert {h.id: h for h in history} == expected_history
        assert [h.id for h in store.get_history()] == [h.id for h in reversed(history)]
        assert store.get_history_stats() == helpers.stats_of(history)
        assert store.get_history_stats() == HistoryStats(
            5, 3, 2, (3600 + 42 + 86400 + 7 + 60) / 5, 6 / 5, 6 / 5
        )
        for project_id in (P1, P2, P3, GONE):
            mine = [h for h in history if h.project_id == project_id]
            assert store.get_history_stats(project_id) == helpers.stats_of(mine)
        assert store.count_history(final_state="merged") == 3

        # New writes work on the upgraded file, and the new constraints hold.
        with pytest.raises(ProjectExistsError):
            store.create_project("Again", "acme/widgets")
        with pytest.raises(PipelineExistsError):
            store.create_pipeline(P1, 1, "dup", "b")
        updated = store.update_pipeline("a2", retry_count_ci=2, expected_version=1)
        assert (updated.version, updated.state, updated.ticket_body) == (2, PipelineState.CODING, "body 2")
        claimed = store.claim_pipeline()
        assert claimed is not None
        assert (claimed.id, claimed.state, claimed.version) == ("a1", PipelineState.CODING, 2)
        archived = store.archive_pipeline("a5")
        assert (archived.id, archived.final_state, archived.started_at) == (
            "a5",
            PipelineState.MERGED,
            utc("2025-01-12 00:00:00"),
        )
        store.delete_pipeline("a6")
        store.delete_project(P3)
        new = store.create_project("New", "acme/new")
        store.create_pipeline(new.id, 1, "t", "b")
        assert store.get_history_stats() == helpers.stats_of(store.iter_history())
        assert store.count_history() == 6
    assert stored_revisions(str(path)) == [migrate.HEAD]


def test_legacy_sqlite_file_refused_untouched_without_auto_migrate(tmp_path: Path) -> None:
    path = tmp_path / "legacy.db"
    make_legacy_file(path)
    digest = file_digest(path)
    files = sorted(p.name for p in tmp_path.iterdir())

    with pytest.raises(SchemaVersionError, match=r"earlier state store.*vibecc-state db upgrade"):
        StateStore(path, auto_migrate=False)

    assert file_digest(path) == digest
    assert sorted(p.name for p in tmp_path.iterdir()) == files
    with sqlite3.connect(path) as conn:
        assert conn.execute("SELECT count(*) FROM pipelines").fetchone() == (len(LEGACY_PIPELINES),)
        assert conn.execute("PRAGMA journal_mode").fetchone() == ("delete",)
    conn.close()


# The earlier store had no unique (project, ticket): it could leave a finished pipeline that was
# never archived next to a newer one. Rows as LEGACY_PIPELINES, with updated_at last.
STALE_FAILED = (
    "b1", P1, "1", "Old try", "old body", "FAILED", "vibecc/1-old", 11,
    "https://github.com/acme/widgets/pull/11", 3, 1, "gave up",
    "2025-01-09 08:00:00.750000", "2025-01-09 09:30:00.250000",
)  # fmt: skip
# Updated before it was created (clock skew): its duration clamps to 0.
STALE_MERGED = (
    "b5", P2, "5", "Merged before", None, "MERGED", "vibecc/5-old", 50, None, 0, 2, None,
    "2025-01-08 00:00:05.000000", "2025-01-08 00:00:00.000000",
)  # fmt: skip
SECOND_QUEUED = (
    "b1", P1, "1", "Queued again", None, "QUEUED", "vibecc/1-again", None, None, 0, 0, None,
    "2025-01-10 08:00:02.000000", "2025-01-10 08:00:02.000000",
)  # fmt: skip


def add_legacy_rows(path: Path, pipelines: list[tuple[Any, ...]], sql: str = "") -> None:
    with sqlite3.connect(path) as conn:
        conn.executemany("INSERT INTO pipelines VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", pipelines)
        conn.executescript(sql)
    conn.close()


def archived(row: tuple[Any, ...], duration: int) -> PipelineHistory:
    """The history record the store makes of a finished legacy pipeline row."""
    pid, project, ticket, title, _, state, branch, pr, url, ci, review, _, created, updated = row
    return PipelineHistory(
        pid, project, ticket, title, PipelineState(state.lower()), branch, pr, url, ci, review,
        utc(created), utc(updated), duration,
    )  # fmt: skip


def test_legacy_finished_duplicates_move_to_history(tmp_path: Path) -> None:
    path = tmp_path / "legacy.db"
    history_ids = make_legacy_file(path)
    add_legacy_rows(path, [STALE_FAILED, STALE_MERGED])
    a5 = next(row for row in LEGACY_PIPELINES if row[0] == "a5")

    with StateStore(path) as store:
        assert migrate.check(store.database.engine) == []
        # Every row is kept: the finished duplicates as history, the rest still active.
        assert sorted(p.id for p in store.list_pipelines()) == ["a1", "a2", "a3", "a4", "a6"]
        a1 = store.get_pipeline_by_ticket(P1, 1)
        assert (a1.id, a1.state, a1.version) == ("a1", PipelineState.QUEUED, 1)
        history = {h.id: h for h in store.iter_history()}
        assert set(history) == {*history_ids, "a5", "b1", "b5"}
        assert history["b1"] == archived(STALE_FAILED, 5399)
        assert history["b5"] == archived(STALE_MERGED, 0)
        assert history["a5"] == archived((*a5, a5[-1]), 0)
        assert store.get_history_stats() == helpers.stats_of(history.values())
        assert store.get_history_stats() == HistoryStats(
            8, 5, 3, (3600 + 42 + 86400 + 7 + 60 + 5399) / 8, (6 + 3 + 0 + 1) / 8, (6 + 1 + 2 + 2) / 8
        )
        for project_id in (P1, P2, P3, GONE):
            mine = [h for h in history.values() if h.project_id == project_id]
            assert store.get_history_stats(project_id) == helpers.stats_of(mine)

        with pytest.raises(PipelineExistsError):
            store.create_pipeline(P1, 1, "dup", "b")
        again = store.create_pipeline(P2, 5, "Ticket 5 again", "vibecc/5-again")
        new = store.create_pipeline(P1, 7, "New ticket", "vibecc/7")
        assert store.get_pipeline_by_ticket(P1, 7) == new
        store.update_pipeline(again.id, state="merged")
        store.archive_pipeline(again.id)
        assert store.get_history_stats() == helpers.stats_of(store.iter_history())
        assert store.count_history() == 9


@pytest.mark.parametrize(
    ("pipelines", "sql", "refusal"),
    [
        pytest.param(
            [SECOND_QUEUED, STALE_MERGED],
            "",
            rf"several unfinished pipelines for one ticket: {P1}#1 \(a1, b1\); .*FAILED",
            id="two-unfinished-for-one-ticket",
        ),
        pytest.param(
            [STALE_MERGED],
            "UPDATE pipeline_history SET id = 'b5' WHERE ticket_id = '92';",
            r"finished pipelines b5 must move to the history.*damaged",
            id="history-id-taken",
        ),
    ],
)
def test_legacy_duplicates_that_cannot_move_are_refused_untouched(
    tmp_path: Path, pipelines: list[tuple[Any, ...]], sql: str, refusal: str
) -> None:
    """Refused after finished duplicates moved (in the first case): one transaction undoes all."""
    path = tmp_path / "legacy.db"
    make_legacy_file(path)
    add_legacy_rows(path, pipelines, sql)
    digest = file_digest(path)
    files = sorted(p.name for p in tmp_path.iterdir())

    with pytest.raises(SchemaVersionError, match=refusal):
        StateStore(path)

    assert file_digest(path) == digest
    assert sorted(p.name for p in tmp_path.iterdir()) == files


def test_finished_duplicates_move_to_history_on_every_engine(fresh_db: Callable[[], str]) -> None:
    location = fresh_db()
    created, updated = datetime(2025, 1, 9, 8, 0, 0, 750000), datetime(2025, 1, 9, 9, 30, 0, 250000)
    with StateStore(location) as store:
        project = store.create_project("Acme", "acme/widgets")
        active = store.create_pipeline(project.id, 1, "Current", "vibecc/1")
        migrate.downgrade(store.database.engine, "0001")
        with store.database.engine.begin() as conn:
            conn.execute(
                text(
                    "INSERT INTO pipelines VALUES ('old', :project, '1', 'Old try', NULL, 'FAILED', "
                    "'vibecc/1-old', 11, NULL, 3, 1, 'gave up', :created, :updated)"
                ).bindparams(bindparam("created", type_=DateTime()), bindparam("updated", type_=DateTime())),
                {"project": project.id, "created": created, "updated": updated},
            )

        migrate.upgrade(store.database.engine)

        assert migrate.check(store.database.engine) == []
        assert store.list_pipelines() == [active]
        assert list(store.iter_history()) == [
            PipelineHistory(
                "old", project.id, "1", "Old try", PipelineState.FAILED, "vibecc/1-old", 11, None, 3, 1,
                created.replace(tzinfo=UTC), updated.replace(tzinfo=UTC), 5399,
            )
        ]  # fmt: skip
        assert store.get_history_stats() == helpers.stats_of(store.iter_history())
