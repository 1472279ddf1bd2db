"""Hostile input to every public call: the specific error, and a database left exactly as it was.

Also: awkward but valid text round-trips verbatim, and the branch-name check agrees with git.
"""

from __future__ import annotations

import enum
import shutil
import subprocess
import uuid
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import UTC, date, datetime, timedelta, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from vibecc.state_store import (
    CLEAR,
    HistoryCursor,
    HistoryNotFoundError,
    Pipeline,
    PipelineExistsError,
    PipelineHistory,
    PipelineNotFoundError,
    Project,
    ProjectExistsError,
    ProjectHasActivePipelinesError,
    ProjectNotFoundError,
    StaleVersionError,
    StateStore,
    ValidationError,
)
from vibecc.state_store import rules as check

if TYPE_CHECKING:
    from tests import helpers
else:
    import helpers

MISSING = str(uuid.uuid4())
INJECTION = "'; DROP TABLE projects; --"
NAIVE = datetime(2025, 1, 1, 12, 0, 0)
AWARE = datetime(2025, 1, 1, 12, 0, 0, tzinfo=UTC)
OVER_1_MIB = "é" * (2**19 + 1)  # 524,289 characters but 1,048,578 bytes of UTF-8
OVER_1_MIB_ASCII = "x" * (2**20 + 1)
INVALID_BRANCHES = [
    "-x", "a..b", "a b", "a~b", "a^b", "a:b", "a?b", "a*b", "a[b", "a\\b",
    "/a", "a/", "a//b", "a.", ".a", "a/.b", "a.lock", "a@{b", "@", "HEAD",
]  # fmt: skip


class Ref(enum.Enum):
    """Stands for an id of the test's world in a case's arguments."""

    PROJECT = "project"
    PIPELINE = "pipeline"
    HISTORY = "history"


@dataclass(frozen=True)
class World:
    """What each case starts from: a project with an active pipeline (version 2) and history."""

    store: StateStore
    project: Project
    pipeline: Pipeline
    record: PipelineHistory

    def resolve(self, value: Any) -> Any:
        if value is Ref.PROJECT:
            return self.project.id
        if value is Ref.PIPELINE:
            return self.pipeline.id
        if value is Ref.HISTORY:
            return self.record.id
        return value


Action = Callable[[World], object]


def call(method: str, *args: Any, **kwargs: Any) -> Action:
    def run(world: World) -> object:
        result = getattr(world.store, method)(
            *(world.resolve(a) for a in args), **{k: world.resolve(v) for k, v in kwargs.items()}
        )
        # iter_history checks its arguments when iterated.
        return list(result) if method == "iter_history" else result

    return run


def import_changed(changes: dict[str, Any]) -> Action:
    """Import the world's history record under a new id with `changes` applied."""
    return lambda w: w.store.import_history([replace(w.record, **{"id": MISSING, **changes})])


def case(label: str, action: Action, error: type[Exception], match: str) -> Any:
    return pytest.param(action, error, match, id=label)


def bad(label: str, method: str, *args: Any, match: str, **kwargs: Any) -> Any:
    """A case that must raise ValidationError."""
    return case(f"{method}-{label}", call(method, *args, **kwargs), ValidationError, match)


