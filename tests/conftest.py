"""Engine and store fixtures: every behaviour test takes `store` and runs on SQLite and PostgreSQL.

PostgreSQL comes from VIBECC_TEST_POSTGRES_URL (default: the local server). Each test run
creates its own databases and drops them at the end. With CI=true an unreachable server fails
the run; elsewhere the PostgreSQL tests are left out of it, counted on one line that says why.

A test that runs on PostgreSQL only says so in one of two ways, and in no other:

- it takes the `pg_server` fixture, directly or through a fixture of its own (most do, e.g. to
  make a database with pg_server.create_database());
- it is marked `@pytest.mark.pg_only` when it cannot take the fixture: it reaches the server
  through request.getfixturevalue("pg_server") in some of its parameters only (mark those
  parameters), or it brings a PostgreSQL server of its own.

needs_postgres() finds both, so without a server they are left out before they run. No test
checks for the server itself or skips by hand; pg_server's own skip is only a fallback for a
test that forgot to say so.
"""

from __future__ import annotations

import os
import re
import shutil
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from hypothesis import HealthCheck, settings
from sqlalchemy import create_engine, text
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import DBAPIError

from vibecc.state_store import Project, StateStore

if TYPE_CHECKING:
    from tests import helpers
else:
    import helpers

DEFAULT_PG_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
ENGINES = ("sqlite", "postgresql")
DATABASE_TIMEZONE = "Asia/Kathmandu"
"""Default time zone of the test databases: positive, and not a whole number of hours (+05:45)."""
CLIENT_TIMEZONE = "America/St_Johns"
"""PGTZ of the test run unless already set: negative, and not a whole number of hours (-03:30)."""
DATABASE_ICU_LOCALE = "en-US"
_ICU_DATABASE = (
    f"TEMPLATE template0 ENCODING 'UTF8' LOCALE_PROVIDER icu ICU_LOCALE '{DATABASE_ICU_LOCALE}' "
    "LC_COLLATE 'C.UTF-8' LC_CTYPE 'C.UTF-8'"
)

settings.register_profile("default", max_examples=100, deadline=None)
settings.register_profile(
    "long", max_examples=2000, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "default"))


class PostgresServer:
    """The test server: makes and drops throwaway databases.

    Each database gets DATABASE_TIMEZONE as its default time zone and, where the server has
    ICU, the ICU locale DATABASE_ICU_LOCALE as its default collation, so that neither a zone nor
    a locale other than the usual UTC and C can go unnoticed.
    """

    def __init__(self, admin_url: URL) -> None:
        self.admin_url = admin_url
        self._engine = create_engine(admin_url, isolation_level="AUTOCOMMIT", pool_size=1)
        self.created: list[str] = []
        self.icu = False
        """Whether the databases get the ICU locale (see probe())."""

    def probe(self) -> None:
        """Connect once (raising if the server cannot be reached) and see whether it has ICU
        locale providers (PostgreSQL 15 and later, built with ICU)."""
        with self._engine.connect() as conn:
            self.icu = bool(
                conn.execute(
                    text(
                        "SELECT current_setting('server_version_num')::int >= 150000 "
                        "AND EXISTS (SELECT 1 FROM pg_collation WHERE collprovider = 'i')"
                    )
                ).scalar_one()
            )

    def create_database(self, *, timezone: str = DATABASE_TIMEZONE) -> str:
        """A new, empty database whose sessions default to `timezone`; its URL, password included."""
        name = f"vibecc_test_{uuid.uuid4().hex[:12]}"
        with self._engine.connect() as conn:
            if self.icu:
                try:
                    conn.execute(text(f'CREATE DATABASE "{name}" {_ICU_DATABASE}'))
                except DBAPIError:
                    self.icu = False  # the server's C library has no C.UTF-8 locale
            if not self.icu:
                conn.execute(text(f'CREATE DATABASE "{name}"'))
            self.created.append(name)
            # A utility statement takes no bound parameters: the zone goes in as a checked literal.
            if not re.fullmatch(r"[A-Za-z0-9_/+-]+", timezone):
                raise ValueError(f"not a time zone name: {timezone!r}")
            conn.execute(text(f"ALTER DATABASE \"{name}\" SET timezone TO '{timezone}'"))
        return self.admin_url.set(database=name).render_as_string(hide_password=False)

    def describe(self) -> str:
        """The server (no password) and what its test databases are like, for the report header."""
        where = self.admin_url.render_as_string(hide_password=True)
        locale = f"ICU locale {DATABASE_ICU_LOCALE}" if self.icu else "the server's default locale"
        return (
            f"{where}; test databases in time zone {DATABASE_TIMEZONE} with {locale}; "
            f"PGTZ={os.environ.get('PGTZ', '')}"
        )

    def drop_all(self) -> None:
        with self._engine.connect() as conn:
            for name in self.created:
                conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        self._engine.dispose()


def _reach_postgres() -> tuple[PostgresServer | None, str]:
    raw = os.environ.get("VIBECC_TEST_POSTGRES_URL", DEFAULT_PG_URL)
    url = make_url(raw)
    try:
        server = PostgresServer(url)
        server.probe()
    except Exception as exc:  # any failure to reach the server means: no PostgreSQL here
        reason = str(getattr(exc, "orig", exc)).strip().splitlines()[0]
        return None, f"PostgreSQL not reachable at {url.render_as_string(hide_password=True)}: {reason}"
    return server, ""


