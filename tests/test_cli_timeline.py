"""vibecc-state pipelines show prints the timeline; history stats shows time in each stage."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import TYPE_CHECKING

import pytest

import vibecc.state_store.store as store_module
from vibecc.state_store import PipelineState, StateStore

if TYPE_CHECKING:
    from tests.test_cli import as_json, ok
else:
    from test_cli import as_json, ok

T0 = datetime.fromisoformat("2026-03-02T09:00:00+00:00")


@pytest.fixture
def walked(store_url: str, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    """One pipeline walked QUEUED 10 s -> CODING 60 s -> TESTING 30 s -> CODING (retry, with
    feedback) 40 s -> TESTING, and one archived after QUEUED 5 s -> CODING 90 s -> MERGED 1 s.
    The store's clock is read once per write: the project, then each pipeline write."""
    moments = iter(T0 + timedelta(seconds=s) for s in (0, 0, 10, 70, 100, 140, 200, 205, 295, 296))
    clock = {"now": T0}

    def tick() -> datetime:
        clock["now"] = next(moments)
        return clock["now"]

    monkeypatch.setattr(store_module, "now", tick)
    with StateStore(store_url) as store:
        project = store.create_project("Web", "acme/web")
        active = store.create_pipeline(project.id, 1, "Active", "ticket-1")
        store.update_pipeline(active.id, state=PipelineState.CODING)
        store.update_pipeline(active.id, state=PipelineState.TESTING)
        store.update_pipeline(
            active.id,
            state=PipelineState.CODING,
            retry_count_ci=1,
            feedback="CI failed:\n\x1b[31mlint\x1b[0m",
        )
        store.update_pipeline(active.id, state=PipelineState.TESTING)
        done = store.create_pipeline(project.id, 2, "Done", "ticket-2")
        store.update_pipeline(done.id, state=PipelineState.CODING)
        store.update_pipeline(done.id, state=PipelineState.MERGED)
        store.archive_pipeline(done.id)
    return {"active": active.id, "done": done.id}


def test_pipelines_show_prints_the_timeline(store_url: str, walked: dict[str, str]) -> None:
    shown = as_json(store_url, "pipelines", "show", "acme/web#1")
    timeline = shown["timeline"]
    assert [(t["from_state"], t["to_state"]) for t in timeline] == [
        (None, "queued"),
        ("queued", "coding"),
        ("coding", "testing"),
        ("testing", "coding"),
        ("coding", "testing"),
    ]
    assert [t["seconds_in_state"] for t in timeline] == [10.0, 60.0, 30.0, 40.0, None]
    assert timeline[3]["feedback"] == "CI failed:\n\x1b[31mlint\x1b[0m"
    assert timeline[3]["retry_count_ci"] == 1
    assert timeline[0]["at"] == T0.isoformat()

    table = ok(store_url, "pipelines", "show", walked["active"]).stdout
    for text in ("Timeline", "created", "10s", "1m 00s", "30s", "40s", "(now)", "1/0"):
        assert text in table
    # Stored text is shown escaped, on one line.
    assert "CI failed:\\x0a\\x1b[31mlint" in table
    assert "\x1b" not in table


def test_history_stats_shows_the_time_in_each_stage(store_url: str, walked: dict[str, str]) -> None:
    stats = as_json(store_url, "history", "stats")
    stages = stats["stages"]
    assert (stages["queued"]["visits"], stages["queued"]["total_seconds"]) == (1, 5.0)
    assert (stages["coding"]["visits"], stages["coding"]["total_seconds"]) == (1, 90.0)
    assert stages["testing"]["visits"] == 0  # the pipeline in TESTING is not finished
    assert stages["merged"]["visits"] == 1
    assert abs(stages["coding"]["p50_seconds"] - 90.0) <= 0.05 * 90

    windowed = as_json(store_url, "history", "stats", "--since", "2026-03-01")
    assert windowed["stages"]["coding"] == {
        "state": "coding",
        "visits": 1,
        "total_seconds": 90.0,
        "mean_seconds": 90.0,
        "p50_seconds": 90.0,
        "p95_seconds": 90.0,
    }
    table = ok(store_url, "history", "stats").stdout
    assert "Time in each stage" in table
    assert "1m 30s" in table
