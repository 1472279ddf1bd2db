"""Hostile input to the pipeline calls (create, get, get by ticket, list, update, claim, delete):
the specific error, and a database left exactly as it was (see tests/bad_input.py)."""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest

from vibecc.state_store import (
    PipelineExistsError,
    PipelineNotFoundError,
    ProjectNotFoundError,
    StaleVersionError,
    StateStore,
)

if TYPE_CHECKING:
    from tests import bad_input
    from tests.bad_input import (
        INJECTION,
        INVALID_BRANCHES,
        MISSING,
        OVER_1_MIB,
        OVER_1_MIB_ASCII,
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
        INVALID_BRANCHES,
        MISSING,
        OVER_1_MIB,
        OVER_1_MIB_ASCII,
        Action,
        Ref,
        bad,
        call,
        case,
    )

CASES = [
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
]


@pytest.mark.parametrize(("action", "error", "match"), CASES)
def test_hostile_input_raises_and_changes_nothing(
    store: StateStore, store_url: str, action: Action, error: type[Exception], match: str
) -> None:
    bad_input.check(store, store_url, action, error, match)
