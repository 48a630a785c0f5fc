"""Benchmark-only triggers: the lower bound, the httpx reference, and the event-loop probe.

They run inside the real ``TriggerRunner`` exactly like the provider's and the peers' triggers
(same ``run_trigger``, same greenback portal, same housekeeping), so the difference between kinds
is only what each trigger does per poll.

* :class:`SharedAiohttpTrigger` -- the lower bound: one ``aiohttp.ClientSession`` per event loop,
  created once with the default headers (``x-api-key``, ``Accept``) and aiohttp's default
  connector; a poll is ``session.get(url)``, ``read()``, ``json.loads`` and one dict lookup. No
  Airflow connection, hook, retry or logging code in the poll path.
* :class:`SharedHttpxTrigger` -- the same with one shared ``httpx.AsyncClient`` (default limits).

Both poll on LipSyncTrigger's schedule by default (``schedule="spread"``: first poll after
U(0.5, 1.5) intervals, then interval x U(0.99, 1.01)), so that the comparison with it measures
the poll path and not the schedule; ``schedule="lockstep"`` (kind ``aiohttp_lockstep``) polls at
start and then exactly every interval, like HttpSensorTrigger and DbtCloudRunJobTrigger;
``schedule="tick"`` (kind ``aiohttp_tick``) is the spread schedule with every wake-up rounded up to
a 50 ms grid, so polls that are due close together share one event-loop iteration.
* :class:`IdleTrigger` -- never polls: the runner's own cost of holding N triggers.
* :class:`LoopProbeTrigger` -- sleeps ``period`` seconds in a loop and appends
  ``time.time() lag_seconds`` lines to a file: the event-loop lag every trigger sees.

Base URL and key come from ``BENCH_JOGG_URL`` and ``BENCH_JOGG_KEY``, read once per process.
"""

from __future__ import annotations

import asyncio
import json
import math
import os
import random
import time
from typing import Any

from airflow.triggers.base import BaseTrigger, TriggerEvent

_SESSIONS: dict[Any, Any] = {}


def _base() -> tuple[str, dict[str, str]]:
    url = os.environ["BENCH_JOGG_URL"].rstrip("/") + "/v2/lip_sync_video/"
    headers = {"x-api-key": os.environ.get("BENCH_JOGG_KEY", "bench-key"), "Accept": "application/json"}
    return url, headers


def _aiohttp_session() -> Any:
    loop = asyncio.get_running_loop()
    entry = _SESSIONS.get(("aiohttp", loop))
    if entry is None:
        import aiohttp

        prefix, headers = _base()
        entry = _SESSIONS[("aiohttp", loop)] = (aiohttp.ClientSession(headers=headers), prefix)
    return entry


def _httpx_client() -> Any:
    loop = asyncio.get_running_loop()
    entry = _SESSIONS.get(("httpx", loop))
    if entry is None:
        import httpx

        prefix, headers = _base()
        entry = _SESSIONS[("httpx", loop)] = (httpx.AsyncClient(headers=headers), prefix)
    return entry


class _Schedule:
    """When to poll. ``spread`` is LipSyncTrigger's schedule (first poll after U(0.5, 1.5) intervals,
    then interval x U(0.99, 1.01)), so the lower bound differs from it only in the
    poll path; ``lockstep`` polls at once, then every interval exactly (the peers' schedule)."""

    FIRST_SPREAD = 0.5
    JITTER = 0.01

    #: ``tick``: the spread schedule, with each wake-up rounded up to a multiple of this (seconds)
    TICK = 0.05

    def __init__(self, interval: float, schedule: str) -> None:
        self.interval = interval
        self.spread = schedule in ("spread", "tick")
        self.tick = schedule == "tick"

    def _align(self, delay: float) -> float:
        if not self.tick:
            return delay
        now = asyncio.get_running_loop().time()
        return math.ceil((now + delay) / self.TICK) * self.TICK - now

    def first(self) -> float:
        if self.spread:
            return self._align(self.interval * random.uniform(1 - self.FIRST_SPREAD, 1 + self.FIRST_SPREAD))
        return 0.0

    def next(self) -> float:
        if self.spread:
            return self._align(self.interval * random.uniform(1 - self.JITTER, 1 + self.JITTER))
        return self.interval


