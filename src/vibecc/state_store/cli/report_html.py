"""render(ReportData) -> one self-contained HTML page: inline CSS and SVG, no scripts, no
fonts or images from anywhere. Every piece of stored text is escaped, for HTML and for a
terminal the page may be printed on (control characters are shown as escapes)."""

from __future__ import annotations

import json
import math
from collections import Counter, defaultdict
from collections.abc import Sequence
from html import escape as escape_html
from typing import Any

from ..records import PipelineState, StageStats
from .formatting import duration, one_line, percent, plain, when
from .report import STAGES, Bar, Card, ReportData, SlowRun, StageWeek


def escape(text: str) -> str:
    """Text for the page: HTML special characters and control characters escaped."""
    return escape_html(plain(text))


_CSS = """
:root { --bg:#f7f7f5; --panel:#fff; --ink:#1d2125; --muted:#6b7178; --line:#e3e4e0;
  --merged:#2f9e6e; --failed:#d4504f; --accent:#3c6fd1;
  --queued:#4f7fd9; --coding:#e5a52d; --testing:#a35fc9; --review:#22a3b5; --unknown:#c3c7cb; }
@media (prefers-color-scheme: dark) {
  :root { --bg:#15181b; --panel:#1d2126; --ink:#e7e9ea; --muted:#9aa1a8; --line:#2e343a;
    --unknown:#4e555c; } }
* { box-sizing: border-box; }
body { margin:0; background:var(--bg); color:var(--ink);
  font: 15px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; }
main { max-width: 1080px; margin: 0 auto; padding: 28px 20px 40px; }
h1 { font-size: 24px; margin: 0 0 4px; } h2 { font-size: 16px; margin: 0 0 12px; }
.sub { color: var(--muted); margin: 0 0 22px; }
.kpis { display:grid; grid-template-columns: repeat(auto-fill, minmax(180px, 1fr)); gap:12px;
  margin-bottom:20px; }
.kpi, .panel { background:var(--panel); border:1px solid var(--line); border-radius:10px; }
.kpi { padding: 12px 14px; }
.kpi .v { display:block; font-size: 24px; font-weight: 650; font-variant-numeric: tabular-nums; }
.kpi .k { color: var(--muted); font-size: 13px; }
.kpi.good .v { color: var(--merged); } .kpi.bad .v { color: var(--failed); }
.panel { padding: 16px 18px; margin-bottom: 20px; }
.row { display:grid; grid-template-columns: 1fr 1fr; gap: 20px; }
@media (max-width: 800px) { .row { grid-template-columns: 1fr; } }
.legend { color: var(--muted); font-size: 13px; margin: -6px 0 8px; }
.sw { display:inline-block; width:10px; height:10px; border-radius:2px; margin: 0 4px 0 10px; }
.sw.merged, rect.merged { background: var(--merged); fill: var(--merged); }
.sw.failed, rect.failed { background: var(--failed); fill: var(--failed); }
.sw.queued, rect.queued { background: var(--queued); fill: var(--queued); }
.sw.coding, rect.coding { background: var(--coding); fill: var(--coding); }
.sw.testing, rect.testing { background: var(--testing); fill: var(--testing); }
.sw.review, rect.review { background: var(--review); fill: var(--review); }
.sw.unknown, rect.unknown { background: var(--unknown); fill: var(--unknown); }
svg { width: 100%; height: auto; display:block; }
svg text { fill: var(--muted); font-size: 10px; }
svg line { stroke: var(--line); }
.empty { color: var(--muted); font-style: italic; }
.board { display:grid; grid-template-columns: repeat(auto-fit, minmax(180px, 1fr)); gap: 12px; }
.col h3 { font-size: 12px; letter-spacing: .06em; text-transform: uppercase; color: var(--muted);
  margin: 0 0 8px; }
.card { border:1px solid var(--line); border-left: 3px solid var(--accent); border-radius: 8px;
  padding: 8px 10px; margin-bottom: 8px; background: var(--bg); }
.card b { font-variant-numeric: tabular-nums; } .card .meta { color: var(--muted); font-size: 12px; }
table.stages { border-collapse: collapse; margin-top: 14px; font-size: 13px;
  font-variant-numeric: tabular-nums; }
table.stages th, table.stages td { padding: 3px 12px 3px 0; text-align: right; }
table.stages th:first-child, table.stages td:first-child { text-align: left; }
table.stages th { color: var(--muted); font-weight: 600; border-bottom: 1px solid var(--line); }
.run { margin-bottom: 14px; } .run .meta { color: var(--muted); font-size: 12px; }
svg.lane { height: 18px; margin: 4px 0 3px; }
footer { color: var(--muted); font-size: 12px; }
"""

