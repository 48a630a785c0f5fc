"""Tests of the fault-injecting proxy, over real sockets to the fake Jogg server."""

from __future__ import annotations

import re
import socket
from typing import TYPE_CHECKING

import pytest
import requests

from airflow_provider_jogg.protocol import WHOAMI_PATH
from airflow_provider_jogg.testing import FakeJoggServer, FaultProxy, ProxyFault

if TYPE_CHECKING:
    from collections.abc import Iterator

KEY = "proxy-test-key-0815"
HEADERS = {"x-api-key": KEY}
WHOAMI = WHOAMI_PATH


@pytest.fixture
def server() -> Iterator[FakeJoggServer]:
    with FakeJoggServer(api_key=KEY, ffmpeg=False) as fake:
        yield fake


@pytest.fixture
def proxy(server: FakeJoggServer) -> Iterator[FaultProxy]:
    with FaultProxy(server.url) as started:
        yield started


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


def test_passes_requests_through_and_counts_each_connection(server, proxy):
    full = whole_answer(server)
    session = requests.Session()
    answers = [session.get(proxy.url + WHOAMI, headers=HEADERS) for _ in range(3)]
    assert [a.json()["code"] for a in answers] == [0, 0, 0]
    assert server.count(path=WHOAMI) == 4
    (conn,) = proxy.connections  # kept alive: three requests over one connection
    assert conn.requests == 3
    assert conn.bytes_down == 3 * len(full)  # byte for byte
    assert conn.bytes_up > 0
    assert conn.fault is None
    assert conn.closed_at is None
    stats = proxy.stats
    assert (stats.connections, stats.open, stats.resets, stats.stalls) == (1, 1, 0, 0)
    assert (stats.bytes_up, stats.bytes_down) == (conn.bytes_up, conn.bytes_down)


def test_url_keeps_the_target_path(server):
    with (
        FakeJoggServer(api_key=KEY, prefix="/open", ffmpeg=False) as prefixed,
        FaultProxy(prefixed.url) as proxy,
    ):
        assert proxy.url == f"http://127.0.0.1:{proxy.port}/open"
        assert requests.get(proxy.url + WHOAMI, headers=HEADERS).json()["code"] == 0
    with FaultProxy(("127.0.0.1", server.port)) as by_address:
        assert by_address.url == f"http://127.0.0.1:{by_address.port}"


@pytest.mark.parametrize("after", [0, 17, 150], ids=["before-the-answer", "in-headers", "in-body"])
def test_reset_cuts_the_answer_after_n_bytes(server, proxy, after):
    full = whole_answer(server)
    proxy.inject("reset", after_bytes=after)
    with send_request(proxy) as sock:
        received = read_exactly(sock, after)
        with pytest.raises(ConnectionResetError):
            read_to_end(sock)
    assert undated(received) == undated(full[:after])
    assert proxy.stats.resets == 1
    assert server.count(path=WHOAMI) == 2  # the request reached the server: only its answer was cut
    assert proxy.connections[-1].fault == "reset"
    assert proxy.connections[-1].bytes_down == after


def test_a_short_answer_passes_a_reset_unharmed_and_uncounted(server, proxy):
    full = whole_answer(server)
    proxy.inject("reset", after_bytes=len(full) + 100)
    assert requests.get(proxy.url + WHOAMI, headers=HEADERS).json()["code"] == 0
    assert proxy.stats.resets == 0


def test_stall_holds_the_answer_until_healed(server, proxy):
    full = whole_answer(server)
    proxy.inject("stall", after_bytes=17)
    with send_request(proxy) as sock:
        assert read_exactly(sock, 17) == full[:17]
        # held: counted, and the connection is still open
        assert proxy.stats.stalls == 1
        assert proxy.stats.open == 1
        assert proxy.connections[-1].fault == "stall"
        proxy.heal()
        assert read_to_end(sock) == b""  # closed when healed, the rest of the answer never comes
    assert proxy.fault is None


def test_a_used_up_stall_still_holds_its_answer_until_healed(server, proxy):
    proxy.inject("stall", after_bytes=5, times=1)
    with send_request(proxy) as held:
        read_exactly(held, 5)
        # the next request passes: the step is used up ...
        assert requests.get(proxy.url + WHOAMI, headers=HEADERS).json()["code"] == 0
        assert proxy.stats.stalls == 1
        # ... but the first answer stays held until the heal
        (stalled,) = [c for c in proxy.connections if c.fault == "stall"]
        assert stalled.closed_at is None
        proxy.heal()
        assert read_to_end(held) == b""


