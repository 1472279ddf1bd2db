"""Schema revisions: one head, models == migrations, round trips with data, databases made by the
earlier state store, schemas behind or ahead of the code, and concurrent first opens."""

from __future__ import annotations

import hashlib
import itertools
import multiprocessing
import queue
import sqlite3
import traceback
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
from sqlalchemy import DateTime, bindparam, create_engine, inspect, text
from sqlalchemy.pool import NullPool

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
    from multiprocessing.queues import Queue
    from multiprocessing.synchronize import Barrier

    from tests import helpers
else:
    import helpers

TABLES = {"projects", "pipelines", "pipeline_history", "history_stats"}


def stored_revisions(location: str) -> list[str]:
    engine = create_engine(helpers.database_url(location), poolclass=NullPool)
    try:
        with engine.connect() as conn:
            return list(conn.execute(text("SELECT version_num FROM alembic_version")).scalars())
    finally:
        engine.dispose()


def populate(store: StateStore) -> None:
    """Projects, pipelines in every state (some written several times) and history."""
    acme = store.create_project("Acme", "acme/widgets", github_project_id=2**31 - 1, max_retries_ci=5)
    other = store.create_project("Other", "acme/other", base_branch="develop")
    for ticket, state in enumerate(PipelineState):
        pipeline = store.create_pipeline(
            acme.id, ticket, f"t{ticket}", f"vibecc/{ticket}", ticket_body="body"
        )
        store.update_pipeline(pipeline.id, state=state, pr_id=ticket + 1, feedback=f"fb {ticket}")
    for ticket in (10, 11):
        pipeline = store.create_pipeline(other.id, ticket, "done", "b")
        store.update_pipeline(pipeline.id, state="failed" if ticket % 2 else "merged", retry_count_ci=ticket)
        store.archive_pipeline(pipeline.id)
    store.import_history(
        [
            helpers.history_record(project_id=acme.id, duration_seconds=3600, retries_ci=2),
            helpers.history_record(project_id="gone-project", final_state=PipelineState.FAILED),
        ]
    )


def contents(store: StateStore) -> tuple[list[Project], list[Pipeline], list[PipelineHistory], HistoryStats]:
    return (
        store.list_projects(),
        store.list_pipelines(),
        list(store.iter_history()),
        store.get_history_stats(),
    )


# -- the revision scripts -------------------------------------------------------------------------


def test_one_head_and_it_is_migrate_head() -> None:
    assert migrate.script().get_heads() == [migrate.HEAD]
    # HEAD comes from Alembic; the newest script file, 0006, says the same on its own.
    newest = sorted((Path(migrate.__file__).parent / "migrations" / "versions").glob("[0-9]*.py"))[-1]
    assert newest.name.startswith("0006_")
    assert f'\nrevision = "{migrate.HEAD}"\n' in newest.read_text(encoding="utf-8")
    assert migrate.HEAD == migrate.head() == "0006"
    chain = migrate.revisions()
    assert chain[-1].revision == migrate.HEAD
    assert chain[0].down_revision is None
    assert all(later.down_revision == earlier.revision for earlier, later in itertools.pairwise(chain))
    assert all(r.message for r in chain)


def test_models_match_migrations_on_fresh_database(fresh_db: Callable[[], str]) -> None:
    with StateStore(fresh_db()) as store:
        assert migrate.check(store.database.engine) == []
        assert migrate.current(store.database.engine) == migrate.HEAD
        assert set(inspect(store.database.engine).get_table_names()) >= TABLES


def test_base_head_base_head_with_data(fresh_db: Callable[[], str]) -> None:
    location = fresh_db()
    with StateStore(location) as store:
        populate(store)
        projects, pipelines, history, stats = contents(store)

        migrate.downgrade(store.database.engine, "0001")

        assert migrate.current(store.database.engine) == "0001"
        assert "history_stats" not in inspect(store.database.engine).get_table_names()
        with store.database.engine.connect() as conn:
            states = set(conn.execute(text("SELECT state FROM pipelines")).scalars())
            finals = set(conn.execute(text("SELECT final_state FROM pipeline_history")).scalars())
        assert states == {s.name for s in PipelineState}
        assert finals == {"MERGED", "FAILED"}

        migrate.upgrade(store.database.engine)

        assert migrate.check(store.database.engine) == []
        assert store.list_projects() == projects
        # 0001 has no version column: the upgrade starts every pipeline again at version 1.
        assert store.list_pipelines() == [
            Pipeline(**{**{f: getattr(p, f) for f in p.__dataclass_fields__}, "version": 1})
            for p in pipelines
        ]
        assert list(store.iter_history()) == history
        assert store.get_history_stats() == stats == helpers.stats_of(history)
        assert store.get_history_stats("gone-project").total_failed == 1

        migrate.downgrade(store.database.engine, "base")

        assert migrate.current(store.database.engine) is None
        assert not TABLES & set(inspect(store.database.engine).get_table_names())

        migrate.upgrade(store.database.engine)

        assert migrate.check(store.database.engine) == []
        assert contents(store) == ([], [], [], HistoryStats(0, 0, 0, 0.0, 0.0, 0.0))
        populate(store)
        assert store.get_history_stats() == helpers.stats_of(store.iter_history())


