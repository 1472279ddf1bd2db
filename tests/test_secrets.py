"""Malformed database URLs never leak their password: not in the exception (its chain and
traceback), not in any log record at DEBUG, not in the CLI's output with or without --debug,
and not in a file name.

Every URL below holds a password made of pieces that all start with SECRET, so a piece of it
shown anywhere (the part after an unencoded '@' taken as the host, say) is found too.
"""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import traceback
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from vibecc.state_store import StateStore, StateStoreError, StorageError, ValidationError

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


def _texts(exc: BaseException) -> Iterator[str]:
    yield "".join(traceback.format_exception(exc))
    todo: list[BaseException | None] = [exc]
    seen: set[int] = set()
    while todo:
        current = todo.pop()
        if current is None or id(current) in seen:
            continue
        seen.add(id(current))
        yield from (str(current), repr(current), *(repr(arg) for arg in current.args))
        todo += [current.__cause__, current.__context__]


def _logged(caplog: pytest.LogCaptureFixture) -> Iterator[str]:
    yield caplog.text
    for record in caplog.records:
        yield record.getMessage()
        yield repr(record.args)


def _assert_secret_kept(texts: Iterator[str], where: str) -> None:
    for text in texts:
        assert SECRET not in text, f"a piece of the password shows in {where}: {text[:300]!r}"


@pytest.mark.parametrize("case", sorted(MALFORMED) + sorted(LIBRARY_ONLY))
def test_opening_a_malformed_url_never_shows_its_password(
    case: str, caplog: pytest.LogCaptureFixture, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    caplog.set_level(logging.DEBUG)
    for name in ("sqlalchemy", "sqlalchemy.engine", "sqlalchemy.pool", "psycopg", "alembic"):
        caplog.set_level(logging.DEBUG, logger=name)
    monkeypatch.chdir(tmp_path)
    url = {**MALFORMED, **LIBRARY_ONLY}[case]

    with pytest.raises(StateStoreError) as raised:
        StateStore(url, connect_timeout=2)

    assert type(raised.value) in (ValidationError, StorageError)
    _assert_secret_kept(_texts(raised.value), "the exception")
    _assert_secret_kept(_logged(caplog), "the logs")
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