IMPORT_CHANGES: list[tuple[str, dict[str, Any], str]] = [
    ("naive-completed_at", {"completed_at": NAIVE}, "completed_at must be a timezone-aware"),
    ("str-started_at", {"started_at": "2025-01-01T00:00:00+00:00"}, "started_at must be"),
    ("negative-duration", {"duration_seconds": -1}, "duration_seconds.*got -1"),
    ("duration-2**63", {"duration_seconds": 2**63}, "duration_seconds must be between"),
    ("duration-2**63-1", {"duration_seconds": 2**63 - 1}, "duration_seconds must be between"),
    ("duration-over-100-years", {"duration_seconds": 36_525 * 86_400 + 1}, "between 0 and 3155760000"),
    ("upper-state", {"final_state": "MERGED"}, "final_state must be.*'MERGED'"),
    ("unfinished-state", {"final_state": "review"}, "is review; history holds merged or failed"),
    ("queued-state", {"final_state": "queued"}, "is queued; history holds merged or failed"),
    ("empty-id", {"id": ""}, "id must not be empty"),
    ("long-id", {"id": "h" * 37}, "id must be at most 36"),
    ("long-project", {"project_id": "p" * 37}, "project_id must be at most 36"),
    ("ticket-space", {"ticket_id": "a b"}, "ticket_id must not contain whitespace"),
    ("branch", {"branch_name": "a..b"}, "branch_name is not a valid git branch"),
    ("pr_url", {"pr_url": "ftp://x"}, "pr_url must be an absolute http"),
    ("pr_id-zero", {"pr_id": 0}, "pr_id must be between 1"),
    ("retries-negative", {"total_retries_ci": -1}, "total_retries_ci"),
    ("retries-2**31", {"total_retries_review": 2**31}, "total_retries_review must be between"),
    (
        "retries-over-a-million",
        {"total_retries_ci": 10**6 + 1},
        "total_retries_ci must be between 0 and 1000000",
    ),
]

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
    # -- create_pipeline ---------------------------------------------------------------------------
    case(
        "create_pipeline-unknown-project",
        call("create_pipeline", MISSING, 5, "t", "b"),
        ProjectNotFoundError,
        MISSING,
    ),
    case(
        "create_pipeline-injection-project",
        call("create_pipeline", INJECTION, 5, "t", "b"),
        ProjectNotFoundError,
        "DROP TABLE",
    ),
    bad("project-37", "create_pipeline", "x" * 37, 5, "t", "b", match="project_id must be at most 36"),
    bad("project-None", "create_pipeline", None, 5, "t", "b", match="project_id must be a str"),
    bad("project-empty", "create_pipeline", "", 5, "t", "b", match="project_id must not be empty"),
    bad("ticket-None", "create_pipeline", Ref.PROJECT, None, "t", "b", match="ticket_id must be a str"),
    bad(
        "ticket-True",
        "create_pipeline",
        Ref.PROJECT,
        True,
        "t",
        "b",
        match="ticket_id must be a str, got bool",
    ),
    bad("ticket-negative", "create_pipeline", Ref.PROJECT, -1, "t", "b", match="ticket_id.*got -1"),
    bad("ticket-2**63", "create_pipeline", Ref.PROJECT, 2**63, "t", "b", match="ticket_id.*between"),
    bad("ticket-10**30", "create_pipeline", Ref.PROJECT, 10**30, "t", "b", match="ticket_id.*between"),
    bad(
        "ticket-float",
        "create_pipeline",
        Ref.PROJECT,
        4.2,
        "t",
        "b",
        match="ticket_id must be a str, got float",
    ),
    bad("ticket-empty", "create_pipeline", Ref.PROJECT, "", "t", "b", match="ticket_id must not be empty"),
    bad("ticket-blank", "create_pipeline", Ref.PROJECT, " ", "t", "b", match="ticket_id must not be blank"),
    bad(
        "ticket-space",
        "create_pipeline",
        Ref.PROJECT,
        "a b",
        "t",
        "b",
        match="ticket_id must not contain white",
    ),
    bad("ticket-newline", "create_pipeline", Ref.PROJECT, "1\n", "t", "b", match="whitespace"),
    bad(
        "ticket-65", "create_pipeline", Ref.PROJECT, "7" * 65, "t", "b", match="at most 64 characters, got 65"
    ),
    bad(
        "ticket-injection",
        "create_pipeline",
        Ref.PROJECT,
        "1; DROP TABLE pipelines; --",
        "t",
        "b",
        match="white",
    ),
    bad(
        "ticket-nul",
        "create_pipeline",
        Ref.PROJECT,
        "1\x00",
        "t",
        "b",
        match="ticket_id must not contain a NUL",
    ),
    bad(
        "ticket-surrogate", "create_pipeline", Ref.PROJECT, "\ud800", "t", "b", match="ticket_id is not valid"
    ),
    bad("title-None", "create_pipeline", Ref.PROJECT, 5, None, "b", match="ticket_title must be a str"),
    bad("title-int", "create_pipeline", Ref.PROJECT, 5, 5, "b", match="ticket_title must be a str, got int"),
    bad("title-empty", "create_pipeline", Ref.PROJECT, 5, "", "b", match="ticket_title must not be empty"),
    bad(
        "title-blank", "create_pipeline", Ref.PROJECT, 5, "  \n", "b", match="ticket_title must not be blank"
    ),
    bad("title-1001", "create_pipeline", Ref.PROJECT, 5, "x" * 1001, "b", match="at most 1000 characters"),
    bad(
        "title-nul",
        "create_pipeline",
        Ref.PROJECT,
        5,
        "\x00",
        "b",
        match="ticket_title must not contain a NUL",
    ),
    bad("body-None", "create_pipeline", Ref.PROJECT, 5, "t", "b", None, match="ticket_body must be a str"),
    bad(
        "body-int", "create_pipeline", Ref.PROJECT, 5, "t", "b", 7, match="ticket_body must be a str, got int"
    ),
    bad("body-1MiB", "create_pipeline", Ref.PROJECT, 5, "t", "b", OVER_1_MIB, match="at most 1048576 bytes"),
    bad(
        "body-1MiB-ascii",
        "create_pipeline",
        Ref.PROJECT,
        5,
        "t",
        "b",
        OVER_1_MIB_ASCII,
        match="1048576 bytes",
    ),
    bad(
        "body-nul",
        "create_pipeline",
        Ref.PROJECT,
        5,
        "t",
        "b",
        "a\x00b",
        match="ticket_body must not contain",
    ),
    bad("body-surrogate", "create_pipeline", Ref.PROJECT, 5, "t", "b", "\udfff", match="lone surrogate"),
    bad("branch-None", "create_pipeline", Ref.PROJECT, 5, "t", None, match="branch_name must be a str"),
    bad("branch-empty", "create_pipeline", Ref.PROJECT, 5, "t", "", match="branch_name must not be empty"),
    bad("branch-256", "create_pipeline", Ref.PROJECT, 5, "t", "b" * 256, match="at most 255 characters"),
    *(
        bad(f"branch-{name!r}", "create_pipeline", Ref.PROJECT, 5, "t", name, match="branch_name")
        for name in INVALID_BRANCHES
    ),
    case(
        "create_pipeline-same-ticket",
        call("create_pipeline", Ref.PROJECT, "1", "again", "b"),
        PipelineExistsError,
        "'1'",
    ),
    # -- get / list / update / claim / delete pipeline -------------------------------------------
    case("get_pipeline-unknown", call("get_pipeline", MISSING), PipelineNotFoundError, MISSING),
    case("get_pipeline-injection", call("get_pipeline", INJECTION), PipelineNotFoundError, "DROP"),
    bad("None", "get_pipeline", None, match="pipeline_id must be a str"),
    bad("int", "get_pipeline", 42, match="pipeline_id must be a str, got int"),
    case(
        "get_pipeline_by_ticket-unknown-ticket",
        call("get_pipeline_by_ticket", Ref.PROJECT, 999),
        PipelineNotFoundError,
        "'999'",
    ),
    case(
        "get_pipeline_by_ticket-unknown-project",
        call("get_pipeline_by_ticket", MISSING, 1),
        PipelineNotFoundError,
        MISSING,
    ),
    bad("ticket-space", "get_pipeline_by_ticket", Ref.PROJECT, "a b", match="ticket_id must not contain"),
    bad("ticket-None", "get_pipeline_by_ticket", Ref.PROJECT, None, match="ticket_id must be a str"),
    bad("state-upper", "list_pipelines", state="QUEUED", match="state must be a PipelineState.*'QUEUED'"),
    bad("state-unknown", "list_pipelines", state="done", match="'done'"),
    bad("state-int", "list_pipelines", state=3, match="state must be a PipelineState"),
    bad("state-empty", "list_pipelines", state="", match="state must be a PipelineState"),
    bad("project-int", "list_pipelines", project_id=5, match="project_id must be a str"),
    case(
        "update_pipeline-unknown",
        call("update_pipeline", MISSING, state="coding"),
        PipelineNotFoundError,
        MISSING,
    ),
    bad("id-None", "update_pipeline", None, state="coding", match="pipeline_id must be a str"),
    bad("state-upper", "update_pipeline", Ref.PIPELINE, state="QUEUED", match="'QUEUED'"),
    bad("state-title", "update_pipeline", Ref.PIPELINE, state="Queued", match="'Queued'"),
    bad("state-padded", "update_pipeline", Ref.PIPELINE, state="merged ", match="'merged '"),
    bad("state-empty", "update_pipeline", Ref.PIPELINE, state="", match="state must be"),
    bad("state-None", "update_pipeline", Ref.PIPELINE, state=None, match="state must be.*None"),
    bad("state-int", "update_pipeline", Ref.PIPELINE, state=1, match="state must be"),
    bad("pr_id-zero", "update_pipeline", Ref.PIPELINE, pr_id=0, match="pr_id must be between 1"),
    bad("pr_id-negative", "update_pipeline", Ref.PIPELINE, pr_id=-5, match="pr_id.*got -5"),
    bad("pr_id-bool", "update_pipeline", Ref.PIPELINE, pr_id=True, match="pr_id must be an int, got bool"),
    bad("pr_id-2**63", "update_pipeline", Ref.PIPELINE, pr_id=2**63, match="pr_id must be between"),
    bad("pr_id-10**30", "update_pipeline", Ref.PIPELINE, pr_id=10**30, match="pr_id must be between"),
    bad("pr_id-str", "update_pipeline", Ref.PIPELINE, pr_id="12", match="pr_id must be an int, got str"),
    bad("pr_id-float", "update_pipeline", Ref.PIPELINE, pr_id=1.0, match="pr_id must be an int, got float"),
    bad("pr_url-ftp", "update_pipeline", Ref.PIPELINE, pr_url="ftp://x", match="absolute http.*'ftp://x'"),
    bad(
        "pr_url-words",
        "update_pipeline",
        Ref.PIPELINE,
        pr_url="not a url",
        match="pr_url must not contain white",
    ),
    bad("pr_url-no-host", "update_pipeline", Ref.PIPELINE, pr_url="http://", match="absolute http"),
    bad("pr_url-js", "update_pipeline", Ref.PIPELINE, pr_url="javascript:alert(1)", match="javascript"),
    bad("pr_url-space", "update_pipeline", Ref.PIPELINE, pr_url="http://x y", match="whitespace"),
    bad("pr_url-relative", "update_pipeline", Ref.PIPELINE, pr_url="//host/pr/1", match="absolute http"),
    bad("pr_url-port", "update_pipeline", Ref.PIPELINE, pr_url="https://x:99999/", match="not a valid URL"),
    bad(
        "pr_url-2049", "update_pipeline", Ref.PIPELINE, pr_url="https://x/" + "a" * 2039, match="at most 2048"
    ),
    bad(
        "pr_url-nul",
        "update_pipeline",
        Ref.PIPELINE,
        pr_url="https://x\x00y",
        match="pr_url must not contain",
    ),
    bad("pr_url-int", "update_pipeline", Ref.PIPELINE, pr_url=5, match="pr_url must be a str"),
    bad("ci-negative", "update_pipeline", Ref.PIPELINE, retry_count_ci=-1, match="retry_count_ci.*got -1"),
    bad(
        "ci-None", "update_pipeline", Ref.PIPELINE, retry_count_ci=None, match="retry_count_ci must be an int"
    ),
    bad("ci-bool", "update_pipeline", Ref.PIPELINE, retry_count_ci=True, match="got bool"),
    bad("ci-float", "update_pipeline", Ref.PIPELINE, retry_count_ci=1.0, match="got float"),
    bad("ci-2**31", "update_pipeline", Ref.PIPELINE, retry_count_ci=2**31, match="between 0 and 1000000"),
    bad(
        "ci-1000001", "update_pipeline", Ref.PIPELINE, retry_count_ci=10**6 + 1, match="between 0 and 1000000"
    ),
    bad(
        "ci-2**63",
        "update_pipeline",
        Ref.PIPELINE,
        retry_count_ci=2**63,
        match="retry_count_ci must be between",
    ),
    bad("review-str", "update_pipeline", Ref.PIPELINE, retry_count_review="1", match="retry_count_review"),
    bad(
        "review-2**31", "update_pipeline", Ref.PIPELINE, retry_count_review=2**31, match="retry_count_review"
    ),
    bad("feedback-int", "update_pipeline", Ref.PIPELINE, feedback=5, match="feedback must be a str"),
    bad(
        "feedback-1MiB",
        "update_pipeline",
        Ref.PIPELINE,
        feedback=OVER_1_MIB,
        match="feedback must be at most",
    ),
    bad(
        "feedback-nul",
        "update_pipeline",
        Ref.PIPELINE,
        feedback="\x00",
        match="feedback must not contain a NUL",
    ),
    bad(
        "feedback-surrogate",
        "update_pipeline",
        Ref.PIPELINE,
        feedback="\ud800x",
        match="feedback is not valid",
    ),
    bad("version-zero", "update_pipeline", Ref.PIPELINE, expected_version=0, match="expected_version.*got 0"),
    bad("version-negative", "update_pipeline", Ref.PIPELINE, expected_version=-1, match="expected_version"),
    bad(
        "version-bool", "update_pipeline", Ref.PIPELINE, expected_version=True, match="expected_version.*bool"
    ),
    bad("version-str", "update_pipeline", Ref.PIPELINE, expected_version="2", match="expected_version.*str"),
    bad("version-2**31", "update_pipeline", Ref.PIPELINE, expected_version=2**31, match="expected_version"),
    case(
        "update_pipeline-stale",
        call("update_pipeline", Ref.PIPELINE, state="merged", expected_version=1),
        StaleVersionError,
        "at version 2, not the expected 1",
    ),
    bad("state-upper", "claim_pipeline", state="QUEUED", match="state must be"),
    bad("new_state-unknown", "claim_pipeline", new_state="bogus", match="new_state must be.*'bogus'"),
    bad("new_state-None", "claim_pipeline", new_state=None, match="new_state must be"),
    bad("project-int", "claim_pipeline", project_id=5, match="project_id must be a str"),
    case("delete_pipeline-unknown", call("delete_pipeline", MISSING), PipelineNotFoundError, MISSING),
    bad("None", "delete_pipeline", None, match="pipeline_id must be a str"),
    # -- history writes ------------------------------------------------------------------------------
    bad("None", "save_to_history", None, match="pipeline must be a Pipeline record, got NoneType"),
    bad("id", "save_to_history", Ref.PIPELINE, match="pipeline must be a Pipeline record, got str"),
    case(
        "save_to_history-project",
        lambda w: w.store.save_to_history(w.project),  # type: ignore[arg-type]
        ValidationError,
        "got Project",
    ),
    case(
        "save_to_history-naive-created_at",
        lambda w: w.store.save_to_history(replace(w.pipeline, created_at=NAIVE)),
        ValidationError,
        "pipeline.created_at must be a timezone-aware",
    ),
    case(
        "save_to_history-bad-state",
        lambda w: w.store.save_to_history(replace(w.pipeline, state="bogus")),  # type: ignore[arg-type]
        ValidationError,
        "pipeline.state must be",
    ),
    case(
        "save_to_history-negative-retries",
        lambda w: w.store.save_to_history(replace(w.pipeline, retry_count_ci=-1)),
        ValidationError,
        "pipeline.retry_count_ci",
    ),
    case(
        "save_to_history-bad-branch",
        lambda w: w.store.save_to_history(replace(w.pipeline, branch_name="a..b")),
        ValidationError,
        "pipeline.branch_name",
    ),
    case("archive_pipeline-unknown", call("archive_pipeline", MISSING), PipelineNotFoundError, MISSING),
    case(
        "archive_pipeline-archived", call("archive_pipeline", Ref.HISTORY), PipelineNotFoundError, "not found"
    ),
    bad("empty", "archive_pipeline", "", match="pipeline_id must not be empty"),
    bad("int", "archive_pipeline", 5, match="pipeline_id must be a str"),
    bad("None-record", "import_history", [None], match="expected a PipelineHistory record, got NoneType"),
    case(
        "import_history-project-record",
        lambda w: w.store.import_history([w.project]),  # type: ignore[list-item]
        ValidationError,
        "expected a PipelineHistory record, got Project",
    ),
    *(
        case(f"import_history-{label}", import_changed(changes), ValidationError, match)
        for label, changes, match in IMPORT_CHANGES
    ),
    case(
        "import_history-batch_size-zero",
        lambda w: w.store.import_history([replace(w.record, id=MISSING)], batch_size=0),
        ValidationError,
        "batch_size must be between 1",
    ),
    bad("before-None", "prune_history", before=None, match="before must be a timezone-aware datetime"),
    bad(
        "before-None-dry", "prune_history", before=None, dry_run=True, match="before must be a timezone-aware"
    ),
    bad("before-naive", "prune_history", before=NAIVE, match="before must be a timezone-aware datetime"),
    bad("before-str", "prune_history", before="2999-01-01", match="before must be a timezone-aware"),
    bad("batch-zero", "prune_history", before=AWARE, batch_size=0, match="batch_size must be between 1"),
    bad("batch-bool", "prune_history", before=AWARE, batch_size=True, match="batch_size must be an int"),
    bad("project-int", "prune_history", before=AWARE, project_id=5, match="project_id must be a str"),
    # -- history reads -----------------------------------------------------------------------------
    bad("limit-zero", "get_history", limit=0, match="limit must be between 1 and 10000, got 0"),
    bad("limit-negative", "get_history", limit=-1, match="limit must be between"),
    bad("limit-10001", "get_history", limit=10001, match="limit must be between 1 and 10000"),
    bad("limit-bool", "get_history", limit=True, match="limit must be an int, got bool"),
    bad("limit-str", "get_history", limit="10", match="limit must be an int, got str"),
    bad("limit-None", "get_history", limit=None, match="limit must be an int"),
    bad("offset-negative", "get_history", offset=-1, match="offset must be between 0"),
    bad("offset-2**63", "get_history", offset=2**63, match="offset must be between"),
    bad("state-upper", "get_history", final_state="MERGED", match="final_state must be.*'MERGED'"),
    bad("project-int", "get_history", project_id=5, match="project_id must be a str"),
    bad("before-token", "get_history", before="abc", match="before must be a HistoryCursor, got str"),
    bad("since-naive", "get_history", since=NAIVE, match="since must be a timezone-aware datetime"),
    bad("since-date", "get_history", since=date(2025, 1, 1), match="since must be a timezone-aware"),
    bad("until-str", "get_history", until="2025-01-01", match="until must be a timezone-aware"),
    bad("limit-zero", "get_history_page", limit=0, match="limit must be between"),
    bad("before-str", "get_history_page", before="x", match="before must be a HistoryCursor"),
    case("get_history_record-unknown", call("get_history_record", MISSING), HistoryNotFoundError, MISSING),
    case(
        "get_history_record-active",
        call("get_history_record", Ref.PIPELINE),
        HistoryNotFoundError,
        "not found",
    ),
    bad("None", "get_history_record", None, match="history_id must be a str"),
    bad("empty", "get_history_record", "", match="history_id must not be empty"),
    bad("since-naive", "get_history_stats", since=NAIVE, match="since must be a timezone-aware"),
    bad("until-str", "get_history_stats", until="x", match="until must be a timezone-aware"),
    bad("project-int", "get_history_stats", 5, match="project_id must be a str"),
    bad("until-naive", "get_duration_percentiles", until=NAIVE, match="until must be a timezone-aware"),
    bad("project-empty", "get_duration_percentiles", "", match="project_id must not be empty"),
    bad("state-unknown", "count_history", final_state="x", match="final_state must be"),
    bad("since-int", "count_history", since=0, match="since must be a timezone-aware"),
    bad("batch-zero", "iter_history", batch_size=0, match="batch_size must be between 1"),
    bad("batch-huge", "iter_history", batch_size=100_001, match="batch_size must be between 1 and 100000"),
    bad("state-upper", "iter_history", final_state="FAILED", match="final_state must be"),
]


