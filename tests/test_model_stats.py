"""Kept history stats against a recomputation: after random sequences of start, archive, save,
finish, delete_project, import and prune, the per-project totals the store keeps with every
history write equal the stats recomputed from the rows, overall and per project.

With VIBECC_RELIABILITY_FIGURES set, the examples run are appended to that file (see
bench/reliability_figures.py).
"""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import TYPE_CHECKING, Any

from hypothesis import given, settings
from hypothesis import strategies as st

from vibecc.state_store import PipelineState, ProjectHasActivePipelinesError, StateStore

if TYPE_CHECKING:
    from tests import helpers
    from tests.store_model import (
        FAR_FUTURE,
        FAR_PAST,
        GHOST_PROJECT,
        RETRIES,
        STATES,
        Fresh,
        examples,
        imported,
    )
else:
    import helpers
    from store_model import FAR_FUTURE, FAR_PAST, GHOST_PROJECT, RETRIES, STATES, Fresh, examples, imported

HISTORY_OPS = st.lists(
    st.one_of(
        st.tuples(st.just("start"), st.integers(0, 2), st.sampled_from(STATES), RETRIES, RETRIES),
        st.tuples(st.just("archive"), st.integers(0, 20)),
        st.tuples(st.just("save"), st.integers(0, 20)),
        st.tuples(
            st.just("finish"),
            st.integers(0, 2),
            st.sampled_from((PipelineState.MERGED, PipelineState.FAILED)),
        ),
        st.tuples(st.just("delete_project"), st.integers(0, 2)),
        st.tuples(st.just("import"), st.lists(imported([]), max_size=5), st.integers(1, 3)),
        st.tuples(st.just("prune"), st.integers(-1, 30), st.none() | st.integers(0, 2), st.integers(1, 3)),
    ),
    max_size=25,
)


def _run_history_op(store: StateStore, projects: list[str], serial: int, op: tuple[Any, ...]) -> None:
    kind = op[0]
    active = store.list_pipelines()
    # Deleted projects stay in `projects` (their history and stats stay too); writes go to live ones.
    live = [p.id for p in store.list_projects()]
    if kind == "start" and live:
        _, index, state, ci, review = op
        project_id = live[index % len(live)]
        pipeline = store.create_pipeline(project_id, f"t{serial}", "title", "main")
        store.update_pipeline(pipeline.id, state=state, retry_count_ci=ci, retry_count_review=review)
    elif kind in ("archive", "save") and (finished := [p for p in active if p.state.is_terminal]):
        pipeline = finished[op[1] % len(finished)]
        if kind == "archive":
            store.archive_pipeline(pipeline.id)
        else:
            store.save_to_history(pipeline)
    elif kind == "finish" and live:
        for pipeline in store.list_pipelines(live[op[1] % len(live)]):
            store.update_pipeline(pipeline.id, state=op[2])
    elif kind == "delete_project" and live:
        with contextlib.suppress(ProjectHasActivePipelinesError):
            store.delete_project(live[op[1] % len(live)])
    elif kind == "import":
        store.import_history(op[1], batch_size=op[2])
    elif kind == "prune":
        stamps = sorted(r.completed_at for r in store.iter_history())
        before = FAR_FUTURE if op[1] < 0 or not stamps else stamps[op[1] % len(stamps)]
        project_id = None if op[2] is None else projects[op[2] % len(projects)]
        store.prune_history(before=before, project_id=project_id, batch_size=op[3])


def test_kept_stats_equal_recomputation(store_url: str, engine_name: str, tmp_path: Path) -> None:
    """After random archive / save / import / prune / delete_project sequences, the per-project
    totals kept with every history write equal the stats recomputed from the rows."""
    fresh = Fresh(store_url, engine_name, tmp_path)

    @settings(max_examples=examples(100), deadline=None)
    @given(ops=HISTORY_OPS)
    def check(ops: list[tuple[Any, ...]]) -> None:
        with fresh.open() as store:
            projects = [store.create_project(f"p{n}", f"acme/p{n}").id for n in range(3)]
            for serial, op in enumerate(ops):
                _run_history_op(store, projects, serial, op)
            rows = list(store.iter_history(batch_size=7))
            assert rows == helpers.newest_first(store.get_history(limit=10_000))[::-1]
            assert store.get_history_stats() == helpers.stats_of(rows)
            assert store.get_duration_percentiles() == helpers.kept_percentiles_of(rows)
            assert store.get_history_stats(since=FAR_PAST) == helpers.stats_of(rows)
            for project_id in {r.project_id for r in rows} | set(projects) | {GHOST_PROJECT}:
                own = [r for r in rows if r.project_id == project_id]
                assert store.get_history_stats(project_id) == helpers.stats_of(own)
                assert store.get_duration_percentiles(project_id) == helpers.kept_percentiles_of(own)
                assert store.get_history_stats(project_id) == helpers.stats_of(store.iter_history(project_id))

    try:
        check()
    finally:
        fresh.close()
    helpers.record_figure("stats_examples", fresh.examples, engine_name)
