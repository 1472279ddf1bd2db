"""Versioned pipelines, UTC timestamps, lower-case states, query indexes, kept history stats.

Revision ID: 0002
Revises: 0001
"""

from __future__ import annotations

import itertools
from typing import Any

import sqlalchemy as sa
from alembic import context, op
from alembic.operations import BatchOperations

from vibecc.state_store.errors import SchemaVersionError
from vibecc.state_store.migrations import baseline

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

# Frozen as of revision 0002: this revision's own copies of the models' constants and types,
# so that later changes to the models leave what it does unchanged.
_NAMING_CONVENTION = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}
_STATE_VALUES = "'queued', 'coding', 'testing', 'review', 'merged', 'failed'"


def _ordered_text(length: int) -> sa.types.TypeEngine[str]:
    """VARCHAR that compares by code point on PostgreSQL too (COLLATE "C"), as on SQLite."""
    return sa.String(length).with_variant(sa.String(length, collation="C"), "postgresql")


_TIMESTAMPS = {
    "projects": ("created_at", "updated_at"),
    "pipelines": ("created_at", "updated_at"),
    "pipeline_history": ("started_at", "completed_at"),
}


def _keys(batch: BatchOperations, columns: tuple[str, ...], *, ordered: bool) -> None:
    """Ids and names compare by code point on PostgreSQL too (COLLATE "C", as SQLite does)."""
    for column in columns:
        length = 255 if column == "name" else 36
        batch.alter_column(
            column,
            type_=_ordered_text(length) if ordered else sa.String(length),
            existing_type=sa.String(length),
            existing_nullable=False,
        )


def _timestamps(batch: BatchOperations, table: str, *, aware: bool) -> None:
    for column in _TIMESTAMPS[table]:
        zone = "'UTC'"
        batch.alter_column(
            column,
            existing_nullable=False,
            type_=sa.DateTime(timezone=aware),
            existing_type=sa.DateTime(timezone=not aware),
            postgresql_using=f"{column} AT TIME ZONE {zone}",
        )


_FINISHED = ("merged", "failed")


def _archive_finished_duplicates() -> None:
    """Make room for the unique index on (project_id, ticket_id), keeping every row.

    The earlier store had no such constraint, so a ticket can hold an old merged or failed
    pipeline that was never archived next to a newer one. Those finished pipelines move into
    pipeline_history as the store archives them: the pipeline's id, started at created_at and
    completed at updated_at (the best record of when it finished). Two unfinished pipelines of
    one ticket are refused: nothing tells which one the orchestrator should keep.

    Raises:
        SchemaVersionError: a finished pipeline's id is already a history id, or a ticket
            still has several pipelines.
    """
    bind = op.get_bind()
    # The 0001 tables: their naive DateTime columns make SQLite hand back datetimes too.
    pipelines, history = baseline.table("pipelines"), baseline.table("pipeline_history")
    finished = sa.and_(pipelines.c.state.in_(_FINISHED), _shares_ticket(pipelines))
    clashes = bind.scalars(
        sa.select(pipelines.c.id)
        .where(finished, pipelines.c.id.in_(sa.select(history.c.id)))
        .order_by(pipelines.c.id)
    ).all()
    if clashes:
        raise SchemaVersionError(
            f"cannot upgrade: finished pipelines {', '.join(clashes[:10])} must move to the history, "
            "which already has records with those ids; the database looks damaged: restore it "
            "from a backup or remove the clashing rows by hand"
        )
    rows = bind.execute(sa.select(pipelines).where(finished).order_by(pipelines.c.id)).all()
    if rows:
        op.bulk_insert(history, [_history_values(row) for row in rows])
        bind.execute(
            sa.delete(pipelines).where(pipelines.c.id == sa.bindparam("pipeline_id")),
            [{"pipeline_id": row.id} for row in rows],
        )
    _refuse_duplicate_tickets(pipelines)


def _shares_ticket(pipelines: sa.Table) -> sa.ColumnElement[bool]:
    """True for a pipeline whose ticket has another pipeline as well.

    The tickets are grouped once, not looked up per pipeline: the 0001 table has no index on
    (project_id, ticket_id), so a correlated lookup would scan the table for every row.
    """
    shared = (
        sa.select(pipelines.c.project_id, pipelines.c.ticket_id)
        .group_by(pipelines.c.project_id, pipelines.c.ticket_id)
        .having(sa.func.count() > 1)
    )
    return sa.tuple_(pipelines.c.project_id, pipelines.c.ticket_id).in_(shared)


