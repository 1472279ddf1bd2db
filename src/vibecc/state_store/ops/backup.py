"""backup_sqlite: a consistent copy of a live SQLite store, checked before it is kept.

The copy is made with SQLite's online backup API inside one read transaction, so it is the
database as of one moment even while other processes keep writing (WAL lets them), then
`PRAGMA integrity_check` runs on it. It is written to a private temporary file (mode 0600)
next to the destination and moved into place only when it passed.
"""

from __future__ import annotations

import os
import sqlite3
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy.engine import URL

from ..db.files import private_folders
from ..db.urls import to_url
from ..errors import BackupExistsError, StorageError, ValidationError, translate
from ..store import StateStore

BackupProgress = Callable[[int, int], None]
"""Called with the pages copied so far and the pages in the database, after each step."""
_COUNTS = {
    "projects": "SELECT count(*) FROM projects",
    "pipelines": "SELECT count(*) FROM pipelines",
    "pipeline_history": "SELECT count(*) FROM pipeline_history",
}
COUNTED = tuple(_COUNTS)
"""The tables whose rows a backup reports."""
_SIDE_FILES = ("-journal", "-wal", "-shm")


@dataclass(frozen=True, slots=True)
class BackupResult:
    """A finished backup: where from, where to, its size and the rows it holds."""

    source: str
    dest: str
    pages: int
    bytes: int
    rows: dict[str, int]


def backup_sqlite(
    source: StateStore | URL | str | os.PathLike[str],
    dest: str | os.PathLike[str],
    *,
    force: bool = False,
    progress: BackupProgress | None = None,
    busy_timeout: float = 10.0,
    pages_per_step: int = 1024,
) -> BackupResult:
    """Copy a SQLite store to `dest` while others may write to it, and check the copy.

    Args:
        source: a StateStore on SQLite, a database file path or a sqlite URL.
        dest: the backup file to write (missing folders are created, owner-only).
        force: replace `dest` if it exists.
        pages_per_step: pages copied between progress calls (all steps read one snapshot).

    Raises:
        BackupExistsError: `dest` exists and force is False.
        ValidationError: the source is not a SQLite file, or `dest` is the source itself.
        StorageError: the source cannot be read, the copy cannot be written, or the copy
            fails integrity_check (nothing is left at `dest` then).
    """
    source_path = _source_path(source)
    target = Path(dest).expanduser().absolute()
    if not source_path.is_file():
        raise StorageError(f"no SQLite database at {source_path}")
    if target.exists() and target.resolve() == source_path.resolve():
        raise ValidationError(f"backup destination {target} is the database itself")
    if target.is_dir():
        raise ValidationError(f"backup destination {target} is a directory")
    if target.exists() and not target.is_file():  # /dev/null, a FIFO: never replaced by a file
        raise ValidationError(f"backup destination {target} is not a regular file")
    if target.exists() and not force:
        raise BackupExistsError(f"backup destination {target} exists already")
    try:
        private_folders(target.parent)
        temporary = target.with_name(f".{target.name}.{uuid.uuid4().hex[:8]}.tmp")
        os.close(os.open(temporary, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600))
    except OSError as exc:
        raise StorageError(f"cannot write the backup {target}: {exc.strerror}") from exc
    try:
        pages = _copy(source_path, temporary, progress, busy_timeout, max(1, pages_per_step))
        rows = _verify(temporary)
        size = temporary.stat().st_size
        _publish(temporary, target, force=force)
    except sqlite3.Error as exc:
        raise translate(exc, f"backup of SQLite database {source_path} failed") from exc
    except OSError as exc:
        raise StorageError(f"cannot write the backup {target}: {exc.strerror or exc}") from exc
    finally:
        for suffix in ("", *_SIDE_FILES):
            Path(f"{temporary}{suffix}").unlink(missing_ok=True)
    return BackupResult(str(source_path), str(target), pages, size, rows)


def _source_path(source: StateStore | URL | str | os.PathLike[str]) -> Path:
    url = to_url(source.url if isinstance(source, StateStore) else source)
    if url.get_backend_name() != "sqlite":
        raise ValidationError("backup_sqlite copies SQLite databases; for PostgreSQL use pg_dump")
    if not url.database or url.database == ":memory:":
        raise ValidationError("an in-memory SQLite database has no file to back up")
    return Path(url.database)


def _copy(
    source: Path, temporary: Path, progress: BackupProgress | None, busy_timeout: float, step_pages: int
) -> int:
    """Copy page by page inside one read transaction, so every step sees the same snapshot
    (without it SQLite restarts the backup whenever another process commits)."""
    pages = 0

    def step(_status: int, remaining: int, total: int) -> None:
        nonlocal pages
        pages = total
        if progress is not None:
            progress(total - remaining, total)

    src = sqlite3.connect(source, timeout=busy_timeout, isolation_level=None)
    try:
        src.execute("BEGIN")
        src.execute("SELECT count(*) FROM sqlite_master").fetchone()
        dst = sqlite3.connect(temporary, isolation_level=None)
        try:
            src.backup(dst, pages=step_pages, progress=step)
            # One self-contained file: no -wal beside the backup.
            dst.execute("PRAGMA journal_mode = DELETE").fetchone()
        finally:
            dst.close()
        src.execute("COMMIT")
    finally:
        src.close()
    return pages


def _verify(path: Path) -> dict[str, int]:
    conn = sqlite3.connect(path)
    try:
        problems = [str(row[0]) for row in conn.execute("PRAGMA integrity_check")]
        if problems != ["ok"]:
            raise StorageError(f"the backup failed integrity_check: {'; '.join(problems[:3])}")
        tables = {str(row[0]) for row in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
        return {
            name: int(conn.execute(count).fetchone()[0]) for name, count in _COUNTS.items() if name in tables
        }
    finally:
        conn.close()


def _publish(temporary: Path, target: Path, *, force: bool) -> None:
    """Move the checked copy into place durably; without force never replace a file that
    appeared meanwhile."""
    with open(temporary, "rb") as handle:
        os.fsync(handle.fileno())
    if force:
        # A stale -wal next to the old file would be replayed into the new one on open.
        for suffix in _SIDE_FILES:
            Path(f"{target}{suffix}").unlink(missing_ok=True)
        os.replace(temporary, target)
    else:
        try:
            os.link(temporary, target)
        except FileExistsError:
            raise BackupExistsError(f"backup destination {target} exists already") from None
        except OSError:
            # No hard links on this file system: check, then rename.
            if target.exists():
                raise BackupExistsError(f"backup destination {target} exists already") from None
            os.replace(temporary, target)
        else:
            temporary.unlink()
    directory = os.open(target.parent, os.O_RDONLY)
    try:
        os.fsync(directory)
    finally:
        os.close(directory)
