"""What the parts of StateStore share: the transaction helpers they call, ids, clock, UNSET, CLEAR."""

from __future__ import annotations

import enum
import uuid
from contextlib import AbstractContextManager
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Final

from sqlalchemy import Connection

if TYPE_CHECKING:
    from .engine import Dialect


class Unset(enum.Enum):
    token = 0


UNSET: Final = Unset.token
"""Default of optional update arguments: the field is left as it is."""


class Clear(enum.Enum):
    token = 0


CLEAR: Final = Clear.token
"""Passed to update_project for github_project_id: remove the stored value (None leaves it)."""


def now() -> datetime:
    return datetime.now(UTC)


def new_id() -> str:
    return str(uuid.uuid4())


class StoreBase:
    """The parts StateStore is mixed from call each other only through these."""

    if TYPE_CHECKING:
        _dialect: Dialect

        def _read(self, *, snapshot: bool = False) -> AbstractContextManager[Connection]: ...
        def _write(self) -> AbstractContextManager[Connection]: ...
