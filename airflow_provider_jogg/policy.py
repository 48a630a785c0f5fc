"""The provider's shared policy, imported by the hook, the operator, the sensor and the trigger.

Everything that decides *what* happens lives here, once: lip-sync statuses and which are terminal,
how a Jogg answer is parsed and mapped to an exception, which failures are retried and how long to
wait, how input is validated, and the one shape of the trigger event. It does no I/O and imports no
HTTP library, so the sync path (``requests``) and the async path (``aiohttp``) share it unchanged.
"""

from __future__ import annotations

import datetime
import email.utils
import enum
import hashlib
import ipaddress
import json
import math
import random
import re
import threading
import time
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any
from urllib.parse import urljoin, urlsplit

from airflow_provider_jogg import exceptions as exc

if TYPE_CHECKING:
    from collections.abc import Callable, Mapping

DEFAULT_CONN_ID = "jogg_default"
DEFAULT_BASE_URL = "https://api.jogg.ai"
#: seconds per HTTP request (connect + read) unless the connection's extra says ``timeout``
DEFAULT_TIMEOUT = 30.0
#: retries after the first attempt unless the connection's extra says ``max_retries``
DEFAULT_MAX_RETRIES = 3
#: first backoff in seconds; doubles per attempt (extra ``retry_backoff``)
DEFAULT_RETRY_BACKOFF = 1.0
#: requests per second per account and process unless the extra says ``max_requests_per_second``:
#: one triggerer at Airflow's default capacity (1,000 triggers) polling every 10 s (the sensor's
#: default) stays on time under it
DEFAULT_MAX_REQUESTS_PER_SECOND = 100.0
#: the rate limit lets this many seconds' worth of requests go out at once (at least one request)
THROTTLE_BURST_SECONDS = 0.1
#: no single backoff waits longer than this (a ``Retry-After`` may ask for more, up to the cap below)
MAX_BACKOFF = 60.0
#: a ``Retry-After`` is honoured up to this many seconds; a larger value is treated as this
RETRY_AFTER_CAP = 300.0
#: jitter only ever adds, up to this fraction of the wait
JITTER_FRACTION = 0.25
#: characters of an unusable body quoted in error messages
SNIPPET_CHARS = 200

PLAYBACK_TYPES: tuple[str, ...] = ("normal", "normal_reverse", "normal_reverse_by_audio")

CREATE_PATH = "/v2/create_lip_sync_video"
STATUS_PATH = "/v2/lip_sync_video/{task_id}"
WHOAMI_PATH = "/v2/user/whoami"
QUOTA_PATH = "/v2/user/remaining_quota"
UPLOAD_PATH = "/v2/upload/asset"


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


