"""A database password never leaks: not in the exception (its chain and traceback), not in any
log record at DEBUG, not in the store's url or repr, not in the CLI's output with or without
--debug, and not in a file name.

First for well-formed URLs whose server is unreachable, or refuses the database or the user, and
for a store that works; the password has ':', '@', '/' and '%' in it, so its URL-encoded form is
checked too. Then for malformed URLs: every one below holds a password made of pieces that all
start with SECRET, so a piece of it shown anywhere (the part after an unencoded '@' taken as the
host, say) is found too.
"""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import traceback
import urllib.parse
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
from sqlalchemy.engine import URL, make_url

from vibecc.state_store import (
    ProjectNotFoundError,
    StateStore,
    StateStoreError,
    StorageError,
    ValidationError,
)

if TYPE_CHECKING:
    from tests import helpers
    from tests.conftest import PostgresServer
else:
    import helpers


def _texts(exc: BaseException) -> Iterator[str]:
    """The formatted traceback, and str, repr and args of every link of the exception's chain."""
    yield "".join(traceback.format_exception(exc))
    todo: list[BaseException | None] = [exc]
    seen: set[int] = set()
    while todo:
        current = todo.pop()
        if current is None or id(current) in seen:
            continue
        seen.add(id(current))
        yield from (str(current), repr(current), *(str(arg) for arg in current.args))
        yield from (repr(arg) for arg in current.args)
        todo += [current.__cause__, current.__context__]


@pytest.fixture
def all_logs(caplog: pytest.LogCaptureFixture) -> pytest.LogCaptureFixture:
    """Every logger at DEBUG, SQLAlchemy's engine and pool loggers and the driver's included."""
    caplog.set_level(logging.DEBUG)
    for name in ("sqlalchemy", "sqlalchemy.engine", "sqlalchemy.pool", "psycopg", "alembic"):
        caplog.set_level(logging.DEBUG, logger=name)
    return caplog


def _logged(caplog: pytest.LogCaptureFixture) -> Iterator[str]:
    """The captured log, each record's message and arguments, and any exception it carries."""
    yield caplog.text
    for record in caplog.records:
        yield record.getMessage()
        yield repr(record.args)
        if record.exc_info and record.exc_info[1] is not None:
            yield from _texts(record.exc_info[1])


# -- well-formed URLs ---------------------------------------------------------------------------

PASSWORD = "Zq9:p@ss/w%rd-vibecc"
ENCODED = urllib.parse.quote(PASSWORD, safe="")
PASSWORD_PIECES = (PASSWORD, ENCODED, "Zq9")


def _assert_password_kept(texts: Iterator[str] | list[str], where: str) -> None:
    for text in texts:
        for piece in PASSWORD_PIECES:
            assert piece not in text, f"the password shows in {where}: {text[:300]!r}"


def _failing_url(request: pytest.FixtureRequest, case: str) -> URL:
    """A URL holding PASSWORD on which opening fails; the last two need the test server."""
    if case == "unreachable-port":
        return URL.create(
            "postgresql+psycopg",
            username="vibecc",
            password=PASSWORD,
            host="127.0.0.1",
            port=1,
            database="vibecc_prod",
        )
    server: URL = request.getfixturevalue("pg_server").admin_url
    if case == "unknown-user":
        return server.set(username="no_such_role", password=PASSWORD)
    return server.set(password=PASSWORD, database=f"no_such_db_{uuid.uuid4().hex[:8]}")


FAILING = [
    "unreachable-port",
    pytest.param("bad-database-name", marks=pytest.mark.pg_only),
    pytest.param("unknown-user", marks=pytest.mark.pg_only),
]


@pytest.mark.parametrize("case", FAILING)
def test_password_never_appears_when_opening_fails(
    request: pytest.FixtureRequest, case: str, all_logs: pytest.LogCaptureFixture
) -> None:
    """The error names host, port and database, chains the driver's error, and shows the
    password nowhere."""
    url = _failing_url(request, case)
    rendered = url.render_as_string(hide_password=False)
    assert ENCODED in rendered
    with pytest.raises(StorageError, match="PostgreSQL database") as raised:
        StateStore(rendered, connect_timeout=2)
    assert helpers.where(url) in str(raised.value)
    assert raised.value.__cause__ is not None or raised.value.__context__ is not None, "not chained"
    _assert_password_kept(_texts(raised.value), "the exception")
    _assert_password_kept(_logged(all_logs), "the logs")
    assert all_logs.records, "nothing was logged: the log check saw nothing"


