"""The fake server's HTTP layer: a threaded HTTP/1.1 server and the handler that reads each request,
routes it, applies faults on the wire and records it.

Standard library only (``http.server``): keep-alive connections, each served in its own daemon
thread.
"""

from __future__ import annotations

import contextlib
import io
import socket
import socketserver
import struct
import sys
import traceback
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import TYPE_CHECKING, Any, cast
from urllib.parse import urlsplit

from airflow_provider_jogg.testing.server import admin, routes
from airflow_provider_jogg.testing.server.faults import fault_response, truncated_body
from airflow_provider_jogg.testing.server.responses import (
    NOT_FOUND,
    Response,
    envelope,
    gzipped,
    json_response,
    parse_json,
)

if TYPE_CHECKING:
    from collections.abc import Callable

    from airflow_provider_jogg.testing.server import FakeJoggServer
    from airflow_provider_jogg.testing.server.faults import Fault

__all__ = ["FakeHTTPServer"]


class _BadBody(Exception):
    """The request body could not be read (bad Content-Length or chunked framing)."""


class FakeHTTPServer(ThreadingHTTPServer):
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
        return cast("FakeHTTPServer", self.server).fake

    def version_string(self) -> str:
        """The ``Server`` header value."""
        return self.server_version

    def setup(self) -> None:
        """Set up the streams and register the connection."""
        super().setup()
        self.fake._listener.track(self.connection)

    def finish(self) -> None:
        """Flush and close the streams, then forget the connection."""
        try:
            super().finish()
        finally:
            self.fake._listener.untrack(self.connection)

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
            self._send(json_response(400, envelope(400, str(exc)), (("Connection", "close"),)))
            return
        target = self.path
        if not target.startswith("/"):
            split = urlsplit(target)
            target = (split.path or "/") + (f"?{split.query}" if split.query else "")
        path, _, query = target.partition("?")
        query = query.partition("#")[0]
        fake = self.fake
        try:
            api_path = routes.api_path(fake.prefix, path)
            if api_path is not None:
                self._handle_api(api_path, body)
            elif path.startswith("/_fake/"):
                parsed, ok = parse_json(body)
                self._send(admin.admin_response(fake, self.command, path, parsed, ok))
            elif path.startswith(("/files/", "/assets/", "/_storage/")):
                content_type = self.headers.get("Content-Type")
                self._run(
                    fake._faults.take(self.command, path, api=False),
                    lambda: routes.storage_response(
                        fake, self.command, path, query, body, content_type, chunked
                    ),
                )
            else:
                self._send(NOT_FOUND)
        except OSError:
            raise
        except Exception:
            traceback.print_exc(file=sys.stderr)
            self.close_connection = True
            with contextlib.suppress(OSError):
                self._send(json_response(500, envelope(50000, "fake server bug, see its stderr")))

    def _handle_api(self, path: str, body: bytes) -> None:
        """Record a ``/v2`` request, apply a fault or the route, and store the status sent."""
        fake = self.fake
        api_key = self.headers.get("x-api-key")
        parsed, ok = parse_json(body)
        headers: dict[str, str] = {}
        for name, value in self.headers.items():
            lowered = name.lower()
            if lowered == "x-api-key":
                value = "<valid>" if value == fake.api_key else "<invalid>"
            headers[lowered] = f"{headers[lowered]}, {value}" if lowered in headers else value
        entry = fake._requests.record(
            self.command, path, headers, parsed if ok else None, client_port=self.client_address[1]
        )
        status = 0
        try:
            fault = fake._faults.take(self.command, path, api=True)
            status = self._run(
                fault, lambda: routes.api_response(fake, self.command, path, api_key, parsed, ok)
            )
        finally:
            fake._requests.finish(entry, status)

    def _run(self, fault: Fault | None, handler: Callable[[], Response]) -> int:
        """Answer with ``handler()``, or with ``fault`` (see :class:`Fault` for the ordering)."""
        if fault is None:
            return self._send(handler())
        fake = self.fake
        if fault.after_create:
            real = handler()
            if not fake._listener.sleep(fault.delay):
                return self._drop()
            if fault.kind == "slow":
                return self._send(real)
            if fault.kind == "gzip":
                return self._send(gzipped(real))
            return self._send_fault(fault, real)
        if not fake._listener.sleep(fault.delay):
            return self._drop()
        if fault.kind == "slow":
            return self._send(handler())
        if fault.kind == "gzip":
            return self._send(gzipped(handler()))
        return self._send_fault(fault, None)

    def _drop(self) -> int:
        """Close the connection without answering (the server is stopping)."""
        self.close_connection = True
        return 0

    def _send(self, response: Response) -> int:
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

    def _send_fault(self, fault: Fault, real: Response | None) -> int:
        """Apply a fault's answer; returns the status sent (0 when nothing was sent)."""
        response = fault_response(fault)
        if response is not None:
            return self._send(response)
        if fault.kind == "truncated":
            full = truncated_body(real)
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(full)))
            if fault.retry_after:
                self.send_header("Retry-After", fault.retry_after)
            self.end_headers()
            self.wfile.write(full[: len(full) // 2])
            self.wfile.flush()
            self.close_connection = True
            return 200
        if fault.kind == "reset":
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
