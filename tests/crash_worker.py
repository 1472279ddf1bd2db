"""The writer that tests/test_crash.py kills with SIGKILL.

    python tests/crash_worker.py DB_PATH ACK_LOG SEED

It opens the store, prints "ready", then creates, updates and archives pipelines of the first
project until it is killed. After each call has RETURNED it appends one line to ACK_LOG and
fsyncs it, so every complete line names a write the store reported as done:

    create <pipeline id>
    update <pipeline id> <version>      (the update also set retry_count_ci = version)
    archive <pipeline id>

While a write call runs, ACK_LOG.flight names it ("create", "update <id>", "archive <id>"); it is
blank between calls, so the test can stop the worker with a write in flight.
"""

from __future__ import annotations

import os
import random
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager

from vibecc.state_store import PipelineState, StateStore

RUN_AT_MOST = 60.0
"""Seconds after which the worker stops on its own if nobody killed it."""
FLIGHT_SIZE = 80
"""Bytes of the .flight file: the write in flight, padded with spaces."""


def main(db_path: str, ack_path: str, seed: int) -> None:
    rng = random.Random(seed)
    store = StateStore(db_path, busy_timeout=30)
    project = store.list_projects()[0]
    active = [p.id for p in store.list_pipelines(project.id)]
    ack_fd = os.open(ack_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)

    flight_fd = os.open(f"{ack_path}.flight", os.O_RDWR | os.O_CREAT, 0o600)

    @contextmanager
    def flying(what: str) -> Iterator[None]:
        os.pwrite(flight_fd, what.ljust(FLIGHT_SIZE).encode(), 0)
        yield
        os.pwrite(flight_fd, b" " * FLIGHT_SIZE, 0)

    def ack(line: str) -> None:
        os.write(ack_fd, f"{line}\n".encode())
        os.fsync(ack_fd)

    def update(target: str, states: list[PipelineState]) -> None:
        current = store.get_pipeline(target)
        with flying(f"update {target}"):
            updated = store.update_pipeline(
                target,
                state=rng.choice(states),
                retry_count_ci=current.version + 1,
                feedback=f"{target}:{current.version + 1}",
                expected_version=current.version,
            )
        ack(f"update {target} {updated.version}")

    print("ready", flush=True)
    deadline = time.monotonic() + RUN_AT_MOST
    serial = 0
    while time.monotonic() < deadline:
        serial += 1
        roll = rng.random()
        if len(active) < 3 or roll < 0.35:
            with flying("create"):
                created = store.create_pipeline(project.id, f"s{seed}-{serial}", f"ticket {serial}", "main")
            active.append(created.id)
            ack(f"create {created.id}")
        elif roll < 0.8:
            update(rng.choice(active), list(PipelineState))
        else:
            target = active.pop(rng.randrange(len(active)))
            if not store.get_pipeline(target).state.is_terminal:  # only finished ones go to history
                update(target, [PipelineState.MERGED, PipelineState.FAILED])
            with flying(f"archive {target}"):
                store.archive_pipeline(target)
            ack(f"archive {target}")


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], int(sys.argv[3]))
