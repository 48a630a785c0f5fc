"""The fake server's tasks: their timeline, timing options and URL markers, forced statuses."""

from __future__ import annotations

import re
import time
import uuid
from typing import TYPE_CHECKING, Any

import pytest

from airflow_provider_jogg.protocol import QUOTA_PATH, STATUS_PATH, WHOAMI_PATH
from airflow_provider_jogg.testing import FakeJoggServer, Fault
from airflow_provider_jogg.testing.server import FAILURE_MESSAGE, FINISH_AFTER_CREATE, FINISH_AFTER_POLL
from tests.unit.testing.server.support import AUDIO, VIDEO, create, get_task, wait_until

if TYPE_CHECKING:
    from collections.abc import Callable

    import requests


def test_create_then_status_goes_pending_processing_success(
    make_server: Callable[..., FakeJoggServer], session: requests.Session
) -> None:
    # Without ffmpeg the configured duration is reported (test_results.py covers ffmpeg).
    # Each phase lasts 1 s so that the poll loop below sees all three even when a loaded machine
    # stalls it for a few hundred milliseconds.
    server = make_server(pending_seconds=1.0, processing_seconds=1.0, duration_seconds=7.25, ffmpeg=False)
    before = time.time()
    response = create(session, server)
    assert response.status_code == 200
    assert response.headers["Content-Type"] == "application/json"
    assert int(response.headers["Content-Length"]) == len(response.content)
    body = response.json()
    assert body["code"] == 0
    assert body["msg"] == "Success"
    task_id = body["data"]["task_id"]
    assert uuid.UUID(task_id).version == 4
    assert body["data"]["status"] == "pending"

    seen: list[str] = []
    deadline = time.monotonic() + 30
    data: dict[str, Any] = {}
    while time.monotonic() < deadline:
        data = get_task(session, server, task_id)
        if not seen or seen[-1] != data["status"]:
            seen.append(data["status"])
        if data["status"] in ("success", "failed"):
            break
        assert data["completed_at"] is None
        assert data["data"] is None
        time.sleep(0.01)
    assert seen == ["pending", "processing", "success"]
    assert data["task_id"] == task_id
    assert isinstance(data["created_at"], int)
    assert int(before) <= data["created_at"] <= time.time()
    assert isinstance(data["completed_at"], int)
    assert data["completed_at"] >= data["created_at"]
    assert data["error"] is None
    assert data["data"] == {
        "result_url": f"{server.root_url}/files/{task_id}/result.mp4",
        "cover_url": f"{server.root_url}/files/{task_id}/cover.jpg",
        "duration_seconds": 7.25,
    }
    snapshot = server.tasks[task_id]
    assert snapshot["status"] == "success"
    assert snapshot["video_url"] == VIDEO
    assert snapshot["audio_url"] == AUDIO
    assert snapshot["playback_type"] == "normal"
    assert set(snapshot) == {
        "task_id",
        "video_url",
        "audio_url",
        "playback_type",
        "created_at",
        "status",
        "completed_at",
        "first_polled_at",
    }
    assert snapshot["completed_at"] == pytest.approx(snapshot["created_at"] + 2.0)
    assert snapshot["first_polled_at"] is not None


def test_url_with_fail_gives_failed_task(server: FakeJoggServer, session: requests.Session) -> None:
    task_id = create(session, server, video_url="https://media.example/fail.mp4").json()["data"]["task_id"]
    data = get_task(session, server, task_id)
    assert data["status"] == "failed"
    assert data["error"] == {"message": FAILURE_MESSAGE}
    assert data["data"] is None
    assert isinstance(data["completed_at"], int)
    other = create(session, server, audio_url="https://media.example/x/fail/a.mp3").json()["data"]["task_id"]
    assert get_task(session, server, other)["status"] == "failed"
    assert session.get(f"{server.root_url}/files/{task_id}/result.mp4", timeout=5).status_code == 404


