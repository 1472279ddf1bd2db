"""vibecc-state export and import carry each run's timeline in JSON Lines: an exported store
imported into an empty one has the same timelines and stage stats; lines of older exports (no
"timeline") still import; a malformed timeline is bad input naming its line and run."""

from __future__ import annotations

import csv
import io
import json
import uuid
from collections.abc import Callable
from datetime import datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

import vibecc.state_store.store as store_module
from vibecc.state_store import PipelineState, ProjectNotFoundError, StateStore
from vibecc.state_store.ops.exchange import HISTORY_FIELDS, TIMELINE_FIELDS

if TYPE_CHECKING:
    from tests.helpers import snapshot
    from tests.test_cli import T0, Done, add_history, as_json, ok, one_line_error, run
else:
    from helpers import snapshot
    from test_cli import T0, Done, add_history, as_json, ok, one_line_error, run

QUEUED, CODING, TESTING, REVIEW, MERGED, FAILED = PipelineState
WALKS = [
    ("acme/web", [CODING, TESTING, MERGED]),
    ("acme/web", [CODING, TESTING, CODING, TESTING, REVIEW, MERGED]),
    ("acme/api", [CODING, REVIEW, CODING, FAILED]),
]


@pytest.fixture
def source(store_url: str, monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Three archived runs walked through their states on a clock that moves 4.5 s a reading,
    one run imported without a timeline and one pipeline still active; the history ids."""
    moment = [T0]

    def now() -> datetime:
        moment[0] += timedelta(seconds=4.5)
        return moment[0]

    monkeypatch.setattr(store_module, "now", now)
    with StateStore(store_url) as store:
        for ticket, (repo, states) in enumerate(WALKS, start=1):
            try:
                project = store.get_project_by_repo(repo)
            except ProjectNotFoundError:
                project = store.create_project(repo, repo)
            pipeline = store.create_pipeline(project.id, ticket, f"ticket {ticket}", f"vibecc/{ticket}")
            for n, state in enumerate(states):
                feedback = f'retry {n}: "lint"\nfailed \x1b[31m' if state is CODING and n else None
                store.update_pipeline(pipeline.id, state=state, retry_count_ci=n, feedback=feedback)
            store.archive_pipeline(pipeline.id)
        add_history(store, "acme/web", [Done(9, 30, 60)])
        store.create_pipeline(project.id, 99, "still active", "vibecc/99")
        return [record.id for record in store.iter_history()]


def _export(location: str, tmp_path: Path, edit: Callable[[dict[str, Any]], None] | None = None) -> Path:
    """The JSON Lines export of `location` in a file, each line edited by `edit` when given."""
    lines = [json.loads(line) for line in ok(location, "export").stdout.splitlines()]
    for line in lines:
        if edit is not None:
            edit(line)
    dump = tmp_path / f"history-{uuid.uuid4().hex[:6]}.jsonl"
    dump.write_text("".join(json.dumps(line) + "\n" for line in lines), encoding="utf-8")
    return dump


def _target(fresh_db: Any) -> str:
    target = str(fresh_db())
    ok(target, "db", "upgrade")
    return target


def test_jsonl_export_nests_each_runs_timeline(store_url: str, source: list[str]) -> None:
    lines = [json.loads(line) for line in ok(store_url, "export").stdout.splitlines()]
    assert [line["id"] for line in lines] == source
    with StateStore(store_url) as store:
        for line in lines:
            timeline = store.get_timeline(line["id"])
            assert [list(t) for t in line["timeline"]] == [list(TIMELINE_FIELDS)] * len(timeline)
            assert line["timeline"] == [
                {
                    "seq": t.seq,
                    "from_state": None if t.from_state is None else t.from_state.value,
                    "to_state": t.to_state.value,
                    "at": t.at.isoformat(),
                    "retry_count_ci": t.retry_count_ci,
                    "retry_count_review": t.retry_count_review,
                    "feedback": t.feedback,
                    "reconstructed": t.reconstructed,
                }
                for t in timeline
            ]
    assert [len(line["timeline"]) for line in lines] == [4, 7, 5, 0]  # the last was imported bare
    assert lines[0]["timeline"][0]["from_state"] is None
    assert lines[0]["timeline"][0]["to_state"] == "queued"


def test_export_then_import_gives_the_same_timelines_and_stage_stats(
    store_url: str, source: list[str], fresh_db: Any, tmp_path: Path
) -> None:
    dump = _export(store_url, tmp_path)
    target = _target(fresh_db)
    assert as_json(target, "import", str(dump), "--batch-size", "2") == {"inserted": 4, "skipped": 0}
    with StateStore(store_url) as before, StateStore(target) as after:
        for history_id in source:
            assert after.get_timeline(history_id) == before.get_timeline(history_id)
        assert after.get_stage_stats()[CODING].visits == 5
        assert after.get_stage_stats() == before.get_stage_stats()
        for project in before.list_projects():
            assert after.get_stage_stats(project.id) == before.get_stage_stats(project.id)
    assert ok(target, "export").stdout_bytes == ok(store_url, "export").stdout_bytes

    # Again: every run is present, so it is skipped and its timeline left as it is.
    imported = snapshot(target)
    assert as_json(target, "import", str(dump)) == {"inserted": 0, "skipped": 4}
    assert snapshot(target) == imported


def test_lines_without_a_timeline_import_as_runs_without_one(
    store_url: str, source: list[str], fresh_db: Any, tmp_path: Path
) -> None:
    old = _export(store_url, tmp_path, lambda line: line.pop("timeline"))
    target = _target(fresh_db)
    assert as_json(target, "import", str(old)) == {"inserted": 4, "skipped": 0}
    with StateStore(store_url) as before, StateStore(target) as after:
        assert list(after.iter_history()) == list(before.iter_history())
        assert all(after.get_timeline(history_id) == [] for history_id in source)
        assert all(stats.visits == 0 for stats in after.get_stage_stats().values())
    # The runs are present now: importing them with their timelines skips them, timelines too.
    bare = snapshot(target)
    assert as_json(target, "import", str(_export(store_url, tmp_path))) == {"inserted": 0, "skipped": 4}
    assert snapshot(target) == bare


def test_a_timeline_may_name_its_run_and_carry_seconds_in_state(
    store_url: str, source: list[str], fresh_db: Any, tmp_path: Path
) -> None:
    def add(line: dict[str, Any]) -> None:
        for transition in line["timeline"]:
            transition.update(pipeline_id=line["id"], seconds_in_state=12345.5)

    target = _target(fresh_db)
    ok(target, "import", str(_export(store_url, tmp_path, add)))
    with StateStore(store_url) as before, StateStore(target) as after:
        assert all(after.get_timeline(i) == before.get_timeline(i) for i in source)


Edit = Callable[[list[dict[str, Any]]], Any]
"""The exported timeline of a run -> what the line holds instead."""


def _set(index: int, **changes: Any) -> Edit:
    return lambda t: [*t[:index], {**t[index], **changes}, *t[index + 1 :]]


def _drop(index: int, name: str) -> Edit:
    return lambda t: [*t[:index], {k: v for k, v in t[index].items() if k != name}, *t[index + 1 :]]


BAD_TIMELINES: dict[str, tuple[Edit, str]] = {
    "not-an-array": (lambda t: {"seq": 1}, "timeline must be a JSON array"),
    "not-an-object": (lambda t: [1, *t[1:]], "timeline[0] must be a JSON object, got 1"),
    "missing-at": (_drop(0, "at"), "timeline[0] is not a transition (missing at)"),
    "unknown-field": (_set(1, colour="red"), "timeline[1] is not a transition (unknown 'colour')"),
    "seq-string": (_set(0, seq="1"), "timeline[0].seq must be a JSON integer, got '1'"),
    "seq-true": (_set(0, seq=True), "timeline[0].seq must be a JSON integer, got True"),
    "seq-float": (_set(0, seq=1.0), "timeline[0].seq must be a JSON integer"),
    "seq-huge": (_set(0, seq=10**40), "timeline[0].seq must be between 1 and"),
    "seq-gap": (_set(1, seq=3), "timeline[1].seq must be 2"),
    "state-by-name": (_set(0, to_state="QUEUED"), "timeline[0].to_state must be a PipelineState"),
    "from-elsewhere": (_set(1, from_state="review"), "timeline[1].from_state must be 'queued'"),
    "first-from-a-state": (_set(0, from_state="coding"), "timeline[0].from_state must be None"),
    "at-naive": (_set(0, at="2025-01-01T00:00:00"), "timeline[0].at has no UTC offset"),
    "at-number": (_set(0, at=12), "timeline[0].at must be a JSON string"),
    "at-backwards": (
        lambda t: _set(1, at=t[0]["at"].replace("+00:00", "+01:00"))(t),
        "timeline[1].at must not be before",
    ),
    "reconstructed-0": (_set(0, reconstructed=0), "timeline[0].reconstructed must be JSON true or false"),
    "feedback-number": (_set(0, feedback=5), "timeline[0].feedback must be a JSON string"),
    "retries-negative": (_set(2, retry_count_ci=-1), "timeline[2].retry_count_ci must be between 0"),
    "another-run": (_set(0, pipeline_id=str(uuid.uuid4())), "timeline[0].pipeline_id is not the run's id"),
}


@pytest.mark.parametrize("case", sorted(BAD_TIMELINES))
def test_a_malformed_timeline_is_bad_input_naming_its_line_and_run(
    store_url: str, source: list[str], fresh_db: Any, tmp_path: Path, case: str
) -> None:
    edit, fragment = BAD_TIMELINES[case]
    lines = ok(store_url, "export").stdout_bytes.splitlines(keepends=True)
    bad = json.loads(lines[1])
    bad["timeline"] = edit(bad["timeline"])
    dump = tmp_path / "history.jsonl"
    dump.write_bytes(lines[0] + json.dumps(bad).encode() + b"\n" + lines[2])
    target = _target(fresh_db)
    before = snapshot(target)
    # Lines 1 and 2 are one batch: line 1 is not written either.
    one_line_error(run(target, "import", str(dump)), 2, f"line 2: run {source[1]} ", fragment)
    assert snapshot(target) == before


def test_batches_before_a_malformed_timeline_stay_with_their_timelines(
    store_url: str, source: list[str], fresh_db: Any, tmp_path: Path
) -> None:
    lines = ok(store_url, "export").stdout_bytes.splitlines(keepends=True)
    bad = json.loads(lines[1])
    bad["timeline"][1]["seq"] = 5
    dump = tmp_path / "history.jsonl"
    dump.write_bytes(lines[0] + json.dumps(bad).encode() + b"\n")
    target = _target(fresh_db)
    result = run(target, "import", str(dump), "--batch-size", "1")
    one_line_error(result, 2, "line 2: ", "1 record(s) in earlier batches")
    with StateStore(store_url) as before, StateStore(target) as after:
        assert [r.id for r in after.iter_history()] == [source[0]]
        assert after.get_timeline(source[0]) == before.get_timeline(source[0])


def test_csv_stays_without_timelines_and_the_help_says_so(
    store_url: str, source: list[str], fresh_db: Any, tmp_path: Path
) -> None:
    exported = ok(store_url, "export", "--format", "csv").stdout_bytes
    header = next(csv.reader(io.StringIO(exported.decode("utf-8"), newline="")))
    assert header == list(HISTORY_FIELDS)
    dump = tmp_path / "history.csv"
    dump.write_bytes(exported)
    target = _target(fresh_db)
    assert as_json(target, "import", str(dump))["inserted"] == 4
    with StateStore(target) as after:
        assert all(after.get_timeline(history_id) == [] for history_id in source)
    assert "CSV has no timelines" in " ".join(ok(store_url, "export", "--help").stdout.split())
    assert "CSV carries no timelines" in " ".join(ok(store_url, "import", "--help").stdout.split())
