"""No raw control character from an argument, a file or the store reaches the terminal.

Every command and subcommand, found by walking the click group (a new command fails the test
until it has scenarios here), runs on SQLite and PostgreSQL against a store full of text with
ESC sequences, BEL, the C1 CSI, CR and DEL, with such arguments, such file names and such
files, on its success and its error paths. Neither stdout nor stderr may then hold a control
character other than newline and tab. CSV export is checked as a terminal shows it: into a
file or pipe it writes the data exactly (tests/test_cli_exchange.py).
"""

from __future__ import annotations

import json
import re
import uuid
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click
import pytest
from click.testing import CliRunner, Result

from vibecc.state_store import StateStore
from vibecc.state_store.cli import cli
from vibecc.state_store.cli import common as cli_common

if TYPE_CHECKING:
    from tests.test_cli import Done, history
else:
    from test_cli import Done, history

H = "\x1b[31m\x07\x9b\r\x7f"
"""ESC [31m (red), BEL, C1 CSI, carriage return, DEL."""
P = H + "\udc9b"
"""For file names: also a byte that is not UTF-8 (0x9b, CSI to a terminal reading 8-bit controls)."""
TICKET = "T\x1b[31m\x07\x9b\x7f"  # no whitespace in a ticket id, so no CR
ORPHAN = "\x1b]0;pwn\x07"
"""History rows of a project that left no name: the id is shown as it is (escaped)."""
UNSAFE = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f\u2028\u2029\u202a-\u202e\u2066-\u2069]")

SCENARIOS: dict[str, list[tuple[str, ...]]] = {
    "db upgrade": [(), ("{H}",), ("@db={tmp}/{H}/new.db",), ("@db={tmp}/{P}/new.db",)],
    "db downgrade": [("{H}", "--yes"), ("0002",), ("@tty", "0002")],
    "db current": [(), ("--json",)],
    "db history": [(), ("--json",)],
    "db check": [(), ("--json",)],
    "db sql": [("--from", "{H}"), ("{H}",)],
    "projects list": [(), ("--json",)],
    "projects show": [("acme/web",), ("acme/web", "--json"), ("{H}",), ("a\x00b",), ("acme/{H}",)],
    "projects add": [
        ("acme/new", "--name", "{H}"),
        ("acme/new2", "--name", "{H}", "--json"),
        ("{H}/x", "--name", "x"),
        ("acme/new3", "--name", "n", "--base-branch", "{H}"),
    ],
    "projects update": [
        ("acme/api", "--name", "{H}2"),
        ("acme/api", "--base-branch", "{H}"),
        ("{H}", "--name", "x"),
    ],
    "projects delete": [("acme/web",), ("acme/web", "--yes"), ("@tty", "acme/web"), ("{H}",)],
    "pipelines list": [
        (),
        ("--board",),
        ("--flat",),
        ("--json",),
        ("--project", "{H}"),
        ("--state", "{H}"),
        ("--watch", "--json"),
    ],
    "pipelines show": [
        ("{pipeline}",),
        ("{pipeline}", "--json"),
        ("acme/web#{ticket}",),
        ("acme/web#{H}",),
        ("{H}",),
    ],
    "history list": [
        (),
        ("--json",),
        ("--project", "{orphan}"),
        ("--project", "acme/gone"),
        ("--since", "{H}"),
        ("--project", "{H}"),
    ],
    "history stats": [
        (),
        ("--project", "{orphan}"),
        ("--project", "acme/gone"),
        ("--json",),
        ("--until", "{H}"),
    ],
    "prune": [
        ("--keep-days", "0"),
        ("--keep-days", "0", "--project", "{orphan}", "--yes"),
        ("@tty", "--keep-days", "0", "--project", "acme/gone"),
        ("--before", "{H}"),
    ],
    "changes": [
        (),
        ("--json",),
        ("--project", "{orphan}"),
        ("--project", "acme/gone"),
        ("--project", "{H}"),
        ("--since", "{H}"),
        ("--since", "999999"),
    ],
    "export": [(), ("--format", "csv"), ("--project", "{orphan}", "--format", "csv"), ("--project", "{H}")],
    "import": [
        ("{good}",),
        ("@db={tmp}/{H}/imported.db", "{good}"),
        ("{bad}",),
        ("{raw}",),
        ("{tmp}/{P}missing.jsonl",),
        ("--format", "csv", "{good}"),
    ],
    "backup": [("{tmp}/{P}/b.db",), ("{tmp}/{P}/b.db", "--json")],
    "copy": [
        ("--to", "{tmp}/{P}/copy.db"),
        ("--to", "{H}://x"),
        ("--to", "{tmp}/{P}/copy.db"),
        ("--to", "{tmp}/{P}/copy2.db", "--json"),
    ],
    "report": [("--html", "-"), ("--html", "{tmp}/{P}/r.html"), ("--html", "-", "--project", "acme/gone")],
    "demo": [(), ("--yes", "--tickets", "1"), ("@db={tmp}/{H}/demo.db", "--tickets", "1")],
}


def _leaves(group: click.Group, path: tuple[str, ...] = ()) -> list[str]:
    found = []
    for name, command in sorted(group.commands.items()):
        if isinstance(command, click.Group):
            found.extend(_leaves(command, (*path, name)))
        else:
            found.append(" ".join((*path, name)))
    return found


