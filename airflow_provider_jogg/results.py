"""What a lip-sync task is: its statuses, one status answer as a :class:`LipSyncResult`, its credits."""

from __future__ import annotations

import enum
import math
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

from airflow_provider_jogg import exceptions as exc
from airflow_provider_jogg.protocol import quote

if TYPE_CHECKING:
    from collections.abc import Mapping


class JoggStatus(str, enum.Enum):
    """Documented statuses of a Jogg lip-sync task. The API may add others: those are not terminal."""

    PENDING = "pending"
    PROCESSING = "processing"
    SUCCESS = "success"
    FAILED = "failed"

    @classmethod
    def is_terminal(cls, status: str) -> bool:
        return status in _TERMINAL

    @classmethod
    def is_known(cls, status: str) -> bool:
        return status in _KNOWN


_TERMINAL = frozenset({JoggStatus.SUCCESS.value, JoggStatus.FAILED.value})


_KNOWN = frozenset(s.value for s in JoggStatus)


@dataclass(frozen=True)
class LipSyncResult:
    """
    One answer of ``GET /v2/lip_sync_video/{task_id}``.

    :param task_id: Jogg task id
    :param status: lowercase Jogg status (``pending``, ``processing``, ``success``, ``failed``, or a new one)
    :param result_url: URL of the lip-synced video (on success)
    :param cover_url: URL of the cover image (on success)
    :param duration_seconds: length of the output video (on success)
    :param created_at: creation time, epoch seconds
    :param completed_at: completion time, epoch seconds
    :param error_message: Jogg's ``error.message`` (on failure)
    """

    task_id: str
    status: str
    result_url: str | None = None
    cover_url: str | None = None
    duration_seconds: float | None = None
    created_at: int | None = None
    completed_at: int | None = None
    error_message: str | None = None

    @property
    def is_terminal(self) -> bool:
        return JoggStatus.is_terminal(self.status)

    @property
    def succeeded(self) -> bool:
        return self.status == JoggStatus.SUCCESS.value

    @property
    def failed(self) -> bool:
        return self.status == JoggStatus.FAILED.value

    def to_dict(self) -> dict[str, Any]:
        """The plain-JSON dict returned by the sensor and carried in trigger events."""
        return asdict(self)

    @classmethod
    def from_dict(cls, value: Mapping[str, Any]) -> LipSyncResult:
        """Rebuild from :meth:`to_dict` output, e.g. an event payload. Raises ``JoggEventError``."""
        try:
            task_id, status = value["task_id"], value["status"]
        except (KeyError, TypeError):
            raise exc.JoggEventError(f"Result without task_id or status: {quote(value)}") from None
        if not isinstance(task_id, str) or not isinstance(status, str) or not status:
            raise exc.JoggEventError(f"Result with invalid task_id or status: {quote(value)}")
        known = {f: value.get(f) for f in cls.__dataclass_fields__ if f not in ("task_id", "status")}
        return cls(task_id=task_id, status=status, **known)


def parse_lip_sync_result(data: Any, task_id: str) -> LipSyncResult:
    """
    Turn the ``data`` of a status answer into a :class:`LipSyncResult`.

    A missing or non-string ``status`` is an error, never read as success. An answer about another
    task than ``task_id`` is a :class:`JoggMalformedResponseError`, which is transient: Jogg answers
    for the task it is asked about, so a different id means something in between (a caching proxy)
    mixed answers up, and asking again may get the right one; it is never taken as this task's result.
    """
    if not isinstance(data, dict):
        raise exc.JoggResponseError(
            f"Jogg's answer for task {task_id} has no 'data' object", body_snippet=quote(data)
        )
    status = data.get("status")
    if not isinstance(status, str) or not status.strip():
        raise exc.JoggResponseError(
            f"Jogg's answer for task {task_id} has no 'status'", body_snippet=quote(data)
        )
    returned_id = data.get("task_id")
    # ids are compared ignoring case: the same UUID in upper case is still this task
    if returned_id not in (None, "") and (
        not isinstance(returned_id, str) or returned_id.strip().lower() != task_id.strip().lower()
    ):
        raise exc.JoggMalformedResponseError(
            f"Jogg's answer for task {task_id} is about another task ({quote(returned_id)!r}); "
            "not using it (a caching proxy between here and Jogg may have mixed answers up)",
            body_snippet=quote(data),
        )
    output: dict[str, Any] = data["data"] if isinstance(data.get("data"), dict) else {}
    error: dict[str, Any] = data["error"] if isinstance(data.get("error"), dict) else {}
    return LipSyncResult(
        task_id=task_id,
        status=status.strip().lower(),
        result_url=_opt_str(output.get("result_url")),
        cover_url=_opt_str(output.get("cover_url")),
        duration_seconds=_opt_float(output.get("duration_seconds")),
        created_at=_opt_int(data.get("created_at")),
        completed_at=_opt_int(data.get("completed_at")),
        error_message=_opt_str(error.get("message")),
    )


def _opt_str(value: Any) -> str | None:
    return value if isinstance(value, str) and value else None


def _opt_float(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return float(value) if math.isfinite(value) else None


def _opt_int(value: Any) -> int | None:
    number = _opt_float(value)
    return int(number) if number is not None else None


def credits_estimate(duration_seconds: float | None) -> float | None:
    """Credits a result costs: Jogg bills 1 credit per 125 s of output. An estimate, not an invoice."""
    return None if duration_seconds is None else round(duration_seconds / 125.0, 4)