def test_password_never_appears_while_a_store_works(
    pg_server: PostgresServer, all_logs: pytest.LogCaptureFixture
) -> None:
    location = pg_server.create_database()
    # The test server trusts local connections, so any password opens it.
    url = make_url(location).set(password=PASSWORD).render_as_string(hide_password=False)
    assert ENCODED in url
    with StateStore(url) as store:
        _assert_password_kept([store.url, repr(store), str(store)], "the store's url/repr")
        assert "***" in store.url
        assert make_url(store.url).database == make_url(location).database
        project = store.create_project("p", "acme/p")
        assert store.get_project(project.id) == project
        pipeline = store.create_pipeline(project.id, 1, "t", "main")
        store.update_pipeline(pipeline.id, state="merged")
        store.archive_pipeline(pipeline.id)
        with pytest.raises(ProjectNotFoundError) as raised:
            store.get_project(str(uuid.uuid4()))
        _assert_password_kept(_texts(raised.value), "an exception")
    with pytest.raises(StorageError, match="closed") as closed:
        store.list_projects()
    _assert_password_kept(_texts(closed.value), "the closed-store error")
    _assert_password_kept(_logged(all_logs), "the logs")
    assert any("sqlalchemy" in r.name for r in all_logs.records), "SQLAlchemy logged nothing at DEBUG"


@pytest.mark.parametrize("case", FAILING)
@pytest.mark.parametrize("debug", [False, True], ids=["plain", "debug"])
def test_password_never_appears_in_cli_output(request: pytest.FixtureRequest, case: str, debug: bool) -> None:
    url = _failing_url(request, case).render_as_string(hide_password=False)
    args = [
        sys.executable,
        "-m",
        "vibecc.state_store",
        *(["--debug"] if debug else []),
        "--db",
        url,
        "projects",
        "list",
    ]
    done = subprocess.run(args, capture_output=True, text=True, timeout=120)
    assert done.returncode == 1, done.stderr[-2000:]
    assert "PostgreSQL database" in done.stderr
    _assert_password_kept([done.stdout, done.stderr], "the CLI output")
    from_env = subprocess.run(
        [*args[:3], "projects", "list"],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "VIBECC_DATABASE_URL": url},
    )
    assert from_env.returncode == 1
    _assert_password_kept([from_env.stdout, from_env.stderr], "the CLI output (URL from the environment)")


# -- malformed URLs -----------------------------------------------------------------------------

SECRET = "Zq9Secr3t"

MALFORMED: dict[str, Any] = {
    "unencoded-at": f"postgresql://vibecc:{SECRET}a@{SECRET}b@127.0.0.1:5432/vibecc",
    "at-and-slash": f"postgresql://vibecc:{SECRET}a@{SECRET}b/{SECRET}c@127.0.0.1/vibecc",
    "question-mark-then-at": f"postgresql://vibecc:{SECRET}a?{SECRET}b@{SECRET}c@127.0.0.1/vibecc",
    "user-and-password-at": f"postgresql://me@corp:{SECRET}a@127.0.0.1/vibecc",
    "port-not-a-number": f"postgresql://vibecc:{SECRET}a@127.0.0.1:{SECRET}b/vibecc",
    "broken-ipv6": f"postgresql://vibecc:{SECRET}a@[::1/vibecc",
    "libpq-dsn": f"host=127.0.0.1 dbname=vibecc user=vibecc password={SECRET}a",
    "libpq-dsn-password-first": f"password={SECRET}a host=127.0.0.1",
    "query-password-unreachable": f"postgresql://vibecc@127.0.0.1:1/vibecc?password={SECRET}a",
    "postgres-scheme-unreachable": f"postgres://vibecc:{SECRET}a@127.0.0.1:1/vibecc",
    "control-characters": f"postgresql://vibecc:{SECRET}\x1b[31m@127.0.0.1:1/vibecc",
    "one-slash": f"postgresql:/vibecc:{SECRET}a@127.0.0.1/vibecc",
    "postgres-one-slash": f"postgres:/vibecc:{SECRET}a@127.0.0.1/vibecc",
    "no-slash-with-driver": f"postgresql+psycopg:vibecc:{SECRET}a@127.0.0.1/vibecc",
    "libpq-keyword-later": f"sslpassword={SECRET}a",
    "libpq-keyword-upper-case": f"HOST=127.0.0.1 PASSWORD={SECRET}a",
    "credentials-in-a-path": f"srv/vibecc:{SECRET}a@db.example/vibecc.db",
    "query-port-not-a-number": f"postgresql://vibecc:{SECRET}a@127.0.0.1/vibecc?port={SECRET}b",
}
"""Each is refused as bad input or fails to connect; none may show a piece of its password."""
LIBRARY_ONLY: dict[str, Any] = {
    "bytes": f"postgresql://vibecc:{SECRET}a@127.0.0.1/vibecc".encode(),
    "bytes-dsn": f"host=127.0.0.1 password={SECRET}a".encode(),
}
"""Values only Python callers can pass (the CLI always has text)."""


