"""The public API as the hostile-input tests see it: every call found by introspection, the
world of valid arguments they start from, and a valid value for each required parameter.
Used by tests/test_hostile_calls.py."""

from __future__ import annotations

import dataclasses
import inspect
import itertools
import shutil
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any, get_type_hints

import vibecc.state_store as api
from vibecc.state_store import (
    HistoryCursor,
    Pipeline,
    PipelineHistory,
    PipelineState,
    Project,
    StateStore,
    copy_store,
)
from vibecc.state_store.models import metadata

if TYPE_CHECKING:
    from tests import helpers
else:
    import helpers

ROOT = Path(__file__).resolve().parent.parent
TABLES = tuple(metadata.sorted_tables)
T0 = helpers.T0

# -- the public API, enumerated ----------------------------------------------------------------

NOT_CALLED = frozenset({"close"})
"""Public StateStore methods left out: close ends the store (tests/test_close.py)."""
KNOWN_METHODS = frozenset(
    {
        "create_project", "get_project", "get_project_by_repo", "list_projects",
        "list_deleted_projects", "update_project", "delete_project", "create_pipeline",
        "get_pipeline", "get_pipeline_by_ticket", "list_pipelines", "update_pipeline",
        "claim_pipeline", "delete_pipeline", "save_to_history", "archive_pipeline", "get_history",
        "get_history_page", "get_history_record", "get_history_stats", "get_duration_percentiles",
        "count_history", "iter_history", "import_history", "prune_history", "count_pipelines",
        "count_by_state", "get_timeline", "get_stage_stats", "get_timelines", "changes_since",
        "wait_for_changes", "change_cursor", "prune_changes",
    }
)  # fmt: skip
"""Methods the enumeration must find at least: an empty or broken enumeration fails."""
READ_PREFIXES = ("get_", "list_", "count_", "iter_", "changes_", "change_", "wait_")


def store_method_names() -> list[str]:
    """Every public method of StateStore (inherited ones too), but close."""
    return sorted(
        name
        for name, member in inspect.getmembers(StateStore)
        if not name.startswith("_") and name not in NOT_CALLED and inspect.isroutine(member)
    )


def validating_records() -> list[type]:
    """Public record classes whose constructor checks its arguments (a __post_init__)."""
    found = []
    for name in api.__all__:
        obj = getattr(api, name)
        if isinstance(obj, type) and dataclasses.is_dataclass(obj) and "__post_init__" in vars(obj):
            found.append(obj)
    return found


@dataclass(frozen=True)
class Target:
    """One public call: how to reach it from the world, its parameters and their types."""

    name: str
    resolve: Callable[[World], Callable[..., Any]]
    parameters: tuple[str, ...]
    required: frozenset[str]
    hints: dict[str, Any]
    returns: Any
    kind: str
    """One of: read (leaves the database alone), write, copy (reads its source), pure (no database)."""

    @property
    def stores(self) -> bool:
        """Whether its arguments may end up in a database (so text must be storable)."""
        return self.kind != "pure"


def make_target(
    name: str, function: Callable[..., Any], resolve: Callable[[World], Any], kind: str
) -> Target:
    signature = inspect.signature(function)
    hints = get_type_hints(function)
    parameters = [
        p
        for p in signature.parameters.values()
        if p.name not in ("self", "cls") and p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)
    ]
    return Target(
        name=name,
        resolve=resolve,
        parameters=tuple(p.name for p in parameters),
        required=frozenset(p.name for p in parameters if p.default is p.empty),
        hints={p.name: hints.get(p.name, Any) for p in parameters},
        returns=hints.get("return", Any),
        kind=kind,
    )


def _method(name: str) -> Target:
    kind = "read" if name.startswith(READ_PREFIXES) else "write"
    return make_target(
        f"StateStore.{name}", getattr(StateStore, name), lambda w: getattr(w.store, name), kind
    )


def _record(cls: type) -> Target:
    target = make_target(f"{cls.__name__}()", cls, lambda w: cls, "pure")
    return replace(target, hints={**target.hints, **record_hints(cls)}, returns=cls)


def all_targets() -> list[Target]:
    return [
        *(_method(name) for name in store_method_names()),
        make_target("copy_store", copy_store, lambda w: copy_store, "copy"),
        make_target("HistoryCursor.parse", HistoryCursor.parse, lambda w: HistoryCursor.parse, "pure"),
        *(_record(cls) for cls in validating_records()),
    ]


