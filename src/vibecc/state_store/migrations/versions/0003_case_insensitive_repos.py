"""One project per repository however it is spelt; deleted projects keep their name and repo;
history the store would refuse (an unfinished state, a duration or retry count out of range)
is named and refused before anything changes.

Revision ID: 0003
Revises: 0002
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import context, op

from vibecc.state_store.errors import SchemaVersionError

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

# Frozen as of revision 0003: its own copy of the id type (ids compare by code point on
# PostgreSQL too), so later changes to the models leave this revision unchanged.
_KEY = sa.String(36).with_variant(sa.String(36, collation="C"), "postgresql")


def _refuse_repos_differing_in_case() -> None:
    projects = sa.table("projects", sa.column("id"), sa.column("repo"))
    clashing = (
        sa.select(sa.func.lower(projects.c.repo))
        .group_by(sa.func.lower(projects.c.repo))
        .having(sa.func.count() > 1)
    )
    found = op.get_bind().execute(
        sa.select(projects.c.repo, projects.c.id)
        .where(sa.func.lower(projects.c.repo).in_(clashing))
        .order_by(sa.func.lower(projects.c.repo), projects.c.id)
    )
    listed = [f"{row.repo} ({row.id})" for row in found]
    if listed:
        raise SchemaVersionError(
            "cannot upgrade: projects whose repos differ only in case name one GitHub repository: "
            f"{', '.join(listed[:10])}; delete or rename all but one of each and upgrade again"
        )


# Frozen as of revision 0003: the store's limits when it was written, so later edits change nothing.
_MAX_DURATION_SECONDS = 36_525 * 86_400
_MAX_RETRY_COUNT = 1_000_000


def _refuse_history_out_of_range() -> None:
    """An earlier store could keep history rows the store now refuses to import: they would
    break the export -> import round trip and the kept totals. Name them instead."""
    history = sa.table(
        "pipeline_history",
        sa.column("id"),
        sa.column("final_state"),
        sa.column("duration_seconds"),
        sa.column("total_retries_ci"),
        sa.column("total_retries_review"),
    )
    c = history.c
    bad = sa.or_(
        c.final_state.not_in(["merged", "failed"]),
        sa.not_(c.duration_seconds.between(0, _MAX_DURATION_SECONDS)),
        sa.not_(c.total_retries_ci.between(0, _MAX_RETRY_COUNT)),
        sa.not_(c.total_retries_review.between(0, _MAX_RETRY_COUNT)),
    )
    found = op.get_bind().execute(sa.select(c.id).where(bad).order_by(c.id).limit(11)).scalars().all()
    if found:
        shown = ", ".join(found[:10]) + (" and more" if len(found) > 10 else "")
        raise SchemaVersionError(
            f"cannot upgrade: history records {shown} hold what the store refuses (a state other "
            "than merged or failed, a negative duration or one over 100 years, or a retry count "
            "outside 0..1000000); correct or delete them and upgrade again"
        )


def upgrade() -> None:
    if not context.is_offline_mode():
        # Offline there are no rows to look at; a DBA running the SQL gets the index error.
        _refuse_repos_differing_in_case()
        _refuse_history_out_of_range()
    op.create_index("uq_projects_lower_repo", "projects", [sa.text("lower(repo)")], unique=True)
    op.create_table(
        "deleted_projects",
        sa.Column("id", _KEY, nullable=False),
        sa.Column("name", sa.String(255), nullable=False),
        sa.Column("repo", sa.String(255), nullable=False),
        sa.Column("deleted_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_deleted_projects"),
    )


def downgrade() -> None:
    op.drop_table("deleted_projects")
    op.drop_index("uq_projects_lower_repo", table_name="projects")
