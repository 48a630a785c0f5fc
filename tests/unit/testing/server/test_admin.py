"""The fake server's /_fake/ admin routes."""

from __future__ import annotations

from typing import TYPE_CHECKING

import requests

from airflow_provider_jogg.protocol import WHOAMI_PATH
from tests.unit.testing.server.support import AUDIO, CREATE, KEY, VIDEO, create, get_task

if TYPE_CHECKING:
    from collections.abc import Callable

    from airflow_provider_jogg.testing import FakeJoggServer


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
    assert session.get(server.url + WHOAMI_PATH, timeout=5).status_code == 503

    forced = requests.post(
        admin + f"/tasks/{task_id}", json={"status": "failed", "error_message": "x"}, timeout=5
    )
    assert forced.json()["data"]["status"] == "failed"
    assert server.tasks[task_id]["status"] == "failed"

    assert requests.post(admin + "/reset", timeout=5).json()["code"] == 0
    assert server.faults == []
    assert server.requests == []
    assert task_id in server.tasks  # tasks survive a reset
    assert session.get(server.url + WHOAMI_PATH, timeout=5).status_code == 200
    assert server.count() == 1  # admin calls are never recorded


def test_counts_endpoint_counts_what_the_bounded_log_dropped(
    make_server: Callable[..., FakeJoggServer], session: requests.Session
) -> None:
    server = make_server(pending_seconds=0, processing_seconds=0, max_recorded_requests=1, rate_limit=1)
    task_id = create(session, server).json()["data"]["task_id"]
    assert create(session, server).status_code == 429  # the bucket of 1 request/s is empty
    server.rate_limit = None
    get_task(session, server, task_id)

    answer = requests.get(server.root_url + "/_fake/counts", timeout=5)
    assert KEY not in answer.text
    counts = answer.json()
    assert counts == {
        "requests": 3,
        "recorded": 1,
        "dropped": 2,
        "creates": 2,
        "status_polls": 1,
        "by_status": {"200": 2, "429": 1},
        "tasks": {"success": 1},
    }
