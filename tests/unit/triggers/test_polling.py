"""The poll scheduler: waits hold no timer, polls go out in batches from a few lanes, cadence holds."""

from __future__ import annotations

import asyncio
import contextvars
import time

import pytest

from airflow_provider_jogg import exceptions as exc
from airflow_provider_jogg import registries
from airflow_provider_jogg.connection import config_for_connection
from airflow_provider_jogg.protocol import STATUS_PATH
from airflow_provider_jogg.testing import Fault
from airflow_provider_jogg.triggers import polling
from airflow_provider_jogg.triggers.lip_sync import LipSyncTrigger
from airflow_provider_jogg.triggers.polling import FIRST_POLL_SPREAD, POLL_JITTER, PollScheduler
from airflow_provider_jogg.triggers.waits import NoteKind, Wait

STATUS = STATUS_PATH.format(task_id="")
#: an interval no test waits out: polls happen only when a test sends them
NEVER = 1000.0


def processing_tasks(server, n: int) -> list[str]:
    ids = [server.add_task("https://m.example/v.mp4", "https://m.example/a.mp3") for _ in range(n)]
    for task_id in ids:
        server.set_task(task_id, "processing")
    return ids


async def wait_for_polls(server, count: int) -> None:
    while server.count(path=STATUS) < count:
        await asyncio.sleep(0.02)


async def scheduler_for(conn_id: str) -> PollScheduler:
    return PollScheduler.for_config(await config_for_connection(conn_id))


@pytest.mark.asyncio
async def test_a_waiting_trigger_is_woken_only_when_there_is_news(jogg_conn, monkeypatch):
    (task_id,) = processing_tasks(jogg_conn, 1)
    notes: list[str] = []
    on_note = LipSyncTrigger._on_note

    def record(self, note, started):
        notes.append(note.kind)
        return on_note(self, note, started)

    monkeypatch.setattr(LipSyncTrigger, "_on_note", record)
    trigger = LipSyncTrigger(jogg_task_id=task_id, poll_interval=0.05)
    run = asyncio.ensure_future(trigger.run().__anext__())
    await wait_for_polls(jogg_conn, 8)
    # eight polls of an unchanged status: the trigger heard once (the first status), not per poll
    assert notes == [NoteKind.STATUS]
    jogg_conn.set_task(task_id, "success")
    event = await run
    assert event.payload["status"] == "success"
    assert notes == [NoteKind.STATUS, NoteKind.FINISHED]


@pytest.mark.asyncio
async def test_requests_in_flight_never_exceed_the_lanes(fake_jogg, set_conn, monkeypatch):
    monkeypatch.setattr(polling, "MAX_LANES", 3)
    set_conn("jogg_lanes", fake_jogg.url, max_requests_per_second=0)
    # every answer takes 50 ms, so requests of a batch overlap unless the lanes hold them back
    fake_jogg.add_fault(Fault("slow", path=STATUS, delay=0.05, times=10_000))
    ids = processing_tasks(fake_jogg, 20)
    scheduler = await scheduler_for("jogg_lanes")
    in_flight = peak = 0
    poll = scheduler.client.fetch_status

    async def counted(task_id):
        nonlocal in_flight, peak
        in_flight += 1
        peak = max(peak, in_flight)
        try:
            return await poll(task_id)
        finally:
            in_flight -= 1

    scheduler.client.fetch_status = counted  # type: ignore[method-assign]
    waits = [await scheduler.register(t, 0.05, None) for t in ids]
    await wait_for_polls(fake_jogg, 60)
    assert len(scheduler._lanes) == 3
    assert peak == 3  # the batch was spread over exactly the lanes there are
    polled = {r.path.rsplit("/", 1)[1] for r in fake_jogg.requests}
    assert polled == set(ids)  # and every task had its turn
    for wait in waits:
        await scheduler.unregister(wait)
    assert not scheduler._lanes
    assert fake_jogg.url not in registries.aiohttp_leases()


@pytest.mark.asyncio
async def test_lanes_do_not_carry_the_registering_triggers_context(jogg_conn):
    # Airflow routes a trigger's log lines by context variables bound in the trigger's task; a lane
    # serves every wait, so it must not run in the context of the trigger that happened to start it
    marker: contextvars.ContextVar[str] = contextvars.ContextVar("marker", default="none")
    (task_id,) = processing_tasks(jogg_conn, 1)
    scheduler = await scheduler_for("jogg_default")
    seen: list[str] = []
    poll = scheduler.client.fetch_status

    async def observed(task):
        seen.append(marker.get())
        return await poll(task)

    scheduler.client.fetch_status = observed  # type: ignore[method-assign]

    async def register() -> Wait:
        marker.set("trigger-1")
        return await scheduler.register(task_id, 0.05, None)

    wait = await asyncio.ensure_future(register())
    await wait_for_polls(jogg_conn, 2)
    await scheduler.unregister(wait)
    assert seen
    assert set(seen) == {"none"}


