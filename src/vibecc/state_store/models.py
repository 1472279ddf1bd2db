"""SQLAlchemy tables. Every constraint and index has a stable name (see NAMING_CONVENTION)."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any, cast

from sqlalchemy import (
    BigInteger,
    Boolean,
    CheckConstraint,
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
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column
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


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)


class ProjectRow(Base):
    __tablename__ = "projects"
    __table_args__ = (UniqueConstraint("repo"),)

    id: Mapped[str] = mapped_column(KEY, primary_key=True)
    name: Mapped[str] = mapped_column(ordered_text(255))
    repo: Mapped[str] = mapped_column(String(255))
    base_branch: Mapped[str] = mapped_column(String(255))
    github_project_id: Mapped[int | None] = mapped_column(BigInteger)
    max_retries_ci: Mapped[int] = mapped_column(Integer)
    max_retries_review: Mapped[int] = mapped_column(Integer)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime)


class PipelineRow(Base):
    __tablename__ = "pipelines"
    __table_args__ = (
        # A unique index, not a constraint: SQLite adds it without rebuilding the table.
        Index("uq_pipelines_project_id_ticket_id", "project_id", "ticket_id", unique=True),
        CheckConstraint(f"state IN ({STATE_VALUES})", name="state"),
        CheckConstraint("version >= 1", name="version"),
        Index(None, "project_id", "state", "created_at", "id"),
        Index(None, "state", "created_at", "id"),
        Index(None, "created_at", "id"),
    )

    id: Mapped[str] = mapped_column(KEY, primary_key=True)
    project_id: Mapped[str] = mapped_column(KEY, ForeignKey("projects.id"))
    ticket_id: Mapped[str] = mapped_column(String(64))
    ticket_title: Mapped[str] = mapped_column(String(1000))
    ticket_body: Mapped[str] = mapped_column(Text)
    state: Mapped[str] = mapped_column(String(16))
    branch_name: Mapped[str] = mapped_column(String(255))
    pr_id: Mapped[int | None] = mapped_column(BigInteger)
    pr_url: Mapped[str | None] = mapped_column(String(2048))
    retry_count_ci: Mapped[int] = mapped_column(Integer)
    retry_count_review: Mapped[int] = mapped_column(Integer)
    feedback: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime)
    version: Mapped[int] = mapped_column(Integer)


class HistoryRow(Base):
    """A finished pipeline. No foreign key: history outlives its project."""

    __tablename__ = "pipeline_history"
    __table_args__ = (
        CheckConstraint(f"final_state IN ({STATE_VALUES})", name="final_state"),
        Index(None, "project_id", "completed_at", "id"),
        Index(None, "final_state", "completed_at", "id"),
        Index(None, "completed_at", "id"),
    )

    id: Mapped[str] = mapped_column(KEY, primary_key=True)
    project_id: Mapped[str] = mapped_column(KEY)
    ticket_id: Mapped[str] = mapped_column(String(64))
    ticket_title: Mapped[str] = mapped_column(String(1000))
    final_state: Mapped[str] = mapped_column(String(16))
    branch_name: Mapped[str] = mapped_column(String(255))
    pr_id: Mapped[int | None] = mapped_column(BigInteger)
    pr_url: Mapped[str | None] = mapped_column(String(2048))
    total_retries_ci: Mapped[int] = mapped_column(Integer)
    total_retries_review: Mapped[int] = mapped_column(Integer)
    started_at: Mapped[datetime] = mapped_column(UTCDateTime)
    completed_at: Mapped[datetime] = mapped_column(UTCDateTime)
    duration_seconds: Mapped[int] = mapped_column(BigInteger)


class DeletedProjectRow(Base):
    """What is left of a deleted project: enough to name it beside its history."""

    __tablename__ = "deleted_projects"

    id: Mapped[str] = mapped_column(KEY, primary_key=True)
    name: Mapped[str] = mapped_column(String(255))
    repo: Mapped[str] = mapped_column(String(255))
    deleted_at: Mapped[datetime] = mapped_column(UTCDateTime)


class HistoryStatsRow(Base):
    """Running totals of pipeline_history per project, written in the same transaction."""

    __tablename__ = "history_stats"

    project_id: Mapped[str] = mapped_column(KEY, primary_key=True)
    total_completed: Mapped[int] = mapped_column(BigInteger)
    total_merged: Mapped[int] = mapped_column(BigInteger)
    total_failed: Mapped[int] = mapped_column(BigInteger)
    sum_duration_seconds: Mapped[int] = mapped_column(BigInteger)
    sum_retries_ci: Mapped[int] = mapped_column(BigInteger)
    sum_retries_review: Mapped[int] = mapped_column(BigInteger)


class TransitionRow(Base):
    """One change of a pipeline's state, appended in the transaction that made it. No foreign
    key: a pipeline's transitions stay with its history record once it is archived."""

    __tablename__ = "pipeline_transitions"
    __table_args__ = (
        CheckConstraint(f"to_state IN ({STATE_VALUES})", name="to_state"),
        CheckConstraint(f"from_state IS NULL OR from_state IN ({STATE_VALUES})", name="from_state"),
        CheckConstraint("seq >= 1", name="seq"),
        Index(None, "project_id", "at"),
        Index(None, "at"),
    )

    pipeline_id: Mapped[str] = mapped_column(KEY, primary_key=True)
    seq: Mapped[int] = mapped_column(Integer, primary_key=True)
    project_id: Mapped[str] = mapped_column(KEY)
    from_state: Mapped[str | None] = mapped_column(String(16))
    to_state: Mapped[str] = mapped_column(String(16))
    at: Mapped[datetime] = mapped_column(UTCDateTime)
    retry_count_ci: Mapped[int] = mapped_column(Integer)
    retry_count_review: Mapped[int] = mapped_column(Integer)
    feedback: Mapped[str | None] = mapped_column(Text)
    reconstructed: Mapped[bool] = mapped_column(Boolean)


