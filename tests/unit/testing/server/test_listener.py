"""The fake server on the network: loopback only, start and stop."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

import pytest
import requests

from airflow_provider_jogg.protocol import WHOAMI_PATH
from airflow_provider_jogg.testing import FakeJoggServer
from tests.unit.testing.server.support import KEY

if TYPE_CHECKING:
    from collections.abc import Callable


@pytest.mark.parametrize("host", ["0.0.0.0", "192.168.1.10", "example.com", "", "::"])
def test_non_loopback_host_is_refused(host: str) -> None:
    with pytest.raises(ValueError, match="loopback"):
        FakeJoggServer(host=host)


def test_localhost_and_other_loopback_hosts(make_server: Callable[..., FakeJoggServer]) -> None:
    server = make_server(host="localhost")
    assert server.url.startswith("http://127.0.0.1:")
    assert requests.get(server.url + WHOAMI_PATH, headers={"x-api-key": KEY}, timeout=5).ok
    other = make_server(host="127.0.0.2")
    assert other.root_url == f"http://127.0.0.2:{other.port}"


def test_start_is_idempotent_and_stop_releases_the_port(session: requests.Session) -> None:
    server = FakeJoggServer(api_key=KEY)
    with pytest.raises(RuntimeError):
        _ = server.url
    try:
        assert server.start() is server
        port = server.port
        assert server.start() is server
        assert server.port == port
        # Leave an idle keep-alive connection open: stop() must not wait for it.
        assert session.get(server.url + WHOAMI_PATH, timeout=5).status_code == 200
        started = time.monotonic()
        server.stop()
        assert time.monotonic() - started < 2
        assert not server.running
        server.stop()
        with pytest.raises(requests.ConnectionError):
            requests.get(server.url + WHOAMI_PATH, timeout=2)
    finally:
        server.stop()
    with FakeJoggServer(api_key=KEY, port=port) as again:
        assert again.port == port
        assert session.get(again.url + WHOAMI_PATH, timeout=5).status_code == 200
