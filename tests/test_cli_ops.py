"""vibecc-state copy and demo, on SQLite and PostgreSQL."""

from __future__ import annotations

import os
import stat
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from vibecc.state_store import CopyVerificationError, PipelineState, StateStore
from vibecc.state_store.cli import ops as cli_ops
from vibecc.state_store.cli.scenario import REPO, SAMPLE

if TYPE_CHECKING:
    from tests.conftest import PostgresServer
    from tests.helpers import snapshot
    from tests.test_cli import Done, add_history, as_json, history, ok, one_line_error, run
else:
    from conftest import PostgresServer
    from helpers import snapshot
    from test_cli import Done, add_history, as_json, history, ok, one_line_error, run


def _filled(location: str) -> None:
    with StateStore(location) as store:
        web = add_history(store, "acme/web", [Done(n, n, 60 * n) for n in range(1, 8)])
        store.create_pipeline(web, 50, "Active", "ticket-50")


def _snapshot(location: str) -> tuple[Any, ...]:
    with StateStore(location) as store:
        return (store.list_projects(), store.list_pipelines(), list(store.iter_history()))


def test_copy_into_an_empty_store_verifies_every_table(store_url: str, fresh_db: Any) -> None:
    _filled(store_url)
    target = fresh_db()
    report = as_json(store_url, "copy", "--to", target, "--batch-size", "3")
    tables = {t["table"]: t for t in report["tables"]}
    assert {name: t["target_rows"] for name, t in tables.items()} == {
        "projects": 1,
        "pipelines": 1,
        "pipeline_history": 7,
        "deleted_projects": 0,
        "history_stats": 1,
        "pipeline_transitions": 1,  # the active pipeline's creation; imported history has none
        "stage_histogram": 0,  # nor any time in a stage
        "stage_totals": 0,
        "duration_histogram": 7,  # one bucket per duration (1 to 7 minutes)
    }
    assert all(t["matches"] and t["source_checksum"] == t["target_checksum"] for t in tables.values())
    assert report["rows"] == 10
    assert _snapshot(target) == _snapshot(store_url)


def test_copy_table_output_and_a_target_with_data_is_refused(store_url: str, tmp_path: Path) -> None:
    _filled(store_url)
    target = str(tmp_path / "copy" / "vibecc.db")
    shown = ok(store_url, "copy", "--to", target)
    assert "pipeline_history" in shown.stdout
    assert "copied 10 rows; every table verified" in shown.stdout
    assert shown.stderr == ""
    one_line_error(run(store_url, "copy", "--to", target), 2, "is not empty", "nothing written")


def test_copy_from_sqlite_to_postgresql(tmp_path: Path, pg_server: PostgresServer) -> None:
    source = str(tmp_path / "vibecc.db")
    _filled(source)
    target = pg_server.create_database()
    report = as_json(source, "copy", "--to", target)
    assert report["target"].startswith("postgresql+psycopg://")
    assert _snapshot(target) == _snapshot(source)


def test_copy_into_itself_is_bad_input(store_url: str) -> None:
    one_line_error(run(store_url, "copy", "--to", store_url), 2, "same database")


def _walked(store_url: str) -> list[tuple[str, PipelineState, int, int]]:
    with StateStore(store_url) as store:
        project = store.get_project_by_repo(REPO)
        return [
            (h.ticket_id, h.final_state, h.total_retries_ci, h.total_retries_review)
            for h in store.iter_history(project.id)
            if not h.ticket_title.startswith(SAMPLE)
        ]


def test_demo_walks_every_ticket_to_the_end_and_archives_it(store_url: str) -> None:
    first = ok(store_url, "demo")
    assert "Imported" not in first.stdout  # no invented history unless asked for
    assert "coding (CI failed)" in first.stdout
    assert "Board: empty, every demo ticket is finished and archived." in first.stdout
    assert "History of vibecc/demo" in first.stdout
    assert "Durations are ~0s: the demo walks each ticket in an instant" in first.stdout
    # Six tickets: 1 merged, 2 merged after a CI retry, 3 failed after a review, 4-6 merged.
    assert _walked(store_url) == [
        ("1", PipelineState.MERGED, 0, 0),
        ("2", PipelineState.MERGED, 1, 0),
        ("3", PipelineState.FAILED, 0, 1),
        ("4", PipelineState.MERGED, 0, 0),
        ("5", PipelineState.MERGED, 0, 0),
        ("6", PipelineState.MERGED, 0, 0),
    ]
    with StateStore(store_url) as store:
        history = list(store.iter_history())
    assert all(h.pr_url == f"https://github.com/{REPO}/pull/{1000 + int(h.ticket_id)}" for h in history)
    assert as_json(store_url, "pipelines", "list") == []
    stats = as_json(store_url, "history", "stats", "--project", REPO)
    assert (stats["total_completed"], stats["total_merged"], stats["total_failed"]) == (6, 5, 1)

    again = ok(store_url, "demo", "--tickets", "3")
    assert "(resumed)" not in again.stdout
    assert [t for t, *_ in _walked(store_url)] == [str(n) for n in range(1, 10)]
    assert as_json(store_url, "history", "stats")["total_failed"] == 2


