"""
The JoggAI wire protocol: API paths, the answer envelope and its business codes, ``Retry-After``.

One Jogg answer is judged on two levels, the HTTP status first (gateways answer 429, 408/425 and
5xx with HTML or nothing at all), then the envelope's business code; :func:`parse_envelope` maps
each answer to its ``data`` or to the :class:`~airflow_provider_jogg.exceptions.JoggAPIError`
subclass that says what went wrong. Pure functions: no I/O, no HTTP library.
"""

from __future__ import annotations

import email.utils
import json
import math
import time
from typing import Any
from urllib.parse import urljoin, urlsplit

from airflow_provider_jogg import exceptions as exc
from airflow_provider_jogg.api_paths import CREATE_PATH, QUOTA_PATH, STATUS_PATH, UPLOAD_PATH, WHOAMI_PATH

__all__ = [
    "CREATE_PATH",
    "QUOTA_PATH",
    "STATUS_PATH",
    "UPLOAD_PATH",
    "WHOAMI_PATH",
    "body_snippet",
    "parse_envelope",
    "parse_retry_after",
    "quote",
    "redirect_refused",
]


#: characters of an unusable body quoted in error messages
SNIPPET_CHARS = 200


#: a ``Retry-After`` is honoured up to this many seconds; a larger value is treated as this
RETRY_AFTER_CAP = 300.0


_CODE_ERRORS: dict[int, tuple[type[exc.JoggAPIError], str]] = {
    10104: (exc.JoggTaskNotFoundError, "Jogg has no record for this request (record not found)"),
    10105: (exc.JoggAuthError, "Jogg rejected the API key: check the connection's password (API Key)"),
    18020: (exc.JoggInsufficientCreditError, "The Jogg account has run out of credits"),
    18025: (exc.JoggPermissionError, "The Jogg account's plan has no permission to call the API"),
    40000: (exc.JoggParameterError, "Jogg rejected a parameter of the request"),
    50000: (exc.JoggServerError, "Jogg reported a system error"),
}


#: HTTP statuses by which the server says it did not process the request (RFC 9110 section 15.5.9,
#: RFC 8470 section 5.2): retried like a 429, the create call included
NOT_PROCESSED_STATUSES: dict[int, str] = {408: "Request Timeout", 425: "Too Early"}


def body_snippet(body: bytes) -> str:
    """A short, printable quote of a body for error messages."""
    return body[:SNIPPET_CHARS].decode("utf-8", errors="replace")


def quote(value: Any) -> str:
    """A short quote of any value (a string as it is, anything else as its ``repr``) for messages."""
    text = value if isinstance(value, str) else repr(value)
    return text[:SNIPPET_CHARS]


