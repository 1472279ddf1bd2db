"""Crash safety on SQLite: a writer killed with SIGKILL at random moments loses no acknowledged
write and leaves a database that opens and works at once.

tests/crash_worker.py writes in a loop and logs each call only after it returned (fsync'd); while a
write call runs, a file beside the log names it. The test kills it 30 times on one database file,
each time after it has acknowledged writes of that round and while one of its write calls is
running, and after each kill checks every write acknowledged so far in any round. Set
VIBECC_CRASH_SEED to replay a run.
"""

from __future__ import annotations

import itertools
import os
import random
import select
import signal
import sqlite3
import subprocess
import sys
import time
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
import sqlalchemy

from vibecc.state_store import Pipeline, PipelineHistory, StateStore
from vibecc.state_store.models import transitions

if TYPE_CHECKING:
    from tests import helpers
else:
    import helpers

WORKER = Path(__file__).with_name("crash_worker.py")
ROUNDS = 30
EVER = datetime.fromisoformat("0001-01-02T00:00:00+00:00")
READY_WAIT = 60.0
"""Seconds a worker may take to import and open the store (a slow CI machine), not a limit on it."""
STOP_ATTEMPTS = 1000
"""Times the test may stop the worker between two writes before it gives up catching one in flight."""


@dataclass
class Acknowledged:
    """What the workers reported done, over all rounds so far."""

    created: set[str] = field(default_factory=set)
    version: dict[str, int] = field(default_factory=dict)
    archived: set[str] = field(default_factory=set)
    writes: int = 0

    def read(self, log: Path) -> None:
        data = log.read_text(encoding="utf-8") if log.exists() else ""
        # A line cut by the kill has no newline: that write was never acknowledged.
        for line in data.split("\n")[:-1]:
            kind, pipeline_id, *rest = line.split()
            self.writes += 1
            if kind == "create":
                self.created.add(pipeline_id)
                self.version.setdefault(pipeline_id, 1)
            elif kind == "update":
                self.version[pipeline_id] = int(rest[0])
            elif kind == "archive":
                self.archived.add(pipeline_id)
            else:
                raise AssertionError(f"unknown acknowledgement {line!r} in {log}")


def _integrity(path: Path) -> tuple[str, list[tuple[object, ...]], list[tuple[object, ...]]]:
    conn = sqlite3.connect(path)
    try:
        check = conn.execute("PRAGMA integrity_check").fetchall()
        broken_keys = conn.execute("PRAGMA foreign_key_check").fetchall()
        twice = conn.execute("SELECT id FROM pipeline_history GROUP BY id HAVING count(*) > 1").fetchall()
    finally:
        conn.close()
    return "; ".join(str(row[0]) for row in check), broken_keys, twice


def _check_after_kill(path: Path, acked: Acknowledged, round_no: int) -> None:
    # The store must open at once, before anything else touches the file.
    with StateStore(path, busy_timeout=5) as store:
        integrity, broken_keys, twice = _integrity(path)
        assert integrity == "ok", f"round {round_no}: integrity_check says {integrity}"
        assert broken_keys == [], f"round {round_no}: broken foreign keys {broken_keys}"
        assert twice == [], f"round {round_no}: history ids stored twice: {twice}"
        active = {p.id: p for p in store.list_pipelines()}
        history = {h.id: h for h in store.iter_history()}
        assert not active.keys() & history.keys(), f"round {round_no}: pipelines both active and archived"
        for pipeline in active.values():
            # The worker writes retry_count_ci = version in the same update: a torn write shows here.
            assert pipeline.version == 1 or pipeline.retry_count_ci == pipeline.version, pipeline
            assert pipeline.feedback in (None, f"{pipeline.id}:{pipeline.version}"), pipeline
        for pipeline_id in acked.created | acked.version.keys():
            assert pipeline_id in active or pipeline_id in history, (
                f"round {round_no}: acknowledged pipeline {pipeline_id} is gone"
            )
        unacknowledged = 0
        for pipeline_id in active.keys() | history.keys():
            # retry_count_ci = version after every update, so history shows the archived version.
            final = (
                active[pipeline_id].version
                if pipeline_id in active
                else history[pipeline_id].total_retries_ci
            )
            final = max(final, 1)
            version = acked.version.get(pipeline_id, 0)
            assert final >= version, (
                f"round {round_no}: {pipeline_id} is at version {final}, acknowledged {version}"
            )
            unacknowledged += final - max(version, 1)
            unacknowledged += pipeline_id not in acked.created
            unacknowledged += pipeline_id in history and pipeline_id not in acked.archived
        # Each kill can leave at most the one write that was in flight committed but unacknowledged.
        assert unacknowledged <= round_no + 1, (
            f"round {round_no}: {unacknowledged} writes committed that no worker acknowledged"
        )
        for pipeline_id in acked.archived:
            assert pipeline_id in history, f"round {round_no}: acknowledged archive of {pipeline_id} lost"
            assert pipeline_id not in active, f"round {round_no}: archived {pipeline_id} is active again"
        assert store.get_history_stats() == helpers.stats_of(store.iter_history()), (
            f"round {round_no}: kept stats drifted"
        )
        assert store.get_duration_percentiles() == helpers.kept_percentiles_of(store.iter_history()), (
            f"round {round_no}: kept duration histogram drifted"
        )
        _check_timelines(store, active, history, round_no)
        _check_change_log(store, acked, round_no)
        project = store.list_projects()[0]
        assert (
            store.update_project(project.id, name=f"after kill {round_no}").name == f"after kill {round_no}"
        )


