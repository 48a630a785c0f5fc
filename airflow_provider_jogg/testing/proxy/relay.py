"""The byte relay of one connection through a :class:`~airflow_provider_jogg.testing.proxy.FaultProxy`.

:class:`ConnectionRelay` copies bytes client to server and server to client, and applies the step
of the :class:`~airflow_provider_jogg.testing.proxy.schedule.FaultSchedule` in force to each
response: cut it with a TCP RST (``reset``) or hold it back (``stall``) after ``after_bytes``
bytes, or let it through (``pass``, or no step). It counts what it relays in the proxy's
:class:`~airflow_provider_jogg.testing.proxy.stats.Ledger`.

The relay does not parse HTTP. A "response" starts with the first bytes from the server after the
client sent something, which is exact for HTTP/1.1 clients that do not pipeline.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import struct
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from airflow_provider_jogg.testing.proxy.schedule import FaultSchedule, Step
    from airflow_provider_jogg.testing.proxy.stats import Conn, Ledger

__all__ = ["ConnectionRelay", "abort_writer", "close_writer"]

_CHUNK = 65536


class ConnectionRelay:
    """Relays one accepted client connection to the server (only used in the proxy's loop).

    :param conn: the connection's record, updated as bytes pass and when a fault ends it
    :param schedule: the proxy's schedule, asked at each response which step applies
    :param ledger: the proxy's totals
    :param upstream: the server's ``(host, port)``
    """

    def __init__(
        self, conn: Conn, schedule: FaultSchedule, ledger: Ledger, upstream: tuple[str, int]
    ) -> None:
        self._conn = conn
        self._schedule = schedule
        self._ledger = ledger
        self._upstream = upstream
        self._response_bytes = 0  # of the response under way (0: the next bytes start one)
        self._step: Step | None = None  # the step applied to the response under way
        self._passing = False  # a counted ``pass`` step lets the whole response under way through

    async def run(self, client_reader: asyncio.StreamReader, client_writer: asyncio.StreamWriter) -> None:
        """Relay until a side closes, a fault ends the connection or the task is cancelled (dropped);
        then close both sides (a reset client is closed already)."""
        conn = self._conn
        upstream_writer: asyncio.StreamWriter | None = None
        try:
            # drain() then waits until relayed bytes are with the kernel: a reset or a stall must
            # come after the bytes relayed before it, not instead of them
            client_writer.transport.set_write_buffer_limits(high=0)
            try:
                upstream_reader, upstream_writer = await asyncio.open_connection(*self._upstream)
            except OSError:
                conn.fault = "upstream_failed"
                self._ledger.count(upstream_failures=1)
                abort_writer(client_writer)
                return
            up = asyncio.ensure_future(self._pump_up(client_reader, upstream_writer))
            down = asyncio.ensure_future(self._pump_down(upstream_reader, client_writer, upstream_writer))
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
                close_writer(client_writer)
            if upstream_writer is not None:
                close_writer(upstream_writer)

    async def _pump_up(
        self, client_reader: asyncio.StreamReader, upstream_writer: asyncio.StreamWriter
    ) -> None:
        """Client to server, until the client closes."""
        conn = self._conn
        while True:
            try:
                chunk = await client_reader.read(_CHUNK)
            except OSError:
                return
            if not chunk:
                return
            if conn.requests == 0 or self._response_bytes > 0:
                conn.requests += 1
            self._response_bytes = 0  # the next bytes from the server start the answer to this
            conn.bytes_up += len(chunk)
            self._ledger.count(bytes_up=len(chunk))
            upstream_writer.write(chunk)
            try:
                await upstream_writer.drain()
            except OSError:
                return

    async def _pump_down(
        self,
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
                self._conn.fault = self._conn.fault or "reset"
                abort_writer(client_writer)
                return
            if not chunk:
                with contextlib.suppress(OSError):
                    await client_writer.drain()
                return
            step = self._step_for(response_start=self._response_bytes == 0)
            if step is not None and self._response_bytes + len(chunk) > step.fault.after_bytes:
                await self._apply(step, chunk, client_writer, upstream_writer)
                return
            await self._relay(chunk, client_writer)

    def _step_for(self, response_start: bool) -> Step | None:
        """The ``reset`` or ``stall`` step that applies to the chunk of a response about to be relayed."""
        if response_start:
            self._step = self._schedule.current()
            self._passing = self._step is not None and self._step.fault.kind == "pass"
            if self._passing:
                assert self._step is not None
                self._schedule.consume(self._step)  # a counted pass-through lets this whole response through
        elif not self._passing and (self._step is None or not self._step.active):
            # a fault injected (or a step ended) while this response was under way applies from now
            self._step = self._schedule.current()
        step = self._step
        if self._passing or step is None or not step.active:
            return None
        return step if step.fault.kind in ("reset", "stall") else None

    async def _relay(self, chunk: bytes, client_writer: asyncio.StreamWriter) -> None:
        self._response_bytes += len(chunk)
        self._conn.bytes_down += len(chunk)
        self._ledger.count(bytes_down=len(chunk))
        client_writer.write(chunk)
        await client_writer.drain()

    async def _apply(
        self,
        step: Step,
        chunk: bytes,
        client_writer: asyncio.StreamWriter,
        upstream_writer: asyncio.StreamWriter,
    ) -> None:
        kind = step.fault.kind
        room = step.fault.after_bytes - self._response_bytes
        # counted before the client can see it: a test that saw the cut finds it in the counters
        self._conn.fault = kind
        self._ledger.count(**{"resets" if kind == "reset" else "stalls": 1})
        self._schedule.consume(step)
        if room > 0:
            await self._relay(chunk[:room], client_writer)
        close_writer(upstream_writer)  # the rest of the server's answer is never delivered
        if kind == "reset":
            abort_writer(client_writer)
            return
        # held open until the step lets go (its time is up, the fault heals or the proxy stops),
        # or the client gives up, which ends the other pump
        await step.released.wait()


def abort_writer(writer: asyncio.StreamWriter) -> None:
    """Close with a TCP RST (SO_LINGER 0), as a crashed or impatient server does."""
    sock = writer.get_extra_info("socket")
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    writer.transport.abort()


def close_writer(writer: asyncio.StreamWriter) -> None:
    """Close without raising: the other side may be gone already."""
    with contextlib.suppress(OSError, RuntimeError):
        writer.close()