def test_a_timed_stall_lets_go_by_itself(server, proxy):
    proxy.inject("stall", after_bytes=5, seconds=2)
    with send_request(proxy) as sock:
        read_exactly(sock, 5)
        assert read_to_end(sock) == b""  # closed when the step's time is up
    assert proxy.stats.stalls == 1
    assert proxy.fault is None
    assert requests.get(proxy.url + WHOAMI, headers=HEADERS).json()["code"] == 0


def test_refuse_closes_the_listener_and_open_connections_then_heals(server, proxy):
    port = proxy.port
    idle = send_request(proxy)
    read_exactly(idle, len(whole_answer(server)))  # answered, kept alive
    proxy.inject("refuse")
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(("127.0.0.1", port))
    assert read_to_end(idle) == b""  # the kept-alive connection was closed
    idle.close()
    assert proxy.connections[0].fault == "dropped"
    before = server.count()
    with pytest.raises(requests.ConnectionError):
        requests.get(proxy.url + WHOAMI, headers=HEADERS)
    assert server.count() == before  # nothing reached the server
    proxy.heal()
    assert proxy.port == port  # the port was held, not given away
    assert requests.get(proxy.url + WHOAMI, headers=HEADERS).json()["code"] == 0
    stats = proxy.stats
    assert (stats.refusals, stats.dropped) == (1, 1)


def test_schedule_runs_its_steps_in_order_then_passes(server, proxy):
    proxy.schedule(ProxyFault("pass", times=2), ProxyFault("reset", times=1), ProxyFault("stall", seconds=60))
    outcomes = []
    for _ in range(3):
        try:
            outcomes.append(requests.get(proxy.url + WHOAMI, headers=HEADERS).status_code)
        except requests.ConnectionError:
            outcomes.append("reset")
    assert outcomes == [200, 200, "reset"]
    assert proxy.fault == ProxyFault("stall", seconds=60)
    proxy.heal()
    assert proxy.fault is None
    assert requests.get(proxy.url + WHOAMI, headers=HEADERS).status_code == 200
    assert proxy.stats.resets == 1


def test_an_unreachable_server_resets_the_client():
    with socket.socket() as spare:
        spare.bind(("127.0.0.1", 0))
        dead_port = spare.getsockname()[1]
        with FaultProxy(("127.0.0.1", dead_port)) as proxy:
            # the reset may come before the request is even written: either is the client being reset
            with pytest.raises(ConnectionResetError), send_request(proxy) as sock:
                read_to_end(sock)
            assert proxy.stats.upstream_failures == 1  # counted before the client is reset
            assert proxy.connections[-1].fault == "upstream_failed"


def test_stop_closes_everything_and_is_idempotent(server):
    proxy = FaultProxy(server.url).start()
    proxy.inject("stall", after_bytes=5)
    with send_request(proxy) as sock:
        read_exactly(sock, 5)
        proxy.stop()
        assert read_to_end(sock) == b""  # a held connection is closed by the stop, not left hanging
    proxy.stop()
    assert "stopped" in repr(proxy)
    with pytest.raises(RuntimeError, match="not running"):
        proxy.heal()


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ({"kind": "drop"}, "unknown proxy fault kind"),
        ({"kind": "reset", "after_bytes": -1}, "after_bytes"),
        ({"kind": "stall", "times": 0}, "times"),
        ({"kind": "refuse", "times": 2}, "cannot count"),
        ({"kind": "refuse", "seconds": 0}, "seconds"),
    ],
    ids=["kind", "after-bytes", "times", "refuse-times", "seconds"],
)
def test_invalid_faults_are_refused(spec, message):
    with pytest.raises(ValueError, match=message):
        ProxyFault(**spec)


def test_listens_on_loopback_only_and_needs_a_target():
    with pytest.raises(ValueError, match="loopback"):
        FaultProxy("http://127.0.0.1:1", host="0.0.0.0")
    with pytest.raises(ValueError, match="http"):
        FaultProxy("127.0.0.1:8080")
