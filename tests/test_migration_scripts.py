"""The migration scripts are self-contained: what a revision does is fixed by its own file, so
later changes to the models (states, names, types) can never change an old revision."""

from __future__ import annotations

import ast
import sys
from pathlib import Path

import pytest
from sqlalchemy.sql.schema import DEFAULT_NAMING_CONVENTION

from vibecc.state_store import PipelineState, migrate
from vibecc.state_store.models import STATE_VALUES, metadata

MIGRATIONS = Path(migrate.__file__).parent / "migrations"
SCRIPTS = [*sorted((MIGRATIONS / "versions").glob("[0-9]*.py")), MIGRATIONS / "baseline.py"]
"""Every revision, and the 0001 tables they share."""
ALLOWED_PACKAGES = {"alembic", "sqlalchemy"}
ALLOWED_MODULES = {"vibecc.state_store.errors", "vibecc.state_store.migrations.baseline"}
"""Besides the standard library: the error hierarchy (a public contract) and the 0001 tables."""


def foreign_imports(source: str) -> list[str]:
    """Every module `source` imports (or could load by name) that a revision may not depend on."""
    found: list[str] = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found += [alias.name for alias in node.names if not _allowed(alias.name)]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                found.append("." * node.level + (node.module or ""))
                continue
            module = node.module or ""
            if not _allowed(module):
                # `from package import module` names a module: allowed if that module is.
                found += [
                    f"{module}.{alias.name}" for alias in node.names if not _allowed(f"{module}.{alias.name}")
                ]
        elif isinstance(node, ast.Name | ast.Attribute):
            name = node.id if isinstance(node, ast.Name) else node.attr
            if name in ("__import__", "import_module"):
                found.append(name)
    return found


def _allowed(module: str) -> bool:
    top = module.partition(".")[0]
    return (
        module in ALLOWED_MODULES
        or top in ALLOWED_PACKAGES
        or (top in sys.stdlib_module_names and top != "importlib")
    )


@pytest.mark.parametrize("path", SCRIPTS, ids=lambda path: path.name)
def test_scripts_import_nothing_from_the_rest_of_the_package(path: Path) -> None:
    assert foreign_imports(path.read_text(encoding="utf-8")) == [], (
        f"{path.name} must carry its own copies (frozen as of its revision) instead"
    )


def test_every_revision_alembic_knows_is_checked() -> None:
    known = {Path(script.path).resolve() for script in migrate.script().walk_revisions()}
    assert known
    assert known <= {path.resolve() for path in SCRIPTS}
    assert len(known) == len(SCRIPTS) - 1  # all of them but baseline.py


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        ("from vibecc.state_store.models import STATE_VALUES", ["vibecc.state_store.models.STATE_VALUES"]),
        ("from vibecc.state_store import models", ["vibecc.state_store.models"]),
        ("import vibecc.state_store.models", ["vibecc.state_store.models"]),
        ("from ..models import NAMING_CONVENTION", ["..models"]),
        ("from . import baseline", ["."]),
        (
            "from vibecc.state_store.records import PipelineState",
            ["vibecc.state_store.records.PipelineState"],
        ),
        ("from vibecc.state_store.migrations import env", ["vibecc.state_store.migrations.env"]),
        (
            "import importlib\nimportlib.import_module('vibecc.state_store.models')",
            ["importlib", "import_module"],
        ),
        ("def f():\n    from vibecc.state_store import rules", ["vibecc.state_store.rules"]),
    ],
)
def test_the_check_finds_imports_from_the_package(source: str, expected: list[str]) -> None:
    assert foreign_imports(source) == expected


def test_the_check_passes_what_revisions_may_import() -> None:
    source = (
        "from __future__ import annotations\nimport itertools\nfrom typing import Any\n"
        "import sqlalchemy as sa\nfrom alembic import context, op\n"
        "from alembic.operations import BatchOperations\n"
        "from vibecc.state_store.errors import SchemaVersionError\n"
        "from vibecc.state_store.migrations import baseline\n"
    )
    assert foreign_imports(source) == []


def test_state_values_are_the_pipeline_states_in_order() -> None:
    quoted = [value.strip() for value in STATE_VALUES.split(",")]
    assert quoted == [f"'{state.value}'" for state in PipelineState]
    assert STATE_VALUES == "'queued', 'coding', 'testing', 'review', 'merged', 'failed'"


@pytest.mark.parametrize("dialect", ["sqlite", "postgresql"])
def test_revisions_name_their_constraints_whatever_the_models_naming_convention(
    dialect: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The migration environment hands the models' metadata to Alembic, whose operations name
    unnamed constraints by its convention: every revision names its own, so the SQL is the same."""
    steps = [
        ("head", None),
        ("0002", "0001"),
        ("0003", "0002"),
        ("0004", "0003"),
        ("0005", "0004"),
        ("0006", "0005"),
        ("0007", "0006"),
    ]
    rendered = [migrate.upgrade_sql(dialect, revision, start) for revision, start in steps]
    assert "CONSTRAINT pk_projects PRIMARY KEY" in rendered[0]
    assert "CONSTRAINT ck_pipelines_state CHECK" in rendered[1]
    assert "CONSTRAINT ck_pipeline_transitions_to_state CHECK" in rendered[3]
    monkeypatch.setattr(metadata, "naming_convention", dict(DEFAULT_NAMING_CONVENTION))
    assert [migrate.upgrade_sql(dialect, revision, start) for revision, start in steps] == rendered
