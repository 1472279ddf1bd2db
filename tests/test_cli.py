"""vibecc-state: database selection, errors and exit codes, db, projects and pipelines commands.

Every command runs through click's CliRunner on SQLite and PostgreSQL (the `store_url`
fixture); one test runs the installed console script in a real subprocess. The helpers at the
top are shared by the other tests/test_cli_*.py files.
"""

from __future__ import annotations

import json
import os
import runpy
import subprocess
import sys
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result

from vibecc.state_store import PipelineHistory, PipelineState, ProjectNotFoundError, StateStore, migrate
from vibecc.state_store.cli import cli
from vibecc.state_store.cli import common as cli_common

T0 = datetime(2025, 3, 4, 5, 6, 7, 123456, tzinfo=UTC)
PG_UNREACHABLE = "postgresql://vibecc:s3cret-pw@127.0.0.1:1/vibecc_prod"


def run(db: str, *args: str, input: str | None = None, env: dict[str, str] | None = None) -> Result:
    """Invoke vibecc-state --db DB ARGS in-process."""
    return CliRunner().invoke(cli, ["--db", db, *args], input=input, env=env)


@pytest.fixture
def terminal(monkeypatch: pytest.MonkeyPatch) -> None:
    """stdin is a terminal: confirmation questions are asked (CliRunner types the input)."""
    monkeypatch.setattr(cli_common, "stdin_is_terminal", lambda: True)


def ok(db: str, *args: str, input: str | None = None) -> Result:
    result = run(db, *args, input=input)
    assert result.exit_code == 0, (result.exit_code, result.stderr)
    return result


def as_json(db: str, *args: str) -> Any:
    return json.loads(ok(db, *args, "--json").stdout)


def one_line_error(result: Result, code: int, *fragments: str, prompted: bool = False) -> str:
    """Assert the exit code and a single 'Error: ...' line on stderr containing the fragments
    (after the confirmation question when `prompted`)."""
    assert result.exit_code == code, (result.exit_code, result.stdout, result.stderr)
    lines = result.stderr.strip().splitlines()
    if prompted:
        assert lines[0].endswith("[y/N]: n"), lines
        lines = lines[1:]
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("Error: "), lines
    for fragment in fragments:
        assert fragment in lines[0], (fragment, lines[0])
    assert "Traceback" not in result.stderr
    return lines[0]


@dataclass(frozen=True)
class Done:
    """A finished ticket to put into history: days/minutes after T0, seconds it took."""

    ticket: int
    completed_days: float
    seconds: int
    merged: bool = True
    retries_ci: int = 0
    retries_review: int = 0


def history(project_id: str, done: Iterable[Done]) -> list[PipelineHistory]:
    records = []
    for d in done:
        completed = T0 + timedelta(days=d.completed_days)
        records.append(
            PipelineHistory(
                id=str(uuid.uuid4()),
                project_id=project_id,
                ticket_id=str(d.ticket),
                ticket_title=f"Ticket {d.ticket}",
                final_state=PipelineState.MERGED if d.merged else PipelineState.FAILED,
                branch_name=f"ticket-{d.ticket}",
                pr_id=100 + d.ticket,
                pr_url=f"https://github.com/acme/web/pull/{100 + d.ticket}",
                total_retries_ci=d.retries_ci,
                total_retries_review=d.retries_review,
                started_at=completed - timedelta(seconds=d.seconds),
                completed_at=completed,
                duration_seconds=d.seconds,
            )
        )
    return records


def add_history(store: StateStore, repo: str, done: Sequence[Done]) -> str:
    """Create the project of `repo` (if needed) and import the finished tickets; its id."""
    try:
        project = store.get_project_by_repo(repo)
    except ProjectNotFoundError:
        project = store.create_project(repo.split("/")[1], repo)
    store.import_history(history(project.id, done))
    return project.id


# -- database selection, errors ----------------------------------------------------------------


def test_help_names_every_command() -> None:
    result = CliRunner().invoke(cli, ["--help"])
    assert result.exit_code == 0
    for command in ("db", "projects", "pipelines", "history", "prune", "export", "import", "backup"):
        assert command in result.stdout
    assert "VIBECC_DATABASE_URL" in result.stdout


