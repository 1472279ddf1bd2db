"""Peak memory of the bulk paths over the 1,000,000-row store of bench/scale.py.

Each job runs in a child process doing only that job; its peak RSS (ru_maxrss from wait4) is
reported next to the same figure for a child that only imports the package and opens the store.

Jobs: copy_store SQLite -> fresh SQLite file, copy_store SQLite -> fresh PostgreSQL database,
and an export of every history row (iter_history, one JSON line per record, to /dev/null).
--command adds any shell command (e.g. the CLI's export once it exists); "{db}" in it is
replaced by the source path.

    .venv/bin/python bench/memory.py [--rows 1000000] [--jobs baseline,copy-sqlite,copy-postgres,export]
        [--command "..."] [--quick]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shlex
import subprocess
import sys
import time
import uuid
from datetime import UTC
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench import scale_data
from bench.common import OUT, load, pg_create, pg_drop, print_machine, remove_sqlite, retrying, table, verdict
from vibecc.state_store import PipelineHistory, StateStore, copy_store

TARGET_MB = 200.0
JOBS = ("baseline", "copy-sqlite", "copy-postgres", "export")


# -- in the child --------------------------------------------------------------------------


def json_line(record: PipelineHistory) -> str:
    return json.dumps(
        {
            "id": record.id,
            "project_id": record.project_id,
            "ticket_id": record.ticket_id,
            "ticket_title": record.ticket_title,
            "final_state": record.final_state.value,
            "branch_name": record.branch_name,
            "pr_id": record.pr_id,
            "pr_url": record.pr_url,
            "total_retries_ci": record.total_retries_ci,
            "total_retries_review": record.total_retries_review,
            "started_at": record.started_at.astimezone(UTC).isoformat(),
            "completed_at": record.completed_at.astimezone(UTC).isoformat(),
            "duration_seconds": record.duration_seconds,
        },
        separators=(",", ":"),
    )


def child(job: str, source: str, target: str) -> dict[str, Any]:
    """Do one job; what it did and this process's peak RSS."""
    start = time.perf_counter()
    rows = 0
    if job == "baseline":
        StateStore(source).close()
    elif job in ("copy-sqlite", "copy-postgres"):
        rows = copy_store(source, target).rows
    elif job == "export":
        with StateStore(source) as store, open(os.devnull, "w") as out:
            for record in store.iter_history():
                out.write(json_line(record) + "\n")
                rows += 1
    else:
        raise ValueError(job)
    seconds = time.perf_counter() - start
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return {"job": job, "rows": rows, "seconds": seconds, "maxrss_kb": peak}


# -- in the parent -------------------------------------------------------------------------


def run_child(argv: list[str], *, keep_output: bool = True) -> tuple[float, float, str]:
    """Peak RSS in MB (10**6 bytes, as the target) and wall seconds of a child process, and its
    stdout (sent to /dev/null unless `keep_output`)."""
    start = time.perf_counter()
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE if keep_output else subprocess.DEVNULL, text=True)
    output = proc.stdout.read() if proc.stdout is not None else ""
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        raise RuntimeError(f"{argv} exited with {proc.returncode}")
    return usage.ru_maxrss * 1024 / 1e6, time.perf_counter() - start, output


def job(name: str, source: Path) -> list[object]:
    target = ""
    if name == "copy-sqlite":
        target_path = OUT / "memory-copy-target.db"
        remove_sqlite(target_path)
        target = str(target_path)
    elif name == "copy-postgres":
        target = pg_create(f"vibecc_bench_memory_{uuid.uuid4().hex[:8]}")
    try:
        peak, _, output = run_child(
            [sys.executable, __file__, "--child", name, "--source", str(source), "--target", target]
        )
        done = json.loads(output.strip().splitlines()[-1])
    finally:
        if name == "copy-sqlite":
            remove_sqlite(Path(target))
        elif name == "copy-postgres":
            pg_drop(target.rsplit("/", 1)[1])
    rate = f"{done['rows'] / done['seconds']:,.0f}" if done["rows"] else "-"
    goal = "-" if name == "baseline" else f"< {TARGET_MB:g} MB"
    result = "-" if name == "baseline" else verdict(peak < TARGET_MB)
    return [name, f"{done['rows']:,}", f"{done['seconds']:.1f}", rate, f"{peak:.0f}", goal, result]


def command_job(command: str, source: Path) -> list[object]:
    argv = shlex.split(command.replace("{db}", str(source)))
    peak, seconds, _ = run_child(argv, keep_output=False)
    return [
        command,
        "-",
        f"{seconds:.1f}",
        "-",
        f"{peak:.0f}",
        f"< {TARGET_MB:g} MB",
        verdict(peak < TARGET_MB),
    ]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--rows", type=int, default=1_000_000, help="history rows of the source (default 1,000,000)"
    )
    parser.add_argument("--jobs", default=",".join(JOBS), help=f"comma-separated, of: {', '.join(JOBS)}")
    parser.add_argument(
        "--command", action="append", default=[], help='also measure this command ("{db}": source)'
    )
    parser.add_argument("--quick", action="store_true", help="smoke run on the 30,000-row data set")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--source", help=argparse.SUPPRESS)
    parser.add_argument("--target", default="", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        print(json.dumps(child(args.child, args.source, args.target)))
        return 0
    if args.quick:
        args.rows = 30_000
    print_machine()
    source = Path(
        scale_data.ensure("sqlite", args.rows, 5_000 if args.rows >= 1_000_000 else 500, rebuild=False)
    )
    print(f"# source {source} ({source.stat().st_size / 2**20:.0f} MiB), {args.rows:,} history rows")
    rows = []
    for name in [j.strip() for j in args.jobs.split(",") if j.strip()]:
        if name not in JOBS:
            parser.error(f"unknown job {name!r}")
        print(f"# {name} (load {load()})", flush=True)
        rows.append(retrying(job, name, source))
    for command in args.command:
        print(f"# {command} (load {load()})", flush=True)
        rows.append(command_job(command, source))
    headers = ["job", "rows", "seconds", "rows/s", "peak RSS MB", "target", "result"]
    print("\n## Peak RSS of a child process doing only the job\n")
    print(table(headers, rows))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
