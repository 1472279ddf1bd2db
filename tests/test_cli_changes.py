"""vibecc-state changes, prune of the change log, copy's note and the bad usage of --watch, on
SQLite and PostgreSQL through click's CliRunner (tests/test_cli_follow.py runs --follow and
--watch in real processes)."""

from __future__ import annotations

import json
import os
import re
import signal
import threading
from datetime import timedelta
from typing import TYPE_CHECKING, Any

import pytest

from vibecc.state_store import StateStore
from vibecc.state_store.cli import changes as cli_changes

if TYPE_CHECKING:
    from tests.test_cli import T0, Done, history, ok, one_line_error, run
    from tests.test_cli_hostile_text import ORPHAN
else:
    from test_cli import T0, Done, history, ok, one_line_error, run
    from test_cli_hostile_text import ORPHAN

EVERY_OP = [
    ("project", "created"),
    ("project", "updated"),
    ("pipeline", "created"),
    ("pipeline", "claimed"),
    ("pipeline", "updated"),
    ("pipeline", "archived"),
    ("history", "created"),
    ("pipeline", "created"),
    ("pipeline", "deleted"),
    ("history", "imported"),
    ("history", "pruned"),
    ("project", "created"),
    ("project", "deleted"),
]


def every_op(store_url: str) -> dict[str, str]:
    """Writes that log every kind of change and every op, in the order of EVERY_OP."""
    with StateStore(store_url) as store:
        web = store.create_project("Web", "acme/web")
        store.update_project(web.id, name="Website")
        first = store.create_pipeline(web.id, 1, "First", "ticket-1")
        store.claim_pipeline(project_id=web.id)
        store.update_pipeline(first.id, state="merged")
        store.archive_pipeline(first.id)
        second = store.create_pipeline(web.id, 2, "Second", "ticket-2")
        store.delete_pipeline(second.id)
        store.import_history(history(web.id, [Done(3, 0, 60)]))
        store.prune_history(before=T0 + timedelta(days=1))
        old = store.create_project("Old", "acme/old")
        store.delete_project(old.id)
    return {"web": web.id, "first": first.id, "old": old.id}


def lines(store_url: str, *args: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in ok(store_url, "changes", "--json", *args).stdout.splitlines()]


def next_cursor(stderr: str) -> int:
    """The cursor the last line of stderr says to read on from."""
    found = re.fullmatch(r"(\d+) change\(s\); read on with --since (\d+)", stderr.strip().splitlines()[-1])
    assert found is not None, stderr
    return int(found.group(2))


def test_json_lines_have_every_field_of_every_op(store_url: str) -> None:
    ids = every_op(store_url)
    found = lines(store_url)
    assert [(c["kind"], c["op"]) for c in found] == EVERY_OP
    assert [c["seq"] for c in found] == list(range(1, len(EVERY_OP) + 1))
    assert set(found[0]) == {"seq", "kind", "entity_id", "project_id", "op", "version", "at"}
    assert all(c["at"].endswith("+00:00") for c in found)
    pipeline = [(c["entity_id"], c["version"]) for c in found if c["kind"] == "pipeline"][:3]
    assert pipeline == [(ids["first"], 1), (ids["first"], 2), (ids["first"], 3)]
    assert {c["project_id"] for c in found} == {ids["web"], ids["old"]}


def test_the_table_shows_each_change_with_its_project_and_the_cursor_on_stderr(store_url: str) -> None:
    ids = every_op(store_url)
    result = ok(store_url, "changes")
    rows = [line.split() for line in result.stdout.splitlines()[2:]]
    assert [(row[0], row[3], row[4]) for row in rows] == [
        (str(seq), kind, op) for seq, (kind, op) in enumerate(EVERY_OP, start=1)
    ]
    assert result.stdout.splitlines()[0].split() == [
        "Seq",
        "At",
        "(UTC)",
        "Kind",
        "Op",
        "Id",
        "Project",
        "Version",
    ]
    assert rows[2][5:] == [ids["first"], "acme/web", "1"]
    assert rows[0][-1] == "-"
    assert rows[-1][5:] == [ids["old"], "acme/old", "(deleted)", "-"]
    assert result.stderr == f"{len(EVERY_OP)} change(s); read on with --since {len(EVERY_OP)}\n"


def test_since_and_project_filter_the_changes(store_url: str) -> None:
    ids = every_op(store_url)
    assert [c["seq"] for c in lines(store_url, "--since", "10")] == [11, 12, 13]
    web = lines(store_url, "--project", "acme/web")
    assert len(web) == 11
    assert {c["project_id"] for c in web} == {ids["web"]}
    # A deleted project, by its last repo or its id.
    gone = [(c["kind"], c["op"]) for c in lines(store_url, "--project", "acme/old")]
    assert gone == [("project", "created"), ("project", "deleted")]
    assert lines(store_url, "--project", ids["old"], "--since", "12") == lines(store_url, "--since", "12")
    # Filtered, the cursor still moves to the newest change read.
    assert next_cursor(ok(store_url, "changes", "--project", "acme/web").stderr) == 13
    assert lines(store_url, "--since", "now") == []
    assert next_cursor(ok(store_url, "changes", "--since", "now").stderr) == 13


