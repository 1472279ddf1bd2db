"""The rules of the state machine of tests/test_model.py for projects and pipelines: each makes
one public call with drawn arguments and holds the outcome to the model (tests/store_model.py)."""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime
from typing import TYPE_CHECKING, Any

from hypothesis import strategies as st
from hypothesis.stateful import rule

from vibecc.state_store import (
    CLEAR,
    Pipeline,
    PipelineExistsError,
    PipelineNotFoundError,
    PipelineState,
    Project,
    ProjectExistsError,
    ProjectHasActivePipelinesError,
    ProjectNotFoundError,
    StaleVersionError,
    ValidationError,
)

if TYPE_CHECKING:
    from tests.store_model import (
        BODY,
        BRANCHES,
        LINE,
        NAMES,
        PICK,
        PIPELINE_CHANGES,
        PROJECT_CHANGES,
        REPOS,
        STATES,
        TICKETS,
        MachineBase,
        archived,
        assert_utc,
        expect_error,
        ok,
        outcome,
        pick,
    )
else:
    from store_model import (
        BODY,
        BRANCHES,
        LINE,
        NAMES,
        PICK,
        PIPELINE_CHANGES,
        PROJECT_CHANGES,
        REPOS,
        STATES,
        TICKETS,
        MachineBase,
        archived,
        assert_utc,
        expect_error,
        ok,
        outcome,
        pick,
    )


class ProjectRules(MachineBase):
    """create / update / delete / get project, get project by repo."""

    @rule(
        name=st.sampled_from(NAMES),
        repo=st.sampled_from(REPOS),
        base_branch=st.sampled_from(BRANCHES),
        github_project_id=st.none() | st.integers(min_value=1, max_value=2**63 - 1),
        retries=st.tuples(st.integers(0, 1000), st.integers(0, 1000)),
    )
    def create_project(
        self,
        name: str,
        repo: str,
        base_branch: str,
        github_project_id: int | None,
        retries: tuple[int, int],
    ) -> None:
        result = outcome(
            lambda: self.store.create_project(name, repo, base_branch, github_project_id, *retries)
        )
        if any(p.repo.lower() == repo.lower() for p in self.model.projects.values()):
            expect_error(result, ProjectExistsError)
            return
        created = ok(result)
        assert created == Project(
            created.id,
            name,
            repo,
            base_branch,
            github_project_id,
            *retries,
            created.created_at,
            created.created_at,
        )
        assert_utc(created.created_at)
        assert created.id not in self.model.project_ids
        self.model.projects[created.id] = created
        self.model.project_ids.append(created.id)

    @rule(index=PICK, changes=PROJECT_CHANGES)
    def update_project(self, index: int, changes: dict[str, Any]) -> None:
        project_id = pick(self.model.project_ids, index)
        result = outcome(lambda: self.store.update_project(project_id, **changes))
        if project_id not in self.model.projects:
            expect_error(result, ProjectNotFoundError)
            return
        updated = ok(result)
        current = self.model.projects[project_id]
        effective: dict[str, Any] = {
            field: None if value is CLEAR else value for field, value in changes.items() if value is not None
        }
        if not effective:
            assert updated == current, "nothing to change: nothing written"
            return
        assert updated == replace(current, **effective, updated_at=updated.updated_at)
        assert updated.updated_at > current.updated_at
        assert_utc(updated.updated_at)
        self.model.projects[project_id] = updated

    @rule(index=PICK)
    def delete_project(self, index: int) -> None:
        project_id = pick(self.model.project_ids, index)
        result = outcome(lambda: self.store.delete_project(project_id))
        if project_id not in self.model.projects:
            expect_error(result, ProjectNotFoundError)
            return
        own = [p for p in self.model.pipelines.values() if p.project_id == project_id]
        if any(not p.state.is_terminal for p in own):
            expect_error(result, ProjectHasActivePipelinesError)
            return
        assert ok(result) is None
        gone = self.model.projects.pop(project_id)
        self.model.deleted[project_id] = (gone.name, gone.repo)
        finished_at: set[datetime] = set()
        for pipeline in own:
            del self.model.pipelines[pipeline.id]
            if pipeline.id in self.model.history:
                continue  # saved before: that record is kept as it was
            stored = self.store.get_history_record(pipeline.id)
            assert stored == archived(pipeline, stored.completed_at)
            assert_utc(stored.completed_at)
            finished_at.add(stored.completed_at)
            self.model.history[pipeline.id] = stored
            self.model.count_stages(pipeline.id, stored.completed_at)
        assert len(finished_at) <= 1, "one delete_project archives everything at one moment"

    @rule(index=PICK)
    def get_project(self, index: int) -> None:
        project_id = pick(self.model.project_ids, index)
        result = outcome(lambda: self.store.get_project(project_id))
        if project_id in self.model.projects:
            assert result == self.model.projects[project_id]
        else:
            expect_error(result, ProjectNotFoundError)

    @rule(repo=st.sampled_from(REPOS))
    def get_project_by_repo(self, repo: str) -> None:
        result = outcome(lambda: self.store.get_project_by_repo(repo))
        matching = [p for p in self.model.projects.values() if p.repo.lower() == repo.lower()]
        if matching:
            assert result == matching[0]
        else:
            expect_error(result, ProjectNotFoundError)


