"""What a call costs on top of the driver, with the disk taken out (SQLite, synchronous=OFF).

Three ways to run one update_pipeline transaction (BEGIN IMMEDIATE, the UPDATE ... RETURNING,
COMMIT) and one get_pipeline read on the same pooled connection:
  driver      the SQL the store sends, on the sqlite3 cursor
  sqlalchemy  the store's query function through Connection.execute, begun by the begin event
  store       the public call
so the gap between them is SQLAlchemy's execution and the store's own work.

    .venv/bin/python bench/execution_cost.py [--calls 2000]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from sqlalchemy import event

from bench.common import OUT, print_machine, remove_sqlite
from vibecc.state_store import StateStore
from vibecc.state_store.db.dialects import BEGIN
from vibecc.state_store.queries import pipelines


def per_call(fn: Callable[[int], Any], calls: int) -> float:
    """Median over 5 blocks of µs per call."""
    blocks = []
    for _ in range(5):
        start = time.perf_counter()
        for i in range(calls // 5):
            fn(i)
        blocks.append((time.perf_counter() - start) / (calls // 5) * 1e6)
    return statistics.median(blocks)


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
            update_sql: list[str] = []
            select_sql: list[str] = []

            def seen(conn: Any, cursor: Any, statement: str, *_: Any) -> None:
                if statement.startswith("UPDATE"):
                    update_sql.append(statement)
                elif statement.startswith("SELECT"):
                    select_sql.append(statement)

            with reader.connect() as conn:
                conn.exec_driver_sql("PRAGMA synchronous = OFF")  # the disk out: CPU cost only
                conn.commit()
            event.listen(engine, "before_cursor_execute", seen)
            store.update_pipeline(pipeline_id, retry_count_ci=1)
            store.get_pipeline(pipeline_id)
            event.remove(engine, "before_cursor_execute", seen)
            stamp = "2026-01-01 00:00:00.000000"

            def driver_update(i: int) -> None:
                with writer.connect() as conn:
                    raw = conn.connection.driver_connection
                    assert raw is not None
                    raw.execute("BEGIN IMMEDIATE")
                    raw.execute(update_sql[0], (i % 1000, stamp, 1, pipeline_id)).fetchall()
                    raw.commit()

            def sqlalchemy_update(i: int) -> None:
                with writer.connect() as conn, conn.begin():
                    pipelines.update_fields(
                        conn, pipeline_id, {"retry_count_ci": i % 1000}, None, datetime.now(UTC)
                    )

            def driver_read(i: int) -> None:
                with reader.connect() as conn:
                    raw = conn.connection.driver_connection
                    assert raw is not None
                    raw.execute(select_sql[0], (pipeline_id,)).fetchall()

            def sqlalchemy_read(i: int) -> None:
                with reader.connect() as conn, conn.begin():
                    pipelines.by_id(conn, pipeline_id)

            rows = [
                (
                    "update_pipeline",
                    driver_update,
                    sqlalchemy_update,
                    lambda i: store.update_pipeline(pipeline_id, retry_count_ci=i % 1000),
                ),
                ("get_pipeline", driver_read, sqlalchemy_read, lambda i: store.get_pipeline(pipeline_id)),
            ]
            print("\nµs per call, median of 5 blocks")
            print(f"{'call':16} {'driver':>8} {'sqlalchemy':>11} {'store':>8}")
            for name, driver, through, public in rows:
                costs = [per_call(fn, args.calls) for fn in (driver, through, public)]
                print(f"{name:16} {costs[0]:8.1f} {costs[1]:11.1f} {costs[2]:8.1f}")
    finally:
        remove_sqlite(path)


if __name__ == "__main__":
    main()
