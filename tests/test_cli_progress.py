"""Progress of long commands on stderr: a line every few seconds off a terminal (rows done,
rows per second), a bar of rows with the time left on one; stdout keeps only the data.

The clock is replaced where a rate is checked: no test depends on how fast it runs."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from vibecc.state_store import StateStore
from vibecc.state_store.cli import common as cli_common
from vibecc.state_store.cli import progress as cli_progress
from vibecc.state_store.cli.progress import Meter

if TYPE_CHECKING:
    from tests.test_cli import Done, add_history, ok, run
else:
    from test_cli import Done, add_history, ok, run


class Clock:
    """time.monotonic that moves only when told to."""

    def __init__(self) -> None:
        self.now = 1000.0

    def monotonic(self) -> float:
        return self.now


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> Clock:
    fake = Clock()
    monkeypatch.setattr(cli_progress, "time", fake)
    return fake


def test_off_a_terminal_a_line_every_few_seconds(clock: Clock, capsys: pytest.CaptureFixture[str]) -> None:
    meter = Meter("importing history.jsonl", None)
    meter.add(1000)
    clock.now += 1
    meter.add(1000)
    assert capsys.readouterr().err == ""  # not yet: less than REPORT_EVERY seconds
    clock.now += cli_progress.REPORT_EVERY
    meter.add(1000)
    assert capsys.readouterr().err == "importing history.jsonl: 3,000 rows, 500 rows/s\n"
    clock.now += 1
    meter.add(10)
    assert capsys.readouterr().err == ""
    clock.now += cli_progress.REPORT_EVERY
    meter.at(50, 100)
    assert capsys.readouterr().err == "importing history.jsonl: 3,010 rows (50%), 251 rows/s\n"


def test_a_known_total_is_shown_with_the_share_done(clock: Clock, capsys: pytest.CaptureFixture[str]) -> None:
    meter = Meter("copying", 400)
    clock.now += cli_progress.REPORT_EVERY
    meter.add(100)
    assert capsys.readouterr().err == "copying: 100 of 400 rows (25%), 20 rows/s\n"


def test_descriptions_with_control_characters_are_escaped(
    clock: Clock, capsys: pytest.CaptureFixture[str]
) -> None:
    meter = Meter("importing \x1b[31mevil\x07.jsonl", None)
    clock.now += cli_progress.REPORT_EVERY
    meter.add(1)
    assert capsys.readouterr().err == "importing \\x1b[31mevil\\x07.jsonl: 1 rows, 0 rows/s\n"


@pytest.fixture
def filled(store_url: str) -> str:
    with StateStore(store_url) as store:
        add_history(store, "acme/web", [Done(n, n, 60) for n in range(7)])
    return store_url


LINE = re.compile(r"^[a-z ]+[^:]*: [\d,]+( of [\d,]+)? rows( \(\d+%\))?, [\d,]+ rows/s$")


def test_long_commands_report_off_a_terminal_and_keep_stdout_clean(
    filled: str, fresh_db: object, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(cli_progress, "REPORT_EVERY", 0.0)  # every step prints its line
    exported = ok(filled, "export")
    assert [json.loads(line)["ticket_id"] for line in exported.stdout.splitlines()] == [
        str(n) for n in range(7)
    ]
    lines = exported.stderr.splitlines()
    assert lines
    assert all(LINE.match(line) for line in lines), lines
    assert lines[-1].startswith("exporting history: 7 of 7 rows (100%)")

    dump = tmp_path / "history.jsonl"
    dump.write_bytes(exported.stdout_bytes)
    target = fresh_db()  # type: ignore[operator]
    ok(target, "db", "upgrade")
    imported = ok(target, "import", str(dump), "--batch-size", "3")
    assert "imported 7 history record(s)" in imported.stdout
    assert any(line.startswith(f"importing {dump}: 7 rows (100%)") for line in imported.stderr.splitlines())

    copied = ok(filled, "copy", "--to", str(tmp_path / "copy.db"))
    assert copied.stderr.splitlines()[-1].startswith("copying: 8 of 8 rows (100%)")
    pruned = ok(filled, "prune", "--keep-days", "0", "--yes", "--batch-size", "2")
    assert pruned.stderr.splitlines()[-1].startswith("pruning history: 7 of 7 rows (100%)")


def test_on_a_terminal_a_bar_of_rows_with_the_time_left(filled: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(cli_common, "stderr_is_terminal", lambda: True)
    monkeypatch.setattr(cli_progress, "_REDRAW_EVERY", 0.0)
    exported = run(filled, "export", env={"COLUMNS": "200"})
    assert exported.exit_code == 0
    assert "exporting history" in exported.stderr
    assert "of 7 rows" in exported.stderr
    assert "rows/s" in exported.stderr
    assert "left" in exported.stderr
    assert len(exported.stdout.splitlines()) == 7
