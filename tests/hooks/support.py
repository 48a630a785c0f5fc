"""What the sync and async hook tests share."""

from __future__ import annotations

import socket

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


def closed_port() -> int:
    """A loopback port nothing listens on: bound, read, then closed again."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def assert_no_secret(error: BaseException) -> None:
    text = f"{error} {error!r}"
    assert TEST_API_KEY not in text
    assert WRONG_KEY not in text
