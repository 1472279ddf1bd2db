"""Faults of the file system under a SQLite store: a read-only mount, a file or folder the
process user may not write, and a full disk.

Each ends in a specific StateStoreError subclass, leaves the data as it was, and the database
works once the fault is gone. These faults need root (mounting a small tmpfs, or dropping to
user `nobody`, since root ignores file modes); elsewhere they skip with the reason.
"""

from __future__ import annotations

import ctypes
import errno
import json
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from vibecc.state_store import PipelineState, StateStore, StorageError

if TYPE_CHECKING:
    from tests import helpers
else:
    import helpers

NOBODY = 65534

# -- machine-level helpers ----------------------------------------------------------------------


_CLONE_NEWNS = 0x00020000
_MS_REC = 0x4000
_MS_PRIVATE = 1 << 18


def _enter_private_mount_namespace() -> str | None:
    """Move this thread (and the processes it starts) into a mount namespace of its own whose
    mounts never propagate to the machine's: the tmpfs the tests mount is invisible to every
    other process and goes away with this one. Returns why it cannot, or None."""
    if os.geteuid() != 0:
        return "mounting a tmpfs needs root"
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.unshare(_CLONE_NEWNS) != 0:
        return f"cannot make a private mount namespace: {os.strerror(ctypes.get_errno())}"
    if libc.mount(b"none", b"/", None, _MS_REC | _MS_PRIVATE, None) != 0:
        return f"cannot make the mount namespace private: {os.strerror(ctypes.get_errno())}"
    with tempfile.TemporaryDirectory() as probe:
        done = subprocess.run(
            ["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", probe], capture_output=True, text=True
        )
        if done.returncode != 0:
            return f"cannot mount a tmpfs here: {done.stderr.strip()}"
        subprocess.run(["umount", probe], check=True)
    return None


@pytest.fixture(scope="session")
def can_mount() -> None:
    """Tests that mount a tmpfs run in a private mount namespace, never in the machine's."""
    problem = _enter_private_mount_namespace()
    if problem:
        pytest.skip(problem)


@contextmanager
def tmpfs(where: Path, size: str) -> Iterator[Path]:
    """A small tmpfs mounted at `where`, unmounted afterwards whatever happens."""
    where.mkdir(parents=True, exist_ok=True)
    subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size},mode=0755", "tmpfs", str(where)], check=True)
    try:
        assert str(where) in Path("/proc/self/mountinfo").read_text()
        assert str(where) not in Path("/proc/1/mountinfo").read_text(), "the mount leaked to the machine"
        yield where
    finally:
        if subprocess.run(["umount", str(where)], capture_output=True).returncode != 0:
            subprocess.run(["umount", "-l", str(where)], check=False)


def remount(where: Path, mode: str) -> None:
    subprocess.run(["mount", "-o", f"remount,{mode}", str(where)], check=True)


def _as_nobody() -> None:
    os.setgroups([])
    os.setgid(NOBODY)
    os.setuid(NOBODY)


# setpriv (util-linux) drops to nobody and every capability before it starts the interpreter; it
# also finds an interpreter kept in root's home, which a plain setuid child may not reach.
_NOBODY_PREFIX = (
    ["setpriv", f"--reuid={NOBODY}", f"--regid={NOBODY}", "--clear-groups"] if shutil.which("setpriv") else []
)


_NOBODY_SCRIPT = """
import json, sys
from vibecc.state_store import StateStore, StateStoreError

def attempt(action):
    try:
        return ["ok", action()]
    except StateStoreError as exc:
        return [type(exc).__name__, str(exc)]

path, mode = sys.argv[1], sys.argv[2]
opened = attempt(lambda: StateStore(path, busy_timeout=1))
if opened[0] != "ok":
    print(json.dumps({"open": opened}))
    sys.exit()
store = opened[1]
result = {"open": ["ok", None]}
result["read"] = attempt(lambda: [p.name for p in store.list_projects()] + [len(store.list_pipelines())])
result["stats"] = attempt(lambda: store.get_history_stats().total_completed)
if mode == "write":
    result["write"] = attempt(lambda: store.update_project(store.list_projects()[0].id, name="renamed").name)
print(json.dumps(result))
"""


