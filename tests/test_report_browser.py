"""The report page as a browser draws it: Debian's Chromium, headless, lays out a report with
stage times and screenshots it. The weekly stage chart and each lane of the slowest tickets
must have a size in the page, and their region of the screenshot the colours of their stages,
in proportion to the seconds behind them.

The layout is read from a copy of the page with one script added, which writes the boxes and
computed colours into an attribute of <body> (the report itself has no script); --dump-dom
hands that back. Without chromium the module is skipped on one line saying so; with CI=true
it fails instead (.ci/run installs it), as the PostgreSQL tests do without their server.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
from html import unescape
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
from PIL import Image

from vibecc.state_store import PipelineState, StateStore

if TYPE_CHECKING:
    from tests import helpers
    from tests.test_cli import ok
    from tests.test_report_stages import WEEK_C, Clock, Step, clock, walk
else:
    import helpers
    from test_cli import ok
    from test_report_stages import WEEK_C, Clock, Step, clock, walk

__all__ = ["clock"]  # the store's clock, a fixture of these tests too

CHROMIUM = shutil.which("chromium")
if CHROMIUM is None:
    _REASON = "chromium is not installed (apt-get install chromium): the report is not checked in a browser"
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(f"CI=true and {_REASON}", pytrace=False)
    pytest.skip(_REASON, allow_module_level=True)

QUEUED, CODING, TESTING, REVIEW, MERGED, FAILED = PipelineState
WIDTH, HEIGHT = 1200, 3000
Colour = tuple[int, int, int]
TIMEOUT = 180
"""Seconds one headless run may take before the test fails (it normally takes one or two)."""
PROBE = """<script>
(function () {
  const box = (el) => {
    const r = el.getBoundingClientRect();
    return {x: r.left + scrollX, y: r.top + scrollY, w: r.width, h: r.height};
  };
  const shapes = (svg) => Array.from(svg.querySelectorAll("rect"), (r) =>
    ({cls: r.getAttribute("class"), fill: getComputedStyle(r).fill, ...box(r)}));
  const charts = (selector) => Array.from(document.querySelectorAll(selector), (svg) =>
    ({...box(svg), rects: shapes(svg)}));
  document.body.setAttribute("data-layout", JSON.stringify({
    viewport: [innerWidth, innerHeight],
    ratio: devicePixelRatio,
    panel: getComputedStyle(document.querySelector("#stages")).backgroundColor,
    legend: Object.fromEntries(Array.from(document.querySelectorAll("#slowest .legend .sw"), (sw) =>
      [sw.classList[1], getComputedStyle(sw).backgroundColor])),
    stages: charts("#stages svg"),
    table: Array.from(document.querySelectorAll("#stages table.stages"), box),
    lanes: charts("#slowest svg.lane"),
  }));
})();
</script>"""


def chromium(tmp_path: Path, *args: str) -> str:
    """Run headless Chromium on a fresh profile; its stdout. The whole process group is
    killed if it outlives TIMEOUT."""
    assert CHROMIUM is not None
    command = [
        CHROMIUM,
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--hide-scrollbars",
        "--force-device-scale-factor=1",
        f"--window-size={WIDTH},{HEIGHT}",
        f"--user-data-dir={tmp_path / 'profile'}",
        *args,
    ]
    browser = subprocess.Popen(
        command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True
    )
    try:
        out, err = browser.communicate(timeout=TIMEOUT)
    except subprocess.TimeoutExpired:
        os.killpg(browser.pid, signal.SIGKILL)
        browser.communicate()
        pytest.fail(f"chromium did not finish within {TIMEOUT} s: {' '.join(command)}")
    assert browser.returncode == 0, err[-2000:]
    return out


def rgb(css: str) -> Colour:
    """(r, g, b) of an opaque computed colour such as "rgb(229, 165, 45)" (not "rgba(0, 0, 0, 0)",
    the colour of nothing)."""
    found = re.fullmatch(r"rgb\((\d+), (\d+), (\d+)\)", css)
    assert found, css
    r, g, b = (int(v) for v in found.groups())
    return r, g, b


def colours(shot: Image.Image, left: float, top: float, right: float, bottom: float) -> list[Colour]:
    """The colours of the screenshot's pixels in a box, row by row."""
    raw = shot.crop((round(left), round(top), round(right), round(bottom))).tobytes()
    return list(zip(raw[0::3], raw[1::3], raw[2::3], strict=True))


def alike(one: Colour, other: Colour) -> bool:
    return all(abs(a - b) <= 6 for a, b in zip(one, other, strict=True))


def pixels(shot: Image.Image, area: dict[str, Any], colour: Colour) -> int:
    """How many pixels of the screenshot within `area` (a box of the layout) have `colour`."""
    box = colours(shot, area["x"], area["y"], area["x"] + area["w"], area["y"] + area["h"])
    return sum(1 for p in box if alike(p, colour))