def _check_change_log(store: StateStore, acked: Acknowledged, round_no: int) -> None:
    """Every acknowledged write has its change, and no change is without its write: the log,
    numbered without a gap, replays to exactly the pipelines, versions and history the tables
    hold."""
    changes = helpers.every_change(store)
    assert [c.seq for c in changes] == list(range(1, len(changes) + 1)), f"round {round_no}: gap"
    logged = {(c.kind, c.entity_id, c.op, c.version) for c in changes}
    for pipeline_id in acked.created:
        assert ("pipeline", pipeline_id, "created", 1) in logged, (round_no, pipeline_id)
    for pipeline_id, version in acked.version.items():
        if version > 1:
            assert ("pipeline", pipeline_id, "updated", version) in logged, (round_no, pipeline_id)
    for pipeline_id in acked.archived:
        assert ("pipeline", pipeline_id, "archived", None) in logged, (round_no, pipeline_id)
    live = helpers.replay(changes)
    assert live.pipelines == {p.id: p.version for p in store.list_pipelines()}, (
        f"round {round_no}: the change log replays to other pipelines than the table holds"
    )
    assert live.history == {h.id for h in store.iter_history()}, f"round {round_no}: history differs"
    assert live.projects == {p.id for p in store.list_projects()}, f"round {round_no}: projects differ"


def _check_timelines(
    store: StateStore, active: dict[str, Pipeline], history: dict[str, PipelineHistory], round_no: int
) -> None:
    """Every state change has its transition and every transition its write: the chain of a
    pipeline runs from its creation to the state it is in, each transition carries the retry
    count and feedback of the very update that made it, and no transition is left without its
    pipeline or history record. The kept stage histogram equals a recount."""
    with store.database.engine.connect() as conn:
        owners = set(conn.execute(sqlalchemy.select(transitions.c.pipeline_id).distinct()).scalars())
    assert owners <= active.keys() | history.keys(), (
        f"round {round_no}: orphan transitions {owners - active.keys() - history.keys()}"
    )
    for pipeline_id in active.keys() | history.keys():
        timeline = store.get_timeline(pipeline_id)
        assert [t.seq for t in timeline] == list(range(1, len(timeline) + 1)), (round_no, timeline)
        assert timeline[0].from_state is None
        for earlier, later in itertools.pairwise(timeline):
            assert later.from_state == earlier.to_state != later.to_state, (round_no, timeline)
            assert later.feedback == f"{pipeline_id}:{later.retry_count_ci}", (round_no, later)
        now = active[pipeline_id].state if pipeline_id in active else history[pipeline_id].final_state
        assert timeline[-1].to_state == now, (
            f"round {round_no}: {pipeline_id} is {now}, timeline says otherwise"
        )
    kept, recount = store.get_stage_stats(), store.get_stage_stats(since=EVER)
    for state in kept:
        assert (kept[state].visits, kept[state].total_seconds) == pytest.approx(
            (recount[state].visits, recount[state].total_seconds)
        ), f"round {round_no}: kept stage stats drifted for {state}"


def _start_worker(path: Path, log: Path, seed: int, errors: Path) -> subprocess.Popen[str]:
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    with errors.open("a") as stderr:
        return subprocess.Popen(
            [sys.executable, str(WORKER), str(path), str(log), str(seed)],
            stdout=subprocess.PIPE,
            stderr=stderr,
            text=True,
            env=env,
        )


