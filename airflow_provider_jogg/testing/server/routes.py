"""The JoggAI API of the fake server: one function per route, under the server's prefix.

``/v2/...`` routes need the API key and may be rate-limited; the storage routes (``/_storage/``
pre-signed PUTs, ``/assets/`` uploaded assets, ``/files/`` task results) need none, as their
counterparts at JoggAI are signed or public URLs.
"""

from __future__ import annotations

import hashlib
import secrets
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs, unquote, urlsplit

from airflow_provider_jogg.api_paths import CREATE_PATH, QUOTA_PATH, STATUS_PATH, UPLOAD_PATH, WHOAMI_PATH
from airflow_provider_jogg.testing.server import results
from airflow_provider_jogg.testing.server.responses import (
    NOT_FOUND,
    Response,
    envelope,
    json_response,
    ok,
)
from airflow_provider_jogg.testing.server.tasks import finish_markers

if TYPE_CHECKING:
    from airflow_provider_jogg.testing.server import FakeJoggServer

__all__ = ["PLAYBACK_TYPES", "api_path", "api_response", "normalize_prefix", "storage_response"]

#: Accepted values of ``playback_type`` (the first one is the default).
PLAYBACK_TYPES: tuple[str, ...] = ("normal", "normal_reverse", "normal_reverse_by_audio")


#: the status route without its task id (the API paths are the provider's own)
_STATUS_PREFIX = STATUS_PATH.format(task_id="")


def normalize_prefix(prefix: str) -> str:
    """Turn ``"open"``, ``"/open/"`` or ``"/open"`` into ``"/open"``, and ``"/"`` into ``""``."""
    if not isinstance(prefix, str):
        raise TypeError("prefix must be a string")
    if any(ch in prefix for ch in "?#") or any(ch.isspace() for ch in prefix):
        raise ValueError(f"prefix must be a plain path such as '/open', got {prefix!r}")
    stripped = prefix.strip("/")
    return f"/{stripped}" if stripped else ""


def api_path(prefix: str, path: str) -> str | None:
    """The path without ``prefix`` when it is a ``/v2`` API route, else ``None``."""
    if prefix:
        if not path.startswith(prefix):
            return None
        path = path[len(prefix) :]
    if path == "/v2" or path.startswith("/v2/"):
        return path
    return None


def api_response(
    fake: FakeJoggServer, method: str, path: str, api_key: str | None, body: Any, body_ok: bool
) -> Response:
    """Answer a ``/v2`` route: rate limit, key check, then the route itself."""
    if not fake._bucket.admit(fake.rate_limit):
        return json_response(429, envelope(429, "Too Many Requests"), (("Retry-After", "1"),))
    if api_key != fake.api_key:
        return json_response(fake.auth_error_status, envelope(10105, "Invalid API key"))
    if path == CREATE_PATH:
        return create(fake, body, body_ok) if method == "POST" else NOT_FOUND
    if path.startswith(_STATUS_PREFIX):
        task_id = unquote(path[len(_STATUS_PREFIX) :])
        if method != "GET" or not task_id or "/" in task_id:
            return NOT_FOUND
        return task_status(fake, task_id)
    if path == WHOAMI_PATH:
        return ok({"email": "demo@example.com", "username": "demo"}) if method == "GET" else NOT_FOUND
    if path == QUOTA_PATH:
        return ok({"remaining_quota": fake.remaining_quota}) if method == "GET" else NOT_FOUND
    if path == UPLOAD_PATH:
        return create_upload(fake, body, body_ok) if method == "POST" else NOT_FOUND
    return NOT_FOUND


def create(fake: FakeJoggServer, body: Any, body_ok: bool) -> Response:
    """``POST /v2/create_lip_sync_video``."""
    problem = _validate_create(body, body_ok)
    if problem is not None:
        return json_response(200, envelope(40000, problem))
    if fake.remaining_quota <= 0:
        return json_response(200, envelope(18020, "Insufficient credit"))
    timing, problem = finish_markers(body["video_url"], body["audio_url"])
    if problem is not None:
        return json_response(200, envelope(40000, problem))
    playback_type = body.get("playback_type") or PLAYBACK_TYPES[0]
    task = fake._new_task(body["video_url"], body["audio_url"], playback_type, timing)
    return ok({"task_id": task.task_id, "status": "pending"})


