"""Projects: create, read, list (in code-point order on every engine), update.

Deleting a project is in tests/test_project_delete.py."""

from __future__ import annotations

import uuid
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.exc import IntegrityError

from vibecc.state_store import (
    CLEAR,
    ProjectExistsError,
    ProjectNotFoundError,
    StateStore,
    ValidationError,
)

if TYPE_CHECKING:
    from tests import helpers
    from tests.conftest import PostgresServer
else:
    import helpers

snapshot = helpers.snapshot
UPDATABLE = ("name", "base_branch", "github_project_id", "max_retries_ci", "max_retries_review")


def test_create_project_defaults(store: StateStore) -> None:
    project = store.create_project("Acme", "acme/widgets")

    assert uuid.UUID(project.id)
    assert (project.name, project.repo, project.base_branch) == ("Acme", "acme/widgets", "main")
    assert project.github_project_id is None
    assert (project.max_retries_ci, project.max_retries_review) == (3, 3)
    assert project.created_at == project.updated_at
    assert helpers.is_utc(project.created_at)
    assert store.get_project(project.id) == project


def test_create_project_all_arguments(store: StateStore) -> None:
    project = store.create_project(
        "Acme",
        "acme/widgets",
        base_branch="develop",
        github_project_id=7,
        max_retries_ci=0,
        max_retries_review=1000,
    )

    assert project.base_branch == "develop"
    assert project.github_project_id == 7
    assert (project.max_retries_ci, project.max_retries_review) == (0, 1000)
    assert store.get_project(project.id) == project


def test_create_project_same_repo_raises(store: StateStore) -> None:
    first = store.create_project("Acme", "acme/widgets")

    with pytest.raises(ProjectExistsError, match="acme/widgets"):
        store.create_project("Other name", "acme/widgets", base_branch="dev")

    assert store.list_projects() == [first]


def test_get_project_by_repo(store: StateStore) -> None:
    project = store.create_project("Acme", "acme/widgets")
    store.create_project("Other", "acme/gadgets")

    assert store.get_project_by_repo("acme/widgets") == project


@pytest.mark.parametrize("spelling", ["ACME/Widgets", "acme/WIDGETS", "Acme/widgets"])
def test_repos_differing_only_in_case_are_one_project(
    store: StateStore, store_url: str, spelling: str
) -> None:
    """GitHub repository names ignore case; the database's unique index enforces it."""
    project = store.create_project("Acme", "acme/widgets")
    before = snapshot(store_url)

    with pytest.raises(ProjectExistsError, match="exists already"):
        store.create_project("Shouting", spelling)

    assert snapshot(store_url) == before
    assert store.get_project_by_repo(spelling) == project
    assert store.get_project_by_repo(spelling).repo == "acme/widgets"  # the spelling given first


def test_repo_is_stored_as_given(store: StateStore) -> None:
    project = store.create_project("Acme", "AcMe/Widgets")

    assert store.get_project(project.id).repo == "AcMe/Widgets"
    assert store.get_project_by_repo("acme/widgets") == project


def test_case_insensitive_repos_are_enforced_by_the_database(store: StateStore, store_url: str) -> None:
    """A writer that bypasses the store (or races it) cannot add a second spelling either."""
    project = store.create_project("Acme", "acme/widgets")
    engine = create_engine(helpers.database_url(store_url))
    try:
        with pytest.raises(IntegrityError), engine.begin() as conn:
            conn.execute(
                text(
                    "INSERT INTO projects (id, name, repo, base_branch, max_retries_ci, "
                    "max_retries_review, created_at, updated_at) "
                    "SELECT 'other', name, upper(repo), base_branch, max_retries_ci, "
                    "max_retries_review, created_at, updated_at FROM projects WHERE id = :id"
                ),
                {"id": project.id},
            )
    finally:
        engine.dispose()
    assert store.list_projects() == [project]


def test_get_project_unknown_id_raises(store: StateStore) -> None:
    store.create_project("Acme", "acme/widgets")
    missing = str(uuid.uuid4())

    with pytest.raises(ProjectNotFoundError, match=missing):
        store.get_project(missing)


def test_get_project_by_unknown_repo_raises(store: StateStore) -> None:
    store.create_project("Acme", "acme/widgets")

    with pytest.raises(ProjectNotFoundError, match="acme/nothing"):
        store.get_project_by_repo("acme/nothing")


def test_list_projects_empty(store: StateStore) -> None:
    assert store.list_projects() == []


