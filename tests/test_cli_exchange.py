"""vibecc-state export and import: both formats round-trip exactly; every malformed line is bad
input naming its line, changes nothing of its batch and leaves no new database behind."""

from __future__ import annotations

import csv
import io
import json
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from vibecc.state_store import PipelineHistory, PipelineState, StateStore
from vibecc.state_store.ops.exchange import HISTORY_FIELDS, read_history

if TYPE_CHECKING:
    from tests.helpers import snapshot
    from tests.test_cli import T0, as_json, ok, one_line_error, run
else:
    from helpers import snapshot
    from test_cli import T0, as_json, ok, one_line_error, run

TITLES = [
    'Commas, "quotes" and\nnewlines\r\nand a lone \r too',
    "Ünïcödé ✓ 日本語 🚀",
    " leading and trailing spaces ",
    "tab\tinside; semicolon; =1+1",
    "\x1b[31mred\x07 and \x9b CSI and \x7f DEL",
]


def _tricky(project_id: str) -> list[PipelineHistory]:
    """Records that stress a CSV round trip: every kind of text, None and not None, microseconds."""
    records = []
    for n, title in enumerate(TITLES, start=1):
        completed = T0 + timedelta(days=n, microseconds=n * 7)
        records.append(
            PipelineHistory(
                id=str(uuid.uuid4()),
                project_id=project_id,
                ticket_id=f"T-{n}" if n % 2 else str(n),
                ticket_title=title,
                final_state=PipelineState.FAILED if n == 2 else PipelineState.MERGED,
                branch_name=f"vibecc/{n}-x",
                pr_id=None if n % 2 else 100 + n,
                pr_url=None if n % 2 else f"https://github.com/acme/web/pull/{100 + n}?q=a,b",
                total_retries_ci=n,
                total_retries_review=0,
                started_at=completed - timedelta(seconds=n * 61),
                completed_at=completed,
                duration_seconds=n * 61,
            )
        )
    return records


@pytest.fixture
def tricky(store_url: str) -> list[PipelineHistory]:
    with StateStore(store_url) as store:
        project = store.create_project("Web", "acme/web")
        store.import_history(_tricky(project.id))
        return list(store.iter_history())


def _history_of(location: str) -> list[PipelineHistory]:
    with StateStore(location) as store:
        return list(store.iter_history())


@pytest.mark.parametrize("fmt", ["jsonl", "csv"])
@pytest.mark.parametrize("given", [False, True], ids=["detected", "given"])
def test_both_formats_round_trip_every_field_exactly(
    store_url: str, tricky: list[PipelineHistory], fresh_db: Any, tmp_path: Path, fmt: str, given: bool
) -> None:
    exported = ok(store_url, "export", "--format", fmt)
    dump = tmp_path / f"history.{fmt}"
    dump.write_bytes(exported.stdout_bytes)
    target = fresh_db()
    ok(target, "db", "upgrade")
    args = ["--format", fmt] if given else []
    assert as_json(target, "import", str(dump), *args) == {"inserted": 5, "skipped": 0}
    assert _history_of(target) == tricky
    assert ok(target, "export", "--format", fmt).stdout_bytes == exported.stdout_bytes
    assert as_json(target, "import", str(dump)) == {"inserted": 0, "skipped": 5}


def test_csv_export_is_rfc4180_with_a_header_and_empty_cells_for_none(
    store_url: str, tricky: list[PipelineHistory]
) -> None:
    text = ok(store_url, "export", "--format", "csv").stdout_bytes.decode("utf-8")
    rows = list(csv.reader(io.StringIO(text, newline="")))
    assert rows[0] == list(HISTORY_FIELDS)
    assert [row[HISTORY_FIELDS.index("ticket_title")] for row in rows[1:]] == TITLES
    assert rows[1][HISTORY_FIELDS.index("pr_id")] == ""
    assert rows[2][HISTORY_FIELDS.index("pr_id")] == "102"
    assert (
        rows[1][HISTORY_FIELDS.index("completed_at")] == (T0 + timedelta(days=1, microseconds=7)).isoformat()
    )


def test_csv_with_a_bom_and_crlf_from_a_spreadsheet_imports(
    store_url: str, tricky: list[PipelineHistory], fresh_db: Any, tmp_path: Path
) -> None:
    dump = tmp_path / "history.csv"
    dump.write_bytes(b"\xef\xbb\xbf" + ok(store_url, "export", "--format", "csv").stdout_bytes)
    target = fresh_db()
    ok(target, "db", "upgrade")
    assert as_json(target, "import", str(dump))["inserted"] == 5
    assert _history_of(target) == tricky


