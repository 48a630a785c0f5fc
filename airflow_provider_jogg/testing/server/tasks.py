"""Lip-sync tasks of the fake server: their outcome, their clock and the statuses it gives.

A task's status is computed lazily from the wall clock at each answer: ``pending`` for
``pending_seconds`` after its creation, then ``processing`` for ``processing_seconds``, then
``success`` (or ``failed`` when its video or audio URL contains ``fail``, or names an asset of this
server that was never uploaded). No background thread is involved.

A task's own timing is set by a marker in the query string of its video or audio URL:
:data:`FINISH_AFTER_POLL` (it ends that long after the first status answer about it, however late
whoever waits for it first asked) or :data:`FINISH_AFTER_CREATE`; it wins over
``processing_seconds``, so one batch can hold tasks that end right after they are first polled,
others much later, and (no marker, ``processing_seconds=None``) others never.
"""

from __future__ import annotations

import threading
import time
import uuid
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, NamedTuple, Protocol
from urllib.parse import parse_qs, urlsplit

if TYPE_CHECKING:
    from collections.abc import Callable

    from airflow_provider_jogg.testing.media import BuiltMedia

__all__ = [
    "FAILURE_MESSAGE",
    "FINISH_AFTER_CREATE",
    "FINISH_AFTER_POLL",
    "StatusAnswer",
    "Task",
    "TaskBook",
    "TaskTiming",
    "finish_markers",
]

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


class TaskTiming(Protocol):
    """The server settings a task's clock reads at each answer (a test may change them on the fly)."""

    pending_seconds: float
    processing_seconds: float | None


@dataclass
class Task:
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
    media: BuiltMedia | None = field(default=None, repr=False)
    media_lock: threading.Lock = field(default_factory=threading.Lock, repr=False, compare=False)


class StatusAnswer(NamedTuple):
    """What a status request learns about a task, read under the lock in one go."""

    task: Task
    status: str
    completed_at: float | None
    created_at: float
    #: ``error.message`` when the status is ``failed``
    error_message: str


def finish_markers(*urls: str) -> tuple[dict[str, float], str | None]:
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


class TaskBook:
    """The tasks of one server and their clock (thread-safe)."""

    def __init__(self, timing: TaskTiming) -> None:
        self._timing = timing
        self._lock = threading.Lock()
        self._tasks: dict[str, Task] = {}

    def new(
        self,
        video_url: str,
        audio_url: str,
        playback_type: str,
        timing: dict[str, float] | None,
        is_missing_asset: Callable[[str], bool],
    ) -> Task:
        """Create and store a task; its outcome (and its timing) is decided from its URLs.

        ``timing``: the URL markers already read by :func:`finish_markers` (``None``: read them
        here, ``ValueError`` for an invalid one).
        """
        if timing is None:
            timing, problem = finish_markers(video_url, audio_url)
            if problem is not None:
                raise ValueError(problem)
        failure: str | None = None
        if "fail" in video_url or "fail" in audio_url:
            failure = FAILURE_MESSAGE
        else:
            for media in (video_url, audio_url):
                if is_missing_asset(media):
                    failure = f"media fetch failed: {media} was never uploaded"
                    break
        task = Task(
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

    def force(self, task_id: str, status: str, error_message: str | None) -> None:
        """Force a task's status for ever; ``KeyError`` for an unknown task."""
        with self._lock:
            task = self._tasks[task_id]
            task.forced_status = status
            task.forced_error = error_message
            task.forced_at = time.time()

    def snapshots(self) -> dict[str, dict[str, Any]]:
        """task_id -> the public snapshot of each task (see ``FakeJoggServer.tasks``)."""
        now = time.time()
        with self._lock:
            return {task_id: self._snapshot(task, now) for task_id, task in self._tasks.items()}

    def status_now(self, task_id: str) -> tuple[Task | None, str | None]:
        """The task and its status now (``(None, None)`` for an unknown task); no clock is started."""
        with self._lock:
            task = self._tasks.get(task_id)
            status = None if task is None else self._status_of(task, time.time())[0]
        return task, status

    def answer_status(self, task_id: str) -> StatusAnswer | None:
        """A status request answered for the task (``None``: unknown): its first answer starts the
        clock of a :data:`FINISH_AFTER_POLL` marker."""
        now = time.time()
        with self._lock:
            task = self._tasks.get(task_id)
            if task is None:
                return None
            if task.first_polled_at is None:
                task.first_polled_at = now
            status, completed_at = self._status_of(task, now)
            error_message = task.forced_error or task.failure or FAILURE_MESSAGE
            return StatusAnswer(task, status, completed_at, task.created_at, error_message)

    def _status_of(self, task: Task, now: float) -> tuple[str, float | None]:
        """The task's status at ``now`` and its completion time (``None`` unless terminal)."""
        if task.forced_status is not None:
            completed = task.forced_at if task.forced_status in _TERMINAL else None
            return task.forced_status, completed
        done_at = self._done_at(task)
        if done_at is not None and now >= done_at:
            return ("failed" if task.failure else "success"), done_at
        return ("pending" if now - task.created_at < self._timing.pending_seconds else "processing"), None

    def _done_at(self, task: Task) -> float | None:
        """When the task ends (``None``: not known yet, or never); a URL marker wins."""
        if task.finish_after_poll is not None:
            if task.first_polled_at is None:
                return None
            return task.first_polled_at + task.finish_after_poll
        if task.finish_after_create is not None:
            return task.created_at + task.finish_after_create
        # read at each answer, not at creation: tests may change the server's value on the fly
        if self._timing.processing_seconds is None:
            return None
        return task.created_at + self._timing.pending_seconds + self._timing.processing_seconds

    def _snapshot(self, task: Task, now: float) -> dict[str, Any]:
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
