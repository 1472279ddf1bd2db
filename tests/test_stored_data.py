"""What the store reads back or is handed that is not what it wrote: a cursor token that is not
a str or overflows, an import that is not a list of records, rows edited by hand. Each is a
StateStoreError (ValidationError for an argument, StorageError for stored data), never a raw
TypeError, OverflowError or ValueError, and nothing is written."""

from __future__ import annotations

import base64
import dataclasses
import sqlite3
from collections.abc import Callable
from datetime import UTC, datetime, timedelta, tzinfo
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
from sqlalchemy import create_engine, text

from vibecc.state_store import (
    HistoryCursor,
    SchemaVersionError,
    StateStore,
    StorageError,
    ValidationError,
    copy_store,
    migrate,
)

if TYPE_CHECKING:
    from tests import helpers
else:
    import helpers


def _token(raw: str) -> str:
    return base64.urlsafe_b64encode(raw.encode()).decode()


@pytest.mark.parametrize(
    "token",
    [
        None,
        5,
        2.5,
        b"MjAyNQ==",
        ["token"],
        _token("0001-01-01T00:00:00+05:00|some-id"),  # before the first moment in UTC
        _token("9999-12-31T23:59:59-05:00|some-id"),  # after the last one
        _token("2025-01-01T00:00:00|some-id"),  # no offset
        _token("2025-01-01T00:00:00+00:00|"),  # no id
        "é",
    ],
    ids=repr,
)
def test_cursor_parse_refuses_what_str_cursor_never_makes(token: Any) -> None:
    with pytest.raises(ValidationError, match="history cursor"):
        HistoryCursor.parse(token)


@pytest.mark.parametrize("records", [None, 5, b"x", "a str", object()], ids=repr)
def test_import_history_refuses_what_is_not_an_iterable_of_records(
    store: StateStore, store_url: str, records: Any
) -> None:
    before = helpers.snapshot(store_url)
    with pytest.raises(ValidationError):
        store.import_history(records)
    assert helpers.snapshot(store_url) == before


def test_import_history_refuses_a_single_record_passed_without_a_list(store: StateStore) -> None:
    project = store.create_project("P", "acme/p")
    with pytest.raises(ValidationError, match="iterable of PipelineHistory"):
        store.import_history(helpers.history_record(project_id=project.id))  # type: ignore[arg-type]
    assert store.count_history() == 0


# -- rows edited by hand (SQLite keeps what it is given) ------------------------------------------


def _edit(path: str, sql: str) -> None:
    conn = sqlite3.connect(path)
    try:
        conn.execute("PRAGMA ignore_check_constraints = ON")  # as a careless hand edit would
        conn.execute(sql)
        conn.commit()
    finally:
        conn.close()


@pytest.mark.parametrize(
    ("column", "value"),
    [
        ("created_at", "'yesterday'"),
        ("updated_at", "'2025-13-45 99:00:00.000000'"),
        ("created_at", "42"),
        ("state", "'WAITING'"),
        ("state", "7"),
    ],
)
def test_a_hand_edited_pipeline_row_is_a_storage_error_for_every_read(
    tmp_path: Path, column: str, value: str
) -> None:
    path = str(tmp_path / "vibecc.db")
    with StateStore(path) as store:
        project = store.create_project("P", "acme/p")
        pipeline = store.create_pipeline(project.id, 1, "t", "main")
    _edit(path, f"UPDATE pipelines SET {column} = {value}")  # noqa: S608 (test data)
    with StateStore(path) as store:
        for read in (
            lambda: store.get_pipeline(pipeline.id),
            lambda: store.list_pipelines(),
            lambda: store.get_pipeline_by_ticket(project.id, 1),
        ):
            with pytest.raises(StorageError, match="stored"):
                read()
        assert store.list_projects() == [store.get_project(project.id)], "other tables still read"


def test_a_hand_edited_history_timestamp_is_a_storage_error(tmp_path: Path) -> None:
    path = str(tmp_path / "vibecc.db")
    with StateStore(path) as store:
        project = store.create_project("P", "acme/p")
        store.import_history([helpers.history_record(project_id=project.id)])
    _edit(path, "UPDATE pipeline_history SET completed_at = 'not a time'")
    with StateStore(path) as store:
        with pytest.raises(StorageError, match="stored timestamp"):
            store.get_history()
        with pytest.raises(StorageError, match="stored timestamp"):
            list(store.iter_history())


@pytest.mark.parametrize(
    ("sql", "reads"),
    [
        ("UPDATE pipelines SET pr_id = 'abc'", "pipelines"),
        ("UPDATE pipelines SET version = 'v'", "pipelines"),
        ("UPDATE pipelines SET retry_count_ci = 1.5", "pipelines"),
        ("UPDATE pipelines SET ticket_title = x'00ff'", "pipelines"),
        ("UPDATE projects SET github_project_id = 1.5", "projects"),
        ("UPDATE projects SET name = x'6e616d65'", "projects"),
        ("UPDATE pipeline_history SET duration_seconds = 'long'", "history"),
        ("UPDATE pipeline_history SET total_retries_review = 9.5", "history"),
        ("UPDATE deleted_projects SET repo = x'00'", "deleted"),
    ],
)
def test_a_value_of_the_wrong_type_in_a_row_is_a_storage_error_everywhere(
    tmp_path: Path, sql: str, reads: str
) -> None:
    """SQLite keeps text in an integer column and bytes in a text one: the store reads such a
    row as StorageError (in every read and in a copy), never as a record holding a str where
    an int belongs."""
    path = str(tmp_path / "vibecc.db")
    with StateStore(path) as store:
        project = store.create_project("P", "acme/p")
        store.create_pipeline(project.id, 1, "t", "main")
        store.import_history([helpers.history_record(project_id=project.id)])
        gone = store.create_project("Gone", "acme/gone")
        store.delete_project(gone.id)
    _edit(path, sql)
    with StateStore(path) as store:
        read: Callable[[], object] = {
            "pipelines": lambda: store.list_pipelines(),
            "projects": lambda: store.list_projects(),
            "history": lambda: store.get_history(),
            "deleted": lambda: store.list_deleted_projects(),
        }[reads]
        with pytest.raises(StorageError, match="stored"):
            read()
        if "duration_seconds" in sql:
            with pytest.raises(StorageError, match="stored"):
                store.get_duration_percentiles(exact=True)  # the kept histogram reads no row
        with pytest.raises(StorageError, match="stored"):
            copy_store(store, str(tmp_path / "copy.db"))


