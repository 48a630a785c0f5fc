"""Fixtures of the fault proxy's tests: the fake server and a proxy in front of it."""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest

from airflow_provider_jogg.testing import FakeJoggServer, FaultProxy
from tests.unit.testing.proxy.support import KEY

if TYPE_CHECKING:
    from collections.abc import Iterator


@pytest.fixture
def server() -> Iterator[FakeJoggServer]:
    with FakeJoggServer(api_key=KEY, ffmpeg=False) as fake:
        yield fake


@pytest.fixture
def proxy(server: FakeJoggServer) -> Iterator[FaultProxy]:
    with FaultProxy(server.url) as started:
        yield started