class StageHistogramRow(Base):
    """Time finished pipelines spent in each state, per project, as a histogram with
    log-spaced buckets (see queries/stages.py): kept in the transaction of each archive and
    prune, so stage statistics cost the same at any history size."""

    __tablename__ = "stage_histogram"
    # Covering, in the order of get_stage_stats()'s GROUP BY: all projects summed without a sort.
    __table_args__ = (Index(None, "state", "bucket", "visits", "sum_ms"),)

    project_id: Mapped[str] = mapped_column(KEY, primary_key=True)
    state: Mapped[str] = mapped_column(String(16), primary_key=True)
    bucket: Mapped[int] = mapped_column(Integer, primary_key=True)
    visits: Mapped[int] = mapped_column(BigInteger)
    sum_ms: Mapped[int] = mapped_column(BigInteger)


class DurationHistogramRow(Base):
    """The durations of finished pipelines, per project, as a histogram with the same
    log-spaced buckets (see queries/buckets.py): kept with history_stats in the transaction of
    every history write, so duration percentiles cost the same at any history size."""

    __tablename__ = "duration_histogram"
    # Covering, in the order of the all-projects GROUP BY: summed without a sort.
    __table_args__ = (Index(None, "bucket", "runs"),)

    project_id: Mapped[str] = mapped_column(KEY, primary_key=True)
    bucket: Mapped[int] = mapped_column(Integer, primary_key=True)
    runs: Mapped[int] = mapped_column(BigInteger)


class ChangeRow(Base):
    """The change log: one row per committed write of a project, pipeline or history record,
    numbered in commit order (see queries/changes.py)."""

    __tablename__ = "changes"
    __table_args__ = (
        CheckConstraint("kind IN ('project', 'pipeline', 'history')", name="kind"),
        Index(None, "project_id", "seq"),
        Index(None, "at"),
    )

    seq: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    kind: Mapped[str] = mapped_column(String(16))
    entity_id: Mapped[str] = mapped_column(KEY)
    project_id: Mapped[str | None] = mapped_column(KEY)
    op: Mapped[str] = mapped_column(String(16))
    version: Mapped[int | None] = mapped_column(Integer)
    at: Mapped[datetime] = mapped_column(UTCDateTime)


class ChangeCounterRow(Base):
    """One row: the last change number given out, and the last one pruned. Each writing
    transaction moves `last_seq` as its last statement, holding the row until it commits, so
    numbers are given out in commit order."""

    __tablename__ = "change_counter"
    __table_args__ = (CheckConstraint("id = 1", name="one_row"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    last_seq: Mapped[int] = mapped_column(BigInteger)
    pruned_through: Mapped[int] = mapped_column(BigInteger)


projects = cast(Table, ProjectRow.__table__)
pipelines = cast(Table, PipelineRow.__table__)
history = cast(Table, HistoryRow.__table__)
history_stats = cast(Table, HistoryStatsRow.__table__)
deleted_projects = cast(Table, DeletedProjectRow.__table__)
transitions = cast(Table, TransitionRow.__table__)
stage_histogram = cast(Table, StageHistogramRow.__table__)
duration_histogram = cast(Table, DurationHistogramRow.__table__)
changes = cast(Table, ChangeRow.__table__)
change_counter = cast(Table, ChangeCounterRow.__table__)

# GitHub repository names are case-insensitive: one project per repo however it is spelt,
# enforced by the database (the store keeps the spelling it was given). Lookups by repo
# compare lower(repo), which this index serves on both engines.
Index("uq_projects_lower_repo", func.lower(projects.c.repo), unique=True)