_KPIS = (
    ("total_completed", "Finished", "count", ""),
    ("total_merged", "Merged", "count", "good"),
    ("total_failed", "Failed", "count", "bad"),
    ("success_rate", "Success rate", "percent", ""),
    ("avg_duration_seconds", "Average duration", "duration", ""),
    ("p50_duration_seconds", "Median (p50)", "duration", ""),
    ("p95_duration_seconds", "p95 duration", "duration", ""),
    ("avg_retries_ci", "Avg CI retries", "decimal", ""),
    ("avg_retries_review", "Avg review retries", "decimal", ""),
)


DATED = ("day", "week")
"""Units whose bars are labelled with a date (shown without its year)."""


def render(data: ReportData) -> str:
    """The report as one HTML document."""
    per = data.finished_unit
    parts = [
        "<!doctype html>",
        '<html lang="en"><head><meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>{escape(data.title)}</title><style>{_CSS}</style></head><body><main>",
        f"<h1>{escape(data.title)}</h1>",
        f'<p class="sub">{escape(data.scope)} &middot; generated {escape(when(data.generated_at))} UTC</p>',
        _kpis(data.stats),
        _panel(
            "finished", f"Tickets finished per {per}", _chart(data.finished, dates=per in ("day", "week"))
        ),
        '<div class="row">',
        _panel("durations", "How long tickets took", _chart(data.durations, width=460)),
        _panel("retries", "Retries per ticket (CI + review)", _chart(data.retries, width=460)),
        "</div>",
        _panel(
            "stages",
            "Where the time goes: time in each stage per week",
            _stage_chart(data.stage_weeks) + _stage_table(data.stages),
            legend=STAGES,
        ),
        _panel(
            "slowest",
            f"Slowest {len(data.slowest)} tickets, stage by stage" if data.slowest else "Slowest tickets",
            _slowest(data.slowest),
            legend=(*STAGES, "unknown"),
        ),
        _board(data.board),
        "<footer>Made by vibecc-state report. Durations run from a ticket's first queueing to its "
        "archiving; days and weeks are UTC. A week's stage times are those of the runs completed in "
        "it; runs imported or finished before the store kept timelines have no stages (shown as "
        "unknown). Stage percentiles of a whole history are read from a kept histogram (within 5%)."
        "</footer>",
        "</main></body></html>",
    ]
    return "\n".join(parts) + "\n"


def _kpis(stats: dict[str, Any]) -> str:
    tiles = []
    for key, label, kind, tone in _KPIS:
        value = stats[key]
        tiles.append(
            f'<div class="kpi {tone}" data-key="{key}" data-value="{escape(json.dumps(value))}">'
            f'<span class="v">{escape(_format(value, kind))}</span><span class="k">{label}</span></div>'
        )
    return f'<section class="kpis">{"".join(tiles)}</section>'


def _format(value: float | None, kind: str) -> str:
    if value is None:
        return "-"
    if kind == "count":
        return f"{int(value):,}"
    if kind == "percent":
        return percent(value)
    if kind == "decimal":
        return f"{value:.2f}"
    return duration(value)


def _panel(
    key: str, title: str, body: str, *, legend: Sequence[str] = (PipelineState.MERGED, PipelineState.FAILED)
) -> str:
    keys = "".join(f'<span class="sw {name}"></span>{name}' for name in legend)
    return (
        f'<section class="panel" id="{key}"><h2>{escape(title)}</h2><div class="legend">{keys}</div>'
        f"{body}</section>"
    )


