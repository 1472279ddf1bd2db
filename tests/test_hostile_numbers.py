"""Numbers and text whose own methods lie, and ints too long to print: the checks read int's,
float's and str's own values, so such arguments are refused with a ValidationError (or taken
for the plain value they hold) and nothing else escapes, hangs or is written."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from vibecc.state_store import PipelineState, Project, StateStore, ValidationError

HUGE = 10**5000
"""Too long for str() under Python's default limit of 4,300 digits."""


class AgreeingFloat(float):
    """Enormous, but says it lies within any bounds."""

    def __lt__(self, other: object) -> bool:
        return True

    def __le__(self, other: object) -> bool:
        return True

    def __gt__(self, other: object) -> bool:
        return True

    def __ge__(self, other: object) -> bool:
        return True

    __hash__ = float.__hash__


class RaisingInt(int):
    """An int whose comparisons and conversions raise, and whose repr does too."""

    def _refuse(self, *_: object) -> Any:
        raise RuntimeError("the caller's own code")

    __lt__ = __le__ = __gt__ = __ge__ = __float__ = __index__ = __repr__ = __str__ = _refuse
    __hash__ = int.__hash__


class HidingStr(str):
    """Text that denies holding a NUL and claims to be something else when printed."""

    def __contains__(self, item: object) -> bool:
        return False

    def __str__(self) -> str:
        return "acme/clean"

    def strip(self, chars: str | None = None) -> str:
        return "x"


@pytest.fixture
def project(store: StateStore) -> Project:
    return store.create_project("Numbers", "acme/numbers")


CALLS: list[tuple[str, Callable[[StateStore, Project], object]]] = [
    ("timeout", lambda s, p: s.wait_for_changes(0, timeout=AgreeingFloat(1e308))),
    ("linger", lambda s, p: s.wait_for_changes(0, timeout=0, linger=AgreeingFloat(float("inf")))),
    ("timeout", lambda s, p: s.wait_for_changes(0, timeout=HUGE)),
    ("cursor", lambda s, p: s.changes_since(HUGE)),
    ("cursor", lambda s, p: s.changes_since(-HUGE)),
    ("limit", lambda s, p: s.changes_since(0, limit=RaisingInt(10**6))),
    ("limit", lambda s, p: s.get_history(p.id, limit=HUGE)),
    ("retry_count_ci", lambda s, p: s.update_pipeline(s.list_pipelines()[0].id, retry_count_ci=HUGE)),
    ("repo", lambda s, p: s.create_project("Hidden", HidingStr("acme/a\x00b"))),
    ("ticket_id", lambda s, p: s.create_pipeline(p.id, HidingStr("a\x00b"), "t", "b")),
    ("ticket_id", lambda s, p: s.create_pipeline(p.id, HUGE, "t", "b")),
]


@pytest.mark.parametrize(("field", "call"), CALLS, ids=[f"{f}-{i}" for i, (f, _) in enumerate(CALLS)])
def test_lying_and_huge_arguments_are_refused(
    store: StateStore, project: Project, field: str, call: Callable[[StateStore, Project], object]
) -> None:
    store.create_pipeline(project.id, 1, "t", "b")
    before = (store.list_projects(), store.list_pipelines(), store.change_cursor())
    with pytest.raises(ValidationError, match=field) as raised:
        call(store, project)
    assert "the caller's own code" not in str(raised.value)
    assert len(str(raised.value)) < 300  # a huge int is described, not printed
    assert (store.list_projects(), store.list_pipelines(), store.change_cursor()) == before


def test_a_subclass_holding_an_acceptable_value_is_stored_as_the_plain_value(
    store: StateStore, project: Project
) -> None:
    """What is stored is the value int and str see, not what the subclass says of itself."""
    pipeline = store.create_pipeline(project.id, HidingStr("T-1"), "t", "b")
    assert (pipeline.ticket_id, type(pipeline.ticket_id)) == ("T-1", str)
    updated = store.update_pipeline(pipeline.id, retry_count_ci=RaisingInt(2), state=PipelineState.CODING)
    assert (updated.retry_count_ci, type(updated.retry_count_ci)) == (2, int)
