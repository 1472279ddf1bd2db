"""The orchestrator's call mix, through StateStore and written directly on the driver.

Per ticket: create_pipeline, list_pipelines(project, QUEUED), update_pipeline through
QUEUED -> CODING -> TESTING (pr_id, pr_url set) -> REVIEW -> MERGED, with one CI retry in four
tickets (TESTING -> CODING with retry_count_ci + 1 -> TESTING), get_pipeline, archive_pipeline;
every 50 tickets get_history(project, limit=50) and get_history_stats(project).

The direct baseline (bench/direct.py: DirectSQLite, DirectPostgres) sends the same statements
with the same durability and one transaction per call, and builds the same records; its writes
include the timelines, kept histograms and change log (bench/direct_timelines.py,
bench/direct_changes.py) when the schema has those tables. Rounds
alternate store/direct on a fresh database each; the medians and their ratio are printed.

    .venv/bin/python bench/orchestrator_mix.py [--engines sqlite,postgresql] [--tickets 500]
        [--rounds 5] [--quick]
"""

from __future__ import annotations

import argparse
import gc
import sys
import time
import uuid
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import (
    OUT,
    load,
    median,
    pg_create,
    pg_drop,
    pg_drop_leftovers,
    print_machine,
    remove_sqlite,
    retrying,
    table,
    verdict,
    wait_quiet,
)
from bench.direct import DirectPostgres, DirectSQLite
from vibecc.state_store import (
    HistoryCursor,
    HistoryStats,
    Pipeline,
    PipelineHistory,
    PipelineState,
    StateStore,
)

TARGETS = {"sqlite": (0.80, 0.70), "postgresql": (0.60, 0.60)}
"""Engine -> (target, minimum) of the store/direct ratio."""
HISTORY_EVERY = 50


class Api(Protocol):
    """The calls the mix makes; StateStore and Direct both have them."""

    def create_pipeline(
        self, project_id: str, ticket_id: str | int, ticket_title: str, branch_name: str
    ) -> Pipeline: ...
    def list_pipelines(
        self, project_id: str | None = None, state: PipelineState | None = None
    ) -> list[Pipeline]: ...
    def update_pipeline(
        self,
        pipeline_id: str,
        *,
        state: PipelineState = ...,
        pr_id: int | None = ...,
        pr_url: str | None = ...,
        retry_count_ci: int = ...,
    ) -> Pipeline: ...
    def get_pipeline(self, pipeline_id: str) -> Pipeline: ...
    def archive_pipeline(self, pipeline_id: str) -> PipelineHistory: ...
    def get_history(
        self, project_id: str | None = None, *, limit: int = 100, before: HistoryCursor | None = None
    ) -> list[PipelineHistory]: ...
    def get_history_stats(self, project_id: str | None = None) -> HistoryStats: ...
    def close(self) -> None: ...


