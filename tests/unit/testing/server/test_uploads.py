"""The fake server's storage routes: task result files, pre-signed uploads and assets."""

from __future__ import annotations

import os
import re
import uuid
from typing import TYPE_CHECKING, Any

import pytest
import requests

from airflow_provider_jogg.protocol import UPLOAD_PATH
from tests.unit.testing.server.support import AUDIO, VIDEO, create, request_upload, wait_until

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator

    from airflow_provider_jogg.testing import FakeJoggServer


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
        ("POST", UPLOAD_PATH, {"filename": "clip.mp4", "content_type": "video/mp4", "file_size": 3000})
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
    payload = session.post(server.url + UPLOAD_PATH, json=body, timeout=5).json()
    assert payload["code"] == 40000
    assert payload["data"] is None
    assert expected in payload["msg"]
