"""Relaying one connection: bytes through unchanged, a response cut (reset) or held back (stall)."""

from __future__ import annotations

import socket

import pytest
import requests

from airflow_provider_jogg.testing import FaultProxy
from tests.unit.testing.proxy.support import (
    HEADERS,
    WHOAMI,
    read_exactly,
    read_to_end,
    send_request,
    undated,
    whole_answer,
)


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
