"""What a call costs on top of the driver, with the disk taken out (SQLite, synchronous=OFF).

One update_pipeline with a state change (BEGIN IMMEDIATE, the UPDATE ... RETURNING, the
transition, the change log's counter and rows, COMMIT) and one get_pipeline read, each run
three ways on the same pooled connection, with the statements and parameters the store itself
sent (captured with a before_cursor_execute listener):
  driver           replayed on the sqlite3 connection
  exec_driver_sql  replayed through SQLAlchemy's Connection.exec_driver_sql in a transaction
                   begun by the store's begin event (engine events fire, nothing compiled)
  store            the public call (Connection.execute of the prebuilt statements)
so the columns show what SQLAlchemy's execution costs per call, and how much of it a runner
on exec_driver_sql would save.

    .venv/bin/python bench/execution_cost.py [--calls 2000]
"""

from __future__ import annotations

import argparse
import itertools
import statistics
import sys
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from sqlalchemy import Connection

from bench.common import OUT, print_machine, remove_sqlite, statements_sent
from vibecc.state_store import PipelineState, StateStore
from vibecc.state_store.db.dialects import BEGIN

Statements = list[tuple[str, Any]]
STATES = (PipelineState.CODING, PipelineState.TESTING)
FIRST_REPLAYED_SEQ = 10**12
"""A replayed change-log row takes its number from here up, clear of the store's own."""


_numbers = itertools.count(FIRST_REPLAYED_SEQ)


def replayed(statements: Statements) -> Statements:
    """The statements for one more replay: each change-log row under a number of its own (the
    other statements repeat as they are: the same UPDATE, a transition numbered by SQL)."""
    return [
        (sql, (next(_numbers), *parameters[1:]) if sql.startswith("INSERT INTO changes") else parameters)
        for sql, parameters in statements
    ]


def per_call(fn: Callable[[int], Any], calls: int) -> float:
    """Median over 5 blocks of µs per call."""
    blocks = []
    for _ in range(5):
        start = time.perf_counter()
        for i in range(calls // 5):
            fn(i)
        blocks.append((time.perf_counter() - start) / (calls // 5) * 1e6)
    return statistics.median(blocks)


def captured(store: StateStore, call: Callable[[], object]) -> Statements:
    """The statements (SQL, parameters) the store sends for `call`, BEGIN left out."""
    return [sent for sent in statements_sent(store, call) if not sent[0].startswith("BEGIN")]


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--calls", type=int, default=2000)
    args = parser.parse_args()
    OUT.mkdir(parents=True, exist_ok=True)
    path = OUT / f"execution_cost_{uuid.uuid4().hex[:8]}.db"
    print_machine()
    try:
        with StateStore(str(path), pool_size=1, max_overflow=0) as store:
            project = store.create_project("Cost", "acme/cost")
            pipeline_id = store.create_pipeline(project.id, 1, "t", "b").id
            engine = store.database.engine
            writer = engine.execution_options(**{BEGIN: "BEGIN IMMEDIATE"})
            reader = engine.execution_options(**{BEGIN: ""})
            with reader.connect() as conn:
                conn.exec_driver_sql("PRAGMA synchronous = OFF")  # the disk out: CPU cost only
                conn.commit()
            update = captured(store, lambda: store.update_pipeline(pipeline_id, state=STATES[0]))
            read = captured(store, lambda: store.get_pipeline(pipeline_id))

            def driver(statements: Statements, begin: str) -> Callable[[int], None]:
                def run(_: int) -> None:
                    with reader.connect() as conn:
                        raw = conn.connection.driver_connection
                        assert raw is not None
                        if begin:
                            raw.execute(begin)
                        for sql, parameters in replayed(statements):
                            raw.execute(sql, parameters).fetchall()
                        if begin:
                            raw.commit()

                return run

            def documented(statements: Statements, opened: Any) -> Callable[[int], None]:
                def run(_: int) -> None:
                    conn: Connection
                    with opened.connect() as conn, conn.begin():
                        for sql, parameters in replayed(statements):
                            result = conn.exec_driver_sql(sql, parameters)
                            if result.returns_rows:
                                result.all()

                return run

            rows = [
                (
                    f"update_pipeline ({len(update)} statements)",
                    driver(update, "BEGIN IMMEDIATE"),
                    documented(update, writer),
                    lambda i: store.update_pipeline(pipeline_id, state=STATES[i % 2]),
                ),
                (
                    f"get_pipeline ({len(read)} statement)",
                    driver(read, ""),
                    documented(read, reader),
                    lambda i: store.get_pipeline(pipeline_id),
                ),
            ]
            print("\nµs per call, median of 5 blocks (the same SQL and parameters in each column)")
            print(f"{'call':32} {'driver':>8} {'exec_driver_sql':>16} {'store':>8}")
            for name, raw, through, public in rows:
                costs = [per_call(fn, args.calls) for fn in (raw, through, public)]
                print(f"{name:32} {costs[0]:8.1f} {costs[1]:16.1f} {costs[2]:8.1f}")
    finally:
        remove_sqlite(path)


if __name__ == "__main__":
    main()
