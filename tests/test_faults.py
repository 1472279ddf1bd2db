"""Faults from outside the library: read-only files and folders, a full disk, a lock held by
another process, files that are not (or no longer, or not yet) a state store, and PostgreSQL
backends killed or timed out part-way through a multi-statement write.

Each ends in a specific StateStoreError subclass, leaves the data as it was, and the database
works once the fault is gone. The machine-level faults need root (mounting a small tmpfs, or
dropping to user `nobody`, since root ignores file modes); elsewhere they skip with the reason.
"""

from __future__ import annotations

import ctypes
import errno
import hashlib
import json
import os
import random
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
from sqlalchemy import Engine, create_engine, text
from sqlalchemy.engine import make_url

from vibecc.state_store import (
    HistoryNotFoundError,
    PipelineState,
    SchemaVersionError,
    StateStore,
    StateStoreError,
    StorageError,
)

if TYPE_CHECKING:
    from tests.conftest import PostgresServer

NOBODY = 65534
WAIT = 30.0
"""Seconds to wait for a condition (a helper process ready, a backend blocked) before failing."""
STORE_APP = "vibecc-state-store"


def record_fault(name: str) -> None:
    """Note an injected fault the store came through, for bench/reliability_figures.py."""
    target = os.environ.get("VIBECC_RELIABILITY_FIGURES")
    if target:
        with open(target, "a", encoding="utf-8") as out:
            out.write(json.dumps({"figure": "fault", "engine": "", "value": name}) + "\n")


def contents(store: StateStore) -> tuple[Any, ...]:
    """Everything a caller can see, to compare before and after a fault."""
    return (
        store.list_projects(),
        store.list_pipelines(),
        store.get_history(limit=10_000),
        store.get_history_stats(),
    )


def fill(store: StateStore) -> None:
    """A project with active, finished and archived pipelines."""
    project = store.create_project("faults", "acme/faults")
    for n in range(6):
        pipeline = store.create_pipeline(project.id, n, f"ticket {n}", "main", "body " * 50)
        if n % 3 == 0:
            store.update_pipeline(pipeline.id, state=PipelineState.MERGED, retry_count_ci=n)
            store.archive_pipeline(pipeline.id)


def integrity(path: Path) -> str:
    conn = sqlite3.connect(path)
    try:
        return "; ".join(str(row[0]) for row in conn.execute("PRAGMA integrity_check"))
    finally:
        conn.close()


def _until(condition: Callable[[], bool], what: str) -> None:
    deadline = time.monotonic() + WAIT
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"gave up waiting for {what}")
        time.sleep(0.02)


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


def _make_store(path: Path) -> tuple[Any, ...]:
    with StateStore(path) as store:
        fill(store)
        return contents(store)


# -- read-only ----------------------------------------------------------------------------------


@pytest.mark.usefixtures("can_mount")
def test_read_only_filesystem_reads_work_and_writes_raise_storage_error(tmp_path: Path) -> None:
    """Root cannot write a read-only mount either, so this needs no privilege drop."""
    with tmpfs(tmp_path / "mnt", "4m") as mnt:
        path = mnt / "vibecc.db"
        before = _make_store(path)
        remount(mnt, "ro")
        with StateStore(path, busy_timeout=1) as store:
            assert contents(store) == before
            project = store.list_projects()[0]
            with pytest.raises(StorageError, match=r"readonly|read-only"):
                store.update_project(project.id, name="renamed")
            with pytest.raises(StorageError, match=r"readonly|read-only"):
                store.create_pipeline(project.id, "new", "title", "main")
            assert contents(store) == before
        remount(mnt, "rw")
        with StateStore(path) as store:
            assert contents(store) == before
            assert store.update_project(store.list_projects()[0].id, name="renamed").name == "renamed"
        assert integrity(path) == "ok"
    record_fault("SQLite file on a read-only filesystem")


def test_read_only_file_reads_work_and_writes_raise_storage_error(nobody_dir: Path) -> None:
    folder = nobody_dir / "ro-file"
    folder.mkdir()
    path = folder / "vibecc.db"
    before = _make_store(path)
    os.chown(folder, NOBODY, NOBODY)  # the folder is writable for nobody, the file is not
    path.chmod(0o644)
    result = run_as_nobody(path, "write")
    assert result["open"][0] == "ok", result
    assert result["read"] == ["ok", ["faults", 4]]
    assert result["stats"] == ["ok", 2]
    assert result["write"][0] == "StorageError", result
    assert "readonly" in result["write"][1], result
    with StateStore(path) as store:
        assert contents(store) == before
    os.chown(path, NOBODY, NOBODY)
    assert run_as_nobody(path, "write")["write"] == ["ok", "renamed"]
    assert integrity(path) == "ok"
    record_fault("SQLite file not writable by the process user")


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
    before = _make_store(path)
    os.chown(path, NOBODY, NOBODY)
    with StateStore(path) as writer:
        writer.list_projects()  # the writer holds the store open: -wal and -shm exist
        result = run_as_nobody(path, "write")
        assert result["open"][0] == "ok", result
        assert result["read"] == ["ok", ["faults", 4]]
        assert result["write"][0] == "StorageError", result
        assert contents(writer) == before
    result = run_as_nobody(path, "read")
    assert result["open"][0] == "StorageError", result
    assert "make the folder writable" in result["open"][1], result
    os.chown(folder, NOBODY, NOBODY)
    assert run_as_nobody(path, "write")["write"] == ["ok", "renamed"]
    record_fault("SQLite folder not writable by the process user")


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
    _make_store(path)
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
            fill(store)
            project = store.list_projects()[0]
            victim = store.update_pipeline(store.list_pipelines()[0].id, state=PipelineState.MERGED)
            before = contents(store)
            filler = _fill_disk(mnt)
            writes: list[Callable[[], object]] = [
                lambda: store.create_pipeline(project.id, "big", "title", "main", "x" * 300_000),
                lambda: store.update_pipeline(victim.id, feedback="y" * 300_000),
                lambda: store.archive_pipeline(victim.id),
            ]
            for write in writes:
                with pytest.raises(StorageError, match="full"):
                    write()
            assert contents(store) == before
            filler.unlink()
            for write in writes:
                write()
            assert store.get_pipeline_by_ticket(project.id, "big").ticket_body == "x" * 300_000
            assert store.get_history_record(victim.id).id == victim.id
        assert integrity(path) == "ok"
    record_fault("SQLite disk full while writing")


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
    before = _make_store(path)
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
            assert contents(store) == before, "reads go on while another process holds the write lock"
            holder.stdin.write("\n")
            holder.stdin.flush()
            assert holder.wait(timeout=WAIT) == 0
            assert store.create_pipeline(project.id, "new", "title", "main").version == 1
    finally:
        holder.kill()
        holder.wait()
    record_fault("SQLite write lock held by another process beyond busy_timeout")


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
    record_fault(f"SQLite open of {damage.__name__.strip('_').replace('_', ' ')}")


