"""Many waits on one account share a rate limit, back off together on 429, and do not poll in lockstep."""

from __future__ import annotations

import asyncio
import itertools
import statistics
import time

import pytest

from airflow_provider_jogg import protocol
from airflow_provider_jogg import throttle as throttle_module
from airflow_provider_jogg.connection import config_for_connection
from airflow_provider_jogg.hooks import async_client
from airflow_provider_jogg.protocol import STATUS_PATH
from airflow_provider_jogg.registries import account_throttle
from airflow_provider_jogg.testing import Fault
from airflow_provider_jogg.throttle import AccountThrottle
from airflow_provider_jogg.triggers import polling
from airflow_provider_jogg.triggers.lip_sync import LipSyncTrigger
from tests.unit.hooks.support import step_wall_clock

STATUS = STATUS_PATH.format(task_id="")


class FakeClock:
    """A monotonic clock the test moves by hand."""

    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def reservations_at(throttle: AccountThrottle, clock: FakeClock, times: list[float]) -> list[float]:
    delays = []
    for moment in times:
        clock.now = moment
        delays.append(throttle.reserve())
    return delays


def test_reservations_are_spaced_and_in_order():
    clock = FakeClock(100.0)
    throttle = AccountThrottle(rate=10, clock=clock)
    delays = [throttle.reserve() for _ in range(5)]
    assert delays == pytest.approx([0.0, 0.1, 0.2, 0.3, 0.4])
    # later callers queue behind earlier ones; an idle account sends at once
    assert reservations_at(throttle, clock, [100.05]) == pytest.approx([0.45])
    assert reservations_at(throttle, clock, [200.0]) == [0.0]


def test_polls_due_together_go_out_together_up_to_a_tenth_of_a_second_of_rate():
    clock = FakeClock(50.0)
    throttle = AccountThrottle(rate=100, clock=clock)
    delays = [throttle.reserve() for _ in range(30)]
    # a batch of ten (0.1 s x 100 req/s) is sent at once, the rest queue 1/rate apart in call order
    assert delays[:10] == [0.0] * 10
    assert delays[10:] == pytest.approx([0.01 * k for k in range(1, 21)])
    # a steady stream never beats the rate: any one second holds at most rate x 1.1 sends
    throttle = AccountThrottle(rate=100, clock=clock)
    asks = [t / 1000 for t in range(0, 3000, 2)]  # asks at 500/s
    sends = [t + d for t, d in zip(asks, reservations_at(throttle, clock, asks), strict=True)]
    assert max(sum(1 for s in sends if start <= s < start + 1) for start in sends) <= 110


def test_unlimited_throttle_only_waits_for_retry_after():
    clock = FakeClock(10.0)
    throttle = AccountThrottle(rate=0, clock=clock)
    assert [throttle.reserve() for _ in range(3)] == [0.0, 0.0, 0.0]
    throttle.close_for(2.5)
    assert throttle.remaining() == pytest.approx(2.5)
    assert throttle.reserve() == pytest.approx(2.5)
    clock.now = 13.0
    assert throttle.remaining() == 0.0
    assert throttle.reserve() == 0.0


def test_the_throttle_never_reads_the_wall_clock(monkeypatch):
    # a wall clock stepped back an hour (NTP, a resumed VM) must not hold requests for an hour,
    # nor one stepped forward undercut a Retry-After: the throttle keeps its own monotonic time
    clock = step_wall_clock(monkeypatch, throttle_module)
    throttle = AccountThrottle(rate=10)
    throttle.reserve()
    throttle.close_for(0.5)
    for step in (-3600.0, 3600.0):
        clock.step = step
        assert 0.3 < throttle.remaining() <= 0.5
        assert 0.3 < throttle.reserve() <= 0.7


@pytest.mark.parametrize(
    ("rates", "expected"),
    [
        ((2.0, 100.0), 2.0),
        ((100.0, 2.0), 2.0),
        ((2.0, 0.0), 2.0),
        ((0.0, 5.0), 5.0),
        ((0.0, 0.0), 0.0),
    ],
    ids=["low-then-high", "high-then-low", "limit-then-unlimited", "unlimited-then-limit", "unlimited"],
)
def test_the_lowest_rate_of_an_account_wins(rates, expected):
    url = f"http://127.0.0.1:1/{'-'.join(map(str, rates))}"
    throttles = [account_throttle(url, "acct", rate) for rate in rates]
    assert throttles[0] is throttles[1]
    assert throttles[0].rate == expected
    # another account keeps its own limit
    assert account_throttle(url, "other", 50.0).rate == 50.0


