"""Fixtures of the fake server's tests: servers started on demand, clients."""

from __future__ import annotations

import http.client
from typing import TYPE_CHECKING, Any

import pytest
import requests

from airflow_provider_jogg.testing import FakeJoggServer
from tests.unit.testing.server.support import KEY

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator


@pytest.fixture
def make_server() -> Iterator[Callable[..., FakeJoggServer]]:
    """Start fake servers on demand; every one of them is stopped at teardown."""
    started: list[FakeJoggServer] = []

    def make(**kwargs: Any) -> FakeJoggServer:
        kwargs.setdefault("api_key", KEY)
        server = FakeJoggServer(**kwargs)
        started.append(server)
        return server.start()

    try:
        yield make
    finally:
        for server in started:
            server.stop()


@pytest.fixture
def server(make_server: Callable[..., FakeJoggServer]) -> FakeJoggServer:
    """A server whose tasks finish at once."""
    return make_server(pending_seconds=0, processing_seconds=0)


@pytest.fixture
def session() -> Iterator[requests.Session]:
    """A keep-alive session sending the valid key."""
    sess = requests.Session()
    sess.headers["x-api-key"] = KEY
    try:
        yield sess
    finally:
        sess.close()


@pytest.fixture
def conn(server: FakeJoggServer) -> Iterator[http.client.HTTPConnection]:
    """A raw HTTP/1.1 connection to ``server``."""
    connection = http.client.HTTPConnection("127.0.0.1", server.port, timeout=5)
    try:
        yield connection
    finally:
        connection.close()
