"""Model-based tests: random sequences of every public call, run against the store and against a
plain in-memory model of it (tests/store_model.py), must agree after every step on records, order
and error classes.

Each example starts from an empty database: SQLite gets a fresh copy of a migrated file,
PostgreSQL has its tables emptied.

With VIBECC_RELIABILITY_FIGURES set, the examples run are appended to that file (see
bench/reliability_figures.py).
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING

from hypothesis import settings
from hypothesis.stateful import invariant, run_state_machine_as_test

from vibecc.state_store import UNSET, PipelineState, StateStore

if TYPE_CHECKING:
    from tests import helpers
    from tests.model_history_rules import HistoryRules
    from tests.model_rules import PipelineRules, ProjectRules
    from tests.model_timeline_rules import TimelineRules
    from tests.store_model import STEPS, Fresh, examples
else:
    import helpers
    from model_history_rules import HistoryRules
    from model_rules import PipelineRules, ProjectRules
    from model_timeline_rules import TimelineRules
    from store_model import STEPS, Fresh, examples


class StoreMachine(ProjectRules, PipelineRules, HistoryRules, TimelineRules):
    """Every public call of StateStore against the model; a subclass sets `fresh`."""

    # -- after every step -------------------------------------------------------------------------

    @invariant()
    def agrees_with_model(self) -> None:
        self.fresh.steps += 1
        assert self.store.list_projects() == sorted(
            self.model.projects.values(), key=lambda p: (p.name, p.id)
        )
        assert self.store.list_pipelines() == sorted(
            self.model.pipelines.values(), key=lambda p: (p.created_at, p.id), reverse=True
        )
        assert self.store.get_history(limit=10_000) == helpers.newest_first(self.model.history.values())
        assert self.store.get_history_stats() == helpers.stats_of(self.model.history.values())
        assert self.store.get_duration_percentiles() == helpers.kept_percentiles_of(
            self.model.history.values()
        )
        deleted = {p.id: (p.name, p.repo) for p in self.store.list_deleted_projects()}
        assert deleted == self.model.deleted
        # Replaying the change log from 0 gives the live ids and versions.
        live = helpers.replay(helpers.every_change(self.store))
        assert live.pipelines == {p.id: p.version for p in self.model.pipelines.values()}
        assert live.history == set(self.model.history)
        assert live.projects == set(self.model.projects)
        for project_id in {r.project_id for r in self.model.history.values()}:
            assert self.store.get_history_stats(project_id) == helpers.stats_of(
                self.model.history_rows(project_id)
            )


def test_store_agrees_with_model(store_url: str, engine_name: str, tmp_path: Path) -> None:
    """At least 200 random call sequences per engine; more under --hypothesis-profile=long."""
    fresh = Fresh(store_url, engine_name, tmp_path)

    class Machine(StoreMachine):
        pass

    Machine.fresh = fresh
    try:
        run_state_machine_as_test(
            Machine, settings=settings(max_examples=examples(200), stateful_step_count=STEPS, deadline=None)
        )
    finally:
        fresh.close()
    assert fresh.examples >= examples(200)
    helpers.record_figure("model_examples", fresh.examples, engine_name)
    helpers.record_figure("model_steps", fresh.steps, engine_name)


def test_unset_is_the_default_of_every_update_argument(store: StateStore) -> None:
    """The model passes only the fields it changes; UNSET must leave the others alone."""
    project = store.create_project("alpha", "acme/api", github_project_id=5)
    same = store.update_project(project.id, github_project_id=UNSET, name=UNSET)
    assert same == project, "nothing to change: nothing written, updated_at stays"
    renamed = store.update_project(project.id, github_project_id=UNSET, name="beta")
    assert renamed == replace(project, name="beta", updated_at=renamed.updated_at)
    pipeline = store.create_pipeline(project.id, 1, "title", "main")
    store.update_pipeline(pipeline.id, pr_id=3, feedback="f")
    kept = store.update_pipeline(pipeline.id, pr_id=UNSET, feedback=UNSET, state=UNSET, retry_count_ci=1)
    assert (kept.pr_id, kept.feedback, kept.state, kept.retry_count_ci, kept.version) == (
        3,
        "f",
        PipelineState.QUEUED,
        1,
        3,
    )
