"""vibecc-state history list/stats, export, import and prune, on SQLite and PostgreSQL."""

from __future__ import annotations

import csv
import io
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
from click.testing import CliRunner

from vibecc.state_store import PipelineState, StateStore
from vibecc.state_store.cli import args as cli_args
from vibecc.state_store.cli import cli
from vibecc.state_store.cli import common as cli_common
from vibecc.state_store.cli.args import DATE
from vibecc.state_store.queries.buckets import RELATIVE_ERROR

if TYPE_CHECKING:
    from tests.helpers import snapshot
    from tests.test_cli import T0, Done, add_history, as_json, ok, one_line_error, run
else:
    from helpers import snapshot
    from test_cli import T0, Done, add_history, as_json, ok, one_line_error, run

# Four tickets of acme/web and one of acme/api, one day apart.
WEB = [
    Done(1, 0, 60, retries_ci=1),
    Done(2, 1, 120),
    Done(3, 2, 180, merged=False, retries_ci=2, retries_review=1),
    Done(4, 3, 600, retries_review=1),
]
API = [Done(7, 4, 3000)]


@pytest.fixture
def filled(store_url: str) -> dict[str, str]:
    with StateStore(store_url) as store:
        return {"web": add_history(store, "acme/web", WEB), "api": add_history(store, "acme/api", API)}


def test_history_list_filters_and_orders_newest_first(store_url: str, filled: dict[str, str]) -> None:
    everything = as_json(store_url, "history", "list")
    assert [r["ticket_id"] for r in everything] == ["7", "4", "3", "2", "1"]
    assert all(r["completed_at"].endswith("+00:00") for r in everything)
    assert everything[-1]["completed_at"] == T0.isoformat()
    web = as_json(store_url, "history", "list", "--project", "acme/web")
    assert [r["ticket_id"] for r in web] == ["4", "3", "2", "1"]
    failed = as_json(store_url, "history", "list", "--state", "failed")
    assert [r["ticket_id"] for r in failed] == ["3"]
    window = as_json(
        store_url, "history", "list", "--since", "2025-03-05", "--until", "2025-03-07T05:06:07.123456"
    )
    assert [r["ticket_id"] for r in window] == ["3", "2"]
    assert [r["ticket_id"] for r in as_json(store_url, "history", "list", "--limit", "2")] == ["7", "4"]

    table = ok(store_url, "history", "list", "--limit", "2").stdout
    assert "5 finished pipeline(s), newest 2 shown" in table
    assert "#7" in table
    assert "#1 " not in table


def test_history_stats_numbers(store_url: str, filled: dict[str, str]) -> None:
    web = as_json(store_url, "history", "stats", "--project", "acme/web")
    assert web == {
        "project_id": filled["web"],
        "since": None,
        "until": None,
        "total_completed": 4,
        "total_merged": 3,
        "total_failed": 1,
        "success_rate": 0.75,
        "avg_duration_seconds": 240.0,
        # From the kept histogram: within 4.9% of the nearest rank (the 2nd of 60, 120, 180,
        # 600 for p50); exact with --exact, below.
        "p50_duration_seconds": web["p50_duration_seconds"],
        "p95_duration_seconds": web["p95_duration_seconds"],
        "avg_retries_ci": 0.75,
        "avg_retries_review": 0.5,
        # Imported history brings no timeline: no stage visits are known.
        "stages": {
            state.value: {
                "state": state.value,
                "visits": 0,
                "total_seconds": 0.0,
                "mean_seconds": None,
                "p50_seconds": None,
                "p95_seconds": None,
            }
            for state in PipelineState
        },
    }
    assert abs(web["p50_duration_seconds"] - 120) <= RELATIVE_ERROR * 120
    assert abs(web["p95_duration_seconds"] - 600) <= RELATIVE_ERROR * 600
    exact = as_json(store_url, "history", "stats", "--project", "acme/web", "--exact")
    assert (exact["p50_duration_seconds"], exact["p95_duration_seconds"]) == (120.0, 600.0)
    assert {**exact, "p50_duration_seconds": 0, "p95_duration_seconds": 0} == {
        **web,
        "p50_duration_seconds": 0,
        "p95_duration_seconds": 0,
    }
    late = as_json(store_url, "history", "stats", "--since", "2025-03-06")
    assert (late["total_completed"], late["total_failed"], late["p50_duration_seconds"]) == (3, 1, 600.0)
    assert late["since"] == "2025-03-06T00:00:00+00:00"
    table = ok(store_url, "history", "stats", "--project", "acme/web", "--exact").stdout
    for text in ("History of acme/web", "75.0%", "4m 00s", "2m 00s", "10m 00s", "0.75"):
        assert text in table


