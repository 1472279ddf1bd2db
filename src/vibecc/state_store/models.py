"""SQLAlchemy tables. Every constraint and index has a stable name (see NAMING_CONVENTION)."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    BigInteger,
    Boolean,
    CheckConstraint,
    Column,
    DateTime,
    Dialect,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
    func,
)
from sqlalchemy.types import TypeDecorator, TypeEngine

from .errors import StorageError
from .records import PipelineState

NAMING_CONVENTION = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


def ordered_text(length: int) -> TypeEngine[str]:
    """VARCHAR that compares and sorts by code point on every engine: SQLite's default
    (BINARY) and PostgreSQL's "C" collation. A database's default collation may be a locale
    (en_US.UTF-8 puts "a-b" after "ab" and "Zeta" after "alpha"), and then list orders and id
    tie-breaks would differ between the engines."""
    return String(length).with_variant(String(length, collation="C"), "postgresql")


KEY = ordered_text(36)
"""Ids and the project ids that refer to them."""

STATE_VALUES = ", ".join(f"'{state.value}'" for state in PipelineState)
"""The states as an SQL list for the check constraints: "'queued', 'coding', ..."."""


class UTCDateTime(TypeDecorator[datetime]):
    """timestamptz on PostgreSQL, ISO text on SQLite; always an aware UTC datetime in Python."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given where a UTC timestamp is stored")
        return value.astimezone(UTC)

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)

    # The hooks above serve PostgreSQL. SQLite keeps no offset, so it stores the UTC wall
    # time as text, with one C-level parse/format per value instead of SQLAlchemy's generic
    # DATETIME processing; the text format is exactly SQLAlchemy's
    # ("YYYY-MM-DD HH:MM:SS.ffffff"), so stored values compare and sort the same.
    def bind_processor(self, dialect: Dialect) -> Callable[[Any], Any] | None:
        if dialect.name != "sqlite":
            return super().bind_processor(dialect)
        return _sqlite_text

    def result_processor(self, dialect: Dialect, coltype: object) -> Callable[[Any], Any] | None:
        if dialect.name != "sqlite":
            return super().result_processor(dialect, coltype)
        return _sqlite_datetime


def _sqlite_text(value: datetime | None) -> str | None:
    if value is None:
        return None
    if value.tzinfo is None:
        raise ValueError("naive datetime given where a UTC timestamp is stored")
    return value.astimezone(UTC).isoformat(" ", "microseconds")[:-6]  # without "+00:00"


def _sqlite_datetime(value: str | None) -> datetime | None:
    if value is None:
        return None
    try:
        return datetime.fromisoformat(value + "+00:00")
    except (TypeError, ValueError):
        # Written by hand or damaged: the store never writes anything else.
        shown = repr(value) if len(repr(value)) <= 60 else repr(value)[:57] + "..."
        raise StorageError(f"a stored timestamp is not a UTC timestamp: {shown}") from None


metadata = MetaData(naming_convention=NAMING_CONVENTION)
"""Every table of the store; Alembic compares the migrations against it."""


def _required(name: str, kind: TypeEngine[Any], *args: Any, **kwargs: Any) -> Column[Any]:
    return Column(name, kind, *args, nullable=False, **kwargs)


def _optional(name: str, kind: TypeEngine[Any]) -> Column[Any]:
    return Column(name, kind, nullable=True)


def _key(name: str, *args: Any, **kwargs: Any) -> Column[Any]:
    return Column(name, KEY, *args, primary_key=True, **kwargs)


projects = Table(
    "projects",
    metadata,
    _key("id"),
    _required("name", ordered_text(255)),
    _required("repo", String(255)),
    _required("base_branch", String(255)),
    _optional("github_project_id", BigInteger()),
    _required("max_retries_ci", Integer()),
    _required("max_retries_review", Integer()),
    _required("created_at", UTCDateTime()),
    _required("updated_at", UTCDateTime()),
    UniqueConstraint("repo"),
)

pipelines = Table(
    "pipelines",
    metadata,
    _key("id"),
    _required("project_id", KEY, ForeignKey("projects.id")),
    _required("ticket_id", String(64)),
    _required("ticket_title", String(1000)),
    _required("ticket_body", Text()),
    _required("state", String(16)),
    _required("branch_name", String(255)),
    _optional("pr_id", BigInteger()),
    _optional("pr_url", String(2048)),
    _required("retry_count_ci", Integer()),
    _required("retry_count_review", Integer()),
    _optional("feedback", Text()),
    _required("created_at", UTCDateTime()),
    _required("updated_at", UTCDateTime()),
    _required("version", Integer()),
    # A unique index, not a constraint: SQLite adds it without rebuilding the table.
    Index("uq_pipelines_project_id_ticket_id", "project_id", "ticket_id", unique=True),
    CheckConstraint(f"state IN ({STATE_VALUES})", name="state"),
    CheckConstraint("version >= 1", name="version"),
    Index(None, "project_id", "state", "created_at", "id"),
    Index(None, "state", "created_at", "id"),
    Index(None, "created_at", "id"),
)

