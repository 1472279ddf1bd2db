"""vibecc-state copy and demo, on SQLite and PostgreSQL."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from vibecc.state_store import PipelineState, StateStore
from vibecc.state_store.demo import REPO

if TYPE_CHECKING:
    from tests.conftest import PostgresServer
    from tests.test_cli import Done, add_history, as_json, ok, one_line_error, run
else:
    from conftest import PostgresServer
    from test_cli import Done, add_history, as_json, ok, one_line_error, run


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
        "history_stats": 1,
    }
    assert all(t["matches"] and t["source_checksum"] == t["target_checksum"] for t in tables.values())
    assert report["rows"] == 9
    assert _snapshot(target) == _snapshot(store_url)


def test_copy_table_output_and_a_target_with_data_is_refused(store_url: str, tmp_path: Path) -> None:
    _filled(store_url)
    target = str(tmp_path / "copy" / "vibecc.db")
    shown = ok(store_url, "copy", "--to", target)
    assert "pipeline_history" in shown.stdout
    assert "copied 9 rows; every table verified" in shown.stdout
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


def test_demo_walks_tickets_and_can_run_again(store_url: str) -> None:
    first = ok(store_url, "demo")
    assert "Imported 30 finished tickets" in first.stdout
    assert "coding (CI failed)" in first.stdout
    assert "History of vibecc/demo" in first.stdout
    with StateStore(store_url) as store:
        project = store.get_project_by_repo(REPO)
        live = [h for h in store.iter_history(project.id) if int(h.ticket_id) > 30]
        active = store.list_pipelines(project.id)
    # Six tickets: 31 merged, 32 merged after a CI retry, 33 failed, 34 merged; 35 and 36 go on.
    assert [(h.ticket_id, h.final_state, h.total_retries_ci, h.total_retries_review) for h in live] == [
        ("31", PipelineState.MERGED, 0, 0),
        ("32", PipelineState.MERGED, 1, 0),
        ("33", PipelineState.FAILED, 0, 1),
        ("34", PipelineState.MERGED, 0, 0),
    ]
    assert all(h.pr_url == f"https://github.com/{REPO}/pull/{1000 + int(h.ticket_id)}" for h in live)
    # Created (version 1), claimed (2), in TESTING with its PR (3); the other waits queued.
    assert sorted((p.ticket_id, p.state, p.version, p.pr_id) for p in active) == [
        ("35", PipelineState.TESTING, 3, 1035),
        ("36", PipelineState.QUEUED, 1, None),
    ]

    second = ok(store_url, "demo", "--tickets", "2")
    assert "Imported" not in second.stdout  # the history is seeded once
    assert "(resumed) testing → review → merged" in second.stdout
    with StateStore(store_url) as store:
        finished = {h.ticket_id: h.final_state for h in store.iter_history(project.id)}
        assert store.list_pipelines(project.id) == []
    # 35 and 36 resumed to MERGED, then 37 and 38 new.
    assert [finished[t] for t in ("35", "36", "37", "38")] == [PipelineState.MERGED] * 4
    assert len(finished) == 38
    stats = as_json(store_url, "history", "stats", "--project", REPO)
    assert stats["total_completed"] == 38


def test_demo_without_seeding_counts_only_the_walked_tickets(store_url: str) -> None:
    ok(store_url, "demo", "--tickets", "3", "--no-seed-history")
    stats = as_json(store_url, "history", "stats")
    assert (stats["total_completed"], stats["total_merged"], stats["total_failed"]) == (3, 2, 1)
    assert stats["avg_retries_ci"] == 1 / 3
    assert as_json(store_url, "pipelines", "list") == []
