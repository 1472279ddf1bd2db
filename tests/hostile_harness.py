"""The harness of the hostile-input tests: runs each call against the world and holds its
outcome to the contract (a StateStoreError or a conforming return; nothing written when it
raised), collecting or raising each violation with the call, its arguments and traceback."""

from __future__ import annotations

import collections.abc as abc
import os
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
from sqlalchemy import create_engine, select

from vibecc.state_store import (
    CLEAR,
    UNSET,
    Pipeline,
    PipelineHistory,
    PipelineState,
    Project,
    StateStoreError,
    StorageError,
)

if TYPE_CHECKING:
    from tests import helpers
    from tests.hostile_api import ROOT, TABLES, Target, World
    from tests.hostile_values import SCALARS, Once, conforms, hint_name, mentions, short, world_values
else:
    import helpers
    from hostile_api import ROOT, TABLES, Target, World
    from hostile_values import SCALARS, Once, conforms, hint_name, mentions, short, world_values

# -- calls and their outcomes -----------------------------------------------------------------------


@dataclass
class Call:
    target: Target
    arguments: dict[str, Any]
    hostile: tuple[str, ...]
    labels: dict[str, str] = field(default_factory=dict)

    def fresh_arguments(self) -> dict[str, Any]:
        return {k: Once(v.items) if isinstance(v, Once) else v for k, v in self.arguments.items()}

    def label(self, name: str) -> str:
        return self.labels.get(name) or short(self.arguments[name], 60)

    def named_labels(self) -> str:
        return ", ".join(f"{n}=<{self.label(n)}>" for n in self.hostile) or "(none)"

    def labels_shown(self) -> str:
        return ", ".join(self.label(n) for n in self.hostile)

    def __str__(self) -> str:
        shown = ", ".join(
            f"{k}=<{self.label(k)}>" if k in self.hostile else f"{k}={short(v, 60)}"
            for k, v in self.arguments.items()
        )
        return f"{self.target.name}({shown})"


@dataclass
class Failure:
    kind: str
    call: Call
    detail: str
    origin: str
    trace: str
    values: list[str] = field(default_factory=list)

    def key(self) -> tuple[str, ...]:
        # The field of a record that was changed tells distinct findings apart, its value not.
        labels = (self.call.label(n) for n in self.call.hostile)
        fields_changed = tuple(label.partition("=")[0] if "=" in label else "" for label in labels)
        return (self.call.target.name, self.kind, self.origin, *self.call.hostile, *fields_changed)

    def render(self, engine: str) -> str:
        lines = [
            f"[{engine}] {self.call.target.name}, hostile {self.call.named_labels()}: {self.kind}",
            f"  call:   {self.call}",
            f"  detail: {self.detail}",
        ]
        if self.origin:
            lines.append(f"  from:   {self.origin}")
        if len(self.values) > 1:
            lines.append(
                f"  also with: {', '.join(self.values[1:8])}{' ...' if len(self.values) > 8 else ''}"
            )
        if self.trace:
            lines.append("  " + self.trace.rstrip().replace("\n", "\n  "))
        return "\n".join(lines)


def origin_of(exc: BaseException) -> str:
    """file:line of the innermost library frame the exception passed through."""
    frames = traceback.extract_tb(exc.__traceback__)
    inside = [f for f in frames if "/vibecc/state_store/" in f.filename.replace(os.sep, "/")]
    if not (inside or frames):
        return ""
    frame = (inside or frames)[-1]
    path = Path(frame.filename)
    shown = path.relative_to(ROOT) if path.is_relative_to(ROOT) else path
    return f"{shown}:{frame.lineno} in {frame.name}"


Outcome = tuple[str, Any]
"""("returned", result), ("raised", StateStoreError) or ("raw", any other exception)."""


