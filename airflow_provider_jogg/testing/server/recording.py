"""The ``/v2`` API requests a fake server received, as tests read them back."""

from __future__ import annotations

import dataclasses
import threading
import time
from collections import Counter, deque
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

    __slots__ = ("generation", "record")

    def __init__(self, record: RecordedRequest, generation: int) -> None:
        self.record = record
        #: the log's generation when recorded: an answer to a request recorded before a clear()
        #: must not touch the counts started afresh since
        self.generation = generation


class RequestLog:
    """The recorded requests, oldest first, each completed with its status once answered (thread-safe).

    Counts are exact for every request since the last :meth:`clear`, whatever ``max_records``:
    they are kept per (method, path) and per status, so counting costs the number of distinct
    paths, not of requests. ``max_records`` caps the detailed records (``None``: keep them all;
    ``0``: counts only); above it the oldest records are dropped, so a long run (thousands of
    clips) holds a bounded log.
    """

    def __init__(self, max_records: int | None = None) -> None:
        if max_records is not None and (
            isinstance(max_records, bool) or not isinstance(max_records, int) or max_records < 0
        ):
            raise ValueError("max_recorded_requests must be None or an int >= 0")
        self.max_records = max_records
        self._lock = threading.Lock()
        self._entries: deque[_Entry] = deque(maxlen=max_records)
        self._generation = 0
        self._total = 0
        self._by_route: Counter[tuple[str, str]] = Counter()
        self._by_status: Counter[int] = Counter()

    def record(
        self, method: str, path: str, headers: dict[str, str], body: Any, client_port: int = 0
    ) -> _Entry:
        """Record a request on arrival (status 0 until answered)."""
        record = RecordedRequest(method, path, headers, body, time.time(), 0, client_port)
        with self._lock:
            entry = _Entry(record, self._generation)
            if self.max_records != 0:
                self._entries.append(entry)  # the deque drops the oldest above max_records
            self._total += 1
            self._by_route[(method, path)] += 1
            self._by_status[0] += 1
        return entry

    def finish(self, entry: _Entry, status: int) -> None:
        """Store the HTTP status answered to a recorded request."""
        with self._lock:
            entry.record = dataclasses.replace(entry.record, status=status)
            if entry.generation == self._generation:
                self._by_status[0] -= 1
                self._by_status[status] += 1

    def snapshot(self) -> list[RecordedRequest]:
        """Copy of the recorded requests kept, oldest first."""
        with self._lock:
            return [entry.record for entry in self._entries]

    def count(self, method: str | None = None, path: str | None = None) -> int:
        """How many requests match ``method`` (any case) and start with ``path`` (dropped ones included)."""
        wanted = method.upper() if method is not None else None
        with self._lock:
            if wanted is None and path is None:
                return self._total
            return sum(
                number
                for (verb, where), number in self._by_route.items()
                if (wanted is None or verb == wanted) and (path is None or where.startswith(path))
            )

    def count_status(self, status: int) -> int:
        """How many requests were answered with HTTP ``status`` (0: no answer; dropped ones included)."""
        with self._lock:
            return self._by_status[status]

    def counts_by_status(self) -> dict[int, int]:
        """HTTP status -> how many requests were answered with it (0: not answered)."""
        with self._lock:
            return {status: number for status, number in sorted(self._by_status.items()) if number}

    @property
    def dropped(self) -> int:
        """How many requests are counted but no longer kept in detail (``max_records``)."""
        with self._lock:
            return self._total - len(self._entries)

    def clear(self) -> None:
        """Forget the recorded requests and their counts."""
        with self._lock:
            self._entries.clear()
            self._generation += 1
            self._total = 0
            self._by_route.clear()
            self._by_status.clear()
