"""Hostile values for the hostile-input tests: a fixed vocabulary, hypothesis strategies near
each declared type, and conforms(), which tells whether a value is of its declared type."""

from __future__ import annotations

import collections.abc as abc
import dataclasses
import functools
import math
import os
import types
from dataclasses import replace
from datetime import UTC, date, datetime, time, timedelta, timezone
from decimal import Decimal
from pathlib import Path
from typing import TYPE_CHECKING, Any, Union, get_args, get_origin

from hypothesis import strategies as st

from vibecc.state_store import (
    CLEAR,
    UNSET,
    HistoryCursor,
    Pipeline,
    PipelineHistory,
    PipelineState,
    StateStore,
    StateStoreError,
)

if TYPE_CHECKING:
    from tests import helpers
    from tests.hostile_api import World, record_hints
else:
    import helpers
    from hostile_api import World, record_hints

# -- hostile values --------------------------------------------------------------------------------

NAIVE = datetime(2025, 1, 1, 12, 0, 0)
AWARE = datetime(2025, 1, 1, 12, 0, 0, tzinfo=UTC)
PLUS_14 = timezone(timedelta(hours=14))
MINUS_12 = timezone(timedelta(hours=-12))
ONE_MIB_PLUS_1 = "x" * (2**20 + 1)
ONE_MIB_PLUS_1_UTF8 = "é" * (2**19 + 1)

SCALARS: list[tuple[str, object]] = [
    ("None", None),
    ("bytes", b"acme/widgets"),
    ("empty-bytes", b""),
    ("bytearray", bytearray(b"1")),
    ("True", True),
    ("False", False),
    ("0.0", 0.0),
    ("1.0", 1.0),
    ("-0.5", -0.5),
    ("nan", math.nan),
    ("inf", math.inf),
    ("-inf", -math.inf),
    ("Decimal", Decimal("1")),
    ("complex", 1j),
    ("0", 0),
    ("1", 1),
    ("-1", -1),
    ("2**31", 2**31),
    ("2**63-1", 2**63 - 1),
    ("2**63", 2**63),
    ("-2**63", -(2**63)),
    ("10**30", 10**30),
    ("empty", ""),
    ("space", " "),
    ("whitespace", "\t\n\r\x0b\x0c "),
    ("NUL", "\x00"),
    ("NUL-inside", "acme/a\x00b"),
    ("surrogate", "\ud800"),
    ("surrogate-inside", "acme/a\udfffb"),
    ("ESC", "\x1b[31mred\x1b[0m"),
    ("BEL", "\x07"),
    ("CSI", "\x9b2J"),
    ("OSC", "\x1b]0;pwned\x07"),
    ("tilde-unknown-user", "~no-such-user-here/vibecc.db"),
    ("1MiB+1", ONE_MIB_PLUS_1),
    ("1MiB+1-utf8", ONE_MIB_PLUS_1_UTF8),
    ("dict", {}),
    ("dict-items", {"id": "x"}),
    ("list", []),
    ("list-None", [None]),
    ("tuple", ()),
    ("set", set()),
    ("frozenset", frozenset({"a"})),
    ("object", object()),
    ("path", Path("relative.db")),
    ("naive", NAIVE),
    ("aware", AWARE),
    ("aware+05:45", datetime(2025, 1, 2, 3, 4, 5, tzinfo=timezone(timedelta(hours=5, minutes=45)))),
    ("year1+14:00", datetime(1, 1, 1, tzinfo=PLUS_14)),
    ("year9999-12:00", datetime(9999, 12, 31, 23, 59, 59, 999999, tzinfo=MINUS_12)),
    ("year1-utc", datetime(1, 1, 1, tzinfo=UTC)),
    ("year9999-utc", datetime(9999, 12, 31, 23, 59, 59, 999999, tzinfo=UTC)),
    ("date", date(2025, 1, 1)),
    ("time", time(12, 0, tzinfo=UTC)),
    ("timedelta", timedelta(seconds=1)),
    ("negative-timedelta", timedelta(days=-1)),
    ("QUEUED", PipelineState.QUEUED),
    ("MERGED", PipelineState.MERGED),
    ("'failed'", "failed"),
    ("'coding'", "coding"),
    ("'MERGED'", "MERGED"),
    ("PipelineState-class", PipelineState),
    ("UNSET", UNSET),
    ("CLEAR", CLEAR),
]
"""Hostile values that do not depend on the world."""

FIELD_VALUES: list[tuple[str, object]] = [
    (label, value)
    for label, value in SCALARS
    if label
    in {
        "None", "bytes", "True", "1.0", "nan", "0", "-1", "2**31", "2**63", "-2**63", "10**30",
        "empty", "space", "NUL", "surrogate", "ESC", "1MiB+1", "list", "object", "naive",
        "year1+14:00", "year9999-12:00", "year1-utc", "year9999-utc", "date", "QUEUED", "'MERGED'",
        "'coding'", "UNSET",
    }
]  # fmt: skip
"""Hostile values for one field of a record handed to the store."""