@pytest.fixture
def world(store: StateStore) -> World:
    project = store.create_project("Acme", "acme/widgets", github_project_id=3)
    pipeline = store.create_pipeline(project.id, 1, "Active", "vibecc/1", ticket_body="body")
    pipeline = store.update_pipeline(pipeline.id, pr_id=10, pr_url="https://github.com/acme/widgets/pull/10")
    done = store.create_pipeline(project.id, 2, "Done", "vibecc/2")
    store.update_pipeline(done.id, state="merged", retry_count_ci=1)
    record = store.archive_pipeline(done.id)
    return World(store, project, pipeline, record)


def test_enough_hostile_cases() -> None:
    assert len(CASES) >= 80
    assert len({p.id for p in CASES}) == len(CASES)


@pytest.mark.parametrize(("action", "error", "match"), CASES)
def test_hostile_input_raises_and_changes_nothing(
    world: World, store_url: str, action: Action, error: type[Exception], match: str
) -> None:
    before = helpers.snapshot(store_url)

    with pytest.raises(error, match=match):
        action(world)

    assert helpers.snapshot(store_url) == before
    assert world.store.get_pipeline(world.pipeline.id) == world.pipeline


# -- valid but awkward text ---------------------------------------------------------------------------

AWKWARD = [
    'it\'s "quoted"',
    "semi; colon; --comment",
    INJECTION,
    "Robert'); DROP TABLE pipelines;--",
    "1' OR '1'='1",
    "back\\slash and %percent_ and _under",
    "emoji 🚀🔥👩‍💻",
    "CJK 中文字符 日本語 한국어",
    "right-to-left עברית العربية \u200f",
    "tabs\tand\nnewlines\r\n",
    "  leading and trailing spaces  ",
    "\u00a0non-breaking\u2028separator",
    "combining e\u0301 vs \u00e9",
    "𠜎𠜱 CJK extension B, outside the BMP",
]