@dataclass
class Clock:
    """Time spent per call name, to show where a gap comes from."""

    seconds: dict[str, float] = field(default_factory=lambda: defaultdict(float))
    calls: dict[str, int] = field(default_factory=lambda: defaultdict(int))

    def __call__(self, name: str, action: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        start = time.perf_counter()
        result = action(*args, **kwargs)
        self.seconds[name] += time.perf_counter() - start
        self.calls[name] += 1
        return result

    @property
    def total_calls(self) -> int:
        return sum(self.calls.values())


def run_tickets(api: Api, projects: list[str], first: int, count: int, clock: Clock) -> None:
    """`count` tickets through the whole life of a pipeline, round-robin over the projects."""
    for n in range(first, first + count):
        project = projects[n % len(projects)]
        p = clock(
            "create_pipeline", api.create_pipeline, project, n, f"Ticket {n}: make it so", f"vibecc/t-{n}"
        )
        queued = clock("list_pipelines", api.list_pipelines, project, PipelineState.QUEUED)
        assert any(q.id == p.id for q in queued)
        p = clock("update_pipeline", api.update_pipeline, p.id, state=PipelineState.CODING)
        p = clock(
            "update_pipeline",
            api.update_pipeline,
            p.id,
            state=PipelineState.TESTING,
            pr_id=n + 1,
            pr_url=f"https://github.com/acme/app/pull/{n + 1}",
        )
        if n % 4 == 3:
            p = clock(
                "update_pipeline",
                api.update_pipeline,
                p.id,
                state=PipelineState.CODING,
                retry_count_ci=p.retry_count_ci + 1,
            )
            p = clock("update_pipeline", api.update_pipeline, p.id, state=PipelineState.TESTING)
        p = clock("update_pipeline", api.update_pipeline, p.id, state=PipelineState.REVIEW)
        p = clock("update_pipeline", api.update_pipeline, p.id, state=PipelineState.MERGED)
        p = clock("get_pipeline", api.get_pipeline, p.id)
        clock("archive_pipeline", api.archive_pipeline, p.id)
        if (n + 1) % HISTORY_EVERY == 0:
            clock("get_history", api.get_history, project, limit=50)
            clock("get_history_stats", api.get_history_stats, project)


# -- databases -----------------------------------------------------------------------------


@dataclass
class Database:
    """A fresh database with the schema (made by StateStore), projects and a queued backlog."""

    engine: str
    location: str
    projects: list[str]

    def open(self, kind: str) -> Api:
        if kind == "store":
            return StateStore(self.location)
        if self.engine == "sqlite":
            return DirectSQLite(self.location)
        return DirectPostgres(self.location.rsplit("/", 1)[1])

    def drop(self) -> None:
        if self.engine == "sqlite":
            remove_sqlite(Path(self.location))
        else:
            pg_drop(self.location.rsplit("/", 1)[1])


def fresh(engine: str, projects: int, backlog: int) -> Database:
    if engine == "sqlite":
        OUT.mkdir(parents=True, exist_ok=True)
        location = str(OUT / f"mix-{uuid.uuid4().hex[:8]}.db")
    else:
        location = pg_create(f"vibecc_bench_mix_{uuid.uuid4().hex[:8]}")
    with StateStore(location) as store:
        ids = [store.create_project(f"Project {i}", f"acme/app-{i}").id for i in range(projects)]
        for project in ids:
            for b in range(backlog):
                store.create_pipeline(project, f"backlog-{b}", f"Backlog ticket {b}", f"vibecc/backlog-{b}")
    return Database(engine, location, ids)


def one_run(engine: str, kind: str, args: argparse.Namespace, tickets: int) -> tuple[float, Clock]:
    """Seconds for `tickets` tickets on a fresh database, and the per-call clock."""
    db = fresh(engine, args.projects, args.backlog)
    try:
        api = db.open(kind)
        try:
            clock = Clock()
            gc.collect()
            start = time.perf_counter()
            run_tickets(api, db.projects, 0, tickets, clock)
            elapsed = time.perf_counter() - start
            stats = api.get_history_stats()
            assert stats.total_completed == tickets, (kind, stats)
        finally:
            api.close()
    finally:
        db.drop()
    return elapsed, clock


@dataclass
class EngineResult:
    engine: str
    store: list[float]
    direct: list[float]
    clocks: dict[str, list[Clock]]

    @property
    def ratios(self) -> list[float]:
        return [s / d for s, d in zip(self.store, self.direct, strict=True)]

    @property
    def ratio(self) -> float:
        return median(self.store) / median(self.direct)


def bench_engine(engine: str, args: argparse.Namespace) -> EngineResult:
    for kind in ("store", "direct"):  # warm-up: imports, statement caches, first connections
        retrying(one_run, engine, kind, args, args.warmup)
    result = EngineResult(engine, [], [], {"store": [], "direct": []})
    for r in range(args.rounds):
        if not args.no_wait:
            wait_quiet()
        for kind in ("store", "direct") if r % 2 == 0 else ("direct", "store"):
            elapsed, clock = retrying(one_run, engine, kind, args, args.tickets)
            rate = clock.total_calls / elapsed
            (result.store if kind == "store" else result.direct).append(rate)
            result.clocks[kind].append(clock)
        print(
            f"  {engine} round {r + 1}/{args.rounds}: store {result.store[-1]:,.0f} ops/s, "
            f"direct {result.direct[-1]:,.0f} ops/s, ratio {result.store[-1] / result.direct[-1]:.2f} "
            f"(load {load()})",
            flush=True,
        )
    return result


def per_call_table(result: EngineResult) -> str:
    names = sorted(result.clocks["store"][0].calls)
    rows = []
    for name in names:
        store_us = median([c.seconds[name] / c.calls[name] for c in result.clocks["store"]]) * 1e6
        direct_us = median([c.seconds[name] / c.calls[name] for c in result.clocks["direct"]]) * 1e6
        calls = result.clocks["store"][0].calls[name]
        rows.append([name, calls, f"{store_us:.0f}", f"{direct_us:.0f}", f"{store_us - direct_us:+.0f}"])
    return table(["call", "calls/round", "store us/call", "direct us/call", "store - direct us"], rows)


def _verdict(ratio: float, target: float, minimum: float) -> str:
    if ratio >= target:
        return verdict(True)
    if ratio >= minimum:
        return f"below target by {target - ratio:.2f}, above minimum"
    return f"MISSED by {target - ratio:.2f} (minimum {minimum:.2f} too)"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--engines", default="sqlite,postgresql", help="comma-separated: sqlite,postgresql")
    parser.add_argument("--tickets", type=int, default=500, help="tickets per round (default 500)")
    parser.add_argument("--rounds", type=int, default=5, help="rounds of store+direct (default 5)")
    parser.add_argument(
        "--projects", type=int, default=4, help="projects the tickets rotate over (default 4)"
    )
    parser.add_argument(
        "--backlog", type=int, default=5, help="queued pipelines per project that stay queued"
    )
    parser.add_argument("--warmup", type=int, default=50, help="tickets of the untimed warm-up run")
    parser.add_argument("--quick", action="store_true", help="smoke run: 60 tickets, 2 rounds")
    parser.add_argument("--no-wait", action="store_true", help="do not wait for an idle machine")
    parser.add_argument(
        "--only",
        choices=("store", "direct"),
        help="run just this side once (no comparison), e.g. under pyinstrument or py-spy",
    )
    args = parser.parse_args(argv)
    if args.quick:
        args.tickets, args.rounds, args.warmup = 60, 2, 10
    engines = [e.strip() for e in args.engines.split(",") if e.strip()]
    if args.only:
        for engine in engines:
            one_run(engine, args.only, args, args.warmup)
            elapsed, clock = one_run(engine, args.only, args, args.tickets)
            print(f"{engine} {args.only}: {clock.total_calls / elapsed:,.0f} ops/s")
        return 0
    print_machine()
    print(
        f"# {args.tickets} tickets/round, {args.rounds} rounds, {args.projects} projects, "
        f"backlog {args.backlog}/project; SQLite files in {OUT}"
    )
    results = [bench_engine(engine, args) for engine in engines]
    if "postgresql" in engines:
        pg_drop_leftovers("mix_")
    for result in results:
        print(f"\n## {result.engine}: operations per second (one op = one store call)\n")
        rows = [
            [r + 1, f"{s:,.0f}", f"{d:,.0f}", f"{s / d:.3f}"]
            for r, (s, d) in enumerate(zip(result.store, result.direct, strict=True))
        ]
        print(table(["round", "store ops/s", "direct ops/s", "store/direct"], rows))
        print(f"\n### {result.engine}: median time per call\n")
        print(per_call_table(result))
    print("\n## Summary (medians of the rounds)\n")
    rows = []
    for result in results:
        target, minimum = TARGETS[result.engine]
        ratios = sorted(result.ratios)
        rows.append(
            [
                result.engine,
                f"{median(result.store):,.0f}",
                f"{median(result.direct):,.0f}",
                f"{result.ratio:.3f}",
                f"{ratios[0]:.3f}-{ratios[-1]:.3f}",
                f">= {target:.2f}" + (f" (min {minimum:.2f})" if minimum != target else ""),
                _verdict(result.ratio, target, minimum),
            ]
        )
    print(
        table(
            ["engine", "store ops/s", "direct ops/s", "ratio", "per-round ratios", "target", "result"], rows
        )
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
