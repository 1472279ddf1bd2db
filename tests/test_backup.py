"""backup_sqlite and `vibecc-state backup`: a consistent, checked, private copy of a live store."""

from __future__ import annotations

import multiprocessing
import os
import sqlite3
import stat
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from vibecc.state_store import BackupExistsError, StateStore, StorageError, ValidationError
from vibecc.state_store.ops.backup import backup_sqlite

if TYPE_CHECKING:
    from tests import helpers
    from tests.test_cli import Done, add_history, as_json, ok, one_line_error, run
else:
    import helpers
    from test_cli import Done, add_history, as_json, ok, one_line_error, run


@pytest.fixture
def live(tmp_path: Path) -> str:
    """A SQLite store with a project, 300 finished tickets and one active pipeline."""
    path = str(tmp_path / "live" / "vibecc.db")
    with StateStore(path) as store:
        project_id = add_history(store, "acme/live", [Done(n, n / 100, 60 + n) for n in range(300)])
        store.create_pipeline(project_id, 1000, "Active", "ticket-1000")
    return path


def _contents(path: str | Path) -> tuple[Any, ...]:
    with StateStore(path) as store:
        return (store.list_projects(), store.list_pipelines(), list(store.iter_history()))


def test_backup_is_an_exact_private_checked_copy(live: str, tmp_path: Path) -> None:
    dest = tmp_path / "backups" / "nightly.db"
    seen: list[tuple[int, int]] = []
    result = backup_sqlite(
        live, dest, pages_per_step=8, progress=lambda done, total: seen.append((done, total))
    )
    assert stat.S_IMODE(dest.stat().st_mode) == 0o600
    assert result.rows == {"projects": 1, "pipelines": 1, "pipeline_history": 300}
    assert result.bytes == dest.stat().st_size
    assert len(seen) > 1
    assert seen[-1] == (result.pages, result.pages)
    assert helpers.integrity(dest) == "ok"
    assert not Path(f"{dest}-wal").exists()  # one self-contained file
    assert sorted(p.name for p in dest.parent.iterdir()) == ["nightly.db"]  # no temporary left
    assert _contents(dest) == _contents(live)


def test_backup_refuses_to_overwrite_unless_forced(live: str, tmp_path: Path) -> None:
    dest = tmp_path / "nightly.db"
    dest.write_bytes(b"an older backup")
    with pytest.raises(BackupExistsError, match="exists already"):
        backup_sqlite(live, dest)
    assert dest.read_bytes() == b"an older backup"
    Path(f"{dest}-wal").write_bytes(b"stale wal of the older backup")
    backup_sqlite(live, dest, force=True)
    assert not Path(f"{dest}-wal").exists()
    assert helpers.integrity(dest) == "ok"
    assert stat.S_IMODE(dest.stat().st_mode) == 0o600


@pytest.mark.parametrize(
    ("source", "dest", "error", "match"),
    [
        ("{tmp}/missing.db", "{tmp}/b.db", StorageError, "no SQLite database at"),
        ("{live}", "{live}", ValidationError, "is the database itself"),
        ("{live}", "{tmp}", ValidationError, "is a directory"),
        (":memory:", "{tmp}/b.db", ValidationError, "in-memory"),
        ("postgresql://u@127.0.0.1:1/x", "{tmp}/b.db", ValidationError, "pg_dump"),
    ],
)
def test_backup_refuses_what_it_cannot_copy(
    live: str, tmp_path: Path, source: str, dest: str, error: type[Exception], match: str
) -> None:
    with pytest.raises(error, match=match):
        backup_sqlite(source.format(tmp=tmp_path, live=live), dest.format(tmp=tmp_path, live=live))


def test_backup_never_replaces_what_is_not_a_regular_file(live: str, tmp_path: Path) -> None:
    fifo = tmp_path / "pipe.db"
    os.mkfifo(fifo)
    with pytest.raises(ValidationError, match="is not a regular file"):
        backup_sqlite(live, fifo, force=True)
    assert stat.S_ISFIFO(fifo.lstat().st_mode)


def test_backup_of_a_store_object(live: str, tmp_path: Path) -> None:
    with StateStore(live) as store:
        result = backup_sqlite(store, tmp_path / "b.db")
    assert result.rows["pipeline_history"] == 300


# -- while another process writes ---------------------------------------------------------------