def polls_by_task(server) -> dict[str, list[float]]:
    times: dict[str, list[float]] = {}
    for r in server.requests:
        if r.path.startswith(STATUS):
            times.setdefault(r.path.rsplit("/", 1)[1], []).append(r.time)
    return times


async def wait_for_polls(server, count: int) -> None:
    while server.count(path=STATUS) < count:
        await asyncio.sleep(0.02)


@pytest.mark.asyncio
async def test_many_triggers_stay_under_the_rate_and_none_starves(fake_jogg, set_conn):
    rate, n = 20, 30
    set_conn("jogg_rl", fake_jogg.url, max_requests_per_second=rate)
    ids = [fake_jogg.add_task("https://m.example/v.mp4", "https://m.example/a.mp3") for _ in range(n)]
    for task_id in ids:
        fake_jogg.set_task(task_id, "processing")
    runs = [
        asyncio.ensure_future(
            LipSyncTrigger(jogg_task_id=t, jogg_conn_id="jogg_rl", poll_interval=0.01).run().__anext__()
        )
        for t in ids
    ]
    await wait_for_polls(fake_jogg, 3 * n)
    for run in runs:
        run.cancel()
    await asyncio.gather(*runs, return_exceptions=True)

    times = sorted(t for per_task in polls_by_task(fake_jogg).values() for t in per_task)
    # demand is n / 0.01 s = 3000 req/s; the throttle spaces requests 1/rate apart
    gaps = [b - a for a, b in itertools.pairwise(times)]
    assert statistics.median(gaps) >= 0.8 / rate
    # over the run the rate holds; a stalled event loop may bunch a few sends, never many
    assert (len(times) - 1) / (times[-1] - times[0]) <= rate * 1.05
    in_any_second = max(sum(1 for t in times if start <= t < start + 1) for start in times)
    assert in_any_second <= rate * 1.5
    # every task got its turn again and again: nobody starves
    per_task = polls_by_task(fake_jogg)
    assert set(per_task) == set(ids)
    assert min(len(v) for v in per_task.values()) >= 2
    assert fake_jogg.count_status(429) == 0


@pytest.mark.asyncio
async def test_a_429_backs_every_wait_off(fake_jogg, set_conn):
    set_conn("jogg_429", fake_jogg.url, max_requests_per_second=0)
    ids = [fake_jogg.add_task("https://m.example/v.mp4", "https://m.example/a.mp3") for _ in range(5)]
    for task_id in ids:
        fake_jogg.set_task(task_id, "processing")
    fake_jogg.add_fault(Fault("status", status=429, path=STATUS, retry_after="1", times=1))
    runs = [
        asyncio.ensure_future(
            LipSyncTrigger(jogg_task_id=t, jogg_conn_id="jogg_429", poll_interval=0.05).run().__anext__()
        )
        for t in ids
    ]
    while fake_jogg.count_status(429) == 0:
        await asyncio.sleep(0.02)
    await wait_for_polls(fake_jogg, 20)
    for run in runs:
        run.cancel()
    await asyncio.gather(*runs, return_exceptions=True)

    requests = [r for r in fake_jogg.requests if r.path.startswith(STATUS)]
    limited = next(r for r in requests if r.status == 429)
    after = [r for r in requests if r.time > limited.time]
    assert after, "the waits went on after the 429"
    # Within Retry-After the server may still see requests that were already on their way when the
    # 429 was answered (at most one per wait); no wait sends a new one: without the shared throttle
    # each would poll ~20 times in that second (interval 0.05 s)
    within = [r.path for r in after if r.time - limited.time < 1.0]
    assert len(within) == len(set(within)) <= len(ids) - 1
    assert max(r.time for r in after) - limited.time >= 1.0