@pytest.mark.parametrize("project", [None, "acme/web"])
def test_reading_on_from_the_printed_cursor_has_no_gap_and_no_duplicate(
    store_url: str, project: str | None
) -> None:
    with StateStore(store_url) as store:
        web, api = store.create_project("Web", "acme/web"), store.create_project("API", "acme/api")
        seen: list[int] = []
        cursor = 0
        for round_ in range(6):
            for owner in (web, api):
                store.create_pipeline(owner.id, round_, "t", f"b{round_}")
            scope = ("--project", project) if project else ()
            result = ok(store_url, "changes", "--json", "--limit", "3", "--since", str(cursor), *scope)
            seen += [json.loads(line)["seq"] for line in result.stdout.splitlines()]
            cursor = next_cursor(result.stderr)
        while True:
            result = ok(store_url, "changes", "--json", "--since", str(cursor), *scope)
            seen += [json.loads(line)["seq"] for line in result.stdout.splitlines()]
            if next_cursor(result.stderr) == cursor:
                break
            cursor = next_cursor(result.stderr)
        expected = [c.seq for c in store.changes_since(0, project_id=web.id if project else None).changes]
    assert seen == expected
    assert cursor == 14


@pytest.mark.parametrize("follow", [False, True], ids=["once", "follow"])
def test_an_expired_cursor_is_one_line_saying_to_resynchronise(store_url: str, follow: bool) -> None:
    with StateStore(store_url) as store:
        project = store.create_project("Web", "acme/web")
        for n in range(4):
            store.create_pipeline(project.id, n, "t", f"b{n}")
        assert store.prune_changes(keep=2) == 3
    extra = ("--follow",) if follow else ()
    for since in ("0", "2"):
        line = one_line_error(run(store_url, "changes", "--since", since, *extra), 1, "resynchronise")
        assert f"cursor {since} is older than the change log" in line
        assert "changes --since now" in line
    line = one_line_error(run(store_url, "changes", "--since", "9", *extra), 1, "resynchronise")
    assert "cursor 9 is beyond the change log, whose last change is 5" in line
    assert [c["seq"] for c in lines(store_url, "--since", "3")] == [4, 5]


@pytest.mark.parametrize("as_json", [False, True], ids=["table", "json"])
def test_follow_prints_what_commits_and_ctrl_c_says_where_to_resume(
    store_url: str, monkeypatch: pytest.MonkeyPatch, as_json: bool
) -> None:
    """Ctrl-C lands in the wait (where a follower spends its time), after a change committed
    by another writer during the first wait was printed."""
    with StateStore(store_url) as store:
        project = store.create_project("Web", "acme/web")
    waited: list[int] = []
    wait = StateStore.wait_for_changes

    def commit_then_interrupt(self: StateStore, cursor: int, *, timeout: float) -> bool:
        waited.append(cursor)
        if len(waited) > 1:
            raise KeyboardInterrupt
        with StateStore(store_url) as other:
            other.create_pipeline(project.id, 1, "t", "b")
        return wait(self, cursor, timeout=timeout)

    monkeypatch.setattr(StateStore, "wait_for_changes", commit_then_interrupt)
    result = run(store_url, "changes", "--follow", *(("--json",) if as_json else ()))
    one_line_error(result, 130, "interrupted after 2 change(s); resume with --since 2")
    assert waited == [1, 2]
    if as_json:
        assert [json.loads(line)["op"] for line in result.stdout.splitlines()] == ["created", "created"]
    else:
        assert result.stdout.count("Seq") == 1  # one header across the batches
        assert [line.split()[3] for line in result.stdout.splitlines()[2:]] == ["project", "pipeline"]


