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

The proxy is standard library only (``asyncio`` in a background thread) and imports no Airflow, so
it works in any test, next to any event loop the test runs.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import socket
import struct
import threading
import time
from collections import deque
from typing import TYPE_CHECKING, Any, TypeVar
from urllib.parse import urlsplit

from airflow_provider_jogg.testing.loopback import check_loopback
from airflow_provider_jogg.testing.proxy.faults import ProxyFault, Step
from airflow_provider_jogg.testing.proxy.stats import Conn, ProxyConnection, ProxyStats

if TYPE_CHECKING:
    from collections.abc import Coroutine

__all__ = ["FaultProxy"]

_CHUNK = 65536
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
        self._lock = threading.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._server: asyncio.Server | None = None
        self._placeholder: socket.socket | None = None  # holds the port while connections are refused
        self._steps: deque[Step] = deque()
        self._conns: dict[int, Conn] = {}
        self._closed_conns: list[ProxyConnection] = []
        self._next_id = 0
        self._stats = ProxyStats()
        self._switches: set[asyncio.Task[None]] = set()  # listener changes after a step ran out

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
        self._call(self._set_schedule([Step(fault) for fault in faults]))

    def heal(self) -> None:
        """Pass-through from now on: the schedule is emptied, held-back (stalled) connections are
        closed, and the listener is open again when this returns."""
        self._call(self._set_schedule([]))

    @property
    def fault(self) -> ProxyFault | None:
        """The step applied now (``None``: pass-through)."""
        with self._lock:
            return self._steps[0].fault if self._steps else None

    # ------------------------------------------------------------------ counters
    @property
    def stats(self) -> ProxyStats:
        """The totals (a snapshot)."""
        with self._lock:
            return dataclasses.replace(self._stats, open=len(self._conns))

    @property
    def connections(self) -> list[ProxyConnection]:
        """Every connection since the start (or :meth:`reset_stats`), closed ones first (snapshots)."""
        with self._lock:
            return [*self._closed_conns, *(conn.snapshot() for conn in self._conns.values())]

    def reset_stats(self) -> None:
        """Zero the totals and forget closed connections (the schedule stays)."""
        with self._lock:
            self._stats = ProxyStats()
            self._closed_conns.clear()

    def _count(self, **increments: int) -> None:
        with self._lock:
            self._stats = dataclasses.replace(
                self._stats, **{name: getattr(self._stats, name) + n for name, n in increments.items()}
            )

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

    async def _refuse(self) -> None:
        """Close the listener (new connections are refused) but keep the port; drop open connections."""
        if self._server is None:
            return
        self._server.close()  # closes the listening socket; relayed connections are ours to close
        self._server = None
        # a bound socket that does not listen: the kernel refuses connections, nobody takes the port
        self._placeholder = self._bind()
        self._count(refusals=1)
        for conn in list(self._conns.values()):
            self._drop(conn)

    async def _reopen(self) -> None:
        if self._server is not None:
            return
        sock, self._placeholder = self._placeholder, None
        await self._listen(sock if sock is not None else self._bind())

    def _mark_dropped(self, conn: Conn) -> None:
        if conn.fault is None:
            conn.fault = "dropped"
            self._count(dropped=1)

    def _drop(self, conn: Conn) -> None:
        self._mark_dropped(conn)
        if conn.task is not None:
            conn.task.cancel()

    async def _shutdown(self) -> None:
        self._clear_steps()
        if self._switches:
            await asyncio.gather(*self._switches, return_exceptions=True)
        if self._server is not None:
            self._server.close()
            self._server = None
        tasks = []
        for conn in list(self._conns.values()):
            self._drop(conn)
            if conn.task is not None:
                tasks.append(conn.task)
        if tasks:
            await asyncio.gather(*tasks, return_exceptions=True)

    # ------------------------------------------------------------------ the schedule (loop thread)
    async def _set_schedule(self, steps: list[Step]) -> None:
        self._clear_steps()
        with self._lock:
            self._steps.extend(steps)
        await self._on_head_changed()

    def _clear_steps(self) -> None:
        with self._lock:
            steps, self._steps = list(self._steps), deque()
        for step in steps:
            self._end(step, release=True)
        # also the responses held by steps that already ran out: a heal lets every one of them go
        for conn in self._conns.values():
            if conn.released is not None:
                conn.released.set()

    def _end(self, step: Step, *, release: bool) -> None:
        step.active = False
        if step.timer is not None:
            step.timer.cancel()
            step.timer = None
        if not release:
            return
        # held-back responses are let go by closing their connections: the client has timed
        # out by now or sees the connection close, never a late answer
        for conn in self._conns.values():
            if conn.step is step and conn.released is not None:
                conn.released.set()

    async def _on_head_changed(self) -> None:
        head = self._steps[0] if self._steps else None
        if head is not None and head.fault.seconds is not None and head.timer is None:
            assert self._loop is not None
            head.timer = self._loop.call_later(head.fault.seconds, self._expire, head)
        if head is not None and head.fault.kind == "refuse":
            await self._refuse()
        else:
            await self._reopen()

    def _expire(self, step: Step) -> None:
        step.timer = None
        self._pop(step, release=True)  # its time is up: the fault heals

    def _pop(self, step: Step, *, release: bool) -> None:
        """End the running step and start the next one."""
        with self._lock:
            if not self._steps or self._steps[0] is not step:
                return
            self._steps.popleft()
        self._end(step, release=release)
        assert self._loop is not None
        switch = self._loop.create_task(self._on_head_changed())
        self._switches.add(switch)
        switch.add_done_callback(self._switches.discard)

    def _consume(self, step: Step) -> None:
        if step.remaining is None:
            return
        step.remaining -= 1
        if step.remaining <= 0:
            # used up: later responses get the next step; connections it holds stay held
            self._pop(step, release=False)

    def _step_for(self, conn: Conn, response_start: bool) -> Step | None:
        """The step that applies to the chunk of a response about to be relayed."""
        if response_start:
            conn.step = self._steps[0] if self._steps else None
            conn.passing = conn.step is not None and conn.step.fault.kind == "pass"
            if conn.passing:
                assert conn.step is not None
                self._consume(conn.step)  # a counted pass-through lets this whole response through
        elif not conn.passing and (conn.step is None or not conn.step.active):
            # a fault injected (or a step ended) while this response was under way applies from now
            conn.step = self._steps[0] if self._steps else None
        if conn.passing or conn.step is None or not conn.step.active:
            return None
        return conn.step if conn.step.fault.kind in ("reset", "stall") else None

    # ------------------------------------------------------------------ relaying (loop thread)
    async def _handle(self, client_reader: asyncio.StreamReader, client_writer: asyncio.StreamWriter) -> None:
        peer = client_writer.get_extra_info("peername")
        with self._lock:
            self._next_id += 1
            conn = Conn(self._next_id, peer[1] if peer else 0)
            self._conns[conn.id] = conn
        conn.task = asyncio.current_task()
        self._count(connections=1)
        upstream_writer: asyncio.StreamWriter | None = None
        try:
            if self._server is None:  # accepted just before a refusal started
                self._mark_dropped(conn)
                return
            # drain() then waits until relayed bytes are with the kernel: a reset or a stall must
            # come after the bytes relayed before it, not instead of them
            client_writer.transport.set_write_buffer_limits(high=0)
            try:
                upstream_reader, upstream_writer = await asyncio.open_connection(*self._upstream)
            except OSError:
                conn.fault = "upstream_failed"
                self._count(upstream_failures=1)
                _abort(client_writer)
                return
            up = asyncio.ensure_future(self._pump_up(conn, client_reader, upstream_writer))
            down = asyncio.ensure_future(
                self._pump_down(conn, upstream_reader, client_writer, upstream_writer)
            )
            try:
                await asyncio.wait({up, down}, return_when=asyncio.FIRST_COMPLETED)
            finally:
                for pump in (up, down):
                    pump.cancel()
                await asyncio.gather(up, down, return_exceptions=True)
        except asyncio.CancelledError:
            pass  # dropped (a refusal started) or the proxy stops: close below
        finally:
            if conn.fault != "reset":
                _close(client_writer)
            if upstream_writer is not None:
                _close(upstream_writer)
            conn.closed_at = time.time()
            with self._lock:
                self._conns.pop(conn.id, None)
                self._closed_conns.append(conn.snapshot())

    async def _pump_up(
        self, conn: Conn, client_reader: asyncio.StreamReader, upstream_writer: asyncio.StreamWriter
    ) -> None:
        """Client to server, until the client closes."""
        while True:
            try:
                chunk = await client_reader.read(_CHUNK)
            except OSError:
                return
            if not chunk:
                return
            if conn.requests == 0 or conn.response_bytes > 0:
                conn.requests += 1
            conn.response_bytes = 0  # the next bytes from the server start the answer to this
            conn.bytes_up += len(chunk)
            self._count(bytes_up=len(chunk))
            upstream_writer.write(chunk)
            try:
                await upstream_writer.drain()
            except OSError:
                return

    async def _pump_down(
        self,
        conn: Conn,
        upstream_reader: asyncio.StreamReader,
        client_writer: asyncio.StreamWriter,
        upstream_writer: asyncio.StreamWriter,
    ) -> None:
        """Server to client, applying the schedule, until the server closes or a fault ends it."""
        while True:
            try:
                chunk = await upstream_reader.read(_CHUNK)
            except OSError:
                # the server reset the connection: so does the proxy, so the client sees the same
                conn.fault = conn.fault or "reset"
                _abort(client_writer)
                return
            if not chunk:
                with contextlib.suppress(OSError):
                    await client_writer.drain()
                return
            step = self._step_for(conn, response_start=conn.response_bytes == 0)
            if step is not None and conn.response_bytes + len(chunk) > step.fault.after_bytes:
                await self._apply(step, conn, chunk, client_writer, upstream_writer)
                return
            await self._relay(conn, chunk, client_writer)

    async def _relay(self, conn: Conn, chunk: bytes, client_writer: asyncio.StreamWriter) -> None:
        conn.response_bytes += len(chunk)
        conn.bytes_down += len(chunk)
        self._count(bytes_down=len(chunk))
        client_writer.write(chunk)
        await client_writer.drain()

    async def _apply(
        self,
        step: Step,
        conn: Conn,
        chunk: bytes,
        client_writer: asyncio.StreamWriter,
        upstream_writer: asyncio.StreamWriter,
    ) -> None:
        kind = step.fault.kind
        room = step.fault.after_bytes - conn.response_bytes
        # counted before the client can see it: a test that saw the cut finds it in the counters
        conn.fault = kind
        self._count(**{"resets" if kind == "reset" else "stalls": 1})
        if kind == "stall":
            conn.released = asyncio.Event()  # set when the fault heals, even while relaying below
        self._consume(step)
        if room > 0:
            await self._relay(conn, chunk[:room], client_writer)
        _close(upstream_writer)  # the rest of the server's answer is never delivered
        if kind == "reset":
            _abort(client_writer)
            return
        assert conn.released is not None
        # held open until the fault heals (or the client gives up, which ends the other pump)
        await conn.released.wait()


def _abort(writer: asyncio.StreamWriter) -> None:
    """Close with a TCP RST (SO_LINGER 0), as a crashed or impatient server does."""
    sock = writer.get_extra_info("socket")
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    writer.transport.abort()


def _close(writer: asyncio.StreamWriter) -> None:
    with contextlib.suppress(OSError, RuntimeError):
        writer.close()