def test_csv_columns_may_come_in_any_order(
    store_url: str, tricky: list[PipelineHistory], tmp_path: Path
) -> None:
    exported = ok(store_url, "export", "--format", "csv").stdout_bytes.decode("utf-8")
    rows = list(csv.DictReader(io.StringIO(exported, newline="")))
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=list(reversed(HISTORY_FIELDS)))
    writer.writeheader()
    writer.writerows(rows)
    records = list(read_history(io.BytesIO(out.getvalue().encode())))
    assert records == tricky


def _export_lines(store_url: str, fmt: str) -> list[bytes]:
    return ok(store_url, "export", "--format", fmt).stdout_bytes.splitlines(keepends=True)


def _good_json(store_url: str) -> dict[str, Any]:
    return dict(json.loads(_export_lines(store_url, "jsonl")[0]))


BAD_JSONL: dict[str, tuple[Any, str]] = {
    "overflow-offset": ({"completed_at": "0001-01-01T00:00:00+05:00"}, "completed_at is out of the range"),
    "array": ("[1, 2]", "expected a JSON object, got list"),
    "nested": ("[" * 100_000 + "]" * 100_000, "line 2: "),
    "huge-int": ({"duration_seconds": 10**40}, "duration_seconds must be between"),
    "float": ({"total_retries_ci": 1.5}, "total_retries_ci must be a JSON integer"),
    "nan": ('{"id": NaN}', "line 2: "),
    "bool": ({"pr_id": True}, "pr_id must be a JSON integer"),
    "null-title": ({"ticket_title": None}, "ticket_title must be a JSON string"),
    "empty-title": ({"ticket_title": ""}, "ticket_title must not be empty"),
    "nul": ({"ticket_title": "a\x00b"}, "NUL"),
    "lone-surrogate": ('{"ticket_title": "\\ud800"}', "line 2: "),
    "not-utf8": (b"\xff\xfe{}", "line 2: not UTF-8 text"),
    "bad-date": ({"started_at": "yesterday"}, "started_at is not an ISO-8601 timestamp"),
    "naive-date": ({"started_at": "2025-01-01T00:00:00"}, "started_at has no UTC offset"),
    "state": ({"final_state": "coding"}, "final_state"),
    "string": ('"just a string"', "expected a JSON object, got str"),
    "long-id": ({"id": "x" * 37}, "id must be at most 36 characters"),
}


@pytest.mark.parametrize("case", sorted(BAD_JSONL))
def test_every_malformed_jsonl_line_is_bad_input_naming_its_line(
    store_url: str, tricky: list[PipelineHistory], fresh_db: Any, tmp_path: Path, case: str
) -> None:
    bad, fragment = BAD_JSONL[case]
    good = _good_json(store_url)
    if isinstance(bad, dict):
        line = json.dumps({**good, **bad}).encode()
    else:
        line = bad if isinstance(bad, bytes) else bad.encode()
    dump = tmp_path / "history.jsonl"
    dump.write_bytes(json.dumps(good).encode() + b"\n" + line + b"\n")
    target = fresh_db()
    ok(target, "db", "upgrade")
    before = snapshot(target)
    message = one_line_error(run(target, "import", str(dump)), 2, f"{dump} line 2: ", fragment)
    assert "--debug" not in message  # not reported as a bug
    assert snapshot(target) == before


BAD_CSV: dict[str, tuple[str, str]] = {
    "missing-column": ("DROP-LAST", "line 1: "),
    "extra-cell": ("EXTRA-CELL", "line 2: 14 cells, the header has 13"),
    "short-row": ("SHORT-ROW", "line 2: 12 cells, the header has 13"),
    "unclosed-quote": ("UNCLOSED", "line 2: "),
    "count-not-a-number": ("COUNT", "total_retries_ci must be an integer"),
    "unknown-column": ("RENAME", "unknown 'colour'"),
    "overflow-offset": ("OVERFLOW", "is out of the range of dates in UTC"),
}


