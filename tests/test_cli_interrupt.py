"""Ctrl-C: exit 130 and one line saying what was already committed, on SQLite and PostgreSQL.

KeyboardInterrupt is raised from the progress callback (after a batch committed) or from the
record source (while a batch is being read), the two places a real Ctrl-C lands most often.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click
import pytest

from vibecc.state_store import StateStore, StorageError
from vibecc.state_store.cli import common as cli_common
from vibecc.state_store.cli import exchange as cli_exchange
from vibecc.state_store.cli import ops as cli_ops
from vibecc.state_store.cli import progress as cli_progress
from vibecc.state_store.cli.common import interrupted
from vibecc.state_store.ops import exchange

if TYPE_CHECKING:
    from tests.helpers import snapshot
    from tests.test_cli import Done, add_history, ok, one_line_error, run
else:
    from helpers import snapshot
    from test_cli import Done, add_history, ok, one_line_error, run


@pytest.fixture
def filled(store_url: str) -> str:
    with StateStore(store_url) as store:
        add_history(store, "acme/web", [Done(n, n, 60) for n in range(10)])
    return store_url


def _count(location: str) -> int:
    with StateStore(location) as store:
        return store.count_history()


def _interrupt_meter_after(monkeypatch: pytest.MonkeyPatch, rows: int) -> None:
    """Ctrl-C in the progress callback once `rows` rows are reported done."""
    add = cli_progress.Meter.add

    def interrupted_add(self: cli_progress.Meter, n: int) -> None:
        add(self, n)
        if self.done >= rows:
            raise KeyboardInterrupt

    monkeypatch.setattr(cli_progress.Meter, "add", interrupted_add)


def _interrupt_source_after(monkeypatch: pytest.MonkeyPatch, records: int) -> None:
    """Ctrl-C in the record source after it handed out `records` records."""
    read = exchange.read_runs

    def interrupted_read(*args: Any, **kwargs: Any) -> Iterator[Any]:
        for n, record in enumerate(read(*args, **kwargs), start=1):
            yield record
            if n >= records:
                raise KeyboardInterrupt

    monkeypatch.setattr(cli_exchange, "read_runs", interrupted_read)


@pytest.mark.parametrize("where", ["source", "progress"])
def test_ctrl_c_during_import_says_what_was_committed(
    filled: str, fresh_db: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, where: str
) -> None:
    dump = tmp_path / "history.jsonl"
    dump.write_bytes(ok(filled, "export").stdout_bytes)
    target = fresh_db()
    ok(target, "db", "upgrade")
    # Batches of 3: the source stops in the middle of the third batch (7 read, 6 committed);
    # the progress callback stops right after the first batch committed (3).
    if where == "source":
        _interrupt_source_after(monkeypatch, 7)
    else:
        original = StateStore.import_history

        def import_history(self: StateStore, records: Any, *, progress: Any, **options: Any) -> Any:
            def interrupting(n: int) -> None:
                progress(n)
                raise KeyboardInterrupt

            return original(self, records, progress=interrupting, **options)

        monkeypatch.setattr(StateStore, "import_history", import_history)
    result = run(target, "import", str(dump), "--batch-size", "3")
    committed = 6 if where == "source" else 3
    line = one_line_error(result, 130, f"interrupted: {committed} record(s) in batches already committed")
    assert "the batch in progress was not written" in line
    assert "aborted" not in line.lower()
    assert _count(target) == committed


def test_ctrl_c_before_anything_committed_removes_the_new_database(
    filled: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    dump = tmp_path / "history.jsonl"
    dump.write_bytes(ok(filled, "export").stdout_bytes)
    _interrupt_source_after(monkeypatch, 2)
    target = tmp_path / "new" / "vibecc.db"
    one_line_error(run(str(target), "import", str(dump)), 130, "interrupted: 0 record(s)")
    assert not target.parent.exists()


@pytest.mark.parametrize("new_target", [False, True], ids=["existing-target", "new-sqlite-target"])
def test_ctrl_c_during_copy_rolls_the_target_back_and_says_so(
    filled: str, fresh_db: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, new_target: bool
) -> None:
    if new_target:
        target = str(tmp_path / "copy" / "vibecc.db")
    else:
        target = fresh_db()
        ok(target, "db", "upgrade")
        before = snapshot(target)
    _interrupt_meter_after(monkeypatch, 4)
    result = run(filled, "copy", "--to", target, "--batch-size", "2")
    one_line_error(result, 130, "interrupted: nothing was copied, the target's transaction was rolled back")
    if new_target:
        assert not (tmp_path / "copy").exists()
    else:
        assert snapshot(target) == before


def test_a_driver_error_raised_while_ctrl_c_is_handled_is_still_an_interruption(
    filled: str, fresh_db: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """As psycopg does when Ctrl-C lands inside a query: the rollback that follows fails too."""

    def copy_store(*args: Any, **kwargs: Any) -> None:
        try:
            raise KeyboardInterrupt
        except KeyboardInterrupt:
            raise StorageError("PostgreSQL database 'x': server closed the connection unexpectedly") from None

    monkeypatch.setattr(cli_ops, "copy_store", copy_store)
    target = fresh_db()
    ok(target, "db", "upgrade")
    line = one_line_error(run(filled, "copy", "--to", target), 130, "interrupted: nothing was copied")
    assert "server closed" not in line


def test_ctrl_c_during_prune_keeps_the_committed_batches(
    filled: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    _interrupt_meter_after(monkeypatch, 4)
    result = run(filled, "prune", "--keep-days", "0", "--batch-size", "4", "--yes")
    one_line_error(result, 130, "interrupted: 4 history record(s) were deleted in batches already committed")
    assert _count(filled) == 6


def test_ctrl_c_during_export_says_the_output_is_incomplete(
    filled: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    _interrupt_meter_after(monkeypatch, 3)
    result = run(filled, "export")
    one_line_error(result, 130, "interrupted after 3 of 10 record(s): the output is incomplete")
    assert len(result.stdout.splitlines()) == 3


def test_ctrl_c_at_a_question_is_an_interruption_not_a_no(
    filled: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(cli_common, "stdin_is_terminal", lambda: True)

    def confirm(*args: Any, **kwargs: Any) -> None:
        try:
            raise KeyboardInterrupt
        except KeyboardInterrupt:
            raise click.Abort() from None  # what click.confirm does

    monkeypatch.setattr(click, "confirm", confirm)
    one_line_error(run(filled, "prune", "--keep-days", "0"), 130, "interrupted; did not delete 10")
    assert _count(filled) == 10


def test_ctrl_c_anywhere_else_exits_130(filled: str, monkeypatch: pytest.MonkeyPatch) -> None:
    def list_projects(self: StateStore) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(StateStore, "list_projects", list_projects)
    one_line_error(run(filled, "projects", "list"), 130, "interrupted")


def _rollback_failing_after_ctrl_c() -> None:
    try:
        raise KeyboardInterrupt
    except KeyboardInterrupt as inner:
        raise StorageError("rollback failed") from inner


def test_interrupted_follows_the_chain_of_causes() -> None:
    with pytest.raises(StorageError) as raised:
        _rollback_failing_after_ctrl_c()
    assert interrupted(raised.value)
    assert not interrupted(StorageError("locked"))


def test_ctrl_c_while_a_new_copy_target_is_created_leaves_nothing(
    filled: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, engine_name: str
) -> None:
    """Ctrl-C can land while the new SQLite target is being made and migrated, before any row
    is copied: the half-made file and the folders made for it go, and the message says so."""
    from vibecc.state_store import migrate

    target = tmp_path / "made" / "for" / "copy.db"
    original = migrate.ensure_schema

    def interrupted_migration(engine: Any, **kwargs: Any) -> None:
        if engine.url.database == str(target):
            raise KeyboardInterrupt
        original(engine, **kwargs)

    monkeypatch.setattr(migrate, "ensure_schema", interrupted_migration)
    result = run(filled, "copy", "--to", str(target))
    one_line_error(result, 130, "interrupted while creating", "nothing was written")
    assert not (tmp_path / "made").exists()