@pytest.mark.asyncio
async def test_cadence_holds_and_a_late_wait_restarts_spread(jogg_conn):
    (task_id,) = processing_tasks(jogg_conn, 1)
    scheduler = await scheduler_for("jogg_default")
    wait = await scheduler.register(task_id, NEVER, None)
    loop = asyncio.get_running_loop()
    try:
        first_due = wait.due
        assert NEVER * (1 - FIRST_POLL_SPREAD) <= first_due - loop.time() <= NEVER * (1 + FIRST_POLL_SPREAD)
        # polled on time: the next poll is due one interval (with jitter) after this one was due,
        # not after it was answered, so a wait keeps its cadence
        wait.due = due = loop.time()
        await scheduler._poll(wait)
        assert due + NEVER * (1 - POLL_JITTER) <= wait.due <= due + NEVER * (1 + POLL_JITTER)
        # polled more than half an interval late: start afresh, spread like a first poll
        wait.due = loop.time() - 0.6 * NEVER
        now = loop.time()
        await scheduler._poll(wait)
        assert now + NEVER * (1 - FIRST_POLL_SPREAD) <= wait.due
        assert wait.due <= loop.time() + NEVER * (1 + FIRST_POLL_SPREAD)
        assert jogg_conn.count(path=STATUS) == 2
    finally:
        await scheduler.unregister(wait)


@pytest.mark.asyncio
async def test_a_429_waits_its_retry_after_not_an_interval_and_pauses_the_account(fake_jogg, set_conn):
    set_conn("jogg_ra", fake_jogg.url, max_requests_per_second=0)
    first, other = processing_tasks(fake_jogg, 2)
    fake_jogg.add_fault(Fault("status", status=429, path=STATUS, retry_after="2", times=1))
    scheduler = await scheduler_for("jogg_ra")
    wait = await scheduler.register(first, NEVER, None)
    later = await scheduler.register(other, NEVER, None)
    loop = asyncio.get_running_loop()
    try:
        wait.due = loop.time()
        await scheduler._poll(wait)
        (note,) = wait.notes
        assert note.kind is NoteKind.RETRYING
        assert isinstance(note.error, exc.JoggRateLimitError)
        # retried right after Retry-After (plus backoff jitter), far sooner than the interval
        assert 2.0 <= wait.due - loop.time() <= 2.0 * 1.5
        assert scheduler.client.throttle.remaining() > 1.5
        # a batch falling due while the account is closed is held back, every wait with it
        scheduler._schedule(later, loop.time())
        scheduler._on_tick()
        assert not scheduler._ready
        assert scheduler._timer_at >= loop.time() + 1.5
        assert fake_jogg.count(path=STATUS) == 1
    finally:
        await scheduler.unregister(wait)
        await scheduler.unregister(later)


@pytest.mark.asyncio
async def test_a_bug_in_the_poll_path_fails_the_trigger_instead_of_stalling_it(jogg_conn):
    (task_id,) = processing_tasks(jogg_conn, 1)
    scheduler = await scheduler_for("jogg_default")

    async def broken(task):
        raise KeyError("unexpected")

    scheduler.client.fetch_status = broken  # type: ignore[method-assign]
    trigger = LipSyncTrigger(jogg_task_id=task_id, poll_interval=0.05)
    with pytest.raises(KeyError, match="unexpected"):
        await trigger.run().__anext__()
    # the failed wait left the scheduler, which closed down with it
    assert scheduler._waits == 0
    assert not registries.poll_schedulers()


@pytest.mark.asyncio
async def test_one_scheduler_per_account_and_loop(fake_jogg, set_conn):
    set_conn("jogg_a", fake_jogg.url, max_requests_per_second=0)
    set_conn("jogg_a_again", fake_jogg.url, max_requests_per_second=0)
    set_conn("jogg_b", fake_jogg.url, key="other-key", max_requests_per_second=0)
    a, a_again, b = [await scheduler_for(c) for c in ("jogg_a", "jogg_a_again", "jogg_b")]
    assert a is a_again  # two connections to one account share its scheduler and throttle
    assert b is not a
    assert b.client._headers["x-api-key"] == "other-key"


@pytest.mark.asyncio
async def test_timeout_fires_at_end_time_even_with_a_long_interval(jogg_conn):
    (task_id,) = processing_tasks(jogg_conn, 1)
    loop = asyncio.get_running_loop()
    started = loop.time()
    trigger = LipSyncTrigger(jogg_task_id=task_id, poll_interval=NEVER, end_time=time.time() + 0.3)
    event = await trigger.run().__anext__()
    assert event.payload["status"] == "timeout"
    assert loop.time() - started < NEVER / 10  # the deadline, not the next poll, ended the wait
    assert jogg_conn.count(path=STATUS) == 0
