"""Field rules: what a valid argument or record field is, the same on every engine.

Each record has one table of its fields' rules (PROJECT_FIELDS, PIPELINE_FIELDS,
HISTORY_FIELDS), used by the calls that create and update it and by the checks of records
handed back in; text limits are the lengths of the models' columns. The checks of plain values
they are built from live in values.py and are named here too (check.integer, check.text, ...).
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import replace
from typing import Any
from urllib.parse import urlsplit

from sqlalchemy import Column

from .errors import ValidationError
from .models import pipelines, projects
from .records import Pipeline, PipelineHistory, PipelineState, Transition
from .values import MAX_INT as MAX_INT
from .values import callback as callback
from .values import describe as _describe
from .values import flag as flag
from .values import integer as integer
from .values import seconds as seconds
from .values import text as text
from .values import timestamp as timestamp
from .values import wait_seconds as wait_seconds


def _length(column: Column[Any]) -> int:
    length = getattr(column.type, "length", None)
    assert isinstance(length, int), column  # noqa: S101 (the models give every checked column a length)
    return length


MAX_NAME = _length(projects.c.name)
MAX_BRANCH = _length(pipelines.c.branch_name)
MAX_ID = _length(projects.c.id)
MAX_TICKET_ID = _length(pipelines.c.ticket_id)
MAX_TICKET_TITLE = _length(pipelines.c.ticket_title)
MAX_URL = _length(pipelines.c.pr_url)
MAX_TEXT_BYTES = 1024 * 1024
MAX_RETRIES_LIMIT = 1000
MAX_INT32 = 2**31 - 1
"""The largest value of an Integer column (version) on PostgreSQL."""
MAX_RETRY_COUNT = 1_000_000
"""Retries of one pipeline; far above any max_retries setting (at most MAX_RETRIES_LIMIT)."""
MAX_DURATION_SECONDS = 36_525 * 86_400
"""A hundred years: no pipeline runs longer. Bounded so that the kept totals (BIGINT sums)
cannot overflow before billions of rows, on either engine."""

_OWNER = re.compile(r"[A-Za-z0-9](?:-?[A-Za-z0-9]){0,38}")
_REPO_NAME = re.compile(r"[A-Za-z0-9._-]{1,100}")
# What `git check-ref-format` forbids anywhere in a ref: control characters, space, ~ ^ : ? * [ \
_BRANCH_BAD_CHARS = re.compile(r"[\x00-\x20\x7f~^:?*\[\\]")


def retry_count(field: str, value: Any) -> int:
    """A retry counter: 0 to MAX_RETRY_COUNT."""
    return integer(field, value, minimum=0, maximum=MAX_RETRY_COUNT)


def duration(field: str, value: Any) -> int:
    """Whole seconds, 0 to a hundred years."""
    return integer(field, value, minimum=0, maximum=MAX_DURATION_SECONDS)


def optional_integer(field: str, value: Any, *, minimum: int) -> int | None:
    return None if value is None else integer(field, value, minimum=minimum)


def repo(value: Any) -> str:
    """`owner/name` by GitHub's rules."""
    found: str = text("repo", value, max_chars=140)
    owner, slash, repo_name = found.partition("/")
    if not slash or not _OWNER.fullmatch(owner):
        raise ValidationError(
            f"repo must be 'owner/name' with a GitHub owner (letters, digits, single inner "
            f"hyphens, at most 39), got {_describe(found)}"
        )
    if not _REPO_NAME.fullmatch(repo_name) or repo_name in (".", ".."):
        raise ValidationError(
            f"repo must be 'owner/name' with a GitHub repository name (letters, digits, '.', '_', "
            f"'-', at most 100, not '.' or '..'), got {_describe(found)}"
        )
    return found


def branch(field: str, value: Any) -> str:
    """A branch name that `git check-ref-format --branch` accepts."""
    found: str = text(field, value, max_chars=MAX_BRANCH)
    problem = _branch_problem(found)
    if problem:
        raise ValidationError(f"{field} is not a valid git branch name ({problem}): {_describe(found)}")
    return found


def _branch_problem(value: str) -> str | None:
    if value.startswith("-"):
        return "starts with '-'"
    if value in ("@", "HEAD"):
        return f"'{value}' is reserved"
    if _BRANCH_BAD_CHARS.search(value):
        return "contains a space, control character or one of ~ ^ : ? * [ \\"
    if ".." in value or "@{" in value:
        return "contains '..' or '@{'"
    if value.startswith("/") or value.endswith("/") or "//" in value:
        return "has an empty path component"
    if value.endswith("."):
        return "ends with '.'"
    for component in value.split("/"):
        if component.startswith("."):
            return "a component starts with '.'"
        if component.endswith(".lock"):
            return "a component ends with '.lock'"
    return None