def columns(shot: Image.Image, area: dict[str, Any], background: Colour) -> int:
    """How many columns of `area`, along its middle row, are not the background."""
    y = round(area["y"] + area["h"] / 2)
    row = colours(shot, area["x"], y, area["x"] + area["w"], y + 1)
    return sum(1 for p in row if not alike(p, background))


@pytest.fixture
def page(tmp_path: Path, clock: Clock) -> Path:
    """A report of two weeks of runs walked through every stage, and one imported run."""
    db = str(tmp_path / "store" / "vibecc.db")
    with StateStore(db) as store:
        web = store.create_project("Web", "acme/web")
        walk(
            store, clock, web, 1, [(QUEUED, 300), (CODING, 3600), (TESTING, 600), (REVIEW, 1800), (MERGED, 1)]
        )
        steps: list[Step] = [
            (QUEUED, 120),
            (CODING, 1800),
            (TESTING, 900),
            (CODING, 1200, "<b>CI</b> failed\x1b[31m"),
        ]
        walk(store, clock, web, 2, [*steps, (TESTING, 600), (REVIEW, 2400), (FAILED, 1)])
        clock.now = WEEK_C
        walk(
            store,
            clock,
            web,
            3,
            [(QUEUED, 600), (CODING, 5400), (TESTING, 1200), (REVIEW, 3600), (MERGED, 1)],
        )
        # Imported: no timeline, so one unknown stretch.
        imported = helpers.history_record(project_id=web.id, completed_at=WEEK_C, duration_seconds=20_000)
        store.import_history([imported])
    path = tmp_path / "report.html"
    ok(db, "report", "--html", str(path))
    return path


def test_the_stage_charts_are_drawn_to_scale(page: Path, tmp_path: Path) -> None:
    html = page.read_text(encoding="utf-8")
    assert "<script" not in html
    probe = tmp_path / "probe.html"
    probe.write_text(html.replace("</body>", PROBE + "</body>"), encoding="utf-8")
    dom = chromium(tmp_path, "--dump-dom", probe.as_uri())
    found = re.search(r'<body data-layout="([^"]*)"', dom)
    assert found, dom[:2000]
    layout = json.loads(unescape(found.group(1)))
    shot_path = tmp_path / "shot.png"
    chromium(tmp_path, f"--screenshot={shot_path}", page.as_uri())
    shot = Image.open(shot_path).convert("RGB")
    assert shot.size == (WIDTH, HEIGHT)
    assert layout["viewport"][0] == WIDTH  # the same width, so the same layout as the screenshot
    assert layout["ratio"] == 1

    # The weekly chart: one drawing with a rectangle for each stage of each week with time in it.
    [chart] = layout["stages"]
    assert chart["w"] > 600
    assert chart["h"] > 150
    assert chart["y"] + chart["h"] < HEIGHT, "the chart is below the screenshot"
    assert [r["cls"] for r in chart["rects"]] == ["queued", "coding", "testing", "review"] * 2
    assert all(r["w"] > 0 and r["h"] > 0 for r in chart["rects"])
    [table] = layout["table"]
    assert table["w"] > 0
    assert table["h"] > 0
    fills = {r["cls"]: rgb(r["fill"]) for r in chart["rects"]}
    assert len(set(fills.values())) == 4, fills
    assert fills == {name: rgb(layout["legend"][name]) for name in fills}  # the colours of the legend
    drawn = {name: pixels(shot, chart, colour) for name, colour in fills.items()}
    assert all(count > 0 for count in drawn.values()), drawn
    # Bars of one width: the area of each stage's colour is in proportion to its seconds
    # (coding 12,000 s and review 7,800 s over both weeks; their edge rows blend).
    assert drawn["coding"] / drawn["review"] == pytest.approx(12_000 / 7_800, rel=0.05)

    # The slowest tickets: the imported run first, all of it unknown, then the three walked runs.
    lanes = layout["lanes"]
    assert len(lanes) == 4
    assert all(lane["w"] > 600 and lane["h"] > 10 and lane["y"] + lane["h"] < HEIGHT for lane in lanes)
    assert [[r["cls"] for r in lane["rects"]] for lane in lanes] == [
        ["unknown"],
        ["queued", "coding", "testing", "review", "merged"],  # ticket 3
        ["queued", "coding", "testing", "coding", "testing", "review", "failed"],  # ticket 2
        ["queued", "coding", "testing", "review", "merged"],  # ticket 1
    ]
    background = rgb(layout["panel"])
    unknown = rgb(lanes[0]["rects"][0]["fill"])
    assert unknown == rgb(layout["legend"]["unknown"]) != background
    assert pixels(shot, lanes[0], unknown) >= 0.95 * lanes[0]["w"] * lanes[0]["h"]
    # Each lane is as long, on the longest one's scale, as its run took.
    for lane, seconds in zip(lanes, [20_000, 10_801, 7_021, 6_301], strict=True):
        assert columns(shot, lane, background) == pytest.approx(lanes[0]["w"] * seconds / 20_000, abs=3)
        for rect in lane["rects"]:
            if rect["w"] >= 3:
                assert pixels(shot, rect, rgb(rect["fill"])) > 0, rect
