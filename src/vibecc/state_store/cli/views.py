"""Rich renderables of the command-line tool: tables and the pipeline board."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Sequence
from typing import Any

from rich import box
from rich.console import Group, RenderableType
from rich.table import Table
from rich.text import Text

from ..ops.copy import CopyReport
from ..records import Change, Pipeline, PipelineHistory, PipelineState, Project, StageStats, Transition
from .formatting import by_state, duration, one_line, percent, plain, when, when_exactly

STATE_STYLE = {
    PipelineState.QUEUED: "blue",
    PipelineState.CODING: "yellow",
    PipelineState.TESTING: "magenta",
    PipelineState.REVIEW: "cyan",
    PipelineState.MERGED: "green",
    PipelineState.FAILED: "red",
}


def state_text(state: PipelineState) -> Text:
    return Text(state.value, style=STATE_STYLE[state])


def kv_table(rows: Iterable[tuple[str, Any]], title: Text | None = None) -> Table:
    """Two columns, key and value; values are shown as text, never as rich markup. The title
    gets its whole width (up to the terminal's), not the width of the columns."""
    table = Table(
        box=box.SIMPLE,
        show_header=False,
        title=title,
        title_justify="left",
        pad_edge=False,
        min_width=title.cell_len if title is not None else None,
    )
    table.add_column(style="bold", no_wrap=True)
    table.add_column(overflow="fold")
    for key, value in rows:
        table.add_row(
            key, value if isinstance(value, Text) else Text("-" if value is None else plain(str(value)))
        )
    return table


def projects_table(projects: Sequence[Project], active: Counter[str]) -> Table:
    table = Table(box=box.SIMPLE_HEAD, title=f"{len(projects)} project(s)", title_justify="left")
    for name, justify in (
        ("Repo", "left"),
        ("Name", "left"),
        ("Branch", "left"),
        ("GitHub project", "right"),
    ):
        table.add_column(name, justify=justify)  # type: ignore[arg-type]
    table.add_column("Max retries CI/review", justify="right")
    table.add_column("Active", justify="right")
    for p in projects:
        table.add_row(
            Text(plain(p.repo), style="bold"),
            Text(plain(p.name)),
            Text(plain(p.base_branch)),
            "-" if p.github_project_id is None else str(p.github_project_id),
            f"{p.max_retries_ci}/{p.max_retries_review}",
            str(active[p.id]),
        )
    return table


def project_rows(p: Project, active: int) -> list[tuple[str, Any]]:
    return [
        ("Repo", p.repo),
        ("Name", p.name),
        ("Id", p.id),
        ("Base branch", p.base_branch),
        ("GitHub project", p.github_project_id),
        ("Max retries CI", p.max_retries_ci),
        ("Max retries review", p.max_retries_review),
        ("Active pipelines", active),
        ("Created", when(p.created_at)),
        ("Updated", when(p.updated_at)),
    ]


def pipelines_table(pipelines: Sequence[Pipeline], repos: dict[str, str]) -> Table:
    table = Table(box=box.SIMPLE_HEAD, title=f"{len(pipelines)} active pipeline(s)", title_justify="left")
    several = len({p.project_id for p in pipelines}) > 1
    table.add_column("Ticket", no_wrap=True)
    if several:
        table.add_column("Repo", no_wrap=True)
    table.add_column("State", no_wrap=True)
    table.add_column("Title")
    table.add_column("PR", justify="right", no_wrap=True)
    table.add_column("Retries", justify="right", no_wrap=True)
    table.add_column("Updated (UTC)", no_wrap=True)
    for p in pipelines:
        repo = [Text(plain(repos.get(p.project_id, p.project_id)))] if several else []
        table.add_row(
            Text(f"#{plain(p.ticket_id)}"),
            *repo,
            state_text(p.state),
            Text(plain(p.ticket_title)),
            "-" if p.pr_id is None else f"#{p.pr_id}",
            f"{p.retry_count_ci}/{p.retry_count_review}",
            when(p.updated_at),
        )
    return table


def board(pipelines: Sequence[Pipeline], repos: dict[str, str]) -> RenderableType:
    """One column per state, oldest ticket on top; MERGED/FAILED only when something is in them."""
    several = len({p.project_id for p in pipelines}) > 1
    table = Table(box=box.ROUNDED, expand=True, title="Board", title_justify="left", show_lines=True)
    cells: list[RenderableType] = []
    for state, cards in by_state(pipelines).items():
        table.add_column(
            Text(f"{state.value.upper()} {len(cards)}", style=f"bold {STATE_STYLE[state]}"), ratio=1
        )
        parts: list[RenderableType] = []
        for card in cards:
            parts.extend([Text(""), _card(card, repos, several)] if parts else [_card(card, repos, several)])
        cells.append(Group(*parts) if parts else Text("·", style="dim"))
    table.add_row(*cells)
    return table


def _card(p: Pipeline, repos: dict[str, str], with_repo: bool) -> Text:
    meta = [plain(repos.get(p.project_id, p.project_id))] if with_repo else []
    if p.pr_id is not None:
        meta.append(f"PR #{p.pr_id}")
    if p.retry_count_ci or p.retry_count_review:
        meta.append(f"retries {p.retry_count_ci}/{p.retry_count_review}")
    text = Text.assemble((f"#{plain(p.ticket_id)} ", "bold"), plain(p.ticket_title))
    if meta:
        text.append("\n" + " · ".join(meta), style="dim")
    return text


def pipeline_rows(p: Pipeline, repo: str | None) -> list[tuple[str, Any]]:
    return [
        ("Ticket", f"#{p.ticket_id}"),
        ("Title", p.ticket_title),
        ("Repo", repo or p.project_id),
        ("State", state_text(p.state)),
        ("Id", p.id),
        ("Branch", p.branch_name),
        ("PR", p.pr_url or p.pr_id),
        ("Retries CI", p.retry_count_ci),
        ("Retries review", p.retry_count_review),
        ("Feedback", p.feedback),
        ("Version", p.version),
        ("Created", when(p.created_at)),
        ("Updated", when(p.updated_at)),
        ("Body", p.ticket_body or None),
    ]


def history_table(records: Sequence[PipelineHistory], repos: dict[str, str], caption: str) -> Table:
    table = Table(box=box.SIMPLE_HEAD, title=Text(plain(caption)), title_justify="left")
    several = len({r.project_id for r in records}) > 1
    table.add_column("Completed (UTC)", no_wrap=True)
    if several:
        table.add_column("Repo", no_wrap=True)
    table.add_column("Ticket", no_wrap=True)
    table.add_column("Title")
    table.add_column("Result", no_wrap=True)
    table.add_column("Took", justify="right", no_wrap=True)
    table.add_column("Retries", justify="right", no_wrap=True)
    for r in records:
        repo = [Text(plain(repos.get(r.project_id, r.project_id)))] if several else []
        table.add_row(
            when(r.completed_at),
            *repo,
            Text(f"#{plain(r.ticket_id)}"),
            Text(plain(r.ticket_title)),
            state_text(r.final_state),
            duration(r.duration_seconds),
            f"{r.total_retries_ci}/{r.total_retries_review}",
        )
    return table


def stats_table(stats: dict[str, Any], title: str) -> Table:
    """The numbers of `history stats` (user text in `title` is shown as is)."""
    rate = Text(
        percent(stats["success_rate"]), style="bold green" if stats["success_rate"] >= 0.8 else "bold"
    )
    return kv_table(
        [
            ("Finished", stats["total_completed"]),
            ("Merged", Text(str(stats["total_merged"]), style="green")),
            ("Failed", Text(str(stats["total_failed"]), style="red" if stats["total_failed"] else "")),
            ("Success rate", rate),
            ("Average duration", duration(stats["avg_duration_seconds"])),
            ("Median (p50)", duration(stats["p50_duration_seconds"])),
            ("p95", duration(stats["p95_duration_seconds"])),
            ("Avg retries CI", f"{stats['avg_retries_ci']:.2f}"),
            ("Avg retries review", f"{stats['avg_retries_review']:.2f}"),
        ],
        title=Text(plain(title)),
    )


def timeline_table(timeline: list[Transition]) -> Table:
    """The states a pipeline went through, with the time spent in each."""
    table = Table(box=box.SIMPLE_HEAD, title="Timeline", title_justify="left")
    for name in ("#", "From", "To", "At (UTC)", "Time in state", "Retries CI/review", "Feedback"):
        table.add_column(name, justify="right" if name in ("#", "Time in state") else "left")
    for t in timeline:
        spent = duration(t.seconds_in_state) if t.seconds_in_state is not None else "(now)"
        feedback = one_line(t.feedback) if t.feedback else ""
        table.add_row(
            str(t.seq),
            state_text(t.from_state) if t.from_state else Text("created", style="dim"),
            state_text(t.to_state),
            when(t.at) + (" (reconstructed)" if t.reconstructed else ""),
            spent,
            f"{t.retry_count_ci}/{t.retry_count_review}",
            feedback if len(feedback) <= 60 else feedback[:57] + "...",
        )
    return table


def stages_table(stages: dict[PipelineState, StageStats], title: str) -> Table:
    """Where the time goes: visits of each state and the time spent in it."""
    table = Table(box=box.SIMPLE_HEAD, title=Text(plain(title)), title_justify="left")
    for name in ("Stage", "Visits", "Mean", "p50", "p95", "Total"):
        table.add_column(name, justify="left" if name == "Stage" else "right")
    for state, stats in stages.items():
        table.add_row(
            state_text(state),
            str(stats.visits),
            duration(stats.mean_seconds),
            duration(stats.p50_seconds),
            duration(stats.p95_seconds),
            duration(stats.total_seconds) if stats.visits else "-",
        )
    return table


def copy_table(report: CopyReport) -> Table:
    table = Table(
        box=box.SIMPLE_HEAD, title=Text(one_line(f"Copied to {report.target}")), title_justify="left"
    )
    table.add_column("Table")
    table.add_column("Source rows", justify="right")
    table.add_column("Target rows", justify="right")
    table.add_column("Checksum")
    table.add_column("Verified")
    for t in report.tables:
        table.add_row(
            t.table,
            f"{t.source_rows:,}",
            f"{t.target_rows:,}",
            t.target_checksum,
            Text("yes", style="green") if t.matches else Text("NO", style="bold red"),
        )
    return table


def changes_table(changes: Sequence[Change], repos: dict[str, str], *, header: bool, width: int) -> Table:
    """Changes of the change log, one per row, on a console `width` columns wide.

    Every column but the project's has a width fixed by `width` alone and the table spans it,
    so the tables of successive batches (`changes --follow`, the header with the first only)
    line up as one. The id is cut short (with an ellipsis) only when the project would
    otherwise get fewer than 16 columns; --json has it whole.
    """
    table = Table(
        box=box.SIMPLE_HEAD,
        show_header=header,
        show_edge=False,
        expand=True,
        pad_edge=False,
        collapse_padding=True,
    )
    fixed = (("Seq", 8), ("At (UTC)", 19), ("Kind", 8), ("Op", 8))
    for name, size in fixed:
        table.add_column(name, width=size, justify="right" if name == "Seq" else "left", no_wrap=True)
    # What is left once the fixed columns, Version (7) and the gaps between columns (2) are placed.
    free = width - sum(size for _, size in fixed) - 7 - 2 * 6
    table.add_column("Id", width=min(36, max(9, free - 16)), no_wrap=True, overflow="ellipsis")
    table.add_column("Project", ratio=1, overflow="fold")
    table.add_column("Version", width=7, justify="right", no_wrap=True)
    for c in changes:
        project = "-" if c.project_id is None else repos.get(c.project_id, c.project_id)
        table.add_row(
            str(c.seq),
            when_exactly(c.at),
            c.kind,
            c.op,
            Text(one_line(c.entity_id)),
            Text(one_line(project)),
            "-" if c.version is None else str(c.version),
        )
    return table