def test_processing_seconds_none_never_finishes(
    make_server: Callable[..., FakeJoggServer], session: requests.Session
) -> None:
    server = make_server(pending_seconds=0, processing_seconds=None)
    task_id = create(session, server).json()["data"]["task_id"]
    for _ in range(3):
        data = get_task(session, server, task_id)
        assert data["status"] == "processing"
        assert data["completed_at"] is None
        time.sleep(0.05)


def test_finish_after_poll_marker_counts_from_the_first_answered_poll(
    make_server: Callable[..., FakeJoggServer], session: requests.Session
) -> None:
    # The server's own timeline never ends a task: only the marker can.
    server = make_server(pending_seconds=0, processing_seconds=None)
    video = f"{VIDEO}?{FINISH_AFTER_POLL}=0.2"
    task_id = create(session, server, video_url=video).json()["data"]["task_id"]
    created_at = server.tasks[task_id]["created_at"]
    # Long after creation + 0.2 s, a task nobody has polled is still processing.
    assert wait_until(lambda: time.time() > created_at + 0.5)
    assert server.tasks[task_id]["status"] == "processing"
    assert server.tasks[task_id]["first_polled_at"] is None

    first = get_task(session, server, task_id)
    assert first["status"] == "processing"
    first_polled_at = server.tasks[task_id]["first_polled_at"]
    assert first_polled_at is not None
    assert first_polled_at > created_at + 0.5
    assert wait_until(lambda: get_task(session, server, task_id)["status"] == "success", timeout=30)
    snapshot = server.tasks[task_id]
    assert snapshot["first_polled_at"] == first_polled_at  # later polls do not move the anchor
    assert snapshot["completed_at"] == pytest.approx(first_polled_at + 0.2)
    assert get_task(session, server, task_id)["completed_at"] == int(first_polled_at + 0.2)


def test_finish_after_poll_marker_ignores_unanswered_polls(
    make_server: Callable[..., FakeJoggServer], session: requests.Session
) -> None:
    # a bucket of one token that takes 1000 s to refill: the second keyed request gets a 429
    server = make_server(pending_seconds=0, processing_seconds=None, rate_limit=0.001)
    audio = f"{AUDIO}?{FINISH_AFTER_POLL}=0"
    task_id = server.add_task(VIDEO, audio)
    status_path = STATUS_PATH.format(task_id=task_id)
    server.add_fault(Fault("status", status=503, path=status_path, times=1))
    assert session.get(server.url + status_path, timeout=5).status_code == 503
    assert session.get(server.url + status_path, timeout=5, headers={"x-api-key": "wrong"}).status_code == 401
    assert session.get(server.url + status_path, timeout=5).status_code == 429
    assert server.tasks[task_id]["first_polled_at"] is None
    assert server.tasks[task_id]["status"] == "processing"
    # The first answered poll sees the end at once (0 s after itself).
    server.rate_limit = None
    assert get_task(session, server, task_id)["status"] == "success"
    assert server.tasks[task_id]["completed_at"] == server.tasks[task_id]["first_polled_at"]


def test_finish_after_create_marker(
    make_server: Callable[..., FakeJoggServer], session: requests.Session
) -> None:
    server = make_server(pending_seconds=0, processing_seconds=None)
    done = create(session, server, video_url=f"{VIDEO}?{FINISH_AFTER_CREATE}=0").json()["data"]["task_id"]
    failed = create(
        session, server, video_url=f"https://media.example/fail.mp4?a=1&{FINISH_AFTER_CREATE}=0"
    ).json()["data"]["task_id"]
    later = create(session, server, audio_url=f"{AUDIO}?{FINISH_AFTER_CREATE}=3600").json()["data"]["task_id"]
    assert server.tasks[done]["status"] == "success"  # no poll needed
    assert server.tasks[done]["completed_at"] == server.tasks[done]["created_at"]
    assert get_task(session, server, failed)["status"] == "failed"
    assert get_task(session, server, later)["status"] == "processing"
    assert server.tasks[later]["completed_at"] is None


