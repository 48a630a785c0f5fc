"""LipSyncTrigger against the fake Jogg server: one event per run, whatever the server does."""

from __future__ import annotations

import asyncio
import time
from typing import TYPE_CHECKING

import pytest
from airflow.sdk.exceptions import AirflowRuntimeError, ErrorType
from airflow.sdk.execution_time.comms import ErrorResponse

from airflow_provider_jogg import _compat, registries
from airflow_provider_jogg.events import EventStatus, parse_event
from airflow_provider_jogg.protocol import STATUS_PATH
from airflow_provider_jogg.testing import FAILURE_MESSAGE, Fault
from airflow_provider_jogg.triggers import lip_sync
from airflow_provider_jogg.triggers.lip_sync import LipSyncTrigger
from tests.conftest import TEST_API_KEY, conn_json

if TYPE_CHECKING:
    from collections.abc import Callable

STATUS = STATUS_PATH.format(task_id="")


async def run_trigger(trigger: LipSyncTrigger) -> list[dict]:
    """Drive run() to its end: it must yield exactly one event and then return."""
    return [event.payload async for event in trigger.run()]


def new_task(server, video="https://m.example/v.mp4", audio="https://m.example/a.mp3") -> str:
    return server.add_task(video, audio)


def test_serialization_is_exact_and_holds_no_key():
    trigger = LipSyncTrigger(
        jogg_task_id="t-1",
        jogg_conn_id="jogg_x",
        poll_interval=2.5,
        end_time=1700000000.5,
        not_before=1699990000.25,
    )
    classpath, kwargs = trigger.serialize()
    assert classpath == "airflow_provider_jogg.triggers.lip_sync.LipSyncTrigger"
    assert kwargs == {
        "jogg_task_id": "t-1",
        "jogg_conn_id": "jogg_x",
        "poll_interval": 2.5,
        "end_time": 1700000000.5,
        "not_before": 1699990000.25,
    }
    assert LipSyncTrigger(**kwargs).serialize() == (classpath, kwargs)
    assert TEST_API_KEY not in repr(kwargs)
    defaults = LipSyncTrigger(jogg_task_id="t").serialize()[1]
    assert defaults == {
        "jogg_task_id": "t",
        "jogg_conn_id": "jogg_default",
        "poll_interval": 10.0,
        "end_time": None,
        "not_before": None,
    }


def test_kwargs_of_the_first_release_still_deserialize():
    """Trigger rows written before ``not_before`` existed hold four kwargs: they must still load."""
    old = {"jogg_task_id": "t-1", "jogg_conn_id": "jogg_x", "poll_interval": 2.5, "end_time": 1.5}
    trigger = LipSyncTrigger(**old)
    assert trigger.not_before is None
    assert trigger.serialize()[1] == {**old, "not_before": None}


@pytest.mark.asyncio
async def test_success_event(jogg_conn):
    task_id = new_task(jogg_conn)
    events = await run_trigger(LipSyncTrigger(jogg_task_id=task_id, poll_interval=0.05))
    assert len(events) == 1
    event = parse_event(events[0])
    assert event.status is EventStatus.SUCCESS
    assert event.result.task_id == task_id
    assert event.result.result_url.endswith(f"/files/{task_id}/result.mp4")
    assert event.result.duration_seconds == 12.5
    # it polled until done, every poll with the key, and nothing else
    polls = [r for r in jogg_conn.requests if r.path.startswith(STATUS)]
    assert len(polls) >= 1
    assert all(r.headers.get("x-api-key") == "<valid>" for r in polls)
    assert jogg_conn.create_count == 0


@pytest.mark.asyncio
async def test_failed_event_carries_jogg_error_message(jogg_conn):
    task_id = new_task(jogg_conn, video="https://m.example/fail.mp4")
    (payload,) = await run_trigger(LipSyncTrigger(jogg_task_id=task_id, poll_interval=0.05))
    event = parse_event(payload)
    assert event.status is EventStatus.FAILED
    assert event.result.error_message == FAILURE_MESSAGE


@pytest.mark.asyncio
async def test_timeout_event_at_end_time(jogg_conn):
    task_id = new_task(jogg_conn)
    jogg_conn.set_task(task_id, "processing")
    end_time = time.time() + 0.4
    (payload,) = await run_trigger(
        LipSyncTrigger(jogg_task_id=task_id, poll_interval=0.05, end_time=end_time)
    )
    event = parse_event(payload)
    assert event.status is EventStatus.TIMEOUT
    assert time.time() >= end_time
    assert task_id in event.message


