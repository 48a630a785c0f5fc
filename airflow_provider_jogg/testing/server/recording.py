"""The ``/v2`` API requests a fake server received, as tests read them back."""

from __future__ import annotations

import dataclasses
import threading
import time
from dataclasses import dataclass
from typing import Any

__all__ = ["RecordedRequest", "RequestLog"]


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


class RequestLog:
    """The recorded requests, oldest first, each completed with its status once answered (thread-safe)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._entries: list[_Entry] = []

    def record(
        self, method: str, path: str, headers: dict[str, str], body: Any, client_port: int = 0
    ) -> _Entry:
        """Record a request on arrival (status 0 until answered)."""
        entry = _Entry(RecordedRequest(method, path, headers, body, time.time(), 0, client_port))
        with self._lock:
            self._entries.append(entry)
        return entry

    def finish(self, entry: _Entry, status: int) -> None:
        """Store the HTTP status answered to a recorded request."""
        with self._lock:
            entry.record = dataclasses.replace(entry.record, status=status)

    def snapshot(self) -> list[RecordedRequest]:
        """Copy of the recorded requests, oldest first."""
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

    def clear(self) -> None:
        """Forget the recorded requests."""
        with self._lock:
            self._entries.clear()
