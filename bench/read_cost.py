"""What one PostgreSQL read costs the machine, in a transaction and in autocommit.

A one-statement read in a READ COMMITTED transaction is three round trips with psycopg (BEGIN,
the SELECT, COMMIT); in autocommit it is one. Both see the same data: under READ COMMITTED
each statement takes its own snapshot anyway. This script runs the store's read of the change
log's head (what wait_for_changes does after its linger) both ways through SQLAlchemy on the
same engine, in alternating blocks, and the public get_pipeline call, and prints per call: the
wall time, this process's CPU and the whole machine's CPU (the server's share included: on a
small machine that is what readers take from writers).

    .venv/bin/python bench/read_cost.py [--calls 3000] [--blocks 8] [--no-wait]
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from sqlalchemy import Engine

from bench.common import cpu_times, median, pg_create, pg_drop, print_machine, table, wait_quiet
from vibecc.state_store import StateStore
from vibecc.state_store.queries import changes

TICKS = os.sysconf("SC_CLK_TCK")


def in_transaction(engine: Engine) -> None:
    with engine.connect() as conn, conn.begin():
        changes.head(conn)


def in_autocommit(engine: Engine) -> None:
    with engine.connect() as conn:
        changes.head(conn)


def block(action: Callable[[], object], calls: int) -> tuple[float, float, float]:
    """(wall, this process's CPU, the machine's CPU), µs per call."""
    machine, wall, cpu = cpu_times(), time.perf_counter(), time.process_time()
    for _ in range(calls):
        action()
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    after = cpu_times()
    busy = ((after[0] - machine[0]) - (after[1] - machine[1])) / TICKS
    return wall / calls * 1e6, cpu / calls * 1e6, busy / calls * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--calls", type=int, default=3000)
    parser.add_argument("--blocks", type=int, default=8)
    parser.add_argument("--no-wait", action="store_true", help="do not wait for an idle machine")
    args = parser.parse_args()
    print_machine()
    if not args.no_wait:
        wait_quiet()
    url = pg_create("vibecc_bench_read_cost")
    try:
        with StateStore(url) as store:
            project = store.create_project("p", "o/r")
            pipeline = store.create_pipeline(project.id, 1, "t", "b")
            engine = store.database.engine
            autocommit = engine.execution_options(isolation_level="AUTOCOMMIT")
            ways: dict[str, Callable[[], object]] = {
                "head, in a transaction (BEGIN, SELECT, COMMIT)": lambda: in_transaction(engine),
                "head, in autocommit (SELECT)": lambda: in_autocommit(autocommit),
                "get_pipeline, the public call": lambda: store.get_pipeline(pipeline.id),
            }
            for action in ways.values():
                block(action, 200)  # warm the pool and the caches
            found: dict[str, list[tuple[float, float, float]]] = {name: [] for name in ways}
            for _ in range(args.blocks):
                for name, action in ways.items():
                    found[name].append(block(action, args.calls // args.blocks))
    finally:
        pg_drop("vibecc_bench_read_cost")
    print(f"\nµs per call, median of {args.blocks} alternating blocks of {args.calls // args.blocks}")
    rows = [
        [name, *(f"{median([b[i] for b in blocks]):.0f}" for i in range(3))] for name, blocks in found.items()
    ]
    print(table(["read", "wall", "this process CPU", "machine CPU (all processes)"], rows))


if __name__ == "__main__":
    main()
