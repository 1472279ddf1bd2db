"""Awkward but valid text (quotes, SQL, backslashes and wildcards, emoji, right-to-left, line
breaks, characters outside the BMP) and the longest accepted values round-trip verbatim through
every field and read."""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest

from vibecc.state_store import StateStore

if TYPE_CHECKING:
    from tests.bad_input import INJECTION
else:
    from bad_input import INJECTION

AWKWARD = [
    'it\'s "quoted"',
    "semi; colon; --comment",
    INJECTION,
    "Robert'); DROP TABLE pipelines;--",
    "1' OR '1'='1",
    "back\\slash and %percent_ and _under",
    "emoji 🚀🔥👩‍💻",
    "CJK 中文字符 日本語 한국어",
    "right-to-left עברית العربية \u200f",
    "tabs\tand\nnewlines\r\n",
    "  leading and trailing spaces  ",
    "\u00a0non-breaking\u2028separator",
    "combining e\u0301 vs \u00e9",
    "𠜎𠜱 CJK extension B, outside the BMP",
]


@pytest.mark.parametrize("value", AWKWARD)
def test_awkward_text_round_trips_verbatim(store: StateStore, value: str) -> None:
    project = store.create_project(value, "acme/widgets")
    pipeline = store.create_pipeline(project.id, "T-1", value, "vibecc/1", ticket_body=value * 3)
    pipeline = store.update_pipeline(pipeline.id, feedback=value, state="merged")
    other = store.create_pipeline(project.id, "T-2", value[::-1], "vibecc/2", ticket_body=value)

    assert store.get_project(project.id).name == value
    assert store.get_project_by_repo("acme/widgets").name == value
    assert [p.name for p in store.list_projects()] == [value]
    stored = store.get_pipeline(pipeline.id)
    assert (stored.ticket_title, stored.ticket_body, stored.feedback) == (value, value * 3, value)
    assert store.get_pipeline(other.id).ticket_title == value[::-1]
    assert {p.ticket_body for p in store.list_pipelines(project.id)} == {value * 3, value}
    record = store.archive_pipeline(pipeline.id)
    assert record.ticket_title == value
    assert store.get_history_record(pipeline.id).ticket_title == value
    assert store.update_project(project.id, name=value + "!").name == value + "!"
    assert store.get_project(project.id).name == value + "!"


def test_longest_accepted_values_round_trip(store: StateStore) -> None:
    name = "名" * 255
    title = "🚀" * 1000
    body = "é" * 2**19  # exactly 1 MiB of UTF-8
    url = "https://x/" + "a" * 2038
    project = store.create_project(name, "a" * 39 + "/" + "r" * 100, base_branch="b" * 255)
    pipeline = store.create_pipeline(project.id, "9" * 64, title, "c" * 255, ticket_body=body)
    pipeline = store.update_pipeline(
        pipeline.id, feedback=body, pr_url=url, pr_id=2**63 - 1, retry_count_ci=10**6, state="merged"
    )

    assert store.get_project(project.id) == project
    assert store.get_pipeline(pipeline.id) == pipeline
    assert len(pipeline.pr_url or "") == 2048
    assert store.archive_pipeline(pipeline.id).pr_id == 2**63 - 1