def _keep_writing(location: str, written: Any, stop: Any) -> None:
    """Child process: create and archive pipelines until told to stop, like an orchestrator."""
    with StateStore(location) as store:
        project = store.get_project_by_repo("acme/live")
        n = 0
        while not stop.is_set():
            n += 1
            pipeline = store.create_pipeline(project.id, f"w{n}", "Written during the backup", f"w-{n}")
            store.update_pipeline(pipeline.id, state="merged", expected_version=1)
            store.archive_pipeline(pipeline.id)
            written.value = n


def _check_consistent(path: Path, committed_before: set[str]) -> set[str]:
    assert helpers.integrity(path) == "ok"
    conn = sqlite3.connect(path)
    try:
        ids = {row[0] for row in conn.execute("SELECT id FROM pipeline_history")}
        kept = conn.execute("SELECT sum(total_completed) FROM history_stats").fetchone()[0]
        active = {row[0] for row in conn.execute("SELECT id FROM pipelines")}
    finally:
        conn.close()
    assert committed_before <= ids
    assert kept == len(ids)  # the stats and the rows are from the same moment
    assert not active & ids  # no pipeline both active and archived
    return ids


def test_backup_while_another_process_keeps_writing(live: str, tmp_path: Path) -> None:
    context = multiprocessing.get_context("spawn")
    written, stop = context.Value("i", 0), context.Event()
    writer = context.Process(target=_keep_writing, args=(live, written, stop))
    writer.start()
    during: set[str] = set()

    def hold_until_the_writer_commits(done: int, total: int) -> None:
        # After the first step, let the writer commit more before the copy goes on.
        if not during:
            start = written.value
            helpers.until(
                lambda: written.value >= start + 5,
                "the writer committing during the backup",
                timeout=60,
                interval=0.005,
            )
            with StateStore(live) as store:
                during.update(h.id for h in store.iter_history())

    try:
        helpers.until(lambda: written.value >= 20, "the writer process starting", timeout=60, interval=0.005)
        with StateStore(live) as store:
            committed = {h.id for h in store.iter_history()}
        library_copy = tmp_path / "library.db"
        backup_sqlite(live, library_copy, pages_per_step=2, progress=hold_until_the_writer_commits)
        with StateStore(live) as store:
            committed_cli = {h.id for h in store.iter_history()}
        cli_copy = tmp_path / "cli.db"
        result = run(live, "backup", str(cli_copy))
    finally:
        stop.set()
        writer.join(60)
    assert writer.exitcode == 0
    assert result.exit_code == 0, result.stderr
    assert "integrity_check ok" in result.stdout
    copied = _check_consistent(library_copy, committed)
    assert during - copied, "rows committed after the backup began are in the copy"
    _check_consistent(cli_copy, committed_cli)


# -- the command -------------------------------------------------------------------------------


def test_backup_command(live: str, tmp_path: Path) -> None:
    dest = tmp_path / "b.db"
    shown = ok(live, "backup", str(dest))
    assert f"to {dest}" in shown.stdout
    assert "300 pipeline_history" in shown.stdout
    assert shown.stderr == ""
    one_line_error(run(live, "backup", str(dest)), 2, "exists already", "--force")
    report = as_json(live, "backup", str(dest), "--force")
    assert report["integrity_check"] == "ok"
    assert report["rows"] == {"projects": 1, "pipelines": 1, "pipeline_history": 300}
    assert _contents(dest) == _contents(live)


def test_backup_command_errors(tmp_path: Path, store_url: str, engine_name: str) -> None:
    if engine_name == "postgresql":
        one_line_error(run(store_url, "backup", str(tmp_path / "b.db")), 2, "pg_dump")
    else:
        one_line_error(
            run(str(tmp_path / "missing.db"), "backup", str(tmp_path / "b.db")), 1, "no SQLite database"
        )
    assert not (tmp_path / "b.db").exists()


def test_missing_folders_of_a_backup_are_owner_only_whatever_the_umask(live: str, tmp_path: Path) -> None:
    dest = tmp_path / "backups" / "nightly" / "b.db"
    old = os.umask(0)
    try:
        ok(live, "backup", str(dest))
    finally:
        os.umask(old)
    assert stat.S_IMODE(dest.stat().st_mode) == 0o600
    for folder in (tmp_path / "backups", tmp_path / "backups" / "nightly"):
        assert stat.S_IMODE(folder.stat().st_mode) == 0o700, folder