_RECORD_HINTS: dict[type, dict[str, Any]] = {}


def record_hints(cls: type) -> dict[str, Any]:
    if cls not in _RECORD_HINTS:
        _RECORD_HINTS[cls] = get_type_hints(cls)
    return _RECORD_HINTS[cls]


# -- the world the valid arguments come from ---------------------------------------------------


@dataclass
class World:
    """One project with a QUEUED and a MERGED pipeline and three history records; a spare
    project without pipelines (so delete_project can succeed); three history records not
    stored yet (for import_history); an empty store file to copy into."""

    store: StateStore
    url: str
    tmp: Path
    template: Path
    project: Project
    spare: Project
    queued: Pipeline
    merged: Pipeline
    history: tuple[PipelineHistory, ...]
    fresh: tuple[PipelineHistory, ...]
    cursor: HistoryCursor
    _target: str | None = None
    _copies: Iterator[int] = field(default_factory=itertools.count)

    def empty_target(self) -> str:
        """An empty migrated SQLite store to copy into (the same one until a copy used it)."""
        if self._target is None:
            path = self.tmp / "targets" / f"{next(self._copies)}.db"
            path.parent.mkdir(exist_ok=True)
            shutil.copy(self.template, path)
            self._target = str(path)
        return self._target

    def target_used(self) -> None:
        self._target = None


def build_world(store: StateStore, url: str, tmp: Path, template: Path) -> World:
    project = store.create_project("Acme", "acme/widgets", github_project_id=3)
    spare = store.create_project("Spare", "acme/spare")
    queued = store.create_pipeline(project.id, 1, "Queued ticket", "vibecc/1", ticket_body="body")
    merged = store.create_pipeline(project.id, 2, "Merged ticket", "vibecc/2")
    merged = store.update_pipeline(
        merged.id,
        state=PipelineState.MERGED,
        pr_id=12,
        pr_url="https://github.com/acme/widgets/pull/12",
        retry_count_ci=1,
    )
    history = tuple(
        helpers.history_record(
            project_id=project.id,
            completed_at=T0 - timedelta(hours=i),
            final_state=PipelineState.FAILED if i == 1 else PipelineState.MERGED,
            ticket_id=str(10 + i),
            retries_ci=i,
        )
        for i in range(3)
    )
    store.import_history(history)
    fresh = tuple(
        helpers.history_record(
            project_id=project.id, completed_at=T0 + timedelta(hours=1 + i), ticket_id=str(20 + i)
        )
        for i in range(3)
    )
    return World(
        store,
        url,
        tmp,
        template,
        project,
        spare,
        queued,
        merged,
        history,
        fresh,
        HistoryCursor.after(history[0]),
    )


def _progress(*_: object) -> None:
    """A progress callback that ignores what it is told."""


def _history_filters(w: World) -> dict[str, Any]:
    return {
        "project_id": w.project.id,
        "final_state": "merged",
        "since": T0 - timedelta(days=1),
        "until": T0 + timedelta(days=1),
    }


