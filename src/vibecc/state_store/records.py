"""Immutable records handed to callers, and the pipeline state enum."""

from __future__ import annotations

import base64
import binascii
import enum
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from typing import Final

from .errors import ValidationError


class Unset(enum.Enum):
    token = 0


UNSET: Final = Unset.token
"""Default of optional update arguments: the field is left as it is."""


class Clear(enum.Enum):
    token = 0


CLEAR: Final = Clear.token
"""Passed to update_project for github_project_id: remove the stored value (None leaves it)."""


class PipelineState(StrEnum):
    """Where a pipeline is; MERGED and FAILED are terminal."""

    QUEUED = "queued"
    CODING = "coding"
    TESTING = "testing"
    REVIEW = "review"
    MERGED = "merged"
    FAILED = "failed"

    @property
    def is_terminal(self) -> bool:
        """True for MERGED and FAILED: the pipeline is finished."""
        return self in (PipelineState.MERGED, PipelineState.FAILED)

    @classmethod
    def active(cls) -> tuple[PipelineState, ...]:
        """The states of a pipeline that is still being worked on."""
        return tuple(state for state in cls if not state.is_terminal)


@dataclass(frozen=True, slots=True)
class Project:
    """A repository the orchestrator works on, with its configuration."""

    id: str
    name: str
    repo: str
    base_branch: str
    github_project_id: int | None
    max_retries_ci: int
    max_retries_review: int
    created_at: datetime
    updated_at: datetime


@dataclass(frozen=True, slots=True)
class DeletedProject:
    """A project that was deleted, as it was named then; its history stays in the store."""

    id: str
    name: str
    repo: str
    deleted_at: datetime


@dataclass(frozen=True, slots=True)
class Pipeline:
    """An active ticket being processed; `version` grows by one on every write."""

    id: str
    project_id: str
    ticket_id: str
    ticket_title: str
    ticket_body: str
    state: PipelineState
    branch_name: str
    pr_id: int | None
    pr_url: str | None
    retry_count_ci: int
    retry_count_review: int
    feedback: str | None
    created_at: datetime
    updated_at: datetime
    version: int

    @property
    def pipeline_state(self) -> PipelineState:
        """Read-only alias of `state`, the name earlier orchestrator code uses."""
        return self.state


@dataclass(frozen=True, slots=True)
class PipelineHistory:
    """A finished pipeline, kept for the record."""

    id: str
    project_id: str
    ticket_id: str
    ticket_title: str
    final_state: PipelineState
    branch_name: str
    pr_id: int | None
    pr_url: str | None
    total_retries_ci: int
    total_retries_review: int
    started_at: datetime
    completed_at: datetime
    duration_seconds: int

    @property
    def final_pipeline_state(self) -> PipelineState:
        """Read-only alias of `final_state`, the name earlier orchestrator code uses."""
        return self.final_state


@dataclass(frozen=True, slots=True)
class Transition:
    """One change of a pipeline's state, as the timeline shows it.

    `seconds_in_state` is how long the pipeline stayed in `to_state`: until the next
    transition, or until it was archived; None while the pipeline is still in it. A
    `reconstructed` transition was made when the store began keeping timelines, from what the
    pipeline recorded then (its creation time and its state): the states between are unknown.
    """

    pipeline_id: str
    seq: int
    from_state: PipelineState | None
    to_state: PipelineState
    at: datetime
    retry_count_ci: int
    retry_count_review: int
    feedback: str | None
    reconstructed: bool
    seconds_in_state: float | None


@dataclass(frozen=True, slots=True)
class StageStats:
    """Time spent in one state by finished pipelines: how many visits, their total and mean,
    and p50/p95 (None without visits). Visits of pipelines whose states before the store kept
    timelines are unknown (reconstructed transitions) are not counted."""

    state: PipelineState
    visits: int
    total_seconds: float
    mean_seconds: float | None
    p50_seconds: float | None
    p95_seconds: float | None


@dataclass(frozen=True, slots=True)
class HistoryStats:
    """Totals and averages over finished pipelines; all zero on an empty history."""

    total_completed: int
    total_merged: int
    total_failed: int
    avg_duration_seconds: float
    avg_retries_ci: float
    avg_retries_review: float

    @property
    def success_rate(self) -> float:
        """Share of finished pipelines that merged, 0.0 to 1.0 (0.0 when none finished)."""
        return self.total_merged / self.total_completed if self.total_completed else 0.0


