"""Row <-> record conversion: every row a query returns becomes a record here, checked."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import fields
from datetime import datetime
from typing import Any, TypeVar, get_args, get_type_hints

from sqlalchemy import Row

from .. import rules as check
from ..errors import StorageError
from ..records import (
    Change,
    DeletedProject,
    HistoryStats,
    Pipeline,
    PipelineHistory,
    PipelineState,
    Project,
    Transition,
)

IDS_PER_STATEMENT = 1000
"""Ids bound to one `IN (...)` statement: within every engine's parameter limit."""
R = TypeVar("R", Project, Pipeline, PipelineHistory, DeletedProject, Transition, Change)

_STATES = {state.value: state for state in PipelineState}
_PIPELINE_STATE_AT = [f.name for f in fields(Pipeline)].index("state")
_HISTORY_STATE_AT = [f.name for f in fields(PipelineHistory)].index("final_state")


def _kinds(record: type) -> list[tuple[int, str, type, bool]]:
    """(position, field, Python type, may be None) of each field a row must hold exactly."""
    hints = get_type_hints(record)
    kinds = []
    for at, f in enumerate(fields(record)):
        options = get_args(hints[f.name]) or (hints[f.name],)
        kind = next(o for o in options if o is not type(None))
        if kind is not PipelineState:  # checked by state()
            kinds.append((at, f.name, kind, type(None) in options))
    return kinds


_KINDS = {
    record: _kinds(record)
    for record in (Project, Pipeline, PipelineHistory, DeletedProject, Transition, Change)
}


def _checked(record: type[R], values: Sequence[Any]) -> R:
    """The record of a row, when every value is of its field's type. SQLite keeps whatever a
    hand edit or a damaged file puts in a column (text in an integer column, say): such a row
    is a StorageError, not a record with a str for a version."""
    for at, name, kind, nullable in _KINDS[record]:
        value = values[at]
        if type(value) is not kind and not (nullable and value is None):
            shown = repr(value) if len(repr(value)) <= 40 else repr(value)[:37] + "..."
            raise StorageError(
                f"a stored {record.__name__} has a {name} that is not a {kind.__name__}: {shown}"
            )
    return record(*values)


def project(row: Row[Any] | Sequence[Any]) -> Project:
    return _checked(Project, row)


def deleted_project(row: Row[Any] | Sequence[Any]) -> DeletedProject:
    return _checked(DeletedProject, row)


def pipeline(row: Row[Any] | Sequence[Any]) -> Pipeline:
    values = list(row)
    values[_PIPELINE_STATE_AT] = state(values[_PIPELINE_STATE_AT])
    return _checked(Pipeline, values)


def history_record(row: Row[Any] | Sequence[Any]) -> PipelineHistory:
    values = list(row)
    values[_HISTORY_STATE_AT] = state(values[_HISTORY_STATE_AT])
    return _checked(PipelineHistory, values)


def transition(row: Sequence[Any], seconds_in_state: float | None) -> Transition:
    """A timeline entry: a transitions row (without its project_id) and the time spent in the
    state it entered."""
    pipeline_id, seq, _project_id, from_state, to_state, *rest = row
    source = None if from_state is None else state(from_state)
    return _checked(Transition, [pipeline_id, seq, source, state(to_state), *rest, seconds_in_state])


def change(row: Sequence[Any]) -> Change:
    return _checked(Change, list(row))


def stage_cell(row: Sequence[Any]) -> Sequence[Any]:
    """A stage_histogram row as stored: (project_id, state, bucket, visits, sum_ms)."""
    project_id, stored_state, index, visits, total = row
    state(stored_state)
    for name, value in (("bucket", index), ("visits", visits), ("sum_ms", total)):
        if type(value) is not int:
            raise StorageError(f"a stored stage histogram {name} is not an int: {str(value)[:40]!r}")
    if type(project_id) is not str:
        raise StorageError("a stored stage histogram project_id is not a str")
    return row


def state(stored: Any) -> PipelineState:
    found = _STATES.get(stored) if isinstance(stored, str) else None
    if found is None:
        # Only a hand-edited or damaged row holds anything else (a CHECK constraint guards it).
        raise StorageError(f"a stored pipeline state is not a state: {str(stored)[:40]!r}")
    return found


def values_of(record: Project | Pipeline | PipelineHistory) -> dict[str, Any]:
    """The record as column values (enum members as their string values)."""
    values = {f.name: getattr(record, f.name) for f in fields(record)}
    for name in ("state", "final_state"):
        if name in values:
            values[name] = PipelineState(values[name]).value
    return values


def history_from_pipeline(source: Pipeline, completed_at: datetime) -> PipelineHistory:
    """The history record of `source` finished at `completed_at` (the id is the pipeline's)."""
    # A clock set back makes a negative span: count it as none.
    duration = check.duration(
        "duration of the pipeline (completed_at - created_at)",
        max(0, int((completed_at - source.created_at).total_seconds())),
    )
    return PipelineHistory(
        id=source.id,
        project_id=source.project_id,
        ticket_id=source.ticket_id,
        ticket_title=source.ticket_title,
        final_state=source.state,
        branch_name=source.branch_name,
        pr_id=source.pr_id,
        pr_url=source.pr_url,
        total_retries_ci=source.retry_count_ci,
        total_retries_review=source.retry_count_review,
        started_at=source.created_at,
        completed_at=completed_at,
        duration_seconds=duration,
    )


def stats_from_sums(sums: Sequence[int | None]) -> HistoryStats:
    completed, merged, failed, duration, retries_ci, retries_review = (int(s or 0) for s in sums)
    if not completed:
        return HistoryStats(0, 0, 0, 0.0, 0.0, 0.0)
    return HistoryStats(
        total_completed=completed,
        total_merged=merged,
        total_failed=failed,
        avg_duration_seconds=duration / completed,
        avg_retries_ci=retries_ci / completed,
        avg_retries_review=retries_review / completed,
    )


def stored_int(field: str, value: Any) -> int:
    """An int read back on its own; a hand-edited or damaged row may hold anything."""
    if type(value) is not int:
        raise StorageError(f"a stored {field} is not an int: {str(value)[:40]!r}")
    return value
