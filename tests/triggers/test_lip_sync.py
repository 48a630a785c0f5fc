"""LipSyncTrigger against the fake Jogg server: one event per run, whatever the server does."""

from __future__ import annotations

import asyncio
import time

import pytest

from airflow_provider_jogg.hooks import jogg as jogg_hook
from airflow_provider_jogg.policy import EventStatus, parse_event
from airflow_provider_jogg.testing import FAILURE_MESSAGE, Fault
from airflow_provider_jogg.triggers import polling
from airflow_provider_jogg.triggers.lip_sync import LipSyncTrigger
from tests.conftest import TEST_API_KEY

STATUS = "/v2/lip_sync_video/"


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
async def test_slow_answer_beyond_timeout_is_retried(fake_jogg, set_conn):
    set_conn("jogg_slow", fake_jogg.url, timeout=0.2)
    task_id = new_task(fake_jogg)
    fake_jogg.add_fault(Fault("slow", path=STATUS, delay=1.0, times=1))
    (payload,) = await run_trigger(
        LipSyncTrigger(jogg_task_id=task_id, jogg_conn_id="jogg_slow", poll_interval=0.02)
    )
    assert payload["status"] == "success"


@pytest.mark.asyncio
async def test_no_poll_and_no_event_before_not_before(jogg_conn):
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
    # an error that needs no request (no such connection) is not reported early either
    missing = LipSyncTrigger(jogg_task_id=task_id, jogg_conn_id="jogg_nowhere", not_before=time.time() + 0.5)
    (error,) = await run_trigger(missing)
    assert error["status"] == "error"
    assert time.time() >= missing.not_before


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
    ],
)
async def test_fatal_errors_end_with_one_error_event(fake_jogg, set_conn, setup, error_type, text):
    task_id = "00000000-0000-0000-0000-000000000000" if setup == "unknown-task" else new_task(fake_jogg)
    set_conn("jogg_t", fake_jogg.url, key="wrong-key" if setup == "bad-key" else TEST_API_KEY)
    if setup == "no-permission":
        fake_jogg.add_fault(Fault("business", path=STATUS, code=18025, msg="No permission", times=None))
    if setup == "no-data":
        fake_jogg.add_fault(Fault("envelope", path=STATUS, body='{"code": 0, "msg": "ok"}', times=None))
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


@pytest.mark.asyncio
async def test_missing_connection_is_an_error_event():
    (payload,) = await run_trigger(
        LipSyncTrigger(jogg_task_id="t", jogg_conn_id="jogg_nowhere", poll_interval=0.01)
    )
    event = parse_event(payload)
    assert event.status is EventStatus.ERROR
    assert "jogg_nowhere" in str(event.error)


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
    shared = jogg_hook._ASYNC_SESSIONS[asyncio.get_running_loop()]
    assert list(shared) == [jogg_conn.url]  # one session for every trigger on this loop and base URL
    session = shared[jogg_conn.url].session
    # the account's one poll scheduler holds the lease for all five waits
    schedulers = polling._SCHEDULERS[asyncio.get_running_loop()]
    assert len(schedulers) == 1
    assert shared[jogg_conn.url].users == 1
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
    assert not polling._SCHEDULERS[asyncio.get_running_loop()]
    assert not scheduler._lanes  # no task of the scheduler outlives its waits
    assert jogg_conn.url not in jogg_hook._ASYNC_SESSIONS.get(asyncio.get_running_loop(), {})


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
    assert jogg_conn.url not in jogg_hook._ASYNC_SESSIONS.get(asyncio.get_running_loop(), {})


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