def _history_values(row: sa.Row[Any]) -> dict[str, Any]:
    """The history row of a finished pipeline, as rows.history_from_pipeline builds it."""
    return {
        "id": row.id,
        "project_id": row.project_id,
        "ticket_id": row.ticket_id,
        "ticket_title": row.ticket_title,
        "final_state": row.state,
        "branch_name": row.branch_name,
        "pr_id": row.pr_id,
        "pr_url": row.pr_url,
        "total_retries_ci": row.retry_count_ci,
        "total_retries_review": row.retry_count_review,
        "started_at": row.created_at,
        "completed_at": row.updated_at,
        "duration_seconds": max(0, int((row.updated_at - row.created_at).total_seconds())),
    }


def _refuse_duplicate_tickets(pipelines: sa.Table) -> None:
    """The new unique index needs one pipeline per ticket; say which tickets break it."""
    query = (
        sa.select(pipelines.c.project_id, pipelines.c.ticket_id, pipelines.c.id)
        .where(_shares_ticket(pipelines))
        .order_by(pipelines.c.project_id, pipelines.c.ticket_id, pipelines.c.id)
    )
    rows = op.get_bind().execute(query).all()
    if rows:
        by_ticket = itertools.groupby(rows, lambda row: f"{row.project_id}#{row.ticket_id}")
        first = itertools.islice(by_ticket, 10)
        listed = "; ".join(f"{ticket} ({', '.join(r.id for r in group)})" for ticket, group in first)
        raise SchemaVersionError(
            f"cannot upgrade: several unfinished pipelines for one ticket: {listed}; keep one per "
            "ticket (set the stale ones to FAILED, which the upgrade then archives, or delete "
            "them) and upgrade again"
        )


def _rebuild(name: str) -> Any:
    """Batch changes of one table; offline, SQLite's rebuild starts from the 0001 table
    because there is no database to reflect."""
    copy_from = baseline.table(name) if context.is_offline_mode() else None
    return op.batch_alter_table(name, naming_convention=_NAMING_CONVENTION, copy_from=copy_from)