# --------------------------------------------------------------------------------------------------
# Results
# --------------------------------------------------------------------------------------------------
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
            raise exc.JoggEventError(f"Result without task_id or status: {_short(value)}") from None
        if not isinstance(task_id, str) or not isinstance(status, str) or not status:
            raise exc.JoggEventError(f"Result with invalid task_id or status: {_short(value)}")
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
            f"Jogg's answer for task {task_id} has no 'data' object", body_snippet=_short(data)
        )
    status = data.get("status")
    if not isinstance(status, str) or not status.strip():
        raise exc.JoggResponseError(
            f"Jogg's answer for task {task_id} has no 'status'", body_snippet=_short(data)
        )
    returned_id = data.get("task_id")
    # ids are compared ignoring case: the same UUID in upper case is still this task
    if returned_id not in (None, "") and (
        not isinstance(returned_id, str) or returned_id.strip().lower() != task_id.strip().lower()
    ):
        raise exc.JoggMalformedResponseError(
            f"Jogg's answer for task {task_id} is about another task ({_short(returned_id)!r}); "
            "not using it (a caching proxy between here and Jogg may have mixed answers up)",
            body_snippet=_short(data),
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


def _short(value: Any) -> str:
    text = value if isinstance(value, str) else repr(value)
    return text[:SNIPPET_CHARS]


# --------------------------------------------------------------------------------------------------
# Answers: HTTP status first, then the business code
# --------------------------------------------------------------------------------------------------
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


def parse_envelope(
    http_status: int,
    body: bytes,
    *,
    retry_after: str | None = None,
    what: str = "request",
    task_id: str | None = None,
) -> Any:
    """
    Check one Jogg answer on both levels and return its ``data``.

    :param http_status: the HTTP status
    :param body: the raw body
    :param retry_after: the ``Retry-After`` header, if any
    :param what: what was asked, for messages (``"create"``, ``"status of task X"``)
    :param task_id: the task id asked about, named in a "not found" error
    :raises JoggAPIError: a subclass that says what went wrong
    """
    # 1. HTTP status first: gateways answer 429/408/425/5xx with HTML or nothing at all
    if http_status == 429:
        wait = parse_retry_after(retry_after)
        raise exc.JoggRateLimitError(
            f"Jogg rate limit hit on {what}"
            + (f"; retry after {wait:g} s" if wait is not None else "; no Retry-After given"),
            retry_after=wait,
            http_status=http_status,
            **_envelope_fields(body),
        )
    if http_status in NOT_PROCESSED_STATUSES:
        raise exc.JoggNotProcessedError(
            f"Jogg did not process the {what} (HTTP {http_status} {NOT_PROCESSED_STATUSES[http_status]}); "
            "it may be sent again",
            http_status=http_status,
            **_envelope_fields(body),
        )
    if http_status >= 500:
        raise exc.JoggServerError(
            f"Jogg server error on {what}", http_status=http_status, **_envelope_fields(body)
        )

    # 2. the envelope
    try:
        envelope = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        cls: type[exc.JoggAPIError] = (
            exc.JoggMalformedResponseError if 200 <= http_status < 300 else exc.JoggFatalAPIError
        )
        raise cls(
            f"Jogg answered {what} with a body that is not JSON",
            http_status=http_status,
            body_snippet=body_snippet(body),
        ) from None
    code = envelope.get("code") if isinstance(envelope, dict) else None
    if isinstance(code, bool) or not isinstance(code, int):
        if 200 <= http_status < 300:
            raise exc.JoggResponseError(
                f"Jogg answered {what} without a business code",
                http_status=http_status,
                body_snippet=body_snippet(body),
            )
        # a 4xx without a business code (wrong path prefix, a proxy's refusal): retrying cannot help
        raise exc.JoggFatalAPIError(
            f"Jogg answered {what} with HTTP {http_status}",
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
            summary = f"{summary} ({what})"
        raise cls(summary, http_status=http_status, code=code, jogg_message=msg)
    if not 200 <= http_status < 300:
        # a 4xx without a business code (wrong path prefix, a proxy's refusal): retrying cannot help
        raise exc.JoggFatalAPIError(
            f"Jogg answered {what} with HTTP {http_status}",
            http_status=http_status,
            code=code,
            jogg_message=msg,
        )
    if "data" not in envelope or envelope["data"] is None:
        raise exc.JoggResponseError(
            f"Jogg answered {what} without 'data'",
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


# --------------------------------------------------------------------------------------------------
# Retry policy
# --------------------------------------------------------------------------------------------------
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


class AccountThrottle:
    """
    When the next request to one Jogg account may be sent: a process-wide rate limit and the
    account's ``Retry-After``, shared by every caller in the process (hook instances, pokes and
    all triggers in a triggerer) that uses the same base URL and key.

    Requests reserve send times in call order (a generic cell rate algorithm): ``1 / rate``
    seconds apart on average, with bursts of up to :data:`THROTTLE_BURST_SECONDS` x ``rate``
    requests sent at once, so polls that fall due together go out together while any second
    holds at most ``rate`` x (1 + :data:`THROTTLE_BURST_SECONDS`) requests. Thousands of waits
    share the rate fairly: with N waits, rate R and poll interval P each task is polled about every
    ``max(P, N / R)`` seconds and none starves. A 429 closes the account until its ``Retry-After``
    has passed, for every caller at once.

    All times are on the monotonic clock (``clock``), never the wall clock: a wall clock stepped
    back (NTP, a VM resumed) would otherwise hold every request for as long as it was stepped, and
    one stepped forward would undercut a ``Retry-After``. Callers ask for the wait with
    :meth:`reserve` and :meth:`remaining` and pass no time of their own, so clocks cannot be mixed.

    :param rate: requests per second; 0 or less disables the limit
    :param clock: seconds on a monotonic clock (``time.monotonic``; a fake one in tests)
    """

    __slots__ = ("_clock", "_lock", "_next_slot", "open_at", "rate")

    def __init__(self, rate: float = 0.0, clock: Callable[[], float] = time.monotonic) -> None:
        self.rate = rate
        #: when (on ``clock``) the account opens again after a 429
        self.open_at = -math.inf
        self._next_slot = -math.inf
        self._clock = clock
        self._lock = threading.Lock()

    def reserve(self) -> float:
        """Reserve the next send time; returns the seconds to wait before sending (0 to send now)."""
        with self._lock:
            now = self._clock()
            slot = max(now, self.open_at)
            if self.rate > 0:
                period = 1.0 / self.rate
                theoretical = max(self._next_slot, slot)
                slot = max(slot, theoretical - max(THROTTLE_BURST_SECONDS - period, 0.0))
                self._next_slot = theoretical + period
            return slot - now

    def close_for(self, seconds: float) -> None:
        """Nobody on this account sends anything for ``seconds`` (a 429's ``Retry-After``)."""
        with self._lock:
            self.open_at = max(self.open_at, self._clock() + seconds)

    def remaining(self) -> float:
        """Seconds until the account is open again after a 429 (0 when open)."""
        return max(self.open_at - self._clock(), 0.0)

    def limit(self, rate: float) -> None:
        """
        Apply one connection's rate: the lowest real limit wins (0 or less, "no limit", never
        replaces a real one), so a connection that allows more cannot lift another's limit.
        """
        with self._lock:
            if rate > 0 and (self.rate <= 0 or rate < self.rate):
                self.rate = rate


_THROTTLES: dict[tuple[str, str], AccountThrottle] = {}
_THROTTLES_LOCK = threading.Lock()


def throttle_for(base_url: str, key_id: str, rate: float) -> AccountThrottle:
    """
    The process-wide throttle for one account (``key_id`` is a fingerprint, never the key).

    Every connection to the same account shares it, at the lowest rate any of them has set in this
    process (see :meth:`AccountThrottle.limit`): a limit configured for the account holds however
    many connections use it. Raising a connection's limit takes effect when the process restarts.
    """
    throttle = _THROTTLES.get((base_url, key_id))
    if throttle is None:
        with _THROTTLES_LOCK:
            throttle = _THROTTLES.setdefault((base_url, key_id), AccountThrottle(rate))
    throttle.limit(rate)
    return throttle


# --------------------------------------------------------------------------------------------------
# Connection settings and input validation
# --------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class JoggConnectionConfig:
    """
    Everything a client needs from an Airflow connection, resolved and validated once.

    :param base_url: API base URL with scheme and optional path prefix, no trailing slash
    :param api_key: the API key (kept out of ``repr``)
    :param api_platform: value for the ``x-api-platform`` header
    :param timeout: seconds per request
    :param max_retries: retries after the first attempt for requests that are safe to repeat
    :param retry_backoff: first backoff in seconds
    :param max_requests_per_second: process-wide request rate for this account (0: no limit)
    :param allow_private_media_urls: let :meth:`JoggHook.rehost_url` fetch media from private,
        loopback, link-local and other non-public addresses (off: such URLs are refused)
    """

    base_url: str
    api_key: str = field(repr=False)
    api_platform: str | None = None
    timeout: float = DEFAULT_TIMEOUT
    max_retries: int = DEFAULT_MAX_RETRIES
    retry_backoff: float = DEFAULT_RETRY_BACKOFF
    max_requests_per_second: float = DEFAULT_MAX_REQUESTS_PER_SECOND
    allow_private_media_urls: bool = False

    @property
    def key_id(self) -> str:
        """A short fingerprint that tells keys apart without revealing them (cache and throttle keys)."""
        return hashlib.sha256(self.api_key.encode()).hexdigest()[:16]

    def headers(self) -> dict[str, str]:
        headers = {"x-api-key": self.api_key, "Accept": "application/json"}
        if self.api_platform:
            headers["x-api-platform"] = self.api_platform
        return headers

    def url(self, path: str) -> str:
        return self.base_url + path

    def throttle(self) -> AccountThrottle:
        return throttle_for(self.base_url, self.key_id, self.max_requests_per_second)

    @classmethod
    def from_connection(
        cls,
        conn_id: str,
        *,
        host: str | None,
        password: str | None,
        port: int | None = None,
        extra: Mapping[str, Any] | None = None,
    ) -> JoggConnectionConfig:
        """Validate one Airflow connection's fields. Raises :class:`JoggConfigError` naming the connection."""
        # forms may store extras with the "extra__jogg__" prefix; accept both spellings
        extra = {str(k).removeprefix("extra__jogg__"): v for k, v in (extra or {}).items()}
        # keys pasted from a mounted secret file usually end with a newline: it is not part of the key
        api_key = password.strip() if isinstance(password, str) else password
        if not api_key:
            raise exc.JoggConfigError(
                f"Connection {conn_id!r} has no API key: put your JoggAI API key in its password "
                "(shown as 'API Key' in the connection form)."
            )
        problem = header_value_problem(api_key)
        if problem:  # never the key itself in the message, only what is wrong with it
            raise exc.JoggConfigError(
                f"Connection {conn_id!r}: the API key (password) {problem}, so it cannot be sent in the "
                "x-api-key header. Copy the key again from the JoggAI dashboard."
            )
        allow_insecure = _extra_bool(conn_id, extra, "allow_insecure_http", False)
        platform = extra.get("api_platform")
        if platform is not None and not isinstance(platform, str):
            raise exc.JoggConfigError(f"Connection {conn_id!r}: extra 'api_platform' must be a string.")
        platform = (platform or "").strip() or None
        problem = header_value_problem(platform or "")
        if problem:
            raise exc.JoggConfigError(
                f"Connection {conn_id!r}: extra 'api_platform' {problem}, so it cannot be sent in the "
                f"x-api-platform header (got {platform!r})."
            )
        return cls(
            base_url=normalize_base_url(conn_id, host, port, allow_insecure_http=allow_insecure),
            api_key=api_key,
            api_platform=platform,
            timeout=_extra_number(conn_id, extra, "timeout", DEFAULT_TIMEOUT, minimum=0.001),
            max_retries=int(_extra_number(conn_id, extra, "max_retries", DEFAULT_MAX_RETRIES, integer=True)),
            retry_backoff=_extra_number(conn_id, extra, "retry_backoff", DEFAULT_RETRY_BACKOFF),
            max_requests_per_second=_extra_number(
                conn_id, extra, "max_requests_per_second", DEFAULT_MAX_REQUESTS_PER_SECOND
            ),
            allow_private_media_urls=_extra_bool(conn_id, extra, "allow_private_media_urls", False),
        )


def header_value_problem(value: str) -> str | None:
    """What makes ``value`` unusable as an HTTP header value (``None``: nothing), never the value itself.

    Only printable ASCII without spaces is accepted: an API key or a platform name has no use for
    anything else, and ``requests`` and ``aiohttp`` reject or mangle the rest in different ways.
    """
    for char in value:
        if char in " \t":
            return "contains whitespace"
        if ord(char) < 0x20 or ord(char) == 0x7F:
            return f"contains a control character (U+{ord(char):04X})"
        if ord(char) > 0x7E:
            return "contains a non-ASCII character"
    return None


#: a host name as both HTTP clients read it: dot-separated labels of letters, digits, '-' and '_'
_HOST_NAME = re.compile(r"(?:[a-z0-9_](?:[a-z0-9_-]*[a-z0-9_])?\.)*[a-z0-9_](?:[a-z0-9_-]*[a-z0-9_])?\.?")


def normalize_base_url(
    conn_id: str, host: str | None, port: int | None = None, *, allow_insecure_http: bool = False
) -> str:
    """
    The base URL from a connection's host: scheme required for http, ``https://`` assumed otherwise.

    A plain ``http://`` URL is refused for any host other than loopback unless
    ``allow_insecure_http`` is set: the API key would cross the network in clear text.

    The URL is read once, strictly, so that the host checked here is the host ``requests``
    (urllib3) and ``aiohttp`` (yarl) connect to: backslashes, whitespace, control and non-ASCII
    characters, a user name or password (``user:pass@``) and anything but a plain host name or IP
    address in the host are refused, since those are where URL parsers disagree.
    """
    raw = (host or "").strip() or DEFAULT_BASE_URL
    if "://" not in raw:
        raw = "https://" + raw
    shown = _redact_userinfo(raw)

    def invalid(problem: str) -> exc.JoggConfigError:
        return exc.JoggConfigError(
            f"Connection {conn_id!r}: base URL {shown!r} is invalid: {problem}. "
            "Use e.g. 'https://api.jogg.ai' or 'https://api.jogg.ai/open'."
        )

    for char in raw:
        if char == "\\":
            raise invalid("it contains a backslash")
        if char.isspace() or ord(char) < 0x20 or ord(char) == 0x7F:
            raise invalid(f"it contains whitespace or a control character (U+{ord(char):04X})")
        if ord(char) > 0x7E:
            raise invalid("it contains a non-ASCII character (write an international name in its xn-- form)")
    if "@" in raw:
        # requests would send it as Basic auth and show it wherever the base URL is shown
        raise invalid(
            "it contains '@' (a user name or password?). The API authenticates with the key alone: "
            "remove the credentials from the host and put the API key in the connection's password"
        )
    try:
        parts = urlsplit(raw)
    except ValueError as error:  # e.g. an unbalanced '[' of an IPv6 address
        raise invalid(str(error)) from None
    if parts.scheme not in ("http", "https"):
        raise invalid(f"scheme {parts.scheme!r} is not http or https")
    if not parts.hostname:
        raise invalid("it has no host name")
    if parts.query or parts.fragment or "?" in raw or "#" in raw:
        raise invalid("it must not have a query string or fragment")
    try:
        url_port = parts.port
    except ValueError:
        raise exc.JoggConfigError(
            f"Connection {conn_id!r}: base URL {shown!r} has an invalid port."
        ) from None
    hostname = parts.hostname
    if parts.netloc.startswith("["):
        if "%" in hostname:  # clients decode a zone id differently; an API never needs one
            raise invalid("an IPv6 zone id ('%') is not supported")
        try:
            ipaddress.IPv6Address(hostname)
        except ValueError:
            raise invalid(f"{hostname!r} is not an IPv6 address") from None
        netloc = f"[{hostname}]"
    elif _HOST_NAME.fullmatch(hostname):
        netloc = hostname
    else:
        raise invalid(f"{hostname!r} is not a host name or IP address")
    if url_port is not None:
        netloc = f"{netloc}:{url_port}"
    if parts.netloc.lower() != netloc:
        # e.g. "host:0080" or "host:": what is left over is read differently by different clients
        raise invalid(f"{parts.netloc!r} is not a plain host or host:port")
    if port and url_port is None:
        if not 0 < port < 65536:
            raise exc.JoggConfigError(f"Connection {conn_id!r}: port {port!r} is not a valid port.")
        netloc = f"{netloc}:{port}"
    if parts.scheme == "http" and not allow_insecure_http and not is_loopback(hostname):
        raise exc.JoggConfigError(
            f"Connection {conn_id!r}: base URL {shown!r} uses plain http:// for a host "
            "that is not loopback, which would send the API key in clear text. Use https://, or set "
            '"allow_insecure_http": true in the connection extra if this is really intended.'
        )
    return f"{parts.scheme}://{netloc}{parts.path.rstrip('/')}"


def redirect_refused(status: int, location: str | None, base_url: str, what: str) -> exc.JoggRedirectError:
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
        f"Jogg {what}: the API answered with a redirect {target}. API requests do not follow "
        "redirects, so that the API key never goes to another host; the request was not processed. "
        f"Check the connection's base URL ({base_url}): e.g. https:// instead of http://, the path "
        "prefix (/open), or a host that moved",
        http_status=status,
    )


def _redact_userinfo(url: str) -> str:
    """The URL with anything before its last '@' in the part after the scheme hidden (credentials)."""
    scheme, sep, rest = url.partition("://")
    if sep and "@" in rest:
        return f"{scheme}://***@{rest.rsplit('@', 1)[1]}"
    return url


def is_loopback(hostname: str) -> bool:
    if hostname.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(hostname.strip("[]")).is_loopback
    except ValueError:
        return False


def _extra_number(
    conn_id: str,
    extra: Mapping[str, Any],
    name: str,
    default: float,
    *,
    minimum: float = 0.0,
    integer: bool = False,
) -> float:
    value = extra.get(name)
    if value is None or value == "":
        return default
    try:
        number = float(value) if not isinstance(value, bool) else math.nan
    except (TypeError, ValueError):
        number = math.nan
    if not math.isfinite(number) or number < minimum or (integer and not number.is_integer()):
        kind = "a whole number" if integer else "a number"
        raise exc.JoggConfigError(
            f"Connection {conn_id!r}: extra {name!r} must be {kind} >= {minimum:g}, got {value!r}."
        )
    return number


def _extra_bool(conn_id: str, extra: Mapping[str, Any], name: str, default: bool) -> bool:
    value = extra.get(name)
    if value is None or value == "":
        return default
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().lower() in ("true", "false"):
        return value.strip().lower() == "true"
    raise exc.JoggConfigError(f"Connection {conn_id!r}: extra {name!r} must be true or false, got {value!r}.")


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


# --------------------------------------------------------------------------------------------------
# The trigger event: one deterministic shape
# --------------------------------------------------------------------------------------------------
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
        raise exc.JoggEventError(f"Jogg trigger event must be a dict, got {_short(event)}")
    status, task_id = event.get("status"), event.get("task_id")
    if status not in _EVENT_STATUSES:
        raise exc.JoggEventError(f"Jogg trigger event has an unknown status {status!r}: {_short(event)}")
    if not isinstance(task_id, str) or not task_id:
        raise exc.JoggEventError(f"Jogg trigger event has no task_id: {_short(event)}")
    kind = EventStatus(status)
    message: str = event["message"] if isinstance(event.get("message"), str) else ""
    if kind in (EventStatus.SUCCESS, EventStatus.FAILED):
        result = LipSyncResult.from_dict(event.get("result") or {})
        if result.status != kind.value or result.task_id != task_id:
            raise exc.JoggEventError(f"Jogg trigger event contradicts itself: {_short(event)}")
        return LipSyncEvent(kind, task_id, result=result, message=message)
    if kind is EventStatus.ERROR:
        info = event.get("error")
        if not isinstance(info, dict) or info.get("type") not in _EVENT_ERRORS:
            raise exc.JoggEventError(f"Jogg trigger error event without a known error type: {_short(event)}")
        cls = _EVENT_ERRORS[info["type"]]
        summary = str(info.get("summary") or message)
        error: exc.JoggFatalError
        if issubclass(cls, exc.JoggAPIError):
            error = cls(summary, **{f: info.get(f) for f in _API_ERROR_FIELDS})
        else:
            error = cls(summary)
        return LipSyncEvent(kind, task_id, message=message, error=error)
    return LipSyncEvent(kind, task_id, message=message)


def credits_estimate(duration_seconds: float | None) -> float | None:
    """Credits a result costs: Jogg bills 1 credit per 125 s of output. An estimate, not an invoice."""
    return None if duration_seconds is None else round(duration_seconds / 125.0, 4)
