"""Input checks made before any request: media URLs, playback type, task ids, wait durations.

Each raises :class:`~airflow_provider_jogg.exceptions.JoggConfigError` naming the argument and the
value; the operator and sensor call them when they are built, so a bad literal is a DAG parse error.
"""

from __future__ import annotations

import datetime
import math
from typing import Any
from urllib.parse import urlsplit

from airflow_provider_jogg import exceptions as exc

PLAYBACK_TYPES: tuple[str, ...] = ("normal", "normal_reverse", "normal_reverse_by_audio")


def validate_media_url(value: Any, name: str) -> str:
    """A ``video_url``/``audio_url`` must be an absolute http(s) URL with a host."""
    if not isinstance(value, str) or not value.strip():
        raise exc.JoggConfigError(f"{name} must be an http(s) URL, got {value!r}.")
    value = value.strip()
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.netloc or any(c.isspace() for c in value):
        raise exc.JoggConfigError(
            f"{name} must be an absolute http:// or https:// URL that Jogg can download, got {value!r}. "
            "Upload local files first (JoggHook.upload_asset) and pass the asset URL it returns."
        )
    return value


def validate_playback_type(value: Any) -> str:
    if value not in PLAYBACK_TYPES:
        raise exc.JoggConfigError(
            f"playback_type must be one of {', '.join(repr(p) for p in PLAYBACK_TYPES)}, got {value!r}."
        )
    return str(value)


def validate_task_id(value: Any) -> str:
    """A Jogg task id: a non-empty string without slashes or whitespace (it goes into a URL path)."""
    if not isinstance(value, str) or not value.strip() or value in ("None", "none", "null"):
        raise exc.JoggConfigError(
            f"jogg_task_id must be the Jogg task id returned by LipSyncOperator, got {value!r}. "
            "Check that the template pulls the operator's XCom, "
            "e.g. \"{{ ti.xcom_pull(task_ids='lip_sync') }}\"."
        )
    value = value.strip()
    if any(c in value for c in "/?#%") or any(c.isspace() for c in value):
        raise exc.JoggConfigError(f"jogg_task_id {value!r} is not a valid Jogg task id.")
    return value


def validate_wait_seconds(value: Any, name: str) -> float:
    """
    ``poke_interval`` or ``timeout`` of a wait, in seconds: a number or a ``timedelta``, above zero
    and finite. Checked when the operator or sensor is built, so a bad value is a DAG parse error:
    zero or less would poll in a tight loop (or time out at once), NaN compares false with every
    deadline, and infinity never polls again.
    """
    seconds = value.total_seconds() if isinstance(value, datetime.timedelta) else value
    if isinstance(seconds, bool) or not isinstance(seconds, (int, float)):
        raise exc.JoggConfigError(f"{name} must be a number of seconds or a timedelta, got {value!r}.")
    if not math.isfinite(seconds) or seconds <= 0:
        raise exc.JoggConfigError(f"{name} must be a finite number of seconds above 0, got {value!r}.")
    return float(seconds)