class Harness:
    """Runs calls against the world and holds each outcome to the contract.

    Calls that raised (and reads) are checked against the baseline snapshot together, at the
    end of a group; a call that wrote is checked by reading the store back, after which the
    database is put back to the world's rows and the calls still unchecked are run again, so
    the next snapshot checks them. A snapshot that differs is traced to its call by replaying
    the suspects one by one.
    """

    def __init__(self, world: World, engine: str, *, collect: bool) -> None:
        self.world = world
        self.engine = engine
        self.collect = collect
        self.failures: dict[tuple[str, ...], Failure] = {}
        self.pending: list[tuple[Call, type[BaseException] | None]] = []
        self.dirty = False
        self._db = create_engine(helpers.database_url(world.url), pool_size=1)
        with self._db.connect() as conn:
            self._rows = {t.name: [dict(r._mapping) for r in conn.execute(select(t))] for t in TABLES}
        self.baseline = helpers.snapshot(world.url)
        self.empty = helpers.snapshot(world.template)
        self.vocabulary = [*SCALARS, *world_values(world)]
        self.view = self._view()

    def close(self) -> None:
        self._db.dispose()

    def _view(self) -> tuple[object, ...]:
        store = self.world.store
        return (store.list_projects(), store.list_pipelines(), store.list_deleted_projects())

    # -- the database ----------------------------------------------------------------------

    def reset(self) -> None:
        """Put back exactly the world's rows."""
        with self._db.begin() as conn:
            for t in reversed(TABLES):
                conn.execute(t.delete())
            for t in TABLES:
                if self._rows[t.name]:
                    conn.execute(t.insert(), self._rows[t.name])
        self.dirty = False

    def unchanged(self) -> bool:
        return helpers.snapshot(self.world.url) == self.baseline

    def begin(self) -> None:
        """Start from the world, with nothing left to check (a hypothesis example)."""
        self.pending.clear()
        self.reset()

    def _restart(self) -> None:
        """Back to the world's rows, then the unchecked calls again so a snapshot still sees them."""
        self.reset()
        for call, expected in self.pending:
            kind, value = self._run(call)
            got = None if kind == "returned" else type(value)
            if got is not expected:
                self.dirty = True
                shown = got.__name__ if got else "a normal return"
                self._fail(call, f"gave {shown} when run again", value if got else None)

    def verify(self) -> None:
        """Check every call not yet checked against the baseline snapshot."""
        if self.dirty:
            self._restart()
        if not self.pending or self.unchanged():
            self.pending.clear()
            return
        suspects, self.pending = self.pending, []
        for call, _ in suspects:
            self.reset()
            kind, value = self._run(call)
            if not self.unchanged():
                what = "returned normally" if kind == "returned" else f"raised {type(value).__name__}"
                self._fail(call, f"{what} and changed the database", value if kind != "returned" else None)
        self.reset()

    # -- one call -----------------------------------------------------------------------------

    def _run(self, call: Call) -> Outcome:
        arguments = call.fresh_arguments()
        copying = call.target.kind == "copy" and "target" not in call.hostile
        if copying:
            # Each run copies into an empty store (one that a refused copy left empty is reused).
            arguments["target"] = call.arguments["target"] = self.world.empty_target()
        if call.target.name in ("StateStore.wait_for_changes", "StateStore.changes_since"):
            # A timeout the call accepts is not hostile, and waiting it out (up to a day, when
            # a generated cursor is the log's last change) would test nothing: cut it short.
            for name in ("timeout", "wait"):
                timeout = arguments.get(name)
                if conforms(timeout, float, argument=True) and 0.05 < timeout <= 86_400:  # type: ignore[operator]
                    arguments[name] = 0.05
            linger = arguments.get("linger")  # the same for a linger the call accepts
            if conforms(linger, float, argument=True) and 0.05 < linger <= 60:  # type: ignore[operator]
                arguments["linger"] = 0.05
        outcome: Outcome
        try:
            result = call.target.resolve(self.world)(**arguments)
            if isinstance(result, abc.Iterator):
                result = list(result)
            outcome = ("returned", result)
        except StateStoreError as exc:
            outcome = ("raised", exc)
        except Exception as exc:
            outcome = ("raw", exc)
        if copying and outcome[0] != "raised":
            self.world.target_used()
        return outcome

    def attempt(self, call: Call) -> None:
        if self.dirty:
            self._restart()
        kind, value = self._run(call)
        if kind == "raw":
            self._raw(call, value)
        elif kind == "raised":
            self._raised(call, value)
        else:
            self._returned(call, value)

    def _raw(self, call: Call, exc: Exception) -> None:
        self.dirty = True
        kind = f"raw {type(exc).__name__}"
        known = self.failures.get(Failure(kind, call, "", origin_of(exc), "").key())
        if self.collect and known is not None:
            known.values.append(call.labels_shown())
            return
        # Whether it wrote: check the earlier calls first, then run it again on the world.
        self.verify()
        self._run(call)
        changed = not self.unchanged()
        self.dirty = True
        self._fail(call, kind, exc, note="and the database changed" if changed else "database unchanged")

    def _raised(self, call: Call, exc: StateStoreError) -> None:
        locations = any(mentions(call.target.hints[n], os.PathLike) for n in call.hostile)
        if isinstance(exc, StorageError) and not locations:
            self._fail(call, "StorageError: the hostile value reached the database, was not refused", exc)
        copying = call.target.kind == "copy" and "target" not in call.hostile
        if copying and helpers.snapshot(call.arguments["target"]) != self.empty:
            self._fail(call, f"raised {type(exc).__name__} and wrote into the copy's target", exc)
        partial = call.target.name == "StateStore.import_history" and partial_import_possible(call)
        if partial and not self.unchanged():
            # Whole batches committed before the refused record stay, as documented.
            problem = self._partial_import_problem(call)
            if problem:
                self._fail(call, f"raised {type(exc).__name__} and changed the database", exc, note=problem)
            self.dirty = True
            return
        self.pending.append((call, type(exc)))

    def _partial_import_problem(self, call: Call) -> str:
        """import_history keeps the whole batches it committed before the record it refused,
        and nothing else: anything more is a problem (returned as text)."""
        items, batch, bad = import_batches(call)
        before = {r.id for r in self.world.history}
        added = {r.id for r in self.world.store.iter_history()} - before
        if self._view() != self.view:
            return "projects, pipelines or deleted projects changed too"
        for done in range(0, bad + 1, batch):
            if added == {r.id for r in items[:done]} - before:
                return ""
        return f"rows {sorted(added)} added, not whole batches of {batch} before the refused record #{bad}"

    def _returned(self, call: Call, result: Any) -> None:
        target = call.target
        problems = [
            f"accepted {name}=<{call.label(name)}>, which is not a {hint_name(target.hints[name])}"
            for name in call.hostile
            if not conforms(
                call.arguments[name], target.hints[name], argument=True, strict_text=target.stores
            )
        ]
        if not conforms(result, target.returns, argument=False):
            problems.append(f"returned {short(result)}, which is not a {hint_name(target.returns)}")
        if target.kind == "write":
            problems += self._written_problems(call, result)
            self.dirty = True
        else:
            self.pending.append((call, None))
        if problems:
            kind = "returned normally after a hostile argument" if call.hostile else "returned wrong"
            self._fail(call, kind, None, note="; ".join(problems))
        if target.kind == "copy" and "target" in call.hostile:
            self.verify()  # a copy into a location it was given cannot be run again

    def _written_problems(self, call: Call, result: Any) -> list[str]:
        """After a write: it reads back as returned, echoes its arguments, and the whole store
        is well formed with stats equal to a recount."""
        store = self.world.store
        problems: list[str] = []
        try:
            reader = {
                Project: store.get_project,
                Pipeline: store.get_pipeline,
                PipelineHistory: store.get_history_record,
            }
            if type(result) in reader and (back := reader[type(result)](result.id)) != result:
                problems.append(f"reads back as {short(back)}, not as returned")
            if call.target.name in ECHOED:
                problems += echo_problems(call, result)
            history = list(store.iter_history())
            stored = [
                *store.list_projects(),
                *store.list_pipelines(),
                *store.list_deleted_projects(),
                *history,
            ]
            problems += [
                f"a stored record is malformed: {short(r, 200)}"
                for r in stored
                if not conforms(r, type(r), argument=False)
            ]
            problems += [
                f"history holds a record in state {r.final_state.value!r}: {short(r, 200)}"
                for r in history
                if not PipelineState(r.final_state).is_terminal
            ]
            stats, recount = store.get_history_stats(), helpers.stats_of(history)
            if stats != recount:
                problems.append(f"kept stats {stats} differ from a recount {recount}")
            if store.count_history() != len(history):
                problems.append("count_history() differs from iter_history()")
            if call.target.name == "StateStore.import_history":
                old = {r.id for r in self.world.history}
                for record in import_batches(call)[0]:
                    if isinstance(record, PipelineHistory) and record.id not in old:
                        back = store.get_history_record(record.id)
                        if back != record:
                            problems.append(f"imported {short(record)} reads back as {short(back)}")
        except Exception as exc:
            problems.append(
                f"reading the store back raised {type(exc).__name__}: {exc} (at {origin_of(exc)})"
            )
        return problems

    def _fail(self, call: Call, kind: str, exc: BaseException | None, *, note: str = "") -> None:
        detail = short(f"{type(exc).__name__}: {exc}", 300) if exc is not None else ""
        detail = "; ".join(part for part in (detail, note) if part)
        trace = "".join(traceback.format_exception(exc)) if exc is not None else ""
        failure = Failure(kind, call, detail, origin_of(exc) if exc is not None else "", trace)
        if not self.collect:
            self.dirty = True
            self.pending.clear()
            raise AssertionError(failure.render(self.engine))
        known = self.failures.setdefault(failure.key(), failure)
        known.values.append(call.labels_shown())

    def report(self) -> None:
        if self.failures:
            text = "\n\n".join(f.render(self.engine) for f in self.failures.values())
            pytest.fail(f"{len(self.failures)} distinct contract violation(s):\n\n{text}", pytrace=False)


