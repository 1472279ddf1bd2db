"""Versioned pipelines, UTC timestamps, lower-case states, query indexes, kept history stats.

Revision ID: 0002
Revises: 0001
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from alembic import context, op
from alembic.operations import BatchOperations

from vibecc.state_store.errors import SchemaVersionError
from vibecc.state_store.migrations import baseline
from vibecc.state_store.models import NAMING_CONVENTION, STATE_VALUES

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

_TIMESTAMPS = {
    "projects": ("created_at", "updated_at"),
    "pipelines": ("created_at", "updated_at"),
    "pipeline_history": ("started_at", "completed_at"),
}


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


def _refuse_duplicate_tickets() -> None:
    """The new unique index needs one active pipeline per ticket; say which break it."""
    bind = op.get_bind()
    duplicates = bind.execute(
        sa.text(
            "SELECT project_id, ticket_id FROM pipelines GROUP BY project_id, ticket_id HAVING count(*) > 1"
        )
    ).all()
    if duplicates:
        listed = ", ".join(f"{p}#{t}" for p, t in duplicates[:10])
        raise SchemaVersionError(
            f"cannot upgrade: several active pipelines for one ticket ({listed}); "
            "archive or delete the extra ones first"
        )


def _rebuild(name: str) -> Any:
    """Batch changes of one table; offline, SQLite's rebuild starts from the 0001 table
    because there is no database to reflect."""
    copy_from = baseline.table(name) if context.is_offline_mode() else None
    return op.batch_alter_table(name, naming_convention=NAMING_CONVENTION, copy_from=copy_from)


def upgrade() -> None:
    if not context.is_offline_mode():
        _refuse_duplicate_tickets()
    op.execute("UPDATE pipelines SET state = lower(state)")
    op.execute("UPDATE pipelines SET ticket_body = '' WHERE ticket_body IS NULL")
    op.execute("UPDATE pipeline_history SET final_state = lower(final_state)")

    with _rebuild("projects") as batch:
        batch.alter_column("github_project_id", type_=sa.BigInteger(), existing_type=sa.Integer())
        _timestamps(batch, "projects", aware=True)

    with _rebuild("pipelines") as batch:
        batch.add_column(sa.Column("version", sa.Integer(), nullable=False, server_default="1"))
        batch.alter_column("state", type_=sa.String(16), existing_type=sa.String(7), existing_nullable=False)
        batch.alter_column("ticket_body", nullable=False, existing_type=sa.Text())
        batch.alter_column("pr_id", type_=sa.BigInteger(), existing_type=sa.Integer())
        _timestamps(batch, "pipelines", aware=True)
        batch.create_check_constraint("state", f"state IN ({STATE_VALUES})")
        batch.create_check_constraint("version", "version >= 1")
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
        batch.create_check_constraint("final_state", f"final_state IN ({STATE_VALUES})")
        batch.create_index(
            "ix_pipeline_history_project_id_completed_at_id", ["project_id", "completed_at", "id"]
        )
        batch.create_index(
            "ix_pipeline_history_final_state_completed_at_id", ["final_state", "completed_at", "id"]
        )
        batch.create_index("ix_pipeline_history_completed_at_id", ["completed_at", "id"])

    op.create_table(
        "history_stats",
        sa.Column("project_id", sa.String(36), nullable=False),
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

    with op.batch_alter_table("pipeline_history", naming_convention=NAMING_CONVENTION) as batch:
        batch.drop_index("ix_pipeline_history_completed_at_id")
        batch.drop_index("ix_pipeline_history_final_state_completed_at_id")
        batch.drop_index("ix_pipeline_history_project_id_completed_at_id")
        batch.drop_constraint(op.f("ck_pipeline_history_final_state"), type_="check")
        _timestamps(batch, "pipeline_history", aware=False)
        batch.alter_column(
            "duration_seconds", type_=sa.Integer(), existing_type=sa.BigInteger(), existing_nullable=False
        )
        batch.alter_column("pr_id", type_=sa.Integer(), existing_type=sa.BigInteger())
        batch.alter_column(
            "final_state", type_=sa.String(7), existing_type=sa.String(16), existing_nullable=False
        )

    with op.batch_alter_table("pipelines", naming_convention=NAMING_CONVENTION) as batch:
        batch.drop_index("ix_pipelines_created_at_id")
        batch.drop_index("ix_pipelines_state_created_at_id")
        batch.drop_index("ix_pipelines_project_id_state_created_at_id")
        batch.drop_index("uq_pipelines_project_id_ticket_id")
        batch.drop_constraint(op.f("ck_pipelines_version"), type_="check")
        batch.drop_constraint(op.f("ck_pipelines_state"), type_="check")
        _timestamps(batch, "pipelines", aware=False)
        batch.alter_column("pr_id", type_=sa.Integer(), existing_type=sa.BigInteger())
        batch.alter_column("ticket_body", nullable=True, existing_type=sa.Text())
        batch.alter_column("state", type_=sa.String(7), existing_type=sa.String(16), existing_nullable=False)
        batch.drop_column("version")

    with op.batch_alter_table("projects", naming_convention=NAMING_CONVENTION) as batch:
        _timestamps(batch, "projects", aware=False)
        batch.alter_column("github_project_id", type_=sa.Integer(), existing_type=sa.BigInteger())

    op.execute("UPDATE pipelines SET state = upper(state)")
    op.execute("UPDATE pipeline_history SET final_state = upper(final_state)")