def test_demo_can_leave_tickets_in_progress_and_finishes_them_next_time(store_url: str) -> None:
    first = ok(store_url, "demo", "--tickets", "6", "--leave-active", "5", "--seed-history", "30")
    assert "Imported 30 invented tickets of the past two weeks as history (#1-#30, titled [sample])" in (
        first.stdout
    )
    assert "Board: empty" not in first.stdout
    assert "Durations are ~0s" not in first.stdout  # the invented tickets took a while
    with StateStore(store_url) as store:
        project = store.get_project_by_repo(REPO)
        seeded = list(store.iter_history(project.id))[:-1]
        active = store.list_pipelines(project.id)
    assert len(seeded) == 30
    assert all(h.ticket_title.startswith(SAMPLE) for h in seeded)
    assert all(h.completed_at > datetime.now(UTC) - timedelta(days=14) for h in seeded)
    assert _walked(store_url) == [("31", PipelineState.MERGED, 0, 0)]
    # Created (version 1), claimed (2), then one version per step; the oldest went furthest.
    assert sorted((p.ticket_id, p.state, p.version, p.pr_id) for p in active) == [
        ("32", PipelineState.REVIEW, 4, 1032),
        ("33", PipelineState.TESTING, 3, 1033),
        ("34", PipelineState.CODING, 2, None),
        ("35", PipelineState.QUEUED, 1, None),
        ("36", PipelineState.QUEUED, 1, None),
    ]

    second = ok(store_url, "demo", "--tickets", "2")
    assert "Imported" not in second.stdout
    assert "(resumed) review → merged" in second.stdout
    assert "(resumed) testing → review → merged" in second.stdout
    assert "Board: empty" in second.stdout
    with StateStore(store_url) as store:
        finished = {h.ticket_id: h.final_state for h in store.iter_history(project.id)}
        assert store.list_pipelines(project.id) == []
    # 32-36 resumed to MERGED, then 37 and 38 new (38 after a CI retry).
    assert [finished[str(t)] for t in range(32, 39)] == [PipelineState.MERGED] * 7
    assert _walked(store_url)[-1] == ("38", PipelineState.MERGED, 1, 0)
    assert as_json(store_url, "history", "stats", "--project", REPO)["total_completed"] == 38


def test_demo_cannot_leave_more_tickets_than_it_walks(store_url: str) -> None:
    one_line_error(run(store_url, "demo", "--tickets", "2", "--leave-active", "3"), 2, "--leave-active 3")
    assert as_json(store_url, "projects", "list") == []


def test_demo_counts_only_the_walked_tickets(store_url: str) -> None:
    ok(store_url, "demo", "--tickets", "3")
    stats = as_json(store_url, "history", "stats")
    assert (stats["total_completed"], stats["total_merged"], stats["total_failed"]) == (3, 2, 1)
    assert stats["avg_retries_ci"] == 1 / 3
    assert as_json(store_url, "pipelines", "list") == []


# -- demo only writes into a store of its own ----------------------------------------------------


@pytest.mark.parametrize("other", ["live", "deleted"])
def test_demo_refuses_a_store_holding_other_projects(store_url: str, other: str) -> None:
    with StateStore(store_url) as store:
        project = store.create_project("Web", "acme/web")
        if other == "deleted":
            store.import_history(history(project.id, [Done(1, 0, 60)]))
            store.delete_project(project.id)
    before = snapshot(store_url)
    result = run(store_url, "demo")
    one_line_error(result, 2, "holds other projects", "acme/web", "--yes")
    assert snapshot(store_url) == before
    assert "[sample]" not in ok(store_url, "export").stdout


def test_demo_refuses_history_of_unknown_projects(store_url: str) -> None:
    with StateStore(store_url) as store:
        store.import_history(history(str(uuid.uuid4()), [Done(1, 0, 60)]))
    before = snapshot(store_url)
    one_line_error(run(store_url, "demo"), 2, "history of other projects")
    assert snapshot(store_url) == before


def test_demo_with_yes_writes_beside_other_projects(store_url: str) -> None:
    with StateStore(store_url) as store:
        store.create_project("Web", "acme/web")
    ok(store_url, "demo", "--tickets", "1", "--yes")
    assert {p["repo"] for p in as_json(store_url, "projects", "list")} == {"acme/web", REPO}


def test_demo_runs_again_on_its_own_store_and_creates_a_new_file(tmp_path: Path) -> None:
    db = str(tmp_path / "demo" / "vibecc.db")
    ok(db, "demo", "--tickets", "1")
    ok(db, "demo", "--tickets", "1")
    assert as_json(db, "history", "stats")["total_completed"] == 2


def test_copy_creates_a_new_sqlite_target_in_owner_only_folders(store_url: str, tmp_path: Path) -> None:
    _filled(store_url)
    target = tmp_path / "copies" / "today" / "vibecc.db"
    old = os.umask(0)
    try:
        ok(store_url, "copy", "--to", str(target))
    finally:
        os.umask(old)
    assert stat.S_IMODE(target.stat().st_mode) == 0o600
    for folder in (tmp_path / "copies", tmp_path / "copies" / "today"):
        assert stat.S_IMODE(folder.stat().st_mode) == 0o700, folder


def test_a_failed_copy_leaves_no_new_target_behind(store_url: str, tmp_path: Path) -> None:
    _filled(store_url)
    target = tmp_path / "copies" / "vibecc.db"
    ok(store_url, "copy", "--to", str(target))
    one_line_error(run(store_url, "copy", "--to", str(target)), 2, "is not empty")
    assert target.exists()  # it existed before: kept
    one_line_error(run(str(target), "copy", "--to", store_url), 2, "is not empty")
    fresh = tmp_path / "fresh" / "vibecc.db"
    with StateStore(store_url) as store:
        store.create_pipeline(store.list_projects()[0].id, 51, "Second", "ticket-51")

    def broken(*args: Any, **kwargs: Any) -> None:
        raise CopyVerificationError("copy differs from the source in pipelines; nothing written")

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(cli_ops, "copy_store", broken)
        one_line_error(run(store_url, "copy", "--to", str(fresh)), 1, "differs from the source")
    assert not (tmp_path / "fresh").exists()
