"""SQLite files the store cannot use: one whose write lock another process holds past
busy_timeout, and files that are not (or no longer, or not yet) a state store.

Each ends in a specific StateStoreError subclass and leaves the data (or the file) as it was.
"""

from __future__ import annotations

import hashlib
import random
import shutil
import sqlite3
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from vibecc.state_store import PipelineState, SchemaVersionError, StateStore, StateStoreError, StorageError

if TYPE_CHECKING:
    from tests import helpers
else:
    import helpers

# -- a lock held by another process -------------------------------------------------------------

_LOCK_HOLDER = """
import sqlite3, sys
conn = sqlite3.connect(sys.argv[1], isolation_level=None)
conn.execute("BEGIN IMMEDIATE")
print("locked", flush=True)
sys.stdin.readline()
conn.execute("ROLLBACK")
"""


def test_write_lock_held_by_another_process_raises_storage_error(tmp_path: Path) -> None:
    path = tmp_path / "vibecc.db"
    before = helpers.filled_file(path)
    holder = subprocess.Popen(
        [sys.executable, "-c", _LOCK_HOLDER, str(path)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout is not None
        assert holder.stdin is not None
        assert holder.stdout.readline().strip() == "locked"
        with StateStore(path, busy_timeout=0.5) as store:
            project = store.list_projects()[0]
            with pytest.raises(StorageError, match="database is locked"):
                store.create_pipeline(project.id, "new", "title", "main")
            with pytest.raises(StorageError, match="database is locked"):
                store.archive_pipeline(store.list_pipelines()[0].id)
            assert helpers.contents(store) == before, "reads go on while another process holds the write lock"
            holder.stdin.write("\n")
            holder.stdin.flush()
            assert holder.wait(timeout=helpers.WAIT) == 0
            assert store.create_pipeline(project.id, "new", "title", "main").version == 1
    finally:
        holder.kill()
        holder.wait()
    helpers.record_figure("fault", "SQLite write lock held by another process beyond busy_timeout")


# -- files that are not a state store -----------------------------------------------------------


def _not_a_database(path: Path, template: Path) -> None:
    path.write_bytes(random.Random(7).randbytes(16_384))


def _text_file(path: Path, template: Path) -> None:
    path.write_text("this is a shopping list, not a database\n" * 200, encoding="utf-8")


def _cut_in_half(path: Path, template: Path) -> None:
    data = template.read_bytes()
    path.write_bytes(data[: len(data) // 2])


def _header_only(path: Path, template: Path) -> None:
    path.write_bytes(template.read_bytes()[:100])


def _newer_schema(path: Path, template: Path) -> None:
    shutil.copy(template, path)
    conn = sqlite3.connect(path)
    try:
        conn.execute("UPDATE alembic_version SET version_num = '9999_from_the_future'")
        conn.commit()
    finally:
        conn.close()


BAD_FILES = [
    pytest.param(_not_a_database, StorageError, "file is not a database", id="random-bytes"),
    pytest.param(_text_file, StorageError, "file is not a database", id="text-file"),
    pytest.param(_cut_in_half, StorageError, "malformed", id="truncated-half"),
    pytest.param(_header_only, StorageError, "malformed|not a database", id="truncated-header"),
    pytest.param(_newer_schema, SchemaVersionError, "9999_from_the_future, newer than this code", id="newer"),
]


@pytest.fixture(scope="module")
def big_store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A real store file of a few hundred pages, checkpointed and closed."""
    path = tmp_path_factory.mktemp("big") / "vibecc.db"
    with StateStore(path) as store:
        project = store.create_project("big", "acme/big")
        for n in range(200):
            pipeline = store.create_pipeline(project.id, n, "title " * 20, "main", "body " * 100)
            if n % 2:
                store.update_pipeline(pipeline.id, state=PipelineState.MERGED)
                store.archive_pipeline(pipeline.id)
    return path


def _fingerprint(folder: Path) -> dict[str, tuple[str, int]]:
    return {
        f.name: (hashlib.sha256(f.read_bytes()).hexdigest(), f.stat().st_mtime_ns)
        for f in sorted(folder.iterdir())
    }


@pytest.mark.parametrize(("damage", "error", "message"), BAD_FILES)
def test_unusable_file_is_refused_at_open_and_left_untouched(
    tmp_path: Path,
    big_store: Path,
    damage: Callable[[Path, Path], None],
    error: type[StateStoreError],
    message: str,
) -> None:
    path = tmp_path / "vibecc.db"
    damage(path, big_store)
    before = _fingerprint(tmp_path)
    with pytest.raises(error, match=message) as raised:
        StateStore(path)
    assert type(raised.value) is error
    assert _fingerprint(tmp_path) == before, "the file (or a -wal/-shm beside it) was changed"
    helpers.record_figure("fault", f"SQLite open of {damage.__name__.strip('_').replace('_', ' ')}")
