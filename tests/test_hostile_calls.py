"""Hostile arguments to every public call, found by introspection, on both engines.

tests/test_bad_input_*.py name their cases by hand; this module closes the class of bug instead. It
enumerates the public API (every public method of StateStore, copy_store, HistoryCursor.parse
and any record whose constructor validates), so a call added later is covered without editing
this file. Each parameter gets hostile values while the other arguments stay valid: every
value of a fixed vocabulary, one parameter at a time, then hypothesis for pairs of hostile
arguments and for generated values. Each call is held to the contract:

- it returns normally or raises a StateStoreError; anything else fails with the call, the
  arguments and the traceback. A StorageError counts as a failure too, except for a database
  location: it means a bad argument reached the database instead of being refused;
- a call that raised left every row of the database as it was (helpers.snapshot); only
  import_history may keep whole batches it committed before the record it refused, as its
  docstring says;
- a normal return after a hostile argument is allowed only when the argument is of the
  declared type (no bool for an int, no naive datetime, no text that an engine cannot store
  exactly), the result is of the declared return type with UTC datetimes, and for a write the
  store reads back what the call returned, every stored record is well formed and the kept
  stats equal a recount.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from vibecc.state_store import (
    StateStore,
)

if TYPE_CHECKING:
    from tests.hostile_api import (
        BY_NAME,
        KNOWN_METHODS,
        VALID,
        Target,
        World,
        all_targets,
        build_world,
        valid_arguments,
    )
    from tests.hostile_harness import Call, Harness
    from tests.hostile_values import conforms, hostile_strategy, sweep_values
else:
    from hostile_api import (
        BY_NAME,
        KNOWN_METHODS,
        VALID,
        Target,
        World,
        all_targets,
        build_world,
        valid_arguments,
    )
    from hostile_harness import Call, Harness
    from hostile_values import conforms, hostile_strategy, sweep_values

# -- tests -----------------------------------------------------------------------------------------

TARGETS = all_targets()
IDS = [t.name for t in TARGETS]


@pytest.fixture(scope="module")
def empty_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("hostile") / "empty.db"
    StateStore(path).close()
    return path


@pytest.fixture
def world(
    store: StateStore, store_url: str, tmp_path: Path, empty_template: Path, monkeypatch: pytest.MonkeyPatch
) -> World:
    # copy_store takes relative paths: any it creates land in this test's folder.
    (tmp_path / "cwd").mkdir()
    monkeypatch.chdir(tmp_path / "cwd")
    return build_world(store, store_url, tmp_path, empty_template)


def _harness(world: World, engine_name: str, *, collect: bool) -> Iterator[Harness]:
    harness = Harness(world, engine_name, collect=collect)
    try:
        yield harness
    finally:
        harness.close()


@pytest.fixture
def sweeper(world: World, engine_name: str) -> Iterator[Harness]:
    yield from _harness(world, engine_name, collect=True)


@pytest.fixture
def checker(world: World, engine_name: str) -> Iterator[Harness]:
    yield from _harness(world, engine_name, collect=False)


def test_the_enumeration_finds_the_public_api() -> None:
    names = {t.name for t in TARGETS}
    assert {f"StateStore.{m}" for m in KNOWN_METHODS} <= names
    assert {"copy_store", "HistoryCursor.parse"} <= names
    for target in TARGETS:
        # A call added later needs no edit here unless it takes a required argument of a new
        # name, or an annotation conforms() cannot judge: then this says which.
        assert target.name in VALID or target.required <= set(BY_NAME), target.name
        for hint in [*target.hints.values(), target.returns]:
            conforms(object(), hint, argument=True)


def test_reset_restores_the_world_exactly(sweeper: Harness) -> None:
    world = sweeper.world
    world.store.claim_pipeline()
    world.store.archive_pipeline(world.merged.id)
    world.store.create_project("Other", "acme/other")
    assert not sweeper.unchanged()
    sweeper.reset()
    assert sweeper.unchanged()


@pytest.mark.parametrize("target", TARGETS, ids=IDS)
def test_each_hostile_value_in_each_parameter(sweeper: Harness, target: Target) -> None:
    """Every vocabulary value in every parameter, the other arguments valid."""
    world = sweeper.world
    valid = Call(target, valid_arguments(world, target), ())
    sweeper.attempt(valid)
    sweeper.verify()
    if sweeper.failures:
        sweeper.report()
    for name in target.parameters:
        for label, value in sweep_values(world, target.hints[name], sweeper.vocabulary):
            arguments = {**valid_arguments(world, target), name: value}
            sweeper.attempt(Call(target, arguments, (name,), {name: label}))
        sweeper.verify()
    sweeper.report()


EXAMPLES = max(12, (settings.default.max_examples if settings.default else 100) // 8)


@pytest.mark.parametrize(
    "target", [t for t in TARGETS if t.parameters], ids=[t.name for t in TARGETS if t.parameters]
)
@settings(
    max_examples=EXAMPLES,
    deadline=None,
    suppress_health_check=[
        HealthCheck.function_scoped_fixture,
        HealthCheck.too_slow,
        HealthCheck.data_too_large,
    ],
)
@given(data=st.data())
def test_hostile_combinations(checker: Harness, target: Target, data: st.DataObject) -> None:
    """Up to three calls per example, each with one or two hostile arguments (vocabulary,
    generated values, records with hostile fields, iterables with a hostile record inside)."""
    world = checker.world
    checker.begin()
    names = st.lists(st.sampled_from(target.parameters), min_size=1, max_size=2, unique=True)
    for _ in range(data.draw(st.integers(1, 3), label="calls")):
        chosen = data.draw(names, label="hostile parameters")
        arguments = valid_arguments(world, target)
        for name in chosen:
            arguments[name] = data.draw(
                hostile_strategy(world, target.hints[name], checker.vocabulary), label=name
            )
        checker.attempt(Call(target, arguments, tuple(chosen)))
    checker.verify()
