"""The log-spaced buckets of the kept histograms (time in each state, run durations).

A value of d milliseconds (d >= 1) falls in bucket floor(log(d) / log(RATIO)) + 1, values
under 1 ms in bucket 0. A percentile read from a histogram is the geometric middle of the
bucket its rank falls in, so it is within sqrt(RATIO) - 1 (4.9%) of the exact nearest-rank
value (or under 1 ms off), at a cost of at most one row per bucket whatever the history size.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

RATIO = 1.1
"""Each bucket is this much wider than the one before it."""
RELATIVE_ERROR = math.sqrt(RATIO) - 1

_LOG_RATIO = math.log(RATIO)


def bucket(ms: int) -> int:
    return 0 if ms < 1 else int(math.log(ms) / _LOG_RATIO) + 1


def representative_seconds(index: int) -> float:
    """The value a percentile in bucket `index` is read as: the bucket's geometric middle."""
    return 0.0 if index == 0 else RATIO ** (index - 0.5) / 1000


def whole_seconds(index: int) -> float:
    """The value for bucket `index` of a histogram of whole seconds: its geometric middle,
    moved to the nearest whole second the bucket can hold. Closer to every value the bucket may
    hold than the middle is, and exact when the bucket holds a single whole second (under 10 s)."""
    if index == 0:
        return 0.0
    low = math.ceil(RATIO ** (index - 1) / 1000 * (1 - _EDGE))
    high = math.ceil(RATIO**index / 1000 * (1 + _EDGE)) - 1
    return float(min(max(representative_seconds(index), low), max(low, high)))


_EDGE = 1e-9
"""Slack for the floating-point edges of a bucket: a value on an edge may be counted either side."""


def percentile(
    counts: Sequence[tuple[int, int]],
    total: int,
    percent: int,
    value: Callable[[int], float] = representative_seconds,
) -> float:
    """The nearest-rank percentile, in seconds, of a histogram given as (bucket, count) pairs
    in bucket order, whose counts add up to `total` (> 0); `value` reads a bucket."""
    rank = max(1, math.ceil(percent / 100 * total))
    seen = 0
    for index, n in counts:
        seen += n
        if seen >= rank:
            return value(index)
    raise AssertionError("rank beyond the histogram")  # pragma: no cover
