"""The tables of the earlier state store (revision 0001), for its migration and for rendering
later migrations offline, where SQLite's table rebuilds cannot reflect a live database.

Self-contained: nothing here comes from the models, so later changes to them leave these
tables as revision 0001 made them. Every constraint is named here, not by a naming convention.
"""

from __future__ import annotations

import sqlalchemy as sa
from sqlalchemy.schema import SchemaItem

# Frozen as of revision 0001: the naming convention of the tables it made.
NAMING_CONVENTION = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


def items(table: str) -> list[SchemaItem]:
    """Columns and constraints of `table` as revision 0001 creates it."""
    return _TABLES[table]()


def table(name: str) -> sa.Table:
    """`name` as revision 0001 leaves it, detached from any database."""
    return sa.Table(name, sa.MetaData(naming_convention=NAMING_CONVENTION), *items(name))


def _projects() -> list[SchemaItem]:
    return [
        sa.Column("id", sa.String(36), primary_key=True),
        sa.Column("name", sa.String(255), nullable=False),
        sa.Column("repo", sa.String(255), nullable=False),
        sa.Column("base_branch", sa.String(255), nullable=False),
        sa.Column("github_project_id", sa.Integer()),
        sa.Column("max_retries_ci", sa.Integer(), nullable=False),
        sa.Column("max_retries_review", sa.Integer(), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.Column("updated_at", sa.DateTime(), nullable=False),
        sa.PrimaryKeyConstraint(name="pk_projects"),
        sa.UniqueConstraint("repo", name="uq_projects_repo"),
    ]


def _pipelines() -> list[SchemaItem]:
    return [
        sa.Column("id", sa.String(36), primary_key=True),
        sa.Column(
            "project_id",
            sa.String(36),
            sa.ForeignKey("projects.id", name="fk_pipelines_project_id_projects"),
            nullable=False,
        ),
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
        sa.PrimaryKeyConstraint(name="pk_pipelines"),
    ]


def _pipeline_history() -> list[SchemaItem]:
    return [
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
        sa.PrimaryKeyConstraint(name="pk_pipeline_history"),
    ]


_TABLES = {"projects": _projects, "pipelines": _pipelines, "pipeline_history": _pipeline_history}