def test_db_comes_from_option_then_environment_then_default(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from_env, from_option = tmp_path / "env.db", tmp_path / "option.db"
    runner = CliRunner()
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("VIBECC_DATABASE_URL", raising=False)
    env = {"VIBECC_DATABASE_URL": str(from_env)}
    for location in (tmp_path / "vibecc.db", from_env, from_option):
        StateStore(location).close()
    default = runner.invoke(cli, ["projects", "add", "acme/default", "--name", "d"])
    assert default.exit_code == 0, default.stderr
    assert runner.invoke(cli, ["projects", "add", "acme/env", "--name", "e"], env=env).exit_code == 0
    added = runner.invoke(
        cli, ["--db", str(from_option), "projects", "add", "acme/opt", "--name", "o"], env=env
    )
    assert added.exit_code == 0
    with StateStore(tmp_path / "vibecc.db") as store:
        assert [p.repo for p in store.list_projects()] == ["acme/default"]
    with StateStore(from_env) as store:
        assert [p.repo for p in store.list_projects()] == ["acme/env"]
    with StateStore(from_option) as store:
        assert [p.repo for p in store.list_projects()] == ["acme/opt"]


def test_reading_a_missing_sqlite_file_fails_and_creates_nothing(tmp_path: Path) -> None:
    missing = tmp_path / "nope" / "vibecc.db"
    one_line_error(run(str(missing), "projects", "list"), 1, "no SQLite database at", str(missing))
    assert not missing.exists()


@pytest.mark.parametrize(
    "args",
    [
        ("projects", "list"),
        ("history", "stats", "--json"),
        ("db", "current"),
        ("db", "check"),
    ],
)
def test_password_never_shown_when_the_server_is_unreachable(args: tuple[str, ...]) -> None:
    line = one_line_error(run(PG_UNREACHABLE, *args), 1, "127.0.0.1", "vibecc_prod")
    assert "s3cret" not in line


def test_copy_to_an_unreachable_target_hides_its_password(store_url: str) -> None:
    result = run(store_url, "copy", "--to", PG_UNREACHABLE)
    line = one_line_error(result, 1, "127.0.0.1", "vibecc_prod")
    assert "s3cret" not in result.stdout + line


@pytest.mark.parametrize(
    ("args", "code", "fragment"),
    [
        (("projects", "show", "nobody/none"), 3, "'nobody/none' not found"),
        (("projects", "show", "0000-no-such-id"), 3, "project 0000-no-such-id not found"),
        (("pipelines", "show", "0000-no-such-id"), 3, "pipeline 0000-no-such-id not found"),
        (("pipelines", "show", "acme/web#404"), 3, "no active pipeline for ticket '404'"),
        (("history", "list", "--project", "nobody/none"), 3, "not found"),
        (("projects", "add", "not-a-repo", "--name", "x"), 2, "repo must be 'owner/name'"),
        (("projects", "add", "acme/web", "--name", "again"), 2, "exists already"),
        (("projects", "update", "acme/web"), 2, "nothing to update"),
        (("projects", "update", "acme/web", "--max-retries-ci", "-1"), 2, "max_retries_ci must be"),
        (
            ("projects", "update", "acme/web", "--github-project-id", "3", "--clear-github-project-id"),
            2,
            "not both",
        ),
        (("pipelines", "list", "--state", "dancing"), 2, "'dancing' is not one of"),
        (("history", "list", "--since", "yesterday"), 2, "'yesterday' is not a date"),
        (("history", "list", "--limit", "0"), 2, "--limit"),
        (("prune",), 2, "exactly one of --before and --keep-days"),
        (("frobnicate",), 2, "No such command"),
    ],
)
def test_errors_are_one_line_with_their_exit_code(
    store_url: str, args: tuple[str, ...], code: int, fragment: str
) -> None:
    with StateStore(store_url) as store:
        store.create_project("Web", "acme/web")
    one_line_error(run(store_url, *args), code, fragment)


@pytest.mark.parametrize("raw_value_error", [False, True], ids=["translated", "raw-ValueError"])
@pytest.mark.parametrize(
    "args", [("projects", "list"), ("db", "current"), ("db", "sql"), ("backup", "x.db"), ("demo",)]
)
def test_a_malformed_database_url_is_bad_input_without_its_password(
    monkeypatch: pytest.MonkeyPatch, args: tuple[str, ...], raw_value_error: bool
) -> None:
    if raw_value_error:  # as make_url raises it when the library does not translate it
        from vibecc.state_store.cli import common as cli_common

        def to_url(location: object) -> object:
            raise ValueError(f"invalid literal for int() with base 10: {location!r}")

        monkeypatch.setattr(cli_common, "to_url", to_url)
    result = run("postgresql://vibecc:s3cret-pw@db.example:abc/vibecc_prod", *args)
    line = one_line_error(result, 2, "not a valid database URL")
    assert "s3cret" not in result.stdout + line


def test_debug_adds_the_traceback(store_url: str) -> None:
    result = run(store_url, "--debug", "projects", "show", "nobody/none")
    assert result.exit_code == 3
    assert "Traceback" in result.stderr
    assert "ProjectNotFoundError" in result.stderr
    assert result.stderr.strip().splitlines()[-1].startswith("Error: ")


def test_version() -> None:
    result = CliRunner().invoke(cli, ["--version"])
    assert result.exit_code == 0
    assert "vibecc-state" in result.stdout


# -- projects ----------------------------------------------------------------------------------


def test_projects_add_list_show_update_delete(store_url: str, terminal: None) -> None:
    added = as_json(store_url, "projects", "add", "acme/web", "--name", "Web", "--github-project-id", "7")
    assert added["repo"] == "acme/web"
    assert added["github_project_id"] == 7
    assert added["max_retries_ci"] == 3
    assert added["created_at"].endswith("+00:00")
    assert "added project acme/api" in ok(store_url, "projects", "add", "acme/api", "--name", "API").stdout

    listed = as_json(store_url, "projects", "list")
    assert [(p["repo"], p["active_pipelines"]) for p in listed] == [("acme/api", 0), ("acme/web", 0)]
    table = ok(store_url, "projects", "list").stdout
    assert "acme/web" in table
    assert "acme/api" in table

    by_id = as_json(store_url, "projects", "show", added["id"])
    assert by_id == {**added, "active_pipelines": 0}
    assert "Web" in ok(store_url, "projects", "show", "acme/web").stdout

    updated = as_json(
        store_url, "projects", "update", "acme/web", "--name", "Website", "--max-retries-ci", "5"
    )
    assert (updated["name"], updated["max_retries_ci"], updated["github_project_id"]) == ("Website", 5, 7)
    cleared = as_json(store_url, "projects", "update", added["id"], "--clear-github-project-id")
    assert cleared["github_project_id"] is None
    assert cleared["name"] == "Website"

    one_line_error(
        run(store_url, "projects", "delete", "acme/web", input="n\n"), 1, "not confirmed", prompted=True
    )
    assert len(as_json(store_url, "projects", "list")) == 2
    assert "deleted project acme/web" in ok(store_url, "projects", "delete", "acme/web", input="y\n").stdout
    ok(store_url, "projects", "delete", "acme/api", "--yes")
    assert as_json(store_url, "projects", "list") == []


def test_deleting_a_project_with_active_pipelines_is_refused(store_url: str) -> None:
    with StateStore(store_url) as store:
        project = store.create_project("Web", "acme/web")
        store.create_pipeline(project.id, 1, "One", "ticket-1")
    one_line_error(run(store_url, "projects", "delete", "acme/web", "--yes"), 1, "1 active pipeline")
    assert as_json(store_url, "projects", "show", "acme/web")["active_pipelines"] == 1


# -- pipelines ---------------------------------------------------------------------------------


def _two_projects_with_pipelines(store_url: str) -> dict[str, Any]:
    with StateStore(store_url) as store:
        web = store.create_project("Web", "acme/web")
        api = store.create_project("API", "acme/api")
        first = store.create_pipeline(web.id, 1, "First <b>ticket</b>", "ticket-1", ticket_body="Body text")
        store.update_pipeline(
            first.id, state="testing", pr_id=501, pr_url="https://github.com/acme/web/pull/501"
        )
        store.create_pipeline(web.id, 2, "Second", "ticket-2")
        store.create_pipeline(api.id, 9, "API ticket", "ticket-9")
        return {"web": web.id, "api": api.id, "first": first.id}


def test_pipelines_list_as_json_table_and_board(store_url: str) -> None:
    ids = _two_projects_with_pipelines(store_url)
    everything = as_json(store_url, "pipelines", "list")
    assert [p["ticket_id"] for p in everything] == ["9", "2", "1"]  # newest first
    assert {p["state"] for p in everything} == {"queued", "testing"}
    web = as_json(store_url, "pipelines", "list", "--project", "acme/web")
    assert {p["project_id"] for p in web} == {ids["web"]}
    testing = as_json(store_url, "pipelines", "list", "--state", "TESTING")
    assert [p["id"] for p in testing] == [ids["first"]]

    flat = ok(store_url, "pipelines", "list").stdout  # not a terminal: one row per pipeline
    assert "3 active pipeline(s)" in flat
    assert "acme/api" in flat
    board = run(store_url, "pipelines", "list", "--board", env={"COLUMNS": "160"}).stdout
    for header in ("QUEUED 2", "CODING 0", "TESTING 1", "REVIEW 0"):
        assert header in board
    assert "PR #501" in board


def test_pipelines_show_by_id_and_by_ticket(store_url: str) -> None:
    ids = _two_projects_with_pipelines(store_url)
    by_id = as_json(store_url, "pipelines", "show", ids["first"])
    by_ticket = as_json(store_url, "pipelines", "show", "acme/web#1")
    assert by_id == by_ticket
    assert (by_id["state"], by_id["pr_id"], by_id["version"]) == ("testing", 501, 2)
    assert by_id["updated_at"].endswith("+00:00")
    shown = ok(store_url, "pipelines", "show", "acme/web#1").stdout
    assert "First <b>ticket</b>" in shown
    assert "https://github.com/acme/web/pull/501" in shown
    assert "Body text" in shown


# -- the installed console script ---------------------------------------------------------------


def test_installed_console_script_runs_demo_and_stats(tmp_path: Path) -> None:
    script = Path(sys.executable).parent / "vibecc-state"
    db = str(tmp_path / "demo" / "vibecc.db")
    env = {k: v for k, v in os.environ.items() if k != "VIBECC_DATABASE_URL"}

    def call(*args: str) -> subprocess.CompletedProcess[str]:
        done = subprocess.run(
            [str(script), "--db", db, *args], capture_output=True, text=True, timeout=120, env=env
        )
        assert done.returncode == 0, done.stderr
        return done

    demo = call("demo", "--tickets", "3")
    assert "vibecc/demo" in demo.stdout
    assert demo.stderr == ""
    stats = json.loads(call("history", "stats", "--json").stdout)
    assert (stats["total_completed"], stats["total_merged"], stats["total_failed"]) == (3, 2, 1)
    module = subprocess.run(
        [sys.executable, "-m", "vibecc.state_store", "--db", db, "db", "current", "--json"],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
    )
    assert module.returncode == 0, module.stderr
    assert json.loads(module.stdout)["revision"] == migrate.HEAD


def test_stored_text_is_shown_as_is_never_as_rich_markup(store_url: str) -> None:
    title = "Fix [bold]this[/] and [/oops] [link=x]"
    with StateStore(store_url) as store:
        project = store.create_project("[red]Name[/red]", "acme/web")
        store.create_pipeline(project.id, 1, title, "ticket-1")
        store.import_history(history(project.id, [Done(2, 0, 60)]))
        pipeline = store.create_pipeline(project.id, 3, title, "ticket-3")
        store.update_pipeline(pipeline.id, state="merged")
        store.archive_pipeline(pipeline.id)
    wide = {"COLUMNS": "200"}
    for args in (
        ("pipelines", "list"),
        ("pipelines", "list", "--board"),
        ("pipelines", "show", "acme/web#1"),
        ("history", "list"),
    ):
        result = run(store_url, *args, env=wide)
        assert result.exit_code == 0, (args, result.stderr)
        assert title in result.stdout, args
    assert "[red]Name[/red]" in run(store_url, "projects", "list", env=wide).stdout
    assert "[red]Name[/red]" in run(store_url, "projects", "show", "acme/web", env=wide).stdout


def test_python_dash_m_runs_the_tool(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(sys, "argv", ["vibecc-state", "--version"])
    with pytest.raises(SystemExit) as exited:
        runpy.run_module("vibecc.state_store", run_name="__main__")
    assert exited.value.code == 0
    assert "vibecc-state" in capsys.readouterr().out
