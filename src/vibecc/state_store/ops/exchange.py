"""Records as JSON-ready dicts and back: the format of `--json`, `export` and `import`.

Timestamps are ISO-8601 in UTC with a +00:00 offset, states are their lower-case values, and
keys are the record's field names in declaration order. History goes out and comes back in
as JSON Lines or as CSV with the same fields (a header row, an empty cell for None), exactly.
A JSON Lines record also carries its run's timeline: "timeline", an array of its transitions
with the fields of TIMELINE_FIELDS (seconds_in_state is derived from the times, so left out).
Lines without "timeline" (exports made before it) are runs without a timeline; CSV has none.
"""

from __future__ import annotations

import csv
import itertools
import json
import re
from collections.abc import Callable, Iterable, Iterator
from dataclasses import fields
from datetime import UTC, datetime
from enum import Enum
from typing import IO, TYPE_CHECKING, Any

from .. import rules as check
from ..errors import ValidationError
from ..records import (
    Change,
    DurationPercentiles,
    HistoryStats,
    ImportResult,
    Pipeline,
    PipelineHistory,
    PipelineState,
    Project,
    StageStats,
    Transition,
)

if TYPE_CHECKING:
    from ..store import Progress, StateStore

HISTORY_FIELDS = tuple(f.name for f in fields(PipelineHistory))
TIMELINE_FIELDS = tuple(
    f.name for f in fields(Transition) if f.name not in ("pipeline_id", "seconds_in_state")
)
"""The fields of a transition in a JSON Lines record's "timeline" (the run's id is the record's)."""
Run = tuple[PipelineHistory, tuple[Transition, ...] | None]
"""A history record and its timeline (None: the line had none, or the format has none)."""
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


def to_dict(
    record: Project | Pipeline | PipelineHistory | Transition | StageStats | Change,
) -> dict[str, Any]:
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


def history_line(record: PipelineHistory, timeline: Iterable[Transition] | None = None) -> str:
    """One line of a JSON Lines export, with the run's timeline when one is given."""
    data = to_dict(record)
    if timeline is not None:
        data["timeline"] = [{name: plain(getattr(t, name)) for name in TIMELINE_FIELDS} for t in timeline]
    return json.dumps(data, separators=(",", ":"))


def with_timelines(store: StateStore, records: Iterable[PipelineHistory], chunk: int = 1000) -> Iterator[Run]:
    """Each record with its timeline, read with one get_timelines call per `chunk` records
    (a run pruned between the two reads comes with an empty timeline)."""
    for part in _chunks(records, chunk):
        found = store.get_timelines(record.id for record in part)
        yield from ((record, found[record.id]) for record in part)


def import_runs(
    store: StateStore, runs: Iterable[Run], *, batch_size: int = 1000, progress: Progress | None = None
) -> ImportResult:
    """import_history of records with their timelines, one call (one transaction) per batch, so
    only a batch's timelines are held at once. Where an id comes twice in a batch, the first
    record is the one imported, and its timeline with it."""
    inserted = skipped = 0
    for batch in _chunks(runs, batch_size):
        timelines: dict[str, tuple[Transition, ...] | None] = {}
        for record, timeline in batch:
            timelines.setdefault(record.id, timeline)
        done = store.import_history(
            [record for record, _ in batch],
            timelines={key: timeline for key, timeline in timelines.items() if timeline},
            batch_size=batch_size,
            progress=progress,
        )
        inserted, skipped = inserted + done.inserted, skipped + done.skipped
    return ImportResult(inserted, skipped)


def _chunks(items: Iterable[Any], size: int) -> Iterator[list[Any]]:
    size = check.integer("batch_size", size, minimum=1)
    iterator = iter(items)
    while part := list(itertools.islice(iterator, size)):
        yield part


FORMATS = ("jsonl", "csv")
MAX_LINE = 1 << 20
"""Bytes in one line of an import. A record is at most a few KiB, even all escaped; its timeline
adds about 200 bytes a transition plus the feedback texts, so a run whose transitions carry more
than about 1 MiB of feedback exports a line that import refuses."""
MAX_RECORD = 1 << 20
"""Bytes of one CSV record, which may span lines (newlines inside quoted titles)."""
_BOM = b"\xef\xbb\xbf"
_INTEGER = re.compile(r"-?[0-9]+")
_NULLABLE = ("pr_id", "pr_url")
"""Fields that may be None: an empty CSV cell. They cannot be the empty string."""


def csv_row(record: PipelineHistory) -> list[str]:
    """The record as CSV cells in HISTORY_FIELDS order (empty cell for None)."""
    return [
        "" if value is None else str(plain(value)) for value in (getattr(record, n) for n in HISTORY_FIELDS)
    ]


def read_history(
    source: IO[bytes], fmt: str | None = None, *, read: Callable[[int], None] | None = None
) -> Iterator[PipelineHistory]:
    """The history records of an export, without their timelines (see read_runs)."""
    return (record for record, _ in read_runs(source, fmt, read=read))