def _all_commands(group: click.Group, path: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    found = [path]
    for name, command in sorted(group.commands.items()):
        if isinstance(command, click.Group):
            found.extend(_all_commands(command, (*path, name)))
        else:
            found.append((*path, name))
    return found


COMMANDS = _leaves(cli)


def test_every_command_has_hostile_scenarios() -> None:
    missing = sorted(set(COMMANDS) - set(SCENARIOS))
    assert not missing, f"add hostile-text scenarios for {missing}"


@pytest.fixture
def hostile(store_url: str, tmp_path: Path) -> dict[str, str]:
    """A store full of hostile text, and files to import."""
    with StateStore(store_url) as store:
        web = store.create_project(H, "acme/web", github_project_id=3)
        api = store.create_project("API", "acme/api")
        pipeline = store.create_pipeline(web.id, TICKET, f"title {H}\nsecond line", "ticket-1", ticket_body=H)
        store.update_pipeline(
            pipeline.id,
            state="testing",
            pr_id=9,
            pr_url="https://github.com/acme/web/pull/9?\x9b",
            feedback=H,
        )
        store.create_pipeline(api.id, 2, H, "ticket-2")
        gone = store.create_project(H, "acme/gone")
        records = history(gone.id, [Done(3, 0, 60), Done(4, 1, 90, merged=False)])
        records += history(ORPHAN, [Done(5, 2, 30)])
        records += history(web.id, [Done(6, 3, 45)])
        records = [_hostile_title(r) for r in records]
        store.import_history(records)
        store.delete_project(gone.id)
        exported = [json.dumps(_json(r)) for r in records]
    good, bad, raw = tmp_path / f"good{P}.jsonl", tmp_path / "bad.jsonl", tmp_path / "raw.jsonl"
    fresh = [json.dumps({**json.loads(line), "id": str(uuid.uuid4())}) for line in exported]
    good.write_text("\n".join(fresh) + "\n")
    bad.write_text(exported[0] + "\n" + json.dumps({**json.loads(exported[0]), H: H}) + "\n")
    raw.write_bytes(H.encode() + b"\n")
    return {
        "H": H,
        "P": P,
        "tmp": str(tmp_path),
        "orphan": ORPHAN,
        "pipeline": pipeline.id,
        "ticket": TICKET,
        "good": str(good),
        "bad": str(bad),
        "raw": str(raw),
        "db": store_url,
    }


def _hostile_title(record: Any) -> Any:
    from dataclasses import replace

    return replace(record, ticket_title=f"{H} {record.ticket_title}", ticket_id=f"{TICKET}{record.ticket_id}")


def _json(record: Any) -> dict[str, Any]:
    from vibecc.state_store.ops.exchange import to_dict

    return to_dict(record)


def _invoke(db: str, args: list[str], *, tty: bool = False, monkeypatch: pytest.MonkeyPatch) -> Result:
    with monkeypatch.context() as patch:
        patch.setattr(cli_common, "stdout_is_terminal", lambda: True)
        patch.setattr(cli_common, "stdin_is_terminal", lambda: tty)
        # color=True: click would otherwise strip ESC sequences itself and hide a leak.
        return CliRunner().invoke(cli, ["--db", db, *args], input="n\n" if tty else None, color=True)


def _assert_clean(result: Result, what: str) -> None:
    for name, data in (("stdout", result.stdout_bytes), ("stderr", result.stderr_bytes)):
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError as exc:
            pytest.fail(
                f"{what}: a byte that is not UTF-8 on {name}: {data[max(0, exc.start - 80) : exc.end + 40]!r}"
            )
        found = UNSAFE.search(text)
        if found is not None:
            around = text[max(0, found.start() - 80) : found.end() + 40]
            pytest.fail(f"{what}: raw {found.group()!r} on {name}: {around!r}")
    assert "run with --debug" not in result.stderr, f"{what}: {result.stderr}"
    assert not isinstance(result.exception, AssertionError | TypeError), (what, result.exception)


@pytest.mark.parametrize("command", COMMANDS)
def test_no_control_character_reaches_the_terminal(
    hostile: dict[str, str], command: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    words = command.split()
    db = hostile["db"]
    for scenario in SCENARIOS[command]:
        tty = scenario[:1] == ("@tty",)
        other = scenario[0][4:].format(**hostile) if scenario[:1] and scenario[0].startswith("@db=") else None
        args = [*words, *(a.format(**hostile) for a in scenario[tty or other is not None :])]
        _assert_clean(_invoke(other or db, args, tty=tty, monkeypatch=monkeypatch), " ".join(args))
    # Whatever the command: an unknown option, a database path that is not there (with the
    # traceback of --debug), and its help.
    first = [a.format(**hostile) for a in SCENARIOS[command][0] if not a.startswith("@")]
    missing = f"{hostile['tmp']}/{P}/missing.db"
    for args in ([*words, f"--bogus{H}"], [*words, *first], ["--debug", *words, *first], [*words, "--help"]):
        location = db if args[-1] in ("--help",) or args[-1].startswith("--bogus") else missing
        _assert_clean(_invoke(location, args, monkeypatch=monkeypatch), f"--db {location!r} {args}")


@pytest.mark.parametrize("path", _all_commands(cli), ids=lambda p: " ".join(p) or "vibecc-state")
def test_every_help_has_an_example_and_runs(path: tuple[str, ...]) -> None:
    result = CliRunner().invoke(cli, [*path, "--help"])
    assert result.exit_code == 0, result.stderr
    assert result.stderr == ""
    assert "Example:" in result.stdout
    assert "vibecc-state " in result.stdout.split("Example:", 1)[1]
