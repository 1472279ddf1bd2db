"""The rules of the state machine of tests/test_model.py for timelines and stage statistics,
held to the model (tests/store_model.py): the transitions of every pipeline, and the time each
archived run spent in each state."""

from __future__ import annotations

import math
from collections import defaultdict
from datetime import datetime
from typing import TYPE_CHECKING

from hypothesis import strategies as st
from hypothesis.stateful import rule

from vibecc.state_store import PipelineNotFoundError, PipelineState

if TYPE_CHECKING:
    from tests.store_model import PICK, MachineBase, expect_error, ok, outcome, pick
else:
    from store_model import PICK, MachineBase, expect_error, ok, outcome, pick

EVER = datetime.fromisoformat("0001-01-02T00:00:00+00:00")


class TimelineRules(MachineBase):
    """get_timeline, get_stage_stats, count_by_state."""

    @rule(index=PICK)
    def get_timeline(self, index: int) -> None:
        pipeline_id = pick(self.model.pipeline_ids, index)
        result = outcome(lambda: self.store.get_timeline(pipeline_id))
        if pipeline_id not in self.model.pipelines and pipeline_id not in self.model.history:
            expect_error(result, PipelineNotFoundError)
            return
        timeline = ok(result)
        assert [(t.from_state, t.to_state, t.at) for t in timeline] == self.model.timelines.get(
            pipeline_id, []
        )
        assert [t.seq for t in timeline] == list(range(1, len(timeline) + 1))
        assert not any(t.reconstructed for t in timeline)

    @rule(windowed=st.booleans())
    def get_stage_stats(self, windowed: bool) -> None:
        visits: dict[PipelineState, list[int]] = defaultdict(list)
        for pipeline_id, counted in self.model.stage_visits.items():
            if pipeline_id in self.model.history:
                for state, ms in counted:
                    visits[state].append(ms)
        stages = self.store.get_stage_stats(since=EVER) if windowed else self.store.get_stage_stats()
        for state in PipelineState:
            found, expected = stages[state], sorted(visits[state])
            assert found.visits == len(expected), state
            assert math.isclose(found.total_seconds, sum(expected) / 1000, abs_tol=1e-9), state
            if expected and windowed:  # exact: nearest rank
                assert found.p50_seconds == expected[max(1, math.ceil(len(expected) / 2)) - 1] / 1000

    @rule(index=st.none() | PICK)
    def count_by_state(self, index: int | None) -> None:
        project_id = self._project_filter(index)
        expected = dict.fromkeys(PipelineState, 0)
        for pipeline in self.model.pipelines.values():
            if project_id is None or pipeline.project_id == project_id:
                expected[pipeline.state] += 1
        assert self.store.count_by_state(project_id) == expected
