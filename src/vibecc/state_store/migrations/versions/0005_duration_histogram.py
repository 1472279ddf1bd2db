"""The kept histogram of run durations, so duration percentiles cost the same at any history
size; filled from the history already stored.

The fill is plain SQL, so `vibecc-state db sql` renders it for a DBA on either engine: a small
table of bucket edges (the first whole second of each bucket, computed here with the bucket
formula of this revision), then one INSERT ... SELECT that groups history by project and
duration and looks each distinct duration's bucket up by the edges' primary key (linear in the
rows, whatever their number).

Revision ID: 0005
Revises: 0004
"""

from __future__ import annotations

import math

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

# This revision's own copies, as they were when it was written: later edits change nothing.
_KEY = sa.String(36).with_variant(sa.String(36, collation="C"), "postgresql")
_LOG_RATIO = math.log(1.1)
_LONGEST = 2**40
"""Seconds (34,000 years): beyond any duration the store accepts."""
_EDGES = "duration_buckets_0005"


def _bucket(seconds: int) -> int:
    ms = seconds * 1000
    return 0 if ms < 1 else int(math.log(ms) / _LOG_RATIO) + 1


def _edges() -> list[dict[str, int]]:
    """(first whole second, bucket) of every bucket that holds a whole second."""
    edges = [{"low_seconds": 0, "bucket": 0}]
    seconds = 1
    while seconds <= _LONGEST:
        index = _bucket(seconds)
        edges.append({"low_seconds": seconds, "bucket": index})
        # Below the bucket's upper edge (1.1**index ms) and above `seconds`: still in `index`.
        following = max(seconds + 1, math.floor(1.1**index / 1000) - 1)
        while _bucket(following) == index:
            following += 1
        seconds = following
    return edges


def upgrade() -> None:
    op.create_table(
        "duration_histogram",
        sa.Column("project_id", _KEY, nullable=False),
        sa.Column("bucket", sa.Integer(), nullable=False),
        sa.Column("runs", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("project_id", "bucket", name=op.f("pk_duration_histogram")),
    )
    op.create_index(op.f("ix_duration_histogram_bucket_runs"), "duration_histogram", ["bucket", "runs"])
    edges = op.create_table(
        _EDGES,
        sa.Column("low_seconds", sa.BigInteger(), nullable=False),
        sa.Column("bucket", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("low_seconds", name="pk_duration_buckets_0005"),
    )
    op.bulk_insert(edges, _edges())
    op.execute(
        """
        INSERT INTO duration_histogram (project_id, bucket, runs)
        SELECT project_id, bucket, sum(runs) FROM (
            SELECT g.project_id AS project_id, g.runs AS runs, coalesce((
                SELECT e.bucket FROM duration_buckets_0005 e WHERE e.low_seconds <= g.duration_seconds
                ORDER BY e.low_seconds DESC LIMIT 1
            ), 0) AS bucket
            FROM (
                SELECT project_id, duration_seconds, count(*) AS runs
                FROM pipeline_history GROUP BY project_id, duration_seconds
            ) g
        ) bucketed
        GROUP BY project_id, bucket
        """
    )
    op.drop_table(_EDGES)


def downgrade() -> None:
    op.drop_index(op.f("ix_duration_histogram_bucket_runs"), table_name="duration_histogram")
    op.drop_table("duration_histogram")
