"""Baseline: the three tables of the earlier state store, as it created them.

Databases made by that store (no alembic_version table) are stamped at this revision when
opened and then upgraded like any other.

Revision ID: 0001
Revises:
"""

from __future__ import annotations

from alembic import op

from vibecc.state_store.migrations import baseline

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    for name in ("projects", "pipelines", "pipeline_history"):
        op.create_table(name, *baseline.items(name))


def downgrade() -> None:
    op.drop_table("pipeline_history")
    op.drop_table("pipelines")
    op.drop_table("projects")
