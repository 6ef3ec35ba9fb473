"""Waiting before a retry: full-jitter backoff and ``Retry-After``, shared by fetches and sinks."""

from __future__ import annotations

import random
from datetime import UTC, datetime

from hypothesis import given
from hypothesis import strategies as st

from monitor.backoff import RETRY_AFTER_MAX, full_jitter, parse_retry_after

NOW = datetime(2025, 5, 16, 10, 0, tzinfo=UTC)


def test_retry_after_delta_seconds_and_dates() -> None:
    assert parse_retry_after("120", now=NOW) == 120.0
    assert parse_retry_after(" 0 ", now=NOW) == 0.0
    assert parse_retry_after("1.5", now=NOW) == 1.5
    assert parse_retry_after("Fri, 16 May 2025 10:00:30 GMT", now=NOW) == 30.0
    assert parse_retry_after("Fri, 16 May 2025 09:00:00 GMT", now=NOW) == 0.0  # in the past


def test_retry_after_unreadable_is_none() -> None:
    for value in (None, "", "  ", "soon", "-5", "nan", "-inf"):
        assert parse_retry_after(value, now=NOW) is None, value


def test_retry_after_absurd_values_are_capped() -> None:
    assert parse_retry_after("99999999", now=NOW) == RETRY_AFTER_MAX
    assert parse_retry_after("inf", now=NOW) == RETRY_AFTER_MAX
    assert parse_retry_after("Fri, 16 May 2125 10:00:00 GMT", now=NOW) == RETRY_AFTER_MAX
    assert parse_retry_after("45", now=NOW, limit=30.0) == 30.0


@given(
    attempt=st.integers(min_value=-3, max_value=10_000),
    initial=st.floats(min_value=0, max_value=60),
    cap=st.floats(min_value=0, max_value=3600),
    seed=st.integers(),
)
def test_full_jitter_stays_within_its_ceiling(
    attempt: int, initial: float, cap: float, seed: int
) -> None:
    delay = full_jitter(attempt, initial=initial, cap=cap, rng=random.Random(seed))
    ceiling = min(cap, initial * 2.0 ** min(max(attempt - 1, 0), 62))
    assert 0.0 <= delay <= ceiling
