"""Constants and request helpers shared by the fake server's tests."""

from __future__ import annotations

import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import airflow_provider_jogg
from airflow_provider_jogg.protocol import CREATE_PATH, STATUS_PATH, UPLOAD_PATH

if TYPE_CHECKING:
    import http.client
    from collections.abc import Callable

    import requests

    from airflow_provider_jogg.testing import FakeJoggServer

KEY = "s3cret-test-key-4711"
CREATE = CREATE_PATH
VIDEO = "https://media.example/clip.mp4"
AUDIO = "https://media.example/voice.mp3"
REPO_ROOT = Path(airflow_provider_jogg.__file__).resolve().parents[1]


def create(session: requests.Session, server: FakeJoggServer, **body: Any) -> requests.Response:
    """POST a create call (defaults: valid urls)."""
    payload = {"video_url": VIDEO, "audio_url": AUDIO, **body}
    return session.post(server.url + CREATE, json=payload, timeout=5)


def get_task(session: requests.Session, server: FakeJoggServer, task_id: str) -> dict[str, Any]:
    """GET a task and return its ``data``, checking the envelope."""
    response = session.get(server.url + STATUS_PATH.format(task_id=task_id), timeout=5)
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


def request_upload(session: requests.Session, server: FakeJoggServer, **body: Any) -> dict[str, str]:
    """POST /v2/upload/asset and return its data."""
    response = session.post(server.url + UPLOAD_PATH, json=body, timeout=5)
    assert response.status_code == 200
    payload = response.json()
    assert payload["code"] == 0, payload
    return payload["data"]
