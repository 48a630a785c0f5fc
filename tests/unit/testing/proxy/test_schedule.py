"""The schedule: steps in order, ended by their count, their time or a heal."""

from __future__ import annotations

import asyncio

import pytest
import requests

from airflow_provider_jogg.testing import ProxyFault
from airflow_provider_jogg.testing.proxy.schedule import FaultSchedule
from tests.unit.testing.proxy.support import HEADERS, WHOAMI, read_exactly, read_to_end, send_request


def test_schedule_runs_its_steps_in_order_then_passes(server, proxy):
    proxy.schedule(ProxyFault("pass", times=2), ProxyFault("reset", times=1), ProxyFault("stall", seconds=60))
    outcomes = []
    for _ in range(3):
        try:
            outcomes.append(requests.get(proxy.url + WHOAMI, headers=HEADERS).status_code)
        except requests.ConnectionError:
            outcomes.append("reset")
    assert outcomes == [200, 200, "reset"]
    assert proxy.fault == ProxyFault("stall", seconds=60)
    proxy.heal()
    assert proxy.fault is None
    assert requests.get(proxy.url + WHOAMI, headers=HEADERS).status_code == 200
    assert proxy.stats.resets == 1


def test_a_used_up_stall_still_holds_its_answer_until_healed(server, proxy):
    proxy.inject("stall", after_bytes=5, times=1)
    with send_request(proxy) as held:
        read_exactly(held, 5)
        # the next request passes: the step is used up ...
        assert requests.get(proxy.url + WHOAMI, headers=HEADERS).json()["code"] == 0
        assert proxy.stats.stalls == 1
        # ... but the first answer stays held until the heal
        (stalled,) = [c for c in proxy.connections if c.fault == "stall"]
        assert stalled.closed_at is None
        proxy.heal()
        assert read_to_end(held) == b""


def test_a_timed_stall_lets_go_by_itself(server, proxy):
    proxy.inject("stall", after_bytes=5, seconds=2)
    with send_request(proxy) as sock:
        read_exactly(sock, 5)
        assert read_to_end(sock) == b""  # closed when the step's time is up
    assert proxy.stats.stalls == 1
    assert proxy.fault is None
    assert requests.get(proxy.url + WHOAMI, headers=HEADERS).json()["code"] == 0


class Changes:
    """The ``on_change`` of a schedule under test: the faults of the steps that started, in order."""

    def __init__(self) -> None:
        self.queue: asyncio.Queue[ProxyFault | None] = asyncio.Queue()

    async def __call__(self, fault: ProxyFault | None) -> None:
        await self.queue.put(fault)

    async def next(self) -> ProxyFault | None:
        """The next step that starts (steps started after a step ran out: in a task of their own)."""
        return await self.queue.get()


@pytest.mark.asyncio
async def test_the_schedule_reports_each_step_that_starts():
    changes = Changes()
    schedule = FaultSchedule(changes)
    first, second = ProxyFault("pass", times=1), ProxyFault("refuse", seconds=60)
    await schedule.replace([first, second])
    assert await changes.next() == first
    assert schedule.head == first
    schedule.consume(schedule.current())  # its one response
    assert await changes.next() == second  # the listener hears of the refusal
    assert schedule.head == second
    await schedule.replace([])
    assert await changes.next() is None
    assert schedule.current() is None
    await schedule.close()


@pytest.mark.asyncio
async def test_a_used_up_step_keeps_holding_until_the_schedule_is_replaced():
    changes = Changes()
    schedule = FaultSchedule(changes)
    await schedule.replace([ProxyFault("stall", times=1)])
    await changes.next()
    stall = schedule.current()
    schedule.consume(stall)
    assert await changes.next() is None  # used up: pass-through for later responses ...
    assert not stall.active
    assert not stall.released.is_set()  # ... but the response it stalled stays held
    await schedule.replace([ProxyFault("reset")])
    assert stall.released.is_set()  # a new schedule (a heal too) lets it go


@pytest.mark.asyncio
async def test_a_timed_step_ends_by_itself_and_lets_go():
    changes = Changes()
    schedule = FaultSchedule(changes)
    await schedule.replace([ProxyFault("stall", seconds=0.05), ProxyFault("reset", times=1)])
    await changes.next()
    stall = schedule.current()
    assert await changes.next() == ProxyFault("reset", times=1)  # its time is up: the next step
    assert stall.released.is_set()
    assert schedule.current().timer is None  # the reset step has no time limit
    await schedule.close()
    assert schedule.head is None
