"""Projects: their statements, built once, and the functions that run them."""

from __future__ import annotations

from dataclasses import fields
from datetime import datetime
from functools import cache
from typing import Any

from sqlalchemy import Connection, Executable, bindparam, delete, func, select, update

from ..models import deleted_projects, projects
from ..records import DeletedProject, Project
from . import rows

COLUMNS = [projects.c[f.name] for f in fields(Project)]
"""In the order of the record's fields, so a row unpacks straight into a record."""
DELETED_COLUMNS = [deleted_projects.c[f.name] for f in fields(DeletedProject)]

_INSERT = projects.insert()
_BY_ID = select(*COLUMNS).where(projects.c.id == bindparam("id"))
# lower(repo): the expression of the unique index uq_projects_lower_repo, which serves it.
_BY_REPO = select(*COLUMNS).where(func.lower(projects.c.repo) == func.lower(bindparam("repo")))
_ALL = select(*COLUMNS).order_by(projects.c.name, projects.c.id)
# FOR UPDATE (PostgreSQL) keeps new pipelines of the project out until the delete commits.
_LOCK = select(*COLUMNS).where(projects.c.id == bindparam("id")).with_for_update()
_DELETE = delete(projects).where(projects.c.id == bindparam("id"))
_RECORD_DELETED = deleted_projects.insert()
_DELETED = select(*DELETED_COLUMNS).order_by(deleted_projects.c.deleted_at, deleted_projects.c.id)


@cache
def _update(names: frozenset[str]) -> Executable:
    """UPDATE projects setting `names` (and updated_at) from parameters of the same names."""
    values: dict[str, Any] = {name: bindparam(name) for name in sorted(names | {"updated_at"})}
    return update(projects).where(projects.c.id == bindparam("_id")).values(values).returning(*COLUMNS)


def insert(conn: Connection, project: Project) -> None:
    conn.execute(_INSERT, rows.values_of(project))


def by_id(conn: Connection, project_id: str) -> Project | None:
    row = conn.execute(_BY_ID, {"id": project_id}).first()
    return None if row is None else rows.project(row)


def by_repo(conn: Connection, repo: str) -> Project | None:
    row = conn.execute(_BY_REPO, {"repo": repo}).first()
    return None if row is None else rows.project(row)


def every(conn: Connection) -> list[Project]:
    return [rows.project(row) for row in conn.execute(_ALL)]


def deleted(conn: Connection) -> list[DeletedProject]:
    return [rows.deleted_project(row) for row in conn.execute(_DELETED)]


def update_fields(conn: Connection, project_id: str, values: dict[str, Any]) -> Project | None:
    """Set the columns in `values` (and updated_at); the project after, or None if absent."""
    row = conn.execute(_update(frozenset(values) - {"updated_at"}), {**values, "_id": project_id}).first()
    return None if row is None else rows.project(row)


def lock(conn: Connection, project_id: str) -> Project | None:
    """The project, locked against concurrent writers of it until the transaction ends."""
    row = conn.execute(_LOCK, {"id": project_id}).first()
    return None if row is None else rows.project(row)


def lock_for_claims(conn: Connection, project_id: str) -> bool:
    """Lock the project's row until the transaction ends, so that claims bounded by the
    project's capacity run one after another (PostgreSQL; SQLite's writers already do).
    False when there is no such project."""
    return conn.execute(_LOCK, {"id": project_id}).first() is not None


def delete_and_remember(conn: Connection, project: Project, deleted_at: datetime) -> None:
    """Delete the project, keeping its name and repo in deleted_projects."""
    conn.execute(_DELETE, {"id": project.id})
    conn.execute(
        _RECORD_DELETED,
        {"id": project.id, "name": project.name, "repo": project.repo, "deleted_at": deleted_at},
    )