def _assert_secret_kept(texts: Iterator[str], where: str) -> None:
    for text in texts:
        assert SECRET not in text, f"a piece of the password shows in {where}: {text[:300]!r}"


@pytest.mark.parametrize("case", sorted(MALFORMED) + sorted(LIBRARY_ONLY))
def test_opening_a_malformed_url_never_shows_its_password(
    case: str, all_logs: pytest.LogCaptureFixture, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    url = {**MALFORMED, **LIBRARY_ONLY}[case]

    with pytest.raises(StateStoreError) as raised:
        StateStore(url, connect_timeout=2)

    assert type(raised.value) in (ValidationError, StorageError)
    _assert_secret_kept(_texts(raised.value), "the exception")
    _assert_secret_kept(_logged(all_logs), "the logs")
    assert list(tmp_path.iterdir()) == [], "a file was created from the URL"


def test_a_libpq_connection_string_is_refused_with_a_hint_and_creates_no_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ValidationError, match=r"libpq key=value connection string.*postgresql://"):
        StateStore(MALFORMED["libpq-dsn"])
    assert list(tmp_path.iterdir()) == []


def test_an_unencoded_at_sign_is_refused_with_the_encoding_to_use() -> None:
    with pytest.raises(ValidationError, match="percent-encode '@' as %40"):
        StateStore(MALFORMED["unencoded-at"])


@pytest.mark.parametrize("case", sorted(MALFORMED))
@pytest.mark.parametrize("debug", [False, True], ids=["plain", "debug"])
@pytest.mark.parametrize("given", ["--db", "environment"])
def test_the_cli_never_shows_a_malformed_urls_password(
    case: str, debug: bool, given: str, tmp_path: Path
) -> None:
    url = MALFORMED[case]
    args = [sys.executable, "-m", "vibecc.state_store", *(["--debug"] if debug else [])]
    env = {key: value for key, value in os.environ.items() if key != "VIBECC_DATABASE_URL"}
    if given == "--db":
        args += ["--db", url]
    else:
        env["VIBECC_DATABASE_URL"] = url

    done = subprocess.run(
        [*args, "projects", "list"], capture_output=True, text=True, timeout=120, env=env, cwd=tmp_path
    )

    assert done.returncode in (1, 2), done.stderr[-2000:]
    assert done.stderr.strip(), "no error was reported"
    _assert_secret_kept(iter([done.stdout, done.stderr]), "the CLI output")
    assert list(tmp_path.iterdir()) == [], "a file was created from the URL"


# -- without the PostgreSQL driver ----------------------------------------------------------------

_WITHOUT_PSYCOPG = """
import sys
sys.modules["psycopg"] = None  # as if the postgres extra were not installed
from vibecc.state_store.cli import main
sys.argv = ["vibecc-state", "--db", sys.argv[1], "projects", "list"]
main()
"""


def test_a_postgresql_url_without_the_driver_says_which_extra_to_install(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setitem(sys.modules, "psycopg", None)

    with pytest.raises(StorageError, match=r"pip install 'vibecc-state-store\[postgres\]'"):
        StateStore(f"postgresql://vibecc:{SECRET}a@127.0.0.1/vibecc")


def test_the_cli_without_the_driver_says_which_extra_to_install() -> None:
    url = f"postgresql://vibecc:{SECRET}a@127.0.0.1/vibecc"
    done = subprocess.run(
        [sys.executable, "-c", _WITHOUT_PSYCOPG, url], capture_output=True, text=True, timeout=120
    )

    assert done.returncode == 1, done.stderr
    assert "vibecc-state-store[postgres]" in done.stderr
    assert "unexpected" not in done.stderr
    _assert_secret_kept(iter([done.stdout, done.stderr]), "the CLI output")
