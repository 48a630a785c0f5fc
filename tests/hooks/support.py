"""What the sync and async hook tests share."""

from __future__ import annotations

import socket
import time
from typing import TYPE_CHECKING, Any

from tests.conftest import FAST_EXTRA, TEST_API_KEY

CREATE = "/v2/create_lip_sync_video"
STATUS = "/v2/lip_sync_video/"
WHOAMI = "/v2/user/whoami"
QUOTA = "/v2/user/remaining_quota"
UPLOAD = "/v2/upload/asset"
VIDEO = "https://media.example/clip.mp4"
AUDIO = "https://media.example/voice.mp3"
WRONG_KEY = "sk-jogg-WRONGKEY-0000000000000000"
MAX_RETRIES = FAST_EXTRA["max_retries"]


if TYPE_CHECKING:
    from types import ModuleType

    import pytest


class SteppedWallClock:
    """
    Stands in for the ``time`` module inside some of the provider's modules: ``time()`` is the wall
    clock moved by ``step`` seconds (as NTP or a resumed VM steps it); everything else is the real
    module. ``sleep`` records each wait and refuses one of a minute or more, the stall under test.
    """

    def __init__(self) -> None:
        self.step = 0.0
        self.sleeps: list[float] = []

    def time(self) -> float:
        return time.time() + self.step

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        if seconds >= 60:
            raise AssertionError(f"asked to sleep {seconds:.0f} s: requests are stalled")
        time.sleep(seconds)

    def __getattr__(self, name: str) -> Any:
        return getattr(time, name)


def step_wall_clock(monkeypatch: pytest.MonkeyPatch, *modules: ModuleType) -> SteppedWallClock:
    """Give ``modules`` (those that use ``time`` at all) a wall clock the test can step."""
    clock = SteppedWallClock()
    for module in modules:
        if hasattr(module, "time"):
            monkeypatch.setattr(module, "time", clock)
    return clock


def closed_port() -> int:
    """A loopback port nothing listens on: bound, read, then closed again."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def assert_no_secret(error: BaseException) -> None:
    text = f"{error} {error!r}"
    assert TEST_API_KEY not in text
    assert WRONG_KEY not in text