def _chart(bars: Sequence[Bar], *, dates: bool = False, width: int = 720) -> str:
    """Stacked bars (merged below failed) with a y axis and a native tooltip per bar."""
    if not any(b.merged or b.failed for b in bars):
        return '<p class="empty">No finished tickets in this window.</p>'
    height, left, bottom, top = 230, 34, 26, 10
    plot_w, plot_h = width - left - 8, height - bottom - top
    step = _tick_step(max(b.merged + b.failed for b in bars))
    ceiling = step * math.ceil(max(b.merged + b.failed for b in bars) / step)
    slot = plot_w / len(bars)
    every = max(1, math.ceil(len(bars) / 12))
    out = [f'<svg viewBox="0 0 {width} {height}" role="img">']
    for tick in range(0, ceiling + 1, step):
        y = top + plot_h - tick / ceiling * plot_h
        out.append(f'<line x1="{left}" x2="{width - 8}" y1="{y:.1f}" y2="{y:.1f}"/>')
        out.append(f'<text x="{left - 6}" y="{y + 4:.1f}" text-anchor="end">{tick}</text>')
    for i, bar in enumerate(bars):
        w = min(56.0, max(1.0, slot * 0.76))
        x = left + i * slot + (slot - w) / 2
        tip = f"{bar.label}: {bar.merged} merged, {bar.failed} failed"
        out.append(f"<g><title>{escape(tip)}</title>")
        base = float(top + plot_h)
        for css, count in (("merged", bar.merged), ("failed", bar.failed)):
            h = count / ceiling * plot_h
            if h:
                out.append(
                    f'<rect class="{css}" x="{x:.1f}" y="{base - h:.1f}" width="{w:.1f}" height="{h:.1f}"/>'
                )
            base -= h
        out.append("</g>")
        if i % every == 0:
            label = bar.label[5:] if dates else bar.label
            out.append(
                f'<text x="{x + w / 2:.1f}" y="{height - 8}" text-anchor="middle">{escape(label)}</text>'
            )
    out.append("</svg>")
    return "".join(out)


def _tick_step(peak: int) -> int:
    """1, 2, 5, 10, 20, 50, ... so that the axis has at most five steps."""
    step = 1
    while peak / step > 5:
        step = step * 5 // 2 if str(step).startswith("2") else step * 2
    return step


def _board(board: dict[str, tuple[Card, ...]]) -> str:
    total = sum(len(cards) for cards in board.values())
    columns = []
    for state, cards in board.items():
        items = "".join(_card(c) for c in cards) or '<p class="empty">none</p>'
        columns.append(f'<div class="col"><h3>{escape(state)} ({len(cards)})</h3>{items}</div>')
    return (
        f'<section class="panel"><h2>Current board: {total} active pipeline{"s" * (total != 1)}</h2>'
        f'<div class="board">{"".join(columns)}</div></section>'
    )


def _card(card: Card) -> str:
    meta = [card.repo]
    if card.pr_id is not None:
        meta.append(f"PR #{card.pr_id}")
    if card.retries_ci or card.retries_review:
        meta.append(f"retries {card.retries_ci} CI / {card.retries_review} review")
    return (
        f'<div class="card"><b>#{escape(card.ticket_id)}</b> {escape(card.title)}'
        f'<div class="meta">{escape(" · ".join(meta))}</div></div>'
    )


_TIME_UNITS = ((86400, "d"), (3600, "h"), (60, "m"), (1, "s"))


