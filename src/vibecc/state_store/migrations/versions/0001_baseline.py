"""Baseline: the three tables of the earlier state store, as it created them.

Databases made by that store (no alembic_version table) are stamped at this revision when
opened and then upgraded like any other.

Revision ID: 0001
Revises:
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "projects",
        sa.Column("id", sa.String(36), primary_key=True),
        sa.Column("name", sa.String(255), nullable=False),
        sa.Column("repo", sa.String(255), nullable=False),
        sa.Column("base_branch", sa.String(255), nullable=False),
        sa.Column("github_project_id", sa.Integer()),
        sa.Column("max_retries_ci", sa.Integer(), nullable=False),
        sa.Column("max_retries_review", sa.Integer(), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.Column("updated_at", sa.DateTime(), nullable=False),
        sa.UniqueConstraint("repo", name="uq_projects_repo"),
    )
    op.create_table(
        "pipelines",
        sa.Column("id", sa.String(36), primary_key=True),
        sa.Column("project_id", sa.String(36), sa.ForeignKey("projects.id"), nullable=False),
        sa.Column("ticket_id", sa.String(64), nullable=False),
        sa.Column("ticket_title", sa.String(1000), nullable=False),
        sa.Column("ticket_body", sa.Text()),
        # The earlier store kept the enum's member names: "QUEUED", ...
        sa.Column("state", sa.String(7), nullable=False),
        sa.Column("branch_name", sa.String(255), nullable=False),
        sa.Column("pr_id", sa.Integer()),
        sa.Column("pr_url", sa.String(2048)),
        sa.Column("retry_count_ci", sa.Integer(), nullable=False),
        sa.Column("retry_count_review", sa.Integer(), nullable=False),
        sa.Column("feedback", sa.Text()),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.Column("updated_at", sa.DateTime(), nullable=False),
    )
    op.create_table(
        "pipeline_history",
        sa.Column("id", sa.String(36), primary_key=True),
        sa.Column("project_id", sa.String(36), nullable=False),
        sa.Column("ticket_id", sa.String(64), nullable=False),
        sa.Column("ticket_title", sa.String(1000), nullable=False),
        sa.Column("final_state", sa.String(7), nullable=False),
        sa.Column("branch_name", sa.String(255), nullable=False),
        sa.Column("pr_id", sa.Integer()),
        sa.Column("pr_url", sa.String(2048)),
        sa.Column("total_retries_ci", sa.Integer(), nullable=False),
        sa.Column("total_retries_review", sa.Integer(), nullable=False),
        sa.Column("started_at", sa.DateTime(), nullable=False),
        sa.Column("completed_at", sa.DateTime(), nullable=False),
        sa.Column("duration_seconds", sa.Integer(), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("pipeline_history")
    op.drop_table("pipelines")
    op.drop_table("projects")