# -- databases behind or ahead of the code --------------------------------------------------------


def test_older_schema_refused_without_auto_migrate(fresh_db: Callable[[], str]) -> None:
    location = fresh_db()
    with StateStore(location) as store:
        populate(store)
        projects, _, history, stats = contents(store)
        migrate.downgrade(store.database.engine, "0001")
    before = helpers.snapshot(location)

    with pytest.raises(
        SchemaVersionError, match=r"revision 0001, this code needs 0006.*vibecc-state db upgrade"
    ):
        StateStore(location, auto_migrate=False)

    assert helpers.snapshot(location) == before
    with StateStore(location) as store:
        assert migrate.current(store.database.engine) == migrate.HEAD
        assert store.list_projects() == projects
        assert list(store.iter_history()) == history
        assert store.get_history_stats() == stats
        assert len(store.list_pipelines()) == len(PipelineState)
    assert stored_revisions(location) == [migrate.HEAD]


@pytest.mark.parametrize("auto_migrate", [True, False])
def test_newer_schema_refused(fresh_db: Callable[[], str], auto_migrate: bool) -> None:
    location = fresh_db()
    with StateStore(location) as store:
        populate(store)
    engine = create_engine(helpers.database_url(location), poolclass=NullPool)
    with engine.begin() as conn:
        conn.execute(text("UPDATE alembic_version SET version_num = 'ffff9999'"))
    engine.dispose()
    before = helpers.snapshot(location)

    with pytest.raises(SchemaVersionError, match=r"ffff9999, newer than this code \(head 0006\)"):
        StateStore(location, auto_migrate=auto_migrate)

    assert helpers.snapshot(location) == before
    assert stored_revisions(location) == ["ffff9999"]


def test_database_without_schema_refused_without_auto_migrate(fresh_db: Callable[[], str]) -> None:
    location = fresh_db()

    with pytest.raises(SchemaVersionError, match="no state store schema"):
        StateStore(location, auto_migrate=False)

    assert not TABLES & set(helpers.snapshot(location).counts)


# -- the earlier state store's SQLite files ---------------------------------------------------------

LEGACY_DDL = """
CREATE TABLE projects (
    id VARCHAR(36) NOT NULL,
    name VARCHAR(255) NOT NULL,
    repo VARCHAR(255) NOT NULL,
    base_branch VARCHAR(255) NOT NULL,
    github_project_id INTEGER,
    max_retries_ci INTEGER NOT NULL,
    max_retries_review INTEGER NOT NULL,
    created_at DATETIME NOT NULL,
    updated_at DATETIME NOT NULL,
    PRIMARY KEY (id),
    UNIQUE (repo)
);
CREATE TABLE pipelines (
    id VARCHAR(36) NOT NULL,
    project_id VARCHAR(36) NOT NULL,
    ticket_id VARCHAR(64) NOT NULL,
    ticket_title VARCHAR(1000) NOT NULL,
    ticket_body TEXT,
    state VARCHAR(7) NOT NULL,
    branch_name VARCHAR(255) NOT NULL,
    pr_id INTEGER,
    pr_url VARCHAR(2048),
    retry_count_ci INTEGER NOT NULL,
    retry_count_review INTEGER NOT NULL,
    feedback TEXT,
    created_at DATETIME NOT NULL,
    updated_at DATETIME NOT NULL,
    PRIMARY KEY (id),
    FOREIGN KEY(project_id) REFERENCES projects (id)
);
CREATE TABLE pipeline_history (
    id VARCHAR(36) NOT NULL,
    project_id VARCHAR(36) NOT NULL,
    ticket_id VARCHAR(64) NOT NULL,
    ticket_title VARCHAR(1000) NOT NULL,
    final_state VARCHAR(7) NOT NULL,
    branch_name VARCHAR(255) NOT NULL,
    pr_id INTEGER,
    pr_url VARCHAR(2048),
    total_retries_ci INTEGER NOT NULL,
    total_retries_review INTEGER NOT NULL,
    started_at DATETIME NOT NULL,
    completed_at DATETIME NOT NULL,
    duration_seconds INTEGER NOT NULL,
    PRIMARY KEY (id)
);
"""