def import_batches(call: Call) -> tuple[list[Any], int, int]:
    """The records of an import_history call, its batch size and the index of the first
    record that is not acceptable (no records when they or the batch size are not valid)."""
    records, batch = call.arguments.get("records"), call.arguments.get("batch_size", 1000)
    items = records.items if isinstance(records, Once) else records
    if not isinstance(items, list | tuple) or not conforms(batch, int, argument=True) or batch < 1:
        return [], 1, 0
    bad = next(
        (i for i, r in enumerate(items) if not conforms(r, PipelineHistory, argument=True, strict_text=True)),
        len(items),
    )
    return list(items), batch, bad


def partial_import_possible(call: Call) -> bool:
    """Whether an import_history call that raised may have committed a batch first."""
    items, batch, bad = import_batches(call)
    return bool(items) and bad >= batch


ECHOED = frozenset(
    {
        "StateStore.create_project",
        "StateStore.update_project",
        "StateStore.create_pipeline",
        "StateStore.update_pipeline",
    }
)
"""Writes whose result holds each argument given (as the field of the same name)."""


def echo_problems(call: Call, result: Any) -> list[str]:
    problems = []
    for name in call.hostile:
        value = call.arguments[name]
        if (
            not hasattr(result, name)
            or value is UNSET
            or (value is None and call.target.name == "StateStore.update_project")
        ):
            continue
        expected: object = None if value is CLEAR else value
        if name == "ticket_id" and isinstance(value, int) and not isinstance(value, bool):
            expected = str(value)
        if getattr(result, name) != expected:
            problems.append(f"{name} is {short(getattr(result, name))}, not the {short(expected)} given")
    return problems