_PG_SERVER: PostgresServer | None = None
_PG_REASON = ""
_PG_LEFT_OUT = 0
"""How many collected tests were taken out of the run because they need the absent server."""


def pytest_configure(config: pytest.Config) -> None:
    global _PG_SERVER, _PG_REASON
    config.addinivalue_line(
        "markers",
        "pg_only: needs the PostgreSQL test server without taking pg_server as an argument "
        "(so it is left out with the others when there is no server)",
    )
    # Every PostgreSQL session of the run (subprocesses too) asks for this zone, unless the
    # library sets its own: results must not depend on it.
    os.environ.setdefault("PGTZ", CLIENT_TIMEZONE)
    _PG_SERVER, _PG_REASON = _reach_postgres()
    if _PG_SERVER is None and os.environ.get("CI", "").lower() == "true":
        raise pytest.UsageError(f"CI=true and {_PG_REASON}")


def pytest_unconfigure(config: pytest.Config) -> None:
    if _PG_SERVER is not None:
        _PG_SERVER.drop_all()


def pytest_report_header(config: pytest.Config) -> str | None:
    if _PG_SERVER is None:
        return None  # the line of pytest_terminal_summary says why, with the count
    return f"postgresql: {_PG_SERVER.describe()}"


def needs_postgres(item: pytest.Item) -> bool:
    """True for a test that needs the PostgreSQL test server: the "postgresql" case of the
    engine parametrization (`engine_name`, `store`, `store_url`, `fresh_db`), a test whose
    fixtures take `pg_server`, and a test marked pg_only."""
    callspec = getattr(item, "callspec", None)
    if callspec is not None and callspec.params.get("engine_name") == "postgresql":
        return True
    return "pg_server" in getattr(item, "fixturenames", ()) or item.get_closest_marker("pg_only") is not None


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Without a server, the PostgreSQL tests are not run at all: one line says so, not one
    SKIPPED line per test."""
    global _PG_LEFT_OUT
    if _PG_SERVER is not None:
        return
    left_out = [item for item in items if needs_postgres(item)]
    if left_out:
        config.hook.pytest_deselected(items=left_out)
        items[:] = [item for item in items if not needs_postgres(item)]
    _PG_LEFT_OUT = len(left_out)


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if _PG_SERVER is None and _PG_LEFT_OUT:
        terminalreporter.write_line(f"postgresql: {_PG_LEFT_OUT} tests skipped (not run): {_PG_REASON}")


@pytest.fixture(scope="session")
def pg_server() -> PostgresServer:
    """The PostgreSQL test server; skips the test when there is none (tests found by
    needs_postgres() are left out before they get here)."""
    if _PG_SERVER is None:
        pytest.skip(f"{_PG_REASON} (mark this test pg_only to leave it out with the others)")
    return _PG_SERVER


@pytest.fixture(params=ENGINES)
def engine_name(request: pytest.FixtureRequest) -> str:
    if request.param == "postgresql":
        request.getfixturevalue("pg_server")
    return str(request.param)


@pytest.fixture
def fresh_db(engine_name: str, tmp_path: Path, request: pytest.FixtureRequest) -> Callable[[], str]:
    """Make a new, empty database of the test's engine and return its location (path or URL)."""
    counter = iter(range(1_000_000))

    def make() -> str:
        if engine_name == "sqlite":
            return str(tmp_path / f"db{next(counter)}" / "vibecc.db")
        server: PostgresServer = request.getfixturevalue("pg_server")
        return server.create_database()

    return make


@pytest.fixture(scope="session")
def _sqlite_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A migrated SQLite file, copied for each test instead of migrating each time."""
    path = tmp_path_factory.mktemp("template") / "vibecc.db"
    StateStore(path).close()
    return path


@pytest.fixture(scope="session")
def _pg_store_url(pg_server: PostgresServer) -> str:
    url = pg_server.create_database()
    StateStore(url).close()
    return url


@pytest.fixture
def store_url(engine_name: str, tmp_path: Path, request: pytest.FixtureRequest) -> str:
    """Location of an empty, migrated database for this test (subprocesses may open it too)."""
    if engine_name == "sqlite":
        path = tmp_path / "store" / "vibecc.db"
        path.parent.mkdir()
        shutil.copy(request.getfixturevalue("_sqlite_template"), path)
        path.chmod(0o600)
        return str(path)
    url: str = request.getfixturevalue("_pg_store_url")
    engine = create_engine(url, pool_size=1)
    helpers.truncate_tables(engine)  # the tests of a run share this database
    engine.dispose()
    return url


@pytest.fixture
def store(store_url: str) -> Iterator[StateStore]:
    """An empty store on the test's engine."""
    with StateStore(store_url) as opened:
        yield opened


@pytest.fixture
def project(store: StateStore) -> Project:
    """A project "Acme" (repo acme/widgets) in the test's store."""
    return store.create_project("Acme", "acme/widgets")