@pytest.mark.parametrize("value", AWKWARD)
def test_awkward_text_round_trips_verbatim(store: StateStore, value: str) -> None:
    project = store.create_project(value, "acme/widgets")
    pipeline = store.create_pipeline(project.id, "T-1", value, "vibecc/1", ticket_body=value * 3)
    pipeline = store.update_pipeline(pipeline.id, feedback=value, state="merged")
    other = store.create_pipeline(project.id, "T-2", value[::-1], "vibecc/2", ticket_body=value)

    assert store.get_project(project.id).name == value
    assert store.get_project_by_repo("acme/widgets").name == value
    assert [p.name for p in store.list_projects()] == [value]
    stored = store.get_pipeline(pipeline.id)
    assert (stored.ticket_title, stored.ticket_body, stored.feedback) == (value, value * 3, value)
    assert store.get_pipeline(other.id).ticket_title == value[::-1]
    assert {p.ticket_body for p in store.list_pipelines(project.id)} == {value * 3, value}
    record = store.archive_pipeline(pipeline.id)
    assert record.ticket_title == value
    assert store.get_history_record(pipeline.id).ticket_title == value
    assert store.update_project(project.id, name=value + "!").name == value + "!"
    assert store.get_project(project.id).name == value + "!"


def test_longest_accepted_values_round_trip(store: StateStore) -> None:
    name = "名" * 255
    title = "🚀" * 1000
    body = "é" * 2**19  # exactly 1 MiB of UTF-8
    url = "https://x/" + "a" * 2038
    project = store.create_project(name, "a" * 39 + "/" + "r" * 100, base_branch="b" * 255)
    pipeline = store.create_pipeline(project.id, "9" * 64, title, "c" * 255, ticket_body=body)
    pipeline = store.update_pipeline(
        pipeline.id, feedback=body, pr_url=url, pr_id=2**63 - 1, retry_count_ci=10**6, state="merged"
    )

    assert store.get_project(project.id) == project
    assert store.get_pipeline(pipeline.id) == pipeline
    assert len(pipeline.pr_url or "") == 2048
    assert store.archive_pipeline(pipeline.id).pr_id == 2**63 - 1