@pytest.mark.asyncio
async def test_first_polls_are_spread_over_an_interval(fake_jogg, set_conn):
    set_conn("jogg_spread", fake_jogg.url, max_requests_per_second=0)
    ids = [fake_jogg.add_task("https://m.example/v.mp4", "https://m.example/a.mp3") for _ in range(40)]
    for task_id in ids:
        fake_jogg.set_task(task_id, "processing")
    loop = asyncio.get_running_loop()
    started = loop.time()
    wall_start = time.time()
    runs = [
        asyncio.ensure_future(
            LipSyncTrigger(jogg_task_id=t, jogg_conn_id="jogg_spread", poll_interval=1.0).run().__anext__()
        )
        for t in ids
    ]
    await wait_for_polls(fake_jogg, len(ids))
    while len(polls_by_task(fake_jogg)) < len(ids) and loop.time() - started < 5:
        await asyncio.sleep(0.02)
    for run in runs:
        run.cancel()
    await asyncio.gather(*runs, return_exceptions=True)

    first = sorted(min(v) - wall_start for v in polls_by_task(fake_jogg).values())
    assert len(first) == len(ids)
    assert first[0] >= 0.45  # no first poll right after deferring: the sensor has just checked
    assert first[-1] - first[0] >= 0.5  # spread, not in lockstep


@pytest.mark.asyncio
@pytest.mark.parametrize("step", [-3600.0, 3600.0], ids=["stepped-back", "stepped-forward"])
async def test_a_stepped_wall_clock_neither_stalls_the_waits_nor_undercuts_retry_after(
    fake_jogg, set_conn, monkeypatch, step
):
    set_conn("jogg_clock", fake_jogg.url, max_requests_per_second=0)
    clock = step_wall_clock(monkeypatch, protocol, throttle_module, async_client, polling)
    ids = [fake_jogg.add_task("https://m.example/v.mp4", "https://m.example/a.mp3") for _ in range(3)]
    for task_id in ids:
        fake_jogg.set_task(task_id, "processing")
    fake_jogg.add_fault(Fault("status", status=429, path=STATUS, retry_after="1", times=1))
    throttle = (await config_for_connection("jogg_clock")).throttle()

    def start(task_id: str) -> asyncio.Future:
        trigger = LipSyncTrigger(jogg_task_id=task_id, jogg_conn_id="jogg_clock", poll_interval=0.05)
        return asyncio.ensure_future(trigger.run().__anext__())

    runs = [start(ids[0])]  # its first poll gets the 429, which closes the account for 1 s
    while throttle.remaining() == 0:
        await asyncio.sleep(0.01)
    clock.step = step  # NTP steps the wall clock during the Retry-After
    runs += [start(t) for t in ids[1:]]  # waits that start now must wait for the account to open
    # stepped back, a wall-clock throttle would keep the account closed for an hour: no poll would come
    await wait_for_polls(fake_jogg, 10)
    for run in runs:
        run.cancel()
    await asyncio.gather(*runs, return_exceptions=True)

    requests = [r for r in fake_jogg.requests if r.path.startswith(STATUS)]
    assert requests[0].status == 429
    # stepped forward, a wall-clock throttle would reopen at once: by the server's clock, no poll
    # comes within the Retry-After (nothing else was on its way when the 429 was answered)
    assert min(r.time for r in requests[1:]) - requests[0].time >= 1.0
    assert {r.path.rsplit("/", 1)[1] for r in requests} == set(ids)  # every wait polled


def test_the_wait_for_a_slot_asks_again_while_a_retry_after_holds():
    clock = FakeClock(100.0)
    throttle = AccountThrottle(rate=0, clock=clock)
    assert list(throttle.waits_before_send()) == []  # open, no limit: send at once, nothing asked
    throttle.close_for(2.0)
    waits = throttle.waits_before_send()
    assert next(waits) == pytest.approx(2.0)  # the 429's Retry-After
    clock.now = 101.0  # the caller slept less than asked (woken early): the account is still closed
    assert next(waits) == pytest.approx(1.0)
    clock.now = 102.0
    assert list(waits) == []  # open again: the request goes out


def test_the_wait_for_a_slot_follows_the_rate():
    clock = FakeClock(100.0)
    throttle = AccountThrottle(rate=1, clock=clock)
    assert list(throttle.waits_before_send()) == []  # the first one is free
    assert list(throttle.waits_before_send()) == [pytest.approx(1.0)]  # the next one a second later