def upgrade() -> None:
    op.execute("UPDATE pipelines SET state = lower(state)")
    op.execute("UPDATE pipelines SET ticket_body = '' WHERE ticket_body IS NULL")
    op.execute("UPDATE pipeline_history SET final_state = lower(final_state)")
    if not context.is_offline_mode():
        # Offline there are no rows to look at; a DBA running the SQL gets the index error.
        _archive_finished_duplicates()

    with _rebuild("projects") as batch:
        batch.alter_column("github_project_id", type_=sa.BigInteger(), existing_type=sa.Integer())
        _timestamps(batch, "projects", aware=True)
        _keys(batch, ("id", "name"), ordered=True)

    with _rebuild("pipelines") as batch:
        batch.add_column(sa.Column("version", sa.Integer(), nullable=False, server_default="1"))
        batch.alter_column("state", type_=sa.String(16), existing_type=sa.String(7), existing_nullable=False)
        batch.alter_column("ticket_body", nullable=False, existing_type=sa.Text())
        batch.alter_column("pr_id", type_=sa.BigInteger(), existing_type=sa.Integer())
        _timestamps(batch, "pipelines", aware=True)
        _keys(batch, ("id", "project_id"), ordered=True)
        batch.create_check_constraint(op.f("ck_pipelines_state"), f"state IN ({_STATE_VALUES})")
        batch.create_check_constraint(op.f("ck_pipelines_version"), "version >= 1")
        batch.create_index("uq_pipelines_project_id_ticket_id", ["project_id", "ticket_id"], unique=True)
        batch.create_index(
            "ix_pipelines_project_id_state_created_at_id", ["project_id", "state", "created_at", "id"]
        )
        batch.create_index("ix_pipelines_state_created_at_id", ["state", "created_at", "id"])
        batch.create_index("ix_pipelines_created_at_id", ["created_at", "id"])

    with _rebuild("pipeline_history") as batch:
        batch.alter_column(
            "final_state", type_=sa.String(16), existing_type=sa.String(7), existing_nullable=False
        )
        batch.alter_column("pr_id", type_=sa.BigInteger(), existing_type=sa.Integer())
        batch.alter_column(
            "duration_seconds", type_=sa.BigInteger(), existing_type=sa.Integer(), existing_nullable=False
        )
        _timestamps(batch, "pipeline_history", aware=True)
        _keys(batch, ("id", "project_id"), ordered=True)
        batch.create_check_constraint(
            op.f("ck_pipeline_history_final_state"), f"final_state IN ({_STATE_VALUES})"
        )
        batch.create_index(
            "ix_pipeline_history_project_id_completed_at_id", ["project_id", "completed_at", "id"]
        )
        batch.create_index(
            "ix_pipeline_history_final_state_completed_at_id", ["final_state", "completed_at", "id"]
        )
        batch.create_index("ix_pipeline_history_completed_at_id", ["completed_at", "id"])

    op.create_table(
        "history_stats",
        sa.Column("project_id", _ordered_text(36), nullable=False),
        sa.Column("total_completed", sa.BigInteger(), nullable=False),
        sa.Column("total_merged", sa.BigInteger(), nullable=False),
        sa.Column("total_failed", sa.BigInteger(), nullable=False),
        sa.Column("sum_duration_seconds", sa.BigInteger(), nullable=False),
        sa.Column("sum_retries_ci", sa.BigInteger(), nullable=False),
        sa.Column("sum_retries_review", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("project_id", name="pk_history_stats"),
    )
    op.execute(
        "INSERT INTO history_stats (project_id, total_completed, total_merged, total_failed, "
        "sum_duration_seconds, sum_retries_ci, sum_retries_review) "
        "SELECT project_id, count(*), "
        "sum(CASE WHEN final_state = 'merged' THEN 1 ELSE 0 END), "
        "sum(CASE WHEN final_state = 'failed' THEN 1 ELSE 0 END), "
        "sum(duration_seconds), sum(total_retries_ci), sum(total_retries_review) "
        "FROM pipeline_history GROUP BY project_id"
    )


def downgrade() -> None:
    op.drop_table("history_stats")

    with op.batch_alter_table("pipeline_history", naming_convention=_NAMING_CONVENTION) as batch:
        batch.drop_index("ix_pipeline_history_completed_at_id")
        batch.drop_index("ix_pipeline_history_final_state_completed_at_id")
        batch.drop_index("ix_pipeline_history_project_id_completed_at_id")
        batch.drop_constraint(op.f("ck_pipeline_history_final_state"), type_="check")
        _timestamps(batch, "pipeline_history", aware=False)
        _keys(batch, ("id", "project_id"), ordered=False)
        batch.alter_column(
            "duration_seconds", type_=sa.Integer(), existing_type=sa.BigInteger(), existing_nullable=False
        )
        batch.alter_column("pr_id", type_=sa.Integer(), existing_type=sa.BigInteger())
        batch.alter_column(
            "final_state", type_=sa.String(7), existing_type=sa.String(16), existing_nullable=False
        )

    with op.batch_alter_table("pipelines", naming_convention=_NAMING_CONVENTION) as batch:
        batch.drop_index("ix_pipelines_created_at_id")
        batch.drop_index("ix_pipelines_state_created_at_id")
        batch.drop_index("ix_pipelines_project_id_state_created_at_id")
        batch.drop_index("uq_pipelines_project_id_ticket_id")
        batch.drop_constraint(op.f("ck_pipelines_version"), type_="check")
        batch.drop_constraint(op.f("ck_pipelines_state"), type_="check")
        _timestamps(batch, "pipelines", aware=False)
        _keys(batch, ("id", "project_id"), ordered=False)
        batch.alter_column("pr_id", type_=sa.Integer(), existing_type=sa.BigInteger())
        batch.alter_column("ticket_body", nullable=True, existing_type=sa.Text())
        batch.alter_column("state", type_=sa.String(7), existing_type=sa.String(16), existing_nullable=False)
        batch.drop_column("version")

    with op.batch_alter_table("projects", naming_convention=_NAMING_CONVENTION) as batch:
        _timestamps(batch, "projects", aware=False)
        _keys(batch, ("id", "name"), ordered=False)
        batch.alter_column("github_project_id", type_=sa.Integer(), existing_type=sa.BigInteger())

    op.execute("UPDATE pipelines SET state = upper(state)")
    op.execute("UPDATE pipeline_history SET final_state = upper(final_state)")