# -- migration 0003 ---------------------------------------------------------------------------------


def test_upgrade_refuses_projects_whose_repos_differ_only_in_case(fresh_db: Any) -> None:
    location = fresh_db()
    if "://" not in location:
        Path(location).parent.mkdir(parents=True)
    engine = create_engine(helpers.database_url(location))
    try:
        migrate.upgrade(engine, "0002")
        with engine.begin() as conn:
            for pid, repo in (("p1", "acme/widgets"), ("p2", "ACME/Widgets"), ("p3", "acme/other")):
                conn.execute(
                    text(
                        "INSERT INTO projects (id, name, repo, base_branch, max_retries_ci, "
                        "max_retries_review, created_at, updated_at) VALUES "
                        "(:id, :id, :repo, 'main', 3, 3, '2025-01-01 00:00:00', '2025-01-01 00:00:00')"
                    ),
                    {"id": pid, "repo": repo},
                )
        before = helpers.snapshot(location)
        with pytest.raises(
            SchemaVersionError,
            match=r"differ only in case.*: acme/widgets \(p1\), ACME/Widgets \(p2\); delete",
        ):
            StateStore(location)
        assert helpers.snapshot(location) == before
        assert migrate.current(engine) == "0002"
        with engine.begin() as conn:
            conn.execute(text("DELETE FROM projects WHERE id = 'p2'"))
    finally:
        engine.dispose()
    with StateStore(location) as store:
        assert [p.repo for p in store.list_projects()] == ["acme/widgets", "acme/other"]


# -- time zones of the caller's own making ---------------------------------------------------------


class _Offset(tzinfo):
    """A tzinfo whose utcoffset() gives what it is told to, or raises."""

    def __init__(self, offset: Any) -> None:
        self.offset = offset

    def utcoffset(self, dt: datetime | None) -> Any:
        if isinstance(self.offset, Exception):
            raise self.offset
        return self.offset

    def dst(self, dt: datetime | None) -> timedelta | None:
        return None

    def tzname(self, dt: datetime | None) -> str | None:
        return "odd"


ODD_ZONES = [
    pytest.param(timedelta(hours=25), id="offset-over-a-day"),
    pytest.param(5, id="offset-an-int"),
    pytest.param(RuntimeError("broken zone"), id="utcoffset-raises"),
]


@pytest.mark.parametrize("offset", ODD_ZONES)
def test_a_datetime_whose_zone_misbehaves_is_a_validation_error(
    store: StateStore, store_url: str, offset: Any
) -> None:
    moment = datetime(2025, 1, 1, tzinfo=_Offset(offset))
    project = store.create_project("P", "acme/p")
    record = dataclasses.replace(helpers.history_record(project_id=project.id), completed_at=moment)
    before = helpers.snapshot(store_url)
    for call in (
        lambda: store.get_history(since=moment),
        lambda: store.get_history_stats(until=moment),
        lambda: store.count_history(since=moment),
        lambda: list(store.iter_history(until=moment)),
        lambda: store.prune_history(before=moment),
        lambda: store.import_history([record]),
        lambda: HistoryCursor(moment, "some-id"),
    ):
        with pytest.raises(ValidationError, match=r"time zone|UTC offset|aware datetime|out of range"):
            call()
    assert helpers.snapshot(store_url) == before


def test_upgrade_refuses_history_the_store_would_refuse(fresh_db: Any) -> None:
    """History an earlier store kept but this one refuses (an unfinished state, a negative
    duration, a retry count out of range) is named, and nothing changes."""
    location = fresh_db()
    if "://" not in location:
        Path(location).parent.mkdir(parents=True)
    engine = create_engine(helpers.database_url(location))
    rows = [("h-ok", "merged", 60, 0), ("h-queued", "queued", 60, 0), ("h-negative", "failed", -5, 0)]
    rows.append(("h-retries", "merged", 60, 5_000_000))
    try:
        migrate.upgrade(engine, "0002")
        with engine.begin() as conn:
            for hid, state, duration, retries in rows:
                conn.execute(
                    text(
                        "INSERT INTO pipeline_history (id, project_id, ticket_id, ticket_title, "
                        "final_state, branch_name, total_retries_ci, total_retries_review, "
                        "started_at, completed_at, duration_seconds) VALUES (:id, 'p', '1', 't', "
                        ":state, 'main', :retries, 0, :at, :at, :duration)"
                    ),
                    {"id": hid, "state": state, "retries": retries, "duration": duration, "at": T_STORED},
                )
        before = helpers.snapshot(location)
        refused = r"history records h-negative, h-queued, h-retries hold what the store refuses"
        with pytest.raises(SchemaVersionError, match=refused):
            StateStore(location)
        assert helpers.snapshot(location) == before
        assert migrate.current(engine) == "0002"
    finally:
        engine.dispose()


T_STORED = datetime(2025, 1, 1, tzinfo=UTC)