def _wait_ready(worker: subprocess.Popen[str], errors: Path) -> None:
    assert worker.stdout is not None
    ready, _, _ = select.select([worker.stdout], [], [], READY_WAIT)
    line = worker.stdout.readline() if ready else ""
    if line.strip() != "ready":
        worker.kill()
        worker.wait()
        pytest.fail(f"crash worker did not start: {errors.read_text()[-2000:]}")


def _acknowledged(log: Path) -> int:
    """Writes the worker of this round has acknowledged so far (complete lines of its log)."""
    return log.read_text(encoding="utf-8").count("\n") if log.exists() else 0


def _in_flight(log: Path) -> str | None:
    """The write call the worker is running, if any ("create", "update <id>", "archive <id>")."""
    flight = Path(f"{log}.flight")
    running = flight.read_text(encoding="utf-8").strip() if flight.exists() else ""
    return running or None


def _wait_for_an_acknowledgement(worker: subprocess.Popen[str], log: Path, seed: int) -> None:
    helpers.until(
        lambda: _acknowledged(log) > 0 or worker.poll() is not None,
        f"seed {seed}: the worker to acknowledge a write",
        timeout=READY_WAIT,
    )


def _stopped(pid: int) -> bool:
    stat = Path(f"/proc/{pid}/stat").read_text()
    return stat.rsplit(")", 1)[1].split()[0] == "T"


def _stop_mid_write(worker: subprocess.Popen[str], log: Path, rng: random.Random, seed: int) -> str:
    """Stop the worker (SIGSTOP) at a moment when one of its writes is in flight and return that
    write; caught between two writes, it is let go on for a moment and stopped again."""
    for _ in range(STOP_ATTEMPTS):
        worker.send_signal(signal.SIGSTOP)
        helpers.until(lambda: _stopped(worker.pid), "the worker to stop", interval=0.001)
        in_flight = _in_flight(log)
        if in_flight is not None:
            return in_flight
        worker.send_signal(signal.SIGCONT)
        time.sleep(rng.uniform(0, 0.005))
    pytest.fail(f"seed {seed}: never caught the worker with a write in flight")


@pytest.mark.slow
def test_sigkilled_writer_loses_no_acknowledged_write(tmp_path: Path) -> None:
    seed = int(os.environ.get("VIBECC_CRASH_SEED", str(random.SystemRandom().randrange(2**32))))
    rng = random.Random(seed)
    path = tmp_path / "crash.db"
    errors = tmp_path / "worker-stderr.txt"
    with StateStore(path) as store:
        store.create_project("crash", "acme/crash")
    acked = Acknowledged()
    kills_mid_write: list[str] = []
    for round_no in range(ROUNDS):
        log = tmp_path / f"ack-{round_no}.log"
        worker = _start_worker(path, log, rng.randrange(2**31), errors)
        try:
            _wait_ready(worker, errors)
            _wait_for_an_acknowledgement(worker, log, seed)
            time.sleep(rng.uniform(0.02, 0.3))
            assert worker.poll() is None, f"seed {seed}: worker exited early: {errors.read_text()[-2000:]}"
            in_flight = _stop_mid_write(worker, log, rng, seed)
            worker.send_signal(signal.SIGKILL)
        finally:
            worker.kill()
            worker.wait()
            if worker.stdout is not None:
                worker.stdout.close()
        assert worker.returncode == -signal.SIGKILL
        # The kill landed mid-write: the worker had acknowledged writes of this round and was
        # killed inside a write call.
        assert _acknowledged(log) > 0, f"seed {seed}: round {round_no} acknowledged no write"
        assert _in_flight(log) == in_flight, f"seed {seed}: round {round_no} was not killed mid-write"
        kills_mid_write.append(in_flight)
        acked.read(log)
        _check_after_kill(path, acked, round_no)
    kills = len(kills_mid_write)
    assert kills == ROUNDS
    assert acked.writes > ROUNDS, f"seed {seed}: the workers acknowledged only {acked.writes} writes"
    assert acked.archived, "no archive was acknowledged"
    assert any(version > 1 for version in acked.version.values()), "no update was acknowledged"
    helpers.record_figure("crash_kills", kills, "sqlite")
    helpers.record_figure("crash_acknowledged_writes", acked.writes, "sqlite")