# -- the branch check against git ----------------------------------------------------------------------

BRANCH_CANDIDATES = [
    # accepted by git
    "main", "feature/x", "a/b/c", "vibecc/42-fix-bug", "release-1.0", "v1.2.3", "UPPER", "a_b", "a+b",
    "a=b", "a,b", "a;b", "a'b", 'a"b', "a#b", "a%b", "a&b", "a!b", "a$b", "a(b)", "a{b}", "a<b>", "a|b",
    "a`b", "ü", "日本語", "emoji-🚀", "a@b", "@a", "a@", "a./b", "x.y", "a-", "a.b.c", "lock", "a.lock.b",
    "a/b.locked", "HEAD/x", "x/HEAD", "refs/heads/x", "a/@", "a\u00a0b", "a{b}c",
    # refused by git
    *INVALID_BRANCHES, "", " ", "a\tb", "a\x7fb", "a\x01b", "x/", "x..", ".", "..", "a/./b", "a/../b",
    "a.lock/b", "a/b.lock", "@{-1}", "a@{", "-", "--x", "a b/c", "a:b/c", "*", "a/*", "?", "[", "~", "^",
    "\\", "x/.lock", "a/.b/c", ".hidden",
]  # fmt: skip
# Refused by the store although `git check-ref-format --branch` accepts it: git checks the full
# ref refs/heads/@ there, but a branch named "@" is ambiguous with "@" meaning HEAD.
STRICTER_THAN_GIT = {"@"}