def _bad_csv(exported: bytes, case: str) -> bytes:
    names, *records = csv.reader(io.StringIO(exported.decode("utf-8"), newline=""))
    cells = records[1]  # a title without line breaks

    def line(values: list[str]) -> bytes:
        out = io.StringIO()
        csv.writer(out, lineterminator="\r\n").writerow(values)
        return out.getvalue().encode()

    header, row = line(names), line(cells)

    if case == "DROP-LAST":
        return line(names[:-1]) + line(cells[:-1])
    if case == "RENAME":
        return line([*names[:-1], "colour"]) + row
    if case == "EXTRA-CELL":
        return header + line([*cells, "x"])
    if case == "SHORT-ROW":
        return header + line(cells[:-1])
    if case == "UNCLOSED":
        return header + row.rstrip() + b',"never closed\r\n'
    if case == "COUNT":
        cells[names.index("total_retries_ci")] = "1e3"
        return header + line(cells)
    cells[names.index("started_at")] = "0001-01-01T00:00:00+05:00"
    return header + line(cells)


@pytest.mark.parametrize("case", sorted(BAD_CSV))
def test_every_malformed_csv_record_is_bad_input_naming_its_line(
    store_url: str, tricky: list[PipelineHistory], fresh_db: Any, tmp_path: Path, case: str
) -> None:
    kind, fragment = BAD_CSV[case]
    dump = tmp_path / "history.csv"
    dump.write_bytes(_bad_csv(ok(store_url, "export", "--format", "csv").stdout_bytes, kind))
    target = fresh_db()
    ok(target, "db", "upgrade")
    before = snapshot(target)
    message = one_line_error(run(target, "import", str(dump)), 2, str(dump), fragment)
    assert "--debug" not in message  # not reported as a bug
    assert snapshot(target) == before


@pytest.mark.parametrize(
    ("content", "args", "fragment"),
    [
        (b"hello,world\r\n1,2\r\n", (), "line 1: not a history export"),
        (b"\n\n   \nnot json\n", (), "line 4: not a history export"),
        (b'{"id": 1}\n', ("--format", "csv"), "line 1: not the CSV header of a history export"),
        (b"id,project_id\r\n", ("--format", "jsonl"), "line 1: not valid JSON"),
        (b"x" * (2 << 20), (), "line 1: longer than"),
        (b"\xff\xfe\x00{\x00", (), "line 1: "),
    ],
)
def test_files_that_are_not_an_export_are_refused_and_create_no_database(
    tmp_path: Path, content: bytes, args: tuple[str, ...], fragment: str
) -> None:
    dump = tmp_path / "input"
    dump.write_bytes(content)
    target = tmp_path / "new" / "vibecc.db"
    one_line_error(run(str(target), "import", str(dump), *args), 2, fragment)
    assert not target.parent.exists()


def test_a_failed_import_into_a_new_database_leaves_no_file_behind(
    store_url: str, tricky: list[PipelineHistory], tmp_path: Path
) -> None:
    lines = _export_lines(store_url, "jsonl")
    dump = tmp_path / "history.jsonl"
    dump.write_bytes(lines[0] + lines[1] + b'{"id": "broken"}\n')
    target = tmp_path / "fresh" / "deeper" / "vibecc.db"
    one_line_error(run(str(target), "import", str(dump)), 2, "line 3: ", "nothing was imported")
    assert not (tmp_path / "fresh").exists()
    # With a batch committed before the bad line, the new store stays: it holds that batch.
    one_line_error(run(str(target), "import", str(dump), "--batch-size", "2"), 2, "line 3: ", "2 record(s)")
    assert len(_history_of(str(target))) == 2


def test_an_empty_file_imports_nothing(store_url: str, tmp_path: Path) -> None:
    dump = tmp_path / "empty.jsonl"
    dump.write_bytes(b"\n  \n")
    assert as_json(store_url, "import", str(dump)) == {"inserted": 0, "skipped": 0}


def test_export_into_a_pipe_writes_utf8_whatever_the_locale(
    store_url: str, tricky: list[PipelineHistory]
) -> None:
    text = ok(store_url, "export", "--format", "csv").stdout_bytes.decode("utf-8")
    assert "日本語 🚀" in text
    assert json.loads(ok(store_url, "export").stdout.splitlines()[1])["ticket_title"] == TITLES[1]


def test_dates_in_exports_are_utc_with_microseconds(store_url: str, tricky: list[PipelineHistory]) -> None:
    first = json.loads(ok(store_url, "export").stdout.splitlines()[0])
    moment = datetime.fromisoformat(first["completed_at"])
    assert moment.tzinfo is not None
    assert moment.utcoffset() == timedelta(0)
    assert moment == (T0 + timedelta(days=1, microseconds=7)).astimezone(UTC)
