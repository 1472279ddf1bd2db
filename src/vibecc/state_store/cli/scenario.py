"""The demo: a small orchestrator walking tickets through the store API, as VibeCC would.

It claims queued pipelines, moves them QUEUED -> CODING -> TESTING -> REVIEW -> MERGED with
expected_version on every write, records the PR and the feedback of a failed CI run or a
rejected review, and archives each finished pipeline. Running it again resumes what the last
run left in progress and continues with the next ticket numbers.
"""

from __future__ import annotations

import random
import re
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from ..errors import ProjectNotFoundError, ValidationError
from ..records import Pipeline, PipelineHistory, PipelineState, Project
from ..store import StateStore

REPO = "vibecc/demo"
SAMPLE = "[sample]"
"""The start of the title of every invented history record (--seed-history)."""
Q, C, T, R, M, F = (
    PipelineState.QUEUED,
    PipelineState.CODING,
    PipelineState.TESTING,
    PipelineState.REVIEW,
    PipelineState.MERGED,
    PipelineState.FAILED,
)
TITLES = (
    "Add retry with backoff to the webhook handler",
    "Show ticket titles on the pipeline board",
    "Fix off-by-one in history pagination",
    "Reject branch names git would refuse",
    "Cache project config between polls",
    "Report p95 durations in the weekly summary",
    "Stop double-claiming queued tickets",
    "Make the CI log link clickable",
    "Handle renamed repositories",
    "Archive finished pipelines in one transaction",
    "Time out stuck reviews after two hours",
    "Document the state store CLI",
)
_ROLES = ("merged", "ci_retry", "failed")
_PATH = (Q, C, T, R, M)
_STOPS = (R, T, C, Q)
"""Where tickets left in progress stop, the oldest first."""


@dataclass(frozen=True, slots=True)
class TicketRun:
    """What the demo did with one ticket: the states it went through, in order."""

    ticket_id: str
    title: str
    steps: tuple[str, ...]
    state: PipelineState
    pr_id: int | None
    archived: bool
    resumed: bool = False


@dataclass(frozen=True, slots=True)
class DemoResult:
    """The demo project, the ticket numbers of invented history imported, and the tickets walked."""

    project: Project
    seeded: range
    runs: tuple[TicketRun, ...]


def run_demo(
    store: StateStore, tickets: int = 6, *, seed_history: int = 0, leave_active: int = 0
) -> DemoResult:
    """Walk `tickets` new tickets of the demo project, after finishing any the last run left.

    Each new ticket is walked to the end and archived: the first merges, the second merges
    after a CI retry, the third ends FAILED after a rejected review, the others merge.

    Args:
        seed_history: first import this many invented finished tickets of the past two weeks
            (import_history, titles marked "[sample]"), so that durations have something real
            to show; the walk itself takes no time.
        leave_active: leave the last this-many new tickets in progress (REVIEW, TESTING,
            CODING, then QUEUED), so that the board has cards. The next run finishes them.

    Raises:
        ValidationError: leave_active is more than tickets, or a count is negative.
    """
    if min(tickets, seed_history, leave_active) < 0:
        raise ValidationError("the demo's ticket counts must not be negative")
    if leave_active > tickets:
        raise ValidationError(f"the demo cannot leave {leave_active} of {tickets} new ticket(s) in progress")
    project = _project(store)
    runs = [_finish(store, project, pipeline) for pipeline in reversed(store.list_pipelines(project.id))]
    seeded = _seed(store, project, _next_ticket(store, project), seed_history)
    first = _next_ticket(store, project)
    for number in range(first, first + tickets):
        store.create_pipeline(project.id, number, _title(number), _branch(number), ticket_body=_body(number))
    for index in range(tickets - leave_active):
        role = _ROLES[index] if index < len(_ROLES) else "merged"
        runs.append(_walk(store, project, _claim(store, project), role))
    runs.extend(_leave(store, project, leave_active))
    return DemoResult(project, seeded, tuple(runs))


def _leave(store: StateStore, project: Project, count: int) -> list[TicketRun]:
    """Take the `count` tickets still queued part of the way: the oldest furthest (see _STOPS)."""
    runs: list[TicketRun] = []
    for index in range(count):
        stop = _STOPS[index] if index < len(_STOPS) else Q
        if stop is Q:  # the rest wait; claim_pipeline would take the oldest of them
            return runs + [_Walker(store, project, p).run(archive=False) for p in _queued(store, project)]
        walker = _Walker(store, project, _claim(store, project))
        walker.steps = [Q.value, C.value]  # claim_pipeline moved it QUEUED -> CODING
        for state in _PATH[_PATH.index(C) + 1 : _PATH.index(stop) + 1]:
            walker.to(state)
        runs.append(walker.run(archive=False))
    return runs


def _claim(store: StateStore, project: Project) -> Pipeline:
    claimed = store.claim_pipeline(project_id=project.id)
    assert claimed is not None, "the demo's queued tickets are gone"  # noqa: S101 (narrows the type; the demo queued them)
    return claimed


