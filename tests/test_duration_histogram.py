"""The kept duration histogram: what get_duration_percentiles reads without a window. Kept in
every history write's transaction, emptied cells dropped, rebuilt by migration 0005 from the
history already stored, and exact again on request."""

from __future__ import annotations

import importlib.util
from datetime import UTC, datetime, timedelta
from types import ModuleType
from typing import TYPE_CHECKING, Any

import pytest
from sqlalchemy import select

from vibecc.state_store import DurationPercentiles, Project, StateStore, ValidationError, migrate
from vibecc.state_store.models import duration_histogram
from vibecc.state_store.queries import buckets

if TYPE_CHECKING:
    from tests import helpers
else:
    import helpers

# Whole seconds, from none to the store's limit: one-second buckets, wide ones, and the ends.
DURATIONS = [0, 0, 1, 2, 9, 10, 11, 59, 60, 61, 119, 120, 121, 3_600, 86_400, 3_155_760_000]


def cells(store: StateStore) -> list[tuple[str, int, int]]:
    with store.database.engine.connect() as conn:
        found = conn.execute(select(duration_histogram).order_by(*duration_histogram.primary_key))
        return [(p, b, n) for p, b, n in found]


def recount(records: list[Any]) -> list[tuple[str, int, int]]:
    counted: dict[tuple[str, int], int] = {}
    for r in records:
        key = (r.project_id, buckets.bucket(r.duration_seconds * 1000))
        counted[key] = counted.get(key, 0) + 1
    return [(p, b, n) for (p, b), n in sorted(counted.items())]


def test_every_history_write_keeps_the_histogram_equal_to_a_recount(
    store: StateStore, project: Project
) -> None:
    other = store.create_project("Other", "acme/other")
    for offset, seconds in enumerate(DURATIONS):
        owner = project if offset % 3 else other
        store.import_history([helpers.history_record(project_id=owner.id, duration_seconds=seconds)])
    store.archive_pipeline(helpers.finished(store, project, 1).id)
    assert cells(store) == recount(helpers.all_history(store))

    store.prune_history(before=datetime.now(UTC) + timedelta(days=1), project_id=other.id, batch_size=2)

    assert cells(store) == recount(helpers.all_history(store))
    assert all(p == project.id for p, _, _ in cells(store)), "emptied cells stay behind"
    store.prune_history(before=datetime.now(UTC) + timedelta(days=1))
    assert cells(store) == []
    assert store.get_duration_percentiles() == DurationPercentiles(None, None)


def test_kept_percentiles_are_within_the_stated_error_and_exact_on_request(
    store: StateStore, project: Project
) -> None:
    durations = [7 * i * i % 50_000 for i in range(500)]
    store.import_history(
        [helpers.history_record(project_id=project.id, duration_seconds=d) for d in durations]
    )
    ordered = sorted(durations)
    exact = {50: float(ordered[249]), 95: float(ordered[474])}

    kept = store.get_duration_percentiles()
    ranked = store.get_duration_percentiles(exact=True)

    assert (ranked.p50, ranked.p95) == (exact[50], exact[95])
    for estimate, value in ((kept.p50, exact[50]), (kept.p95, exact[95])):
        assert estimate is not None
        assert abs(estimate - value) <= buckets.RELATIVE_ERROR * value
    # A window is a scan of its rows, exact like exact=True.
    window = store.get_duration_percentiles(since=helpers.T0 - timedelta(days=1))
    assert window == ranked


@pytest.mark.parametrize("exact", [None, 1, 0, "yes", b"", 1.0])
def test_exact_must_be_a_bool(store: StateStore, project: Project, exact: object) -> None:
    with pytest.raises(ValidationError, match="exact must be True or False"):
        store.get_duration_percentiles(exact=exact)  # type: ignore[arg-type]


@pytest.mark.parametrize("dry_run", [None, 1, "no"])
def test_dry_run_must_be_a_bool(store: StateStore, project: Project, dry_run: object) -> None:
    helpers.import_at(store, project.id, [0, 1])
    with pytest.raises(ValidationError, match="dry_run must be True or False"):
        store.prune_history(before=datetime.now(UTC), dry_run=dry_run)  # type: ignore[arg-type]
    assert store.count_history() == 2


def test_upgrading_to_0005_fills_the_histogram_from_stored_history(fresh_db: Any) -> None:
    with StateStore(fresh_db()) as store:
        project = store.create_project("Old", "acme/old")
        other = store.create_project("Other", "acme/other")
        store.import_history(
            [
                helpers.history_record(project_id=(project, other)[i % 2].id, duration_seconds=seconds)
                for i, seconds in enumerate(DURATIONS * 3)
            ]
        )
        kept = cells(store)
        assert kept == recount(helpers.all_history(store))
        migrate.downgrade(store.database.engine, "0004")
        migrate.upgrade(store.database.engine)

        assert cells(store) == kept
        assert migrate.check(store.database.engine) == []


def _revision_0005() -> ModuleType:
    path = next(p for p in migrate.script().walk_revisions() if p.revision == "0005").path
    spec = importlib.util.spec_from_file_location("revision_0005", path)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_migrations_bucket_edges_agree_with_the_store_for_every_second() -> None:
    """0005 carries its own copy of the bucket formula, as edges: the first whole second of each
    bucket. Looking a duration up among them must give the bucket the store gives it."""
    edges: list[dict[str, int]] = _revision_0005()._edges()
    lows = [e["low_seconds"] for e in edges]
    assert lows == sorted(set(lows))
    seconds = [*range(200_000), *range(10**6, 10**6 + 50_000), 3_155_760_000, 2**39]
    at = 0
    for s in seconds:
        while at + 1 < len(lows) and lows[at + 1] <= s:
            at += 1
        at = at if lows[at] <= s else 0
        assert edges[at]["bucket"] == buckets.bucket(s * 1000), s
