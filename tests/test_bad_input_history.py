"""Hostile input to the history calls (save, archive, import, prune, and every read), and history
cursors made of what no page ends with: the specific error, and a database left exactly as it
was (see tests/bad_input.py)."""

from __future__ import annotations

from dataclasses import replace
from datetime import date, datetime, timedelta, timezone
from typing import TYPE_CHECKING, Any

import pytest

from vibecc.state_store import (
    HistoryCursor,
    HistoryNotFoundError,
    PipelineNotFoundError,
    StateStore,
    ValidationError,
)

if TYPE_CHECKING:
    from tests import bad_input
    from tests.bad_input import (
        AWARE,
        MISSING,
        NAIVE,
        Action,
        Ref,
        bad,
        call,
        case,
        import_changed,
    )
else:
    import bad_input
    from bad_input import (
        AWARE,
        MISSING,
        NAIVE,
        Action,
        Ref,
        bad,
        call,
        case,
        import_changed,
    )

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


@pytest.mark.parametrize(("action", "error", "match"), CASES)
def test_hostile_input_raises_and_changes_nothing(
    store: StateStore, store_url: str, action: Action, error: type[Exception], match: str
) -> None:
    bad_input.check(store, store_url, action, error, match)


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
