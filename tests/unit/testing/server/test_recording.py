"""The requests the fake server records."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

import pytest

from airflow_provider_jogg.protocol import WHOAMI_PATH
from airflow_provider_jogg.testing import FakeJoggServer, Fault, RecordedRequest
from airflow_provider_jogg.testing.server.recording import RequestLog
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


def test_bounded_log_keeps_the_newest_requests_and_exact_counts(
    make_server: Callable[..., FakeJoggServer], session: requests.Session
) -> None:
    server = make_server(max_recorded_requests=3)
    assert server.max_recorded_requests == 3
    server.add_fault(Fault("status", path=CREATE, status=503, times=1))
    for index in range(5):
        body = {"video_url": f"{VIDEO}?clip={index}", "audio_url": AUDIO}
        session.post(server.url + CREATE, json=body, timeout=5)
    session.get(server.url + WHOAMI_PATH, timeout=5)
    session.get(server.url + WHOAMI_PATH, headers={"x-api-key": "wrong"}, timeout=5)

    kept = server.requests
    assert [(r.method, r.path, r.status) for r in kept] == [
        ("POST", CREATE, 200),
        ("GET", WHOAMI_PATH, 200),
        ("GET", WHOAMI_PATH, 401),
    ]
    assert kept[0].json == {"video_url": f"{VIDEO}?clip=4", "audio_url": AUDIO}
    # the counts cover the dropped requests too
    assert server.dropped_requests == 4
    assert server.count() == 7
    assert server.create_count == 5
    assert server.count("GET", WHOAMI_PATH) == 2
    assert server.count_status(503) == 1
    assert server.count_status(200) == 5
    assert server.count_status(401) == 1
    assert server.counts_by_status() == {200: 5, 401: 1, 503: 1}
    assert len(server.tasks) == 4  # the faulted create made none

    server.clear_requests()
    assert server.requests == []
    assert (server.count(), server.dropped_requests, server.counts_by_status()) == (0, 0, {})


def test_counting_only_log_keeps_no_detail(
    make_server: Callable[..., FakeJoggServer], session: requests.Session
) -> None:
    server = make_server(max_recorded_requests=0)
    for _ in range(3):
        session.post(server.url + CREATE, json={"video_url": VIDEO, "audio_url": AUDIO}, timeout=5)
    assert server.requests == []
    assert server.dropped_requests == 3
    assert server.create_count == 3
    assert server.count_status(200) == 3


def test_unbounded_log_by_default(
    make_server: Callable[..., FakeJoggServer], session: requests.Session
) -> None:
    server = make_server()
    assert server.max_recorded_requests is None
    for _ in range(3):
        session.get(server.url + WHOAMI_PATH, timeout=5)
    assert len(server.requests) == 3
    assert server.dropped_requests == 0


@pytest.mark.parametrize("bad", [-1, 1.5, True, "10"])
def test_max_recorded_requests_is_checked(bad: object) -> None:
    with pytest.raises(ValueError, match="max_recorded_requests must be None or an int >= 0"):
        FakeJoggServer(max_recorded_requests=bad)  # type: ignore[arg-type]


def test_answer_to_a_request_recorded_before_a_clear_leaves_the_new_counts_alone() -> None:
    log = RequestLog()
    early = log.record("GET", WHOAMI_PATH, {}, None)
    log.clear()
    late = log.record("POST", CREATE, {}, None)
    log.finish(early, 200)  # answered after the clear: not counted again
    log.finish(late, 429)
    assert log.counts_by_status() == {429: 1}
    assert log.count_status(0) == 0
    assert log.count() == 1
    assert [r.status for r in log.snapshot()] == [429]
