"""Security: database files are private, and nothing stored is ever unpickled, evaluated or
interpreted (by the store, or by the CLI's terminal output).

That SQL is never built from strings, and that the package never unpickles or evaluates
anything, is checked by ruff's S rules (`ruff check`, configured in pyproject.toml). That a
database password never leaks is tested in tests/test_secrets.py.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

import pytest

from vibecc.state_store import PipelineHistory, PipelineState, StateStore

# -- database files are private -----------------------------------------------------------------

_CREATE_UNDER_UMASK_0 = """
import json, os, sys
os.umask(0)
from vibecc.state_store import StateStore
path = sys.argv[1]
store = StateStore(path)
project = store.create_project("p", "acme/p")
pipeline = store.create_pipeline(project.id, 1, "t", "main")
store.update_pipeline(pipeline.id, state="merged")
store.archive_pipeline(pipeline.id)
modes = {suffix: os.stat(path + suffix).st_mode & 0o777 for suffix in ("", "-wal", "-shm")}
folders = {
    str(folder): os.stat(folder).st_mode & 0o777
    for folder in (os.path.dirname(path), os.path.dirname(os.path.dirname(path)))
}
store.close()
print(json.dumps({"files": modes, "folders": folders}))
"""


@pytest.fixture(scope="module")
def created_under_umask_0(tmp_path_factory: pytest.TempPathFactory) -> dict[str, dict[str, int]]:
    """Modes of a store made in new folders by a process whose umask is 0."""
    path = tmp_path_factory.mktemp("private") / "new" / "deeper" / "vibecc.db"
    done = subprocess.run(
        [sys.executable, "-c", _CREATE_UNDER_UMASK_0, str(path)], capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr[-2000:]
    result: dict[str, dict[str, int]] = json.loads(done.stdout)
    return result


def test_database_wal_and_shm_files_are_created_0600_even_under_umask_0(
    created_under_umask_0: dict[str, dict[str, int]],
) -> None:
    modes = {suffix or "db": oct(mode) for suffix, mode in created_under_umask_0["files"].items()}
    assert modes == {"db": "0o600", "-wal": "0o600", "-shm": "0o600"}


def test_folders_the_store_creates_are_not_writable_by_others_even_under_umask_0(
    created_under_umask_0: dict[str, dict[str, int]],
) -> None:
    """Whoever may write the folder may delete the database or plant a -wal file beside it."""
    writable = {
        folder: oct(mode) for folder, mode in created_under_umask_0["folders"].items() if mode & 0o022
    }
    assert writable == {}, "folders created group- or world-writable"


# -- nothing stored is unpickled, evaluated or interpreted --------------------------------------


def _payloads(marker: Path) -> list[str]:
    command = f"touch {marker}"
    return [
        f"__import__('os').system('{command}')",
        f"cos\nsystem\n(S'{command}'\ntR.",  # a protocol-0 pickle that runs the command
        f"!!python/object/apply:os.system ['{command}']",
        "{{ self.__init__.__globals__ }} ${7*7} %s%n {0.__class__}",
        "'); DROP TABLE projects; --",
    ]


def test_stored_code_and_pickles_round_trip_verbatim_and_never_run(store: StateStore, tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    for n, payload in enumerate(_payloads(marker)):
        project = store.create_project(payload[:255], f"acme/payload-{n}")
        pipeline = store.create_pipeline(project.id, f"p{n}", payload, "main", payload)
        pipeline = store.update_pipeline(pipeline.id, feedback=payload, state=PipelineState.FAILED)
        assert (store.get_project(project.id).name, pipeline.ticket_title) == (payload[:255], payload)
        assert (pipeline.ticket_body, pipeline.feedback) == (payload, payload)
        saved = store.archive_pipeline(pipeline.id)
        assert store.get_history_record(saved.id).ticket_title == payload
        imported = PipelineHistory(
            id=f"import-{n}",
            project_id=project.id,
            ticket_id=f"i{n}",
            ticket_title=payload,
            final_state=PipelineState.MERGED,
            branch_name="main",
            pr_id=None,
            pr_url=None,
            total_retries_ci=0,
            total_retries_review=0,
            started_at=datetime(2025, 1, 1, tzinfo=UTC),
            completed_at=datetime(2025, 1, 2, tzinfo=UTC),
            duration_seconds=86_400,
        )
        store.import_history([imported])
    titles = sorted(r.ticket_title for r in store.iter_history())
    assert titles == sorted(_payloads(marker) * 2)
    assert sorted(p.name for p in store.list_projects()) == sorted(p[:255] for p in _payloads(marker))
    assert not marker.exists(), "a stored string was executed"


def test_cli_shows_stored_text_verbatim_without_markup_or_terminal_escapes(tmp_path: Path) -> None:
    """Ticket titles come from an issue tracker anyone may write to: the CLI must not let them
    restyle its output (rich markup) or send escape sequences to the operator's terminal."""
    path = tmp_path / "vibecc.db"
    with StateStore(path) as store:
        project = store.create_project("[red]styled[/red]", "acme/markup")
        store.create_pipeline(project.id, 1, "\x1b]0;owned\x07\x1b[2Jtitle", "main")
    # Wide enough that no column is cut short, whatever COLUMNS the test run inherits.
    wide = {**os.environ, "COLUMNS": "200"}
    listed = subprocess.run(
        [sys.executable, "-m", "vibecc.state_store", "--db", str(path), "projects", "list"],
        capture_output=True,
        env=wide,
        text=True,
        timeout=120,
    )
    assert listed.returncode == 0, listed.stderr
    assert "[red]styled[/red]" in listed.stdout, "rich markup in a stored name was interpreted"
    pipelines = subprocess.run(
        [sys.executable, "-m", "vibecc.state_store", "--db", str(path), "pipelines", "list"],
        capture_output=True,
        env=wide,
        text=True,
        timeout=120,
    )
    assert pipelines.returncode == 0, pipelines.stderr
    assert "\x1b" not in listed.stdout + pipelines.stdout, "a stored escape sequence reached the terminal"