def test_list_projects_ordered_by_name_then_id(store: StateStore) -> None:
    created = [
        store.create_project(name, f"acme/repo{i}")
        for i, name in enumerate(["delta", "alpha", "charlie", "bravo", "alpha", "charlie"])
    ]

    listed = store.list_projects()

    assert listed == sorted(created, key=lambda p: (p.name, p.id))


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("name", "Renamed"),
        ("base_branch", "release/2.0"),
        ("github_project_id", 99),
        ("max_retries_ci", 9),
        ("max_retries_review", 0),
    ],
)
def test_update_project_changes_only_given_field(store: StateStore, field: str, value: Any) -> None:
    project = store.create_project("Acme", "acme/widgets", github_project_id=5)
    other = store.create_project("Other", "acme/other")

    updated = store.update_project(project.id, **{field: value})

    assert updated == replace(project, **{field: value}, updated_at=updated.updated_at)
    assert updated.updated_at > project.updated_at
    assert store.get_project(project.id) == updated
    assert store.get_project(other.id) == other


def test_update_project_clear_removes_github_project_id(store: StateStore) -> None:
    project = store.create_project("Acme", "acme/widgets", github_project_id=5)

    updated = store.update_project(project.id, github_project_id=CLEAR)

    assert updated.github_project_id is None
    assert store.get_project(project.id).github_project_id is None
    assert updated.name == "Acme"


def test_update_project_none_leaves_every_field_as_it_is(store: StateStore) -> None:
    """The REST API's PATCH passes None for every field its request did not contain."""
    project = store.create_project("Acme", "acme/widgets", "dev", 5, 4, 2)

    updated = store.update_project(
        project.id,
        name=None,
        base_branch="release/2.0",
        github_project_id=None,
        max_retries_ci=None,
        max_retries_review=None,
    )

    assert updated == replace(project, base_branch="release/2.0", updated_at=updated.updated_at)
    assert store.get_project(project.id) == updated


@pytest.mark.parametrize("given", [{}, dict.fromkeys(UPDATABLE)])
def test_update_project_with_nothing_to_change_writes_nothing(
    store: StateStore, store_url: str, given: dict[str, None]
) -> None:
    project = store.create_project("Acme", "acme/widgets", github_project_id=5)
    before = snapshot(store_url)

    assert store.update_project(project.id, **given) == project

    assert snapshot(store_url) == before


@pytest.mark.parametrize("field", [f for f in UPDATABLE if f != "github_project_id"])
def test_update_project_clear_is_refused_for_a_required_field(
    store: StateStore, store_url: str, field: str
) -> None:
    project = store.create_project("Acme", "acme/widgets")
    before = snapshot(store_url)

    clear: dict[str, Any] = {field: CLEAR}
    with pytest.raises(ValidationError, match=f"{field} cannot be cleared"):
        store.update_project(project.id, **clear)

    assert snapshot(store_url) == before


def test_update_project_successive_updates_keep_moving_updated_at(store: StateStore) -> None:
    project = store.create_project("Acme", "acme/widgets")
    stamps = [project.updated_at]
    for i in range(3):
        stamps.append(store.update_project(project.id, max_retries_ci=i).updated_at)

    assert stamps == sorted(set(stamps))


def test_update_project_unknown_id_raises(store: StateStore) -> None:
    missing = str(uuid.uuid4())

    with pytest.raises(ProjectNotFoundError, match=missing):
        store.update_project(missing, name="x")


def test_names_and_ids_sort_by_code_point_under_a_locale_collation(
    pg_server: PostgresServer, tmp_path: Path
) -> None:
    """A PostgreSQL database whose default collation is a locale (here ICU en-US, which puts
    "Zeta" after "alpha" and ignores "-") still lists projects in SQLite's order."""
    name = f"vibecc_test_icu_{uuid.uuid4().hex[:8]}"
    with pg_server._engine.connect() as conn:
        conn.execute(
            text(f"CREATE DATABASE \"{name}\" LOCALE_PROVIDER icu ICU_LOCALE 'en-US' TEMPLATE template0")
        )
    pg_server.created.append(name)
    names = ["alpha", "Zeta", "a-c", "ab", "Ab", "_x", "é"]
    listed: dict[str, list[str]] = {}
    for engine, location in (
        ("postgresql", pg_server.admin_url.set(database=name).render_as_string(hide_password=False)),
        ("sqlite", str(tmp_path / "vibecc.db")),
    ):
        with StateStore(location) as store:
            for i, project_name in enumerate(names):
                store.create_project(project_name, f"acme/repo-{i}")
            listed[engine] = [p.name for p in store.list_projects()]
    assert listed["postgresql"] == listed["sqlite"] == sorted(names)