NOT_SECONDS = "{} must be a number of seconds >= 0, got {!r}"


@pytest.mark.parametrize(
    ("video_url", "message"),
    [
        (f"{VIDEO}?{FINISH_AFTER_POLL}=soon", NOT_SECONDS.format(FINISH_AFTER_POLL, "soon")),
        (f"{VIDEO}?{FINISH_AFTER_POLL}=-1", NOT_SECONDS.format(FINISH_AFTER_POLL, "-1")),
        (f"{VIDEO}?{FINISH_AFTER_CREATE}=nan", NOT_SECONDS.format(FINISH_AFTER_CREATE, "nan")),
        (
            f"{VIDEO}?{FINISH_AFTER_POLL}=1&{FINISH_AFTER_CREATE}=1",
            f"give {FINISH_AFTER_POLL} or {FINISH_AFTER_CREATE}, not both",
        ),
    ],
    ids=["not-a-number", "negative", "nan", "both"],
)
def test_invalid_finish_marker_is_refused(
    server: FakeJoggServer, session: requests.Session, video_url: str, message: str
) -> None:
    body = create(session, server, video_url=video_url).json()
    assert body == {"code": 40000, "msg": message, "data": None}
    assert server.tasks == {}
    with pytest.raises(ValueError, match=re.escape(message)):
        server.add_task(video_url, AUDIO)


def test_playback_type_default_and_explicit(server: FakeJoggServer, session: requests.Session) -> None:
    default_id = create(session, server).json()["data"]["task_id"]
    explicit_id = create(session, server, playback_type="normal_reverse_by_audio").json()["data"]["task_id"]
    assert server.tasks[default_id]["playback_type"] == "normal"
    assert server.tasks[explicit_id]["playback_type"] == "normal_reverse_by_audio"


def test_add_task_and_set_task(server: FakeJoggServer, session: requests.Session) -> None:
    task_id = server.add_task(VIDEO, AUDIO, status="queued")
    assert server.requests == []
    data = get_task(session, server, task_id)
    assert data["status"] == "queued"
    assert data["completed_at"] is None
    assert data["data"] is None
    assert data["error"] is None

    server.set_task(task_id, status="failed", error_message="boom")
    data = get_task(session, server, task_id)
    assert data["status"] == "failed"
    assert data["error"] == {"message": "boom"}
    assert isinstance(data["completed_at"], int)

    server.set_task(task_id, status="success")
    data = get_task(session, server, task_id)
    assert data["status"] == "success"
    assert data["data"]["result_url"] == f"{server.root_url}/files/{task_id}/result.mp4"

    natural = server.add_task(VIDEO, "https://media.example/fail.mp3")
    assert get_task(session, server, natural)["status"] == "failed"
    with pytest.raises(KeyError):
        server.set_task("no-such-task", status="success")
    assert server.count() == 4  # only the four GETs were recorded


def test_whoami_and_remaining_quota(
    make_server: Callable[..., FakeJoggServer], session: requests.Session
) -> None:
    server = make_server(remaining_quota=42.5)
    whoami = session.get(server.url + WHOAMI_PATH, timeout=5).json()
    assert whoami == {"code": 0, "msg": "Success", "data": {"email": "demo@example.com", "username": "demo"}}
    quota = session.get(server.url + QUOTA_PATH, timeout=5).json()
    assert quota == {"code": 0, "msg": "Success", "data": {"remaining_quota": 42.5}}


def test_unknown_task_is_10104(server: FakeJoggServer, session: requests.Session) -> None:
    response = session.get(server.url + STATUS_PATH.format(task_id=uuid.uuid4()), timeout=5)
    assert response.status_code == 200
    assert response.json() == {"code": 10104, "msg": "Record not found", "data": None}
