"""`changes --follow` and `pipelines list --watch` in real processes, on SQLite and PostgreSQL:
each shows a write the test commits after it started, and SIGINT (Ctrl-C) ends it with exit
130 and one line, no traceback. --watch runs into a pipe and on a terminal (a pseudo-terminal,
where rich's Live redraws in place).

Output is read as it comes by a thread, with a generous deadline per wait; nothing is timed.
"""

from __future__ import annotations

import codecs
import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import IO, Any

import pytest

from vibecc.state_store import StateStore

DEADLINE = 60.0
"""Seconds one wait for output may take before the test fails (a loaded machine is slow)."""


class Screen:
    """What a process writes to one file descriptor, collected by a thread as it comes."""

    def __init__(self, fd: int) -> None:
        self.text = ""
        self.ended = False
        self._changed = threading.Condition()
        threading.Thread(target=self._read, args=(fd,), daemon=True).start()

    def _read(self, fd: int) -> None:
        decoder = codecs.getincrementaldecoder("utf-8")("replace")
        while True:
            try:
                chunk = os.read(fd, 65536)
            except OSError:  # a pseudo-terminal whose process is gone: EIO
                chunk = b""
            with self._changed:
                self.text += decoder.decode(chunk, final=not chunk)
                self.ended = not chunk
                self._changed.notify_all()
            if not chunk:
                return

    def wait_for(self, needle: str, after: int = 0) -> int:
        """Wait until `needle` is written after position `after`; the position after it."""
        deadline = time.monotonic() + DEADLINE
        with self._changed:
            while (found := self.text.find(needle, after)) < 0:
                remaining = deadline - time.monotonic()
                if self.ended or remaining <= 0:
                    pytest.fail(f"no {needle!r} in the output after {after}: {self.text[after:]!r}")
                self._changed.wait(remaining)
            return found + len(needle)


@contextmanager
def started(
    store_url: str, *args: str, terminal: bool = False
) -> Iterator[tuple[subprocess.Popen[bytes], Screen]]:
    """`python -m vibecc.state_store --db STORE ARGS` with its stdout on a pipe or a terminal."""
    env = {**os.environ, "COLUMNS": "160", "LINES": "60", "TERM": "xterm-256color"}
    env.pop("VIBECC_DATABASE_URL", None)
    if terminal:
        reader, writer = os.openpty()
    else:
        reader, writer = os.pipe()
    process = subprocess.Popen(
        [sys.executable, "-m", "vibecc.state_store", "--db", store_url, *args],
        stdout=writer,
        stderr=subprocess.PIPE,
        env=env,
        # A shell without job control starts background commands with SIGINT ignored, and a
        # Python started that way never turns SIGINT into KeyboardInterrupt: undo that.
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    os.close(writer)
    try:
        yield process, Screen(reader)
    finally:
        if process.poll() is None:
            process.kill()
        process.wait(DEADLINE)
        if process.stderr is not None:
            process.stderr.close()


def interrupt(process: subprocess.Popen[bytes]) -> str:
    """Send SIGINT, wait for the exit, assert exit code 130; its stderr."""
    process.send_signal(signal.SIGINT)
    assert process.wait(DEADLINE) == 130
    stream: IO[bytes] | None = process.stderr
    assert stream is not None
    return stream.read().decode()


def assert_one_line(stderr: str, message: str) -> None:
    assert "Traceback" not in stderr, stderr
    assert stderr.splitlines() == [f"Error: {message}"], stderr


@pytest.mark.parametrize("as_json", [False, True], ids=["table", "json"])
def test_follow_prints_a_change_committed_after_it_started(store_url: str, as_json: bool) -> None:
    with StateStore(store_url) as store:
        project = store.create_project("Web", "acme/web")
        with started(store_url, "changes", "--follow", *(("--json",) if as_json else ())) as (process, out):
            seen = out.wait_for(project.id)  # the project's creation: it is reading
            pipeline = store.create_pipeline(project.id, 1, "Followed", "ticket-1")
            out.wait_for(pipeline.id, seen)
            stderr = interrupt(process)
    assert_one_line(stderr, "interrupted after 2 change(s); resume with --since 2")
    if as_json:
        found = [json.loads(line) for line in out.text.splitlines()]
        assert [(c["kind"], c["entity_id"], c["version"]) for c in found] == [
            ("project", project.id, None),
            ("pipeline", pipeline.id, 1),
        ]
    else:
        last = out.text.splitlines()[-1].split()
        assert (last[0], last[3], last[4], last[5], last[6], last[7]) == (
            "2",
            "pipeline",
            "created",
            pipeline.id,
            "acme/web",
            "1",
        )


def test_follow_resumes_from_the_cursor_it_printed(store_url: str) -> None:
    with StateStore(store_url) as store:
        project = store.create_project("Web", "acme/web")
        with started(store_url, "changes", "--follow", "--json") as (process, out):
            out.wait_for(project.id)
            stderr = interrupt(process)
        cursor = stderr.rsplit("--since ", 1)[1].strip()
        later = store.create_pipeline(project.id, 2, "Later", "ticket-2")
        with started(store_url, "changes", "--follow", "--json", "--since", cursor) as (process, out):
            out.wait_for(later.id)
            interrupt(process)
    assert [json.loads(line)["entity_id"] for line in out.text.splitlines()] == [later.id]


@pytest.mark.parametrize("terminal", [False, True], ids=["pipe", "terminal"])
def test_watch_redraws_when_a_change_commits(store_url: str, terminal: bool) -> None:
    title = "Watched \x1b[31m\x07 title"
    with StateStore(store_url) as store:
        project = store.create_project("Web", "acme/web")
        with started(store_url, "pipelines", "list", "--watch", terminal=terminal) as (process, out):
            # A board on a terminal, a flat list into a pipe; both drawn once before any change.
            drawn = out.wait_for("QUEUED 0" if terminal else "0 active pipeline(s)")
            store.create_pipeline(project.id, 7, title, "ticket-7")
            after = out.wait_for("QUEUED 1" if terminal else "1 active pipeline(s)", drawn)
            out.wait_for("Watched \\x1b[31m\\x07 title", after)
            stderr = interrupt(process)
    assert_one_line(stderr, "interrupted; stopped watching")
    assert "\x07" not in out.text
    if not terminal:
        assert "\x1b" not in out.text


def test_watch_with_a_project_shows_only_its_pipelines(store_url: str) -> None:
    with StateStore(store_url) as store:
        web, api = store.create_project("Web", "acme/web"), store.create_project("API", "acme/api")
        store.create_pipeline(api.id, 1, "Elsewhere", "ticket-1")
        args: Any = ("pipelines", "list", "--watch", "--project", "acme/web")
        with started(store_url, *args) as (process, out):
            drawn = out.wait_for("0 active pipeline(s)")
            store.create_pipeline(web.id, 2, "Here", "ticket-2")
            out.wait_for("Here", drawn)
            interrupt(process)
    assert "Elsewhere" not in out.text
