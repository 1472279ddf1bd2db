"""The change log: one row per committed write, numbered in commit order on both engines.

How the order holds. Each writing transaction, as its last statement before COMMIT, moves the
one counter row (UPDATE change_counter SET last_seq = last_seq + n RETURNING last_seq) and
inserts its changes under the numbers it got. On PostgreSQL the UPDATE holds the row until the
transaction ends, so the next writer gets its numbers only once this one has committed (or
rolled back): numbers are handed out in commit order, and a reader that has read every change
up to N can never later find a committed change below N, under READ COMMITTED or any other
level. The price is that writers take turns for that last statement and their commit (SQLite
runs one write transaction at a time anyway). The alternative, reading only up to the oldest
in-flight transaction (xid8 and pg_snapshot_xmin), lets writers overlap but makes every reader
track transaction ids and leaves gaps it must wait out; a counter is simpler to prove.

On PostgreSQL the same UPDATE calls pg_notify: the notification is delivered at commit, and
only then, to sessions listening on CHANNEL. It is a hint to wake waiters early, nothing more.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any, NamedTuple

from sqlalchemy import Connection, Select, bindparam, delete, func, select, true, update

from ..errors import StorageError
from ..models import change_counter, changes
from ..records import Change
from . import rows

CHANNEL = "vibecc_state_changes"
"""The PostgreSQL notification channel of the change log."""


class Entry(NamedTuple):
    """A change before it has its number and time."""

    kind: str
    entity_id: str
    project_id: str | None
    op: str
    version: int | None = None


_C = change_counter.c
_MOVE = update(change_counter).where(_C.id == 1).values(last_seq=_C.last_seq + bindparam("n"))
_MOVE_SQLITE = _MOVE.returning(_C.last_seq)
_MOVE_POSTGRESQL = _MOVE.returning(_C.last_seq, func.pg_notify(CHANNEL, ""))
_INSERT = changes.insert()
_HEAD = select(_C.last_seq, _C.pruned_through).where(_C.id == 1)
_COLUMNS = [changes.c[name] for name in ("seq", "kind", "entity_id", "project_id", "op", "version", "at")]
_SINCE = (
    select(*_COLUMNS)
    .where(changes.c.seq > bindparam("cursor"))
    .order_by(changes.c.seq)
    .limit(bindparam("limit"))
)
_SINCE_OF_PROJECT = _SINCE.where(changes.c.project_id == bindparam("project_id"))


def _with_head(since: Select[Any]) -> Select[Any]:
    """The counter row joined to a page of the log: one statement, so one snapshot, on both
    engines (the counter comes back once with NULLs when the page is empty)."""
    page = since.subquery("page")
    joined = change_counter.outerjoin(page, true())
    head_and_page = select(_C.last_seq, _C.pruned_through, *page.c).select_from(joined)
    return head_and_page.where(_C.id == 1).order_by(page.c.seq)


_PAGE = _with_head(_SINCE)
_PAGE_OF_PROJECT = _with_head(_SINCE_OF_PROJECT)
_FIRST_NOT_BEFORE = select(func.min(changes.c.seq)).where(changes.c.at >= bindparam("before"))
_DELETE_THROUGH = delete(changes).where(changes.c.seq <= bindparam("through"))
_MARK_PRUNED = (
    update(change_counter)
    .where(_C.id == 1, _C.pruned_through < bindparam("through"))
    .values(pruned_through=bindparam("through"))
)


def log(conn: Connection, entries: Sequence[Entry], at: datetime) -> None:
    """Append the transaction's changes; call it as the transaction's last statement."""
    if not entries:
        return
    move = _MOVE_POSTGRESQL if conn.dialect.name == "postgresql" else _MOVE_SQLITE
    last = rows.stored_int("change_counter.last_seq", conn.execute(move, {"n": len(entries)}).scalar_one())
    first = last - len(entries) + 1
    conn.execute(
        _INSERT,
        [{"seq": first + i, **entry._asdict(), "at": at} for i, entry in enumerate(entries)],
    )


def head(conn: Connection) -> tuple[int, int]:
    """(the last change number given out, the last one pruned)."""
    last, pruned = conn.execute(_HEAD).one()
    return rows.stored_int("change_counter.last_seq", last), rows.stored_int(
        "change_counter.pruned_through", pruned
    )


def page(conn: Connection, cursor: int, limit: int, project_id: str | None) -> tuple[int, int, list[Change]]:
    """(last change number, last pruned, up to `limit` changes after `cursor`), all read in
    one statement, so the page and the head are of the same moment."""
    params: dict[str, Any] = {"cursor": cursor, "limit": limit}
    statement = _PAGE
    if project_id is not None:
        statement, params["project_id"] = _PAGE_OF_PROJECT, project_id
    found = conn.execute(statement, params).all()
    if not found:
        raise StorageError("the change log's counter row is missing")
    last = rows.stored_int("change_counter.last_seq", found[0][0])
    pruned = rows.stored_int("change_counter.pruned_through", found[0][1])
    return last, pruned, [rows.change(row[2:]) for row in found if row[2] is not None]


def through_before(conn: Connection, before: datetime) -> int:
    """The last number up to which every change was written before `before`. A change's time
    is its writer's clock before its commit, so a change numbered later may carry an earlier
    time than one before it: the prune stops at the first change written at or after
    `before`, and none of those is removed."""
    found = conn.execute(_FIRST_NOT_BEFORE, {"before": before}).scalar()
    if found is None:
        return head(conn)[0]
    return rows.stored_int("changes.seq", found) - 1


_RESTART = (
    update(change_counter)
    .where(_C.id == 1)
    .values(last_seq=_C.last_seq + 1, pruned_through=_C.last_seq + 1)
    .returning(_C.last_seq)
)


def restart(conn: Connection) -> int:
    """Empty the log and expire every cursor given out before (a copy wrote the tables
    without logging): a reader then resynchronises from the tables. The new cursor."""
    conn.execute(delete(changes))
    return rows.stored_int("change_counter.last_seq", conn.execute(_RESTART).scalar_one())


def prune_through(conn: Connection, through: int) -> int:
    """Delete the changes numbered up to `through`; the rows deleted."""
    deleted = conn.execute(_DELETE_THROUGH, {"through": through}).rowcount
    conn.execute(_MARK_PRUNED, {"through": through})
    return int(deleted)
