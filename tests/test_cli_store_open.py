"""No command creates or migrates a database behind the user's back: only `db upgrade` does,
and `demo` on a new file, `import` into a store named with --db, `copy --to` its target. The
refusal names the command to run. On SQLite and PostgreSQL."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
from click.testing import CliRunner

from vibecc.state_store import StateStore, migrate
from vibecc.state_store.cli import cli

if TYPE_CHECKING:
    from tests.conftest import PostgresServer
    from tests.helpers import snapshot
    from tests.test_cli import Done, add_history, as_json, ok, one_line_error, run
else:
    from conftest import PostgresServer
    from helpers import snapshot
    from test_cli import Done, add_history, as_json, ok, one_line_error, run

WRITES: dict[str, tuple[str, ...]] = {
    "projects add": ("projects", "add", "acme/new", "--name", "New"),
    "projects update": ("projects", "update", "acme/web", "--name", "Renamed"),
    "projects delete": ("projects", "delete", "acme/web", "--yes"),
    "prune": ("prune", "--keep-days", "0", "--yes"),
    "import": ("import", "{dump}"),
    "copy (source)": ("copy", "--to", "{tmp}/copy.db"),
    "report": ("report", "--html", "{tmp}/r.html"),
    "export": ("export",),
    "history stats": ("history", "stats"),
}


@pytest.fixture
def dump(tmp_path: Path) -> Path:
    path = tmp_path / "history.jsonl"
    with StateStore(tmp_path / "source.db") as store:
        add_history(store, "acme/web", [Done(1, 0, 60)])
    path.write_bytes(ok(str(tmp_path / "source.db"), "export").stdout_bytes)
    return path


def _args(args: tuple[str, ...], tmp_path: Path, dump: Path) -> list[str]:
    return [a.format(tmp=tmp_path, dump=dump) for a in args]


@pytest.mark.parametrize("command", sorted(WRITES))
def test_no_command_creates_a_sqlite_file_at_a_mistyped_path(
    tmp_path: Path, dump: Path, command: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    missing = tmp_path / "mistyped" / "vibecc.db"
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    monkeypatch.chdir(cwd)
    monkeypatch.delenv("VIBECC_DATABASE_URL", raising=False)
    args = _args(WRITES[command], tmp_path, dump)
    for env in ({"VIBECC_DATABASE_URL": str(missing)}, {}):
        result = CliRunner().invoke(cli, args, env=env)
        one_line_error(result, 1, "no SQLite database at", "db upgrade` creates a new one")
    assert list(cwd.iterdir()) == []
    assert not missing.parent.exists()
    assert not (tmp_path / "copy.db").exists()


def test_import_creates_a_store_only_when_named_with_db(tmp_path: Path, dump: Path) -> None:
    named = tmp_path / "named" / "vibecc.db"
    assert as_json(str(named), "import", str(dump)) == {"inserted": 1, "skipped": 0}
    with StateStore(named, auto_migrate=False) as store:
        assert store.count_history() == 1


@pytest.fixture
def old_schema(fresh_db: Any) -> str:
    """A store at revision 0001 with a project and a finished ticket."""
    db: str = fresh_db()
    ok(db, "db", "upgrade")
    with StateStore(db) as store:
        add_history(store, "acme/web", [Done(1, 0, 60)])
    ok(db, "db", "downgrade", "0001", "--yes")
    return db


@pytest.mark.parametrize("command", [*sorted(WRITES), "demo"])
def test_no_command_upgrades_an_older_schema(
    old_schema: str, tmp_path: Path, dump: Path, command: str
) -> None:
    before = snapshot(old_schema)
    args = _args(WRITES.get(command, ("demo",)), tmp_path, dump)
    result = run(old_schema, *args)
    one_line_error(result, 1, "revision 0001", f"run `vibecc-state --db {old_schema} db upgrade`")
    assert "auto_migrate" not in result.stderr
    assert snapshot(old_schema) == before
    assert as_json(old_schema, "db", "current")["revision"] == "0001"


def test_copy_into_a_target_on_an_older_schema_is_refused_naming_it(
    store_url: str, old_schema: str, fresh_db: Any
) -> None:
    target = fresh_db()
    ok(target, "db", "upgrade", "0001")
    result = run(store_url, "copy", "--to", target)
    one_line_error(result, 1, "revision 0001", f"run `vibecc-state --db {target} db upgrade`")
    assert as_json(target, "db", "current")["revision"] == "0001"


def test_a_postgresql_database_without_tables_is_created_only_by_the_commands_that_may(
    pg_server: PostgresServer, dump: Path
) -> None:
    empty = pg_server.create_database()
    one_line_error(run(empty, "projects", "add", "acme/web", "--name", "Web"), 1, "no state store schema")
    assert as_json(empty, "db", "current")["revision"] is None
    ok(empty, "demo", "--tickets", "1")
    assert as_json(empty, "db", "current")["revision"] == migrate.HEAD
    assert as_json(pg_server.create_database(), "import", str(dump))["inserted"] == 1


def test_db_upgrade_names_what_it_did_and_every_command_then_works(fresh_db: Any) -> None:
    db = fresh_db()
    assert "from an empty database" in ok(db, "db", "upgrade").stdout
    assert json.loads(ok(db, "projects", "list", "--json").stdout) == []
