"""The fake server's API routes: the key, unknown routes, the prefix, parameter validation."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import pytest
import requests

from airflow_provider_jogg.protocol import STATUS_PATH, WHOAMI_PATH
from tests.unit.testing.server.support import AUDIO, CREATE, KEY, VIDEO, create, get_task

if TYPE_CHECKING:
    from collections.abc import Callable

    from airflow_provider_jogg.testing import FakeJoggServer


@pytest.mark.parametrize(
    ("headers", "recorded"),
    [({}, None), ({"x-api-key": "wrong"}, "<invalid>")],
    ids=["missing", "wrong"],
)
@pytest.mark.parametrize(
    ("method", "path", "body"),
    [
        ("GET", WHOAMI_PATH, None),
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
    session.get(server.url + WHOAMI_PATH, headers={"x-api-key": KEY + "-typo"}, timeout=5)
    assert [r.headers["x-api-key"] for r in server.requests] == ["<valid>", "<invalid>"]
    assert KEY not in repr(server.requests)
    dumped = requests.get(server.root_url + "/_fake/requests", timeout=5).text
    assert KEY not in dumped
    assert "<valid>" in dumped


def test_auth_error_status_can_be_200(make_server: Callable[..., FakeJoggServer]) -> None:
    server = make_server(auth_error_status=200)
    response = requests.get(server.url + WHOAMI_PATH, headers={"x-api-key": "nope"}, timeout=5)
    assert response.status_code == 200
    assert response.json()["code"] == 10105


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", "/nope"),
        ("GET", "/"),
        ("GET", CREATE),
        ("POST", WHOAMI_PATH),
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
    assert session.get(server.root_url + WHOAMI_PATH, timeout=5).status_code == 404
    assert session.get(server.url + WHOAMI_PATH, timeout=5).status_code == 200
    task_id = create(session, server).json()["data"]["task_id"]
    data = get_task(session, server, task_id)
    assert data["data"]["result_url"] == f"{server.root_url}/files/{task_id}/result.mp4"
    # Only the prefixed API calls are recorded, without the prefix.
    assert [(r.method, r.path) for r in server.requests] == [
        ("GET", WHOAMI_PATH),
        ("POST", CREATE),
        ("GET", STATUS_PATH.format(task_id=task_id)),
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
