"""Pipeline transitions: every change of a pipeline's state, kept with its history; and the
kept histogram of time spent in each state.

Existing pipelines and history records get one reconstructed transition each: into their
current or final state at their creation (the states between were not recorded). The
histogram starts empty: what old pipelines spent in each state is not known.

Revision ID: 0004
Revises: 0003
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

# This revision's own copies, as they were when it was written: later edits change nothing.
_KEY = sa.String(36).with_variant(sa.String(36, collation="C"), "postgresql")
_COLUMNS = (
    "pipeline_id",
    "seq",
    "project_id",
    "from_state",
    "to_state",
    "at",
    "retry_count_ci",
    "retry_count_review",
    "feedback",
    "reconstructed",
)


def upgrade() -> None:
    op.create_table(
        "pipeline_transitions",
        sa.Column("pipeline_id", _KEY, nullable=False),
        sa.Column("seq", sa.Integer(), nullable=False),
        sa.Column("project_id", _KEY, nullable=False),
        sa.Column("from_state", sa.String(16), nullable=True),
        sa.Column("to_state", sa.String(16), nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("retry_count_ci", sa.Integer(), nullable=False),
        sa.Column("retry_count_review", sa.Integer(), nullable=False),
        sa.Column("feedback", sa.Text(), nullable=True),
        sa.Column("reconstructed", sa.Boolean(), nullable=False),
        sa.PrimaryKeyConstraint("pipeline_id", "seq", name=op.f("pk_pipeline_transitions")),
        sa.CheckConstraint(
            "to_state IN ('queued', 'coding', 'testing', 'review', 'merged', 'failed')",
            name=op.f("ck_pipeline_transitions_to_state"),
        ),
        sa.CheckConstraint(
            "from_state IS NULL OR "
            "from_state IN ('queued', 'coding', 'testing', 'review', 'merged', 'failed')",
            name=op.f("ck_pipeline_transitions_from_state"),
        ),
        sa.CheckConstraint("seq >= 1", name=op.f("ck_pipeline_transitions_seq")),
    )
    op.create_index(
        op.f("ix_pipeline_transitions_project_id_at"), "pipeline_transitions", ["project_id", "at"]
    )
    op.create_index(op.f("ix_pipeline_transitions_at"), "pipeline_transitions", ["at"])
    op.create_table(
        "stage_histogram",
        sa.Column("project_id", _KEY, nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("bucket", sa.Integer(), nullable=False),
        sa.Column("visits", sa.BigInteger(), nullable=False),
        sa.Column("sum_ms", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("project_id", "state", "bucket", name=op.f("pk_stage_histogram")),
    )
    op.create_index(
        op.f("ix_stage_histogram_state_bucket_visits_sum_ms"),
        "stage_histogram",
        ["state", "bucket", "visits", "sum_ms"],
    )
    transitions = sa.table("pipeline_transitions", *(sa.column(name) for name in _COLUMNS))
    pipelines = sa.table(
        "pipelines",
        *(
            sa.column(n)
            for n in ("id", "project_id", "state", "created_at", "retry_count_ci", "retry_count_review")
        ),
    )
    history = sa.table(
        "pipeline_history",
        *(
            sa.column(n)
            for n in (
                "id",
                "project_id",
                "final_state",
                "started_at",
                "total_retries_ci",
                "total_retries_review",
            )
        ),
    )
    # One statement per table: linear in the rows, whatever their number.
    op.execute(
        transitions.insert().from_select(
            _COLUMNS,
            sa.select(
                pipelines.c.id,
                sa.literal(1),
                pipelines.c.project_id,
                sa.null(),
                pipelines.c.state,
                pipelines.c.created_at,
                pipelines.c.retry_count_ci,
                pipelines.c.retry_count_review,
                sa.null(),
                sa.true(),
            ),
        )
    )
    # A pipeline saved to history while still active has its transition from the row above.
    op.execute(
        transitions.insert().from_select(
            _COLUMNS,
            sa.select(
                history.c.id,
                sa.literal(1),
                history.c.project_id,
                sa.null(),
                history.c.final_state,
                history.c.started_at,
                history.c.total_retries_ci,
                history.c.total_retries_review,
                sa.null(),
                sa.true(),
            ).where(history.c.id.not_in(sa.select(pipelines.c.id))),
        )
    )


def downgrade() -> None:
    op.drop_table("stage_histogram")
    op.drop_index(op.f("ix_pipeline_transitions_at"), table_name="pipeline_transitions")
    op.drop_index(op.f("ix_pipeline_transitions_project_id_at"), table_name="pipeline_transitions")
    op.drop_table("pipeline_transitions")
