"""render(ReportData) -> one self-contained HTML page: inline CSS and SVG, no scripts, no
fonts or images from anywhere. Every piece of stored text is escaped, for HTML and for a
terminal the page may be printed on (control characters are shown as escapes)."""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from html import escape as escape_html
from typing import Any

from .formatting import duration, percent, plain, when
from .report import Bar, Card, ReportData


def escape(text: str) -> str:
    """Text for the page: HTML special characters and control characters escaped."""
    return escape_html(plain(text))


_CSS = """
:root { --bg:#f7f7f5; --panel:#fff; --ink:#1d2125; --muted:#6b7178; --line:#e3e4e0;
  --merged:#2f9e6e; --failed:#d4504f; --accent:#3c6fd1; }
@media (prefers-color-scheme: dark) {
  :root { --bg:#15181b; --panel:#1d2126; --ink:#e7e9ea; --muted:#9aa1a8; --line:#2e343a; } }
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
        _panel(f"Tickets finished per {per}", _chart(data.finished, dates=True)),
        '<div class="row">',
        _panel("How long tickets took", _chart(data.durations, width=460)),
        _panel("Retries per ticket (CI + review)", _chart(data.retries, width=460)),
        "</div>",
        _board(data.board),
        "<footer>Made by vibecc-state report. Durations run from a ticket's first queueing to its "
        "archiving; days are UTC.</footer>",
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


def _panel(title: str, body: str) -> str:
    legend = (
        '<div class="legend"><span class="sw merged"></span>merged<span class="sw failed"></span>failed</div>'
    )
    return f'<section class="panel"><h2>{escape(title)}</h2>{legend}{body}</section>'


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
