"""notifier's pure rules: planned steps, retry delays and the low-urgency flood limit."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from hypothesis import given
from hypothesis import strategies as st

from services.notifier.domain import (
    DEFAULT_PREFERENCES,
    SUMMARY_BODY_CHARS,
    FloodLimit,
    planned_steps,
    retry_delay,
    summary_body,
    summary_title,
)

NOW = datetime(2026, 11, 23, 12, tzinfo=UTC)


def test_only_a_page_someone_must_acknowledge_runs_its_later_steps() -> None:
    assert [s.channel for s in planned_steps(DEFAULT_PREFERENCES, "high", True)] == ["push", "voice"]
    assert [s.channel for s in planned_steps(DEFAULT_PREFERENCES, "high", False)] == ["push"]
    assert [s.channel for s in planned_steps(DEFAULT_PREFERENCES, "critical", True)] == ["push", "voice"]


@given(st.integers(1, 20), st.floats(0, 0.999), st.none() | st.floats(0, 3600))
def test_retry_delays_grow_to_the_cap_and_honour_retry_after(attempt: int, jitter: float, after: float | None) -> None:
    delay = retry_delay(attempt, 1.0, 60.0, after, jitter)
    assert delay >= (after or 0.0)
    assert delay <= max(60.0, after or 0.0)
    assert delay >= min(60.0, 2 ** (attempt - 1)) * 0.5


def test_the_flood_limit_delays_low_urgency_only_and_never_drops() -> None:
    limit = FloodLimit(per_window=3, window=timedelta(minutes=1))
    sent = [NOW - timedelta(seconds=s) for s in (50, 30, 10)]
    assert limit.wait("high", sent, NOW) is None and limit.wait("critical", sent, NOW) is None
    assert limit.wait("low", sent[1:], NOW) is None
    # the fourth in a minute waits until the oldest of the three leaves the window
    assert limit.wait("low", sent, NOW) == timedelta(seconds=10)
    assert limit.wait("low", [NOW - timedelta(minutes=5), *sent[1:]], NOW) is None


def test_a_summary_counts_in_the_users_language_and_keeps_its_body_short() -> None:
    assert summary_title(3, "de-DE") == "3 neue Benachrichtigungen"
    assert summary_title(2, "fr") == "2 new notifications"  # languages without a text fall back to English
    assert summary_body(["Reminder 1", "Swap accepted"]) == "Reminder 1; Swap accepted"
    long = summary_body([f"Reminder number {i}" for i in range(40)])
    assert len(long) == SUMMARY_BODY_CHARS and long.endswith("…") and long.startswith("Reminder number 0; ")
