"""Opening a store: locations, lifecycle, bad arguments, SQLite pragmas.

That a password never shows is tested in tests/test_secrets.py, that new files are private in
tests/test_security.py."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import event
from sqlalchemy.engine import make_url

from vibecc.state_store import StateStore, StorageError, ValidationError
from vibecc.state_store.migrate import HEAD, current


def round_trip(store: StateStore) -> None:
    project = store.create_project("Acme", "acme/widgets")
    assert store.get_project(project.id) == project


def test_relative_path_is_under_the_working_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)

    with StateStore("state/vibecc.db") as store:
        round_trip(store)
        assert store.url.endswith(str(tmp_path / "state" / "vibecc.db"))

    assert (tmp_path / "state" / "vibecc.db").is_file()


def test_default_path_is_vibecc_db(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)

    with StateStore() as store:
        round_trip(store)

    assert (tmp_path / "vibecc.db").is_file()


@pytest.mark.parametrize("kind", ["str", "path", "url"])
def test_nested_new_folders_are_created(tmp_path: Path, kind: str) -> None:
    target = tmp_path / "a" / "b" / "c" / "vibecc.db"
    location: Any = {"str": str(target), "path": target, "url": f"sqlite:///{target}"}[kind]

    with StateStore(location) as store:
        round_trip(store)
        assert store.dialect == "sqlite"

    assert target.is_file()
    with StateStore(target) as again:
        assert [p.repo for p in again.list_projects()] == ["acme/widgets"]


def test_memory_store_works_and_is_its_own(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)

    with StateStore(":memory:") as first, StateStore(":memory:") as second:
        round_trip(first)
        assert current(first.database.engine) == HEAD
        assert [p.repo for p in first.list_projects()] == ["acme/widgets"]
        assert second.list_projects() == []
        assert first.dialect == "sqlite"
    assert not list(tmp_path.iterdir())


def test_data_survives_reopening(store_url: str) -> None:
    with StateStore(store_url) as store:
        project = store.create_project("Acme", "acme/widgets")
        pipeline = store.create_pipeline(project.id, 1, "t", "b")

    with StateStore(store_url) as store:
        assert store.get_project(project.id) == project
        assert store.get_pipeline(pipeline.id) == pipeline


def test_two_stores_on_one_database_see_each_other(store_url: str) -> None:
    with StateStore(store_url) as first, StateStore(store_url) as second:
        project = first.create_project("Acme", "acme/widgets")
        pipeline = second.create_pipeline(project.id, 1, "t", "b")
        assert first.get_pipeline(pipeline.id) == pipeline
        assert second.update_pipeline(pipeline.id, state="coding", expected_version=1).version == 2
        assert first.get_pipeline(pipeline.id).version == 2


def test_dialect_matches_engine(store: StateStore, engine_name: str) -> None:
    assert store.dialect == engine_name
    assert repr(store) == f"StateStore({store.url!r})"


AFTER_CLOSE = [
    ("list_projects", lambda s: s.list_projects()),
    ("create_project", lambda s: s.create_project("Acme", "acme/new")),
    ("get_project", lambda s: s.get_project("some-id")),
    ("list_pipelines", lambda s: s.list_pipelines()),
    ("update_pipeline", lambda s: s.update_pipeline("some-id", state="coding")),
    ("claim_pipeline", lambda s: s.claim_pipeline()),
    ("archive_pipeline", lambda s: s.archive_pipeline("some-id")),
    ("get_history", lambda s: s.get_history()),
    ("get_history_stats", lambda s: s.get_history_stats()),
    ("iter_history", lambda s: list(s.iter_history())),
    ("prune_history", lambda s: s.prune_history(before=datetime.now(UTC))),
]


@pytest.mark.parametrize(("name", "action"), AFTER_CLOSE, ids=[name for name, _ in AFTER_CLOSE])
def test_calls_after_close_raise_storage_error(store_url: str, name: str, action: Any) -> None:
    store = StateStore(store_url)
    store.create_project("Acme", "acme/widgets")
    store.close()
    store.close()  # closing twice is harmless

    with pytest.raises(StorageError, match="the store is closed"):
        action(store)

    with StateStore(store_url) as again:
        assert [p.repo for p in again.list_projects()] == ["acme/widgets"]


def test_context_manager_closes(store_url: str) -> None:
    with StateStore(store_url) as store:
        round_trip(store)

    with pytest.raises(StorageError, match="closed"):
        store.list_projects()


@pytest.mark.parametrize(
    ("db_path", "match"),
    [
        ("", "db_path must be a non-empty path or URL"),
        ("   ", "db_path must be a non-empty path or URL"),
        ("vibecc\x00.db", "db_path must not contain a NUL"),
        (None, "db_path must be a path or URL, got NoneType"),
        (42, "db_path must be a path or URL, got int"),
        (b"vibecc.db", "db_path"),
        ("mysql://user@host/db", "unsupported database 'mysql'"),
        ("http://example.com/db", "unsupported database 'http'"),
        ("not a url://", "db_path is not a valid database URL"),
        ("postgresql://u:s3cr3t@host:abc/db", "db_path is not a valid database URL"),
        (make_url("mysql+pymysql://u@host/db"), "unsupported database 'mysql'"),
    ],
)
def test_bad_db_path_raises_validation_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, db_path: Any, match: str
) -> None:
    monkeypatch.chdir(tmp_path)

    with pytest.raises(ValidationError, match=match) as raised:
        StateStore(db_path)

    assert not list(tmp_path.iterdir())
    chain: BaseException | None = raised.value
    while chain is not None:
        assert "s3cr3t" not in str(chain)
        chain = chain.__cause__ or chain.__context__


@pytest.mark.parametrize(
    ("option", "value"),
    [
        ("pool_size", 0),
        ("pool_size", True),
        ("pool_size", "5"),
        ("max_overflow", -1),
        ("pool_timeout", 0),
        ("connect_timeout", -1),
        ("connect_timeout", "10"),
        ("busy_timeout", 0),
        ("busy_timeout", 86401),
        ("busy_timeout", True),
        ("statement_timeout", 0),
        ("statement_timeout", float("nan")),
    ],
)
def test_bad_options_raise_validation_error(tmp_path: Path, option: str, value: Any) -> None:
    with pytest.raises(ValidationError, match=option):
        StateStore(tmp_path / "vibecc.db", **{option: value})

    assert not (tmp_path / "vibecc.db").exists()


def test_folder_in_the_way_is_storage_error(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("not a folder")

    with pytest.raises(StorageError, match="SQLite database"):
        StateStore(tmp_path / "file" / "vibecc.db")
    with pytest.raises(StorageError, match=str(tmp_path)):
        StateStore(tmp_path)


def test_sqlite_pragmas_in_force_on_every_connection(tmp_path: Path) -> None:
    with StateStore(tmp_path / "vibecc.db") as store:
        round_trip(store)
        connections = [store.database.engine.connect() for _ in range(3)]
        try:
            for conn in connections:
                assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
                assert conn.exec_driver_sql("PRAGMA synchronous").scalar() == 2
                assert conn.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1
                assert conn.exec_driver_sql("PRAGMA busy_timeout").scalar_one() >= 5000
        finally:
            for conn in connections:
                conn.close()


def test_sqlite_busy_timeout_option_is_applied(tmp_path: Path) -> None:
    with (
        StateStore(tmp_path / "vibecc.db", busy_timeout=7.5) as store,
        store.database.engine.connect() as conn,
    ):
        assert conn.exec_driver_sql("PRAGMA busy_timeout").scalar() == 7500


def test_driver_error_at_commit_is_storage_error(store: StateStore, monkeypatch: pytest.MonkeyPatch) -> None:
    """An error at COMMIT (e.g. the server gone between the last statement and the commit)
    comes out as StorageError, with the write undone. Injected through SQLAlchemy's "commit"
    event, which runs just before the driver's commit."""
    project = store.create_project("Acme", "acme/widgets")
    engine = store.database.engine
    driver_error = engine.dialect.loaded_dbapi.OperationalError

    def failing_commit(conn: Any) -> None:
        raise driver_error("connection lost at commit")

    event.listen(engine, "commit", failing_commit)
    try:
        with pytest.raises(StorageError, match="connection lost at commit"):
            store.create_pipeline(project.id, 1, "t", "b")
    finally:
        event.remove(engine, "commit", failing_commit)
    assert store.list_pipelines() == []
    assert store.create_pipeline(project.id, 1, "t", "b").version == 1