def read_runs(
    source: IO[bytes], fmt: str | None = None, *, read: Callable[[int], None] | None = None
) -> Iterator[Run]:
    """Parse an export lazily: JSON Lines or CSV as `export` writes them, the format given by
    `fmt` or told from the first line that is not blank. A UTF-8 BOM is ignored; blank lines
    are skipped. Each record comes with its timeline, or None without one (CSV, older lines).

    Args:
        read: called with the bytes read so far, after each line.

    Raises:
        ValidationError: naming the line number, at the first line that is not a valid record.
    """
    if fmt is not None and fmt not in FORMATS:
        raise ValidationError(f"format must be one of {', '.join(FORMATS)}, got {fmt!r}")
    lines = _lines(source, read)
    head: list[tuple[int, bytes]] = []
    for number, raw in lines:
        head.append((number, raw))
        if raw.strip():
            break
    if not head or not head[-1][1].strip():
        return iter(())
    number, first = head[-1]
    detected = "jsonl" if first.lstrip()[:1] in (b"{", b"[") else "csv"
    numbered = itertools.chain(head, lines)
    if (fmt or detected) == "jsonl":
        return _read_jsonl(numbered)
    return ((record, None) for record in _read_csv(numbered, guessed=fmt is None))


def _lines(source: IO[bytes], read: Callable[[int], None] | None) -> Iterator[tuple[int, bytes]]:
    """(line number, line) of `source`, each line at most MAX_LINE bytes, the BOM removed."""
    done = 0
    for number in itertools.count(1):
        raw = source.readline(MAX_LINE + 1)
        if not raw:
            return
        if len(raw) > MAX_LINE and not raw.endswith(b"\n"):
            raise ValidationError(f"line {number}: longer than {MAX_LINE:,} bytes, not a history record")
        done += len(raw)
        if read is not None:
            read(done)
        yield number, raw[len(_BOM) :] if number == 1 and raw.startswith(_BOM) else raw


def _read_jsonl(lines: Iterable[tuple[int, bytes]]) -> Iterator[Run]:
    for number, raw in lines:
        if not raw.strip():
            continue
        try:
            data = json.loads(raw.decode("utf-8"))
            record = run_from_dict(data)
        except UnicodeDecodeError:
            raise ValidationError(f"line {number}: not UTF-8 text") from None
        except json.JSONDecodeError as exc:
            raise ValidationError(
                f"line {number}: not valid JSON ({exc.msg} at column {exc.colno})"
            ) from None
        except ValidationError as exc:
            raise ValidationError(f"line {number}: {exc}") from None
        except (ValueError, TypeError, OverflowError, RecursionError) as exc:
            raise ValidationError(f"line {number}: not a history record ({type(exc).__name__})") from None
        yield record


def _read_csv(lines: Iterable[tuple[int, bytes]], *, guessed: bool) -> Iterator[PipelineHistory]:
    position = {"line": 0, "bytes": 0}

    def text() -> Iterator[str]:
        for number, raw in lines:
            position["line"] = number
            position["bytes"] += len(raw)
            if position["bytes"] > MAX_RECORD:
                raise ValidationError(f"line {number}: a CSV record longer than {MAX_RECORD:,} bytes")
            try:
                yield raw.decode("utf-8")
            except UnicodeDecodeError:
                raise ValidationError(f"line {number}: not UTF-8 text") from None

    reader = csv.reader(text(), strict=True)
    header: list[str] | None = None
    while True:
        start = position["line"] + 1
        position["bytes"] = 0
        try:
            row = next(reader)
        except StopIteration:
            return
        except csv.Error as exc:
            raise ValidationError(f"line {start}: not valid CSV ({exc})") from None
        if len(row) <= 1 and not "".join(row).strip():
            continue  # a blank line
        if header is None:
            header = _csv_header(row, start, guessed)
            continue
        if len(row) != len(header):
            raise ValidationError(f"line {start}: {len(row)} cells, the header has {len(header)}")
        try:
            record = history_from_dict(_typed(dict(zip(header, row, strict=True))))
        except ValidationError as exc:
            raise ValidationError(f"line {start}: {exc}") from None
        yield record


def _csv_header(row: list[str], number: int, guessed: bool) -> list[str]:
    if sorted(row) == sorted(HISTORY_FIELDS):
        return row
    shown = _shown(",".join(row))
    if guessed and not set(row) & set(HISTORY_FIELDS):
        raise ValidationError(
            f"line {number}: not a history export: neither a JSON object (JSON Lines) nor the CSV "
            f"header {','.join(HISTORY_FIELDS)} (got {shown})"
        )
    missing = [name for name in HISTORY_FIELDS if name not in row]
    unknown = [name for name in row if name not in HISTORY_FIELDS]
    parts = [f"missing {', '.join(missing)}"] if missing else []
    parts += [f"unknown {_shown(', '.join(unknown))}"] if unknown else []
    parts += ["a column twice"] if not parts else []
    raise ValidationError(f"line {number}: not the CSV header of a history export ({'; '.join(parts)})")