@pytest.mark.asyncio
async def test_end_time_already_passed_sends_no_request(jogg_conn):
    task_id = new_task(jogg_conn)
    (payload,) = await run_trigger(
        LipSyncTrigger(jogg_task_id=task_id, poll_interval=5, end_time=time.time() - 1)
    )
    assert payload["status"] == "timeout"
    assert jogg_conn.count(path=STATUS) == 0


@pytest.mark.asyncio
@pytest.mark.parametrize(
    "fault",
    [
        Fault("status", status=500),
        Fault("status", status=503),
        Fault("html", status=502),
        Fault("business", code=50000, msg="System error"),
        Fault("non_json"),
        Fault("truncated"),
        Fault("close"),
        Fault("reset"),
        Fault("status", status=429),
        Fault("status", status=408),
        Fault("html", status=425),
    ],
    ids=[
        "500",
        "503",
        "502-html",
        "code-50000",
        "non-json",
        "truncated",
        "closed",
        "reset",
        "429-no-retry-after",
        "408",
        "425-html",
    ],
)
async def test_transient_errors_are_retried_to_one_success_event(jogg_conn, fault):
    task_id = new_task(jogg_conn)
    fault.path, fault.times = STATUS, 3
    jogg_conn.add_fault(fault)
    events = await run_trigger(LipSyncTrigger(jogg_task_id=task_id, poll_interval=0.02))
    assert [e["status"] for e in events] == ["success"]
    assert jogg_conn.count(path=STATUS) >= 4  # three faulted polls, then the good ones


@pytest.mark.asyncio
async def test_a_poll_failing_for_hours_does_not_overflow_the_backoff(fake_jogg, set_conn):
    # 1,025 failed polls in a row is under 3 h of outage at the default 10 s interval
    set_conn("jogg_outage", fake_jogg.url, retry_backoff=0)
    task_id = new_task(fake_jogg)
    fake_jogg.add_fault(Fault("status", status=503, path=STATUS, times=1030))
    (payload,) = await run_trigger(
        LipSyncTrigger(jogg_task_id=task_id, jogg_conn_id="jogg_outage", poll_interval=0.001)
    )
    assert payload["status"] == "success"
    assert fake_jogg.count_status(503) == 1030


@pytest.mark.asyncio
async def test_an_answer_about_another_task_is_polled_again(jogg_conn):
    # a caching proxy answers with another task's (finished) result: not this task's result
    task_id = new_task(jogg_conn)
    other = '{"code": 0, "msg": "ok", "data": {"task_id": "someone-else", "status": "success"}}'
    jogg_conn.add_fault(Fault("envelope", path=STATUS, body=other, times=2))
    (payload,) = await run_trigger(LipSyncTrigger(jogg_task_id=task_id, poll_interval=0.02))
    event = parse_event(payload)
    assert event.status is EventStatus.SUCCESS
    assert event.result.task_id == task_id
    assert event.result.result_url.endswith(f"/files/{task_id}/result.mp4")
    assert jogg_conn.count(path=STATUS) >= 3  # both mixed-up answers, then the real one


@pytest.mark.asyncio
async def test_slow_answer_beyond_timeout_is_retried(fake_jogg, set_conn):
    set_conn("jogg_slow", fake_jogg.url, timeout=0.2)
    task_id = new_task(fake_jogg)
    fake_jogg.add_fault(Fault("slow", path=STATUS, delay=1.0, times=1))
    (payload,) = await run_trigger(
        LipSyncTrigger(jogg_task_id=task_id, jogg_conn_id="jogg_slow", poll_interval=0.02)
    )
    assert payload["status"] == "success"


