"""The counters: totals and per-connection records, as the proxy's users read them."""

from __future__ import annotations

import pytest
import requests

from airflow_provider_jogg.testing import ProxyStats
from airflow_provider_jogg.testing.proxy.stats import Ledger
from tests.unit.testing.proxy.support import HEADERS, WHOAMI, read_to_end, send_request
from tests.unit.testing.server.support import wait_until


def test_the_ledger_counts_connections_open_and_closed():
    ledger = Ledger()
    first, second = ledger.record_open(50001), ledger.record_open(50002)
    first.bytes_down = 10
    ledger.count(bytes_down=10, resets=1)
    ledger.record_close(first)
    assert ledger.totals() == ProxyStats(connections=2, open=1, resets=1, bytes_down=10)
    closed, still_open = ledger.connections()  # closed ones first
    assert (closed.id, closed.client_port, closed.bytes_down) == (first.id, 50001, 10)
    assert closed.closed_at is not None
    assert (still_open.id, still_open.closed_at) == (second.id, None)
    assert ledger.open_conns() == [second]
    ledger.reset()
    assert ledger.totals() == ProxyStats(open=1)  # what is open now stays open
    assert [conn.id for conn in ledger.connections()] == [second.id]


def test_reset_stats_forgets_closed_connections_and_keeps_the_schedule(server, proxy):
    with requests.Session() as kept_alive:
        assert kept_alive.get(proxy.url + WHOAMI, headers=HEADERS).json()["code"] == 0
        with requests.Session() as closed:
            assert closed.get(proxy.url + WHOAMI, headers=HEADERS).json()["code"] == 0
        # the proxy records a close after the client has closed: wait until it has
        assert wait_until(lambda: [conn.closed_at is None for conn in proxy.connections] == [False, True])
        proxy.inject("reset")
        proxy.reset_stats()
        assert proxy.stats == ProxyStats(open=1)
        (still_open,) = proxy.connections  # the kept-alive one stays listed, the closed one is forgotten
        assert still_open.closed_at is None
        assert still_open.requests == 1
        with send_request(proxy) as sock, pytest.raises(ConnectionResetError):
            read_to_end(sock)
        # the schedule stayed; counted before the client could see the reset
        assert (proxy.stats.connections, proxy.stats.resets) == (1, 1)
