"""What a :class:`~airflow_provider_jogg.testing.proxy.FaultProxy` saw: per-connection records and totals."""

from __future__ import annotations

import dataclasses
import threading
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import asyncio

__all__ = ["Conn", "Ledger", "ProxyConnection", "ProxyStats"]


@dataclass(frozen=True)
class ProxyConnection:
    """One client connection as the proxy saw it.

    ``requests`` counts request bursts (client data after a response, or the first); ``bytes_up``
    and ``bytes_down`` the bytes relayed to the server and to the client; ``fault`` what ended the
    connection: ``None`` (a normal close), ``reset``, ``stall``, ``dropped`` (closed when a ``refuse``
    step started, or by :meth:`FaultProxy.stop`) or ``upstream_failed`` (the server could not be
    reached). ``closed_at`` is ``None`` while the connection is open.
    """

    id: int
    client_port: int
    opened_at: float
    closed_at: float | None
    requests: int
    bytes_up: int
    bytes_down: int
    fault: str | None


@dataclass(frozen=True)
class ProxyStats:
    """Totals since the proxy started (or :meth:`FaultProxy.reset_stats`).

    ``connections`` accepted, ``open`` now; ``resets`` and ``stalls``: responses cut or held back;
    ``dropped``: connections closed when a ``refuse`` step started; ``refusals``: ``refuse`` steps
    that closed the listener; ``upstream_failures``: connections whose server could not be reached.
    """

    connections: int = 0
    open: int = 0
    resets: int = 0
    stalls: int = 0
    dropped: int = 0
    refusals: int = 0
    upstream_failures: int = 0
    bytes_up: int = 0
    bytes_down: int = 0


class Conn:
    """The record of one relayed connection while it is open (only touched in the proxy's loop)."""

    __slots__ = (
        "bytes_down",
        "bytes_up",
        "client_port",
        "closed_at",
        "fault",
        "id",
        "opened_at",
        "requests",
        "task",
    )

    def __init__(self, conn_id: int, client_port: int) -> None:
        self.id = conn_id
        self.client_port = client_port
        self.opened_at = time.time()
        self.closed_at: float | None = None
        self.requests = 0
        self.bytes_up = 0
        self.bytes_down = 0
        self.fault: str | None = None
        #: The task relaying the connection: cancelled to drop it.
        self.task: asyncio.Task[Any] | None = None

    def snapshot(self) -> ProxyConnection:
        return ProxyConnection(
            id=self.id,
            client_port=self.client_port,
            opened_at=self.opened_at,
            closed_at=self.closed_at,
            requests=self.requests,
            bytes_up=self.bytes_up,
            bytes_down=self.bytes_down,
            fault=self.fault,
        )


class Ledger:
    """The totals and the connections of one proxy: written in its loop, read from any thread."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._stats = ProxyStats()
        self._open: dict[int, Conn] = {}
        self._closed: list[ProxyConnection] = []
        self._next_id = 0

    def record_open(self, client_port: int) -> Conn:
        """Record a connection just accepted."""
        with self._lock:
            self._next_id += 1
            conn = Conn(self._next_id, client_port)
            self._open[conn.id] = conn
            self._stats = dataclasses.replace(self._stats, connections=self._stats.connections + 1)
        return conn

    def record_close(self, conn: Conn) -> None:
        """Record that a connection closed."""
        conn.closed_at = time.time()
        with self._lock:
            self._open.pop(conn.id, None)
            self._closed.append(conn.snapshot())

    def open_conns(self) -> list[Conn]:
        """The connections open now."""
        with self._lock:
            return list(self._open.values())

    def count(self, **increments: int) -> None:
        """Add to the totals (:class:`ProxyStats` field names)."""
        with self._lock:
            self._stats = dataclasses.replace(
                self._stats, **{name: getattr(self._stats, name) + n for name, n in increments.items()}
            )

    def totals(self) -> ProxyStats:
        """The totals (a snapshot)."""
        with self._lock:
            return dataclasses.replace(self._stats, open=len(self._open))

    def connections(self) -> list[ProxyConnection]:
        """Every connection since the start (or :meth:`reset`), closed ones first (snapshots)."""
        with self._lock:
            return [*self._closed, *(conn.snapshot() for conn in self._open.values())]

    def reset(self) -> None:
        """Zero the totals and forget closed connections."""
        with self._lock:
            self._stats = ProxyStats()
            self._closed.clear()
