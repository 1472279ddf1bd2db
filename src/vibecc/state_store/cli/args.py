"""Arguments the commands share: dates and windows, states, and projects named by repo or id
(for history also a deleted project, by its last repo)."""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any

import click

from ..errors import ProjectNotFoundError, ValidationError
from ..records import PipelineState, Project
from ..store import StateStore
from .common import BadInput, quoted

DATES = "YYYY-MM-DD or an ISO 8601 timestamp, in UTC unless it has an offset"
"""How a DATE argument is written, for help texts."""


class UTCDateTime(click.ParamType[datetime, Any]):
    """YYYY-MM-DD (midnight UTC) or a full ISO-8601 timestamp; naive means UTC."""

    name = "DATE"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> datetime:
        if isinstance(value, datetime):
            return value if value.tzinfo else value.replace(tzinfo=UTC)
        try:
            if len(value) == 10:
                day = date.fromisoformat(value)
                return datetime(day.year, day.month, day.day, tzinfo=UTC)
            moment = datetime.fromisoformat(value)
        except (TypeError, ValueError):
            self.fail(f"{quoted(value)} is not a date (YYYY-MM-DD or an ISO 8601 timestamp)", param, ctx)
        try:
            return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)
        except OverflowError:  # 0001-01-01T00:00+05:00 is before the first moment in UTC
            self.fail(f"{quoted(value)} is out of the range of dates", param, ctx)


DATE = UTCDateTime()
STATE = click.Choice([s.value for s in PipelineState], case_sensitive=False)
project_option = click.option(
    "--project", "project_ref", metavar="REPO|ID", help="Only this project (owner/name or its id)."
)


def window_options(command: Callable[..., Any]) -> Callable[..., Any]:
    """--since and --until (exclusive), refused (exit 2) unless --since is before --until."""

    @click.option("--since", type=DATE, metavar="DATE", help=f"{DATES}: only what completed at or after it.")
    @click.option(
        "--until", type=DATE, metavar="DATE", help=f"{DATES}: only what completed before it (exclusive)."
    )
    @functools.wraps(command)
    def checked(*args: Any, since: datetime | None, until: datetime | None, **kwargs: Any) -> Any:
        if since is not None and until is not None and since >= until:
            if since == until:
                raise BadInput(
                    f"--since and --until are both {since.isoformat()}: --until is exclusive, so "
                    "nothing is in that window (for one whole day give --until the next day)"
                )
            raise BadInput(f"--since {since.isoformat()} is later than --until {until.isoformat()}")
        return command(*args, since=since, until=until, **kwargs)

    return checked


MAX_DAYS = 36_500
"""The longest span in days an option takes (about a century)."""


def days_ago(days: int) -> datetime:
    """Now minus `days` days. Raises BadInput when that is before the first representable date."""
    try:
        return datetime.now(UTC) - timedelta(days=days)
    except OverflowError:
        raise BadInput(f"{days} days ago is out of the range of dates") from None


# -- projects --------------------------------------------------------------------------------


def find_project(store: StateStore, ref: str) -> Project:
    """A project by repo ("owner/name", any case) or by id. Raises ProjectNotFoundError."""
    if "/" in ref:
        return store.get_project_by_repo(ref)
    try:
        return store.get_project(ref)
    except ValidationError:  # not even the shape of an id
        raise ProjectNotFoundError(
            f"project {quoted(ref)} not found (give owner/name or a project id)"
        ) from None


def project_id(store: StateStore, ref: str | None) -> str | None:
    return None if ref is None else find_project(store, ref).id


@dataclass(frozen=True, slots=True)
class Owner:
    """The project history rows belong to: live, deleted (with its last name and repo) or, for
    history whose project was deleted before deletions were recorded, only an id."""

    id: str
    repo: str | None
    name: str | None
    deleted: bool

    @property
    def label(self) -> str:
        """The repo, marked when the project was deleted; the whole id when the repo is unknown."""
        if self.repo is None:
            return f"deleted project {self.id}"
        return f"{self.repo} (deleted)" if self.deleted else self.repo


def history_owner(store: StateStore, ref: str) -> Owner:
    """The project of REPO|ID for history commands: a live project first, else a deleted one
    (the latest deleted with that repo), else an id that history rows carry.

    Raises:
        ProjectNotFoundError: none of those has that repo or id.
    """
    try:
        project = find_project(store, ref)
        return Owner(project.id, project.repo, project.name, deleted=False)
    except ProjectNotFoundError:
        pass
    by_repo = "/" in ref
    matches = [
        d
        for d in store.list_deleted_projects()
        if (d.repo.lower() == ref.lower() if by_repo else d.id == ref)
    ]
    if matches:
        last = matches[-1]
        return Owner(last.id, last.repo, last.name, deleted=True)
    if not by_repo and _has_history(store, ref):
        return Owner(ref, None, None, deleted=True)
    raise ProjectNotFoundError(
        f"project {quoted(ref)} not found (no project, deleted project or history has that "
        f"{'repo' if by_repo else 'id'})"
    )


def _has_history(store: StateStore, ref: str) -> bool:
    try:
        return store.count_history(ref) > 0
    except ValidationError:
        return False


def history_owner_id(store: StateStore, ref: str | None) -> str | None:
    return None if ref is None else history_owner(store, ref).id


def names(store: StateStore) -> dict[str, str]:
    """Project id -> how to show it: the repo, "(deleted)" after a deleted project's last one."""
    shown = {d.id: f"{d.repo} (deleted)" for d in store.list_deleted_projects()}
    shown.update({p.id: p.repo for p in store.list_projects()})
    return shown
