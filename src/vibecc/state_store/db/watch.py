"""Waiting for commits: one connection watches for every thread of a store that waits.

A wait holds a connection for as long as it lasts; if each waiting thread held its own, a
dashboard's handful of waiters would take the pool from the writers they wait for. So the
first waiter watches (holds the connection and looks at the change log's head each time the
engine tells of a commit) and publishes each head it sees; the others sleep on a condition
until a published head passes their cursor. When the watcher's own wait ends, the next waiter
takes over.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable

CHECK = 0.25
"""Seconds a waiter that is not watching sleeps at most before it looks whether it should
take over or stop."""


class CommitWatch:
    """The newest change-log head seen by any look, and who is watching for the next."""

    def __init__(self) -> None:
        self._changed = threading.Condition()
        self._head = -1
        self._began = -math.inf  # when the read of _head began (time.monotonic())
        self._watching = False

    def publish(self, head: int, began: float) -> int:
        """Record a head read by a read that began at `began` (time.monotonic()), waking every
        waiter it passes; returns the head now known. A read that began before the one whose
        head is known is stale and changes nothing: it may have missed a commit the known one
        saw. Otherwise the newer read wins, even when lower: a log that was started again
        (its table replaced under an open store) must not keep answering from the old one's
        head."""
        with self._changed:
            if began >= self._began:
                if head > self._head:
                    self._changed.notify_all()
                self._head, self._began = head, began
            return self._head

    def wait_past(
        self,
        cursor: int,
        deadline: float,
        stopped: Callable[[], bool],
        watch: Callable[[float], bool],
    ) -> bool:
        """True once a head past `cursor` is published; False at the monotonic `deadline` or
        once stopped(). While nobody watches, this thread does: watch(deadline) holds the
        connection until this cursor is passed or the deadline comes."""
        with self._changed:
            while True:
                if self._head > cursor:
                    return True
                remaining = deadline - time.monotonic()
                if remaining <= 0 or stopped():
                    return False
                if not self._watching:
                    self._watching = True
                    break
                self._changed.wait(min(remaining, CHECK))
        try:
            return watch(deadline)
        finally:
            with self._changed:
                self._watching = False
                self._changed.notify_all()
