"""VibeCC State Store: projects, active pipelines and their history, on SQLite or PostgreSQL."""

from .errors import (
    AlreadyExistsError,
    CopyVerificationError,
    HistoryNotFoundError,
    NotFoundError,
    PipelineExistsError,
    PipelineNotFoundError,
    ProjectExistsError,
    ProjectHasActivePipelinesError,
    ProjectNotFoundError,
    SchemaVersionError,
    StaleVersionError,
    StateStoreError,
    StorageError,
    TargetNotEmptyError,
    ValidationError,
)
from .history import ImportResult
from .records import (
    DurationPercentiles,
    HistoryCursor,
    HistoryPage,
    HistoryStats,
    Pipeline,
    PipelineHistory,
    PipelineState,
    Project,
)
from .store import UNSET, StateStore
from .transfer import CopyReport, TableCopy, copy_store

__all__ = [
    "UNSET",
    "AlreadyExistsError",
    "CopyReport",
    "CopyVerificationError",
    "DurationPercentiles",
    "HistoryCursor",
    "HistoryNotFoundError",
    "HistoryPage",
    "HistoryStats",
    "ImportResult",
    "NotFoundError",
    "Pipeline",
    "PipelineExistsError",
    "PipelineHistory",
    "PipelineNotFoundError",
    "PipelineState",
    "Project",
    "ProjectExistsError",
    "ProjectHasActivePipelinesError",
    "ProjectNotFoundError",
    "SchemaVersionError",
    "StaleVersionError",
    "StateStore",
    "StateStoreError",
    "StorageError",
    "TableCopy",
    "TargetNotEmptyError",
    "ValidationError",
    "copy_store",
]
