"""Records as JSON-ready dicts and back: the format of `--json`, `export` and `import`.

Timestamps are ISO-8601 in UTC with a +00:00 offset, states are their lower-case values, and
keys are the record's field names in declaration order.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from dataclasses import fields
from datetime import UTC, datetime
from enum import Enum
from typing import Any

from .errors import ValidationError
from .history import check_history_record
from .records import DurationPercentiles, HistoryStats, Pipeline, PipelineHistory, PipelineState, Project

HISTORY_FIELDS = tuple(f.name for f in fields(PipelineHistory))
_TEXT = ("id", "project_id", "ticket_id", "ticket_title", "branch_name")
_COUNTS = ("total_retries_ci", "total_retries_review", "duration_seconds")
_MOMENTS = ("started_at", "completed_at")


def plain(value: Any) -> Any:
    """A field value as JSON: datetimes in UTC ISO-8601, enums by value."""
    if isinstance(value, datetime):
        return value.astimezone(UTC).isoformat()
    if isinstance(value, Enum):
        return value.value
    return value


def to_dict(record: Project | Pipeline | PipelineHistory) -> dict[str, Any]:
    """Every field of a record, JSON-ready."""
    return {f.name: plain(getattr(record, f.name)) for f in fields(record)}


def stats_dict(stats: HistoryStats, percentiles: DurationPercentiles) -> dict[str, Any]:
    """The numbers of `history stats`, also shown by the HTML report."""
    return {
        "total_completed": stats.total_completed,
        "total_merged": stats.total_merged,
        "total_failed": stats.total_failed,
        "success_rate": stats.success_rate,
        "avg_duration_seconds": stats.avg_duration_seconds,
        "p50_duration_seconds": percentiles.p50,
        "p95_duration_seconds": percentiles.p95,
        "avg_retries_ci": stats.avg_retries_ci,
        "avg_retries_review": stats.avg_retries_review,
    }


def history_line(record: PipelineHistory) -> str:
    """One line of a JSON Lines export."""
    return json.dumps(to_dict(record), separators=(",", ":"))


def csv_row(record: PipelineHistory) -> list[str]:
    """The record as CSV cells in HISTORY_FIELDS order (empty cell for None)."""
    return [
        "" if value is None else str(plain(value)) for value in (getattr(record, n) for n in HISTORY_FIELDS)
    ]


def read_history(lines: Iterable[bytes]) -> Iterator[PipelineHistory]:
    """Parse JSON Lines of history records lazily; blank lines are skipped.

    Raises:
        ValidationError: naming the line number, at the first line that is not a valid record.
    """
    for number, raw in enumerate(lines, start=1):
        if not raw.strip():
            continue
        try:
            data = json.loads(raw.decode("utf-8"))
            record = history_from_dict(data)
        except UnicodeDecodeError:
            raise ValidationError(f"line {number}: not UTF-8 text") from None
        except json.JSONDecodeError as exc:
            raise ValidationError(
                f"line {number}: not valid JSON ({exc.msg} at column {exc.colno})"
            ) from None
        except ValidationError as exc:
            raise ValidationError(f"line {number}: {exc}") from None
        yield record


def history_from_dict(data: Any) -> PipelineHistory:
    """A history record from its JSON form (exactly the fields of PipelineHistory).

    Raises:
        ValidationError: a field is missing, unknown, of the wrong type or not acceptable.
    """
    if not isinstance(data, dict):
        raise ValidationError(f"expected a JSON object, got {type(data).__name__}")
    missing = [name for name in HISTORY_FIELDS if name not in data]
    unknown = sorted(set(data) - set(HISTORY_FIELDS))
    if missing or unknown:
        parts = ([f"missing {', '.join(missing)}"] if missing else []) + (
            [f"unknown {', '.join(unknown)}"] if unknown else []
        )
        raise ValidationError(f"not a history record ({'; '.join(parts)})")
    for name in _TEXT:
        _expect(name, data[name], str)
    for name in _COUNTS:
        _expect(name, data[name], int)
    if data["pr_id"] is not None:
        _expect("pr_id", data["pr_id"], int)
    if data["pr_url"] is not None:
        _expect("pr_url", data["pr_url"], str)
    _expect("final_state", data["final_state"], str)
    try:
        state = PipelineState(data["final_state"])
    except ValueError:
        raise ValidationError(f"final_state {data['final_state']!r} is not a pipeline state") from None
    values = {**data, "final_state": state, **{name: _moment(name, data[name]) for name in _MOMENTS}}
    return check_history_record(PipelineHistory(**values))


def _expect(name: str, value: Any, kind: type) -> None:
    if isinstance(value, bool) or not isinstance(value, kind):
        raise ValidationError(
            f"{name} must be a JSON {'string' if kind is str else 'integer'}, got {value!r}"
        )


def _moment(name: str, value: Any) -> datetime:
    _expect(name, value, str)
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        raise ValidationError(f"{name} is not an ISO-8601 timestamp: {value!r}") from None
    if moment.tzinfo is None:
        raise ValidationError(f"{name} has no UTC offset: {value!r}")
    return moment.astimezone(UTC)
