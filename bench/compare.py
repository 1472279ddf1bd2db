"""The orchestrator mix of two versions of the store, measured in one run.

The given git revision is checked out into a temporary worktree; each round then runs
bench/orchestrator_mix.py --only store once against that checkout's package and once against
this one (alternating which goes first), plus the direct-driver baseline, each in a fresh
process on a fresh database. Same machine, same minutes, so drift hits both sides alike.

    .venv/bin/python bench/compare.py --base REV [--engines sqlite,postgresql] [--rounds 7]
        [--tickets 500]
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import ROOT, median, print_machine, table, wait_quiet

MIX = ROOT / "bench" / "orchestrator_mix.py"
RATE = re.compile(r"(\w+) (store|direct): ([\d,]+) ops/s")


def ops_per_second(engine: str, side: str, src: Path, tickets: int) -> float:
    """One fresh process running the mix's `side` against the package in `src`."""
    env = {**os.environ, "PYTHONPATH": str(src)}
    done = subprocess.run(
        [sys.executable, str(MIX), "--only", side, "--engines", engine, "--tickets", str(tickets)],
        capture_output=True,
        text=True,
        env=env,
        check=True,
    )
    found = RATE.search(done.stdout)
    if found is None:
        raise RuntimeError(f"no rate in the output of {side} on {engine}: {done.stdout}{done.stderr}")
    return float(found.group(3).replace(",", ""))


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--base", required=True, help="git revision to compare this checkout with")
    parser.add_argument("--engines", default="sqlite,postgresql")
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--tickets", type=int, default=500)
    parser.add_argument("--no-wait", action="store_true", help="do not wait for an idle machine")
    args = parser.parse_args()
    base_rev = subprocess.run(
        ["git", "rev-parse", "--short", args.base], capture_output=True, text=True, check=True, cwd=ROOT
    ).stdout.strip()
    head_rev = subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, check=True, cwd=ROOT
    ).stdout.strip()
    dirty = subprocess.run(["git", "status", "--porcelain", "src"], capture_output=True, text=True, cwd=ROOT)
    print_machine()
    print(
        f"# base {base_rev}; this checkout {head_rev}{' (with uncommitted changes)' if dirty.stdout else ''}"
    )
    print(f"# {args.tickets} tickets per process, {args.rounds} rounds\n")
    with tempfile.TemporaryDirectory() as scratch:
        worktree = Path(scratch) / "base"
        subprocess.run(
            ["git", "worktree", "add", "--quiet", "--detach", str(worktree), args.base], check=True, cwd=ROOT
        )
        try:
            rows = []
            for engine in (e.strip() for e in args.engines.split(",") if e.strip()):
                base: list[float] = []
                this: list[float] = []
                direct: list[float] = []
                for r in range(args.rounds):
                    if not args.no_wait:
                        wait_quiet()
                    sides = [("base", worktree / "src"), ("this", ROOT / "src")]
                    for name, src in sides if r % 2 == 0 else sides[::-1]:
                        (base if name == "base" else this).append(
                            ops_per_second(engine, "store", src, args.tickets)
                        )
                    direct.append(ops_per_second(engine, "direct", ROOT / "src", args.tickets))
                    print(
                        f"  {engine} round {r + 1}: base {base[-1]:,.0f}, this {this[-1]:,.0f}, "
                        f"direct {direct[-1]:,.0f} ops/s",
                        flush=True,
                    )
                rows.append(
                    [
                        engine,
                        f"{median(base):,.0f}",
                        f"{median(this):,.0f}",
                        f"{median(direct):,.0f}",
                        f"{median(this) / median(base):.3f}",
                        f"{median(base) / median(direct):.3f}",
                        f"{median(this) / median(direct):.3f}",
                    ]
                )
        finally:
            subprocess.run(["git", "worktree", "remove", "--force", str(worktree)], check=False, cwd=ROOT)
    print()
    print(
        table(
            ["engine", "base ops/s", "this ops/s", "direct ops/s", "this/base", "base/direct", "this/direct"],
            rows,
        )
    )


if __name__ == "__main__":
    main()