# -- PostgreSQL: backends killed or timed out in the middle of a write ---------------------------


@pytest.fixture
def pg_url(pg_server: PostgresServer) -> str:
    return pg_server.create_database()


@pytest.fixture
def admin(pg_url: str) -> Iterator[Engine]:
    engine = create_engine(pg_url, isolation_level="AUTOCOMMIT", pool_size=2)
    yield engine
    engine.dispose()


def _store_backends(admin: Engine, pg_url: str, *, blocked: bool = False) -> list[int]:
    """Backends of the store (by application name) in this test's own database."""
    query = "SELECT pid FROM pg_stat_activity WHERE datname = :db AND application_name = :app"
    if blocked:
        query += " AND wait_event_type = 'Lock'"
    with admin.connect() as conn:
        found = conn.execute(text(query), {"db": make_url(pg_url).database, "app": STORE_APP})
        return list(found.scalars())


def _terminate(admin: Engine, pg_url: str, pids: list[int]) -> None:
    with admin.connect() as conn:
        for pid in pids:
            conn.execute(text("SELECT pg_terminate_backend(:pid)"), {"pid": pid})
    _until(lambda: not set(pids) & set(_store_backends(admin, pg_url)), f"backends {pids} to exit")


@contextmanager
def stats_row_locked(admin: Engine, project_id: str) -> Iterator[None]:
    """Hold the project's history_stats row lock: every history write of the project waits on it
    after it has already deleted pipeline rows and inserted history rows."""
    with admin.connect() as conn:
        conn.exec_driver_sql("BEGIN")
        locked = conn.execute(
            text("SELECT project_id FROM history_stats WHERE project_id = :p FOR UPDATE"), {"p": project_id}
        ).all()
        assert locked, "the project has no stats row to lock"
        try:
            yield
        finally:
            conn.exec_driver_sql("ROLLBACK")


def _in_thread(call: Callable[[], object]) -> tuple[threading.Thread, list[BaseException]]:
    failures: list[BaseException] = []

    def run() -> None:
        try:
            call()
        except BaseException as exc:
            failures.append(exc)

    thread = threading.Thread(target=run)
    thread.start()
    return thread, failures


def test_postgres_backend_killed_mid_archive_changes_nothing(pg_url: str, admin: Engine) -> None:
    with StateStore(pg_url) as store:
        fill(store)
        project = store.list_projects()[0]
        victim = store.update_pipeline(store.list_pipelines()[0].id, state=PipelineState.FAILED)
        before = contents(store)
        with stats_row_locked(admin, project.id):
            thread, failures = _in_thread(lambda: store.archive_pipeline(victim.id))
            _until(lambda: bool(_store_backends(admin, pg_url, blocked=True)), "the archive to block")
            _terminate(admin, pg_url, _store_backends(admin, pg_url, blocked=True))
            thread.join(WAIT)
        assert len(failures) == 1, failures
        assert type(failures[0]) is StorageError, failures
        assert "terminating connection" in str(failures[0])
        assert contents(store) == before, "a half-done archive became visible"
        with pytest.raises(HistoryNotFoundError):
            store.get_history_record(victim.id)
        # The server goes on killing the store's idle connections between calls; the pool replaces them.
        _terminate(admin, pg_url, _store_backends(admin, pg_url))
        archived = store.archive_pipeline(victim.id)
        assert (archived.id, archived.final_state) == (victim.id, PipelineState.FAILED)
        assert store.get_history_stats().total_completed == before[3].total_completed + 1
    record_fault("PostgreSQL backend terminated in the middle of archive_pipeline")


def test_postgres_statement_timeout_mid_delete_project_changes_nothing(pg_url: str, admin: Engine) -> None:
    with StateStore(pg_url, statement_timeout=0.5) as store:
        fill(store)
        project = store.list_projects()[0]
        for pipeline in store.list_pipelines():
            store.update_pipeline(pipeline.id, state=PipelineState.MERGED)
        before = contents(store)
        with stats_row_locked(admin, project.id), pytest.raises(StorageError, match="statement timeout"):
            store.delete_project(project.id)
        assert contents(store) == before, "a half-done delete_project became visible"
        store.delete_project(project.id)
        assert store.list_projects() == []
        assert store.get_history_stats().total_completed == before[3].total_completed + len(before[1])
    record_fault("PostgreSQL statement_timeout in the middle of delete_project")