def test_ctrl_c_while_a_batch_is_printed_waits_for_it_and_its_cursor(
    store_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The cursor told is the one after everything printed: no change shown twice on resuming."""
    with StateStore(store_url) as store:
        project = store.create_project("Web", "acme/web")
        store.create_pipeline(project.id, 1, "t", "b")
    batch = cli_changes._Output.batch

    def interrupted_batch(self: Any, found: Any) -> None:
        os.kill(os.getpid(), signal.SIGINT)
        batch(self, found)

    monkeypatch.setattr(cli_changes._Output, "batch", interrupted_batch)
    before = signal.getsignal(signal.SIGINT)  # the default, or ignored in a background job
    result = run(store_url, "changes", "--json")
    one_line_error(result, 130, "interrupted after 2 change(s); resume with --since 2")
    assert len(result.stdout.splitlines()) == 2
    assert signal.getsignal(signal.SIGINT) is before


def test_ctrl_c_in_the_wait_lets_the_store_call_finish_first(
    store_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A Ctrl-C never breaks into a store call (whose locks it could leave taken): the wait
    it lands in ends as usual, then the follower stops."""
    with StateStore(store_url) as store:
        store.create_project("Web", "acme/web")
    finished: list[bool] = []
    wait = StateStore.wait_for_changes

    def signalled_wait(self: StateStore, cursor: int, *, timeout: float) -> bool:
        os.kill(os.getpid(), signal.SIGINT)
        finished.append(wait(self, cursor, timeout=timeout))
        return finished[-1]

    monkeypatch.setattr(StateStore, "wait_for_changes", signalled_wait)
    before = signal.getsignal(signal.SIGINT)  # the default, or ignored in a background job
    result = run(store_url, "changes", "--follow")
    one_line_error(result, 130, "interrupted after 1 change(s); resume with --since 1")
    assert finished == [False]
    watched = run(store_url, "pipelines", "list", "--watch")
    one_line_error(watched, 130, "interrupted; stopped watching")
    assert finished == [False, False]
    assert signal.getsignal(signal.SIGINT) is before


def test_follow_wakes_for_a_commit_of_another_thread_and_stops_at_the_limit(store_url: str) -> None:
    with StateStore(store_url) as store:
        project = store.create_project("Web", "acme/web")
        writer = threading.Timer(0.3, lambda: store.create_pipeline(project.id, 7, "t", "b"))
        writer.start()
        try:
            result = ok(store_url, "changes", "--since", "now", "--follow", "--limit", "1", "--json")
        finally:
            writer.join()
    [change] = [json.loads(line) for line in result.stdout.splitlines()]
    assert (change["seq"], change["kind"], change["op"]) == (2, "pipeline", "created")
    assert next_cursor(result.stderr) == 2


@pytest.mark.parametrize(
    ("args", "fragment"),
    [
        (("changes", "--since", "-1"), "is not a cursor"),
        (("changes", "--since", "later"), "is not a cursor"),
        (("changes", "--limit", "0"), "--limit"),
        (("changes", "--project", "nobody/none"), "not found"),
        (("pipelines", "list", "--watch", "--json"), "cannot be combined with --json"),
    ],
)
def test_bad_usage(store_url: str, args: tuple[str, ...], fragment: str) -> None:
    code = 3 if "nobody/none" in args else 2
    one_line_error(run(store_url, *args), code, fragment)


def test_stored_text_in_the_changes_is_shown_escaped(store_url: str) -> None:
    """History of a project that left nothing but an id full of control characters."""
    with StateStore(store_url) as store:
        store.import_history(history(ORPHAN, [Done(1, 0, 60)]))
    table = ok(store_url, "changes").stdout
    assert "\x1b" not in table
    assert "\\x1b]0;pwn\\x07" in table
    [change] = lines(store_url)
    assert change["project_id"] == ORPHAN
    assert "\\u001b]0;pwn\\u0007" in ok(store_url, "changes", "--json").stdout


# -- prune and copy ----------------------------------------------------------------------------


def test_prune_prunes_the_change_log_to_the_history_cutoff(store_url: str) -> None:
    every_op(store_url)
    dry = ok(store_url, "prune", "--keep-days", "0", "--dry-run").stdout
    assert "would prune the change log of the changes logged before" in dry
    assert len(lines(store_url)) == len(EVERY_OP)
    pruned = ok(store_url, "prune", "--keep-days", "0", "--yes").stdout
    assert "deleted 1 history record(s)" in pruned  # the archived run
    assert f"pruned {len(EVERY_OP)} change(s) logged before" in pruned
    one_line_error(run(store_url, "changes"), 1, "older than the change log", "resynchronise")
    # What the prune of history logged itself stays, after the cut-off.
    [left] = lines(store_url, "--since", str(len(EVERY_OP)))
    assert (left["kind"], left["op"]) == ("history", "pruned")


def test_prune_of_one_project_leaves_the_shared_log_unless_told(store_url: str) -> None:
    every_op(store_url)
    one = json.loads(
        ok(store_url, "prune", "--keep-days", "0", "--project", "acme/web", "--yes", "--json").stdout
    )
    assert (one["deleted"], one["changes_before"], one["changes_deleted"]) == (1, None, None)
    assert len(lines(store_url)) == len(EVERY_OP) + 1
    kept = json.loads(
        ok(store_url, "prune", "--keep-days", "0", "--changes-keep-days", "30", "--yes", "--json").stdout
    )
    assert kept["changes_deleted"] == 0  # nothing is 30 days old
    told = ok(
        store_url, "prune", "--keep-days", "0", "--project", "acme/web", "--changes-keep-days", "0", "--yes"
    )
    assert f"pruned {len(EVERY_OP) + 1} change(s) logged before" in told.stdout
    assert lines(store_url, "--since", "now") == []


def test_copy_says_the_change_log_is_not_copied(store_url: str, fresh_db: Any) -> None:
    every_op(store_url)
    target = fresh_db()
    copied = ok(store_url, "copy", "--to", target).stdout
    assert "the change log is not copied: the target's starts again after the copy" in copied
    # The copied rows are in the tables, not in the log: a reader from 0 must start from them.
    one_line_error(run(target, "changes"), 1, "cursor 0 is older than the change log")
    assert ok(target, "changes", "--since", "1").stderr == "0 change(s); read on with --since 1\n"
    one_line_error(run(target, "changes", "--since", "13"), 1, "beyond the change log")
