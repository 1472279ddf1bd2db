"""The change-log writes of the direct baseline, on the driver's cursor: as each writing call's
last statements, the counter row moved by the number of changes (UPDATE change_counter ...
RETURNING last_seq, with pg_notify on PostgreSQL) and the changes inserted under the numbers
it gave; the same statements the store sends (src/vibecc/state_store/queries/changes.py), one
INSERT for one change and executemany for several, as SQLAlchemy does."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, NamedTuple

CHANNEL = "vibecc_state_changes"
"""The store's notification channel (queries/changes.py: CHANNEL)."""
COLS = "seq, kind, entity_id, project_id, op, version, at"


class Entry(NamedTuple):
    """A change before it has its number and time (the store's queries.changes.Entry)."""

    kind: str
    entity_id: str
    project_id: str | None
    op: str
    version: int | None = None


def created(pipeline_id: str, project_id: str) -> list[Entry]:
    """create_pipeline: the new pipeline at version 1."""
    return [Entry("pipeline", pipeline_id, project_id, "created", 1)]


def updated(pipeline_id: str, project_id: str, version: int) -> list[Entry]:
    """update_pipeline: the pipeline at its new version."""
    return [Entry("pipeline", pipeline_id, project_id, "updated", version)]


def archived(pipeline_id: str, project_id: str, recorded: bool) -> list[Entry]:
    """archive_pipeline: the pipeline leaving the active table, and its history record when
    this call wrote it (the store's _moved_to_history)."""
    moved = [Entry("pipeline", pipeline_id, project_id, "archived")]
    return [*moved, Entry("history", pipeline_id, project_id, "created")] if recorded else moved


class ChangeLog:
    """Writes the changes when the schema has the log (tables changes and change_counter); an
    older package version (bench/compare.py) has none, and its baseline then writes none."""

    def __init__(self, table_names: set[str], *, mark: str, postgresql: bool) -> None:
        self.kept = {"changes", "change_counter"} <= table_names
        returning = f"last_seq, pg_notify('{CHANNEL}', '')" if postgresql else "last_seq"
        self.move = (
            f"UPDATE change_counter SET last_seq = last_seq + {mark} WHERE id = 1 "  # noqa: S608
            f"RETURNING {returning}"
        )
        self.insert = f"INSERT INTO changes ({COLS}) VALUES ({', '.join([mark] * 7)})"  # noqa: S608

    def write(self, cur: Any, entries: Sequence[Entry], at: Any) -> None:
        """Append `entries` at `at` (already bound for the driver); the transaction's last write."""
        if not self.kept or not entries:
            return
        cur.execute(self.move, (len(entries),))
        first = int(cur.fetchone()[0]) - len(entries) + 1
        rows = [(first + i, *entry, at) for i, entry in enumerate(entries)]
        if len(rows) == 1:
            cur.execute(self.insert, rows[0])
        else:
            cur.executemany(self.insert, rows)