def parse_envelope(
    http_status: int,
    body: bytes,
    *,
    retry_after: str | None = None,
    action: str = "request",
    task_id: str | None = None,
) -> Any:
    """
    Check one Jogg answer on both levels and return its ``data``.

    :param http_status: the HTTP status
    :param body: the raw body
    :param retry_after: the ``Retry-After`` header, if any
    :param action: what was asked, for messages (``"create"``, ``"status of task X"``)
    :param task_id: the task id asked about, named in a "not found" error
    :raises JoggAPIError: a subclass that says what went wrong
    """
    # 1. HTTP status first: gateways answer 429/408/425/5xx with HTML or nothing at all
    if http_status == 429:
        wait = parse_retry_after(retry_after)
        raise exc.JoggRateLimitError(
            f"Jogg rate limit hit on {action}"
            + (f"; retry after {wait:g} s" if wait is not None else "; no Retry-After given"),
            retry_after=wait,
            http_status=http_status,
            **_envelope_fields(body),
        )
    if http_status in NOT_PROCESSED_STATUSES:
        raise exc.JoggNotProcessedError(
            f"Jogg did not process the {action} (HTTP {http_status} {NOT_PROCESSED_STATUSES[http_status]}); "
            "it may be sent again",
            http_status=http_status,
            **_envelope_fields(body),
        )
    if http_status >= 500:
        raise exc.JoggServerError(
            f"Jogg server error on {action}", http_status=http_status, **_envelope_fields(body)
        )

    # 2. the envelope
    try:
        envelope = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        cls: type[exc.JoggAPIError] = (
            exc.JoggMalformedResponseError if 200 <= http_status < 300 else exc.JoggFatalAPIError
        )
        raise cls(
            f"Jogg answered {action} with a body that is not JSON",
            http_status=http_status,
            body_snippet=body_snippet(body),
        ) from None
    code = envelope.get("code") if isinstance(envelope, dict) else None
    if isinstance(code, bool) or not isinstance(code, int):
        if 200 <= http_status < 300:
            raise exc.JoggResponseError(
                f"Jogg answered {action} without a business code",
                http_status=http_status,
                body_snippet=body_snippet(body),
            )
        # a 4xx without a business code (wrong path prefix, a proxy's refusal): retrying cannot help
        raise exc.JoggFatalAPIError(
            f"Jogg answered {action} with HTTP {http_status}",
            http_status=http_status,
            body_snippet=body_snippet(body),
        )
    msg = envelope.get("msg") if isinstance(envelope.get("msg"), str) else None

    # 3. the business code
    if code != 0:
        cls, summary = _CODE_ERRORS.get(code, (exc.JoggFatalAPIError, "Jogg refused the request"))
        if cls is exc.JoggTaskNotFoundError and task_id is not None:
            summary = f"Jogg has no lip-sync task with id {task_id!r}"
        elif cls is not exc.JoggTaskNotFoundError:
            summary = f"{summary} ({action})"
        raise cls(summary, http_status=http_status, code=code, jogg_message=msg)
    if not 200 <= http_status < 300:
        # a 4xx without a business code (wrong path prefix, a proxy's refusal): retrying cannot help
        raise exc.JoggFatalAPIError(
            f"Jogg answered {action} with HTTP {http_status}",
            http_status=http_status,
            code=code,
            jogg_message=msg,
        )
    if "data" not in envelope or envelope["data"] is None:
        raise exc.JoggResponseError(
            f"Jogg answered {action} without 'data'",
            http_status=http_status,
            code=code,
            jogg_message=msg,
            body_snippet=body_snippet(body),
        )
    return envelope["data"]


def _envelope_fields(body: bytes) -> dict[str, Any]:
    """Best-effort code/msg of an error body, else a snippet of it."""
    try:
        envelope = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        return {"body_snippet": body_snippet(body)} if body else {}
    if isinstance(envelope, dict) and isinstance(envelope.get("code"), int):
        msg = envelope.get("msg")
        return {"code": envelope["code"], "jogg_message": msg if isinstance(msg, str) else None}
    return {"body_snippet": body_snippet(body)}


def parse_retry_after(value: str | None, now: float | None = None) -> float | None:
    """
    Seconds to wait from a ``Retry-After`` header (delta-seconds or HTTP date), capped at
    :data:`RETRY_AFTER_CAP`. ``None`` when absent or unreadable.
    """
    if value is None:
        return None
    value = value.strip()
    if not value:
        return None
    try:
        seconds = float(value)
    except ValueError:
        try:
            moment = email.utils.parsedate_to_datetime(value)
        except (TypeError, ValueError, IndexError):
            return None
        if moment is None:  # pragma: no cover - older Pythons
            return None
        seconds = moment.timestamp() - (time.time() if now is None else now)
    if not math.isfinite(seconds):
        return None
    return min(max(seconds, 0.0), RETRY_AFTER_CAP)


def redirect_refused(status: int, location: str | None, base_url: str, action: str) -> exc.JoggRedirectError:
    """
    The error for a 3xx answer to an API request (which is never followed). Names the host the
    redirect points to, never its full URL, and never the key.
    """
    if not location:
        target = "without a Location header"
    else:
        base = urlsplit(base_url)
        try:
            parts = urlsplit(urljoin(base_url + "/", location.strip()))
            host, port = parts.hostname or "?", parts.port
        except ValueError:
            target = "to an unreadable Location"
        else:
            where = host if port is None else f"{host}:{port}"
            same = (host, port) == (base.hostname, base.port)
            target = f"to {where!r}, the API host itself" if same else f"to host {where!r}"
    return exc.JoggRedirectError(
        f"Jogg {action}: the API answered with a redirect {target}. API requests do not follow "
        "redirects, so that the API key never goes to another host; the request was not processed. "
        f"Check the connection's base URL ({base_url}): e.g. https:// instead of http://, the path "
        "prefix (/open), or a host that moved",
        http_status=status,
    )