history = Table(
    "pipeline_history",
    metadata,
    # A finished pipeline. No foreign key: history outlives its project.
    _key("id"),
    _required("project_id", KEY),
    _required("ticket_id", String(64)),
    _required("ticket_title", String(1000)),
    _required("final_state", String(16)),
    _required("branch_name", String(255)),
    _optional("pr_id", BigInteger()),
    _optional("pr_url", String(2048)),
    _required("total_retries_ci", Integer()),
    _required("total_retries_review", Integer()),
    _required("started_at", UTCDateTime()),
    _required("completed_at", UTCDateTime()),
    _required("duration_seconds", BigInteger()),
    CheckConstraint(f"final_state IN ({STATE_VALUES})", name="final_state"),
    Index(None, "project_id", "completed_at", "id"),
    Index(None, "final_state", "completed_at", "id"),
    Index(None, "completed_at", "id"),
)

deleted_projects = Table(
    "deleted_projects",
    metadata,
    # What is left of a deleted project: enough to name it beside its history.
    _key("id"),
    _required("name", String(255)),
    _required("repo", String(255)),
    _required("deleted_at", UTCDateTime()),
)

history_stats = Table(
    "history_stats",
    metadata,
    # Running totals of pipeline_history per project, written in the same transaction.
    _key("project_id"),
    *(
        _required(name, BigInteger())
        for name in (
            "total_completed",
            "total_merged",
            "total_failed",
            "sum_duration_seconds",
            "sum_retries_ci",
            "sum_retries_review",
        )
    ),
)

transitions = Table(
    "pipeline_transitions",
    metadata,
    # One change of a pipeline's state, appended in the transaction that made it. No foreign
    # key: a pipeline's transitions stay with its history record once it is archived.
    _key("pipeline_id"),
    Column("seq", Integer(), primary_key=True),
    _required("project_id", KEY),
    _optional("from_state", String(16)),
    _required("to_state", String(16)),
    _required("at", UTCDateTime()),
    _required("retry_count_ci", Integer()),
    _required("retry_count_review", Integer()),
    _optional("feedback", Text()),
    _required("reconstructed", Boolean()),
    CheckConstraint(f"to_state IN ({STATE_VALUES})", name="to_state"),
    CheckConstraint(f"from_state IS NULL OR from_state IN ({STATE_VALUES})", name="from_state"),
    CheckConstraint("seq >= 1", name="seq"),
    Index(None, "project_id", "at"),
    Index(None, "at"),
)

stage_histogram = Table(
    "stage_histogram",
    metadata,
    # Time finished pipelines spent in each state, per project, as a histogram with
    # log-spaced buckets (queries/buckets.py): kept in the transaction of each archive and
    # prune, so stage statistics cost the same at any history size.
    _key("project_id"),
    Column("state", String(16), primary_key=True),
    Column("bucket", Integer(), primary_key=True),
    _required("visits", BigInteger()),
    _required("sum_ms", BigInteger()),
    # Covering, in the order of a GROUP BY over projects: summed without a sort.
    Index(None, "state", "bucket", "visits", "sum_ms"),
)

stage_totals = Table(
    "stage_totals",
    metadata,
    # stage_histogram summed over projects, kept in the same transactions: get_stage_stats()
    # reads at most states x buckets rows, however many projects there are.
    Column("state", String(16), primary_key=True),
    Column("bucket", Integer(), primary_key=True),
    _required("visits", BigInteger()),
    _required("sum_ms", BigInteger()),
)

duration_histogram = Table(
    "duration_histogram",
    metadata,
    # The durations of finished pipelines, per project, as a histogram with the same buckets:
    # kept with history_stats in the transaction of every history write, so duration
    # percentiles cost the same at any history size.
    _key("project_id"),
    Column("bucket", Integer(), primary_key=True),
    _required("runs", BigInteger()),
    # Covering, in the order of the all-projects GROUP BY: summed without a sort.
    Index(None, "bucket", "runs"),
)

changes = Table(
    "changes",
    metadata,
    # The change log: one row per committed write of a project, pipeline or history record,
    # numbered in commit order (queries/changes.py).
    Column("seq", BigInteger(), primary_key=True, autoincrement=False),
    _required("kind", String(16)),
    _required("entity_id", KEY),
    _optional("project_id", KEY),
    _required("op", String(16)),
    _optional("version", Integer()),
    _required("at", UTCDateTime()),
    CheckConstraint("kind IN ('project', 'pipeline', 'history')", name="kind"),
    Index(None, "project_id", "seq"),
    Index(None, "at"),
)

change_counter = Table(
    "change_counter",
    metadata,
    # One row: the last change number given out, and the last one pruned. Each writing
    # transaction moves last_seq as its last statement, holding the row until it commits, so
    # numbers are given out in commit order.
    Column("id", Integer(), primary_key=True, autoincrement=False),
    _required("last_seq", BigInteger()),
    _required("pruned_through", BigInteger()),
    CheckConstraint("id = 1", name="one_row"),
)

# GitHub repository names are case-insensitive: one project per repo however it is spelt,
# enforced by the database (the store keeps the spelling it was given). Lookups by repo
# compare lower(repo), which this index serves on both engines.
Index("uq_projects_lower_repo", func.lower(projects.c.repo), unique=True)
