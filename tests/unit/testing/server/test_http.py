"""The fake server's HTTP layer: keep-alive, Expect: 100-continue, body framing, concurrency."""

from __future__ import annotations

import json
import socket
import threading
import uuid
from typing import TYPE_CHECKING

import requests

from airflow_provider_jogg.protocol import STATUS_PATH, WHOAMI_PATH
from tests.unit.testing.server.support import AUDIO, CREATE, KEY, VIDEO

if TYPE_CHECKING:
    import http.client

    from airflow_provider_jogg.testing import FakeJoggServer

    pass


def test_keep_alive_across_error_answers(server: FakeJoggServer, conn: http.client.HTTPConnection) -> None:
    calls: list[tuple[str, str, bytes | None, dict[str, str]]] = [
        ("GET", WHOAMI_PATH, None, {"x-api-key": KEY}),
        ("POST", CREATE, b'{"video_url": 1}', {"x-api-key": KEY}),
        ("POST", CREATE, b'{"video_url": 1}', {"x-api-key": "bad"}),
        ("POST", "/nowhere", b"x" * 5000, {}),
        ("GET", STATUS_PATH.format(task_id=uuid.uuid4()), None, {"x-api-key": KEY}),
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
                response = sess.get(server.url + STATUS_PATH.format(task_id=task_id), timeout=5)
                if response.status_code != 200 or response.json()["data"]["task_id"] != task_id:
                    failures.append(response.text)

    threads = [threading.Thread(target=worker) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(20)
    assert failures == []
    assert server.count(path=STATUS_PATH.format(task_id="")) == 320
    assert server.count_status(200) == 320
