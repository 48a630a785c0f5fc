"""The answers the fake server sends: the JoggAI envelope, JSON bodies, and request-body parsing."""

from __future__ import annotations

import gzip
import json
from http import HTTPStatus
from typing import Any, NamedTuple


class Response(NamedTuple):
    """An answer to send: status, body bytes, content type and extra headers."""

    status: int
    body: bytes
    content_type: str | None
    headers: tuple[tuple[str, str], ...] = ()


def reason(status: int) -> str:
    """Return the standard reason phrase of an HTTP status (or ``"Error"`` when unknown)."""
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return "Error"


def envelope(code: int, msg: str, data: Any = None) -> dict[str, Any]:
    """Build the JoggAI response envelope."""
    return {"code": code, "msg": msg, "data": data}


def dumps(value: Any) -> bytes:
    """Serialise a JSON value compactly to UTF-8 bytes."""
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


def json_response(status: int, payload: Any, headers: tuple[tuple[str, str], ...] = ()) -> Response:
    """A JSON answer."""
    return Response(status, dumps(payload), "application/json", headers)


def ok(data: Any) -> Response:
    """An HTTP 200 answer with a success envelope."""
    return json_response(200, envelope(0, "Success", data))


def gzipped(response: Response) -> Response:
    """The same answer, its body gzip-encoded (only successful answers with a body)."""
    if not 200 <= response.status < 300 or not response.body:
        return response
    body = gzip.compress(response.body, mtime=0)
    return response._replace(body=body, headers=(*response.headers, ("Content-Encoding", "gzip")))


def parse_json(body: bytes) -> tuple[Any, bool]:
    """Parse a request body: ``(value, True)``, or ``(None, False)`` when empty or not JSON."""
    if not body:
        return None, False
    try:
        return json.loads(body), True
    except (ValueError, UnicodeDecodeError):
        return None, False


NOT_FOUND = json_response(404, envelope(404, "Not Found"))
