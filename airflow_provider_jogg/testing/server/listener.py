"""The fake server's life on the network: binding, the serving thread, open connections, stopping.

Stopping must not hang on a client: every open connection is shut down, and handlers waiting in a
fault's delay or an ffmpeg build are woken through :attr:`Listener.stopping`.
"""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from typing import TYPE_CHECKING

from airflow_provider_jogg.testing.server.http import FakeHTTPServer

if TYPE_CHECKING:
    from airflow_provider_jogg.testing.server import FakeJoggServer

__all__ = ["Listener"]


class Listener:
    """Serves one :class:`FakeJoggServer` on a loopback address in a daemon thread (restartable)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._lifecycle = threading.Lock()
        self._httpd: FakeHTTPServer | None = None
        self._thread: threading.Thread | None = None
        self._connections: dict[socket.socket, threading.Thread] = {}
        self._closing = False
        #: Set when the server stops; replaced at each start.
        self.stopping = threading.Event()
        #: The bound TCP port (``None`` before the first start; kept after a stop).
        self.port: int | None = None

    @property
    def running(self) -> bool:
        """Whether the server is serving."""
        return self._httpd is not None

    def start(self, fake: FakeJoggServer, host: str, port: int) -> None:
        """Bind ``host:port`` and serve ``fake`` in a daemon thread; a no-op while running."""
        with self._lifecycle:
            if self._httpd is not None:
                return
            bind_host = "127.0.0.1" if host == "localhost" else host
            family = socket.AF_INET6 if ":" in bind_host else socket.AF_INET
            self.stopping = threading.Event()
            self._closing = False
            httpd = FakeHTTPServer((bind_host, port), fake, family)
            self.port = int(httpd.server_address[1])
            thread = threading.Thread(
                target=httpd.serve_forever,
                kwargs={"poll_interval": 0.01},  # stop() waits at most one poll
                name=f"FakeJoggServer:{self.port}",
                daemon=True,
            )
            self._httpd = httpd
            self._thread = thread
            thread.start()

    def stop(self) -> None:
        """Stop serving, close every connection and the listening socket; safe to call twice."""
        with self._lifecycle:
            httpd, thread = self._httpd, self._thread
            if httpd is None:
                return
            self._httpd = None
            self._thread = None
            with self._lock:
                self._closing = True
            if thread is not None and thread.is_alive():
                httpd.shutdown()
            with self._lock:
                connections = dict(self._connections)
                self._connections.clear()
            for conn in connections:
                with contextlib.suppress(OSError):
                    conn.shutdown(socket.SHUT_RDWR)
            # Wake handlers sleeping in a delay: their connections are already shut down.
            self.stopping.set()
            httpd.server_close()
            deadline = time.monotonic() + 5.0
            for worker in [thread, *connections.values()]:
                if worker is not None and worker is not threading.current_thread():
                    worker.join(timeout=max(0.0, deadline - time.monotonic()))

    def track(self, conn: socket.socket) -> None:
        """Remember an open client connection (and its thread) so that :meth:`stop` can end it."""
        with self._lock:
            closing = self._closing
            if not closing:
                self._connections[conn] = threading.current_thread()
        if closing:
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)

    def untrack(self, conn: socket.socket) -> None:
        """Forget a closed client connection."""
        with self._lock:
            self._connections.pop(conn, None)

    def sleep(self, seconds: float) -> bool:
        """Sleep, but wake up early when the server stops; ``False`` when it is stopping."""
        stopping = self.stopping
        if seconds > 0 and stopping.wait(seconds):
            return False
        return not stopping.is_set()