class PipelineRules(MachineBase):
    """create / update / claim / delete / get pipeline, get by ticket, list."""

    @rule(
        index=PICK, ticket=st.sampled_from(TICKETS), title=LINE, branch=st.sampled_from(BRANCHES), body=BODY
    )
    def create_pipeline(self, index: int, ticket: str | int, title: str, branch: str, body: str) -> None:
        project_id = pick(self.model.project_ids, index)
        result = outcome(lambda: self.store.create_pipeline(project_id, ticket, title, branch, body))
        if project_id not in self.model.projects:
            expect_error(result, ProjectNotFoundError)
            return
        if any(
            p.project_id == project_id and p.ticket_id == str(ticket) for p in self.model.pipelines.values()
        ):
            expect_error(result, PipelineExistsError)
            return
        created = ok(result)
        assert created == Pipeline(
            id=created.id,
            project_id=project_id,
            ticket_id=str(ticket),
            ticket_title=title,
            ticket_body=body,
            state=PipelineState.QUEUED,
            branch_name=branch,
            pr_id=None,
            pr_url=None,
            retry_count_ci=0,
            retry_count_review=0,
            feedback=None,
            created_at=created.created_at,
            updated_at=created.created_at,
            version=1,
        )
        assert created.id not in self.model.pipeline_ids
        self.model.pipeline_ids.append(created.id)
        self.model.timelines[created.id] = [(None, PipelineState.QUEUED, created.created_at)]
        self._seen(created)

    @rule(
        index=PICK,
        changes=PIPELINE_CHANGES,
        version=st.sampled_from(("none", "current", "older", "newer")),
    )
    def update_pipeline(self, index: int, changes: dict[str, Any], version: str) -> None:
        pipeline_id = pick(self.model.pipeline_ids, index)
        current = self.model.pipelines.get(pipeline_id)
        stored_version = current.version if current is not None else 1
        expected_version = {
            "none": None,
            "current": stored_version,
            "older": stored_version - 1 if stored_version > 1 else stored_version + 2,
            "newer": stored_version + 1,
        }[version]
        result = outcome(
            lambda: self.store.update_pipeline(pipeline_id, **changes, expected_version=expected_version)
        )
        if not changes:
            expect_error(result, ValidationError)  # nothing to update: nothing written
            return
        if current is None:
            expect_error(result, PipelineNotFoundError)
            return
        if expected_version is not None and expected_version != current.version:
            expect_error(result, StaleVersionError)
            return
        updated = ok(result)
        assert updated == replace(
            current, **changes, version=current.version + 1, updated_at=updated.updated_at
        )
        if updated.state is not current.state:
            self.model.timelines[pipeline_id].append((current.state, updated.state, updated.updated_at))
        self._seen(updated)

    @rule(
        index=st.none() | PICK,
        states=st.none() | st.tuples(st.sampled_from(STATES), st.sampled_from(STATES)),
    )
    def claim_pipeline(self, index: int | None, states: tuple[PipelineState, PipelineState] | None) -> None:
        project_id = self._project_filter(index)
        source, target = states or (PipelineState.QUEUED, PipelineState.CODING)
        if states is None:
            result = outcome(lambda: self.store.claim_pipeline(project_id=project_id))
        else:
            result = outcome(
                lambda: self.store.claim_pipeline(project_id=project_id, state=source, new_state=target)
            )
        waiting = [
            p
            for p in self.model.pipelines.values()
            if p.state is source and (project_id is None or p.project_id == project_id)
        ]
        if not waiting:
            assert ok(result) is None
            return
        oldest = min(waiting, key=lambda p: (p.created_at, p.id))
        claimed = ok(result)
        assert claimed is not None
        assert claimed == replace(
            oldest, state=target, version=oldest.version + 1, updated_at=claimed.updated_at
        )
        if target is not source:
            self.model.timelines[claimed.id].append((source, target, claimed.updated_at))
        self._seen(claimed)

    @rule(index=PICK)
    def delete_pipeline(self, index: int) -> None:
        pipeline_id = pick(self.model.pipeline_ids, index)
        result = outcome(lambda: self.store.delete_pipeline(pipeline_id))
        if pipeline_id not in self.model.pipelines:
            expect_error(result, PipelineNotFoundError)
            return
        assert ok(result) is None
        del self.model.pipelines[pipeline_id]
        if pipeline_id not in self.model.history:  # a saved run keeps its timeline and visits
            self.model.forget(pipeline_id)

    @rule(index=PICK)
    def get_pipeline(self, index: int) -> None:
        pipeline_id = pick(self.model.pipeline_ids, index)
        result = outcome(lambda: self.store.get_pipeline(pipeline_id))
        if pipeline_id in self.model.pipelines:
            assert result == self.model.pipelines[pipeline_id]
        else:
            expect_error(result, PipelineNotFoundError)

    @rule(index=PICK, ticket=st.sampled_from(TICKETS))
    def get_pipeline_by_ticket(self, index: int, ticket: str | int) -> None:
        project_id = pick(self.model.project_ids, index)
        result = outcome(lambda: self.store.get_pipeline_by_ticket(project_id, ticket))
        matching = [
            p
            for p in self.model.pipelines.values()
            if p.project_id == project_id and p.ticket_id == str(ticket)
        ]
        if matching:
            assert result == matching[0]
        else:
            expect_error(result, PipelineNotFoundError)

    @rule(index=st.none() | PICK, state=st.none() | st.sampled_from(STATES))
    def list_pipelines(self, index: int | None, state: PipelineState | None) -> None:
        project_id = self._project_filter(index)
        expected = [
            p
            for p in self.model.pipelines.values()
            if (project_id is None or p.project_id == project_id) and (state is None or p.state is state)
        ]
        expected.sort(key=lambda p: (p.created_at, p.id), reverse=True)
        assert self.store.list_pipelines(project_id, state) == expected