def world_values(world: World) -> list[tuple[str, object]]:
    """Hostile values made of the world: records and ids in the wrong places."""
    return [
        ("Project", world.project),
        ("Pipeline", world.queued),
        ("PipelineHistory", world.history[0]),
        ("HistoryCursor", world.cursor),
        ("StateStore", world.store),
        ("project-id", world.project.id),
        ("pipeline-id", world.queued.id),
        ("history-id", world.history[0].id),
        ("unknown-id", "00000000-0000-4000-8000-000000000000"),
        ("cursor-token", str(world.cursor)),
    ]


def mentions(hint: Any, wanted: object) -> bool:
    """Whether an annotation is, or contains, `wanted` (a class or a generic origin)."""
    if hint is wanted or get_origin(hint) is wanted:
        return True
    return any(
        mentions(arg, wanted) for arg in get_args(hint) if arg is not Ellipsis and not isinstance(arg, list)
    )


def takes_callable(hint: Any) -> bool:
    return mentions(hint, abc.Callable)


def replaced(record: object, changes: dict[str, object]) -> object:
    """The record with `changes`, or the record as it is when its constructor refuses them
    (a record that checks its fields cannot exist with a hostile one: nothing to call with)."""
    try:
        return replace(record, **changes)  # type: ignore[type-var]
    except StateStoreError:
        return record


def mutations(record: object, values: list[tuple[str, object]]) -> list[tuple[str, object]]:
    """The record with one field replaced by each hostile value."""
    return [
        (f"{f.name}={label}", replaced(record, {f.name: value}))
        for f in dataclasses.fields(record)  # type: ignore[arg-type]
        for label, value in values
    ]


class Once(abc.Iterator[Any]):
    """A one-shot iterator (like a generator) that still knows its items, to show and renew."""

    def __init__(self, items: list[Any]) -> None:
        self.items = items
        self._rest = iter(items)

    def __next__(self) -> Any:
        return next(self._rest)

    def __repr__(self) -> str:
        return f"Once({short(self.items)})"


def sweep_values(world: World, hint: Any, vocabulary: list[tuple[str, object]]) -> list[tuple[str, object]]:
    """Every hostile value tried in a parameter of this type, one at a time."""
    values = list(vocabulary)
    if mentions(hint, Pipeline):
        values += mutations(world.merged, FIELD_VALUES)
    if mentions(hint, HistoryCursor):
        values += mutations(world.cursor, FIELD_VALUES)
    if mentions(hint, PipelineHistory):
        first, middle, last = world.fresh
        elements = [*vocabulary, *mutations(middle, FIELD_VALUES)]
        values += [(f"[ok, {label}, ok]", [first, value, last]) for label, value in elements]
        values += [(f"Once[ok, {label}, ok]", Once([first, value, last])) for label, value in elements[:20]]
    if takes_callable(hint):
        values = [(label, value) for label, value in values if not callable(value)]
    return values


FRAGMENTS = [
    "\x00", "\ud800", "\udfff", "\x1b[", "\x07", "\x9b", " ", "\t", "\n", "/", "..", "@{", ".lock",
    "-", "queued", "MERGED", "acme", "widgets", "é", "🚀", "https://", "0", "9" * 20,
]  # fmt: skip
NASTY_TEXT = st.lists(st.sampled_from(FRAGMENTS) | st.text(max_size=4), max_size=5).map("".join)
OFFSETS = st.timedeltas(min_value=-timedelta(hours=23, minutes=59), max_value=timedelta(hours=23, minutes=59))
ZONES = st.none() | st.timezones() | st.builds(timezone, OFFSETS)


def typed_hostile(hint: Any) -> list[st.SearchStrategy[Any]]:
    """Generated values near the declared type: odd text, any integer, any datetime..."""
    parts: list[st.SearchStrategy[Any]] = []
    if mentions(hint, str):
        parts.append(NASTY_TEXT)
    if mentions(hint, int) or mentions(hint, float):
        parts.append(st.integers() | st.floats())
    if mentions(hint, datetime):
        parts.append(st.datetimes(timezones=ZONES) | st.dates() | st.timedeltas())
    if mentions(hint, PipelineState):
        parts.append(
            st.sampled_from(
                [*PipelineState, *(s.value for s in PipelineState), *(s.name for s in PipelineState)]
            )
        )
    return parts


def generated_records(record: object) -> st.SearchStrategy[Any]:
    """The record with one or two fields replaced by hostile values."""
    hints = record_hints(type(record))
    field_value = st.sampled_from(sorted(hints)).flatmap(
        lambda name: st.tuples(
            st.just(name),
            st.one_of(st.sampled_from([v for _, v in FIELD_VALUES]), *typed_hostile(hints[name])),
        )
    )
    return st.lists(field_value, min_size=1, max_size=2).map(lambda changes: replaced(record, dict(changes)))


