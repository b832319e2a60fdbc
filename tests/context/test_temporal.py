"""Temporal cues: the window a query names is measured from the bundle's reference time, never the clock."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from agent_memory.context.temporal import NONE, cue, needs_reference

REF = datetime(2023, 10, 20, 12, tzinfo=UTC)


@pytest.mark.parametrize(
    ("query", "inside", "outside"),
    [
        ("what did we decide two weeks ago?", datetime(2023, 10, 6, tzinfo=UTC), datetime(2023, 10, 19, tzinfo=UTC)),
        ("what happened 3 days ago", datetime(2023, 10, 17, 12, tzinfo=UTC), datetime(2023, 10, 10, tzinfo=UTC)),
        ("notes from last week", datetime(2023, 10, 12, tzinfo=UTC), datetime(2023, 9, 1, tzinfo=UTC)),
        ("what did she say yesterday", datetime(2023, 10, 19, 9, tzinfo=UTC), datetime(2023, 10, 15, tzinfo=UTC)),
        ("the camping trip in May", datetime(2023, 5, 14, tzinfo=UTC), datetime(2023, 7, 1, tzinfo=UTC)),
        ("the trip in November", datetime(2022, 11, 14, tzinfo=UTC), datetime(2023, 11, 14, tzinfo=UTC)),
        ("what did he paint in 2022?", datetime(2022, 6, 1, tzinfo=UTC), datetime(2023, 6, 1, tzinfo=UTC)),
        ("plans made in March 2021", datetime(2021, 3, 10, tzinfo=UTC), datetime(2023, 3, 10, tzinfo=UTC)),
    ],
)
def test_a_cue_names_a_window(query: str, inside: datetime, outside: datetime) -> None:
    """Relative cues count back from the reference time; a month without a year is the last one by then."""
    found = cue(query, REF)
    assert found.window is not None, query
    assert found.contains(inside)
    assert not found.contains(outside)


def test_no_cue_no_window_and_latest_asks_for_recency() -> None:
    """A question without a cue has no window; "last time" asks for the latest occurrence, not a window."""
    assert cue("When did Caroline go to the support group?", REF) == NONE
    latest = cue("what did we say about the budget last time?", REF)
    assert latest.window is None
    assert latest.prefer_recent


def test_relative_cues_need_a_reference() -> None:
    """Without a reference time a relative cue names no window (the caller looks the newest event up first)."""
    assert needs_reference("two weeks ago")
    assert not needs_reference("what is the policy")
    assert cue("two weeks ago", None).window is None
    assert cue("in 2022", None).window is not None
