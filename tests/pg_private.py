"""A throwaway PostgreSQL server of the test's own, for tests that stop and start a server.

The shared test server is never stopped: a test that needs an outage starts one of these (initdb
into a temporary folder, its own port, listening on 127.0.0.1 only, unix socket in that folder),
stops and starts it as it likes, and removes it at the end. As root, initdb and pg_ctl run as
the `postgres` OS user, since PostgreSQL refuses to run as root.

Import it like tests/workers.py (`from tests import pg_private` under TYPE_CHECKING, else
`import pg_private`).
"""

from __future__ import annotations

import fcntl
import os
import pwd
import random
import shutil
import socket
import subprocess
import tempfile
from pathlib import Path
from typing import IO, Literal

from sqlalchemy.engine import URL

HOST = "127.0.0.1"
SUPERUSER = "postgres"
OS_USER = "postgres"
"""The OS user initdb and pg_ctl run as when the tests run as root."""
PORTS = range(20000, 32000)
"""Where a free port is looked for: below Linux's ephemeral range (32768-60999), so no outgoing
connection takes the port while the server is stopped."""
WAIT = 60
"""Seconds pg_ctl waits for the server to start or stop."""


class PrivatePostgresUnavailable(Exception):
    """This machine cannot run a private PostgreSQL server (the message says why)."""


def find_bin_dir() -> Path | None:
    """The folder holding initdb, pg_ctl and postgres: $PATH, then `pg_config --bindir`, then
    the newest Debian/Ubuntu install under /usr/lib/postgresql; None when there is none."""
    candidates: list[Path] = []
    on_path = shutil.which("initdb")
    if on_path is not None:
        candidates.append(Path(on_path).parent)
    pg_config = shutil.which("pg_config")
    if pg_config is not None:
        found = subprocess.run([pg_config, "--bindir"], capture_output=True, text=True, check=False)
        if found.returncode == 0 and found.stdout.strip():
            candidates.append(Path(found.stdout.strip()))

    def version(folder: Path) -> tuple[int, ...]:
        number = folder.parent.name
        return tuple(int(part) for part in number.split(".")) if number.replace(".", "").isdigit() else ()

    candidates.extend(sorted(Path("/usr/lib/postgresql").glob("*/bin"), key=version, reverse=True))
    for folder in candidates:
        if all((folder / tool).is_file() for tool in ("initdb", "pg_ctl", "postgres")):
            return folder
    return None