class SharedAiohttpTrigger(BaseTrigger):
    """Lower bound: poll the Jogg status route over one shared aiohttp session."""

    def __init__(self, status_id: str, poll_interval: float = 5.0, schedule: str = "spread") -> None:
        super().__init__()
        # not "task_id": BaseTrigger overwrites that with the Airflow task id
        self.status_id = status_id
        self.poll_interval = float(poll_interval)
        self.schedule = schedule

    def serialize(self) -> tuple[str, dict[str, Any]]:
        return (
            f"bench_triggers.{type(self).__name__}",
            {"status_id": self.status_id, "poll_interval": self.poll_interval, "schedule": self.schedule},
        )

    async def run(self):
        session, prefix = _aiohttp_session()
        url = prefix + self.status_id
        schedule = _Schedule(self.poll_interval, self.schedule)
        loads = json.loads
        await asyncio.sleep(schedule.first())
        while True:
            try:
                async with session.get(url) as resp:
                    body = await resp.read()
                data = loads(body)["data"]
                if data["status"] in ("success", "failed"):
                    yield TriggerEvent({"status": data["status"], "task_id": self.status_id})
                    return
            except Exception:  # a transient failure: poll again next interval
                pass
            await asyncio.sleep(schedule.next())


class SharedHttpxTrigger(SharedAiohttpTrigger):
    """Reference: poll the Jogg status route over one shared httpx.AsyncClient."""

    async def run(self):
        client, prefix = _httpx_client()
        url = prefix + self.status_id
        schedule = _Schedule(self.poll_interval, self.schedule)
        loads = json.loads
        await asyncio.sleep(schedule.first())
        while True:
            try:
                resp = await client.get(url)
                data = loads(resp.content)["data"]
                if data["status"] in ("success", "failed"):
                    yield TriggerEvent({"status": data["status"], "task_id": self.status_id})
                    return
            except Exception:
                pass
            await asyncio.sleep(schedule.next())


class IdleTrigger(BaseTrigger):
    """Waits forever and never polls: what N triggers cost the runner before any of them polls
    (Airflow's housekeeping: the per-trigger ``sleep(0)`` of ``cleanup_finished_triggers`` every
    second, the state sync, the probe)."""

    def __init__(self, status_id: str) -> None:
        super().__init__()
        self.status_id = status_id

    def serialize(self) -> tuple[str, dict[str, Any]]:
        return ("bench_triggers.IdleTrigger", {"status_id": self.status_id})

    async def run(self):
        await asyncio.get_running_loop().create_future()
        yield TriggerEvent({})  # pragma: no cover - never reached


class LoopProbeTrigger(BaseTrigger):
    """Measures event-loop lag: how late ``asyncio.sleep(period)`` wakes up."""

    def __init__(self, path: str, period: float = 0.05) -> None:
        super().__init__()
        self.path = path
        self.period = float(period)

    def serialize(self) -> tuple[str, dict[str, Any]]:
        return ("bench_triggers.LoopProbeTrigger", {"path": self.path, "period": self.period})

    async def run(self):
        period = self.period
        lines: list[str] = []
        last_flush = time.monotonic()
        with open(self.path, "a", buffering=1 << 16) as out:
            while True:
                start = time.monotonic()
                await asyncio.sleep(period)
                now = time.monotonic()
                lines.append(f"{time.time():.4f} {now - start - period:.6f}\n")
                if now - last_flush >= 0.5:
                    out.write("".join(lines))
                    out.flush()
                    lines.clear()
                    last_flush = now
        yield TriggerEvent({})  # pragma: no cover - never reached