def _typed(cells: dict[str, str]) -> dict[str, Any]:
    """CSV cells as the values of the JSON form: integers, and None for an empty nullable cell."""
    data: dict[str, Any] = dict(cells)
    for name in _NULLABLE:
        if cells[name] == "":
            data[name] = None
    for name in (*_COUNTS, "pr_id"):
        if data[name] is not None:
            if not _INTEGER.fullmatch(cells[name]):
                raise ValidationError(f"{name} must be an integer, got {_shown(cells[name])}")
            data[name] = int(cells[name])
    return data


def _shown(value: Any) -> str:
    """A value quoted for a message, cut to 60 characters."""
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def history_from_dict(data: Any) -> PipelineHistory:
    """A history record from its JSON form (its timeline, if any, checked and left out)."""
    return run_from_dict(data)[0]


def run_from_dict(data: Any) -> Run:
    """A history record from its JSON form (exactly the fields of PipelineHistory) and its
    timeline, when the object has "timeline".

    Raises:
        ValidationError: a field is missing, unknown, of the wrong type or not acceptable.
    """
    if not isinstance(data, dict):
        raise ValidationError(f"expected a JSON object, got {type(data).__name__}")
    missing = [name for name in HISTORY_FIELDS if name not in data]
    unknown = sorted(set(data) - {*HISTORY_FIELDS, "timeline"})
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
        raise ValidationError(f"final_state {_shown(data['final_state'])} is not a pipeline state") from None
    if not state.is_terminal:
        raise ValidationError(f"final_state must be merged or failed in history, got {state.value!r}")
    values = {name: data[name] for name in HISTORY_FIELDS}
    values.update(final_state=state, **{name: _moment(name, data[name]) for name in _MOMENTS})
    record = check.history_record(PipelineHistory(**values))
    return record, None if "timeline" not in data else _timeline(record.id, data["timeline"])


def _timeline(run_id: str, data: Any) -> tuple[Transition, ...]:
    """The "timeline" of a JSON Lines record: JSON types checked here, the rest by rules.timeline."""
    if not isinstance(data, list):
        raise ValidationError(f"run {run_id} timeline must be a JSON array, got {_shown(data)}")
    found = []
    for index, item in enumerate(data):
        where = f"run {run_id} timeline[{index}]"
        if not isinstance(item, dict):
            raise ValidationError(f"{where} must be a JSON object, got {_shown(item)}")
        # What to_dict(Transition) adds: the run's id (checked against it) and a derived figure.
        missing = [name for name in TIMELINE_FIELDS if name not in item]
        unknown = sorted(set(item) - {*TIMELINE_FIELDS, "pipeline_id", "seconds_in_state"})
        if missing or unknown:
            parts = ([f"missing {', '.join(missing)}"] if missing else []) + (
                [f"unknown {_shown(', '.join(unknown))}"] if unknown else []
            )
            raise ValidationError(f"{where} is not a transition ({'; '.join(parts)})")
        for name in ("seq", "retry_count_ci", "retry_count_review"):
            _expect(f"{where}.{name}", item[name], int)
        for name, nullable in (
            ("pipeline_id", False),
            ("from_state", True),
            ("to_state", False),
            ("feedback", True),
        ):
            if name in item and not (nullable and item[name] is None):
                _expect(f"{where}.{name}", item[name], str)
        if not isinstance(item["reconstructed"], bool):
            raise ValidationError(
                f"{where}.reconstructed must be JSON true or false, got {_shown(item['reconstructed'])}"
            )
        values = {name: item[name] for name in TIMELINE_FIELDS}
        values.update(pipeline_id=item.get("pipeline_id", run_id), at=_moment(f"{where}.at", item["at"]))
        found.append(Transition(**values, seconds_in_state=None))
    return check.timeline(run_id, found)


def _expect(name: str, value: Any, kind: type) -> None:
    if isinstance(value, bool) or not isinstance(value, kind):
        raise ValidationError(
            f"{name} must be a JSON {'string' if kind is str else 'integer'}, got {_shown(value)}"
        )


def _moment(name: str, value: Any) -> datetime:
    _expect(name, value, str)
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        raise ValidationError(f"{name} is not an ISO-8601 timestamp: {_shown(value)}") from None
    if moment.tzinfo is None:
        raise ValidationError(f"{name} has no UTC offset: {_shown(value)}")
    try:
        return moment.astimezone(UTC)
    except OverflowError:  # 0001-01-01T00:00:00+05:00 is before the first moment in UTC
        raise ValidationError(f"{name} is out of the range of dates in UTC: {_shown(value)}") from None
