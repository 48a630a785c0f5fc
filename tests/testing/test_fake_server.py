"""Tests of the fake JoggAI server, over real sockets."""

from __future__ import annotations

import gzip
import http.client
import json
import os
import queue
import re
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
import requests

import airflow_provider_jogg
from airflow_provider_jogg.testing import FakeJoggServer, Fault, RecordedRequest
from airflow_provider_jogg.testing.server import FAILURE_MESSAGE, FINISH_AFTER_CREATE, FINISH_AFTER_POLL

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator

KEY = "s3cret-test-key-4711"
CREATE = "/v2/create_lip_sync_video"
VIDEO = "https://media.example/clip.mp4"
AUDIO = "https://media.example/voice.mp3"
REPO_ROOT = Path(airflow_provider_jogg.__file__).resolve().parents[1]


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


def create(session: requests.Session, server: FakeJoggServer, **body: Any) -> requests.Response:
    """POST a create call (defaults: valid urls)."""
    payload = {"video_url": VIDEO, "audio_url": AUDIO, **body}
    return session.post(server.url + CREATE, json=payload, timeout=5)


def get_task(session: requests.Session, server: FakeJoggServer, task_id: str) -> dict[str, Any]:
    """GET a task and return its ``data``, checking the envelope."""
    response = session.get(f"{server.url}/v2/lip_sync_video/{task_id}", timeout=5)
    assert response.status_code == 200
    body = response.json()
    assert body["code"] == 0, body
    assert body["msg"] == "Success"
    return body["data"]


def raw_get(conn: http.client.HTTPConnection, path: str, key: str | None = KEY) -> http.client.HTTPResponse:
    """Send a GET on a raw connection and return the response (body unread)."""
    headers = {"x-api-key": key} if key is not None else {}
    conn.request("GET", path, headers=headers)
    return conn.getresponse()


