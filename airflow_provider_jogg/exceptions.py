"""One exception hierarchy for everything the provider raises.

``JoggError`` is the root. Errors that retrying cannot fix (a bad key, no credits, a failed lip-sync
job, invalid input, a create call whose outcome is unknown) also derive from Airflow's
``AirflowFailException``, so Airflow fails the task at once instead of burning its ``retries``.
"""

from __future__ import annotations

from typing import Any

from airflow_provider_jogg._compat import AirflowException, AirflowFailException


class JoggError(AirflowException):
    """Base class of every error raised by the Jogg provider."""


class JoggFatalError(JoggError, AirflowFailException):
    """An error that no retry can fix: Airflow fails the task without using its retries."""


class JoggConfigError(JoggFatalError, ValueError):
    """The connection or an operator/sensor argument is invalid. Raised before any request is sent."""


class JoggAPIError(JoggError):
    """
    Jogg answered with an error, or an answer could not be used.

    :param message: human readable summary (never contains the API key)
    :param http_status: HTTP status of the answer, ``None`` when no answer arrived
    :param code: Jogg business code from the envelope, ``None`` when there was none
    :param jogg_message: the envelope's ``msg``
    :param body_snippet: the first bytes of a body that was not a valid envelope
    """

    #: retrying the same read-only request may succeed
    transient: bool = False

    def __init__(
        self,
        message: str,
        *,
        http_status: int | None = None,
        code: int | None = None,
        jogg_message: str | None = None,
        body_snippet: str | None = None,
    ) -> None:
        self.http_status = http_status
        self.code = code
        self.jogg_message = jogg_message
        self.body_snippet = body_snippet
        self.summary = message
        super().__init__(self._render())

    def _render(self) -> str:
        details = [
            f"HTTP status: {self.http_status if self.http_status is not None else 'none'}",
            f"business code: {self.code if self.code is not None else 'none'}",
        ]
        if self.jogg_message:
            details.append(f"Jogg message: {self.jogg_message!r}")
        if self.body_snippet:
            details.append(f"body: {self.body_snippet!r}")
        return f"{self.summary} ({'; '.join(details)})"

    def __reduce__(self) -> tuple[Any, ...]:
        # keyword-only constructor: teach pickle (used by Airflow for some errors) to rebuild us
        return (_rebuild, (type(self), self.summary, self._fields()))

    def _fields(self) -> dict[str, Any]:
        return {
            "http_status": self.http_status,
            "code": self.code,
            "jogg_message": self.jogg_message,
            "body_snippet": self.body_snippet,
        }


def _rebuild(cls: type[JoggAPIError], message: str, fields: dict[str, Any]) -> JoggAPIError:
    return cls(message, **fields)


class JoggTransientError(JoggAPIError):
    """A failure that a later attempt of a read-only request may not see: 5xx, code 50000, network."""

    transient = True


class JoggRateLimitError(JoggTransientError):
    """
    HTTP 429: too many requests.

    :param retry_after: seconds the server asked us to wait (already capped), ``None`` if it did not say
    """

    def __init__(self, message: str, *, retry_after: float | None = None, **kwargs: Any) -> None:
        self.retry_after = retry_after
        super().__init__(message, **kwargs)

    def _fields(self) -> dict[str, Any]:
        return {**super()._fields(), "retry_after": self.retry_after}


class JoggServerError(JoggTransientError):
    """HTTP 5xx or business code 50000."""


class JoggConnectionError(JoggTransientError):
    """
    No complete answer arrived: connection refused, reset or closed, or a timeout.

    :param request_sent: ``False`` only when the request provably never reached the server
        (connection refused or never established); the create call may then be sent again.
    """

    def __init__(self, message: str, *, request_sent: bool = True, **kwargs: Any) -> None:
        self.request_sent = request_sent
        super().__init__(message, **kwargs)

    def _fields(self) -> dict[str, Any]:
        return {**super()._fields(), "request_sent": self.request_sent}


class JoggNotProcessedError(JoggTransientError):
    """
    HTTP 408 (Request Timeout) or 425 (Too Early): the server says it did not process the request.

    Unlike a 5xx this proves that nothing happened (RFC 9110 section 15.5.9, RFC 8470 section 5.2), so
    even the create call may be sent again.
    """


class JoggMalformedResponseError(JoggTransientError):
    """
    An answer that cannot be used as it is, where another attempt may get a good one: a body that is
    not JSON (truncated, HTML from a gateway, plain text), or a status answer about another task than
    the one asked for (a caching proxy mixing answers up).
    """


class JoggFatalAPIError(JoggAPIError, JoggFatalError):
    """An answer that no retry can fix."""


class JoggResponseError(JoggFatalAPIError):
    """Valid JSON whose shape is not what the API documents (no ``code``, no ``data``, no ``status``)."""


