"""Upgrading a database of the earlier state store (revision 0001, no version column) to head,
on SQLite, for growing numbers of pipelines: the time should grow linearly.

Each size gets a fresh file with N pipelines (one in ten a finished duplicate of another
ticket, which the upgrade moves to history) and N/2 history rows; the upgrade runs through
StateStore's auto-migration, which holds the database's write lock throughout.

    .venv/bin/python bench/legacy_upgrade.py [--sizes 1000,4000,16000]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
import uuid
from datetime import datetime
from pathlib import Path

import sqlalchemy as sa

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import table
from vibecc.state_store import StateStore
from vibecc.state_store.migrations import baseline

STAMP = datetime(2025, 1, 2, 3, 4, 5)
"""Naive, as the earlier store wrote its timestamps."""


def make_legacy(path: Path, pipelines: int) -> None:
    engine = sa.create_engine(f"sqlite:///{path}")
    metadata = sa.MetaData()
    tables = {
        name: sa.Table(name, metadata, *baseline.items(name))
        for name in ("projects", "pipelines", "pipeline_history")
    }
    with engine.begin() as conn:
        metadata.create_all(conn)
        conn.execute(
            tables["projects"].insert(),
            [
                {
                    "id": f"p{n}",
                    "name": f"Project {n}",
                    "repo": f"acme/p{n}",
                    "base_branch": "main",
                    "github_project_id": None,
                    "max_retries_ci": 3,
                    "max_retries_review": 3,
                    "created_at": STAMP,
                    "updated_at": STAMP,
                }
                for n in range(10)
            ],
        )
        rows = []
        for n in range(pipelines):
            duplicate = n % 10 == 9  # a finished pipeline of the ticket before it
            ticket = n - 1 if duplicate else n
            rows.append(
                {
                    "id": str(uuid.uuid4()),
                    "project_id": f"p{ticket % 10}",
                    "ticket_id": str(ticket),
                    "ticket_title": f"Ticket {ticket}",
                    "ticket_body": "body",
                    "state": "MERGED" if duplicate else "CODING",
                    "branch_name": f"vibecc/{ticket}",
                    "pr_id": None,
                    "pr_url": None,
                    "retry_count_ci": 0,
                    "retry_count_review": 0,
                    "feedback": None,
                    "created_at": STAMP,
                    "updated_at": STAMP,
                }
            )
        conn.execute(tables["pipelines"].insert(), rows)
        conn.execute(
            tables["pipeline_history"].insert(),
            [
                {
                    "id": str(uuid.uuid4()),
                    "project_id": f"p{n % 10}",
                    "ticket_id": f"h{n}",
                    "ticket_title": "Done",
                    "final_state": "MERGED",
                    "branch_name": f"vibecc/h{n}",
                    "pr_id": None,
                    "pr_url": None,
                    "total_retries_ci": 0,
                    "total_retries_review": 0,
                    "started_at": STAMP,
                    "completed_at": STAMP,
                    "duration_seconds": 60,
                }
                for n in range(pipelines // 2)
            ],
        )
    engine.dispose()


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--sizes", default="1000,4000,16000", help="pipelines per file, comma-separated")
    args = parser.parse_args()
    results = []
    with tempfile.TemporaryDirectory() as scratch:
        for size in (int(s) for s in args.sizes.split(",")):
            path = Path(scratch) / f"legacy-{size}.db"
            make_legacy(path, size)
            start = time.perf_counter()
            with StateStore(path) as store:
                elapsed = time.perf_counter() - start
                active = len(store.list_pipelines())
                archived = store.count_history()
            results.append((size, f"{elapsed:.2f}", f"{elapsed / size * 1e6:.0f}", active, archived))
    print(table(["pipelines", "upgrade s", "µs per pipeline", "active after", "history after"], results))


if __name__ == "__main__":
    main()
