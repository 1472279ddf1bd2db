"""Schema revisions over Alembic, with the Alembic config built in code (works from a wheel).

Every function takes an Engine; the SQLite runner turns foreign keys off and holds the write
lock for the whole upgrade, the PostgreSQL runner holds an advisory lock, so two processes
opening one new database at once never both migrate.
"""

from __future__ import annotations

import functools
import io
import warnings
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from sqlalchemy import Connection, Engine, inspect, text

from .db.dialects import migration_lock
from .errors import SchemaVersionError

if TYPE_CHECKING:
    HEAD: str
    """The newest revision, read from the migration scripts on first use (see head())."""
LEGACY_BASELINE = "0001"
LEGACY_TABLES = frozenset({"projects", "pipelines", "pipeline_history"})
UPGRADE_HINT = "run `vibecc-state db upgrade` or open the store with auto_migrate=True"
# How long a process opening a new SQLite file waits for another one migrating it.
_SQLITE_LOCK_WAIT = 60.0


@dataclass(frozen=True, slots=True)
class Revision:
    """One migration script."""

    revision: str
    down_revision: str | None
    message: str


def config(connection: Connection | None = None, url: str | None = None) -> Any:
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", "vibecc.state_store:migrations")
    if url is not None:
        cfg.set_main_option("sqlalchemy.url", url)
    cfg.attributes["connection"] = connection
    return cfg


def script() -> Any:
    from alembic.script import ScriptDirectory

    return ScriptDirectory.from_config(config())


@functools.cache
def head() -> str:
    """The newest revision, as Alembic's script directory has it.

    Raises:
        alembic.util.CommandError: the scripts have several heads.
    """
    found = script().get_current_head()
    if found is None:
        raise RuntimeError("the migration scripts have no revision")
    return str(found)


def _module_attribute(name: str) -> str:
    """`migrate.HEAD`, computed on first use: importing the store does not load Alembic."""
    if name == "HEAD":
        return head()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


if not TYPE_CHECKING:
    __getattr__ = _module_attribute


def revisions() -> list[Revision]:
    """All revisions, oldest first."""
    scripts = list(script().walk_revisions())
    return [Revision(s.revision, s.down_revision, (s.doc or "").strip()) for s in reversed(scripts)]


def current(engine: Engine) -> str | None:
    """The revision stored in the database, or None when it has none."""
    with engine.connect() as conn:
        return _stored_revision(conn)


def ensure_schema(engine: Engine, *, auto_migrate: bool) -> None:
    """Bring the database to HEAD, or refuse it, as StateStore does on open.

    Raises:
        SchemaVersionError: the schema is behind and auto_migrate is False, ahead of this
            code, or not recognisable.
    """
    if current(engine) == head():
        return
    with migration_lock(engine, _SQLITE_LOCK_WAIT) as conn:
        _upgrade_locked(conn, "head", auto_migrate=auto_migrate)


def upgrade(engine: Engine, revision: str = "head") -> None:
    with migration_lock(engine, _SQLITE_LOCK_WAIT) as conn:
        _upgrade_locked(conn, revision, auto_migrate=True)


def downgrade(engine: Engine, revision: str) -> None:
    from alembic import command

    with migration_lock(engine, _SQLITE_LOCK_WAIT) as conn:
        _refuse_unknown(conn)
        command.downgrade(config(conn), revision)


def check(engine: Engine) -> list[str]:
    """Differences between the database and the models; empty when it is at head and matches."""
    from alembic.autogenerate import compare_metadata
    from alembic.runtime.migration import MigrationContext

    from .models import metadata

    with engine.connect() as conn:
        stored = _stored_revision(conn)
        newest = head()
        problems = [] if stored == newest else [f"schema is at {stored or 'no revision'}, head is {newest}"]
        context = MigrationContext.configure(conn, opts={"compare_type": True})
        with warnings.catch_warnings():
            # Alembic cannot compare expression indexes; they are checked by name below.
            warnings.filterwarnings("ignore", message=".*expression-based index")
            problems.extend(repr(diff) for diff in compare_metadata(context, metadata))
        present = _index_names(conn)
        problems.extend(
            f"missing index {index.name} on {table.name}"
            for table in metadata.sorted_tables
            for index in table.indexes
            if index.name not in present
        )
    return problems


def _index_names(conn: Connection) -> set[str]:
    """Names of every index in the database, expression indexes included (which SQLAlchemy
    cannot reflect on SQLite)."""
    if conn.dialect.name == "sqlite":
        found = conn.execute(text("SELECT name FROM sqlite_master WHERE type = 'index'"))
    else:
        found = conn.execute(text("SELECT indexname FROM pg_indexes WHERE schemaname = current_schema()"))
    return set(found.scalars())


def upgrade_sql(dialect_name: str, revision: str = "head", start: str | None = None) -> str:
    """The upgrade as SQL text, without touching any database."""
    from alembic import command

    buffer = io.StringIO()
    cfg = config(url=f"{dialect_name}://")
    cfg.output_buffer = buffer
    command.upgrade(cfg, f"{start}:{revision}" if start else revision, sql=True)
    return buffer.getvalue()


def _upgrade_locked(conn: Connection, revision: str, *, auto_migrate: bool) -> None:
    from alembic import command

    stored = _stored_revision(conn)
    if stored == head() and revision == "head":
        return
    if stored is None:
        tables = set(inspect(conn).get_table_names())
        if tables >= LEGACY_TABLES:
            if not auto_migrate:
                raise SchemaVersionError(
                    f"database was made by the earlier state store (no revision); {UPGRADE_HINT}"
                )
            command.stamp(config(conn), LEGACY_BASELINE)
        elif tables & (LEGACY_TABLES | {"history_stats"}):
            raise SchemaVersionError(
                f"database has state store tables {sorted(tables & LEGACY_TABLES)} but no revision "
                "and not the earlier store's full schema; refusing to touch it"
            )
        elif not auto_migrate:
            raise SchemaVersionError(f"database has no state store schema; {UPGRADE_HINT}")
    else:
        _refuse_unknown(conn, stored)
        if not auto_migrate:
            raise SchemaVersionError(
                f"database schema is at revision {stored}, this code needs {head()}; {UPGRADE_HINT}"
            )
    command.upgrade(config(conn), revision)


def _refuse_unknown(conn: Connection, stored: str | None = None) -> None:
    stored = stored if stored is not None else _stored_revision(conn)
    known = {r.revision for r in revisions()}
    if stored is not None and stored not in known:
        raise SchemaVersionError(
            f"database schema is at revision {stored}, newer than this code (head {head()}); "
            "upgrade vibecc-state-store to open it"
        )


def _stored_revision(conn: Connection) -> str | None:
    """The revision in the database's version table, as Alembic reads it; None when it has none."""
    from alembic.runtime.migration import MigrationContext

    stored = MigrationContext.configure(conn).get_current_heads()
    return stored[0] if stored else None
