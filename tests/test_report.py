"""`vibecc-state report --html`: one self-contained page whose numbers are those of history stats."""

from __future__ import annotations

import errno
import json
import os
import re
import stat
import threading
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime
from html.parser import HTMLParser
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from vibecc.state_store import StateStore
from vibecc.state_store.cli.report import MAX_DAILY_BARS, Bar, ReportData, collect
from vibecc.state_store.cli.report_html import render

if TYPE_CHECKING:
    from tests import helpers
    from tests.test_cli import Done, add_history, as_json, ok, one_line_error, run
else:
    import helpers
    from test_cli import Done, add_history, as_json, ok, one_line_error, run

VOID = {"meta", "br", "img", "input", "link", "hr", "col", "area", "base", "wbr", "source"}
EVIL = "<script>alert('x')</script> & \"quotes\""


class Page(HTMLParser):
    """Collects what the tests look at, and checks that every element is closed in order."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.stack: list[str] = []
        self.tags: Counter[str] = Counter()
        self.attrs: list[tuple[str, str, str]] = []
        self.kpis: dict[str, Any] = {}
        self.tooltips: list[str] = []
        self.tooltips_of: dict[str, list[str]] = {}
        """The tooltips of each panel, by its id."""
        self.text: list[str] = []
        self._in_title = False
        self._panels: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags[tag] += 1
        values = {k: v or "" for k, v in attrs}
        self.attrs.extend((tag, k, v) for k, v in values.items())
        if "data-key" in values:
            self.kpis[values["data-key"]] = json.loads(values["data-value"])
        if tag not in VOID:
            self.stack.append(tag)
        if tag == "section":
            self._panels.append(values.get("id", ""))
        self._in_title = tag == "title" and "svg" in self.stack

    def handle_endtag(self, tag: str) -> None:
        assert self.stack[-1:] == [tag], f"</{tag}> closes {self.stack[-1:]}"
        self.stack.pop()
        self._in_title = False
        if tag == "section":
            self._panels.pop()

    def handle_data(self, data: str) -> None:
        self.text.append(data)
        if self._in_title:
            self.tooltips.append(data)
            self.tooltips_of.setdefault(self._panels[-1] if self._panels else "", []).append(data)


def parse(html: str) -> Page:
    page = Page()
    page.feed(html)
    page.close()
    assert page.stack == [], page.stack
    return page


@pytest.fixture
def filled(store_url: str) -> str:
    with StateStore(store_url) as store:
        web = add_history(
            store,
            "acme/web",
            [
                Done(1, 0, 30),
                Done(2, 0.5, 400, retries_ci=1),
                Done(3, 1, 2000, merged=False, retries_ci=3, retries_review=3),
                Done(4, 3, 9000, retries_review=1),
            ],
        )
        add_history(store, "acme/api", [Done(9, 2, 100_000, merged=False)])
        project = store.get_project(web)
        store.update_project(project.id, name=EVIL)
        active = store.create_pipeline(web, 77, EVIL, "ticket-77")
        store.update_pipeline(active.id, state="review", pr_id=5, pr_url="https://github.com/acme/web/pull/5")
        store.create_pipeline(web, 78, "Queued one", "ticket-78")
    return store_url


def _report(db: str, tmp_path: Path, *args: str) -> Page:
    path = tmp_path / "out" / "report.html"
    shown = ok(db, "report", "--html", str(path), *args)
    assert f"wrote {path}" in shown.stdout
    return parse(path.read_text(encoding="utf-8"))


@pytest.mark.parametrize(
    "filters",
    [
        (),
        ("--project", "acme/web"),
        ("--since", "2025-03-05"),
        ("--project", "acme/web", "--until", "2025-03-05"),
    ],
)
def test_report_numbers_are_those_of_history_stats(
    filled: str, tmp_path: Path, filters: tuple[str, ...]
) -> None:
    page = _report(filled, tmp_path, *filters)
    stats = as_json(filled, "history", "stats", *filters)
    shown = {key: stats[key] for key in page.kpis}
    assert page.kpis == shown
    assert len(page.kpis) == 9
    # Each chart adds up to the same totals: per day, by duration and by retries.
    counted = [t for chart in ("finished", "durations", "retries") for t in page.tooltips_of[chart]]
    bars = [re.fullmatch(r"(.+): (\d+) merged, (\d+) failed", t) for t in counted]
    assert all(bars)
    daily = [m for m in bars if m and re.fullmatch(r"\d{4}-\d\d-\d\d", m.group(1))]
    others = [m for m in bars if m and m not in daily]
    assert sum(int(m.group(2)) for m in daily) == stats["total_merged"]
    assert sum(int(m.group(3)) for m in daily) == stats["total_failed"]
    assert sum(int(m.group(2)) for m in others) == 2 * stats["total_merged"]
    assert sum(int(m.group(3)) for m in others) == 2 * stats["total_failed"]


def test_report_is_self_contained(filled: str, tmp_path: Path) -> None:
    page = _report(filled, tmp_path)
    assert page.tags["script"] == 0
    assert page.tags["link"] == 0
    assert page.tags["img"] == 0
    # Three charts and a lane for each of the five slowest tickets; no stage chart, as imported
    # runs have no timelines.
    assert page.tags["svg"] == 3 + 5
    assert page.tags["style"] == 1
    for tag, name, value in page.attrs:
        assert name not in ("src", "href"), (tag, name, value)
        assert not re.search(r"https?://", value), (tag, name, value)
    html = (tmp_path / "out" / "report.html").read_text(encoding="utf-8")
    assert "@import" not in html
    assert "url(" not in html


def test_report_escapes_stored_text_and_shows_the_board(filled: str, tmp_path: Path) -> None:
    page = _report(filled, tmp_path, "--project", "acme/web")
    html = (tmp_path / "out" / "report.html").read_text(encoding="utf-8")
    assert "<script>" not in html
    assert "&lt;script&gt;alert(&#x27;x&#x27;)&lt;/script&gt; &amp; &quot;quotes&quot;" in html
    text = " ".join(page.text)
    assert EVIL in text  # shown as text: in the scope line and on the board
    assert "Current board: 2 active pipelines" in text
    assert "review (1)" in text
    assert "queued (1)" in text
    assert "PR #5" in text


def test_report_of_an_empty_store(store_url: str, tmp_path: Path) -> None:
    page = _report(store_url, tmp_path)
    assert page.kpis["total_completed"] == 0
    assert page.kpis["p50_duration_seconds"] is None
    assert "No finished tickets in this window." in " ".join(page.text)


def test_long_histories_are_shown_per_week(store_url: str) -> None:
    with StateStore(store_url) as store:
        add_history(store, "acme/web", [Done(n, n * 3, 60, merged=n % 4 != 0) for n in range(100)])
        data = collect(store)
    assert data.finished_unit == "week"
    assert len(data.finished) <= MAX_DAILY_BARS
    assert sum(b.merged for b in data.finished) == 75
    assert sum(b.failed for b in data.finished) == 25
    assert all(datetime.fromisoformat(b.label).weekday() == 0 for b in data.finished)


def test_histories_of_centuries_are_shown_per_year_or_more(store_url: str) -> None:
    with StateStore(store_url) as store:
        project = store.create_project("Old", "acme/old").id
        ends = [datetime(year, 6, 1, tzinfo=UTC) for year in (1, 150, 5000, 9991, 9999)]
        store.import_history(
            [helpers.history_record(project_id=project, completed_at=end, duration_seconds=5) for end in ends]
        )
        data = collect(store)
        recent = collect(store, since=datetime(9990, 1, 1, tzinfo=UTC))
    assert data.finished_unit == "100 years"
    assert len(data.finished) <= MAX_DAILY_BARS
    assert [(b.label, b.merged) for b in data.finished if b.merged] == [
        ("1", 1),
        ("101", 1),
        ("4901", 1),
        ("9901", 2),
    ]
    assert recent.finished_unit == "year"
    assert [b.label for b in recent.finished if b.merged] == ["9991", "9999"]
    assert len(recent.finished) <= MAX_DAILY_BARS


def test_durations_and_retries_are_binned(store_url: str) -> None:
    with StateStore(store_url) as store:
        add_history(
            store,
            "acme/web",
            [Done(1, 0, 59), Done(2, 0, 60), Done(3, 0, 86_400, retries_ci=9), Done(4, 0, 500, merged=False)],
        )
        data = collect(store)
    durations = {b.label: (b.merged, b.failed) for b in data.durations}
    assert durations["<1m"] == (1, 0)
    assert durations["1-5m"] == (1, 0)
    assert durations["5-15m"] == (0, 1)
    assert durations["1d+"] == (1, 0)
    assert [b.label for b in data.retries][-1] == "5+"
    assert data.retries[-1] == Bar("5+", 1, 0)
    assert data.retries[0] == Bar("0", 2, 1)


def test_render_is_a_pure_function_of_the_data() -> None:
    data = ReportData(
        title="T",
        scope="S",
        generated_at=datetime(2025, 1, 1, tzinfo=UTC),
        stats={
            "total_completed": 1,
            "total_merged": 1,
            "total_failed": 0,
            "success_rate": 1.0,
            "avg_duration_seconds": 3725.0,
            "p50_duration_seconds": 3725.0,
            "p95_duration_seconds": 3725.0,
            "avg_retries_ci": 0.0,
            "avg_retries_review": 0.0,
        },
        finished=(Bar("2025-01-01", 1, 0),),
        finished_unit="day",
        durations=(),
        retries=(),
        board={},
    )
    html = render(data)
    assert html == render(data)
    page = parse(html)
    assert "1h 02m" in " ".join(page.text)
    assert "100.0%" in " ".join(page.text)
    assert page.tooltips == ["2025-01-01: 1 merged, 0 failed"]


# -- where the report goes ---------------------------------------------------------------------


@pytest.fixture
def open_umask() -> Iterator[None]:
    """Umask 0, as some service managers start processes: nothing may come out world-writable."""
    old = os.umask(0)
    try:
        yield
    finally:
        os.umask(old)


def test_report_file_and_missing_folders_are_owner_only(
    filled: str, tmp_path: Path, open_umask: None
) -> None:
    path = tmp_path / "new" / "deeper" / "report.html"
    ok(filled, "report", "--html", str(path))
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    for folder in (tmp_path / "new", tmp_path / "new" / "deeper"):
        assert stat.S_IMODE(folder.stat().st_mode) == 0o700
    path.chmod(0o644)  # an older report, readable by all: replaced by a private one
    ok(filled, "report", "--html", str(path))
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert sorted(p.name for p in path.parent.iterdir()) == ["report.html"]  # no temporary left


def test_report_to_stdout_with_a_dash(filled: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    monkeypatch.chdir(cwd)
    shown = ok(filled, "report", "--html", "-")
    page = parse(shown.stdout)
    assert page.kpis["total_completed"] == 5
    assert list(cwd.iterdir()) == []  # no file named "-"


@pytest.mark.parametrize("problem", ["parent-is-a-file", "permission-denied"])
def test_a_report_that_cannot_be_written_is_one_line_naming_the_path(
    filled: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, problem: str
) -> None:
    out = tmp_path / "out"
    out.mkdir()
    if problem == "parent-is-a-file":
        (out / "file.txt").write_text("not a folder")
        path = out / "file.txt" / "report.html"
        reason = "Not a directory"
    else:
        path = out / "report.html"
        reason = "Permission denied"
        real_open = os.open

        def denied(name: Any, *args: Any, **kwargs: Any) -> int:
            if str(name).endswith(".tmp"):
                raise PermissionError(errno.EACCES, "Permission denied", str(name))
            return real_open(name, *args, **kwargs)

        monkeypatch.setattr(os, "open", denied)
    result = run(filled, "report", "--html", str(path))
    line = one_line_error(result, 1, f"cannot write the report {path}: {reason}")
    assert "unexpected" not in line
    assert list(out.iterdir()) == ([out / "file.txt"] if problem == "parent-is-a-file" else [])


def test_a_report_into_a_fifo_or_through_a_link_never_replaces_it(filled: str, tmp_path: Path) -> None:
    fifo = tmp_path / "pipe.html"
    os.mkfifo(fifo)
    received: list[bytes] = []
    reader = threading.Thread(target=lambda: received.append(fifo.read_bytes()))
    reader.start()
    ok(filled, "report", "--html", str(fifo))
    reader.join(30)
    assert stat.S_ISFIFO(fifo.lstat().st_mode)  # still the FIFO, not a file put in its place
    assert parse(received[0].decode("utf-8")).kpis["total_completed"] == 5
    real, link = tmp_path / "real.html", tmp_path / "link.html"
    link.symlink_to(real)
    ok(filled, "report", "--html", str(link))
    assert link.is_symlink()
    assert stat.S_IMODE(real.stat().st_mode) == 0o600