def test_history_stats_of_an_empty_history(store_url: str) -> None:
    stats = as_json(store_url, "history", "stats")
    assert stats["total_completed"] == 0
    assert stats["p50_duration_seconds"] is None
    assert "0.0%" in ok(store_url, "history", "stats").stdout


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2025-01-02", datetime(2025, 1, 2, tzinfo=UTC)),
        ("2025-01-02T03:04:05", datetime(2025, 1, 2, 3, 4, 5, tzinfo=UTC)),
        ("2025-01-02T03:04:05Z", datetime(2025, 1, 2, 3, 4, 5, tzinfo=UTC)),
        ("2025-01-02T05:04:05+02:00", datetime(2025, 1, 2, 3, 4, 5, tzinfo=UTC)),
    ],
)
def test_dates_are_utc_and_naive_means_utc(text: str, expected: datetime) -> None:
    converted = DATE.convert(text, None, None)
    assert converted == expected
    assert converted.utcoffset() == timedelta(0)


@pytest.mark.parametrize(
    "args",
    [
        ("history", "list", "--since", "0001-01-01T00:00:00+05:00"),
        ("history", "stats", "--until", "9999-12-31T23:00:00-05:00"),
        ("prune", "--before", "0001-01-01T00:00:00+05:00", "--dry-run"),
        ("export", "--since", "0001-01-01T00:00:00+05:00"),
    ],
)
def test_a_date_outside_the_utc_range_is_bad_input(store_url: str, args: tuple[str, ...]) -> None:
    ok(store_url, "projects", "add", "acme/web", "--name", "Web")
    one_line_error(run(store_url, *args), 2, "is out of the range of dates")


@pytest.mark.parametrize(("days", "code"), [("36500", 0), ("36501", 2), ("1000000", 2), ("-1", 2)])
def test_keep_days_is_bounded(store_url: str, days: str, code: int) -> None:
    ok(store_url, "projects", "add", "acme/web", "--name", "Web")
    result = run(store_url, "prune", "--keep-days", days, "--dry-run")
    if code:
        one_line_error(result, code, "--keep-days", "0<=x<=36500")
    else:
        assert result.exit_code == 0, result.stderr
        assert "would delete 0 history record(s)" in result.stdout


def test_days_ago_out_of_the_range_of_dates_is_bad_input() -> None:
    with pytest.raises(cli_common.BadInput, match="out of the range of dates"):
        cli_args.days_ago(10**9)


# -- export / import ---------------------------------------------------------------------------


def _history_of(location: str) -> list[Any]:
    with StateStore(location) as store:
        return list(store.iter_history())


def test_export_import_round_trip_into_a_fresh_store(
    store_url: str, filled: dict[str, str], fresh_db: Any, tmp_path: Path
) -> None:
    exported = ok(store_url, "export")
    assert exported.stderr == ""  # no progress bar off a terminal
    lines = exported.stdout.splitlines()
    assert len(lines) == 5
    assert [json.loads(line)["ticket_id"] for line in lines] == ["1", "2", "3", "4", "7"]  # oldest first
    dump = tmp_path / "history.jsonl"
    dump.write_text(exported.stdout)

    target = fresh_db()
    imported = ok(target, "import", str(dump))
    assert "imported 5 history record(s), skipped 0" in imported.stdout
    assert _history_of(target) == _history_of(store_url)
    assert ok(target, "export").stdout == exported.stdout
    assert as_json(target, "import", str(dump)) == {"inserted": 0, "skipped": 5}
    assert as_json(target, "history", "stats") == as_json(store_url, "history", "stats")


def test_export_filters_and_csv(store_url: str, filled: dict[str, str]) -> None:
    jsonl = [
        json.loads(line) for line in ok(store_url, "export", "--project", "acme/web").stdout.splitlines()
    ]
    assert [r["ticket_id"] for r in jsonl] == ["1", "2", "3", "4"]
    since = ok(store_url, "export", "--since", "2025-03-06").stdout.splitlines()
    assert [json.loads(line)["ticket_id"] for line in since] == ["3", "4", "7"]
    rows = list(
        csv.DictReader(
            io.StringIO(ok(store_url, "export", "--format", "csv", "--project", "acme/web").stdout)
        )
    )
    # The same fields, but the timeline, which only JSON Lines carry.
    assert all(r.pop("timeline") == [] for r in jsonl)  # imported without timelines
    assert rows == [{k: "" if v is None else str(v) for k, v in r.items()} for r in jsonl]


