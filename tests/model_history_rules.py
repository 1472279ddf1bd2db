"""The rules of the state machine of tests/test_model.py for history: save, archive, import,
prune, and every history read, each held to the model (tests/store_model.py)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from hypothesis import strategies as st
from hypothesis.stateful import precondition, rule

from vibecc.state_store import (
    HistoryCursor,
    HistoryNotFoundError,
    ImportResult,
    PipelineNotFoundError,
    PipelineState,
    StaleVersionError,
    ValidationError,
)

if TYPE_CHECKING:
    from tests import helpers
    from tests.store_model import (
        MOMENT,
        PICK,
        STATES,
        MachineBase,
        archived,
        assert_utc,
        expect_error,
        imported,
        ok,
        outcome,
        pick,
    )
else:
    import helpers
    from store_model import (
        MOMENT,
        PICK,
        STATES,
        MachineBase,
        archived,
        assert_utc,
        expect_error,
        imported,
        ok,
        outcome,
        pick,
    )


class HistoryRules(MachineBase):
    """save_to_history, archive_pipeline, import_history, prune_history, get_history(_page),
    count_history, iter_history, get_history_record, get_history_stats."""

    @precondition(lambda self: bool(self.model.snapshots))
    @rule(index=st.integers(min_value=0, max_value=40))
    def save_to_history(self, index: int) -> None:
        snapshot = self.model.snapshots[index % len(self.model.snapshots)]
        result = outcome(lambda: self.store.save_to_history(snapshot))
        if not snapshot.state.is_terminal:
            expect_error(result, ValidationError)  # only finished pipelines go to history
            return
        if snapshot.id in self.model.history:
            assert ok(result) == self.model.history[snapshot.id], "saving again returns the kept record"
            return
        if snapshot.id not in self.model.pipelines:
            expect_error(result, PipelineNotFoundError)
            return
        if snapshot != self.model.pipelines[snapshot.id]:
            expect_error(result, StaleVersionError)  # what is saved is the stored pipeline
            return
        saved = ok(result)
        assert saved == archived(snapshot, saved.completed_at)
        assert_utc(saved.completed_at)
        self.model.history[snapshot.id] = saved
        self.model.count_stages(snapshot.id, saved.completed_at)

    @rule(index=PICK)
    def archive_pipeline(self, index: int) -> None:
        pipeline_id = pick(self.model.pipeline_ids, index)
        result = outcome(lambda: self.store.archive_pipeline(pipeline_id))
        pipeline = self.model.pipelines.get(pipeline_id)
        if pipeline is None:
            expect_error(result, PipelineNotFoundError)
            return
        if not pipeline.state.is_terminal:
            expect_error(result, ValidationError)  # it stays active
            return
        del self.model.pipelines[pipeline_id]
        record = ok(result)
        if pipeline_id in self.model.history:
            assert record == self.model.history[pipeline_id], "an earlier save_to_history record is kept"
            return
        assert record == archived(pipeline, record.completed_at)
        assert_utc(record.completed_at)
        self.model.history[pipeline_id] = record
        self.model.count_stages(pipeline_id, record.completed_at)

    @rule(data=st.data(), batch_size=st.integers(min_value=1, max_value=4))
    def import_history(self, data: st.DataObject, batch_size: int) -> None:
        records = data.draw(st.lists(imported(list(self.model.history)), max_size=6), label="records")
        result = ok(outcome(lambda: self.store.import_history(records, batch_size=batch_size)))
        inserted = 0
        for record in records:
            if record.id not in self.model.history:
                self.model.history[record.id] = record
                inserted += 1
        assert result == ImportResult(inserted, len(records) - inserted)

    @rule(
        moment=MOMENT,
        index=st.none() | PICK,
        batch_size=st.integers(min_value=1, max_value=3),
        dry_run=st.booleans(),
    )
    def prune_history(
        self, moment: tuple[int, int], index: int | None, batch_size: int, dry_run: bool
    ) -> None:
        before = self._moment(moment)
        project_id = self._project_filter(index)
        doomed = self.model.history_rows(project_id, until=before)
        result = ok(
            outcome(
                lambda: self.store.prune_history(
                    before=before, project_id=project_id, batch_size=batch_size, dry_run=dry_run
                )
            )
        )
        assert result == len(doomed)
        if not dry_run:
            for record in doomed:
                del self.model.history[record.id]
                self.model.forget(record.id)

    @rule(
        index=st.none() | PICK,
        final_state=st.none() | st.sampled_from(STATES),
        limit=st.integers(min_value=1, max_value=5),
        offset=st.integers(min_value=0, max_value=3),
        cursor=st.none()
        | st.tuples(st.integers(min_value=0, max_value=20), st.sampled_from(("same", "-", "~"))),
        window=st.none() | st.tuples(MOMENT, MOMENT),
    )
    def get_history(
        self,
        index: int | None,
        final_state: PipelineState | None,
        limit: int,
        offset: int,
        cursor: tuple[int, str] | None,
        window: tuple[tuple[int, int], tuple[int, int]] | None,
    ) -> None:
        project_id = self._project_filter(index)
        since, until = (None, None) if window is None else (self._moment(window[0]), self._moment(window[1]))
        expected = helpers.newest_first(self.model.history_rows(project_id, final_state, since, until))
        before = None
        if cursor is not None and self.model.history:
            known = list(self.model.history.values())
            anchor = known[cursor[0] % len(known)]
            before = HistoryCursor(anchor.completed_at, anchor.id if cursor[1] == "same" else cursor[1])
            assert HistoryCursor.parse(str(before)) == before
            expected = [r for r in expected if (r.completed_at, r.id) < (before.completed_at, before.id)]
        got = self.store.get_history(
            project_id, final_state, limit, offset, before=before, since=since, until=until
        )
        assert got == expected[offset : offset + limit]
        page = self.store.get_history_page(
            project_id, final_state, limit, before=before, since=since, until=until
        )
        assert list(page.items) == expected[:limit]
        more = len(expected) > limit
        assert page.next_cursor == (HistoryCursor.after(expected[limit - 1]) if more else None)
        assert self.store.count_history(project_id, final_state, since=since, until=until) == len(
            self.model.history_rows(project_id, final_state, since, until)
        )

    @rule(
        index=st.none() | PICK,
        final_state=st.none() | st.sampled_from(STATES),
        batch_size=st.integers(min_value=1, max_value=3),
    )
    def iter_history(self, index: int | None, final_state: PipelineState | None, batch_size: int) -> None:
        project_id = self._project_filter(index)
        expected = helpers.newest_first(self.model.history_rows(project_id, final_state))[::-1]
        assert list(self.store.iter_history(project_id, final_state, batch_size=batch_size)) == expected

    @rule(index=st.integers(min_value=-1, max_value=40))
    def get_history_record(self, index: int) -> None:
        history_id = pick(self.model.pipeline_ids + [f"imp-{n}" for n in range(6)], index)
        result = outcome(lambda: self.store.get_history_record(history_id))
        if history_id in self.model.history:
            assert result == self.model.history[history_id]
        else:
            expect_error(result, HistoryNotFoundError)

    @rule(index=st.none() | PICK, window=st.none() | st.tuples(MOMENT, MOMENT))
    def get_history_stats(
        self, index: int | None, window: tuple[tuple[int, int], tuple[int, int]] | None
    ) -> None:
        project_id = self._project_filter(index)
        if window is None:
            got = self.store.get_history_stats(project_id)
            assert got == helpers.stats_of(self.model.history_rows(project_id))
            kept = self.store.get_duration_percentiles(project_id)
            assert kept == helpers.kept_percentiles_of(self.model.history_rows(project_id))
            return
        since, until = self._moment(window[0]), self._moment(window[1])
        got = self.store.get_history_stats(project_id, since=since, until=until)
        assert got == helpers.stats_of(self.model.history_rows(project_id, since=since, until=until))