@pytest.mark.asyncio
async def test_no_poll_and_no_event_before_not_before(jogg_conn, set_conn):
    """The floor holds for a finished task and for an error alike: nothing happens before it."""
    task_id = new_task(jogg_conn)
    jogg_conn.set_task(task_id, "success")
    not_before = time.time() + 1.0
    trigger = LipSyncTrigger(jogg_task_id=task_id, poll_interval=0.02, not_before=not_before)
    (payload,) = await run_trigger(trigger)
    assert payload["status"] == "success"
    polls = [r for r in jogg_conn.requests if r.path.startswith(STATUS)]
    assert polls, "the trigger never polled"
    assert all(r.time >= not_before for r in polls), [r.time - not_before for r in polls]
    # an error that needs no request (a connection without a key) is not reported early either
    set_conn("jogg_nokey", jogg_conn.url, key=None)
    broken = LipSyncTrigger(jogg_task_id=task_id, jogg_conn_id="jogg_nokey", not_before=time.time() + 0.5)
    (error,) = await run_trigger(broken)
    assert error["status"] == "error"
    assert "no API key" in error["message"]
    assert time.time() >= broken.not_before


@pytest.mark.asyncio
async def test_end_time_is_kept_while_a_retry_after_holds_the_account(jogg_conn):
    """A 429 asking for 30 s must not push the timeout event past end_time."""
    task_id = new_task(jogg_conn)
    jogg_conn.set_task(task_id, "processing")
    jogg_conn.add_fault(Fault("status", status=429, path=STATUS, retry_after="30", times=1))
    end_time = time.time() + 1.0
    trigger = LipSyncTrigger(jogg_task_id=task_id, poll_interval=0.05, end_time=end_time)
    (payload,) = await asyncio.wait_for(run_trigger(trigger), timeout=15)
    assert payload["status"] == "timeout"
    assert time.time() >= end_time
    assert [r.status for r in jogg_conn.requests if r.path.startswith(STATUS)] == [429]


@pytest.mark.asyncio
async def test_429_retry_after_is_honoured(jogg_conn):
    task_id = new_task(jogg_conn)
    jogg_conn.add_fault(Fault("status", status=429, path=STATUS, retry_after="1", times=1))
    (payload,) = await run_trigger(LipSyncTrigger(jogg_task_id=task_id, poll_interval=0.02))
    assert payload["status"] == "success"
    polls = [r for r in jogg_conn.requests if r.path.startswith(STATUS)]
    assert polls[0].status == 429
    # no request sooner than Retry-After
    assert polls[1].time - polls[0].time >= 1.0


@pytest.mark.asyncio
async def test_unknown_status_is_not_terminal(jogg_conn):
    task_id = new_task(jogg_conn)
    jogg_conn.set_task(task_id, "queued")
    trigger = LipSyncTrigger(jogg_task_id=task_id, poll_interval=0.02)
    run = asyncio.ensure_future(run_trigger(trigger))
    while jogg_conn.count(path=STATUS) < 3:
        await asyncio.sleep(0.02)
    assert not run.done()
    jogg_conn.set_task(task_id, "success")
    (payload,) = await run
    assert payload["status"] == "success"


@pytest.mark.asyncio
@pytest.mark.parametrize(
    ("setup", "error_type", "text"),
    [
        ("unknown-task", "JoggTaskNotFoundError", "10104"),
        ("bad-key", "JoggAuthError", "10105"),
        ("no-permission", "JoggPermissionError", "18025"),
        ("no-data", "JoggResponseError", "without 'data'"),
        ("no-status", "JoggResponseError", "no 'status'"),
        ("redirect", "JoggRedirectError", "elsewhere.example"),
    ],
)
async def test_fatal_errors_end_with_one_error_event(fake_jogg, set_conn, setup, error_type, text):
    task_id = "00000000-0000-0000-0000-000000000000" if setup == "unknown-task" else new_task(fake_jogg)
    set_conn("jogg_t", fake_jogg.url, key="wrong-key" if setup == "bad-key" else TEST_API_KEY)
    if setup == "no-permission":
        fake_jogg.add_fault(Fault("business", path=STATUS, code=18025, msg="No permission", times=None))
    if setup == "no-data":
        fake_jogg.add_fault(Fault("envelope", path=STATUS, body='{"code": 0, "msg": "ok"}', times=None))
    if setup == "redirect":
        location = "https://elsewhere.example/v2/lip_sync_video/x"
        fake_jogg.add_fault(Fault("redirect", path=STATUS, location=location, times=None))
    if setup == "no-status":
        fake_jogg.add_fault(
            Fault(
                "envelope", path=STATUS, body='{"code": 0, "msg": "ok", "data": {"task_id": "x"}}', times=None
            )
        )
    events = await run_trigger(
        LipSyncTrigger(jogg_task_id=task_id, jogg_conn_id="jogg_t", poll_interval=0.02)
    )
    assert len(events) == 1
    event = parse_event(events[0])
    assert event.status is EventStatus.ERROR
    assert type(event.error).__name__ == error_type
    assert text in str(event.error)
    assert fake_jogg.count(path=STATUS) == 1  # never retried
    assert TEST_API_KEY not in repr(events)
    assert "wrong-key" not in repr(events)