def run_as_nobody(path: Path, mode: str) -> dict[str, list[Any]]:
    """Open the store at `path` as user nobody, read, and (mode "write") write; report each outcome."""
    done = subprocess.run(
        [*_NOBODY_PREFIX, sys.executable, "-c", _NOBODY_SCRIPT, str(path), mode],
        preexec_fn=None if _NOBODY_PREFIX else _as_nobody,
        capture_output=True,
        text=True,
        cwd="/",
        env={**os.environ, "HOME": "/"},
        timeout=120,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    result: dict[str, list[Any]] = json.loads(done.stdout)
    return result


@pytest.fixture(scope="module")
def nobody_dir() -> Iterator[Path]:
    """A folder user nobody can reach (pytest's own tmp folders are root-only)."""
    if os.geteuid() != 0:
        pytest.skip("dropping to user nobody needs root")
    folder = Path(tempfile.mkdtemp(prefix="vibecc-faults-"))
    folder.chmod(0o755)
    try:
        try:
            probe = subprocess.run(
                [*_NOBODY_PREFIX, sys.executable, "-c", "import os, vibecc.state_store; print(os.getuid())"],
                preexec_fn=None if _NOBODY_PREFIX else _as_nobody,
                capture_output=True,
                text=True,
            )
        except PermissionError as exc:
            pytest.skip(f"user nobody cannot run {sys.executable}: {exc}")
        if probe.returncode != 0 or probe.stdout.strip() != str(NOBODY):
            pytest.skip(f"cannot run the package as user nobody here: {probe.stderr[-300:]}")
        yield folder
    finally:
        shutil.rmtree(folder, ignore_errors=True)


# -- read-only ----------------------------------------------------------------------------------


@pytest.mark.usefixtures("can_mount")
def test_read_only_filesystem_reads_work_and_writes_raise_storage_error(tmp_path: Path) -> None:
    """Root cannot write a read-only mount either, so this needs no privilege drop."""
    with tmpfs(tmp_path / "mnt", "4m") as mnt:
        path = mnt / "vibecc.db"
        before = helpers.filled_file(path)
        remount(mnt, "ro")
        with StateStore(path, busy_timeout=1) as store:
            assert helpers.contents(store) == before
            project = store.list_projects()[0]
            with pytest.raises(StorageError, match=r"readonly|read-only"):
                store.update_project(project.id, name="renamed")
            with pytest.raises(StorageError, match=r"readonly|read-only"):
                store.create_pipeline(project.id, "new", "title", "main")
            assert helpers.contents(store) == before
        remount(mnt, "rw")
        with StateStore(path) as store:
            assert helpers.contents(store) == before
            assert store.update_project(store.list_projects()[0].id, name="renamed").name == "renamed"
        assert helpers.integrity(path) == "ok"
    helpers.record_figure("fault", "SQLite file on a read-only filesystem")


def test_read_only_file_reads_work_and_writes_raise_storage_error(nobody_dir: Path) -> None:
    folder = nobody_dir / "ro-file"
    folder.mkdir()
    path = folder / "vibecc.db"
    before = helpers.filled_file(path)
    os.chown(folder, NOBODY, NOBODY)  # the folder is writable for nobody, the file is not
    path.chmod(0o644)
    result = run_as_nobody(path, "write")
    assert result["open"][0] == "ok", result
    assert result["read"] == ["ok", ["faults", 4]]
    assert result["stats"] == ["ok", 2]
    assert result["write"][0] == "StorageError", result
    assert "readonly" in result["write"][1], result
    with StateStore(path) as store:
        assert helpers.contents(store) == before
    os.chown(path, NOBODY, NOBODY)
    assert run_as_nobody(path, "write")["write"] == ["ok", "renamed"]
    assert helpers.integrity(path) == "ok"
    helpers.record_figure("fault", "SQLite file not writable by the process user")


def test_read_only_folder_reads_while_the_writer_has_it_open_and_refuses_clearly_otherwise(
    nobody_dir: Path,
) -> None:
    """The file is writable, its folder is not: SQLite cannot create the -wal and -shm files.

    While the writing process has the store open (its -wal and -shm exist) the reader opens
    and reads it; once the writer closed it, opening says why it cannot and what to do,
    instead of reading a frozen copy that would never see the writer's next commits.
    """
    folder = nobody_dir / "ro-folder"
    folder.mkdir()
    path = folder / "vibecc.db"
    before = helpers.filled_file(path)
    os.chown(path, NOBODY, NOBODY)
    with StateStore(path) as writer:
        writer.list_projects()  # the writer holds the store open: -wal and -shm exist
        result = run_as_nobody(path, "write")
        assert result["open"][0] == "ok", result
        assert result["read"] == ["ok", ["faults", 4]]
        assert result["write"][0] == "StorageError", result
        assert helpers.contents(writer) == before
    result = run_as_nobody(path, "read")
    assert result["open"][0] == "StorageError", result
    assert "make the folder writable" in result["open"][1], result
    os.chown(folder, NOBODY, NOBODY)
    assert run_as_nobody(path, "write")["write"] == ["ok", "renamed"]
    helpers.record_figure("fault", "SQLite folder not writable by the process user")


_FOLLOW_SCRIPT = """
import json, sys
from vibecc.state_store import StateStore
store = StateStore(sys.argv[1], busy_timeout=1)
for line in sys.stdin:
    print(json.dumps(sorted(p.name for p in store.list_projects())), flush=True)
"""


def test_a_read_only_reader_sees_what_the_writer_commits_later(nobody_dir: Path) -> None:
    """A store this user may not write is never opened as a frozen (immutable) copy."""
    folder = nobody_dir / "ro-follow"
    folder.mkdir()
    path = folder / "vibecc.db"
    helpers.filled_file(path)
    path.chmod(0o644)  # readable by nobody, writable only by its owner
    with StateStore(path) as writer:
        writer.list_projects()
        Path(f"{path}-shm").chmod(0o644)
        Path(f"{path}-wal").chmod(0o644)
        reader = subprocess.Popen(
            [*_NOBODY_PREFIX, sys.executable, "-c", _FOLLOW_SCRIPT, str(path)],
            preexec_fn=None if _NOBODY_PREFIX else _as_nobody,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            cwd="/",
            env={**os.environ, "HOME": "/"},
        )
        assert reader.stdin is not None
        assert reader.stdout is not None
        try:
            reader.stdin.write("read\n")
            reader.stdin.flush()
            assert json.loads(reader.stdout.readline()) == ["faults"], reader.stderr
            writer.create_project("later", "acme/later")
            reader.stdin.write("read\n")
            reader.stdin.flush()
            assert json.loads(reader.stdout.readline()) == ["faults", "later"]
        finally:
            reader.stdin.close()
            reader.wait(timeout=60)
    assert reader.returncode == 0, reader.stderr.read() if reader.stderr else ""


# -- disk full ----------------------------------------------------------------------------------


def _fill_disk(where: Path) -> Path:
    filler = where / "filler"
    fd = os.open(filler, os.O_CREAT | os.O_WRONLY, 0o600)
    failure: OSError | None = None
    try:
        while failure is None:
            try:
                os.write(fd, b"\0" * 4096)
            except OSError as exc:
                failure = exc
    finally:
        os.close(fd)
    assert failure.errno == errno.ENOSPC, failure
    return filler


@pytest.mark.usefixtures("can_mount")
def test_disk_full_write_raises_storage_error_and_changes_nothing(tmp_path: Path) -> None:
    with tmpfs(tmp_path / "mnt", "8m") as mnt:
        path = mnt / "vibecc.db"
        with StateStore(path) as store:
            helpers.fill(store)
            project = store.list_projects()[0]
            victim = store.update_pipeline(store.list_pipelines()[0].id, state=PipelineState.MERGED)
            before = helpers.contents(store)
            filler = _fill_disk(mnt)
            writes: list[Callable[[], object]] = [
                lambda: store.create_pipeline(project.id, "big", "title", "main", "x" * 300_000),
                lambda: store.update_pipeline(victim.id, feedback="y" * 300_000),
                lambda: store.archive_pipeline(victim.id),
            ]
            for write in writes:
                with pytest.raises(StorageError, match="full"):
                    write()
            assert helpers.contents(store) == before
            filler.unlink()
            for write in writes:
                write()
            assert store.get_pipeline_by_ticket(project.id, "big").ticket_body == "x" * 300_000
            assert store.get_history_record(victim.id).id == victim.id
        assert helpers.integrity(path) == "ok"
    helpers.record_figure("fault", "SQLite disk full while writing")
