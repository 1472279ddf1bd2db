"""Time zones change nothing on PostgreSQL: whatever the database's default time zone and the
client's PGTZ (negative, positive, half- and quarter-hour offsets), every timestamp the library
accepts, down to year 1 and up to the last microsecond of 9999, comes back exactly as written,
through every read path, a prune and a copy to SQLite.

The PostgreSQL databases of the rest of the suite have a non-UTC time zone and PGTZ is set for
the whole run too (see conftest.py); this file varies both on purpose.
"""

from __future__ import annotations

from dataclasses import fields, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.pool import NullPool

from vibecc.state_store import (
    HistoryCursor,
    PipelineHistory,
    PipelineState,
    StateStore,
    copy_store,
)

if TYPE_CHECKING:
    from tests import helpers
    from tests.conftest import PostgresServer
else:
    import helpers

FIRST = datetime(1, 1, 1, tzinfo=UTC)
LAST = datetime(9999, 12, 31, 23, 59, 59, 999999, tzinfo=UTC)
NEW_YEAR = datetime(2025, 1, 1, tzinfo=UTC)
"""A UTC midnight: local dates on either side of it differ in every zone below."""

ZONES = [
    # (database default time zone, client PGTZ; None: the client sends none)
    pytest.param("Asia/Kathmandu", None, id="db+0545-client-none"),
    pytest.param("America/St_Johns", None, id="db-0330-client-none"),
    pytest.param("Pacific/Chatham", "Pacific/Marquesas", id="db+1245-client-0930"),
    pytest.param("America/Caracas", "Asia/Kolkata", id="db-0400-client+0530"),
    pytest.param("Pacific/Kiritimati", "Etc/GMT+12", id="db+14-client-12"),
]


def _edges(project_id: str) -> list[PipelineHistory]:
    """History at and around the limits the library accepts, plus local-midnight neighbours,
    some given in a zone other than UTC (the store hands back the same instant in UTC)."""
    kathmandu = ZoneInfo("Asia/Kathmandu")
    quarter = timedelta(minutes=15)

    def record(ticket: str, started: datetime, completed: datetime, seconds: int) -> PipelineHistory:
        base = helpers.history_record(
            project_id=project_id, ticket_id=ticket, completed_at=completed, duration_seconds=seconds
        )
        return replace(base, started_at=started, completed_at=completed)

    return [
        record("first", FIRST, FIRST, 0),
        record("first-plus", FIRST, FIRST + timedelta(microseconds=1), 0),
        record("last", LAST, LAST, 0),
        record("last-minus", LAST - timedelta(microseconds=1), LAST - timedelta(microseconds=1), 0),
        record("whole-range", FIRST, LAST, 60),  # the duration is kept as given, not derived
        record("before-midnight", NEW_YEAR - timedelta(hours=1), NEW_YEAR - timedelta(microseconds=1), 3599),
        record("midnight", NEW_YEAR - timedelta(hours=2), NEW_YEAR, 7200),
        record("kathmandu", NEW_YEAR.astimezone(kathmandu), (NEW_YEAR + quarter).astimezone(kathmandu), 900),
    ]


def _stamps(record: Any) -> list[str]:
    """Every timestamp of a record handed out, as ISO text; each must be in UTC."""
    values = [
        getattr(record, f.name) for f in fields(record) if isinstance(getattr(record, f.name), datetime)
    ]
    assert values, record
    assert all(helpers.is_utc(value) for value in values), record
    return [value.isoformat() for value in values]


def _in_utc(record: PipelineHistory) -> PipelineHistory:
    return replace(
        record, started_at=record.started_at.astimezone(UTC), completed_at=record.completed_at.astimezone(UTC)
    )


def _newest_first(records: list[PipelineHistory]) -> list[PipelineHistory]:
    return sorted(records, key=lambda r: (r.completed_at, r.id), reverse=True)


def _observe(store: StateStore) -> dict[str, Any]:
    """Everything the public API says about the store's contents, through each read path."""
    pages: list[PipelineHistory] = []
    cursor: HistoryCursor | None = None
    while True:
        page = store.get_history_page(limit=3, before=cursor)
        pages.extend(page.items)
        if page.next_cursor is None:
            break
        cursor = HistoryCursor.parse(str(page.next_cursor))
    history = store.get_history(limit=1000)
    projects = store.list_projects()
    pipelines = store.list_pipelines()
    return {
        "projects": projects,
        "pipelines": pipelines,
        "history": history,
        "stamps": [_stamps(r) for r in history],
        "other_stamps": [_stamps(item) for item in (*projects, *pipelines)],
        "iter": list(store.iter_history(batch_size=2)),
        "pages": pages,
        "records": [store.get_history_record(r.id) for r in history],
        "since_first": store.get_history(since=FIRST, limit=1000),
        "until_last": store.get_history(until=LAST, limit=1000),
        "around_midnight": store.get_history(since=NEW_YEAR - timedelta(hours=1), until=NEW_YEAR, limit=1000),
        "stats": store.get_history_stats(since=FIRST, until=LAST),
        "count_until_last": store.count_history(until=LAST),
    }


def _database(
    pg_server: PostgresServer, zone: str, client_zone: str | None, monkeypatch: pytest.MonkeyPatch
) -> str:
    """A new database with default time zone `zone`, opened with PGTZ `client_zone` from now on;
    checks that a session there really runs in the zone it should (else this file proves nothing)."""
    url = pg_server.create_database(timezone=zone)
    _client_zone(monkeypatch, client_zone)
    probe = create_engine(url, poolclass=NullPool)
    with probe.connect() as conn:
        assert conn.execute(text("SHOW timezone")).scalar_one() == (client_zone or zone)
    probe.dispose()
    return url