def api_server_error() -> AirflowRuntimeError:
    """What a lookup raises on Airflow 3.0 when the API server answers it with an error."""
    return AirflowRuntimeError(
        ErrorResponse(error=ErrorType.API_SERVER_ERROR, detail={"status_code": 503, "message": "down"})
    )


@pytest.fixture
def lookups(monkeypatch):
    """Counts connection lookups, which go on to Airflow's real one unless ``fail`` says otherwise."""
    real = _compat.aget_connection

    class Lookups:
        count = 0
        fail: list[Exception]
        before: Callable[[int], object] | None = None  # called with each lookup's number first

        async def __call__(self, conn_id):
            self.count += 1
            if self.before is not None:
                self.before(self.count)
            if self.fail:
                raise self.fail.pop(0)
            return await real(conn_id)

    recorder = Lookups()
    recorder.fail = []
    monkeypatch.setattr(_compat, "aget_connection", recorder)
    return recorder


@pytest.mark.asyncio
@pytest.mark.parametrize("cause", ["not-defined-yet", "api-server-error"])
async def test_a_connection_lookup_that_fails_for_a_while_is_retried(
    fake_jogg, lookups, monkeypatch, capfd, cause
):
    # the API server or the secrets backend is briefly down: on Airflow 3.1+ the lookup then says
    # "not found" (the SDK swallows the backend's error), on 3.0 it raises AirflowRuntimeError
    task_id = new_task(fake_jogg)
    value = conn_json(fake_jogg.url)
    if cause == "not-defined-yet":  # Airflow's real lookup fails until the connection appears
        lookups.before = lambda n: n == 3 and monkeypatch.setenv("AIRFLOW_CONN_JOGG_LATER", value)
    else:
        monkeypatch.setenv("AIRFLOW_CONN_JOGG_LATER", value)
        lookups.fail = [api_server_error(), api_server_error()]
    (payload,) = await run_trigger(
        LipSyncTrigger(jogg_task_id=task_id, jogg_conn_id="jogg_later", poll_interval=0.02)
    )
    assert payload["status"] == "success"
    assert lookups.count == 3
    logged = capfd.readouterr().out
    assert logged.count("Connection 'jogg_later' could not be read") == 2  # each retry is logged
    assert "could not be read (attempt 2)" in logged
    assert TEST_API_KEY not in logged


@pytest.mark.asyncio
async def test_missing_connection_is_an_error_event(lookups, monkeypatch):
    monkeypatch.setattr(lip_sync, "CONNECTION_NOT_FOUND_GRACE", 0.2)
    (payload,) = await run_trigger(
        LipSyncTrigger(jogg_task_id="t", jogg_conn_id="jogg_nowhere", poll_interval=0.01)
    )
    event = parse_event(payload)
    assert event.status is EventStatus.ERROR
    assert type(event.error).__name__ == "JoggConfigError"
    assert "'jogg_nowhere' was not found by the triggerer" in str(event.error)
    assert lookups.count > 1  # looked up again during the grace, in case the API server was down


@pytest.mark.asyncio
async def test_a_denied_connection_is_an_error_event_at_once(fake_jogg, set_conn, lookups):
    # Airflow 3.2+: the API server explicitly refuses to give the connection out (401/403)
    exceptions = pytest.importorskip("airflow.sdk.exceptions")
    if not hasattr(exceptions, "AirflowSecretsBackendAccessDenied"):
        pytest.skip("Airflow < 3.2 has no explicit access denial of a connection")
    set_conn("jogg_denied", fake_jogg.url)
    denied = exceptions.AirflowSecretsBackendAccessDenied("Access denied for connection 'jogg_denied'")
    lookups.fail = [denied]
    (payload,) = await run_trigger(
        LipSyncTrigger(jogg_task_id="t", jogg_conn_id="jogg_denied", poll_interval=0.01)
    )
    event = parse_event(payload)
    assert event.status is EventStatus.ERROR
    assert "Access denied" in str(event.error)
    assert lookups.count == 1
    assert fake_jogg.count() == 0


