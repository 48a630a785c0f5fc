"""The listener and the proxy's life: addresses, refused connections, stopping."""

from __future__ import annotations

import socket

import pytest
import requests

from airflow_provider_jogg.testing import FakeJoggServer, FaultProxy
from tests.unit.testing.proxy.support import (
    HEADERS,
    KEY,
    WHOAMI,
    read_exactly,
    read_to_end,
    send_request,
    whole_answer,
)


def test_url_keeps_the_target_path(server):
    with (
        FakeJoggServer(api_key=KEY, prefix="/open", ffmpeg=False) as prefixed,
        FaultProxy(prefixed.url) as proxy,
    ):
        assert proxy.url == f"http://127.0.0.1:{proxy.port}/open"
        assert requests.get(proxy.url + WHOAMI, headers=HEADERS).json()["code"] == 0
    with FaultProxy(("127.0.0.1", server.port)) as by_address:
        assert by_address.url == f"http://127.0.0.1:{by_address.port}"


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


def test_listens_on_loopback_only_and_needs_a_target():
    with pytest.raises(ValueError, match="loopback"):
        FaultProxy("http://127.0.0.1:1", host="0.0.0.0")
    with pytest.raises(ValueError, match="http"):
        FaultProxy("127.0.0.1:8080")
