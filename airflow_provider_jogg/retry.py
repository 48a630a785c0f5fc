"""Every retry decision of the provider, and the one backoff.

Which failures may be sent again (:func:`is_retryable`; the create call: :func:`is_create_retryable`),
what proves a create made nothing (:func:`create_refused`), how long to wait (:func:`backoff_delay`,
for a poll :func:`poll_retry_delay`), when a call gives up (:func:`retries_exhausted`: HTTP 429s are
waited out for the connection's ``rate_limit_wait`` without using up ``max_retries``), and that a 429
closes the whole account (:func:`close_on_rate_limit`). The sync hook retries through
:func:`retrying` (tenacity, imported only there), the trigger's poll scheduler and connection lookup
through the same predicate and backoff.
"""

from __future__ import annotations

import logging
import random
from typing import TYPE_CHECKING, Any

from airflow_provider_jogg import exceptions as exc

if TYPE_CHECKING:
    from airflow_provider_jogg.connection import JoggConnectionConfig
    from airflow_provider_jogg.throttle import AccountThrottle

log = logging.getLogger(__name__)

#: HTTP statuses of storage and CDN requests (upload PUT, result download) worth another attempt
RETRYABLE_STORAGE_STATUSES = frozenset({408, 429, 500, 502, 503, 504})


#: no single backoff waits longer than this (a ``Retry-After`` may ask for more, up to the cap below)
MAX_BACKOFF = 60.0


#: jitter only ever adds, up to this fraction of the wait
JITTER_FRACTION = 0.25


def is_retryable(error: BaseException) -> bool:
    """Whether a read-only request (status, account, upload) may be sent again after ``error``."""
    return isinstance(error, exc.JoggAPIError) and error.transient


def is_create_retryable(error: BaseException) -> bool:
    """
    Whether the create call may be sent again after ``error``.

    Only what proves that nothing was created: an HTTP 429, an HTTP 408 or 425 (the server says it
    did not process the request), and a connection that was never established. Everything else may
    have created (and billed) a task.
    """
    if isinstance(error, (exc.JoggRateLimitError, exc.JoggNotProcessedError)):
        return True
    return isinstance(error, exc.JoggConnectionError) and not error.request_sent


def backoff_delay(attempt: int, base: float, retry_after: float | None = None) -> float:
    """
    Seconds to wait before retry number ``attempt`` (1-based).

    Exponential from ``base``, capped at :data:`MAX_BACKOFF`, never shorter than ``retry_after``;
    jitter only adds (up to :data:`JITTER_FRACTION`), so a ``Retry-After`` is never undercut.
    """
    # the exponent is capped: an int 2**1024 no longer converts to float (OverflowError), and a wait
    # can fail for hours in a row; any positive base reaches MAX_BACKOFF long before 2**1023
    doublings = min(max(attempt - 1, 0), 1023)
    delay = min(base * 2.0**doublings, MAX_BACKOFF)
    if retry_after is not None:
        delay = max(delay, retry_after)
    return delay + random.uniform(0, delay * JITTER_FRACTION)


def poll_retry_delay(error: exc.JoggAPIError, failures: int, base: float, interval: float) -> float:
    """
    Seconds before a status poll is sent again after its ``failures``-th failure in a row.

    The backoff, never sooner than the poll interval; a 429 waits its ``Retry-After`` only (the
    whole account is closed meanwhile, see :func:`close_on_rate_limit`).
    """
    delay = backoff_delay(failures, base, getattr(error, "retry_after", None))
    if isinstance(error, exc.JoggRateLimitError):
        return delay
    return max(delay, interval)


def create_refused(error: exc.JoggAPIError) -> bool:
    """Whether Jogg answered a create and said no (a business code, a 4xx, a redirect): none was made."""
    if isinstance(error, exc.JoggRedirectError):  # a redirect is an answer instead of processing
        return True
    if error.transient:  # 5xx, code 50000, broken bodies and connections: the outcome is unknown
        return False
    if error.code not in (None, 0):
        return True
    return error.http_status is not None and 400 <= error.http_status < 500


