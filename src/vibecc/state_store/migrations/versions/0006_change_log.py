"""The change log: every committed write, numbered in commit order, and its counter row.

The log starts empty at this revision: what was written before it is in the tables.

Revision ID: 0006
Revises: 0005
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None

# This revision's own copies, as they were when it was written: later edits change nothing.
_KEY = sa.String(36).with_variant(sa.String(36, collation="C"), "postgresql")


def upgrade() -> None:
    op.create_table(
        "changes",
        sa.Column("seq", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("entity_id", _KEY, nullable=False),
        sa.Column("project_id", _KEY, nullable=True),
        sa.Column("op", sa.String(16), nullable=False),
        sa.Column("version", sa.Integer(), nullable=True),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("seq", name=op.f("pk_changes")),
        sa.CheckConstraint("kind IN ('project', 'pipeline', 'history')", name=op.f("ck_changes_kind")),
    )
    op.create_index(op.f("ix_changes_project_id_seq"), "changes", ["project_id", "seq"])
    op.create_index(op.f("ix_changes_at"), "changes", ["at"])
    counter = op.create_table(
        "change_counter",
        sa.Column("id", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("last_seq", sa.BigInteger(), nullable=False),
        sa.Column("pruned_through", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_change_counter")),
        sa.CheckConstraint("id = 1", name=op.f("ck_change_counter_one_row")),
    )
    op.bulk_insert(counter, [{"id": 1, "last_seq": 0, "pruned_through": 0}])


def downgrade() -> None:
    op.drop_table("change_counter")
    op.drop_index(op.f("ix_changes_at"), table_name="changes")
    op.drop_index(op.f("ix_changes_project_id_seq"), table_name="changes")
    op.drop_table("changes")
