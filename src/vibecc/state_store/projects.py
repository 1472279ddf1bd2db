"""The project half of StateStore: configuration of the repositories the orchestrator serves."""

from __future__ import annotations

from typing import Any

from sqlalchemy.exc import IntegrityError

from . import compiled as run
from . import rows
from . import statements as sql
from . import validation as check
from .base import CLEAR, UNSET, Clear, StoreBase, Unset, new_id, now
from .errors import ProjectExistsError, ProjectHasActivePipelinesError, ProjectNotFoundError, ValidationError
from .records import DeletedProject, Project


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
            ProjectExistsError: a project with that repo exists, in any case ("ACME/P" and
                "acme/p" are one GitHub repository).
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
                    raise ProjectExistsError(
                        f"a project with repo {project.repo!r} exists already (repos ignore case)"
                    ) from exc
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
        """The project of `repo` ("owner/name", any case, as on GitHub). Raises ProjectNotFoundError."""
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

    def list_deleted_projects(self) -> list[DeletedProject]:
        """Every deleted project as it was named when deleted, oldest deletion first: its
        history stays, and this names it (get_history(project_id=...) still finds it)."""
        with self._read() as conn:
            return [rows.deleted_project(row) for row in run.rows(conn, sql.DELETED_PROJECTS, {})]

    def update_project(
        self,
        project_id: str,
        *,
        name: str | Unset | None = UNSET,
        base_branch: str | Unset | None = UNSET,
        github_project_id: int | Clear | Unset | None = UNSET,
        max_retries_ci: int | Unset | None = UNSET,
        max_retries_review: int | Unset | None = UNSET,
    ) -> Project:
        """Change the fields given a value; updated_at moves when something changes.

        A field left out, or given as None, stays as it is (so a PATCH handler can pass None
        for every field its request did not contain). `github_project_id=CLEAR` removes the
        stored GitHub project number. With nothing to change, the project is returned as it
        is and nothing is written.

        Raises:
            ProjectNotFoundError, ValidationError.
        """
        check.identifier("project_id", project_id)
        values: dict[str, Any] = {}
        if _given(name, "name"):
            values["name"] = check.name(name)
        if _given(base_branch, "base_branch"):
            values["base_branch"] = check.branch("base_branch", base_branch)
        if github_project_id is CLEAR:
            values["github_project_id"] = None
        elif _given(github_project_id, "github_project_id"):
            values["github_project_id"] = check.integer("github_project_id", github_project_id, minimum=1)
        if _given(max_retries_ci, "max_retries_ci"):
            values["max_retries_ci"] = check.integer(
                "max_retries_ci", max_retries_ci, minimum=0, maximum=check.MAX_RETRIES_LIMIT
            )
        if _given(max_retries_review, "max_retries_review"):
            values["max_retries_review"] = check.integer(
                "max_retries_review", max_retries_review, minimum=0, maximum=check.MAX_RETRIES_LIMIT
            )
        if not values:
            return self.get_project(project_id)
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
        transaction; the project's history stays, and list_deleted_projects names it.

        Raises:
            ProjectNotFoundError, ProjectHasActivePipelinesError.
        """
        check.identifier("project_id", project_id)
        with self._write() as conn:
            found = run.first(conn, sql.LOCK_PROJECT, {"id": project_id})
            if found is None:
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
            _, name, repo = found
            run.execute(
                conn,
                sql.RECORD_DELETED_PROJECT,
                {"id": project_id, "name": name, "repo": repo, "deleted_at": stamp},
            )


def _given(value: object, field: str) -> bool:
    """True when an update_project argument asks for a change (None and UNSET do not)."""
    if value is CLEAR:
        raise ValidationError(f"{field} cannot be cleared; only github_project_id can")
    return value is not None and value is not UNSET
