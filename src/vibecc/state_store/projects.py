"""The project half of StateStore: configuration of the repositories the orchestrator serves."""

from __future__ import annotations

from typing import Any

from sqlalchemy.exc import IntegrityError

from . import compiled as run
from . import rows
from . import statements as sql
from . import validation as check
from .base import UNSET, StoreBase, Unset, new_id, now
from .errors import ProjectExistsError, ProjectHasActivePipelinesError, ProjectNotFoundError
from .records import Project


class ProjectsMixin(StoreBase):
    """Project calls; mixed into StateStore."""

    def create_project(
        self,
        name: str,
        repo: str,
        base_branch: str = "main",
        github_project_id: int | None = None,
        max_retries_ci: int = 3,
        max_retries_review: int = 3,
    ) -> Project:
        """Add a project.

        Raises:
            ProjectExistsError: a project with that repo exists.
            ValidationError: an argument is not acceptable.
        """
        stamp = now()
        project = Project(
            id=new_id(),
            name=check.name(name),
            repo=check.repo(repo),
            base_branch=check.branch("base_branch", base_branch),
            github_project_id=check.optional_integer("github_project_id", github_project_id, minimum=1),
            max_retries_ci=check.integer(
                "max_retries_ci", max_retries_ci, minimum=0, maximum=check.MAX_RETRIES_LIMIT
            ),
            max_retries_review=check.integer(
                "max_retries_review", max_retries_review, minimum=0, maximum=check.MAX_RETRIES_LIMIT
            ),
            created_at=stamp,
            updated_at=stamp,
        )
        with self._write() as conn:
            try:
                run.execute(conn, sql.INSERT_PROJECT, rows.values_of(project))
            except IntegrityError as exc:
                if self._dialect.violation(exc) == "unique":
                    raise ProjectExistsError(f"a project with repo {project.repo!r} exists already") from exc
                raise
        return project

    def get_project(self, project_id: str) -> Project:
        """The project with that id. Raises ProjectNotFoundError."""
        check.identifier("project_id", project_id)
        with self._read() as conn:
            row = run.first(conn, sql.PROJECT_BY_ID, {"id": project_id})
        if row is None:
            raise ProjectNotFoundError(f"project {project_id} not found")
        return rows.project(row)

    def get_project_by_repo(self, repo: str) -> Project:
        """The project of `repo` ("owner/name"). Raises ProjectNotFoundError."""
        check.repo(repo)
        with self._read() as conn:
            row = run.first(conn, sql.PROJECT_BY_REPO, {"repo": repo})
        if row is None:
            raise ProjectNotFoundError(f"project with repo {repo!r} not found")
        return rows.project(row)

    def list_projects(self) -> list[Project]:
        """Every project, ordered by name (then id)."""
        with self._read() as conn:
            return [rows.project(row) for row in run.rows(conn, sql.ALL_PROJECTS, {})]

    def update_project(
        self,
        project_id: str,
        *,
        name: str | Unset = UNSET,
        base_branch: str | Unset = UNSET,
        github_project_id: int | Unset | None = UNSET,
        max_retries_ci: int | Unset = UNSET,
        max_retries_review: int | Unset = UNSET,
    ) -> Project:
        """Change the given fields (None clears github_project_id); updated_at moves.

        Raises:
            ProjectNotFoundError, ValidationError.
        """
        check.identifier("project_id", project_id)
        values: dict[str, Any] = {}
        if name is not UNSET:
            values["name"] = check.name(name)
        if base_branch is not UNSET:
            values["base_branch"] = check.branch("base_branch", base_branch)
        if github_project_id is not UNSET:
            values["github_project_id"] = check.optional_integer(
                "github_project_id", github_project_id, minimum=1
            )
        if max_retries_ci is not UNSET:
            values["max_retries_ci"] = check.integer(
                "max_retries_ci", max_retries_ci, minimum=0, maximum=check.MAX_RETRIES_LIMIT
            )
        if max_retries_review is not UNSET:
            values["max_retries_review"] = check.integer(
                "max_retries_review", max_retries_review, minimum=0, maximum=check.MAX_RETRIES_LIMIT
            )
        statement = sql.update_project(frozenset(values))
        values.update(_id=project_id, updated_at=now())
        with self._write() as conn:
            row = run.first(conn, statement, values)
        if row is None:
            raise ProjectNotFoundError(f"project {project_id} not found")
        return rows.project(row)

    def delete_project(self, project_id: str) -> None:
        """Delete a project whose pipelines are all finished.

        Finished (MERGED/FAILED) pipelines not yet in history are archived in the same
        transaction; the project's history stays.

        Raises:
            ProjectNotFoundError, ProjectHasActivePipelinesError.
        """
        check.identifier("project_id", project_id)
        with self._write() as conn:
            if run.first(conn, sql.LOCK_PROJECT, {"id": project_id}) is None:
                raise ProjectNotFoundError(f"project {project_id} not found")
            # Finished pipelines first, then count what is left: a pipeline that turned
            # active meanwhile is not deleted (PostgreSQL re-checks the state under the row
            # lock), and raising rolls the deletions back.
            finished = run.rows(conn, sql.DELETE_FINISHED_PIPELINES, {"id": project_id})
            active = run.scalar(conn, sql.COUNT_PIPELINES, {"id": project_id})
            if active:
                raise ProjectHasActivePipelinesError(
                    f"project {project_id} has {active} active pipeline(s); finish or delete them first"
                )
            stamp = now()
            archived = [rows.history_from_pipeline(rows.pipeline(row), stamp) for row in finished]
            rows.insert_history(conn, self._dialect.name, archived)
            run.execute(conn, sql.DELETE_PROJECT, {"id": project_id})
