"""The history of a deleted project stays reachable: by its id or its last repo, shown with
that repo (never a cut UUID), on SQLite and PostgreSQL."""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from vibecc.state_store import StateStore

if TYPE_CHECKING:
    from tests.test_cli import Done, add_history, as_json, history, ok, one_line_error, run
else:
    from test_cli import Done, add_history, as_json, history, ok, one_line_error, run


@pytest.fixture
def deleted(store_url: str) -> dict[str, str]:
    """acme/old deleted with 3 finished tickets; acme/web live with 2; then acme/old re-added."""
    with StateStore(store_url) as store:
        old = add_history(store, "acme/old", [Done(n, n, 60) for n in (1, 2, 3)])
        web = add_history(store, "acme/web", [Done(n, n, 120) for n in (4, 5)])
        store.delete_project(old)
        again = store.create_project("Old again", "acme/old")
        store.import_history(history(again.id, [Done(9, 9, 30)]))
    return {"old": old, "web": web, "again": again.id}


@pytest.mark.parametrize("by", ["id", "repo"])
def test_history_of_a_deleted_project_by_id_and_by_its_last_repo(
    store_url: str, deleted: dict[str, str], by: str
) -> None:
    with StateStore(store_url) as store:
        store.delete_project(deleted["again"])  # now only deleted projects had acme/old
    ref = deleted["old"] if by == "id" else "ACME/Old"
    expected_ids = ["3", "2", "1"] if by == "id" else ["9"]  # the repo names the latest deleted
    listed = as_json(store_url, "history", "list", "--project", ref)
    assert [r["ticket_id"] for r in listed] == expected_ids
    table = ok(store_url, "history", "list", "--project", ref).stdout
    assert "of acme/old (deleted)" in table
    stats = as_json(store_url, "history", "stats", "--project", ref)
    assert stats["total_completed"] == len(expected_ids)
    assert "History of acme/old (deleted)" in ok(store_url, "history", "stats", "--project", ref).stdout
    exported = ok(store_url, "export", "--project", ref).stdout.splitlines()
    assert len(exported) == len(expected_ids)


def test_a_live_project_wins_its_repo_and_the_deleted_one_keeps_its_id(
    store_url: str, deleted: dict[str, str], tmp_path: Path
) -> None:
    by_repo = as_json(store_url, "history", "list", "--project", "acme/old")
    assert [r["ticket_id"] for r in by_repo] == ["9"]
    by_id = as_json(store_url, "history", "list", "--project", deleted["old"])
    assert [r["ticket_id"] for r in by_id] == ["3", "2", "1"]
    report = tmp_path / "old.html"
    ok(store_url, "report", "--html", str(report), "--project", deleted["old"])
    assert "acme/old (deleted)" in report.read_text(encoding="utf-8")


def test_prune_of_a_deleted_project(store_url: str, deleted: dict[str, str]) -> None:
    pruned = ok(store_url, "prune", "--keep-days", "0", "--project", deleted["old"], "--yes")
    assert "deleted 3 history record(s) of acme/old (deleted)" in pruned.stdout
    assert as_json(store_url, "history", "stats")["total_completed"] == 3


def test_rows_of_deleted_projects_show_their_last_repo_never_a_cut_id(
    store_url: str, deleted: dict[str, str]
) -> None:
    orphan = str(uuid.uuid4())  # history whose project left no name (deleted before 0003)
    with StateStore(store_url) as store:
        store.import_history(history(orphan, [Done(7, 7, 60)]))
    table = run(store_url, "history", "list", env={"COLUMNS": "250"}).stdout
    assert "acme/old (deleted)" in table
    assert "acme/web" in table
    assert orphan in table
    for project_id in deleted.values():
        assert project_id[:8] not in table
    listed = as_json(store_url, "history", "list", "--project", orphan)
    assert [r["ticket_id"] for r in listed] == ["7"]
    assert f"deleted project {orphan}" in ok(store_url, "history", "stats", "--project", orphan).stdout


@pytest.mark.parametrize("ref", ["nobody/none", "00000000-0000-0000-0000-000000000000", "x" * 80, "no-slash"])
def test_a_project_nothing_knows_is_not_found(store_url: str, deleted: dict[str, str], ref: str) -> None:
    for args in (("history", "list"), ("history", "stats"), ("prune", "--keep-days", "1", "--yes")):
        one_line_error(run(store_url, *args, "--project", ref), 3, "not found")