def _stage_chart(weeks: Sequence[StageWeek], width: int = 720) -> str:
    """Stacked bars of the time in each stage per week, on an axis in s, m, h or d."""
    totals = [sum(w.stages[s].total_seconds for s in STAGES) for w in weeks]
    if not any(totals):
        return '<p class="empty">No time in stages recorded for the tickets finished in these weeks.</p>'
    height, left, bottom, top = 230, 40, 26, 10
    plot_w, plot_h = width - left - 8, height - bottom - top
    unit, suffix = next((u, s) for u, s in _TIME_UNITS if max(totals) >= 2 * u or u == 1)
    peak = math.ceil(max(totals) / unit)
    step = _tick_step(peak)
    ceiling = step * math.ceil(peak / step) * unit
    slot = plot_w / len(weeks)
    every = max(1, math.ceil(len(weeks) / 12))
    out = [f'<svg viewBox="0 0 {width} {height}" role="img">']
    for tick in range(0, ceiling + 1, step * unit):
        y = top + plot_h - tick / ceiling * plot_h
        out.append(f'<line x1="{left}" x2="{width - 8}" y1="{y:.1f}" y2="{y:.1f}"/>')
        out.append(f'<text x="{left - 6}" y="{y + 4:.1f}" text-anchor="end">{tick // unit}{suffix}</text>')
    for i, week in enumerate(weeks):
        w = min(56.0, max(1.0, slot * 0.76))
        x = left + i * slot + (slot - w) / 2
        spent = ", ".join(f"{s.value} {duration(week.stages[s].total_seconds)}" for s in STAGES)
        out.append(f"<g><title>{escape(f'week of {week.week.isoformat()}: {spent}')}</title>")
        base = float(top + plot_h)
        for state in STAGES:
            h = week.stages[state].total_seconds / ceiling * plot_h
            if h:
                out.append(
                    f'<rect class="{state.value}" x="{x:.1f}" y="{base - h:.1f}" '
                    f'width="{w:.1f}" height="{h:.1f}"/>'
                )
            base -= h
        out.append("</g>")
        if i % every == 0:
            out.append(
                f'<text x="{x + w / 2:.1f}" y="{height - 8}" text-anchor="middle">'
                f"{escape(week.week.isoformat()[5:])}</text>"
            )
    out.append("</svg>")
    return "".join(out)


def _stage_table(stages: dict[PipelineState, StageStats]) -> str:
    """Visits, mean, p50 and p95 of each state over the whole window (what history stats shows)."""
    if not any(s.visits for s in stages.values()):
        return ""
    head = "".join(f"<th>{name}</th>" for name in ("Stage", "Visits", "Mean", "p50", "p95", "Total"))
    rows = [
        f'<tr data-state="{state.value}"><td><span class="sw {state.value}"></span>{state.value}</td>'
        f"<td>{s.visits:,}</td><td>{duration(s.mean_seconds)}</td><td>{duration(s.p50_seconds)}</td>"
        f"<td>{duration(s.p95_seconds)}</td><td>{duration(s.total_seconds) if s.visits else '-'}</td></tr>"
        for state, s in stages.items()
    ]
    return f'<table class="stages"><tr>{head}</tr>{"".join(rows)}</table>'


def _slowest(runs: Sequence[SlowRun]) -> str:
    """Each run as a bar of its stretches, all on the scale of the longest."""
    if not runs:
        return '<p class="empty">No finished tickets in this window.</p>'
    scale = max(max(sum(s.seconds for s in run.segments) for run in runs), 1.0)
    return "".join(_lane(run, scale) for run in runs)


def _lane(run: SlowRun, scale: float) -> str:
    width, x = 1000, 0.0
    bars = [f'<svg class="lane" viewBox="0 0 {width} 18" preserveAspectRatio="none" role="img">']
    spent: defaultdict[str, float] = defaultdict(float)
    visits: Counter[str] = Counter()
    for segment in run.segments:
        name = segment.state.value if segment.state is not None else "unknown"
        spent[name] += segment.seconds
        visits[name] += 1
        tip = f"{name}: {duration(segment.seconds)}"
        if segment.feedback:
            shown = one_line(segment.feedback)
            tip += f" ({shown if len(shown) <= 120 else shown[:117] + '...'})"
        w = segment.seconds / scale * width
        bars.append(
            f'<g><title>{escape(tip)}</title><rect class="{name}" x="{x:.2f}" y="0" '
            f'width="{w:.2f}" height="18"/></g>'
        )
        x += w
    bars.append("</svg>")
    order = [state.value for state in PipelineState] + ["unknown"]
    parts = [
        f"{name} {duration(spent[name])}" + (f" ({visits[name]}x)" if visits[name] > 1 else "")
        for name in order
        if name in visits
    ]
    head = (
        f"<b>{escape(f'{run.repo}#{run.ticket_id}')}</b> {escape(run.title)} "
        f'<span class="meta">&middot; {duration(run.duration_seconds)} &middot; {run.final_state.value} '
        f"{escape(when(run.completed_at))}</span>"
    )
    return (
        f'<div class="run" data-total="{run.duration_seconds}"><div>{head}</div>{"".join(bars)}'
        f'<div class="meta">{escape(" · ".join(parts)) or "no stages"}</div></div>'
    )
