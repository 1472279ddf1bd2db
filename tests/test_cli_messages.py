"""What an operator reads: groups without a subcommand print their help, messages say --db and
name projects by repo, postgres:// URLs work, windows are checked, usage errors are one line."""

from __future__ import annotations

import errno
from pathlib import Path
from typing import TYPE_CHECKING

import click
import pytest
from click.testing import CliRunner

from vibecc.state_store import StateStore
from vibecc.state_store.cli import cli

if TYPE_CHECKING:
    from tests.conftest import PostgresServer
    from tests.test_cli import Done, add_history, as_json, ok, one_line_error, run
else:
    from conftest import PostgresServer
    from test_cli import Done, add_history, as_json, ok, one_line_error, run


def _groups(group: click.Group, path: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    found = [path]
    for name, command in sorted(group.commands.items()):
        if isinstance(command, click.Group):
            found.extend(_groups(command, (*path, name)))
    return found


@pytest.mark.parametrize("path", _groups(cli), ids=lambda p: " ".join(p) or "root")
def test_a_group_without_a_subcommand_prints_its_help_on_stdout(path: tuple[str, ...]) -> None:
    result = CliRunner().invoke(cli, list(path))
    assert result.exit_code == 0, result.stderr
    assert result.stderr == ""
    assert result.stdout.startswith("Usage: vibecc-state")
    assert "Commands:" in result.stdout


def test_db_given_but_no_command_prints_the_help_too() -> None:
    result = CliRunner().invoke(cli, ["--db", "somewhere.db"])
    assert result.exit_code == 0
    assert "Commands:" in result.stdout


@pytest.mark.parametrize(
    ("args", "fragment"),
    [
        (("frobnicate",), "No such command 'frobnicate'. (see 'vibecc-state --help')"),
        (("projects", "list", "--colour"), "--colour'. (see 'vibecc-state projects list --help')"),
        (("--nope",), "--nope'. (see 'vibecc-state --help')"),
        (("history", "list", "--limit", "x"), "'x' is not a valid integer"),
    ],
)
def test_usage_errors_are_one_line_with_a_hint(store_url: str, args: tuple[str, ...], fragment: str) -> None:
    one_line_error(run(store_url, *args), 2, fragment)


@pytest.mark.parametrize(
    ("db", "fragment"),
    [
        ("", "--db must be a non-empty path or database URL"),
        ("   ", "--db must be a non-empty path or database URL"),
        ("a\x00b.db", "--db must not contain a NUL character"),
        ("mysql://u@h/d", "unsupported database 'mysql'"),
    ],
)
def test_a_bad_db_is_named_as_the_option(db: str, fragment: str) -> None:
    result = run(db, "projects", "list")
    line = one_line_error(result, 2, fragment)
    assert "db_path" not in line


def test_postgres_scheme_urls_are_postgresql(pg_server: PostgresServer) -> None:
    """The spelling many hosting services hand out."""
    store_url = pg_server.create_database()
    spelled = store_url.replace("postgresql+psycopg://", "postgres://", 1)
    assert spelled.startswith("postgres://")
    assert "PostgreSQL database" in ok(spelled, "db", "upgrade").stdout
    ok(spelled, "projects", "add", "acme/web", "--name", "Web")
    assert [p["repo"] for p in as_json(spelled, "projects", "list")] == ["acme/web"]
    target = pg_server.create_database()
    ok(target, "db", "upgrade")
    ok(store_url, "copy", "--to", target.replace("postgresql+psycopg://", "postgres://", 1))
    assert [p["repo"] for p in as_json(target, "projects", "list")] == ["acme/web"]


@pytest.mark.parametrize(
    "args",
    [
        ("history", "list"),
        ("history", "stats"),
        ("export",),
        ("report", "--html", "-"),
    ],
)
@pytest.mark.parametrize(
    ("since", "until", "fragment"),
    [
        ("2025-03-02", "2025-03-01", "--since 2025-03-02T00:00:00+00:00 is later than --until"),
        ("2025-03-01", "2025-03-01", "--until is exclusive"),
        ("2025-03-01T10:00:00+05:00", "2025-03-01T05:00:00Z", "--until is exclusive"),
    ],
)
def test_since_must_be_before_until(
    store_url: str, args: tuple[str, ...], since: str, until: str, fragment: str
) -> None:
    result = run(store_url, *args, "--since", since, "--until", until)
    one_line_error(result, 2, fragment)
    assert result.stdout == ""


def test_projects_are_named_by_repo_in_messages(store_url: str) -> None:
    with StateStore(store_url) as store:
        project = store.create_project("Web", "acme/web")
        store.create_pipeline(project.id, 1, "One", "ticket-1")
    line = one_line_error(run(store_url, "projects", "delete", "acme/web", "--yes"), 1, "1 active pipeline")
    assert "project acme/web has 1 active pipeline(s)" in line
    assert project.id not in line
    line = one_line_error(run(store_url, "pipelines", "show", "acme/web#404"), 3, "ticket '404' in acme/web")
    assert project.id not in line


@pytest.mark.parametrize(
    ("args", "fragment"),
    [
        (("projects", "show", "x" * 80), "not found"),
        (("pipelines", "show", "x" * 80), "not found"),
        (("history", "list", "--project", "x" * 80), "not found"),
    ],
)
def test_an_id_of_the_wrong_shape_is_not_found_not_a_python_error(
    store_url: str, args: tuple[str, ...], fragment: str
) -> None:
    line = one_line_error(run(store_url, *args), 3, fragment)
    assert "_id must" not in line


def test_history_stats_title_names_the_project_by_repo_when_given_its_id(store_url: str) -> None:
    with StateStore(store_url) as store:
        project_id = add_history(store, "acme/web", [Done(1, 0, 60)])
    shown = ok(store_url, "history", "stats", "--project", project_id).stdout
    assert "History of acme/web" in shown
    assert project_id not in shown


def test_a_line_break_in_a_message_is_escaped_not_cut_off(tmp_path: Path) -> None:
    missing = tmp_path / "two\nlines.db"
    line = one_line_error(run(str(missing), "projects", "list"), 1, "two\\x0alines.db")
    assert line.endswith("db upgrade` creates a new one)")


@pytest.mark.parametrize(
    ("args", "code"),
    [
        (("report", "--html", ""), 2),
        (("report", "--html", "reports/"), 2),
        (("report", "--html", "."), 2),
        (("backup", ""), 2),
        (("copy", "--to", ""), 2),
        (("import", ""), 2),
        (("projects", "show", ""), 3),
        (("pipelines", "show", ""), 3),
        (("history", "list", "--project", ""), 3),
        (("prune", "--before", "", "--yes"), 2),
        (("projects", "add", "acme/x", "--name", ""), 2),
        (("projects", "add", "acme/x", "--name", "n" * 1_000_000), 2),
        (("history", "list", "--limit", "9" * 30), 2),
    ],
)
def test_empty_and_huge_arguments_are_one_line_errors(
    store_url: str, args: tuple[str, ...], code: int
) -> None:
    line = one_line_error(run(store_url, *args), code)
    assert "--debug" not in line
    assert len(line) < 400


@pytest.mark.parametrize(
    "args",
    [
        ("projects", "show", "x" * 100_000),
        ("pipelines", "show", "x" * 100_000),
        ("pipelines", "show", "acme/web#" + "1" * 100_000),
        ("history", "list", "--project", "x" * 100_000),
        ("history", "list", "--since", "x" * 100_000),
    ],
)
def test_a_huge_argument_is_cut_short_in_the_message(store_url: str, args: tuple[str, ...]) -> None:
    ok(store_url, "projects", "add", "acme/web", "--name", "Web")
    result = run(store_url, *args)
    line = one_line_error(result, result.exit_code)
    assert result.exit_code in (2, 3)
    assert len(line) < 400


def test_a_bug_is_one_line_saying_so_and_debug_shows_where(
    store_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    def list_projects(self: StateStore) -> None:
        raise RuntimeError("boom\nsecond line")

    monkeypatch.setattr(StateStore, "list_projects", list_projects)
    line = one_line_error(run(store_url, "projects", "list"), 1, "unexpected RuntimeError: boom")
    assert line.endswith("(run with --debug for the traceback)")
    debug = run(store_url, "--debug", "projects", "list")
    assert "Traceback" in debug.stderr
    assert "list_projects" in debug.stderr


def test_an_operating_system_error_is_one_line_not_a_bug(
    store_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    def list_projects(self: StateStore) -> None:
        raise OSError(errno.ENOSPC, "No space left on device", "/var/out")

    monkeypatch.setattr(StateStore, "list_projects", list_projects)
    line = one_line_error(run(store_url, "projects", "list"), 1, "/var/out: No space left on device")
    assert "unexpected" not in line