@dataclass(frozen=True, slots=True)
class HistoryCursor:
    """A position in the history order (completed_at, id), newest first.

    Pass it as `before=` to get the rows after it; it stays valid while new rows arrive.
    `str(cursor)` is an opaque token and `HistoryCursor.parse(token)` reads it back.
    """

    completed_at: datetime
    id: str

    def __post_init__(self) -> None:
        moment, key = self.completed_at, self.id
        try:
            aware = isinstance(moment, datetime) and moment.utcoffset() is not None
        except Exception:  # a tzinfo whose utcoffset() misbehaves
            aware = False
        if not aware:
            shown = type(moment).__name__
            raise ValidationError(f"a history cursor's completed_at must be an aware datetime, got {shown}")
        try:
            # Handed out in UTC like every timestamp of the store (a frozen record: set once here).
            object.__setattr__(self, "completed_at", moment.astimezone(UTC))
        except OverflowError:
            raise ValidationError("a history cursor's completed_at is out of range in UTC") from None
        except Exception:  # a tzinfo whose utcoffset() misbehaves
            raise ValidationError("a history cursor's completed_at has no valid UTC offset") from None
        if not isinstance(key, str) or not key:
            raise ValidationError(f"a history cursor's id must be a non-empty str, got {type(key).__name__}")

    @classmethod
    def after(cls, record: PipelineHistory) -> HistoryCursor:
        """The cursor that continues a page ending with `record`."""
        if not isinstance(record, PipelineHistory):
            raise ValidationError(f"a cursor follows a PipelineHistory record, got {type(record).__name__}")
        return cls(record.completed_at, record.id)

    @classmethod
    def parse(cls, token: object) -> HistoryCursor:
        """Read a token made by `str(cursor)`.

        Raises:
            ValidationError: the token was not made by `str(cursor)` (a ValueError too).
        """
        if not isinstance(token, str):
            raise ValidationError(f"a history cursor token is a str, got {type(token).__name__}")
        shown = token if len(token) <= 60 else token[:57] + "..."
        try:
            raw = base64.urlsafe_b64decode(token.encode("ascii")).decode("utf-8")
            stamp, _, record_id = raw.partition("|")
            completed_at = datetime.fromisoformat(stamp)
            if not record_id or completed_at.tzinfo is None:
                raise ValueError("no id or no UTC offset")
            return cls(completed_at.astimezone(UTC), record_id)
        except (ValueError, OverflowError, UnicodeError, binascii.Error) as exc:
            raise ValidationError(f"not a history cursor: {shown!r}") from exc

    def __str__(self) -> str:
        raw = f"{self.completed_at.astimezone(UTC).isoformat()}|{self.id}"
        return base64.urlsafe_b64encode(raw.encode("utf-8")).decode("ascii")


@dataclass(frozen=True, slots=True)
class HistoryPage:
    """One page of history and the cursor of the next page (None on the last page)."""

    items: tuple[PipelineHistory, ...]
    next_cursor: HistoryCursor | None


@dataclass(frozen=True, slots=True)
class DurationPercentiles:
    """Duration percentiles of finished pipelines, in seconds (None when none finished)."""

    p50: float | None
    p95: float | None


@dataclass(frozen=True, slots=True)
class ImportResult:
    """What import_history did: rows added, and rows skipped because their id was present."""

    inserted: int
    skipped: int


@dataclass(frozen=True, slots=True)
class Change:
    """One committed write, as the change log keeps it.

    `seq` grows by one per change in commit order on both engines, so a reader that has seen
    every change up to some `seq` has missed none before it. `kind` is "project", "pipeline" or
    "history"; `op` what happened to the record: "created", "updated", "claimed", "deleted",
    "archived" (a pipeline moved to history), "imported" or "pruned". `version` is a pipeline's
    version after the write (None for other kinds and for removals); `project_id` the record's
    project. `at` is when the write committed, to the microsecond of the writer's clock.
    """

    seq: int
    kind: str
    entity_id: str
    project_id: str | None
    op: str
    version: int | None
    at: datetime


@dataclass(frozen=True, slots=True)
class ChangePage:
    """Changes after a cursor, oldest first, and the cursor to read on from (pass it to the
    next changes_since or wait_for_changes call)."""

    changes: tuple[Change, ...]
    next_cursor: int
