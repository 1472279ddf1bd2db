"""Durable commits: the disk's fdatasync rate, and the store's write calls per second beside it.

A write call commits once; on SQLite (WAL, synchronous=FULL) that commit is one fdatasync of
the WAL file, so the disk's fdatasync rate is the physical floor of a write call's latency and
the ceiling of one writer's commits per second. The store's rate is update_pipeline in a loop,
one writer, on a fresh database; PostgreSQL's server syncs its own WAL (on this machine, the
same disk).

    .venv/bin/python bench/commit_rate.py [--engines sqlite,postgresql] [--seconds 3]
"""

from __future__ import annotations

import argparse
import os
import sqlite3
import sys
import tempfile
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import OUT, pg_create, pg_drop, print_machine, remove_sqlite
from vibecc.state_store import StateStore


def fdatasync_rate(folder: Path, seconds: float) -> float:
    """4 KiB writes each followed by os.fdatasync, per second, in `folder`."""
    fd, name = tempfile.mkstemp(dir=folder, prefix="fdatasync-")
    block = b"\0" * 4096
    done = 0
    try:
        start = time.perf_counter()
        while (elapsed := time.perf_counter() - start) < seconds:
            os.pwrite(fd, block, (done % 256) * 4096)
            os.fdatasync(fd)
            done += 1
    finally:
        os.close(fd)
        os.unlink(name)
    return done / elapsed


def store_commit_rate(url: str, seconds: float) -> float:
    """update_pipeline calls (one commit each) per second, one writer."""
    with StateStore(url) as store:
        project = store.create_project("Commits", "acme/commits")
        pipeline = store.create_pipeline(project.id, 1, "t", "b")
        done = 0
        start = time.perf_counter()
        while (elapsed := time.perf_counter() - start) < seconds:
            store.update_pipeline(pipeline.id, retry_count_ci=done % 1000)
            done += 1
    return done / elapsed


def direct_sqlite_commit_rate(path: Path, seconds: float) -> float:
    """The same update, one transaction each, on stdlib sqlite3 with the store's pragmas."""
    with StateStore(str(path)) as store:  # the schema and WAL mode
        project = store.create_project("Commits", "acme/commits")
        pipeline_id = store.create_pipeline(project.id, 1, "t", "b").id
    conn = sqlite3.connect(path, isolation_level=None)
    try:
        conn.execute("PRAGMA synchronous = FULL")
        done = 0
        start = time.perf_counter()
        while (elapsed := time.perf_counter() - start) < seconds:
            conn.execute("BEGIN IMMEDIATE")
            conn.execute(
                "UPDATE pipelines SET retry_count_ci = ?, version = version + 1 WHERE id = ?",
                (done % 1000, pipeline_id),
            )
            conn.execute("COMMIT")
            done += 1
    finally:
        conn.close()
    return done / elapsed


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--engines", default="sqlite,postgresql")
    parser.add_argument("--seconds", type=float, default=3.0)
    args = parser.parse_args()
    OUT.mkdir(parents=True, exist_ok=True)
    print_machine()
    disk = fdatasync_rate(OUT, args.seconds)
    print(f"fdatasync: {disk:,.0f}/s in {OUT} ({1e6 / disk:,.0f} us each)")
    for engine in (e.strip() for e in args.engines.split(",") if e.strip()):
        if engine == "sqlite":
            path = OUT / f"commit_rate_{uuid.uuid4().hex[:8]}.db"
            try:
                direct = direct_sqlite_commit_rate(path, args.seconds)
                remove_sqlite(path)
                rate = store_commit_rate(str(path), args.seconds)
            finally:
                remove_sqlite(path)
            print(f"sqlite direct commits: {direct:,.0f}/s = {direct / disk:.2f} of the fdatasync rate")
        else:
            name = f"vibecc_bench_commits_{uuid.uuid4().hex[:8]}"
            try:
                rate = store_commit_rate(pg_create(name), args.seconds)
            finally:
                pg_drop(name)
        print(f"{engine} store commits: {rate:,.0f}/s = {rate / disk:.2f} of the fdatasync rate")


if __name__ == "__main__":
    main()
