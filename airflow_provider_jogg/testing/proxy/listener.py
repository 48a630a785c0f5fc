"""FaultProxy: a fault-injecting TCP proxy for the network between Airflow and Jogg (or the fake server).

:class:`FaultProxy` listens on a loopback port and relays every connection, byte for byte, to an
upstream HTTP server (usually a :class:`~airflow_provider_jogg.testing.server.FakeJoggServer`).
Point the Jogg connection at ``proxy.url`` instead of the server's URL, and the network between
the provider and the server can break on demand, the way real networks do:

- ``reset``: the response is cut after ``after_bytes`` bytes and the connection is reset (TCP RST);
  the request has reached the server, so a create call has created its task.
- ``stall``: the response is held back after ``after_bytes`` bytes, with the connection open, until
  the client gives up (its timeout), the fault heals or the proxy stops.
- ``refuse``: the listener is closed, so connections are refused (the port stays reserved), and the
  connections open at that moment are closed; nothing reaches the server.
- ``pass``: relay unchanged (in a schedule: let ``times`` responses through before the next step).

Faults are steps of a schedule. :meth:`FaultProxy.inject` sets one step, :meth:`FaultProxy.schedule`
several, applied in order; a step ends after ``times`` responses (``reset``, ``stall``, ``pass``) or
``seconds`` seconds, whichever comes first, or at :meth:`FaultProxy.heal`. With no step left the
proxy relays unchanged. Counters (:attr:`FaultProxy.stats`, :attr:`FaultProxy.connections`) say
what really happened, per connection.

This module holds the facade: the listener (open, refusing, reopened) and the proxy's life in its
thread. The schedule is :mod:`~airflow_provider_jogg.testing.proxy.schedule`, one connection's
relay :mod:`~airflow_provider_jogg.testing.proxy.relay`, the counters
:mod:`~airflow_provider_jogg.testing.proxy.stats`.

The proxy is standard library only (``asyncio`` in a background thread) and imports no Airflow, so
it works in any test, next to any event loop the test runs.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import threading
from typing import TYPE_CHECKING, Any, TypeVar
from urllib.parse import urlsplit

from airflow_provider_jogg.testing.loopback import check_loopback
from airflow_provider_jogg.testing.proxy.faults import ProxyFault
from airflow_provider_jogg.testing.proxy.relay import ConnectionRelay, close_writer
from airflow_provider_jogg.testing.proxy.schedule import FaultSchedule
from airflow_provider_jogg.testing.proxy.stats import Ledger

if TYPE_CHECKING:
    from collections.abc import Coroutine

    from airflow_provider_jogg.testing.proxy.stats import Conn, ProxyConnection, ProxyStats

__all__ = ["FaultProxy"]

_T = TypeVar("_T")


class FaultProxy:
    """A TCP proxy on a loopback port that breaks the connection to an HTTP server on demand.

    Use it as a context manager, or call :meth:`start` and :meth:`stop`::

        with FakeJoggServer(api_key="test-key") as server, FaultProxy(server.url) as proxy:
            # point the Jogg connection at proxy.url instead of server.url
            proxy.inject("reset", after_bytes=40)  # every response cut after 40 bytes, then RST
            ...
            proxy.heal()
            assert proxy.stats.resets > 0

    :param target: the server: a URL (``http://127.0.0.1:8765/open``; its path is kept in
        :attr:`url`) or a ``(host, port)`` pair
    :param host: the loopback address to listen on (others are refused: ``ValueError``)
    :param port: the port to listen on (0: a free one)

    .. note::
        The proxy relays TCP, it does not parse HTTP. A "response" starts with the first bytes from
        the server after the client sent something, which is exact for HTTP/1.1 clients that do not
        pipeline (``requests``, ``aiohttp``).
    """

    def __init__(self, target: str | tuple[str, int], *, host: str = "127.0.0.1", port: int = 0) -> None:
        check_loopback(host)
        if isinstance(target, str):
            parts = urlsplit(target)
            if parts.scheme not in ("http", "https") or not parts.hostname:
                raise ValueError(f"FaultProxy target must be an http(s) URL with a host, got {target!r}")
            self._scheme = parts.scheme
            self._path = parts.path.rstrip("/")
            self._upstream = (parts.hostname, parts.port or (443 if parts.scheme == "https" else 80))
        else:
            upstream_host, upstream_port = target
            self._scheme, self._path = "http", ""
            self._upstream = (str(upstream_host), int(upstream_port))
        self._host = host
        self._requested_port = port
        self._port = 0
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._server: asyncio.Server | None = None
        self._placeholder: socket.socket | None = None  # holds the port while connections are refused
        self._schedule = FaultSchedule(self._on_step)
        self._ledger = Ledger()

    # ------------------------------------------------------------------ lifecycle
    def start(self) -> FaultProxy:
        """Start listening (in a daemon thread with its own event loop); returns the proxy."""
        if self._thread is not None:
            raise RuntimeError("FaultProxy already started")
        loop = asyncio.new_event_loop()
        ready = threading.Event()

        def run() -> None:
            asyncio.set_event_loop(loop)
            loop.call_soon(ready.set)
            loop.run_forever()

        self._loop = loop
        self._thread = threading.Thread(target=run, name="jogg-fault-proxy", daemon=True)
        self._thread.start()
        ready.wait()
        try:
            self._call(self._listen(self._bind()))
        except BaseException:
            self._stop_loop()
            raise
        return self

    def stop(self) -> None:
        """Close the listener and every connection, and stop the thread (idempotent)."""
        if self._loop is None:
            return
        with contextlib.suppress(RuntimeError):
            self._call(self._shutdown())
        self._stop_loop()

    def __enter__(self) -> FaultProxy:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def __repr__(self) -> str:
        state = "running" if self._loop is not None else "stopped"
        return f"<FaultProxy {state} {self._host}:{self._port} -> {self._upstream[0]}:{self._upstream[1]}>"

    # ------------------------------------------------------------------ addresses
    @property
    def port(self) -> int:
        """The port the proxy listens on (kept while connections are refused)."""
        return self._port

    @property
    def url(self) -> str:
        """The target URL with the proxy's address: what to put in the Jogg connection's host."""
        host = f"[{self._host}]" if ":" in self._host else self._host
        return f"{self._scheme}://{host}:{self._port}{self._path}"

    # ------------------------------------------------------------------ faults
    def inject(
        self, kind: str, *, after_bytes: int = 0, times: int | None = None, seconds: float | None = None
    ) -> None:
        """Replace the schedule with one fault, applied from now on (see :class:`ProxyFault`)."""
        self.schedule(ProxyFault(kind, after_bytes=after_bytes, times=times, seconds=seconds))

    def schedule(self, *faults: ProxyFault) -> None:
        """Replace the schedule with these steps, applied in order; then pass-through."""
        for fault in faults:
            if not isinstance(fault, ProxyFault):
                raise TypeError(f"FaultProxy.schedule expects ProxyFault steps, got {fault!r}")
        self._call(self._schedule.replace(faults))

    def heal(self) -> None:
        """Pass-through from now on: the schedule is emptied, held-back (stalled) connections are
        closed, and the listener is open again when this returns."""
        self._call(self._schedule.replace(()))

    @property
    def fault(self) -> ProxyFault | None:
        """The step applied now (``None``: pass-through)."""
        return self._schedule.head

    # ------------------------------------------------------------------ counters
    @property
    def stats(self) -> ProxyStats:
        """The totals (a snapshot)."""
        return self._ledger.totals()

    @property
    def connections(self) -> list[ProxyConnection]:
        """Every connection since the start (or :meth:`reset_stats`), closed ones first (snapshots)."""
        return self._ledger.connections()

    def reset_stats(self) -> None:
        """Zero the totals and forget closed connections (the schedule stays)."""
        self._ledger.reset()

    # ------------------------------------------------------------------ the loop thread
    def _call(self, coro: Coroutine[Any, Any, _T]) -> _T:
        """Run a coroutine in the proxy's loop and wait for its result (from any other thread)."""
        loop = self._loop
        if loop is None or not loop.is_running():
            coro.close()
            raise RuntimeError("FaultProxy is not running: call start() first")
        return asyncio.run_coroutine_threadsafe(coro, loop).result()

    def _stop_loop(self) -> None:
        loop, thread = self._loop, self._thread
        self._loop = self._thread = None
        if loop is None:
            return
        loop.call_soon_threadsafe(loop.stop)
        if thread is not None:
            thread.join()
        loop.close()
        if self._placeholder is not None:
            self._placeholder.close()
            self._placeholder = None

    async def _shutdown(self) -> None:
        await self._schedule.close()
        if self._server is not None:
            self._server.close()
            self._server = None
        tasks = []
        for conn in self._ledger.open_conns():
            self._drop(conn)
            if conn.task is not None:
                tasks.append(conn.task)
        if tasks:
            await asyncio.gather(*tasks, return_exceptions=True)

    # ------------------------------------------------------------------ the listener (loop thread)
    def _bind(self) -> socket.socket:
        """A socket bound to the proxy's address, not listening yet."""
        family = socket.AF_INET6 if ":" in self._host else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_STREAM)
        # SO_REUSEADDR: rebinding the port after a refusal must work while relayed connections
        # (which share the port) are still around
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((self._host, self._port or self._requested_port))
        except OSError:
            sock.close()
            raise
        self._port = sock.getsockname()[1]
        return sock

    async def _listen(self, sock: socket.socket) -> None:
        sock.listen(128)
        sock.setblocking(False)
        self._server = await asyncio.start_server(self._handle, sock=sock)

    async def _on_step(self, fault: ProxyFault | None) -> None:
        """Another step started: a ``refuse`` closes the listener, any other (re)opens it."""
        if fault is not None and fault.kind == "refuse":
            await self._refuse()
        else:
            await self._reopen()

    async def _refuse(self) -> None:
        """Close the listener (new connections are refused) but keep the port; drop open connections."""
        if self._server is None:
            return
        self._server.close()  # closes the listening socket; relayed connections are ours to close
        self._server = None
        # a bound socket that does not listen: the kernel refuses connections, nobody takes the port
        self._placeholder = self._bind()
        self._ledger.count(refusals=1)
        for conn in self._ledger.open_conns():
            self._drop(conn)

    async def _reopen(self) -> None:
        if self._server is not None:
            return
        sock, self._placeholder = self._placeholder, None
        await self._listen(sock if sock is not None else self._bind())

    def _mark_dropped(self, conn: Conn) -> None:
        if conn.fault is None:
            conn.fault = "dropped"
            self._ledger.count(dropped=1)

    def _drop(self, conn: Conn) -> None:
        self._mark_dropped(conn)
        if conn.task is not None:
            conn.task.cancel()

    async def _handle(self, client_reader: asyncio.StreamReader, client_writer: asyncio.StreamWriter) -> None:
        peer = client_writer.get_extra_info("peername")
        conn = self._ledger.record_open(peer[1] if peer else 0)
        conn.task = asyncio.current_task()
        try:
            if self._server is None:  # accepted just before a refusal started
                self._mark_dropped(conn)
                close_writer(client_writer)
                return
            relay = ConnectionRelay(conn, self._schedule, self._ledger, self._upstream)
            await relay.run(client_reader, client_writer)
        finally:
            self._ledger.record_close(conn)
