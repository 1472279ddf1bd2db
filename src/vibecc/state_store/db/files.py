"""Files the package creates, owner-only whatever the umask, and how to open a SQLite file this
process may read but not write."""

from __future__ import annotations

import os
import urllib.parse
from pathlib import Path

from ..errors import StorageError


def read_only_uri(path: Path) -> str | None:
    """A read-only URI for a database this process may read but not change, else None.

    SQLite cannot open a WAL database read-write when the file, or the folder that must hold
    its -wal and -shm files, is read-only; opened mode=ro it can, and it sees every commit of
    the process that writes it. immutable=1 (no locks, no -wal) only on a read-only file
    system, where no process can write: anywhere else another process may write later and an
    immutable reader would never see it.
    """
    if os.access(path, os.W_OK) and os.access(path.parent, os.W_OK):
        return None
    quoted = urllib.parse.quote(str(path))
    if os.statvfs(path).f_flag & os.ST_RDONLY:
        return f"file:{quoted}?mode=ro&immutable=1"
    return f"file:{quoted}?mode=ro"


def private_folders(folder: Path) -> None:
    """Create `folder` and any missing parents readable, writable and searchable by the
    owner only (0700, whatever the umask); folders that exist are left as they are.

    Raises:
        OSError: a folder cannot be created.
    """
    missing = [f for f in (folder, *folder.parents) if not f.exists()]
    for f in reversed(missing):
        f.mkdir(mode=0o700, exist_ok=True)
        os.chmod(f, 0o700)  # mkdir's mode passes through the umask; this does not


def create_private_file(path: Path) -> None:
    """Create the database file readable and writable by its owner only (SQLite gives its
    -wal and -shm files the same mode), and any missing folders for the owner only."""
    try:
        private_folders(path.parent)
        fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600)
    except FileExistsError:
        return
    except OSError as exc:
        raise StorageError(f"cannot create SQLite database {path}: {exc.strerror}") from exc
    os.fchmod(fd, 0o600)
    os.close(fd)