def from_type_is_safe(hint: Any) -> bool:
    # from_type would open stores (StateStore's db_path has a default) or make callbacks.
    # A record that checks its fields (HistoryCursor) refuses most of what from_type builds.
    return not any(mentions(hint, t) for t in (StateStore, os.PathLike, abc.Callable, HistoryCursor))


def hostile_strategy(world: World, hint: Any, vocabulary: list[tuple[str, object]]) -> st.SearchStrategy[Any]:
    values = [v for _, v in vocabulary if not (takes_callable(hint) and callable(v))]
    parts: list[st.SearchStrategy[Any]] = [st.sampled_from(values), *typed_hostile(hint)]
    if mentions(hint, Pipeline):
        parts += [generated_records(world.merged), st.from_type(Pipeline)]
    if mentions(hint, HistoryCursor):
        parts.append(generated_records(world.cursor))
    if mentions(hint, PipelineHistory):
        first, middle, last = world.fresh
        element = st.one_of(st.sampled_from(values), generated_records(middle), st.from_type(PipelineHistory))
        parts.append(
            st.tuples(element, st.booleans()).map(
                lambda e: Once([first, e[0], last]) if e[1] else [first, e[0], last]
            )
        )
    if from_type_is_safe(hint):
        parts.append(st.from_type(hint))
    return st.one_of(parts).map(inspectable)


def inspectable(value: Any) -> Any:
    """A generated iterator as a Once, which the checks can still look into after the call."""
    if isinstance(value, abc.Iterator) and not isinstance(value, Once):
        return Once(list(value))
    return value


# -- what a normal return must look like ------------------------------------------------------------

STATE_VALUES = frozenset(s.value for s in PipelineState)


def storable(text: str) -> bool:
    """Text both engines store exactly: no NUL (PostgreSQL refuses it), valid UTF-8."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return "\x00" not in text


def sound_datetime(value: datetime) -> bool:
    try:
        return value.utcoffset() is not None and value.astimezone(UTC) is not None
    except (OverflowError, ValueError):
        return False


def _items(value: object, origin: Any) -> list[Any] | None:
    if isinstance(value, Once):
        return value.items
    if origin is list:
        return value if isinstance(value, list) else None
    if origin is tuple:
        return list(value) if isinstance(value, tuple) else None
    if isinstance(value, abc.Iterator):
        return None  # cannot be looked at without using it up
    if isinstance(value, abc.Iterable):
        return list(value)
    return None


def conforms(value: object, hint: Any, *, argument: bool, strict_text: bool = False) -> bool:
    """Whether `value` is of the annotated type.

    As an argument: no bool for an int, no NaN, aware datetimes that fit in UTC, a state's
    string value for a PipelineState and, with strict_text, only text both engines store
    exactly. As a result: datetimes at UTC and states as PipelineState members.
    """
    again = functools.partial(conforms, argument=argument, strict_text=strict_text)
    origin = get_origin(hint)
    if hint is Any or hint is object:
        return True
    if hint is None or hint is type(None):
        return value is None
    if origin is Union or origin is types.UnionType:
        return any(again(value, option) for option in get_args(hint))
    if origin is abc.Callable or hint is abc.Callable:
        return callable(value)
    if origin in (list, tuple, abc.Iterable, abc.Iterator, abc.Sequence):
        items = _items(value, origin)
        elements = [a for a in get_args(hint) if a is not Ellipsis] or [Any]
        return items is not None and all(again(item, elements[0]) for item in items)
    if origin in (dict, abc.Mapping):
        key, item = get_args(hint) or (Any, Any)
        kind = dict if origin is dict else abc.Mapping
        return isinstance(value, kind) and all(again(k, key) and again(v, item) for k, v in value.items())
    if origin is os.PathLike:
        return isinstance(value, os.PathLike) and isinstance(os.fspath(value), str)
    if origin is not None:
        raise TypeError(f"conforms() does not know the annotation {hint!r}: teach it")
    if hint is bool:
        return True  # any object has a truth value, as everywhere in Python
    if hint is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if hint is float:
        return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)
    if hint is str:
        return isinstance(value, str) and (not strict_text or storable(value))
    if hint is datetime:
        if not isinstance(value, datetime):
            return False
        return sound_datetime(value) if argument else helpers.is_utc(value)
    if hint is PipelineState:
        return isinstance(value, PipelineState) or (
            argument and isinstance(value, str) and value in STATE_VALUES
        )
    if isinstance(hint, type) and dataclasses.is_dataclass(hint):
        return isinstance(value, hint) and all(
            again(getattr(value, name), field_hint) for name, field_hint in record_hints(hint).items()
        )
    if isinstance(hint, type):
        return isinstance(value, hint)
    raise TypeError(f"conforms() does not know the annotation {hint!r}: teach it")


def short(value: object, limit: int = 90) -> str:
    text = repr(value)
    return text if len(text) <= limit else f"{text[: limit - 25]}...<{len(text)} chars>"


def hint_name(hint: Any) -> str:
    if isinstance(hint, type):
        return hint.__name__
    return str(hint).replace("vibecc.state_store.records.", "").replace("collections.abc.", "")