@pytest.mark.asyncio
async def test_a_connection_lookup_failing_until_end_time_times_out(fake_jogg, set_conn, lookups):
    set_conn("jogg_down", fake_jogg.url)
    lookups.fail = [api_server_error() for _ in range(1000)]
    end_time = time.time() + 0.3
    (payload,) = await run_trigger(
        LipSyncTrigger(jogg_task_id="t", jogg_conn_id="jogg_down", poll_interval=0.02, end_time=end_time)
    )
    assert payload["status"] == "timeout"
    assert time.time() >= end_time
    assert lookups.count > 1
    assert fake_jogg.count() == 0


@pytest.mark.asyncio
async def test_connection_without_key_is_an_error_event(fake_jogg, set_conn):
    set_conn("jogg_nokey", fake_jogg.url, key=None)
    (payload,) = await run_trigger(
        LipSyncTrigger(jogg_task_id="t", jogg_conn_id="jogg_nokey", poll_interval=0.01)
    )
    assert "'jogg_nokey' has no API key" in payload["message"]
    assert fake_jogg.count() == 0


@pytest.mark.asyncio
async def test_triggers_share_one_session_and_release_it(jogg_conn):
    ids = [new_task(jogg_conn) for _ in range(5)]
    for task_id in ids:
        jogg_conn.set_task(task_id, "processing")
    runs = [
        asyncio.ensure_future(run_trigger(LipSyncTrigger(jogg_task_id=t, poll_interval=0.02))) for t in ids
    ]
    while jogg_conn.count(path=STATUS) < 40:
        await asyncio.sleep(0.02)
    shared = registries.aiohttp_leases()
    assert list(shared) == [jogg_conn.url]  # one session for every trigger on this loop and base URL
    session, users = shared[jogg_conn.url]
    # the account's one poll scheduler holds the lease for all five waits
    schedulers = registries.poll_schedulers()
    assert len(schedulers) == 1
    assert users == 1
    scheduler = next(iter(schedulers.values()))
    assert scheduler.client._session is session
    assert scheduler._waits == 5
    # and reused across polls: forty polls of five tasks came over a handful of kept-alive connections
    polls = [r for r in jogg_conn.requests if r.path.startswith(STATUS)]
    assert len({r.client_port for r in polls}) <= len(ids) < len(polls)
    for task_id in ids:
        jogg_conn.set_task(task_id, "success")
    results = await asyncio.gather(*runs)
    assert [r[0]["status"] for r in results] == ["success"] * 5
    assert session.closed  # the last user out closed it
    assert not registries.poll_schedulers()
    assert not scheduler._lanes  # no task of the scheduler outlives its waits
    assert jogg_conn.url not in registries.aiohttp_leases()


@pytest.mark.asyncio
async def test_cancellation_propagates_and_releases_the_session(jogg_conn):
    task_id = new_task(jogg_conn)
    jogg_conn.set_task(task_id, "processing")
    run = asyncio.ensure_future(run_trigger(LipSyncTrigger(jogg_task_id=task_id, poll_interval=0.02)))
    while jogg_conn.count(path=STATUS) < 2:
        await asyncio.sleep(0.02)
    run.cancel()
    with pytest.raises(asyncio.CancelledError):
        await run
    assert jogg_conn.url not in registries.aiohttp_leases()


@pytest.mark.asyncio
async def test_a_timeout_during_an_outage_names_what_the_polls_met(jogg_conn):
    task_id = new_task(jogg_conn)
    jogg_conn.set_task(task_id, "processing")
    jogg_conn.add_fault(Fault("status", status=503, path=STATUS, times=1000))
    end_time = time.time() + 0.6
    trigger = LipSyncTrigger(jogg_task_id=task_id, poll_interval=0.05, end_time=end_time)
    (payload,) = await run_trigger(trigger)
    event = parse_event(payload)
    assert event.status is EventStatus.TIMEOUT
    assert "status polls failed" in event.message
    assert "503" in event.message
    # a plain timeout (the task just took too long) says nothing of failures
    jogg_conn.clear_faults()
    slow = LipSyncTrigger(jogg_task_id=task_id, poll_interval=0.05, end_time=time.time() + 0.4)
    (payload,) = await run_trigger(slow)
    assert payload["status"] == "timeout"
    assert "failed" not in payload["message"]
