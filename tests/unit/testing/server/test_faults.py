"""Faults of the fake server: every kind, their matching, ordering and timing."""

from __future__ import annotations

import gzip
import http.client
import json
import queue
import threading
import time

import pytest
import requests

from airflow_provider_jogg.protocol import QUOTA_PATH, WHOAMI_PATH
from airflow_provider_jogg.testing import FakeJoggServer, Fault
from tests.unit.testing.server.support import (
    AUDIO,
    CREATE,
    KEY,
    VIDEO,
    create,
    raw_get,
    request_upload,
    wait_until,
)


def test_fault_status_with_retry_after_applies_once(
    server: FakeJoggServer, session: requests.Session
) -> None:
    server.add_fault(Fault("status", status=503, retry_after="7", path=WHOAMI_PATH))
    first = session.get(server.url + WHOAMI_PATH, timeout=5)
    assert first.status_code == 503
    assert first.headers["Retry-After"] == "7"
    assert first.json() == {"code": 503, "msg": "Service Unavailable", "data": None}
    second = session.get(server.url + WHOAMI_PATH, timeout=5)
    assert second.status_code == 200
    assert "Retry-After" not in second.headers
    assert server.count_status(503) == 1
    assert server.count_status(200) == 1


def test_fault_status_429_without_retry_after(server: FakeJoggServer, session: requests.Session) -> None:
    server.add_fault(Fault("status", status=429))
    response = session.get(server.url + QUOTA_PATH, timeout=5)
    assert response.status_code == 429
    assert "Retry-After" not in response.headers
    assert response.json()["code"] == 429


def test_fault_html(server: FakeJoggServer, session: requests.Session) -> None:
    server.add_fault(Fault("html"))
    response = session.get(server.url + WHOAMI_PATH, timeout=5)
    assert response.status_code == 502
    assert response.headers["Content-Type"].startswith("text/html")
    assert response.text == "<html><body><h1>502 Bad Gateway</h1></body></html>"


def test_fault_business(server: FakeJoggServer, session: requests.Session) -> None:
    server.add_fault(Fault("business"))
    server.add_fault(Fault("business", code=18020, msg="Insufficient credit"))
    first = session.get(server.url + WHOAMI_PATH, timeout=5)
    assert first.status_code == 200
    assert first.json() == {"code": 50000, "msg": "System error", "data": None}
    second = session.get(server.url + WHOAMI_PATH, timeout=5)
    assert second.json() == {"code": 18020, "msg": "Insufficient credit", "data": None}


def test_fault_non_json(server: FakeJoggServer, session: requests.Session) -> None:
    server.add_fault(Fault("non_json"))
    response = session.get(server.url + WHOAMI_PATH, timeout=5)
    assert response.status_code == 200
    assert response.text == "Internal error, please retry"
    with pytest.raises(ValueError):  # noqa: PT011 - json decoders raise different subclasses
        response.json()


def test_fault_truncated(server: FakeJoggServer, conn: http.client.HTTPConnection) -> None:
    server.add_fault(Fault("truncated"))
    response = raw_get(conn, WHOAMI_PATH)
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
        raw_get(conn, WHOAMI_PATH)
    assert server.requests[0].status == 0


def test_fault_reset(server: FakeJoggServer, conn: http.client.HTTPConnection) -> None:
    server.add_fault(Fault("reset"))
    with pytest.raises(ConnectionResetError):
        raw_get(conn, WHOAMI_PATH).read()
    assert server.requests[0].status == 0


def test_fault_raw_and_envelope(server: FakeJoggServer, session: requests.Session) -> None:
    server.add_fault(Fault("raw", status=504, body="upstream timed out"))
    server.add_fault(Fault("envelope", body='{"code": 0, "msg": "ok"}'))
    raw = session.get(server.url + WHOAMI_PATH, timeout=5)
    assert raw.status_code == 504
    assert raw.headers["Content-Type"] == "application/json"
    assert raw.text == "upstream timed out"
    envelope = session.get(server.url + WHOAMI_PATH, timeout=5)
    assert envelope.status_code == 200
    assert envelope.text == '{"code": 0, "msg": "ok"}'


def test_fault_redirect(server: FakeJoggServer, conn: http.client.HTTPConnection) -> None:
    server.add_fault(Fault("redirect", location="http://127.0.0.2:9/elsewhere", path=WHOAMI_PATH))
    server.add_fault(Fault("redirect", status=307, location=WHOAMI_PATH))
    first = raw_get(conn, WHOAMI_PATH)
    assert (first.status, first.getheader("Location"), first.read()) == (
        302,
        "http://127.0.0.2:9/elsewhere",
        b"",
    )
    second = raw_get(conn, QUOTA_PATH)
    assert (second.status, second.getheader("Location")) == (307, WHOAMI_PATH)
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
    server.add_fault(Fault("status", status=502, path=WHOAMI_PATH, times=1))
    whoami = server.url + WHOAMI_PATH
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
        response = raw_get(conn, WHOAMI_PATH)
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
            requests.get(server.url + WHOAMI_PATH, headers={"x-api-key": KEY}, timeout=10)
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
