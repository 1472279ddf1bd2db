"""vibecc-state db: schema revisions walked down and up, offline SQL, on SQLite and PostgreSQL."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    from tests.test_cli import PG_UNREACHABLE, as_json, ok, one_line_error, run, terminal
else:
    from test_cli import PG_UNREACHABLE, as_json, ok, one_line_error, run, terminal

__all__ = ["terminal"]  # a fixture used by name


def test_db_commands_walk_the_schema_down_and_up(fresh_db: Any, terminal: None) -> None:
    db = fresh_db()
    assert "from an empty database to 0007" in ok(db, "db", "upgrade").stdout
    assert "at revision 0007 already" in ok(db, "db", "upgrade").stdout
    assert as_json(db, "db", "current") == {"revision": "0007", "head": "0007", "at_head": True}
    assert "ok:" in ok(db, "db", "check").stdout
    assert as_json(db, "db", "check")["ok"] is True
    revisions = as_json(db, "db", "history")
    assert [(r["revision"], r["current"], r["head"]) for r in revisions] == [
        ("0001", False, False),
        ("0002", False, False),
        ("0003", False, False),
        ("0004", False, False),
        ("0005", False, False),
        ("0006", False, False),
        ("0007", True, True),
    ]
    assert "current, head" in ok(db, "db", "history").stdout

    one_line_error(run(db, "db", "downgrade", "0001", input="n\n"), 1, "not confirmed", prompted=True)
    assert as_json(db, "db", "current")["revision"] == "0007"
    assert "from 0007 to 0001" in ok(db, "db", "downgrade", "0001", "--yes").stdout
    assert "head is 0007" in ok(db, "db", "current").stdout

    # An old schema: reads refuse (no silent migration), check lists what differs.
    one_line_error(
        run(db, "projects", "list"), 1, "revision 0001", f"run `vibecc-state --db {db} db upgrade`"
    )
    checked = run(db, "db", "check")
    one_line_error(checked, 1, "differs from the models")
    assert "schema is at 0001, head is 0007" in checked.stdout
    report = json.loads(run(db, "db", "check", "--json").stdout)
    assert report["ok"] is False
    assert report["problems"]

    assert "from 0001 to 0007" in ok(db, "db", "upgrade").stdout
    assert ok(db, "projects", "list").exit_code == 0


def test_db_upgrade_to_an_unknown_revision_is_bad_input(fresh_db: Any) -> None:
    one_line_error(run(fresh_db(), "db", "upgrade", "9999"), 2, "9999")


@pytest.mark.parametrize("db", ["{tmp}/never/vibecc.db", PG_UNREACHABLE])
def test_db_sql_renders_offline_without_touching_the_database(tmp_path: Path, db: str) -> None:
    location = db.format(tmp=tmp_path)
    result = ok(location, "db", "sql", "0001")
    assert "CREATE TABLE projects" in result.stdout
    assert "s3cret" not in result.stdout
    assert not (tmp_path / "never").exists()


def test_db_sql_renders_the_full_upgrade_for_postgresql() -> None:
    result = run(PG_UNREACHABLE, "db", "sql")
    assert result.exit_code == 0, result.stderr
    assert "CREATE TABLE history_stats" in result.stdout


@pytest.mark.parametrize(("revision", "start"), [("0002", "0003"), ("0002", "0002"), ("head", "0007")])
def test_db_sql_from_a_revision_not_older_than_the_target_is_refused(revision: str, start: str) -> None:
    """Nothing to render: saying so beats printing nothing and exiting 0."""
    one_line_error(run(PG_UNREACHABLE, "db", "sql", revision, "--from", start), 2, "must be older than")
