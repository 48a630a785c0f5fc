"""The fake server's rate limit."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

import requests

from airflow_provider_jogg.protocol import WHOAMI_PATH
from tests.unit.testing.server.support import AUDIO, VIDEO

if TYPE_CHECKING:
    from collections.abc import Callable

    from airflow_provider_jogg.testing import FakeJoggServer


def test_rate_limit(make_server: Callable[..., FakeJoggServer], session: requests.Session) -> None:
    server = make_server(rate_limit=5)
    started = time.monotonic()
    responses = [session.get(server.url + WHOAMI_PATH, timeout=5) for _ in range(15)]
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
    assert session.get(server.url + WHOAMI_PATH, timeout=5).status_code == 200
