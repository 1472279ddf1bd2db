"""Pipeline transitions: every change of a pipeline's state, appended in the transaction that
made it, and read back as a timeline."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, bindparam, delete, false, func, select

from ..models import history, pipelines, transitions
from ..records import Pipeline, PipelineHistory, PipelineState, Transition
from . import rows

_COLUMNS = [
    transitions.c.pipeline_id,
    transitions.c.seq,
    transitions.c.project_id,
    transitions.c.from_state,
    transitions.c.to_state,
    transitions.c.at,
    transitions.c.retry_count_ci,
    transitions.c.retry_count_review,
    transitions.c.feedback,
    transitions.c.reconstructed,
]
_INSERT = transitions.insert()


def _append() -> Any:
    """INSERT the transition from the pipeline's last one to parameter "to_state", unless the
    last one already ends there: one statement, so a write that does not change the state
    appends nothing. Numbered after the last one; the pipeline's row lock (held by the UPDATE
    that changed the state) keeps two writers of one pipeline from taking the same number."""
    last = transitions.alias("last")
    newest = (
        select(func.max(transitions.c.seq))
        .where(transitions.c.pipeline_id == bindparam("pipeline_id"))
        .scalar_subquery()
    )
    source = select(
        last.c.pipeline_id,
        last.c.seq + 1,
        last.c.project_id,
        last.c.to_state,
        bindparam("to_state", type_=transitions.c.to_state.type),
        bindparam("at", type_=transitions.c.at.type),
        bindparam("retry_count_ci", type_=transitions.c.retry_count_ci.type),
        bindparam("retry_count_review", type_=transitions.c.retry_count_review.type),
        bindparam("feedback", type_=transitions.c.feedback.type),
        false(),
    ).where(
        last.c.pipeline_id == bindparam("pipeline_id"),
        last.c.seq == newest,
        last.c.to_state != bindparam("to_state"),
    )
    return transitions.insert().from_select([c.name for c in _COLUMNS], source)


_APPEND = _append()
_OF_PIPELINE = (
    select(*_COLUMNS).where(transitions.c.pipeline_id == bindparam("pipeline_id")).order_by(transitions.c.seq)
)
_DELETE = delete(transitions).where(transitions.c.pipeline_id == bindparam("pipeline_id"))
# Each transition with what ends its run's last state: an active pipeline of the id (its last
# state stays open), else the completion of the history record of the id.
_OF_PIPELINES = (
    select(*_COLUMNS, pipelines.c.id, history.c.completed_at)
    .select_from(
        transitions.outerjoin(pipelines, pipelines.c.id == transitions.c.pipeline_id).outerjoin(
            history, history.c.id == transitions.c.pipeline_id
        )
    )
    .where(transitions.c.pipeline_id.in_(bindparam("ids", expanding=True)))
    .order_by(transitions.c.pipeline_id, transitions.c.seq)
)
_HAVING_TRANSITIONS = (
    select(transitions.c.pipeline_id)
    .where(transitions.c.pipeline_id.in_(bindparam("ids", expanding=True)))
    .distinct()
)


def first(conn: Connection, pipeline: Pipeline) -> None:
    """The transition that creates a pipeline: into its state, at its creation."""
    conn.execute(
        _INSERT,
        {
            "pipeline_id": pipeline.id,
            "seq": 1,
            "project_id": pipeline.project_id,
            "from_state": None,
            "to_state": PipelineState(pipeline.state).value,
            "at": pipeline.created_at,
            "retry_count_ci": pipeline.retry_count_ci,
            "retry_count_review": pipeline.retry_count_review,
            "feedback": None,
            "reconstructed": False,
        },
    )


def append(conn: Connection, after: Pipeline, *, feedback_changed: bool) -> bool:
    """Record that `after` (as just written) is in its state now, when its last transition
    ended in another state; the feedback goes with it when the same write changed it."""
    params = {
        "pipeline_id": after.id,
        "to_state": PipelineState(after.state).value,
        "at": after.updated_at,
        "retry_count_ci": after.retry_count_ci,
        "retry_count_review": after.retry_count_review,
        "feedback": after.feedback if feedback_changed else None,
    }
    return bool(conn.execute(_APPEND, params).rowcount)


def of_pipeline(conn: Connection, pipeline_id: str, ended_at: datetime | None) -> list[Transition]:
    """The pipeline's transitions in order, each with the time spent in the state it entered;
    the last one runs until `ended_at` (its archive), or stays open when that is None."""
    return _timeline(
        [list(row) for row in conn.execute(_OF_PIPELINE, {"pipeline_id": pipeline_id})], ended_at
    )


def _timeline(found: Sequence[Sequence[Any]], ended_at: datetime | None) -> list[Transition]:
    """Transitions rows of one pipeline, in order, as its timeline ending at `ended_at`."""
    timeline = []
    for i, values in enumerate(found):
        end = found[i + 1][5] if i + 1 < len(found) else ended_at
        seconds = None if end is None else max(0.0, (end - values[5]).total_seconds())
        timeline.append(rows.transition(values, seconds))
    return timeline


def of_pipelines(conn: Connection, pipeline_ids: Sequence[str]) -> dict[str, tuple[Transition, ...]]:
    """The timelines of these pipelines, each as of_pipeline gives it (open while the pipeline
    is active, else ending at its history record's completion), one statement per chunk of
    ids. Every id is a key; an id without transitions, or of neither an active pipeline nor a
    history record, has an empty timeline."""
    found: dict[str, list[list[Any]]] = defaultdict(list)
    ends: dict[str, datetime | None] = {}
    for start in range(0, len(pipeline_ids), rows.IDS_PER_STATEMENT):
        chunk = list(pipeline_ids[start : start + rows.IDS_PER_STATEMENT])
        for *values, active, completed_at in conn.execute(_OF_PIPELINES, {"ids": chunk}):
            if active is not None or completed_at is not None:
                found[values[0]].append(values)
                ends[values[0]] = None if active is not None else completed_at
    return {
        pipeline_id: tuple(_timeline(found[pipeline_id], ends[pipeline_id])) if pipeline_id in ends else ()
        for pipeline_id in pipeline_ids
    }


def insert_timelines(conn: Connection, runs: Iterable[tuple[PipelineHistory, Sequence[Transition]]]) -> None:
    """Store the timelines of these runs (checked by rules.timeline), under each run's project.
    A run whose id has transitions already (an active pipeline of the same id) keeps those."""
    given = {record.id: (record, timeline) for record, timeline in runs if timeline}
    ids = sorted(given)
    for start in range(0, len(ids), rows.IDS_PER_STATEMENT):
        for (pipeline_id,) in conn.execute(
            _HAVING_TRANSITIONS, {"ids": ids[start : start + rows.IDS_PER_STATEMENT]}
        ):
            del given[pipeline_id]
    params = [_values(given[i][0], t) for i in ids if i in given for t in given[i][1]]
    if params:
        conn.execute(_INSERT, params)


def _values(record: PipelineHistory, t: Transition) -> dict[str, Any]:
    return {
        "pipeline_id": record.id,
        "seq": t.seq,
        "project_id": record.project_id,
        "from_state": None if t.from_state is None else PipelineState(t.from_state).value,
        "to_state": PipelineState(t.to_state).value,
        "at": t.at,
        "retry_count_ci": t.retry_count_ci,
        "retry_count_review": t.retry_count_review,
        "feedback": t.feedback,
        "reconstructed": t.reconstructed,
    }


def delete_of(conn: Connection, pipeline_ids: Sequence[str]) -> None:
    """Remove the transitions of these pipelines (deleted, or their history pruned)."""
    if pipeline_ids:
        conn.execute(_DELETE, [{"pipeline_id": pipeline_id} for pipeline_id in pipeline_ids])
