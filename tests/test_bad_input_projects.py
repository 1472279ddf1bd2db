"""Hostile input to the project calls (create, get, get by repo, update, delete): the specific
error, and a database left exactly as it was (see tests/bad_input.py)."""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest

from vibecc.state_store import (
    CLEAR,
    ProjectExistsError,
    ProjectHasActivePipelinesError,
    ProjectNotFoundError,
    StateStore,
)

if TYPE_CHECKING:
    from tests import bad_input
    from tests.bad_input import (
        INJECTION,
        MISSING,
        Action,
        Ref,
        bad,
        call,
        case,
    )
else:
    import bad_input
    from bad_input import (
        INJECTION,
        MISSING,
        Action,
        Ref,
        bad,
        call,
        case,
    )

CASES = [
    # -- create_project --------------------------------------------------------------------------
    bad("name-None", "create_project", None, "acme/new", match="name must be a str, got NoneType"),
    bad("name-int", "create_project", 123, "acme/new", match="name must be a str, got int"),
    bad("name-bytes", "create_project", b"Acme", "acme/new", match="name must be a str, got bytes"),
    bad("name-empty", "create_project", "", "acme/new", match="name must not be empty"),
    bad("name-spaces", "create_project", "   ", "acme/new", match="name must not be blank"),
    bad("name-whitespace", "create_project", "\t\n", "acme/new", match="name must not be blank"),
    bad(
        "name-256",
        "create_project",
        "x" * 256,
        "acme/new",
        match="name must be at most 255 characters, got 256",
    ),
    bad("name-nul", "create_project", "a\x00b", "acme/new", match="name must not contain a NUL"),
    bad("name-surrogate", "create_project", "a\ud800", "acme/new", match="name is not valid Unicode"),
    bad("repo-None", "create_project", "n", None, match="repo must be a str"),
    bad("repo-int", "create_project", "n", 42, match="repo must be a str"),
    bad("repo-empty", "create_project", "n", "", match="repo must not be empty"),
    bad("repo-no-slash", "create_project", "n", "acme", match="repo must be 'owner/name'.*'acme'"),
    bad("repo-no-owner", "create_project", "n", "/x", match="GitHub owner.*'/x'"),
    bad("repo-double-slash", "create_project", "n", "a//b", match="GitHub repository name.*'a//b'"),
    bad("repo-owner-leading-hyphen", "create_project", "n", "-acme/x", match="GitHub owner"),
    bad("repo-owner-trailing-hyphen", "create_project", "n", "acme-/x", match="GitHub owner"),
    bad("repo-owner-double-hyphen", "create_project", "n", "ac--me/x", match="GitHub owner"),
    bad("repo-owner-40", "create_project", "n", "a" * 40 + "/x", match="GitHub owner"),
    bad("repo-name-dot", "create_project", "n", "acme/.", match="not '.' or '..'"),
    bad("repo-name-dotdot", "create_project", "n", "acme/..", match="not '.' or '..'"),
    bad("repo-name-101", "create_project", "n", "acme/" + "x" * 101, match="at most 100"),
    bad("repo-space", "create_project", "n", "acme/x y", match="GitHub repository name"),
    bad("repo-three-parts", "create_project", "n", "acme/x/y", match="GitHub repository name"),
    bad("repo-injection", "create_project", "n", "acme/x" + INJECTION, match="GitHub repository name"),
    bad("base_branch-None", "create_project", "n", "acme/new", None, match="base_branch must be a str"),
    bad("base_branch-empty", "create_project", "n", "acme/new", "", match="base_branch must not be empty"),
    bad("base_branch-dotdot", "create_project", "n", "acme/new", "a..b", match="base_branch is not a valid"),
    bad("base_branch-HEAD", "create_project", "n", "acme/new", "HEAD", match="'HEAD' is reserved"),
    bad(
        "gh-bool", "create_project", "n", "acme/new", github_project_id=True, match="github_project_id.*bool"
    ),
    bad("gh-zero", "create_project", "n", "acme/new", github_project_id=0, match="github_project_id must be"),
    bad("gh-negative", "create_project", "n", "acme/new", github_project_id=-1, match="got -1"),
    bad("gh-2**63", "create_project", "n", "acme/new", github_project_id=2**63, match=str(2**63)),
    bad("gh-10**30", "create_project", "n", "acme/new", github_project_id=10**30, match=str(10**30)),
    bad("gh-str", "create_project", "n", "acme/new", github_project_id="5", match="must be an int, got str"),
    bad(
        "gh-float",
        "create_project",
        "n",
        "acme/new",
        github_project_id=1.5,
        match="must be an int, got float",
    ),
    bad(
        "ci-None",
        "create_project",
        "n",
        "acme/new",
        max_retries_ci=None,
        match="max_retries_ci must be an int",
    ),
    bad("ci-negative", "create_project", "n", "acme/new", max_retries_ci=-1, match="max_retries_ci.*got -1"),
    bad("ci-1001", "create_project", "n", "acme/new", max_retries_ci=1001, match="between 0 and 1000"),
    bad("ci-bool", "create_project", "n", "acme/new", max_retries_ci=True, match="got bool"),
    bad("ci-str", "create_project", "n", "acme/new", max_retries_ci="3", match="got str"),
    bad("ci-float", "create_project", "n", "acme/new", max_retries_ci=2.0, match="got float"),
    bad("ci-10**30", "create_project", "n", "acme/new", max_retries_ci=10**30, match="between 0 and 1000"),
    bad(
        "review-negative",
        "create_project",
        "n",
        "acme/new",
        max_retries_review=-1,
        match="max_retries_review",
    ),
    bad(
        "review-2**63",
        "create_project",
        "n",
        "acme/new",
        max_retries_review=2**63,
        match="max_retries_review",
    ),
    case(
        "create_project-same-repo",
        call("create_project", "Again", "acme/widgets"),
        ProjectExistsError,
        "acme/widgets",
    ),
    # -- get / update / delete project ------------------------------------------------------------
    bad("None", "get_project", None, match="project_id must be a str"),
    bad("empty", "get_project", "", match="project_id must not be empty"),
    bad("int", "get_project", 42, match="project_id must be a str, got int"),
    bad("37-chars", "get_project", "x" * 37, match="project_id must be at most 36"),
    bad("surrogate", "get_project", "\ud800", match="project_id is not valid Unicode"),
    case("get_project-unknown", call("get_project", MISSING), ProjectNotFoundError, MISSING),
    case("get_project-injection", call("get_project", INJECTION), ProjectNotFoundError, "DROP TABLE"),
    case("get_project-or-1-1", call("get_project", "1' OR '1'='1"), ProjectNotFoundError, "OR"),
    bad("None", "get_project_by_repo", None, match="repo must be a str"),
    bad("no-slash", "get_project_by_repo", "acme", match="repo must be 'owner/name'"),
    bad("injection", "get_project_by_repo", "acme/x' OR '1'='1", match="GitHub repository name"),
    case(
        "get_project_by_repo-unknown",
        call("get_project_by_repo", "nobody/none"),
        ProjectNotFoundError,
        "nobody/none",
    ),
    case("update_project-unknown", call("update_project", MISSING, name="x"), ProjectNotFoundError, MISSING),
    bad("None-id", "update_project", None, name="x", match="project_id must be a str"),
    bad("name-empty", "update_project", Ref.PROJECT, name="", match="name must not be empty"),
    bad("name-CLEAR", "update_project", Ref.PROJECT, name=CLEAR, match="name cannot be cleared"),
    bad("base_branch-space", "update_project", Ref.PROJECT, base_branch="a b", match="base_branch is not"),
    bad("base_branch-CLEAR", "update_project", Ref.PROJECT, base_branch=CLEAR, match="base_branch cannot be"),
    bad("gh-zero", "update_project", Ref.PROJECT, github_project_id=0, match="github_project_id"),
    bad("gh-str", "update_project", Ref.PROJECT, github_project_id="7", match="github_project_id"),
    bad("ci-negative", "update_project", Ref.PROJECT, max_retries_ci=-1, match="max_retries_ci"),
    bad("ci-CLEAR", "update_project", Ref.PROJECT, max_retries_ci=CLEAR, match="max_retries_ci cannot be"),
    bad("review-bool", "update_project", Ref.PROJECT, max_retries_review=True, match="max_retries_review"),
    case("delete_project-unknown", call("delete_project", MISSING), ProjectNotFoundError, MISSING),
    case("delete_project-injection", call("delete_project", INJECTION), ProjectNotFoundError, "DROP TABLE"),
    bad("None", "delete_project", None, match="project_id must be a str"),
    case(
        "delete_project-active",
        call("delete_project", Ref.PROJECT),
        ProjectHasActivePipelinesError,
        "1 active pipeline",
    ),
]


@pytest.mark.parametrize(("action", "error", "match"), CASES)
def test_hostile_input_raises_and_changes_nothing(
    store: StateStore, store_url: str, action: Action, error: type[Exception], match: str
) -> None:
    bad_input.check(store, store_url, action, error, match)
