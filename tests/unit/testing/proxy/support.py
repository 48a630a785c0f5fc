"""Constants and raw-socket helpers shared by the fault proxy's tests."""

from __future__ import annotations

import re
import socket
from typing import TYPE_CHECKING

from airflow_provider_jogg.protocol import WHOAMI_PATH

if TYPE_CHECKING:
    from airflow_provider_jogg.testing import FakeJoggServer, FaultProxy

KEY = "proxy-test-key-0815"
HEADERS = {"x-api-key": KEY}
WHOAMI = WHOAMI_PATH


def send_request(proxy: FaultProxy, path: str = WHOAMI) -> socket.socket:
    """A raw HTTP/1.1 request through the proxy; the socket to read the answer from."""
    sock = socket.create_connection(("127.0.0.1", proxy.port))
    sock.sendall(f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nx-api-key: {KEY}\r\n\r\n".encode())
    return sock


def read_exactly(sock: socket.socket, size: int) -> bytes:
    data = b""
    while len(data) < size:
        chunk = sock.recv(size - len(data))
        assert chunk, f"the connection closed after {len(data)} of {size} bytes"
        data += chunk
    return data


def read_to_end(sock: socket.socket) -> bytes:
    """Everything until the connection closes (raises ConnectionResetError on a reset)."""
    data = b""
    while chunk := sock.recv(65536):
        data += chunk
    return data


def whole_answer(server: FakeJoggServer) -> bytes:
    """The whoami answer straight from the server, to compare with what the proxy relays."""
    with socket.create_connection(("127.0.0.1", server.port)) as sock:
        sock.sendall(
            f"GET {WHOAMI} HTTP/1.1\r\nHost: 127.0.0.1\r\nx-api-key: {KEY}\r\n"
            "Connection: close\r\n\r\n".encode()
        )
        return read_to_end(sock)


def undated(answer: bytes) -> bytes:
    """Two answers a second apart differ in their Date header only."""
    return re.sub(rb"\d\d:\d\d:\d\d", b"00:00:00", answer)
