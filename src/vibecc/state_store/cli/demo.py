"""`vibecc-state demo`: the orchestrator played on its own demo project."""

from __future__ import annotations

from collections.abc import Sequence

import click
from rich.table import Table
from rich.text import Text

from ..store import StateStore
from .args import names
from .common import BadInput, Env, console, pass_env
from .formatting import one_line
from .history import stats_of
from .scenario import REPO, SAMPLE, TicketRun, run_demo
from .views import STATE_STYLE, board, stats_table


@click.command()
@click.option(
    "--tickets", type=click.IntRange(1, 500), default=6, show_default=True, help="New tickets to walk."
)
@click.option(
    "--seed-history",
    type=click.IntRange(0, 10_000),
    default=0,
    metavar="N",
    help="First import N invented finished tickets of the past two weeks, titled [sample].",
)
@click.option(
    "--leave-active",
    type=click.IntRange(0, 500),
    default=0,
    metavar="K",
    help="Leave the last K new tickets in progress, so the board has cards.",
)
@click.option("--yes", is_flag=True, help="Write into a store that holds other projects too.")
@pass_env
def demo(env: Env, tickets: int, seed_history: int, leave_active: int, yes: bool) -> None:
    """Play the orchestrator on a demo project (vibecc/demo), then show the board and stats.

    Tickets are claimed and moved QUEUED -> CODING -> TESTING -> REVIEW -> MERGED with
    expected_version on every write; one needs a second CI run, one ends FAILED, and each is
    archived when it is finished. Running it again first finishes what an earlier run left in
    progress, then continues with the next ticket numbers.

    It creates the store when the file does not exist yet, and refuses (exit 2, nothing
    written) a store that holds any project but vibecc/demo, unless --yes.

    \b
    Example:
      vibecc-state --db demo/vibecc.db demo --seed-history 30 --leave-active 2
    """
    if leave_active > tickets:
        raise BadInput(f"--leave-active {leave_active} is more than --tickets {tickets}")
    store = env.store(create=True)
    others = _other_projects(store)
    if others and not yes:
        raise BadInput(
            f"{env.where} holds other projects ({others}); demo writes invented tickets, so it "
            "runs on a store of its own: give another --db, or --yes to add them here anyway"
        )
    result = run_demo(store, tickets, seed_history=seed_history, leave_active=leave_active)
    out = console()
    out.print(
        Text.assemble(("Demo project ", ""), (result.project.repo, "bold"), one_line(f" in {env.where}"))
    )
    if result.seeded:
        first, last = result.seeded[0], result.seeded[-1]
        out.print(
            Text(
                f"Imported {len(result.seeded)} invented tickets of the past two weeks as history "
                f"(#{first}-#{last}, titled {SAMPLE}): sample data, not walked."
            )
        )
    out.print(_walked(result.runs))
    out.print()
    active = store.list_pipelines(result.project.id)
    if active:
        out.print(board(active, names(store)))
    else:
        out.print("Board: empty, every demo ticket is finished and archived.")
    out.print()
    stats = stats_of(store, result.project.id, None, None)
    out.print(stats_table(stats, f"History of {result.project.repo}"))
    if stats["p95_duration_seconds"] is not None and stats["p95_duration_seconds"] < 60:
        out.print(
            "Durations are ~0s: the demo walks each ticket in an instant "
            "(--seed-history 30 adds invented tickets that took a while).",
            style="dim",
        )
    prefix = env.command("")
    out.print(
        Text(
            one_line(f"Try: {prefix}history list")
            + "\n"
            + one_line(f"     {prefix}report --html report.html"),
            style="dim",
        )
    )


def _other_projects(store: StateStore) -> str:
    """The projects other than the demo's, live or deleted, and history of unknown projects,
    for a message; empty when there are none."""
    live = [p.repo for p in store.list_projects() if p.repo.lower() != REPO]
    deleted = [f"{d.repo} (deleted)" for d in store.list_deleted_projects() if d.repo.lower() != REPO]
    found = live + deleted
    if not found:
        demo_ids = [p.id for p in store.list_projects() if p.repo.lower() == REPO]
        demo_ids += [d.id for d in store.list_deleted_projects()]
        if store.count_history() > sum(store.count_history(i) for i in demo_ids):
            return "history of other projects"
        return ""
    shown = ", ".join(found[:3])
    return shown + (f" and {len(found) - 3} more" if len(found) > 3 else "")


def _walked(runs: Sequence[TicketRun]) -> Table:
    walked = Table(box=None, show_header=True, title="Tickets walked", title_justify="left", pad_edge=False)
    walked.add_column("Ticket", no_wrap=True)
    walked.add_column("Path")
    walked.add_column("Now", no_wrap=True)
    for run in runs:
        now = Text(run.state.value + (" (archived)" if run.archived else ""), style=STATE_STYLE[run.state])
        path = ("(resumed) " if run.resumed else "") + " → ".join(run.steps)
        walked.add_row(f"#{run.ticket_id}", path, now)
    return walked