def git_accepts(name: str, cwd: Path, git: str) -> bool:
    result = subprocess.run(
        [git, "check-ref-format", "--branch", name], cwd=cwd, capture_output=True, check=False
    )
    return result.returncode == 0


def store_accepts(name: str) -> bool:
    try:
        check.branch("branch_name", name)
    except ValidationError:
        return False
    return True


def test_branch_check_agrees_with_git(tmp_path: Path) -> None:
    git = shutil.which("git")
    if git is None:
        pytest.skip("git is not installed")
    assert len(BRANCH_CANDIDATES) >= 60

    disagreements = {
        name: (git_accepts(name, tmp_path, git), store_accepts(name))
        for name in BRANCH_CANDIDATES
        if git_accepts(name, tmp_path, git) != store_accepts(name)
    }

    assert disagreements == dict.fromkeys(STRICTER_THAN_GIT, (True, False))
    assert sum(store_accepts(n) for n in BRANCH_CANDIDATES) >= 40


@pytest.mark.parametrize(
    ("completed_at", "record_id", "match"),
    [
        (NAIVE, MISSING, "completed_at must be an aware datetime, got datetime"),
        ("2025", MISSING, "completed_at must be an aware datetime, got str"),
        (datetime(1, 1, 1, tzinfo=timezone(timedelta(hours=5))), MISSING, "out of range in UTC"),
        (AWARE, 5, "id must be a non-empty str, got int"),
        (AWARE, "", "id must be a non-empty str"),
    ],
)
def test_a_history_cursor_cannot_be_made_of_what_no_page_ends_with(
    completed_at: Any, record_id: Any, match: str
) -> None:
    """A cursor is checked when made, so get_history(before=...) never sees a malformed one."""
    with pytest.raises(ValidationError, match=match):
        HistoryCursor(completed_at, record_id)
