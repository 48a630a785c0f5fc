"""airflow_provider_jogg.retry: which failures are sent again, and the backoff."""

from __future__ import annotations

import pytest

from airflow_provider_jogg import exceptions as exc
from airflow_provider_jogg.retry import (
    JITTER_FRACTION,
    MAX_BACKOFF,
    backoff_delay,
    is_create_retryable,
    is_retryable,
    retries_exhausted,
)


def test_backoff_grows_caps_and_never_undercuts_retry_after():
    for attempt in range(1, 12):
        base = min(0.5 * 2 ** (attempt - 1), MAX_BACKOFF)
        delay = backoff_delay(attempt, 0.5)
        assert base <= delay <= base * (1 + JITTER_FRACTION)
    for _ in range(50):
        assert backoff_delay(1, 0.01, retry_after=5.0) >= 5.0


@pytest.mark.parametrize("base", [0.0, 0.01, 1.0, 1e300], ids=["zero", "tiny", "one", "huge"])
def test_backoff_after_thousands_of_failures_stays_capped(base):
    # a wait that fails every poll for hours (1,025 polls is under 3 h at 10 s) must not overflow
    cap = MAX_BACKOFF if base > 0 else 0.0
    for attempt in (1024, 1025, 1026, 10**6):
        assert cap <= backoff_delay(attempt, base) <= cap * (1 + JITTER_FRACTION)


def test_which_failures_are_retried():
    rate = exc.JoggRateLimitError("r", retry_after=1)
    refused = exc.JoggConnectionError("c", request_sent=False)
    reset = exc.JoggConnectionError("c", request_sent=True)
    server = exc.JoggServerError("s", http_status=503)
    garbled = exc.JoggMalformedResponseError("m")
    not_processed = exc.JoggNotProcessedError("n", http_status=408)
    auth = exc.JoggAuthError("a", code=10105)
    for error in (rate, refused, reset, server, garbled, not_processed):
        assert is_retryable(error)
    assert not is_retryable(auth)
    assert not is_retryable(ValueError())
    # create: only what proves nothing was created
    assert is_create_retryable(rate)
    assert is_create_retryable(refused)
    assert is_create_retryable(not_processed)
    for error in (reset, server, garbled, auth):
        assert not is_create_retryable(error)


def test_429s_within_the_rate_limit_wait_use_no_retry_and_other_failures_do():
    rate = exc.JoggRateLimitError("r", retry_after=1)
    server = exc.JoggServerError("s", http_status=503)
    counted: set[int] = set()
    # ten 429s inside the 60 s window: none is a retry
    for attempt in range(1, 11):
        assert not retries_exhausted(rate, attempt, attempt * 5.0, 2, 60.0, counted)
    assert counted == set()
    # two other failures use both retries; the third stops
    assert not retries_exhausted(server, 11, 56.0, 2, 60.0, counted)
    assert not retries_exhausted(server, 12, 57.0, 2, 60.0, counted)
    assert retries_exhausted(server, 13, 58.0, 2, 60.0, counted)
    assert counted == {11, 12, 13}


def test_429s_after_the_rate_limit_wait_count_as_retries():
    rate = exc.JoggRateLimitError("r", retry_after=None)
    counted: set[int] = set()
    assert not retries_exhausted(rate, 1, 59.9, 1, 60.0, counted)
    assert not retries_exhausted(rate, 2, 60.0, 1, 60.0, counted)
    assert retries_exhausted(rate, 3, 61.0, 1, 60.0, counted)
    # a wait of 0: every 429 is an ordinary retry (the behaviour of max_retries alone)
    counted = set()
    assert [retries_exhausted(rate, n, 0.0, 2, 0.0, counted) for n in (1, 2, 3)] == [False, False, True]


def test_no_retries_means_one_request_even_for_a_429():
    # the sensor's first check (max_retries=0) defers on a 429 rather than wait in a worker slot
    assert retries_exhausted(exc.JoggRateLimitError("r", retry_after=1), 1, 0.0, 0, 300.0, set())
