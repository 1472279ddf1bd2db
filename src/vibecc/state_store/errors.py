"""The exception hierarchy: one base class, one subclass per failure."""

from __future__ import annotations


class StateStoreError(Exception):
    """Base class of every error the state store raises."""


class NotFoundError(StateStoreError):
    """A record that was asked for does not exist."""


class ProjectNotFoundError(NotFoundError):
    """No project has the given id or repo."""


class PipelineNotFoundError(NotFoundError):
    """No active pipeline has the given id, or the given project and ticket."""


class HistoryNotFoundError(NotFoundError):
    """No history record has the given id."""


class AlreadyExistsError(StateStoreError):
    """A record would duplicate one that exists."""


class ProjectExistsError(AlreadyExistsError):
    """A project with that repo exists already."""


class PipelineExistsError(AlreadyExistsError):
    """The project has an active pipeline for that ticket already."""


class ProjectHasActivePipelinesError(StateStoreError):
    """The project still has pipelines that are not finished."""


class StaleVersionError(StateStoreError):
    """The pipeline's stored version is not the expected one; nothing was written."""


class ValidationError(StateStoreError, ValueError):
    """An argument is not acceptable; nothing was written."""


class SchemaVersionError(StateStoreError):
    """The database schema is behind or ahead of this code."""


class TargetNotEmptyError(StateStoreError):
    """A copy was asked into a store that already holds data; nothing was written."""


class CopyVerificationError(StateStoreError):
    """A copy finished but the target does not hold exactly what the source holds."""


class StorageError(StateStoreError):
    """The database cannot do the work: locked, read-only, full, unreachable or damaged."""