class JoggRedirectError(JoggFatalAPIError):
    """
    The API answered with a redirect (HTTP 3xx). API requests never follow one: the ``x-api-key``
    header would go to whatever host the redirect names. Jogg's API did not process the request.
    """


class JoggAuthError(JoggFatalAPIError):
    """Business code 10105: the API key is invalid."""


class JoggPermissionError(JoggFatalAPIError):
    """Business code 18025: the account's plan has no API access."""


class JoggInsufficientCreditError(JoggFatalAPIError):
    """Business code 18020: the account has run out of credits."""


class JoggParameterError(JoggFatalAPIError):
    """Business code 40000: Jogg rejected a parameter."""


class JoggTaskNotFoundError(JoggFatalAPIError):
    """Business code 10104: Jogg has no lip-sync task with this id."""


class JoggCreateUncertainError(JoggFatalError):
    """
    The create call failed after the request was sent: a Jogg task may exist (and be billed). Also
    raised when a task was created but its id could not be saved for a retry to reattach to.

    Not retried, by Airflow or by the provider: Jogg has no idempotency key, so sending the request
    again could create and bill a second task.

    :param cause: the error behind it: Jogg's, or the task state store's
    """

    def __init__(self, message: str, cause: Exception) -> None:
        self.cause = cause
        super().__init__(message)

    def __reduce__(self) -> tuple[Any, ...]:
        return (type(self), (str(self), self.cause))


class JoggLipSyncFailedError(JoggFatalError):
    """
    The Jogg lip-sync task ended with status ``failed``.

    :param task_id: the Jogg task id
    :param error_message: Jogg's ``error.message``
    """

    def __init__(self, task_id: str, error_message: str | None) -> None:
        self.task_id = task_id
        self.error_message = error_message
        super().__init__(
            f"Jogg lip-sync task {task_id} failed: {error_message or 'Jogg gave no error message'}"
        )

    def __reduce__(self) -> tuple[Any, ...]:
        return (type(self), (self.task_id, self.error_message))


class JoggWaitTimeoutError(JoggError):
    """
    ``LipSyncOperator(wait_for_completion=True)`` waited ``timeout`` seconds without an end.

    Retryable on purpose: on Airflow 3.3+ a retry reattaches to the same Jogg task.
    """


class JoggBatchFailedError(JoggError):
    """
    More clips of a ``LipSyncBatchOperator`` batch did not succeed than ``max_failed`` /
    ``max_failed_ratio`` allow. Raised after the result manifest was written.

    Retryable on purpose: a retry waits for the clips still running, re-creates the clips whose Jogg
    task failed (never an ``uncertain`` one) and saves only what is not saved yet.

    :param message: what failed and where the manifest is
    :param summary: the batch's summary (counts, totals, the manifest's location)
    """

    def __init__(self, message: str, summary: dict[str, Any]) -> None:
        self.summary = summary
        super().__init__(message)

    def __reduce__(self) -> tuple[Any, ...]:
        return (type(self), (str(self), self.summary))


class JoggBudgetError(JoggFatalError):
    """
    A batch would cost more credits than ``max_credits`` or the account's remaining quota allow.
    Raised before any create call, so nothing was billed.

    :param message: the figures: credits needed, for how many clips, and the limit they exceed
    :param credits: the estimated credits (a lower bound when some clips could not be measured)
    :param max_credits: the batch's cap, ``None`` when it has none
    :param remaining_quota: the account's remaining credits, ``None`` when not asked
    """

    def __init__(
        self, message: str, credits: float, max_credits: float | None, remaining_quota: float | None
    ) -> None:
        self.credits = credits
        self.max_credits = max_credits
        self.remaining_quota = remaining_quota
        super().__init__(message)

    def __reduce__(self) -> tuple[Any, ...]:
        return (type(self), (str(self), self.credits, self.max_credits, self.remaining_quota))


class JoggEventError(JoggFatalError):
    """A trigger event that does not have the documented shape (never treated as success)."""


__all__ = [
    "JoggAPIError",
    "JoggAuthError",
    "JoggBatchFailedError",
    "JoggBudgetError",
    "JoggConfigError",
    "JoggConnectionError",
    "JoggCreateUncertainError",
    "JoggError",
    "JoggEventError",
    "JoggFatalAPIError",
    "JoggFatalError",
    "JoggInsufficientCreditError",
    "JoggLipSyncFailedError",
    "JoggMalformedResponseError",
    "JoggNotProcessedError",
    "JoggParameterError",
    "JoggPermissionError",
    "JoggRateLimitError",
    "JoggRedirectError",
    "JoggResponseError",
    "JoggServerError",
    "JoggTaskNotFoundError",
    "JoggTransientError",
    "JoggWaitTimeoutError",
]