def ticket_id(value: Any) -> str:
    """A ticket reference; an int is stored as its decimal string."""
    if isinstance(value, int) and not isinstance(value, bool):
        return str(integer("ticket_id", value, minimum=0))
    found = text("ticket_id", value, max_chars=MAX_TICKET_ID)
    if any(ch.isspace() for ch in found):
        raise ValidationError(f"ticket_id must not contain whitespace, got {_describe(found)}")
    return found


def stored_ticket_id(field: str, value: Any) -> str:
    """The ticket id of a record handed back in (a str, as the store hands it out)."""
    if not isinstance(value, str):
        raise ValidationError(f"{field} must be a str, got {type(value).__name__} {_describe(value)}")
    return ticket_id(value)


def long_text(field: str, value: Any) -> str:
    """ticket_body or feedback: any text up to 1 MiB, empty allowed."""
    return text(field, value, max_bytes=MAX_TEXT_BYTES, allow_empty=True, allow_blank=True)


def pr_url(value: Any) -> str:
    """An absolute http(s) URL."""
    found: str = text("pr_url", value, max_chars=MAX_URL)
    if any(ch.isspace() or ord(ch) < 0x20 or ord(ch) == 0x7F for ch in found):
        raise ValidationError(f"pr_url must not contain whitespace or control characters: {_describe(found)}")
    try:
        parts = urlsplit(found)
        parts.port  # noqa: B018  (raises on a malformed port)
    except ValueError as exc:
        raise ValidationError(f"pr_url is not a valid URL ({exc}): {_describe(found)}") from None
    if parts.scheme.lower() not in ("http", "https") or not parts.hostname:
        raise ValidationError(f"pr_url must be an absolute http(s) URL, got {_describe(found)}")
    return found


def state(field: str, value: Any) -> PipelineState:
    """A PipelineState or its value."""
    if isinstance(value, PipelineState):
        return value
    if isinstance(value, str):
        try:
            return PipelineState(value)
        except ValueError:
            pass
    allowed = ", ".join(s.value for s in PipelineState)
    raise ValidationError(f"{field} must be a PipelineState or one of {allowed}; got {_describe(value)}")


def identifier(field: str, value: Any) -> str:
    """An id as handed out by the store: a non-empty str no longer than the id columns (36), so
    every engine can compare and store it; unknown ids are NotFound, not invalid."""
    return text(field, value, max_chars=MAX_ID)


def identifiers(field: str, value: Any, *, maximum: int) -> list[str]:
    """Ids given as an iterable (never one str): at most `maximum` of them, each an identifier()."""
    if isinstance(value, str | bytes | bytearray) or not isinstance(value, Iterable):
        raise ValidationError(f"{field} must be an iterable of ids, got {type(value).__name__}")
    found = list(itertools.islice(value, maximum + 1))
    if len(found) > maximum:
        raise ValidationError(f"{field} must hold at most {maximum:,} ids")
    return [identifier(f"{field}[{i}]", item) for i, item in enumerate(found)]


def optional_identifier(field: str, value: Any) -> str | None:
    """None (no filter) or an id, as identifier() checks it."""
    return None if value is None else identifier(field, value)


def retries_limit(field: str, value: Any) -> int:
    """A project's max_retries_ci / max_retries_review."""
    return integer(field, value, minimum=0, maximum=MAX_RETRIES_LIMIT)


def version(field: str, value: Any) -> int:
    """A pipeline version: 1 up to the largest value of its column."""
    return integer(field, value, minimum=1, maximum=MAX_INT32)


def finished(pipeline_id: str, value: PipelineState) -> PipelineState:
    """Only MERGED and FAILED pipelines go to history."""
    if not value.is_terminal:
        raise ValidationError(
            f"pipeline {pipeline_id} is {value.value}; only merged or failed pipelines go to history"
        )
    return value


Rule = Callable[[str, Any], Any]
"""Checks the value of the named field; returns it as stored (or raises ValidationError)."""


def _optional(rule: Rule) -> Rule:
    return lambda field, value: None if value is None else rule(field, value)


def _positive(field: str, value: Any) -> int:
    return integer(field, value, minimum=1)


def _name(field: str, value: Any) -> str:
    return text(field, value, max_chars=MAX_NAME)


def _title(field: str, value: Any) -> str:
    return text(field, value, max_chars=MAX_TICKET_TITLE)


def _url(field: str, value: Any) -> str:
    return pr_url(value)


def _repo(field: str, value: Any) -> str:
    return repo(value)


