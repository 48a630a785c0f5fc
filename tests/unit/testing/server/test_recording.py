"""The requests the fake server records."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

from airflow_provider_jogg.protocol import WHOAMI_PATH
from airflow_provider_jogg.testing import FakeJoggServer, RecordedRequest
from tests.unit.testing.server.support import AUDIO, CREATE, VIDEO

if TYPE_CHECKING:
    from collections.abc import Callable

    import requests


def test_request_recording(make_server: Callable[..., FakeJoggServer], session: requests.Session) -> None:
    server = make_server(prefix="/open")
    before = time.time()
    body = {"video_url": VIDEO, "audio_url": AUDIO, "playback_type": "normal_reverse"}
    session.post(
        server.url + CREATE + "?trace=1", json=body, headers={"X-Api-Platform": "airflow"}, timeout=5
    )
    session.get(server.url + WHOAMI_PATH, timeout=5)
    after = time.time()
    first, second = server.requests
    assert isinstance(first, RecordedRequest)
    assert first.method == "POST"
    assert first.path == CREATE
    assert first.json == body
    assert first.status == 200
    assert before <= first.time <= second.time <= after
    assert first.headers["x-api-platform"] == "airflow"
    assert first.headers["x-api-key"] == "<valid>"
    assert all(name == name.lower() for name in first.headers)
    assert second.json is None
    assert server.count() == 2
    assert server.count(method="post") == 1
    assert server.count(path="/v2/user") == 1
    assert server.count("GET", "/v2/create") == 0
    assert server.create_count == 1
    server.clear_requests()
    assert server.requests == []
    assert server.create_count == 0
