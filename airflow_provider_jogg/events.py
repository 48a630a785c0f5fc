"""The trigger event: one deterministic shape, built by the trigger and validated by the operators.

``{"status": "success" | "failed" | "timeout" | "error", "task_id": ...}``; ``success``/``failed``
carry ``result`` (the plain-JSON :class:`~airflow_provider_jogg.results.LipSyncResult`), ``error``
carries ``error`` (the exception's type and fields) and ``message``. :func:`parse_event` turns it
back into a :class:`LipSyncEvent`; anything else raises :class:`JoggEventError`.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Any

from airflow_provider_jogg import exceptions as exc
from airflow_provider_jogg.protocol import quote
from airflow_provider_jogg.results import LipSyncResult


class EventStatus(str, enum.Enum):
    SUCCESS = "success"
    FAILED = "failed"
    TIMEOUT = "timeout"
    ERROR = "error"


_EVENT_STATUSES = frozenset(s.value for s in EventStatus)


#: errors a trigger may report; anything else in an event is itself an error
_EVENT_ERRORS: dict[str, type[exc.JoggFatalError]] = {
    cls.__name__: cls
    for cls in (
        exc.JoggConfigError,
        exc.JoggFatalAPIError,
        exc.JoggResponseError,
        exc.JoggAuthError,
        exc.JoggPermissionError,
        exc.JoggInsufficientCreditError,
        exc.JoggParameterError,
        exc.JoggTaskNotFoundError,
        exc.JoggRedirectError,
    )
}


_API_ERROR_FIELDS = ("http_status", "code", "jogg_message", "body_snippet")


def result_event(result: LipSyncResult) -> dict[str, Any]:
    status = EventStatus.SUCCESS if result.succeeded else EventStatus.FAILED
    return {"status": status.value, "task_id": result.task_id, "result": result.to_dict()}


def timeout_event(
    task_id: str, end_time: float, *, failures: int = 0, cause: exc.JoggError | None = None
) -> dict[str, Any]:
    """The event of a wait that reached ``end_time``; one that ended in an outage names its cause."""
    message = (
        f"Jogg lip-sync task {task_id} was not finished by end_time {end_time:.0f} "
        "(epoch seconds): the wait's timeout passed."
    )
    if cause is not None and failures:
        message += f" The last {failures} status polls failed, the latest with: {cause}"
    return {"status": EventStatus.TIMEOUT.value, "task_id": task_id, "message": message}


def error_event(task_id: str, error: exc.JoggError) -> dict[str, Any]:
    """An event for an error that ends the wait (never a transient one: those are retried)."""
    name = type(error).__name__
    if name not in _EVENT_ERRORS:
        name = exc.JoggFatalAPIError.__name__ if isinstance(error, exc.JoggAPIError) else "JoggConfigError"
    info: dict[str, Any] = {"type": name, "summary": getattr(error, "summary", str(error))}
    if isinstance(error, exc.JoggAPIError):
        info.update({f: getattr(error, f) for f in _API_ERROR_FIELDS})
    return {"status": EventStatus.ERROR.value, "task_id": task_id, "message": str(error), "error": info}


@dataclass(frozen=True)
class LipSyncEvent:
    """A validated trigger event."""

    status: EventStatus
    task_id: str
    result: LipSyncResult | None = None
    message: str = ""
    error: exc.JoggFatalError | None = None


def parse_event(event: Any) -> LipSyncEvent:
    """
    Validate a trigger event. Anything that does not have the documented shape raises
    :class:`JoggEventError`; a missing or unknown status is never read as success.
    """
    if not isinstance(event, dict):
        raise exc.JoggEventError(f"Jogg trigger event must be a dict, got {quote(event)}")
    status, task_id = event.get("status"), event.get("task_id")
    if status not in _EVENT_STATUSES:
        raise exc.JoggEventError(f"Jogg trigger event has an unknown status {status!r}: {quote(event)}")
    if not isinstance(task_id, str) or not task_id:
        raise exc.JoggEventError(f"Jogg trigger event has no task_id: {quote(event)}")
    kind = EventStatus(status)
    message: str = event["message"] if isinstance(event.get("message"), str) else ""
    if kind in (EventStatus.SUCCESS, EventStatus.FAILED):
        result = LipSyncResult.from_dict(event.get("result") or {})
        if result.status != kind.value or result.task_id != task_id:
            raise exc.JoggEventError(f"Jogg trigger event contradicts itself: {quote(event)}")
        return LipSyncEvent(kind, task_id, result=result, message=message)
    if kind is EventStatus.ERROR:
        info = event.get("error")
        if not isinstance(info, dict) or info.get("type") not in _EVENT_ERRORS:
            raise exc.JoggEventError(f"Jogg trigger error event without a known error type: {quote(event)}")
        cls = _EVENT_ERRORS[info["type"]]
        summary = str(info.get("summary") or message)
        error: exc.JoggFatalError
        if issubclass(cls, exc.JoggAPIError):
            error = cls(summary, **{f: info.get(f) for f in _API_ERROR_FIELDS})
        else:
            error = cls(summary)
        return LipSyncEvent(kind, task_id, message=message, error=error)
    return LipSyncEvent(kind, task_id, message=message)