VALID: dict[str, Callable[[World], dict[str, Any]]] = {
    "StateStore.create_project": lambda w: {
        "name": "New",
        "repo": "acme/new",
        "base_branch": "main",
        "github_project_id": 7,
        "max_retries_ci": 2,
        "max_retries_review": 2,
    },
    "StateStore.get_project": lambda w: {"project_id": w.project.id},
    "StateStore.get_project_by_repo": lambda w: {"repo": w.project.repo},
    "StateStore.list_projects": lambda w: {},
    "StateStore.list_deleted_projects": lambda w: {},
    "StateStore.update_project": lambda w: {
        "project_id": w.project.id,
        "name": "Renamed",
        "base_branch": "develop",
        "github_project_id": 9,
        "max_retries_ci": 4,
        "max_retries_review": 5,
    },
    "StateStore.delete_project": lambda w: {"project_id": w.spare.id},
    "StateStore.create_pipeline": lambda w: {
        "project_id": w.project.id,
        "ticket_id": "99",
        "ticket_title": "New ticket",
        "branch_name": "vibecc/99",
        "ticket_body": "body",
    },
    "StateStore.get_pipeline": lambda w: {"pipeline_id": w.queued.id},
    "StateStore.get_pipeline_by_ticket": lambda w: {
        "project_id": w.project.id,
        "ticket_id": w.queued.ticket_id,
    },
    "StateStore.list_pipelines": lambda w: {"project_id": w.project.id, "state": "queued"},
    "StateStore.update_pipeline": lambda w: {
        "pipeline_id": w.queued.id,
        "state": PipelineState.TESTING,
        "pr_id": 5,
        "pr_url": "https://github.com/acme/widgets/pull/5",
        "retry_count_ci": 1,
        "retry_count_review": 2,
        "feedback": "fix the tests",
        "expected_version": w.queued.version,
    },
    "StateStore.claim_pipeline": lambda w: {
        "project_id": w.project.id,
        "state": PipelineState.QUEUED,
        "new_state": "coding",
    },
    "StateStore.delete_pipeline": lambda w: {"pipeline_id": w.queued.id},
    "StateStore.save_to_history": lambda w: {"pipeline": w.merged},
    "StateStore.archive_pipeline": lambda w: {"pipeline_id": w.merged.id},
    "StateStore.get_history": lambda w: {**_history_filters(w), "limit": 10, "offset": 0, "before": w.cursor},
    "StateStore.get_history_page": lambda w: {**_history_filters(w), "limit": 1, "before": w.cursor},
    "StateStore.get_history_record": lambda w: {"history_id": w.history[0].id},
    "StateStore.get_history_stats": lambda w: {"project_id": w.project.id},
    "StateStore.get_duration_percentiles": lambda w: {
        "project_id": w.project.id,
        "since": T0 - timedelta(days=1),
        "until": T0 + timedelta(days=1),
        "exact": False,
    },
    "StateStore.count_history": _history_filters,
    "StateStore.changes_since": lambda w: {
        "cursor": 0,
        "limit": 10,
        "project_id": w.project.id,
        "wait": 0.0,
        "linger": 0.0,
    },
    "StateStore.wait_for_changes": lambda w: {"cursor": 0, "timeout": 0.0, "linger": 0.0},
    "StateStore.prune_changes": lambda w: {"keep": 10_000, "batch_size": 10},
    "StateStore.iter_history": lambda w: {**_history_filters(w), "batch_size": 1},
    "StateStore.get_timelines": lambda w: {"pipeline_ids": [w.queued.id, w.merged.id, w.history[0].id]},
    "StateStore.import_history": lambda w: {
        "records": list(w.fresh),
        "timelines": {w.fresh[0].id: helpers.timeline_of(w.fresh[0])},
        "batch_size": 1000,
        "progress": _progress,
    },
    "StateStore.prune_history": lambda w: {
        "before": T0 - timedelta(minutes=90),
        "project_id": w.project.id,
        "batch_size": 1,
        "dry_run": False,
        "progress": _progress,
    },
    "copy_store": lambda w: {
        "source": w.store,
        "target": w.empty_target(),
        "batch_size": 2,
        "progress": _progress,
    },
    "HistoryCursor.parse": lambda w: {"token": str(w.cursor)},
    "HistoryCursor()": lambda w: {"completed_at": w.cursor.completed_at, "id": w.cursor.id},
}
"""Valid arguments per call; each is expected to return normally."""

BY_NAME: dict[str, Callable[[World], Any]] = {
    "project_id": lambda w: w.project.id,
    "pipeline_id": lambda w: w.queued.id,
    "history_id": lambda w: w.history[0].id,
    "repo": lambda w: w.project.repo,
    "ticket_id": lambda w: w.queued.ticket_id,
    "pipeline": lambda w: w.merged,
    "record": lambda w: w.history[0],
    "records": lambda w: list(w.fresh),
    "before": lambda w: w.cursor,
    "token": lambda w: str(w.cursor),
}
"""Valid values for required parameters of a call VALID does not know yet."""


def valid_arguments(world: World, target: Target) -> dict[str, Any]:
    if target.name in VALID:
        return VALID[target.name](world)
    unknown = sorted(target.required - set(BY_NAME))
    if unknown:
        raise LookupError(
            f"{target.name}: no valid value known for required parameter(s) {unknown}; "
            "add the call to VALID in tests/test_hostile_calls.py"
        )
    return {name: BY_NAME[name](world) for name in target.required}