def close_on_rate_limit(
    throttle: AccountThrottle, error: BaseException, config: JoggConnectionConfig
) -> None:
    """After a 429 every caller on the account waits, not only the one that saw it."""
    if isinstance(error, exc.JoggRateLimitError):
        throttle.close_for(error.retry_after if error.retry_after is not None else config.retry_backoff)


def retrying(
    config: JoggConnectionConfig,
    action: str,
    *,
    create: bool = False,
    max_retries: int | None = None,
    rate_limit_wait: float | None = None,
    asynchronous: bool = False,
) -> Any:
    """
    A ``tenacity.Retrying`` (``AsyncRetrying`` when ``asynchronous``) that applies this module's
    policy to one call of the hook: the predicate
    (:func:`is_create_retryable` for a create, else :func:`is_retryable`), the backoff with the
    error's ``Retry-After``, ``max_retries`` and ``rate_limit_wait`` (default: the connection's) and a
    warning per retry.

    HTTP 429 answers are waited out for up to ``rate_limit_wait`` seconds from the
    first attempt and use none of ``max_retries`` meanwhile (:func:`retries_exhausted`); a call with
    ``max_retries=0`` sends one request whatever the answer (the caller has its own way to wait).
    tenacity is imported here, on first use, so a DAG file or a triggerer never loads it.
    """
    import tenacity

    retries = config.max_retries if max_retries is None else max_retries
    limit_wait = config.rate_limit_wait if rate_limit_wait is None else rate_limit_wait
    counted: set[int] = set()  # attempts that used up a retry (failures other than waited-out 429s)

    def error_of(state: tenacity.RetryCallState) -> BaseException | None:
        return state.outcome.exception() if state.outcome else None

    def stop(state: tenacity.RetryCallState) -> bool:
        return retries_exhausted(
            error_of(state), state.attempt_number, state.seconds_since_start, retries, limit_wait, counted
        )

    def wait(state: tenacity.RetryCallState) -> float:
        error = error_of(state)
        return backoff_delay(state.attempt_number, config.retry_backoff, getattr(error, "retry_after", None))

    def before_sleep(state: tenacity.RetryCallState) -> None:
        error = error_of(state)
        if state.attempt_number not in counted:
            log.warning(
                "Jogg %s was rate limited (attempt %d, %.0f s of up to %g s spent waiting out HTTP 429), "
                "sending it again in %.2f s: %s",
                action,
                state.attempt_number,
                state.seconds_since_start or 0.0,
                limit_wait,
                state.upcoming_sleep,
                error,
            )
            return
        log.warning(
            "Jogg %s failed (retry %d of %d), retrying in %.2f s: %s",
            action,
            len(counted),
            retries,
            state.upcoming_sleep,
            error,
        )

    kind = tenacity.AsyncRetrying if asynchronous else tenacity.Retrying
    return kind(
        retry=tenacity.retry_if_exception(is_create_retryable if create else is_retryable),
        stop=stop,
        wait=wait,
        before_sleep=before_sleep,
        reraise=True,
    )


def retries_exhausted(
    error: BaseException | None,
    attempt: int,
    elapsed: float | None,
    retries: int,
    rate_limit_wait: float,
    counted: set[int],
) -> bool:
    """
    Whether a call stops after attempt number ``attempt`` failed with the retryable ``error``.

    An HTTP 429 within ``rate_limit_wait`` seconds (``elapsed``, from the first attempt) of a
    call that may retry at all is waited out: the account is busy, the request is fine. Any other
    failure, and a 429 after that time, uses one of ``retries``; ``counted`` keeps the attempts that did.
    """
    if retries <= 0:
        return True
    rate_limited = isinstance(error, exc.JoggRateLimitError)
    if not (rate_limited and (elapsed or 0.0) < rate_limit_wait):
        counted.add(attempt)
    return len(counted) > retries
