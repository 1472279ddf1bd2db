"""Regenerate the figures of docs/reliability.md by running the reliability tests.

    .venv/bin/python bench/reliability_figures.py [--json] [PYTEST ARGS...]

Runs the model, crash, fault and security tests (TESTS) with VIBECC_RELIABILITY_FIGURES pointing
at a scratch file, into which the tests append what they measured (hypothesis examples per
engine, kills survived, acknowledged writes checked, faults injected), counts the cases of the
hostile-input tests (BAD_INPUT), and prints the figures with the outcome of every test. Extra
arguments go to pytest, e.g. `--hypothesis-profile=long`.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import tempfile
import xml.etree.ElementTree as ET
from collections import defaultdict
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
TESTS = [
    "tests/test_model.py",
    "tests/test_model_stats.py",
    "tests/test_crash.py",
    "tests/test_filesystem_faults.py",
    "tests/test_sqlite_faults.py",
    "tests/test_postgres_faults.py",
    "tests/test_security.py",
    "tests/test_secrets.py",
]
BAD_INPUT = [
    "tests/test_bad_input_projects.py",
    "tests/test_bad_input_pipelines.py",
    "tests/test_bad_input_history.py",
]


def run_tests(figures: Path, junit: Path, extra: list[str]) -> int:
    env = {**os.environ, "VIBECC_RELIABILITY_FIGURES": str(figures)}
    command = [sys.executable, "-m", "pytest", *TESTS, "-q", "-p", "no:cacheprovider", f"--junitxml={junit}"]
    return subprocess.run([*command, *extra], cwd=ROOT, env=env).returncode


def outcomes(junit: Path) -> dict[str, list[str]]:
    """Test ids by outcome (passed, failed, skipped) from pytest's JUnit XML."""
    found: dict[str, list[str]] = defaultdict(list)
    for case in ET.parse(junit).getroot().iter("testcase"):  # noqa: S314 (the file pytest just wrote)
        name = f"{case.get('classname', '')}::{case.get('name', '')}"
        if case.find("failure") is not None or case.find("error") is not None:
            found["failed"].append(name)
        elif case.find("skipped") is not None:
            skipped = case.find("skipped")
            found["skipped"].append(f"{name} ({skipped.get('message', '') if skipped is not None else ''})")
        else:
            found["passed"].append(name)
    return found


def bad_input_cases() -> dict[str, int] | None:
    """Test items in the BAD_INPUT files, and distinct cases once the engine is left out (None
    when one of the files is missing)."""
    if not all((ROOT / path).exists() for path in BAD_INPUT):
        return None
    done = subprocess.run(
        [sys.executable, "-m", "pytest", *BAD_INPUT, "--collect-only", "-q", "-p", "no:cacheprovider"],
        cwd=ROOT,
        capture_output=True,
        text=True,
    )
    items = [line for line in done.stdout.splitlines() if "::" in line]
    distinct = {re.sub(r"(?<=[\[-])(sqlite|postgresql)(-|(?=\]))", "", item) for item in items}
    return {"collected_items": len(items), "distinct_cases": len(distinct)}


def collect(figures: Path) -> dict[str, Any]:
    measured: dict[str, Any] = {"faults": []}
    for line in figures.read_text(encoding="utf-8").splitlines() if figures.exists() else []:
        entry = json.loads(line)
        if entry["figure"] == "fault":
            measured["faults"].append(entry["value"])
        else:
            key = f"{entry['figure']}[{entry['engine']}]" if entry["engine"] else entry["figure"]
            measured[key] = measured.get(key, 0) + entry["value"]
    return measured


def main(argv: list[str]) -> int:
    as_json = "--json" in argv
    extra = [a for a in argv if a != "--json"]
    with tempfile.TemporaryDirectory() as scratch:
        figures, junit = Path(scratch) / "figures.jsonl", Path(scratch) / "junit.xml"
        status = run_tests(figures, junit, extra)
        report = collect(figures)
        report["bad_input_cases"] = bad_input_cases()
        report["tests"] = outcomes(junit) if junit.exists() else {}
    report["pytest_exit_status"] = status
    if as_json:
        print(json.dumps(report, indent=2))
        return status
    print("\nReliability figures (this run)")
    for key, value in sorted(report.items()):
        if key in ("faults", "tests"):
            continue
        print(f"  {key}: {value}")
    print(f"  faults injected and survived: {len(report['faults'])}")
    for fault in report["faults"]:
        print(f"    - {fault}")
    tests = report["tests"]
    print(
        f"  tests: {len(tests.get('passed', []))} passed, {len(tests.get('failed', []))} failed, "
        f"{len(tests.get('skipped', []))} skipped"
    )
    for name in tests.get("failed", []):
        print(f"    FAILED {name}")
    for name in tests.get("skipped", []):
        print(f"    skipped {name}")
    return status


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