def wait_until(predicate: Callable[[], bool], timeout: float = 3.0) -> bool:
    """Poll ``predicate`` every 10 ms until it holds or ``timeout`` passes."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.01)
    return predicate()


# --------------------------------------------------------------------------- tasks


def test_create_then_status_goes_pending_processing_success(
    make_server: Callable[..., FakeJoggServer], session: requests.Session
) -> None:
    # Without ffmpeg the configured duration is reported (test_fake_server_media.py covers ffmpeg).
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
    status_path = f"/v2/lip_sync_video/{task_id}"
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
    whoami = session.get(server.url + "/v2/user/whoami", timeout=5).json()
    assert whoami == {"code": 0, "msg": "Success", "data": {"email": "demo@example.com", "username": "demo"}}
    quota = session.get(server.url + "/v2/user/remaining_quota", timeout=5).json()
    assert quota == {"code": 0, "msg": "Success", "data": {"remaining_quota": 42.5}}


def test_unknown_task_is_10104(server: FakeJoggServer, session: requests.Session) -> None:
    response = session.get(f"{server.url}/v2/lip_sync_video/{uuid.uuid4()}", timeout=5)
    assert response.status_code == 200
    assert response.json() == {"code": 10104, "msg": "Record not found", "data": None}


# --------------------------------------------------------------------------- key, 404, validation


@pytest.mark.parametrize(
    ("headers", "recorded"),
    [({}, None), ({"x-api-key": "wrong"}, "<invalid>")],
    ids=["missing", "wrong"],
)
@pytest.mark.parametrize(
    ("method", "path", "body"),
    [
        ("GET", "/v2/user/whoami", None),
        ("POST", CREATE, {"video_url": VIDEO, "audio_url": AUDIO}),
        ("GET", "/v2/lip_sync_video/abc", None),
        ("GET", "/v2/no/such/route", None),
    ],
)
def test_bad_key_is_401_10105(
    server: FakeJoggServer,
    headers: dict[str, str],
    recorded: str | None,
    method: str,
    path: str,
    body: dict[str, str] | None,
) -> None:
    response = requests.request(method, server.url + path, headers=headers, json=body, timeout=5)
    assert response.status_code == 401
    assert response.json() == {"code": 10105, "msg": "Invalid API key", "data": None}
    assert server.tasks == {}
    (record,) = server.requests
    assert record.status == 401
    assert record.headers.get("x-api-key") == recorded


def test_real_key_is_never_stored(server: FakeJoggServer, session: requests.Session) -> None:
    create(session, server)
    session.get(server.url + "/v2/user/whoami", headers={"x-api-key": KEY + "-typo"}, timeout=5)
    assert [r.headers["x-api-key"] for r in server.requests] == ["<valid>", "<invalid>"]
    assert KEY not in repr(server.requests)
    dumped = requests.get(server.root_url + "/_fake/requests", timeout=5).text
    assert KEY not in dumped
    assert "<valid>" in dumped


def test_auth_error_status_can_be_200(make_server: Callable[..., FakeJoggServer]) -> None:
    server = make_server(auth_error_status=200)
    response = requests.get(server.url + "/v2/user/whoami", headers={"x-api-key": "nope"}, timeout=5)
    assert response.status_code == 200
    assert response.json()["code"] == 10105


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", "/nope"),
        ("GET", "/"),
        ("GET", CREATE),
        ("POST", "/v2/user/whoami"),
        ("DELETE", "/v2/lip_sync_video/abc"),
        ("GET", "/v2/unknown"),
        ("PATCH", "/files/x/result.mp4"),
        ("GET", "/_fake/unknown"),
    ],
)
def test_unknown_path_or_wrong_method_is_404(
    server: FakeJoggServer, session: requests.Session, method: str, path: str
) -> None:
    response = session.request(method, server.url + path, timeout=5)
    assert response.status_code == 404
    assert response.headers["Content-Type"] == "application/json"
    assert response.json() == {"code": 404, "msg": "Not Found", "data": None}
    assert server.tasks == {}


def test_prefix_routes(make_server: Callable[..., FakeJoggServer], session: requests.Session) -> None:
    server = make_server(prefix="open/", pending_seconds=0, processing_seconds=0)
    assert server.url == f"http://127.0.0.1:{server.port}/open"
    assert server.root_url == f"http://127.0.0.1:{server.port}"
    assert session.get(server.root_url + "/v2/user/whoami", timeout=5).status_code == 404
    assert session.get(server.url + "/v2/user/whoami", timeout=5).status_code == 200
    task_id = create(session, server).json()["data"]["task_id"]
    data = get_task(session, server, task_id)
    assert data["data"]["result_url"] == f"{server.root_url}/files/{task_id}/result.mp4"
    # Only the prefixed API calls are recorded, without the prefix.
    assert [(r.method, r.path) for r in server.requests] == [
        ("GET", "/v2/user/whoami"),
        ("POST", CREATE),
        ("GET", f"/v2/lip_sync_video/{task_id}"),
    ]


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        (b"not json", "JSON"),
        (b"", "JSON"),
        (b"[1, 2]", "JSON"),
        ({"audio_url": AUDIO}, "video_url"),
        ({"video_url": VIDEO}, "audio_url"),
        ({"video_url": "ftp://media.example/a.mp4", "audio_url": AUDIO}, "video_url"),
        ({"video_url": VIDEO, "audio_url": 12}, "audio_url"),
        ({"video_url": VIDEO, "audio_url": "media.example/a.mp3"}, "audio_url"),
        ({"video_url": VIDEO, "audio_url": AUDIO, "playback_type": "backwards"}, "playback_type"),
    ],
)
def test_create_parameter_errors_are_40000(
    server: FakeJoggServer, session: requests.Session, body: bytes | dict[str, Any], expected: str
) -> None:
    if isinstance(body, bytes):
        response = session.post(
            server.url + CREATE, data=body, headers={"Content-Type": "application/json"}, timeout=5
        )
    else:
        response = session.post(server.url + CREATE, json=body, timeout=5)
    assert response.status_code == 200
    payload = response.json()
    assert payload["code"] == 40000
    assert payload["data"] is None
    assert expected in payload["msg"]
    assert server.tasks == {}
    assert server.create_count == 1
    assert server.count_status(200) == 1


# --------------------------------------------------------------------------- files and uploads


def test_result_files(server: FakeJoggServer, session: requests.Session) -> None:
    done = server.add_task(VIDEO, AUDIO, status="success")
    video = requests.get(f"{server.root_url}/files/{done}/result.mp4", timeout=5)
    assert video.status_code == 200
    assert video.headers["Content-Type"] == "video/mp4"
    assert int(video.headers["Content-Length"]) == len(video.content)
    assert video.content[4:8] == b"ftyp"
    assert len(video.content) > 1000  # a real MP4, not a placeholder
    cover = requests.get(f"{server.root_url}/files/{done}/cover.jpg", timeout=5)
    assert cover.status_code == 200
    assert cover.headers["Content-Type"] == "image/jpeg"
    assert cover.content.startswith(b"\xff\xd8\xff")
    assert cover.content.endswith(b"\xff\xd9")
    # The same bytes on every download.
    assert requests.get(f"{server.root_url}/files/{done}/result.mp4", timeout=5).content == video.content
    head = requests.head(f"{server.root_url}/files/{done}/result.mp4", timeout=5)
    assert head.status_code == 200
    assert int(head.headers["Content-Length"]) == len(video.content)
    assert head.content == b""

    pending = server.add_task(VIDEO, AUDIO, status="pending")
    failed = server.add_task(VIDEO, AUDIO, status="failed")
    for path in (
        f"/files/{pending}/result.mp4",
        f"/files/{failed}/cover.jpg",
        f"/files/{uuid.uuid4()}/result.mp4",
        f"/files/{done}/other.bin",
    ):
        assert requests.get(server.root_url + path, timeout=5).status_code == 404, path
    assert server.requests == []


def request_upload(session: requests.Session, server: FakeJoggServer, **body: Any) -> dict[str, str]:
    """POST /v2/upload/asset and return its data."""
    response = session.post(server.url + "/v2/upload/asset", json=body, timeout=5)
    assert response.status_code == 200
    payload = response.json()
    assert payload["code"] == 0, payload
    return payload["data"]


def test_upload_put_then_get_asset(
    make_server: Callable[..., FakeJoggServer], session: requests.Session
) -> None:
    server = make_server(prefix="/open", pending_seconds=0, processing_seconds=0)
    content = os.urandom(3000)
    data = request_upload(
        session, server, filename="clip.mp4", content_type="video/mp4", file_size=len(content)
    )
    pattern = re.escape(server.root_url) + r"/_storage/([0-9a-f-]{36})/clip\.mp4\?sig=([A-Za-z0-9_-]+)"
    match = re.fullmatch(pattern, data["sign_url"])
    assert match, data["sign_url"]
    assert data["asset_url"] == f"{server.root_url}/assets/{match.group(1)}/clip.mp4"
    assert requests.get(data["asset_url"], timeout=5).status_code == 404  # nothing uploaded yet

    put = requests.put(data["sign_url"], data=content, headers={"Content-Type": "video/mp4"}, timeout=5)
    assert put.status_code == 200
    assert put.content == b""
    got = requests.get(data["asset_url"], timeout=5)
    assert got.status_code == 200
    assert got.headers["Content-Type"] == "video/mp4"
    assert got.content == content
    asset = server.assets[data["asset_url"]]
    assert asset["size"] == len(content)
    assert asset["chunked"] is False
    # The PUT and the GET are not API calls: only the upload request is recorded.
    assert [(r.method, r.path, r.json) for r in server.requests] == [
        ("POST", "/v2/upload/asset", {"filename": "clip.mp4", "content_type": "video/mp4", "file_size": 3000})
    ]

    # An uploaded asset works as media; one never uploaded makes the task fail.
    ok = create(session, server, video_url=data["asset_url"]).json()["data"]["task_id"]
    missing = data["asset_url"].replace(match.group(1), str(uuid.uuid4()))
    bad = create(session, server, audio_url=missing).json()["data"]["task_id"]
    assert wait_until(lambda: server.tasks[ok]["status"] == "success")
    assert wait_until(lambda: server.tasks[bad]["status"] == "failed")


def test_upload_chunked_put(server: FakeJoggServer, session: requests.Session) -> None:
    data = request_upload(session, server, filename="voice note.wav", content_type="audio/wav")
    assert data["asset_url"].endswith("/voice%20note.wav")
    parts = [b"RIFF", os.urandom(5000), b"tail"]

    def stream() -> Iterator[bytes]:
        yield from parts

    put = requests.put(data["sign_url"], data=stream(), headers={"Content-Type": "audio/wav"}, timeout=5)
    assert put.request.headers.get("Transfer-Encoding") == "chunked"
    assert put.status_code == 200
    got = requests.get(data["asset_url"], timeout=5)
    assert got.content == b"".join(parts)
    assert got.headers["Content-Type"] == "audio/wav"
    assert server.assets[data["asset_url"]]["chunked"] is True


def test_upload_put_checks_signature_and_size(server: FakeJoggServer, session: requests.Session) -> None:
    data = request_upload(session, server, filename="a.mp4", content_type="video/mp4", file_size=10)
    base = data["sign_url"].split("?")[0]
    assert requests.put(base, data=b"0123456789", timeout=5).status_code == 403
    assert requests.put(base + "?sig=forged", data=b"0123456789", timeout=5).status_code == 403
    assert requests.put(data["sign_url"], data=b"01234", timeout=5).status_code == 400
    assert requests.get(data["asset_url"], timeout=5).status_code == 404
    unknown = data["sign_url"].replace(data["sign_url"].split("/")[4], str(uuid.uuid4()))
    assert requests.put(unknown, data=b"0123456789", timeout=5).status_code == 404
    assert requests.put(data["sign_url"], data=b"0123456789", timeout=5).status_code == 200
    assert requests.get(data["asset_url"], timeout=5).content == b"0123456789"


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        ({"content_type": "video/mp4"}, "filename"),
        ({"filename": "a.mp4"}, "content_type"),
        ({"filename": "", "content_type": "video/mp4"}, "filename"),
        ({"filename": "a.mp4", "content_type": "video/mp4", "file_size": 0}, "file_size"),
        ({"filename": "a.mp4", "content_type": "video/mp4", "file_size": "12"}, "file_size"),
        ({"filename": "a.mp4", "content_type": "video/mp4", "file_size": 1.5}, "file_size"),
        ({"filename": "a.mp4", "content_type": "video/mp4", "file_size": True}, "file_size"),
    ],
)
def test_upload_parameter_errors_are_40000(
    server: FakeJoggServer, session: requests.Session, body: dict[str, Any], expected: str
) -> None:
    payload = session.post(server.url + "/v2/upload/asset", json=body, timeout=5).json()
    assert payload["code"] == 40000
    assert payload["data"] is None
    assert expected in payload["msg"]


# --------------------------------------------------------------------------- faults


def test_fault_status_with_retry_after_applies_once(
    server: FakeJoggServer, session: requests.Session
) -> None:
    server.add_fault(Fault("status", status=503, retry_after="7", path="/v2/user/whoami"))
    first = session.get(server.url + "/v2/user/whoami", timeout=5)
    assert first.status_code == 503
    assert first.headers["Retry-After"] == "7"
    assert first.json() == {"code": 503, "msg": "Service Unavailable", "data": None}
    second = session.get(server.url + "/v2/user/whoami", timeout=5)
    assert second.status_code == 200
    assert "Retry-After" not in second.headers
    assert server.count_status(503) == 1
    assert server.count_status(200) == 1


def test_fault_status_429_without_retry_after(server: FakeJoggServer, session: requests.Session) -> None:
    server.add_fault(Fault("status", status=429))
    response = session.get(server.url + "/v2/user/remaining_quota", timeout=5)
    assert response.status_code == 429
    assert "Retry-After" not in response.headers
    assert response.json()["code"] == 429


def test_fault_html(server: FakeJoggServer, session: requests.Session) -> None:
    server.add_fault(Fault("html"))
    response = session.get(server.url + "/v2/user/whoami", timeout=5)
    assert response.status_code == 502
    assert response.headers["Content-Type"].startswith("text/html")
    assert response.text == "<html><body><h1>502 Bad Gateway</h1></body></html>"


def test_fault_business(server: FakeJoggServer, session: requests.Session) -> None:
    server.add_fault(Fault("business"))
    server.add_fault(Fault("business", code=18020, msg="Insufficient credit"))
    first = session.get(server.url + "/v2/user/whoami", timeout=5)
    assert first.status_code == 200
    assert first.json() == {"code": 50000, "msg": "System error", "data": None}
    second = session.get(server.url + "/v2/user/whoami", timeout=5)
    assert second.json() == {"code": 18020, "msg": "Insufficient credit", "data": None}


def test_fault_non_json(server: FakeJoggServer, session: requests.Session) -> None:
    server.add_fault(Fault("non_json"))
    response = session.get(server.url + "/v2/user/whoami", timeout=5)
    assert response.status_code == 200
    assert response.text == "Internal error, please retry"
    with pytest.raises(ValueError):  # noqa: PT011 - json decoders raise different subclasses
        response.json()


def test_fault_truncated(server: FakeJoggServer, conn: http.client.HTTPConnection) -> None:
    server.add_fault(Fault("truncated"))
    response = raw_get(conn, "/v2/user/whoami")
    assert response.status == 200
    announced = int(response.getheader("Content-Length") or 0)
    with pytest.raises(http.client.IncompleteRead) as excinfo:
        response.read()
    assert 0 < len(excinfo.value.partial) < announced
    assert excinfo.value.partial.startswith(b'{"code":0')
    assert server.requests[0].status == 200


def test_fault_close(server: FakeJoggServer, conn: http.client.HTTPConnection) -> None:
    server.add_fault(Fault("close"))
    with pytest.raises(http.client.RemoteDisconnected):
        raw_get(conn, "/v2/user/whoami")
    assert server.requests[0].status == 0


def test_fault_reset(server: FakeJoggServer, conn: http.client.HTTPConnection) -> None:
    server.add_fault(Fault("reset"))
    with pytest.raises(ConnectionResetError):
        raw_get(conn, "/v2/user/whoami").read()
    assert server.requests[0].status == 0


def test_fault_raw_and_envelope(server: FakeJoggServer, session: requests.Session) -> None:
    server.add_fault(Fault("raw", status=504, body="upstream timed out"))
    server.add_fault(Fault("envelope", body='{"code": 0, "msg": "ok"}'))
    raw = session.get(server.url + "/v2/user/whoami", timeout=5)
    assert raw.status_code == 504
    assert raw.headers["Content-Type"] == "application/json"
    assert raw.text == "upstream timed out"
    envelope = session.get(server.url + "/v2/user/whoami", timeout=5)
    assert envelope.status_code == 200
    assert envelope.text == '{"code": 0, "msg": "ok"}'


def test_fault_redirect(server: FakeJoggServer, conn: http.client.HTTPConnection) -> None:
    server.add_fault(Fault("redirect", location="http://127.0.0.2:9/elsewhere", path="/v2/user/whoami"))
    server.add_fault(Fault("redirect", status=307, location="/v2/user/whoami"))
    first = raw_get(conn, "/v2/user/whoami")
    assert (first.status, first.getheader("Location"), first.read()) == (
        302,
        "http://127.0.0.2:9/elsewhere",
        b"",
    )
    second = raw_get(conn, "/v2/user/remaining_quota")
    assert (second.status, second.getheader("Location")) == (307, "/v2/user/whoami")
    second.read()
    assert [r.status for r in server.requests] == [302, 307]
    with pytest.raises(ValueError, match="location"):
        Fault("redirect")


def test_fault_gzip_encodes_the_real_answer_whatever_was_accepted(server: FakeJoggServer) -> None:
    task_id = server.add_task(VIDEO, AUDIO, status="success")
    plain = requests.get(f"{server.root_url}/files/{task_id}/result.mp4", timeout=5)
    server.add_fault(Fault("gzip", path="/files/"))
    response = requests.get(
        f"{server.root_url}/files/{task_id}/result.mp4",
        headers={"Accept-Encoding": "identity"},
        stream=True,
        timeout=5,
    )
    wire = response.raw.read(decode_content=False)
    assert response.headers["Content-Encoding"] == "gzip"
    assert response.headers["Content-Type"] == "video/mp4"
    assert int(response.headers["Content-Length"]) == len(wire) != len(plain.content)
    assert gzip.decompress(wire) == plain.content
    # an error answer is left as it is
    server.add_fault(Fault("gzip", path="/files/"))
    missing = requests.get(f"{server.root_url}/files/nope/result.mp4", timeout=5)
    assert (missing.status_code, "Content-Encoding" in missing.headers) == (404, False)


def test_fault_slow_delays_then_processes(server: FakeJoggServer, session: requests.Session) -> None:
    server.add_fault(Fault("slow", delay=0.3, method="POST"))
    started = time.monotonic()
    response = create(session, server)
    assert time.monotonic() - started >= 0.3
    assert response.json()["code"] == 0
    task_id = response.json()["data"]["task_id"]
    # The task was created after the delay.
    assert server.tasks[task_id]["created_at"] >= server.requests[0].time + 0.29


def test_fault_slow_create_still_creates_after_client_timeout(
    server: FakeJoggServer, session: requests.Session
) -> None:
    # The server holds the request 2 s, the client gives up after 0.1 s: the check that nothing was
    # created yet has close to 2 s to run, even on a loaded machine.
    delay = 2.0
    server.add_fault(Fault("slow", delay=delay, path=CREATE))
    with pytest.raises(requests.exceptions.ReadTimeout):
        session.post(server.url + CREATE, json={"video_url": VIDEO, "audio_url": AUDIO}, timeout=0.1)
    assert server.create_count == 1
    assert server.tasks == {}
    assert wait_until(lambda: len(server.tasks) == 1, timeout=delay + 30)
    # created after the delay, so after the client had given up
    (task,) = server.tasks.values()
    assert task["created_at"] >= server.requests[0].time + delay - 0.01


@pytest.mark.parametrize(
    "fault",
    [
        Fault("status", status=500),
        Fault("html"),
        Fault("business"),
        Fault("non_json"),
        Fault("truncated"),
        Fault("close"),
        Fault("reset"),
        Fault("raw", body="{}"),
        Fault("envelope", body='{"code": 0}'),
    ],
    ids=lambda fault: fault.kind,
)
def test_fault_on_create_creates_no_task(
    server: FakeJoggServer, conn: http.client.HTTPConnection, fault: Fault
) -> None:
    server.add_fault(fault)
    body = json.dumps({"video_url": VIDEO, "audio_url": AUDIO})
    try:
        conn.request("POST", CREATE, body=body, headers={"x-api-key": KEY})
        conn.getresponse().read()
    except (http.client.HTTPException, ConnectionError):
        pass
    assert server.create_count == 1
    assert server.tasks == {}
    assert server.faults == []


@pytest.mark.parametrize("kind", ["close", "reset", "status", "truncated"])
def test_fault_after_create_creates_the_task(
    server: FakeJoggServer, conn: http.client.HTTPConnection, kind: str
) -> None:
    server.add_fault(Fault(kind, path=CREATE, after_create=True))
    body = json.dumps({"video_url": VIDEO, "audio_url": AUDIO})
    answer = b""
    try:
        conn.request("POST", CREATE, body=body, headers={"x-api-key": KEY})
        answer = conn.getresponse().read()
    except http.client.IncompleteRead as exc:
        answer = exc.partial
    except (http.client.HTTPException, ConnectionError):
        pass
    assert server.create_count == 1
    (task_id,) = server.tasks
    if kind == "truncated":
        envelope = {"code": 0, "msg": "Success", "data": {"task_id": task_id, "status": "pending"}}
        full = json.dumps(envelope, separators=(",", ":")).encode()
        assert answer == full[: len(full) // 2]
    if kind == "status":
        assert json.loads(answer)["code"] == 500


def test_fault_matching_by_method_path_times_and_order(
    server: FakeJoggServer, session: requests.Session
) -> None:
    server.add_fault(Fault("status", status=500, method="post", times=2))
    server.add_fault(Fault("status", status=503, path="/v2/user", times=None))
    server.add_fault(Fault("status", status=502, path="/v2/user/whoami", times=1))
    whoami = server.url + "/v2/user/whoami"
    assert [session.get(whoami, timeout=5).status_code for _ in range(3)] == [503, 503, 503]
    assert [create(session, server).status_code for _ in range(3)] == [500, 500, 200]
    assert len(server.tasks) == 1
    remaining = server.faults
    assert [(f.status, f.times) for f in remaining] == [(503, None), (502, 1)]
    server.clear_faults()
    assert session.get(whoami, timeout=5).status_code == 200
    # Storage routes are only faulted by a fault naming them; admin routes never.
    server.add_fault(Fault("status", status=500, times=None))
    assert requests.get(server.root_url + "/_fake/tasks", timeout=5).status_code == 200
    done = server.add_task(VIDEO, AUDIO, status="success")
    assert requests.get(f"{server.root_url}/files/{done}/cover.jpg", timeout=5).status_code == 200


def test_fault_on_storage_put(server: FakeJoggServer, session: requests.Session) -> None:
    data = request_upload(session, server, filename="a.mp4", content_type="video/mp4")
    server.add_fault(Fault("status", status=500, method="PUT", path="/_storage/"))
    assert requests.put(data["sign_url"], data=b"abc", timeout=5).status_code == 500
    assert requests.get(data["asset_url"], timeout=5).status_code == 404
    assert requests.put(data["sign_url"], data=b"abc", timeout=5).status_code == 200
    assert server.count() == 1  # storage requests are not recorded


def test_faults_keep_the_keep_alive_connection_usable(
    server: FakeJoggServer, conn: http.client.HTTPConnection
) -> None:
    for fault in (Fault("status", status=503), Fault("html"), Fault("business"), Fault("non_json")):
        server.add_fault(fault)
    statuses = []
    ports = set()
    for _ in range(5):
        response = raw_get(conn, "/v2/user/whoami")
        response.read()
        statuses.append(response.status)
        assert conn.sock is not None
        ports.add(conn.sock.getsockname()[1])
    assert statuses == [503, 502, 200, 200, 200]
    assert len(ports) == 1


def test_fault_spec_validation() -> None:
    with pytest.raises(ValueError, match="kind"):
        Fault("explode")
    with pytest.raises(ValueError, match="times"):
        Fault("status", times=0)
    with pytest.raises(ValueError, match="status"):
        Fault("status", status=42)
    with pytest.raises(ValueError, match="unknown fault field"):
        Fault.from_dict({"kind": "status", "colour": "red"})
    assert Fault.from_dict({"kind": "status", "retry_after": 3}).retry_after == "3"
    assert Fault("envelope").effective_status == 200
    assert Fault("raw").effective_status == 500


def test_stop_interrupts_a_slow_fault(server: FakeJoggServer) -> None:
    server.add_fault(Fault("slow", delay=30))
    errors: queue.Queue[BaseException | None] = queue.Queue()

    def call() -> None:
        try:
            requests.get(server.url + "/v2/user/whoami", headers={"x-api-key": KEY}, timeout=10)
            errors.put(None)
        except requests.RequestException as exc:
            errors.put(exc)

    thread = threading.Thread(target=call, daemon=True)
    thread.start()
    assert wait_until(lambda: server.count() == 1)
    started = time.monotonic()
    server.stop()
    assert time.monotonic() - started < 3
    thread.join(5)
    assert isinstance(errors.get(timeout=1), requests.RequestException)
    # No handler thread outlives stop().
    assert [t for t in threading.enumerate() if "process_request_thread" in t.name] == []


# --------------------------------------------------------------------------- rate limit


def test_rate_limit(make_server: Callable[..., FakeJoggServer], session: requests.Session) -> None:
    server = make_server(rate_limit=5)
    started = time.monotonic()
    responses = [session.get(server.url + "/v2/user/whoami", timeout=5) for _ in range(15)]
    elapsed = time.monotonic() - started
    codes = [r.status_code for r in responses]
    ok = codes.count(200)
    # A burst of 5, then 5 per second: how many more got through depends on how long the 15 requests
    # took, which a loaded machine stretches (under 2 s, some of them must have been refused).
    assert 5 <= ok <= 5 + int(5 * elapsed), (codes, elapsed)
    assert codes[:5] == [200] * 5
    limited = [r for r in responses if r.status_code == 429]
    assert len(limited) == 15 - ok
    for response in limited:
        assert response.headers["Retry-After"] == "1"
        assert response.json() == {"code": 429, "msg": "Too Many Requests", "data": None}
    assert server.count_status(429) == len(limited)
    # File downloads are outside the API and not limited.
    done = server.add_task(VIDEO, AUDIO, status="success")
    assert requests.get(f"{server.root_url}/files/{done}/cover.jpg", timeout=5).status_code == 200
    time.sleep(0.25)
    assert session.get(server.url + "/v2/user/whoami", timeout=5).status_code == 200


# --------------------------------------------------------------------------- recording and admin


def test_request_recording(make_server: Callable[..., FakeJoggServer], session: requests.Session) -> None:
    server = make_server(prefix="/open")
    before = time.time()
    body = {"video_url": VIDEO, "audio_url": AUDIO, "playback_type": "normal_reverse"}
    session.post(
        server.url + CREATE + "?trace=1", json=body, headers={"X-Api-Platform": "airflow"}, timeout=5
    )
    session.get(server.url + "/v2/user/whoami", timeout=5)
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


def test_admin_endpoints(server: FakeJoggServer, session: requests.Session) -> None:
    task_id = create(session, server).json()["data"]["task_id"]
    admin = server.root_url + "/_fake"

    recorded = requests.get(admin + "/requests", timeout=5).json()
    assert [(r["method"], r["path"], r["status"]) for r in recorded] == [("POST", CREATE, 200)]
    assert recorded[0]["json"] == {"video_url": VIDEO, "audio_url": AUDIO}
    assert requests.get(admin + "/tasks", timeout=5).json() == server.tasks

    added = requests.post(admin + "/faults", json={"kind": "status", "status": 503, "times": 2}, timeout=5)
    assert added.status_code == 200
    assert added.json()["code"] == 0
    assert requests.post(admin + "/faults", json={"kind": "nope"}, timeout=5).status_code == 400
    assert requests.post(admin + "/faults", data=b"{", timeout=5).status_code == 400
    assert [f["status"] for f in requests.get(admin + "/faults", timeout=5).json()] == [503]
    assert session.get(server.url + "/v2/user/whoami", timeout=5).status_code == 503

    forced = requests.post(
        admin + f"/tasks/{task_id}", json={"status": "failed", "error_message": "x"}, timeout=5
    )
    assert forced.json()["data"]["status"] == "failed"
    assert server.tasks[task_id]["status"] == "failed"

    assert requests.post(admin + "/reset", timeout=5).json()["code"] == 0
    assert server.faults == []
    assert server.requests == []
    assert task_id in server.tasks  # tasks survive a reset
    assert session.get(server.url + "/v2/user/whoami", timeout=5).status_code == 200
    assert server.count() == 1  # admin calls are never recorded


# --------------------------------------------------------------------------- HTTP plumbing


def test_keep_alive_across_error_answers(server: FakeJoggServer, conn: http.client.HTTPConnection) -> None:
    calls: list[tuple[str, str, bytes | None, dict[str, str]]] = [
        ("GET", "/v2/user/whoami", None, {"x-api-key": KEY}),
        ("POST", CREATE, b'{"video_url": 1}', {"x-api-key": KEY}),
        ("POST", CREATE, b'{"video_url": 1}', {"x-api-key": "bad"}),
        ("POST", "/nowhere", b"x" * 5000, {}),
        ("GET", f"/v2/lip_sync_video/{uuid.uuid4()}", None, {"x-api-key": KEY}),
        ("GET", "/_fake/tasks", None, {}),
    ]
    ports = set()
    statuses = []
    for method, path, body, headers in calls:
        conn.request(method, path, body=body, headers=headers)
        response = conn.getresponse()
        payload = response.read()
        assert len(payload) == int(response.getheader("Content-Length") or -1)
        assert response.getheader("Connection") is None
        statuses.append(response.status)
        assert conn.sock is not None
        ports.add(conn.sock.getsockname()[1])
    assert statuses == [200, 200, 401, 404, 200, 200]
    assert len(ports) == 1


def test_expect_100_continue_and_bad_content_length(server: FakeJoggServer) -> None:
    body = json.dumps({"video_url": VIDEO, "audio_url": AUDIO}).encode()
    with socket.create_connection(("127.0.0.1", server.port), timeout=5) as sock:
        head = (
            f"POST {CREATE} HTTP/1.1\r\nHost: x\r\nx-api-key: {KEY}\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(body)}\r\nExpect: 100-continue\r\n\r\n"
        )
        sock.sendall(head.encode())
        assert sock.recv(100).startswith(b"HTTP/1.1 100")
        sock.sendall(body)
        answer = b""
        while b'"status":"pending"' not in answer:
            chunk = sock.recv(4096)
            assert chunk
            answer += chunk
        assert answer.startswith(b"HTTP/1.1 200")
        sock.sendall(b"POST /v2/user/whoami HTTP/1.1\r\nHost: x\r\nContent-Length: abc\r\n\r\n")
        reply = b""
        while chunk := sock.recv(4096):
            reply += chunk
        assert reply.startswith(b"HTTP/1.1 400")  # then the server closed the connection
    assert len(server.tasks) == 1


def test_concurrent_clients(server: FakeJoggServer) -> None:
    task_id = server.add_task(VIDEO, AUDIO)
    failures: list[str] = []

    def worker() -> None:
        with requests.Session() as sess:
            sess.headers["x-api-key"] = KEY
            for _ in range(40):
                response = sess.get(f"{server.url}/v2/lip_sync_video/{task_id}", timeout=5)
                if response.status_code != 200 or response.json()["data"]["task_id"] != task_id:
                    failures.append(response.text)

    threads = [threading.Thread(target=worker) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(20)
    assert failures == []
    assert server.count(path="/v2/lip_sync_video/") == 320
    assert server.count_status(200) == 320


@pytest.mark.parametrize("host", ["0.0.0.0", "192.168.1.10", "example.com", "", "::"])
def test_non_loopback_host_is_refused(host: str) -> None:
    with pytest.raises(ValueError, match="loopback"):
        FakeJoggServer(host=host)


def test_localhost_and_other_loopback_hosts(make_server: Callable[..., FakeJoggServer]) -> None:
    server = make_server(host="localhost")
    assert server.url.startswith("http://127.0.0.1:")
    assert requests.get(server.url + "/v2/user/whoami", headers={"x-api-key": KEY}, timeout=5).ok
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
        assert session.get(server.url + "/v2/user/whoami", timeout=5).status_code == 200
        started = time.monotonic()
        server.stop()
        assert time.monotonic() - started < 2
        assert not server.running
        server.stop()
        with pytest.raises(requests.ConnectionError):
            requests.get(server.url + "/v2/user/whoami", timeout=2)
    finally:
        server.stop()
    with FakeJoggServer(api_key=KEY, port=port) as again:
        assert again.port == port
        assert session.get(again.url + "/v2/user/whoami", timeout=5).status_code == 200


# --------------------------------------------------------------------------- CLI


def _cli(*args: str) -> subprocess.Popen[str]:
    """Start ``python -m airflow_provider_jogg.testing`` with the repository on the path."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO_ROOT), env.get("PYTHONPATH")]))
    return subprocess.Popen(
        [sys.executable, "-m", "airflow_provider_jogg.testing", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
        cwd=REPO_ROOT,
    )


def _read_line(proc: subprocess.Popen[str], timeout: float = 20) -> str:
    """Read one stdout line of ``proc`` or fail after ``timeout`` seconds."""
    lines: queue.Queue[str] = queue.Queue()
    assert proc.stdout is not None
    stdout = proc.stdout
    threading.Thread(target=lambda: lines.put(stdout.readline()), daemon=True).start()
    try:
        return lines.get(timeout=timeout)
    except queue.Empty:
        pytest.fail(f"no URL line within {timeout}s")


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_cli_serves_until_signal(sig: signal.Signals) -> None:
    proc = _cli("--port", "0", "--api-key", "cli-key", "--prefix", "/open", "--pending-seconds", "0")
    try:
        line = _read_line(proc)
        match = re.fullmatch(r"JOGG_FAKE_URL=(http://127\.0\.0\.1:(\d+)/open)\n", line)
        assert match, line
        url = match.group(1)
        whoami = requests.get(url + "/v2/user/whoami", headers={"x-api-key": "cli-key"}, timeout=5)
        assert whoami.json()["data"]["username"] == "demo"
        assert requests.get(url + "/v2/user/whoami", headers={"x-api-key": KEY}, timeout=5).status_code == 401
        proc.send_signal(sig)
        assert proc.wait(timeout=10) == 0
        assert proc.stdout is not None
        assert proc.stdout.read() == ""  # exactly one line on stdout
        with pytest.raises(requests.ConnectionError):
            requests.get(url + "/v2/user/whoami", timeout=2)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(5)
        for stream in (proc.stdout, proc.stderr):
            if stream is not None:
                stream.close()


def test_cli_finish_after_poll_marker_on_a_server_that_never_finishes() -> None:
    """The e2e suites' fake: ``--processing-seconds never``; a task ends when its URL's marker says,
    counted from the first status answer about it, and an unmarked one only when the test says."""
    proc = _cli("--api-key", "cli-key", "--pending-seconds", "0", "--processing-seconds", "never")
    try:
        url = _read_line(proc).strip().removeprefix("JOGG_FAKE_URL=")
        headers = {"x-api-key": "cli-key"}
        ids = {}
        for name, video in (("marked", f"{VIDEO}?{FINISH_AFTER_POLL}=0"), ("plain", VIDEO)):
            body = {"video_url": video, "audio_url": AUDIO}
            answer = requests.post(url + CREATE, json=body, headers=headers, timeout=5).json()
            ids[name] = answer["data"]["task_id"]
        statuses = {}
        for name, task_id in ids.items():
            answer = requests.get(f"{url}/v2/lip_sync_video/{task_id}", headers=headers, timeout=5).json()
            statuses[name] = answer["data"]["status"]
        assert statuses == {"marked": "success", "plain": "processing"}
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=10) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(5)
        for stream in (proc.stdout, proc.stderr):
            if stream is not None:
                stream.close()


@pytest.mark.parametrize(
    "args",
    [("--processing-seconds-for", "/late/=never"), ("--clock-from-first-status",)],
    ids=["by-url", "clock"],
)
def test_cli_has_one_timing_mechanism(args: tuple[str, ...]) -> None:
    """Per-task timing is the URL markers' job only: the server options that did the same are gone."""
    proc = _cli(*args)
    try:
        _, err = proc.communicate(timeout=20)
        assert proc.returncode == 2
        assert f"unrecognized arguments: {' '.join(args)}" in err, err
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(5)


def test_cli_refuses_non_loopback_host() -> None:
    proc = _cli("--host", "0.0.0.0")
    try:
        _, err = proc.communicate(timeout=20)
        assert proc.returncode == 2
        assert "loopback" in err
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(5)
