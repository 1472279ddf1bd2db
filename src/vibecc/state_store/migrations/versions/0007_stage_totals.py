"""stage_histogram summed over projects, so get_stage_stats() over all projects reads at most
states x buckets rows; filled from the histogram already stored (one INSERT ... SELECT).

Revision ID: 0007
Revises: 0006
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "stage_totals",
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("bucket", sa.Integer(), nullable=False),
        sa.Column("visits", sa.BigInteger(), nullable=False),
        sa.Column("sum_ms", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("state", "bucket", name=op.f("pk_stage_totals")),
    )
    op.execute(
        """
        INSERT INTO stage_totals (state, bucket, visits, sum_ms)
        SELECT state, bucket, sum(visits), sum(sum_ms) FROM stage_histogram
        GROUP BY state, bucket HAVING sum(visits) <> 0 OR sum(sum_ms) <> 0
        """
    )


def downgrade() -> None:
    op.drop_table("stage_totals")