def task_status(fake: FakeJoggServer, task_id: str) -> Response:
    """``GET /v2/lip_sync_video/{task_id}``."""
    answer = fake._tasks.answer_status(task_id)
    if answer is None:
        return json_response(200, envelope(10104, "Record not found"))
    data: dict[str, Any] | None = None
    error: dict[str, Any] | None = None
    if answer.status == "success":
        data = results.result_data(fake, answer.task)
    elif answer.status == "failed":
        error = {"message": answer.error_message}
    return ok(
        {
            "task_id": task_id,
            "status": answer.status,
            "created_at": int(answer.created_at),
            "completed_at": None if answer.completed_at is None else int(answer.completed_at),
            "data": data,
            "error": error,
        }
    )


def create_upload(fake: FakeJoggServer, body: Any, body_ok: bool) -> Response:
    """``POST /v2/upload/asset``: reserve an upload slot and return its signed URL."""
    problem = _validate_upload(body, body_ok)
    if problem is not None:
        return json_response(200, envelope(40000, problem))
    upload = fake._uploads.reserve(body["filename"], body["content_type"], body.get("file_size"))
    return ok(
        {
            "sign_url": f"{fake.root_url}{upload.storage_path()}?sig={upload.sig}",
            "asset_url": fake.root_url + upload.asset_path(),
        }
    )


def storage_response(
    fake: FakeJoggServer,
    method: str,
    path: str,
    query: str,
    body: bytes,
    content_type: str | None,
    chunked: bool,
) -> Response:
    """Answer ``/files/``, ``/_storage/`` and ``/assets/`` routes (no key needed)."""
    if path.startswith("/files/"):
        if method not in ("GET", "HEAD"):
            return NOT_FOUND
        return results.file_response(fake, path)
    if path.startswith("/assets/"):
        if method not in ("GET", "HEAD"):
            return NOT_FOUND
        upload = fake._uploads.find(path, "/assets/")
        if upload is None or upload.data is None:
            return NOT_FOUND
        return Response(200, upload.data, upload.stored_content_type or "application/octet-stream")
    if method != "PUT":
        return NOT_FOUND
    upload = fake._uploads.find(path, "/_storage/")
    if upload is None:
        return NOT_FOUND
    sig = parse_qs(query).get("sig", [""])[0]
    if not sig or not secrets.compare_digest(sig, upload.sig):
        return json_response(403, envelope(403, "Signature does not match"))
    if upload.file_size is not None and len(body) != upload.file_size:
        return json_response(
            400,
            envelope(400, f"size mismatch: declared {upload.file_size} bytes, received {len(body)}"),
        )
    fake._uploads.store(upload, body, content_type, chunked)
    etag = hashlib.md5(body, usedforsecurity=False).hexdigest()
    return Response(200, b"", None, (("ETag", f'"{etag}"'),))


def _is_http_url(value: Any) -> bool:
    """Whether ``value`` is a string URL with an http:// or https:// scheme and a host."""
    if not isinstance(value, str):
        return False
    lowered = value.lower()
    if not lowered.startswith(("http://", "https://")):
        return False
    return bool(urlsplit(value).netloc)


def _validate_create(body: Any, body_ok: bool) -> str | None:
    """The 40000 message for a bad create body, or ``None`` when it is valid."""
    if not body_ok or not isinstance(body, dict):
        return "invalid request body: expected a JSON object"
    for name in ("video_url", "audio_url"):
        if body.get(name) is None:
            return f"{name} is required"
        if not _is_http_url(body[name]):
            return f"{name} must be an http:// or https:// URL"
    playback_type = body.get("playback_type")
    if playback_type is not None and playback_type not in PLAYBACK_TYPES:
        return f"playback_type must be one of {', '.join(PLAYBACK_TYPES)}"
    return None


def _validate_upload(body: Any, body_ok: bool) -> str | None:
    """The 40000 message for a bad upload body, or ``None`` when it is valid."""
    if not body_ok or not isinstance(body, dict):
        return "invalid request body: expected a JSON object"
    for name in ("filename", "content_type"):
        if body.get(name) is None:
            return f"{name} is required"
        if not isinstance(body[name], str) or not body[name].strip():
            return f"{name} must be a non-empty string"
    file_size = body.get("file_size")
    if file_size is not None and (
        isinstance(file_size, bool) or not isinstance(file_size, int) or file_size < 1
    ):
        return "file_size must be an integer >= 1"
    return None
