"""What a :class:`~airflow_provider_jogg.testing.proxy.FaultProxy` saw: per-connection records and totals."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import asyncio

    from airflow_provider_jogg.testing.proxy.faults import Step

__all__ = ["Conn", "ProxyConnection", "ProxyStats"]


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
    """The proxy's state of one relayed connection (only touched in the proxy's loop)."""

    __slots__ = (
        "bytes_down",
        "bytes_up",
        "client_port",
        "closed_at",
        "fault",
        "id",
        "opened_at",
        "passing",
        "released",
        "requests",
        "response_bytes",
        "step",
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
        self.response_bytes = 0
        self.fault: str | None = None
        self.step: Step | None = None
        self.passing = False
        self.released: asyncio.Event | None = None
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
