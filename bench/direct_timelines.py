"""The timeline writes of the direct baseline, on the driver's cursor: the transition of each
state change, and on archive the run's stage visits and duration into the kept histograms;
the same statements the store sends, so the baseline does the same inserts."""

from __future__ import annotations

import math
from collections import defaultdict
from datetime import datetime
from typing import Any

from vibecc.state_store import Pipeline, PipelineHistory, PipelineState

COLS = (
    "pipeline_id, seq, project_id, from_state, to_state, at, retry_count_ci, retry_count_review, "
    "feedback, reconstructed"
)
_LOG_RATIO = math.log(1.1)


def bucket(ms: int) -> int:
    return 0 if ms < 1 else int(math.log(ms) / _LOG_RATIO) + 1


def table_names(cur: Any, sqlite: bool) -> set[str]:
    """The tables of the schema, to see which of the store's tables this version has."""
    if sqlite:
        cur.execute("SELECT name FROM sqlite_master WHERE type = 'table'")
    else:
        cur.execute("SELECT tablename FROM pg_tables WHERE schemaname = current_schema()")
    return {row[0] for row in cur.fetchall()}


def tables(names: set[str]) -> tuple[bool, bool]:
    """Whether the schema keeps (timelines, the duration histogram): an older package version
    (bench/compare.py) has neither, and its baseline then writes neither."""
    return "pipeline_transitions" in names, "duration_histogram" in names


def first(cur: Any, mark: str, bind: Any, record: Pipeline) -> None:
    cur.execute(
        f"INSERT INTO pipeline_transitions ({COLS}) VALUES ({', '.join([mark] * 10)})",  # noqa: S608
        (
            record.id,
            1,
            record.project_id,
            None,
            PipelineState(record.state).value,
            bind(record.created_at),
            record.retry_count_ci,
            record.retry_count_review,
            None,
            False,
        ),
    )


def append(cur: Any, mark: str, bind: Any, after: Pipeline, feedback_changed: bool) -> None:
    """INSERT ... SELECT from the last transition unless it already ends in the new state."""
    m = mark
    cur.execute(
        f"INSERT INTO pipeline_transitions ({COLS}) "  # noqa: S608
        f"SELECT pipeline_id, seq + 1, project_id, to_state, {m}, {m}, {m}, {m}, {m}, {m} "
        f"FROM pipeline_transitions WHERE pipeline_id = {m} AND seq = "
        f"(SELECT max(seq) FROM pipeline_transitions WHERE pipeline_id = {m}) AND to_state != {m}",
        (
            after.state.value,
            bind(after.updated_at),
            after.retry_count_ci,
            after.retry_count_review,
            after.feedback if feedback_changed else None,
            False,
            after.id,
            after.id,
            after.state.value,
        ),
    )


def archived(cur: Any, mark: str, load: Any, record: PipelineHistory, durations: bool) -> None:
    """Count the archived run's stage visits (and its duration) into the kept histograms."""
    m = mark
    cur.execute(
        "SELECT project_id, to_state, at, reconstructed FROM pipeline_transitions "  # noqa: S608
        f"WHERE pipeline_id = {m} ORDER BY seq",
        (record.id,),
    )
    found = cur.fetchall()
    cells: dict[tuple[str, str, int], list[int]] = defaultdict(lambda: [0, 0])
    for i, (project_id, state, at, reconstructed) in enumerate(found):
        start: datetime = load(at)
        if start > record.completed_at:
            continue
        end = load(found[i + 1][2]) if i + 1 < len(found) else record.completed_at
        end = min(end, record.completed_at)
        if not reconstructed:
            ms = max(0, round((end - start).total_seconds() * 1000))
            cell = cells[project_id, state, bucket(ms)]
            cell[0] += 1
            cell[1] += ms
    if cells:
        cur.executemany(
            "INSERT INTO stage_histogram (project_id, state, bucket, visits, sum_ms) "  # noqa: S608
            f"VALUES ({m}, {m}, {m}, {m}, {m}) ON CONFLICT (project_id, state, bucket) DO UPDATE SET "
            "visits = stage_histogram.visits + excluded.visits, "
            "sum_ms = stage_histogram.sum_ms + excluded.sum_ms",
            [(p, s, b, n, total) for (p, s, b), (n, total) in sorted(cells.items())],
        )
    if durations:
        cur.execute(
            f"INSERT INTO duration_histogram (project_id, bucket, runs) VALUES ({m}, {m}, 1) "  # noqa: S608
            "ON CONFLICT (project_id, bucket) DO UPDATE SET runs = duration_histogram.runs + excluded.runs",
            (record.project_id, bucket(record.duration_seconds * 1000)),
        )
