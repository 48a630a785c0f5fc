"""Fixtures of the hook tests."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import pytest

from tests.unit.hooks.support import RecordingServer

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator


@pytest.fixture
def recording_server() -> Iterator[Callable[..., RecordingServer]]:
    """Start :class:`RecordingServer` instances on demand (``host="127.0.0.2"`` for a second host)."""
    started: list[RecordingServer] = []

    def make(**kwargs: Any) -> RecordingServer:
        server = RecordingServer(**kwargs).start()
        started.append(server)
        return server

    try:
        yield make
    finally:
        for server in started:
            server.stop()