PROJECT_FIELDS: dict[str, Rule] = {
    "name": _name,
    "repo": _repo,
    "base_branch": branch,
    "github_project_id": _optional(_positive),
    "max_retries_ci": retries_limit,
    "max_retries_review": retries_limit,
}
"""The fields of a project a caller sets."""
PIPELINE_FIELDS: dict[str, Rule] = {
    "id": identifier,
    "project_id": identifier,
    "ticket_id": stored_ticket_id,
    "ticket_title": _title,
    "ticket_body": long_text,
    "state": state,
    "branch_name": branch,
    "pr_id": _optional(_positive),
    "pr_url": _optional(_url),
    "retry_count_ci": retry_count,
    "retry_count_review": retry_count,
    "feedback": _optional(long_text),
    "created_at": timestamp,
    "updated_at": timestamp,
    "version": version,
}
HISTORY_FIELDS: dict[str, Rule] = {
    "id": identifier,
    "project_id": identifier,
    "ticket_id": stored_ticket_id,
    "ticket_title": _title,
    "final_state": state,
    "branch_name": branch,
    "pr_id": _optional(_positive),
    "pr_url": _optional(_url),
    "total_retries_ci": retry_count,
    "total_retries_review": retry_count,
    "started_at": timestamp,
    "completed_at": timestamp,
    "duration_seconds": duration,
}


def project_field(field: str, value: Any) -> Any:
    """The value of a project's field, checked by its rule."""
    return PROJECT_FIELDS[field](field, value)


def pipeline_field(field: str, value: Any) -> Any:
    """The value of a pipeline's field, checked by its rule."""
    return PIPELINE_FIELDS[field](field, value)


def pipeline_record(pipeline: Any) -> Pipeline:
    """Every field of a Pipeline record handed back in (save_to_history)."""
    if not isinstance(pipeline, Pipeline):
        raise ValidationError(f"pipeline must be a Pipeline record, got {type(pipeline).__name__}")
    for field, rule in PIPELINE_FIELDS.items():
        rule(f"pipeline.{field}", getattr(pipeline, field))
    return pipeline


def history_record(record: Any) -> PipelineHistory:
    """Every field of a history record given from outside (import, copy)."""
    if not isinstance(record, PipelineHistory):
        raise ValidationError(f"expected a PipelineHistory record, got {type(record).__name__}")
    for field, rule in HISTORY_FIELDS.items():
        rule(field, getattr(record, field))
        if field == "final_state" and not state(field, record.final_state).is_terminal:
            raise ValidationError(
                f"final_state of history record {record.id} is {PipelineState(record.final_state).value}; "
                "history holds merged or failed pipelines only"
            )
    return record


def timelines(field: str, value: Any) -> dict[str, tuple[Transition, ...]]:
    """Timelines handed in by run id (import), each checked by timeline()."""
    if not isinstance(value, Mapping):
        raise ValidationError(f"{field} must map run ids to timelines, got {type(value).__name__}")
    return {identifier(f"a run id of {field}", key): timeline(key, item) for key, item in value.items()}


def timeline(run_id: str, value: Any) -> tuple[Transition, ...]:
    """The transitions of one run handed in, as the store writes them: numbered 1, 2, ...; the
    first from no state, each other from the state the one before entered, into another state;
    times aware and never going back; counters and feedback as for pipelines. seconds_in_state
    is derived from the times, so it is not looked at (and comes back None)."""
    if isinstance(value, str | bytes | bytearray) or not isinstance(value, Sequence):
        raise ValidationError(f"run {run_id} timeline must be a sequence of Transition records")
    checked: list[Transition] = []
    for index, item in enumerate(value):
        where = f"run {run_id} timeline[{index}]"
        before = checked[-1] if checked else None
        if not isinstance(item, Transition):
            raise ValidationError(f"{where} must be a Transition record, got {type(item).__name__}")
        if item.pipeline_id != run_id:
            raise ValidationError(f"{where}.pipeline_id is not the run's id: {_describe(item.pipeline_id)}")
        if integer(f"{where}.seq", item.seq, minimum=1, maximum=MAX_INT32) != index + 1:
            raise ValidationError(f"{where}.seq must be {index + 1} (1, 2, ... without gaps), got {item.seq}")
        source = None if item.from_state is None else state(f"{where}.from_state", item.from_state)
        if source != (None if before is None else before.to_state):
            expected = (
                "None (the first)" if before is None else f"{before.to_state.value!r} (the to_state before)"
            )
            raise ValidationError(f"{where}.from_state must be {expected}, got {_describe(item.from_state)}")
        target = state(f"{where}.to_state", item.to_state)
        if target == source:
            raise ValidationError(f"{where}.to_state must differ from its from_state {target.value!r}")
        at = timestamp(f"{where}.at", item.at)
        if before is not None and at < before.at:
            raise ValidationError(f"{where}.at must not be before the one before it, got {at.isoformat()}")
        if not isinstance(item.reconstructed, bool):
            raise ValidationError(
                f"{where}.reconstructed must be a bool, got {_describe(item.reconstructed)}"
            )
        retry_count(f"{where}.retry_count_ci", item.retry_count_ci)
        retry_count(f"{where}.retry_count_review", item.retry_count_review)
        _optional(long_text)(f"{where}.feedback", item.feedback)
        checked.append(replace(item, from_state=source, to_state=target, at=at, seconds_in_state=None))
    return tuple(checked)