def test_import_from_stdin(store_url: str, filled: dict[str, str], fresh_db: Any) -> None:
    target = fresh_db()
    result = run(target, "import", "-", input=ok(store_url, "export").stdout)
    assert result.exit_code == 0, result.stderr
    assert len(_history_of(target)) == 5


def _line(record: dict[str, Any], **changes: Any) -> str:
    return json.dumps({**record, **changes})


@pytest.mark.parametrize(
    ("bad", "fragment"),
    [
        ("{not json", "not valid JSON"),
        ("[1, 2]", "expected a JSON object"),
        ('{"id": "x"}', "missing project_id"),
        ("EXTRA", "unknown colour"),
        ("NAIVE", "has no UTC offset"),
        ("STATE", "'sleeping' is not a pipeline state"),
        ("TYPE", "duration_seconds must be a JSON integer"),
        ("BRANCH", "branch_name is not a valid git branch name"),
    ],
)
def test_a_malformed_line_stops_the_import_naming_it(
    store_url: str, filled: dict[str, str], fresh_db: Any, tmp_path: Path, bad: str, fragment: str
) -> None:
    good = [json.loads(line) for line in ok(store_url, "export").stdout.splitlines()]
    special = {
        "EXTRA": _line(good[4], colour="red"),
        "NAIVE": _line(good[4], completed_at="2025-03-08T05:06:07"),
        "STATE": _line(good[4], final_state="sleeping"),
        "TYPE": _line(good[4], duration_seconds="60"),
        "BRANCH": _line(good[4], branch_name="bad branch"),
    }
    # Lines 1-3 fill the first batch of 3; line 4 is good, line 5 is bad: the second batch is lost.
    lines = [json.dumps(r) for r in good[:4]] + [special.get(bad, bad)]
    dump = tmp_path / "history.jsonl"
    dump.write_text("\n".join(lines) + "\n")
    target = fresh_db()
    result = run(target, "import", str(dump), "--batch-size", "3")
    one_line_error(result, 2, f"{dump} line 5: ", fragment, "3 record(s) in earlier batches")
    assert [r.ticket_id for r in _history_of(target)] == ["1", "2", "3"]


# -- prune -------------------------------------------------------------------------------------


@pytest.mark.parametrize("batch_size", [1, 3, 4, 10])
def test_prune_deletes_exactly_the_old_rows_across_batch_boundaries(store_url: str, batch_size: int) -> None:
    with StateStore(store_url) as store:
        # Eight tickets before the cutoff, two exactly at it and after it.
        add_history(store, "acme/web", [Done(n, n, 60) for n in range(10)])
    cutoff = (T0 + timedelta(days=8)).isoformat()
    dry = ok(store_url, "prune", "--before", cutoff, "--dry-run", "--batch-size", str(batch_size))
    assert "would delete 8 history record(s)" in dry.stdout
    assert len(_history_of(store_url)) == 10

    pruned = ok(store_url, "prune", "--before", cutoff, "--batch-size", str(batch_size), "--yes")
    assert f"deleted 8 history record(s) completed before {cutoff}" in pruned.stdout
    assert pruned.stderr == ""
    assert [r.ticket_id for r in _history_of(store_url)] == ["8", "9"]
    stats = as_json(store_url, "history", "stats")
    assert (stats["total_completed"], stats["avg_duration_seconds"]) == (2, 60.0)
    again = as_json(store_url, "prune", "--before", cutoff, "--yes")
    assert again["deleted"] == 0
    assert again["dry_run"] is False