def _client_zone(monkeypatch: pytest.MonkeyPatch, client_zone: str | None) -> None:
    if client_zone is None:
        monkeypatch.delenv("PGTZ", raising=False)
    else:
        monkeypatch.setenv("PGTZ", client_zone)


@pytest.mark.parametrize(("zone", "client_zone"), ZONES)
def test_timestamps_at_the_edges_come_back_exactly(
    pg_server: PostgresServer,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    zone: str,
    client_zone: str | None,
) -> None:
    url = _database(pg_server, zone, client_zone, monkeypatch)
    with StateStore(url) as store:
        project = store.create_project("Zones", "acme/zones")
        edges = _edges(project.id)
        assert store.import_history(edges).inserted == len(edges)
        created = [store.create_pipeline(project.id, f"T-{n}", "Job", f"job-{n}") for n in range(3)]
        finished = store.update_pipeline(created[0].id, state=PipelineState.MERGED)
        archived = store.archive_pipeline(finished.id)
        written = _newest_first([*(_in_utc(r) for r in edges), archived])
        before_last = [r for r in written if r.completed_at < LAST]
        assert len(written) - len(before_last) == 2  # "last" and "whole-range"

        seen = _observe(store)
        assert seen["history"] == written
        assert seen["stamps"] == [_stamps(r) for r in written]
        assert seen["iter"] == written[::-1]
        assert seen["pages"] == written
        assert seen["records"] == written
        assert seen["since_first"] == written
        assert seen["until_last"] == before_last
        assert [r.ticket_id for r in seen["around_midnight"]] == ["before-midnight"]
        assert seen["stats"] == helpers.stats_of(before_last)
        assert seen["count_until_last"] == len(before_last)
        assert seen["pipelines"] == sorted(created[1:], key=lambda p: (p.created_at, p.id), reverse=True)
        assert [store.get_pipeline(p.id) for p in created[1:]] == created[1:]
        assert seen["projects"] == [project]

        copy = tmp_path / "copy.db"
        copy_store(store, str(copy))
        with StateStore(copy) as there:
            assert _observe(there) == seen

        # "first" and "first-plus", then everything else but the two completed at LAST.
        after_first = FIRST + timedelta(microseconds=2)
        assert store.prune_history(before=after_first, dry_run=True) == 2
        assert store.prune_history(before=after_first) == 2
        assert store.get_history(limit=1000) == [r for r in written if r.completed_at >= after_first]
        assert store.prune_history(before=LAST) == len(before_last) - 2
        assert store.get_history(limit=1000) == written[:2]


def test_the_client_time_zone_changes_nothing(
    pg_server: PostgresServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    url = _database(pg_server, "Pacific/Chatham", "America/St_Johns", monkeypatch)
    with StateStore(url) as store:
        project = store.create_project("Zones", "acme/zones")
        edges = _edges(project.id)
        store.import_history(edges)
        for n in range(3):
            store.create_pipeline(project.id, f"T-{n}", "Job", f"job-{n}")
        written = _observe(store)
    assert written["history"] == _newest_first([_in_utc(r) for r in edges])

    for client_zone in ("Asia/Kathmandu", None, "Etc/GMT-14"):
        _client_zone(monkeypatch, client_zone)
        with StateStore(url) as store:
            assert _observe(store) == written, client_zone


SESSION_DEFAULTS = [
    # (database setting, client environment) that a session would otherwise start with
    pytest.param("datestyle", "SQL, DMY", {}, id="database-datestyle-sql-dmy"),
    pytest.param(None, None, {"PGDATESTYLE": "German"}, id="client-datestyle-german"),
    pytest.param("intervalstyle", "sql_standard", {}, id="database-intervalstyle"),
    pytest.param("client_encoding", "LATIN1", {}, id="database-client-encoding-latin1"),
    pytest.param(None, None, {"PGCLIENTENCODING": "WIN1252"}, id="client-encoding-win1252"),
    pytest.param(None, None, {"PGCLIENTENCODING": "SQL_ASCII"}, id="client-encoding-sql-ascii"),
]


@pytest.mark.parametrize(("setting", "value", "environment"), SESSION_DEFAULTS)
def test_session_defaults_of_the_database_or_client_change_nothing(
    pg_server: PostgresServer,
    monkeypatch: pytest.MonkeyPatch,
    setting: str | None,
    value: str | None,
    environment: dict[str, str],
) -> None:
    """DateStyle, IntervalStyle and the client encoding are the store's own in each session:
    a database default or a client environment variable neither breaks a read nor a write."""
    url = pg_server.create_database()
    if setting is not None:
        admin = create_engine(url, poolclass=NullPool, isolation_level="AUTOCOMMIT")
        with admin.connect() as conn:
            database = conn.execute(text("SELECT current_database()")).scalar_one()
            conn.execute(text(f"ALTER DATABASE \"{database}\" SET {setting} = '{value}'"))
        admin.dispose()
    for name, variable in environment.items():
        monkeypatch.setenv(name, variable)
    with StateStore(url) as store:
        project = store.create_project("Défaut 😀", "acme/defaults")
        pipeline = store.create_pipeline(project.id, 1, "Émoji 🚀 title", "main", ticket_body="ß ∑ 😀")
        merged = store.update_pipeline(pipeline.id, state=PipelineState.MERGED)
        assert store.get_pipeline(pipeline.id) == merged
        record = store.archive_pipeline(pipeline.id)
        edges = _edges(project.id)
        store.import_history(edges)
        assert store.get_history_record(record.id) == record
        assert store.get_project(project.id) == project
        assert store.get_history(limit=1000) == _newest_first([*(_in_utc(r) for r in edges), record])