class PrivatePostgres:
    """One PostgreSQL server in a temporary folder, run by this test alone.

    `start()` creates the cluster on first use and starts it; `stop()` stops it, keeping its
    data for the next `start()` on the same port; `remove()` stops it and deletes the folder.
    `url` reaches the superuser over TCP with `password` (password authentication is on, so
    the password is really used).
    """

    def __init__(self, password: str, bin_dir: Path | None = None) -> None:
        found = bin_dir or find_bin_dir()
        if found is None:
            raise PrivatePostgresUnavailable(
                "PostgreSQL server binaries (initdb, pg_ctl, postgres) not found on PATH, "
                "via pg_config or under /usr/lib/postgresql/*/bin"
            )
        self._as_user: list[str] = []
        self._owner: pwd.struct_passwd | None = None
        if os.geteuid() == 0:
            runuser = shutil.which("runuser")
            if runuser is None:
                raise PrivatePostgresUnavailable(
                    "running as root, and runuser is missing to drop to postgres"
                )
            try:
                self._owner = pwd.getpwnam(OS_USER)
            except KeyError:
                raise PrivatePostgresUnavailable(
                    f"running as root, and there is no {OS_USER!r} OS user to run PostgreSQL as"
                ) from None
            self._as_user = [runuser, "-u", OS_USER, "--"]
        self.bin_dir = found
        self.password = password
        self.port = 0
        self._port_lock: IO[bytes] | None = None
        self._folder: Path | None = None
        self.running = False

    @property
    def folder(self) -> Path:
        if self._folder is None:
            raise RuntimeError("the private server was never started")
        return self._folder

    @property
    def url(self) -> URL:
        """The superuser's URL on the admin database (password included)."""
        if not self.port:
            raise RuntimeError("the private server was never started")
        return URL.create(
            "postgresql+psycopg",
            username=SUPERUSER,
            password=self.password,
            host=HOST,
            port=self.port,
            database="postgres",
        )

    def start(self) -> None:
        """Start the server (creating it first if needed); returns once it accepts connections."""
        if self.running:
            return
        if self._folder is None:
            self._create()
            # Something else may take the port between the check and the start: try another.
            attempts = 5
            for attempt in range(1, attempts + 1):
                self._release_port()
                self.port, self._port_lock = _claim_port()
                self._configure()
                if self._pg_ctl("start", check=attempt == attempts):
                    break
        else:
            self._pg_ctl("start", check=True)
        self.running = True

    def stop(self) -> None:
        """Stop the server (fast shutdown: sessions are ended); returns once it is down."""
        if self.running:
            self._pg_ctl("stop", check=True)
            self.running = False

    def remove(self) -> None:
        """Stop the server whatever its state and delete its folder."""
        if self._folder is None:
            return
        # Fast first, then immediate should that fail: nothing may be left running.
        started = (self.folder / "data" / "postmaster.pid").exists()
        if started and not self._pg_ctl("stop", check=False):
            self._pg_ctl("stop", check=False, mode="immediate")
        self.running = False
        shutil.rmtree(self.folder, ignore_errors=True)
        self._folder = None
        self._release_port()

    def _release_port(self) -> None:
        if self._port_lock is not None:
            self._port_lock.close()  # closing the file releases the lock
            self._port_lock = None

    def accepting(self) -> bool:
        """True when something accepts TCP connections on the server's port."""
        try:
            with socket.create_connection((HOST, self.port), timeout=2):
                return True
        except OSError:
            return False

    def log(self) -> str:
        """The server's log so far (for failure messages)."""
        try:
            return (self.folder / "server.log").read_text(errors="replace")
        except OSError:
            return ""

    def _create(self) -> None:
        # The system temp folder, not pytest's tmp_path: the postgres user must reach it, and a
        # unix socket path must stay under ~100 bytes.
        folder = Path(tempfile.mkdtemp(prefix="vibecc-pg-"))
        self._folder = folder
        pwfile = folder / "pwfile"
        pwfile.write_text(self.password + "\n")
        self._give(folder)
        self._give(pwfile)
        pwfile.chmod(0o600)
        self._run(
            str(self.bin_dir / "initdb"),
            "--pgdata",
            str(folder / "data"),
            "--username",
            SUPERUSER,
            "--pwfile",
            str(pwfile),
            "--auth-local",
            "trust",
            "--auth-host",
            "scram-sha-256",
            "--encoding",
            "UTF8",
            "--no-sync",
        )
        pwfile.unlink()

    def _configure(self) -> None:
        settings = {
            "listen_addresses": f"'{HOST}'",
            "port": str(self.port),
            "unix_socket_directories": f"'{self.folder}'",
            # A throwaway server: durability buys nothing, speed does.
            "fsync": "off",
            "synchronous_commit": "off",
            "full_page_writes": "off",
            "max_connections": "50",
            "shared_buffers": "16MB",
        }
        conf = self.folder / "data" / "postgresql.auto.conf"
        conf.write_text("".join(f"{name} = {value}\n" for name, value in settings.items()))
        self._give(conf)

    def _give(self, path: Path) -> None:
        """Hand a file or folder made here to the OS user the server runs as."""
        if self._owner is not None:
            os.chown(path, self._owner.pw_uid, self._owner.pw_gid)

    def _pg_ctl(self, action: str, *, check: bool, mode: str = "fast") -> bool:
        command = [str(self.bin_dir / "pg_ctl"), action, "--pgdata", str(self.folder / "data")]
        command += ["--wait", "--timeout", str(WAIT)]
        if action == "start":
            command += ["--log", str(self.folder / "server.log")]
        else:
            command += ["--mode", mode]
        done = subprocess.run(
            [*self._as_user, *command],
            cwd=self.folder,
            capture_output=True,
            text=True,
            check=False,
            timeout=WAIT + 30,
        )
        if done.returncode != 0 and check:
            raise RuntimeError(
                f"pg_ctl {action} of the private server failed ({done.returncode}): "
                f"{done.stdout}{done.stderr}\n--- server log ---\n{self.log()[-3000:]}"
            )
        return done.returncode == 0

    def _run(self, *command: str) -> None:
        done = subprocess.run(
            [*self._as_user, *command],
            cwd=self.folder,
            capture_output=True,
            text=True,
            check=False,
            timeout=300,
        )
        if done.returncode != 0:
            raise RuntimeError(f"{command[0]} failed ({done.returncode}): {done.stdout}{done.stderr}")


def _claim_port() -> tuple[int, IO[bytes] | None]:
    """A port on HOST that nothing listens on right now, and a lock on it that other test runs on
    this machine respect while this server has it, even while the server is stopped (the lock is
    None where the shared lock folder cannot be used)."""
    for _ in range(100):
        port = random.randrange(PORTS.start, PORTS.stop)
        lock = _lock_port(port)
        if lock is False:
            continue  # another run's private server has it
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
            try:
                probe.bind((HOST, port))
            except OSError:
                if lock is not None:
                    lock.close()
                continue
        return port, lock
    raise RuntimeError(f"no free port in {PORTS.start}-{PORTS.stop - 1} on {HOST}")


def _lock_port(port: int) -> IO[bytes] | Literal[False] | None:
    """An exclusive lock on `port` among private servers of this machine; False when another
    holds it, None when the lock folder is not usable here."""
    folder = Path(tempfile.gettempdir()) / "vibecc-pg-ports"
    try:
        if not folder.exists():
            folder.mkdir()
            folder.chmod(0o1777)  # shared by every user's runs, like /tmp
        lock = (folder / f"{port}.lock").open("ab")
    except OSError:
        return None
    try:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        lock.close()
        return False
    return lock