P1, P2, P3, GONE = (str(uuid.uuid4()) for _ in range(4))
LEGACY_PROJECTS = [
    (
        P1,
        "Acme",
        "acme/widgets",
        "main",
        12,
        3,
        2,
        "2025-01-02 03:04:05.123456",
        "2025-01-05 00:00:00.000001",
    ),
    (
        P2,
        "Other",
        "acme/other",
        "develop",
        None,
        0,
        5,
        "2025-01-03 10:00:00.000000",
        "2025-01-03 10:00:00.000000",
    ),
    (
        P3,
        "Empty",
        "acme/empty",
        "trunk",
        None,
        1,
        1,
        "2025-02-01 12:30:00.500000",
        "2025-02-01 12:30:00.500000",
    ),
]
LEGACY_PIPELINES = [
    # id, project, ticket, title, body, state, branch, pr_id, pr_url, ci, review, feedback, created, updated
    (
        "a1",
        P1,
        "1",
        "Queued one",
        None,
        "QUEUED",
        "vibecc/1",
        None,
        None,
        0,
        0,
        None,
        "2025-01-10 08:00:00.000001",
    ),
    (
        "a2",
        P1,
        "2",
        "Coding",
        "body 2",
        "CODING",
        "vibecc/2",
        None,
        None,
        1,
        0,
        "ci red",
        "2025-01-10 08:00:01.5",
    ),
    (
        "a3",
        P1,
        "3",
        "Testing",
        "",
        "TESTING",
        "vibecc/3",
        33,
        "https://github.com/acme/widgets/pull/33",
        2,
        0,
        None,
        "2025-01-10 09:00:00.000000",
    ),
    (
        "a4",
        P2,
        "4",
        "Review",
        None,
        "REVIEW",
        "vibecc/4",
        44,
        "https://github.com/acme/other/pull/44",
        0,
        1,
        "nits",
        "2025-01-11 23:59:59.999999",
    ),
    (
        "a5",
        P2,
        "5",
        "Merged",
        "done",
        "MERGED",
        "vibecc/5",
        55,
        "https://github.com/acme/other/pull/55",
        1,
        2,
        None,
        "2025-01-12 00:00:00.000000",
    ),
    (
        "a6",
        P2,
        "6",
        "Failed",
        None,
        "FAILED",
        "vibecc/6",
        None,
        None,
        3,
        3,
        "gave up",
        "2025-01-12 06:00:00.000000",
    ),
]
LEGACY_HISTORY = [
    # project, ticket, final, pr_id, ci, review, started, completed, duration
    (P1, "90", "MERGED", 90, 1, 0, "2024-12-01 10:00:00.000000", "2024-12-01 11:00:00.250000", 3600),
    (P1, "91", "FAILED", None, 3, 3, "2024-12-02 10:00:00.000000", "2024-12-02 10:00:42.000000", 42),
    (P2, "92", "MERGED", 92, 0, 1, "2024-12-03 00:00:00.000000", "2024-12-04 00:00:00.000000", 86400),
    (GONE, "93", "FAILED", None, 0, 0, "2024-11-01 00:00:00.000000", "2024-11-01 00:00:07.654321", 7),
    (GONE, "94", "MERGED", 94, 2, 2, "2024-11-02 00:00:00.000000", "2024-11-02 00:01:00.000000", 60),
]


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


# -- first opens racing each other ------------------------------------------------------------------


def _open_when_released(location: str, barrier: Barrier, results: Queue[tuple[str, str]]) -> None:
    """Child process: wait for the others, open the store at the same instant, report back."""
    try:
        barrier.wait(timeout=60)
        with StateStore(location) as store:
            project = store.create_project("p", f"acme/{uuid.uuid4().hex}")
            results.put(("ok", project.id))
    except BaseException:
        results.put(("error", traceback.format_exc()))