def _queued(store: StateStore, project: Project) -> list[Pipeline]:
    return sorted(store.list_pipelines(project.id, Q), key=lambda p: (p.created_at, p.id))


def _project(store: StateStore) -> Project:
    try:
        return store.get_project_by_repo(REPO)
    except ProjectNotFoundError:
        return store.create_project("VibeCC demo", REPO, max_retries_ci=2, max_retries_review=1)


def _next_ticket(store: StateStore, project: Project) -> int:
    numbers = [int(p.ticket_id) for p in store.list_pipelines(project.id) if p.ticket_id.isdigit()]
    numbers += [int(h.ticket_id) for h in store.iter_history(project.id) if h.ticket_id.isdigit()]
    return max(numbers, default=0) + 1


class _Walker:
    """Writes one pipeline's steps with expected_version, remembering the path."""

    def __init__(self, store: StateStore, project: Project, pipeline: Pipeline) -> None:
        self.store = store
        self.project = project
        self.pipeline = pipeline
        self.steps = [pipeline.state.value]

    def to(self, state: PipelineState, note: str = "", **changes: Any) -> None:
        if state is T and self.pipeline.pr_id is None and self.pipeline.ticket_id.isdigit():
            pr = 1000 + int(self.pipeline.ticket_id)
            changes.update(pr_id=pr, pr_url=f"https://github.com/{self.project.repo}/pull/{pr}")
        self.pipeline = self.store.update_pipeline(
            self.pipeline.id, state=state, expected_version=self.pipeline.version, **changes
        )
        self.steps.append(f"{state.value} ({note})" if note else state.value)

    def run(self, archive: bool, *, resumed: bool = False) -> TicketRun:
        p = self.pipeline
        if archive:
            self.store.archive_pipeline(p.id)
        return TicketRun(p.ticket_id, p.ticket_title, tuple(self.steps), p.state, p.pr_id, archive, resumed)


def _walk(store: StateStore, project: Project, claimed: Pipeline, role: str) -> TicketRun:
    walker = _Walker(store, project, claimed)
    walker.steps = [Q.value, C.value]  # claim_pipeline moved it QUEUED -> CODING
    walker.to(T)
    if role == "ci_retry":
        walker.to(C, "CI failed", retry_count_ci=1, feedback="CI: tests/test_history.py::test_page failed")
        walker.to(T)
    walker.to(R)
    if role == "failed":
        walker.to(C, "changes asked", retry_count_review=1, feedback="Review: the migration drops data")
        walker.to(T)
        walker.to(R)
        walker.to(F, "review retries used up", feedback="Review rejected twice; max_retries_review is 1")
    else:
        walker.to(M, feedback=None)
    return walker.run(archive=True)


def _finish(store: StateStore, project: Project, pipeline: Pipeline) -> TicketRun:
    """Resume a pipeline a previous run left active, all the way to MERGED."""
    walker = _Walker(store, project, pipeline)
    if pipeline.state in _PATH:
        for state in _PATH[_PATH.index(pipeline.state) + 1 :]:
            walker.to(state)
    return walker.run(archive=True, resumed=True)


def _seed(store: StateStore, project: Project, first: int, count: int, days: int = 14) -> range:
    """Import `count` invented finished tickets, numbered from `first`, spread over the past
    `days` days (fixed random seed); their titles are marked [sample]."""
    numbers = range(first, first + count)
    if not count:
        return numbers
    rng = random.Random(1234)  # noqa: S311 (sample data from a fixed seed, nothing secret)
    now = datetime.now(UTC).replace(microsecond=0)
    ends = sorted(now - timedelta(seconds=rng.uniform(3600, days * 86400)) for _ in numbers)
    records = []
    for number, completed in zip(numbers, ends, strict=True):
        failed = rng.random() < 0.15
        seconds = int(rng.lognormvariate(7.6, 0.8)) + 120
        pr = 1000 + number
        records.append(
            PipelineHistory(
                id=str(uuid.uuid4()),
                project_id=project.id,
                ticket_id=str(number),
                ticket_title=f"{SAMPLE} {_title(number)}",
                final_state=F if failed else M,
                branch_name=_branch(number),
                pr_id=pr,
                pr_url=f"https://github.com/{project.repo}/pull/{pr}",
                total_retries_ci=rng.choice((0, 0, 0, 1, 1, 2)) + (1 if failed else 0),
                total_retries_review=rng.choice((0, 0, 1)) + (1 if failed else 0),
                started_at=completed - timedelta(seconds=seconds),
                completed_at=completed,
                duration_seconds=seconds,
            )
        )
    store.import_history(records)
    return numbers


def _title(number: int) -> str:
    return TITLES[(number - 1) % len(TITLES)]


def _branch(number: int) -> str:
    slug = re.sub(r"[^a-z0-9]+", "-", _title(number).lower()).strip("-")[:40].rstrip("-")
    return f"vibecc/{number}-{slug}"


def _body(number: int) -> str:
    return f"Demo ticket {number}: {_title(number)}."
