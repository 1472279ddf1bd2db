"""Database locations: a path, ":memory:" or a URL, parsed into a SQLAlchemy URL, masked for
printing and described for messages; a malformed one is refused without ever being echoed."""

from __future__ import annotations

import os
import re
from pathlib import Path

from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import ArgumentError

from ..errors import ValidationError

MEMORY = ":memory:"


def to_url(location: str | os.PathLike[str] | URL) -> URL:
    """A path, ":memory:" or an SQLAlchemy URL, as a URL (relative paths made absolute).

    Messages never quote the location: a malformed URL may hold a password anywhere.
    """
    if isinstance(location, URL):
        return _supported(location)
    if not isinstance(location, str | os.PathLike):
        raise ValidationError(f"db_path must be a path or URL, got {type(location).__name__}")
    raw = os.fspath(location)
    if not isinstance(raw, str):
        raise ValidationError(f"db_path must be a path or URL as text, got {type(raw).__name__}")
    if not raw.strip():
        raise ValidationError("db_path must be a non-empty path or URL")
    if "\x00" in raw:
        raise ValidationError("db_path must not contain a NUL character")
    try:
        raw.encode("utf-8")
    except UnicodeEncodeError:  # a file name that is not UTF-8: SQLite cannot be given it
        raise ValidationError("db_path is not valid UTF-8 text") from None
    if raw == MEMORY:
        return make_url("sqlite://")
    if "://" not in raw:
        # Taken as a file name, any of these would create a file named after the password.
        if _LIBPQ_KEYWORD.search(raw):
            raise ValidationError(
                "db_path looks like a libpq key=value connection string; give a URL instead: "
                "postgresql://USER:PASSWORD@HOST:PORT/DBNAME"
            )
        if _URL_SCHEME.match(raw) or _has_credentials(raw):
            raise ValidationError(
                "db_path looks like a database URL but is not one (a URL reads "
                "postgresql://USER:PASSWORD@HOST:PORT/DBNAME or sqlite:///PATH); give a file path "
                "or a whole URL"
            )
        try:
            path = Path(raw).expanduser()
        except RuntimeError:  # ~name of a user this machine does not know
            raise ValidationError("db_path starts with ~ naming a user this machine does not know") from None
        return URL.create("sqlite+pysqlite", database=str(path.absolute()))
    if raw.partition("://")[2].partition("?")[0].count("@") > 1:
        raise ValidationError(_AMBIGUOUS_URL)
    url = _parse(raw)
    if url is None:
        raise ValidationError(f"db_path is not a valid database URL: {mask(raw)}")
    if "@" in (url.host or "") or "@" in (url.database or ""):
        raise ValidationError(_AMBIGUOUS_URL)
    return _supported(url)


# Keywords of a libpq connection string ("host=db1 dbname=vibecc password=..."), which no
# file name holds after a space or at its start.
_LIBPQ_KEYWORD = re.compile(
    r"(?:^|\s)(?:host|hostaddr|port|dbname|user|password|passfile|sslmode|sslpassword|sslcert|"
    r"sslkey|sslrootcert|sslcrl|service|connect_timeout|options|application_name|"
    r"target_session_attrs|channel_binding|gssencmode|krbsrvname|requirepeer|client_encoding)\s*=",
    re.IGNORECASE,
)
# A URL missing its "//" (postgresql:/user:pw@host/db, postgresql+psycopg:user:pw@host/db).
_URL_SCHEME = re.compile(r"\s*(?:postgres|postgresql|sqlite)(?:\+\w+)?:", re.IGNORECASE)


def _has_credentials(raw: str) -> bool:
    """user:password@ in something that is not a URL: a ':' before an '@' (checked without a
    regex, which would take quadratic time on a long string)."""
    at = raw.find("@")
    return at > 0 and ":" in raw[:at]


_AMBIGUOUS_URL = (
    "db_path is a database URL whose user name or password holds an unencoded '@', so its host "
    "cannot be told apart; percent-encode '@' as %40 (and '/' as %2F, '?' as %3F, '#' as %23)"
)


def _parse(raw: str) -> URL | None:
    """make_url, or None when it fails. Its errors may quote the password (an unparseable
    port, say), so they are not kept even as the context of the error raised instead."""
    try:
        # make_url raises ValueError too, e.g. for a port that is not a number.
        return make_url(raw)
    except (ArgumentError, ValueError):
        return None


def _supported(url: URL) -> URL:
    backend = url.get_backend_name()
    if backend == "postgres":  # the spelling many hosting services hand out
        backend, url = "postgresql", url.set(drivername="postgresql+psycopg")
    if backend not in ("sqlite", "postgresql"):
        raise ValidationError(f"unsupported database {backend!r}; use sqlite or postgresql")
    if backend == "postgresql" and url.get_driver_name() != "psycopg":
        url = url.set(drivername="postgresql+psycopg")
    if backend == "sqlite" and url.get_driver_name() != "pysqlite":
        url = url.set(drivername="sqlite+pysqlite")
    return url


def mask(url: str | URL) -> str:
    """The URL with its password (also one given as a query parameter) replaced by ***, safe
    to print."""
    parsed = _parse(url) if isinstance(url, str) else url
    if parsed is None:
        return "<unparseable database URL>"
    hidden = {key for key in parsed.query if "pass" in key.lower()}
    if hidden:
        parsed = parsed.difference_update_query(hidden)
    shown = parsed.render_as_string(hide_password=True)
    return shown + "".join(f"{'&' if '?' in shown else '?'}{key}=***" for key in sorted(hidden))


def same_database(a: URL, b: URL) -> bool:
    """True when both URLs reach one database, however its location was spelled."""
    if a.get_backend_name() != b.get_backend_name():
        return False
    if a.get_backend_name() == "sqlite":
        if a.database in (None, "", MEMORY) or b.database in (None, "", MEMORY):
            return False  # every in-memory store is a database of its own
        try:
            return os.path.samefile(str(a.database), str(b.database))
        except OSError:
            return False
    return (a.host, a.port or 5432, a.database) == (b.host, b.port or 5432, b.database)


def describe(url: URL) -> str:
    """Host and database of a URL for messages; never the password."""
    if url.get_backend_name() == "sqlite":
        return f"SQLite database {url.database or MEMORY}"
    host = url.host or "localhost"
    port = f":{url.port}" if url.port else ""
    return f"PostgreSQL database {url.database!r} on {host}{port} as user {url.username!r}"