def test_prune_keep_days_and_project(store_url: str) -> None:
    now = datetime.now(UTC)
    days_back = [40, 20, 5, 1]
    with StateStore(store_url) as store:
        web = add_history(
            store, "acme/web", [Done(n, (now - T0).days - d, 60) for n, d in enumerate(days_back)]
        )
        add_history(store, "acme/api", [Done(9, (now - T0).days - 40, 60)])
        store.create_pipeline(web, 99, "Still active", "ticket-99")
    result = as_json(store_url, "prune", "--keep-days", "10", "--project", "acme/web", "--dry-run")
    assert (result["deleted"], result["dry_run"], result["project_id"]) == (2, True, web)
    assert len(_history_of(store_url)) == 5
    assert "deleted 2" in ok(store_url, "prune", "--keep-days", "10", "--project", "acme/web", "--yes").stdout
    assert sorted(r.ticket_id for r in _history_of(store_url)) == ["2", "3", "9"]
    assert len(as_json(store_url, "pipelines", "list")) == 1


def test_both_before_and_keep_days_is_bad_usage(store_url: str) -> None:
    one_line_error(run(store_url, "prune", "--before", "2025-01-01", "--keep-days", "3"), 2, "exactly one")


def test_progress_goes_to_stderr_on_a_terminal_and_stdout_stays_clean(
    store_url: str, filled: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(cli_common, "stderr_is_terminal", lambda: True)
    result = ok(store_url, "export")
    assert "exporting history" in result.stderr
    assert [json.loads(line)["ticket_id"] for line in result.stdout.splitlines()] == ["1", "2", "3", "4", "7"]


def test_import_skips_blank_lines_and_names_a_line_that_is_not_utf8(
    store_url: str, filled: dict[str, str], fresh_db: Any, tmp_path: Path
) -> None:
    first, second = ok(store_url, "export").stdout.encode().splitlines()[:2]
    dump = tmp_path / "history.jsonl"
    dump.write_bytes(first + b"\n\n   \n" + second + b"\n\xff\xfe\n")
    target = fresh_db()
    one_line_error(run(target, "import", str(dump)), 2, "line 5: not UTF-8 text", "nothing was imported")
    assert _history_of(target) == []  # the whole (only) batch is lost
    dump.write_bytes(first + b"\n\n   \n" + second + b"\n")
    assert as_json(target, "import", str(dump)) == {"inserted": 2, "skipped": 0}


# -- prune asks first ----------------------------------------------------------------------------


@pytest.fixture
def old_history(store_url: str) -> str:
    with StateStore(store_url) as store:
        add_history(store, "acme/web", [Done(n, n, 60) for n in range(5)])
    return store_url


def test_prune_without_yes_off_a_terminal_is_refused_and_deletes_nothing(old_history: str) -> None:
    before = snapshot(old_history)
    for args in (("--keep-days", "0"), ("--before", "2025-03-06", "--json")):
        result = run(old_history, "prune", *args)
        one_line_error(result, 2, "would delete", "give --yes", "stdin is not a terminal")
        assert result.stdout == ""
    assert snapshot(old_history) == before
    # Even with nothing old enough yet, so that a scheduled prune fails on its first run.
    one_line_error(run(old_history, "prune", "--before", "2000-01-01"), 2, "would delete 0 history")
    assert "would delete 5" in ok(old_history, "prune", "--keep-days", "0", "--dry-run").stdout


def test_prune_asks_showing_the_count_and_the_cutoff(
    old_history: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(cli_common, "stdin_is_terminal", lambda: True)
    before = snapshot(old_history)
    declined = run(old_history, "prune", "--before", "2025-03-06", "--project", "acme/web", input="n\n")
    question = declined.stderr.splitlines()[0]
    assert question == (
        "Delete 2 history record(s) of acme/web completed before 2025-03-06T00:00:00+00:00? [y/N]: n"
    )
    one_line_error(declined, 1, "not confirmed; did not delete 2 history record(s)", prompted=True)
    assert snapshot(old_history) == before
    accepted = run(old_history, "prune", "--before", "2025-03-06", input="y\n")
    assert accepted.exit_code == 0, accepted.stderr
    assert "deleted 2 history record(s)" in accepted.stdout
    assert [r.ticket_id for r in _history_of(old_history)] == ["2", "3", "4"]
    nothing = run(old_history, "prune", "--before", "2000-01-01")  # nothing to ask about
    assert nothing.exit_code == 0
    assert nothing.stderr == ""


def test_history_stats_help_says_what_is_kept_and_what_is_scanned() -> None:
    shown = " ".join(CliRunner().invoke(cli, ["history", "stats", "--help"]).stdout.split())
    assert "Without a window every figure comes from totals and histograms kept" in shown
    assert "within 4.9% of the exact ones" in shown
    assert "With --since/--until the window is scanned" in shown
    assert "--exact" in shown