def collect(children: list[Any], results: Any) -> list[tuple[str, str]]:
    """Each child's report; a child that dies without one fails the test at once."""
    outcomes: list[tuple[str, str]] = []
    try:
        while len(outcomes) < len(children):
            try:
                outcomes.append(results.get(timeout=1))
            except queue.Empty:
                if not any(child.is_alive() for child in children) and results.empty():
                    codes = [child.exitcode for child in children]
                    pytest.fail(f"children exited {codes} without reporting; got {outcomes}")
    finally:
        for child in children:
            child.join(timeout=60)
    return outcomes


def test_processes_opening_a_new_database_at_once(fresh_db: Callable[[], str]) -> None:
    location = fresh_db()
    processes = 2
    context = multiprocessing.get_context("spawn")
    barrier = context.Barrier(processes)
    results: Any = context.Queue()
    children = [
        context.Process(target=_open_when_released, args=(location, barrier, results))
        for _ in range(processes)
    ]
    for child in children:
        child.start()

    outcomes = collect(children, results)

    assert [kind for kind, _ in outcomes] == ["ok"] * processes, outcomes
    assert [child.exitcode for child in children] == [0] * processes
    assert stored_revisions(location) == [migrate.HEAD]
    with StateStore(location, auto_migrate=False) as store:
        assert migrate.check(store.database.engine) == []
        assert sorted(p.id for p in store.list_projects()) == sorted(detail for _, detail in outcomes)


def test_stamps_and_times_survive_round_trip_exactly(fresh_db: Callable[[], str]) -> None:
    location = fresh_db()
    with StateStore(location) as store:
        project = store.create_project("Acme", "acme/widgets")
        record = helpers.history_record(
            project_id=project.id, completed_at=datetime(2024, 2, 29, 23, 59, 59, 999999, tzinfo=UTC)
        )
        store.import_history([record])
        migrate.downgrade(store.database.engine, "0001")
        migrate.upgrade(store.database.engine)

        assert store.get_history_record(record.id) == record
        assert store.get_project(project.id) == project
        assert store.get_history(since=record.completed_at) == [record]
        assert store.get_history(until=record.completed_at + timedelta(microseconds=1)) == [record]


def test_offline_upgrade_sql_builds_the_same_schema_as_the_online_upgrade(
    engine_name: str, fresh_db: Callable[[], str]
) -> None:
    """`vibecc-state db sql` hands a DBA the whole upgrade; run by hand it must give the schema
    the models expect (SQLite renders its table rebuilds from the baseline tables)."""
    script = migrate.upgrade_sql(engine_name)
    location = fresh_db()
    if engine_name == "sqlite":
        Path(location).parent.mkdir(parents=True)
        with sqlite3.connect(location) as conn:
            conn.executescript(script)
        url = f"sqlite:///{location}"
    else:
        url = location
        engine = create_engine(url, poolclass=NullPool)
        with engine.begin() as conn:
            conn.exec_driver_sql(script)
        engine.dispose()
    engine = create_engine(url, poolclass=NullPool)
    try:
        assert migrate.current(engine) == migrate.HEAD
        assert migrate.check(engine) == []
    finally:
        engine.dispose()


def test_keys_and_names_compare_by_code_point_on_postgresql(pg_server: Any) -> None:
    """Alembic's comparison does not look at collations, so this checks them directly: every
    id, project id and project name is COLLATE "C" after the migrations."""
    url = pg_server.create_database()
    StateStore(url).close()
    engine = create_engine(url, poolclass=NullPool)
    try:
        with engine.connect() as conn:
            found = conn.execute(
                text(
                    "SELECT table_name, column_name FROM information_schema.columns "
                    "WHERE table_schema = 'public' AND collation_name = 'C' ORDER BY 1, 2"
                )
            ).all()
    finally:
        engine.dispose()
    assert [tuple(row) for row in found] == [
        ("changes", "entity_id"),
        ("changes", "project_id"),
        ("deleted_projects", "id"),
        ("duration_histogram", "project_id"),
        ("history_stats", "project_id"),
        ("pipeline_history", "id"),
        ("pipeline_history", "project_id"),
        ("pipeline_transitions", "pipeline_id"),
        ("pipeline_transitions", "project_id"),
        ("pipelines", "id"),
        ("pipelines", "project_id"),
        ("projects", "id"),
        ("projects", "name"),
        ("stage_histogram", "project_id"),
    ]
