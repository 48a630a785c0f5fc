"""
One poll scheduler per event loop and Jogg account: how thousands of waits in a triggerer stay cheap.

A plain trigger sleeps between polls in its own task: every poll costs a timer, a wake-up of the
trigger's task (in Airflow's triggerer through a greenback portal and a logging context) and an
event-loop iteration of its own. Here a waiting :class:`~airflow_provider_jogg.triggers.lip_sync.
LipSyncTrigger` holds no polling timer (only one for its deadline) and sleeps on one future for
its whole wait. The account's :class:`PollScheduler` keeps every wait in time buckets on a grid
of :data:`TICK` seconds of the loop clock, wakes once per bucket that holds due polls, and sends
them from a small set of worker tasks ("lanes", at most one per pooled connection) over the loop's
shared ``aiohttp`` session.
A trigger's task is woken only when there is something to say: its first status, a status
change, a retried failure to log, and the end of the wait.

Polls stay spread: the first comes after ``poll_interval`` times a factor in
``[1 - FIRST_POLL_SPREAD, 1 + FIRST_POLL_SPREAD]``, each next one ``poll_interval`` times a factor in
``[1 - POLL_JITTER, 1 + POLL_JITTER]`` after the previous one was due (not after it was answered, so
a wait keeps its cadence, and on average it is exactly ``poll_interval``). No poll goes out before
a wait's ``not_before`` (the deferral floor or a ``Retry-After`` the worker saw).
"""

from __future__ import annotations

import asyncio
import contextvars
import heapq
import math
import random
import time
from collections import deque
from typing import TYPE_CHECKING

from airflow_provider_jogg import exceptions as exc
from airflow_provider_jogg.hooks.async_client import SESSION_CONNECTION_LIMIT, AsyncJoggClient
from airflow_provider_jogg.registries import forget_poll_scheduler, poll_scheduler
from airflow_provider_jogg.results import parse_lip_sync_result
from airflow_provider_jogg.retry import is_retryable, poll_retry_delay
from airflow_provider_jogg.triggers.waits import Inbox, Note, NoteKind, Wait

if TYPE_CHECKING:
    from airflow_provider_jogg.connection import JoggConnectionConfig

#: seconds between the grid points at which due polls are sent together (less for short intervals)
TICK = 0.05
#: each poll is due ``poll_interval`` times a factor in [1 - this, 1 + this] after the previous one
POLL_JITTER = 0.01
#: the first poll comes after ``poll_interval`` times a factor in [1 - this, 1 + this]
FIRST_POLL_SPREAD = 0.5
#: most requests in flight at once per account and loop: the shared session's connection limit
MAX_LANES = SESSION_CONNECTION_LIMIT
#: a wait polled more than this fraction of an interval late restarts its cadence from now
_RESTART_LATENESS = 0.5


class PollScheduler:
    """
    Polls every waiting task of one account in one event loop.

    Get it with :meth:`for_config`, then :meth:`register` a wait, ``await wait.next_notes()`` until a
    note whose kind ends the wait arrives, and :meth:`unregister` the wait in a ``finally`` (also on
    cancellation). The scheduler leases the loop's shared session while it has waits and closes
    down (lanes, timer, lease) when the last one leaves.

    :param config: the account's resolved connection settings
    """

    def __init__(self, config: JoggConnectionConfig) -> None:
        self.config = config
        self.client = AsyncJoggClient(config)
        self.tick = TICK
        self._loop = asyncio.get_running_loop()
        self._waits = 0
        self._buckets: dict[float, list[Wait]] = {}
        self._bucket_times: list[float] = []  # heap of the keys of _buckets
        self._timer: asyncio.TimerHandle | None = None
        self._timer_at = math.inf
        self._ready: deque[Wait] = deque()
        self._lanes: set[asyncio.Task[None]] = set()
        self._idle: list[asyncio.Future[None]] = []
        self._closed = False

    # --- the registry ---
    @classmethod
    def for_config(cls, config: JoggConnectionConfig) -> PollScheduler:
        """The running loop's scheduler for this account (created on first use)."""
        return poll_scheduler(config, lambda: cls(config))

    async def register(
        self,
        task_id: str,
        interval: float,
        end_time: float | None,
        not_before: float | None = None,
        inbox: Inbox | None = None,
    ) -> Wait:
        """
        Start polling a task: first after ``interval`` x U(1 - spread, 1 + spread) seconds, and not
        before ``not_before`` (wall clock). At ``end_time`` (wall clock) the wait ends with a timeout,
        whatever is in flight and even while a ``Retry-After`` holds the account.
        """
        if self._closed:
            raise RuntimeError("PollScheduler used after it closed")
        if self._waits == 0:
            await self.client.__aenter__()
        self._waits += 1
        now = self._loop.time()
        deadline = None if end_time is None else now + (end_time - time.time())
        wait = Wait(task_id, interval, end_time, deadline, inbox)
        if interval / 10 < self.tick:
            self.tick = max(interval / 10, 0.001)
        first = interval * random.uniform(1 - FIRST_POLL_SPREAD, 1 + FIRST_POLL_SPREAD)
        floor = 0.0 if not_before is None else not_before - time.time()
        if first < floor:  # spread the waits that reach their floor together
            first = floor + interval * random.uniform(0, FIRST_POLL_SPREAD)
        if deadline is not None:
            # the deadline holds its own timer: a poll in flight, a lane waiting for a send slot or
            # an account closed by a Retry-After must not delay the timeout event
            wait.expiry = self._loop.call_at(deadline, self._expire, wait)
        self._schedule(wait, now + first)
        return wait

    @staticmethod
    def _expire(wait: Wait) -> None:
        wait.expiry = None
        if wait.active:
            # timed out; a timeout during an outage names what the polls kept failing with
            wait.end(Note(NoteKind.TIMED_OUT, failures=wait.failures, cause=wait.last_error))

    async def unregister(self, wait: Wait) -> None:
        """Stop polling a task (idempotent); the last wait out closes the scheduler down."""
        if not wait.active:
            return
        wait.active = False
        if wait.expiry is not None:
            wait.expiry.cancel()
            wait.expiry = None
        self._waits -= 1
        if self._waits > 0:
            return
        # nobody waits any more: leave the registry first, so new waits get a fresh scheduler
        forget_poll_scheduler(self.config, self, self._loop)
        self._closed = True
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self._buckets.clear()
        self._bucket_times.clear()
        self._ready.clear()
        lanes = list(self._lanes)
        for lane in lanes:
            lane.cancel()
        try:
            if lanes:
                await asyncio.gather(*lanes, return_exceptions=True)
        finally:
            await self.client.__aexit__(None, None, None)

    # --- time buckets ---
    def _schedule(self, wait: Wait, due: float) -> None:
        if wait.deadline is not None and due > wait.deadline:
            return  # no poll after the deadline: its timer ends the wait
        wait.due = due
        tick = self.tick
        key = math.ceil(due / tick) * tick
        bucket = self._buckets.get(key)
        if bucket is None:
            self._buckets[key] = [wait]
            heapq.heappush(self._bucket_times, key)
            if key < self._timer_at:
                self._arm(key)
        else:
            bucket.append(wait)

    def _arm(self, when: float) -> None:
        if self._timer is not None:
            self._timer.cancel()
        self._timer_at = when
        self._timer = self._loop.call_at(when, self._on_tick)

    def _on_tick(self) -> None:
        self._timer = None
        self._timer_at = math.inf
        if self._closed:
            return
        now = self._loop.time()
        closed_for = self.client.throttle.remaining()
        if closed_for > 0:  # a 429's Retry-After: nobody on this account polls until it passed
            self._arm(now + closed_for)
            return
        times, buckets, ready = self._bucket_times, self._buckets, self._ready
        horizon = now + 0.001
        while times and times[0] <= horizon:
            ready.extend(buckets.pop(heapq.heappop(times)))
        if times:
            self._arm(times[0])
        # wake idle lanes, start more up to the connection limit
        wanted = len(ready)
        idle = self._idle
        while wanted and idle:
            future = idle.pop()
            if not future.done():
                future.set_result(None)
                wanted -= 1
        while wanted and len(self._lanes) < MAX_LANES:
            self._start_lane()
            wanted -= 1

    # --- lanes ---
    def _start_lane(self) -> None:
        # an empty context: a lane serves every trigger, so it must not carry the logging context
        # (Airflow's trigger id) of the trigger whose registration happened to start it
        lane = contextvars.Context().run(self._loop.create_task, self._lane())
        self._lanes.add(lane)
        lane.add_done_callback(self._lanes.discard)

    async def _lane(self) -> None:
        ready, poll = self._ready, self._poll
        loop = self._loop
        while not self._closed:
            while ready:
                wait = ready.popleft()
                if wait.active and not wait.ended:
                    try:
                        await poll(wait)
                    except Exception as error:  # a bug must end this wait loudly, not stall it
                        wait.end(Note(NoteKind.CRASHED, crash=error))
            future = loop.create_future()
            self._idle.append(future)
            await future

    async def _poll(self, wait: Wait) -> None:
        try:
            data = await self.client.fetch_status(wait.task_id)
            raw = data["status"]
            # a status seen before needs nothing more; a new one is parsed and checked in full
            result = None if raw == wait.raw_status else parse_lip_sync_result(data, wait.task_id)
        except exc.JoggAPIError as error:
            if wait.active and not wait.ended:
                self._failed(wait, error)
            return
        if not wait.active or wait.ended:
            return
        wait.failures = 0
        wait.last_error = None
        if result is not None:
            wait.raw_status = raw
            if result.is_terminal:
                wait.end(Note(NoteKind.FINISHED, result=result))
                return
            wait.tell(Note(NoteKind.STATUS, status=result.status))
        interval = wait.interval
        now = self._loop.time()
        if now - wait.due > interval * _RESTART_LATENESS:
            # far behind (a long Retry-After, a throttled account): start afresh, spread like a first
            # poll, rather than catching up in a burst or resuming in lockstep with every other wait
            due = now + interval * random.uniform(1 - FIRST_POLL_SPREAD, 1 + FIRST_POLL_SPREAD)
        else:
            due = wait.due + interval * random.uniform(1 - POLL_JITTER, 1 + POLL_JITTER)
        self._schedule(wait, due)

    def _failed(self, wait: Wait, error: exc.JoggAPIError) -> None:
        if not is_retryable(error):
            wait.end(Note(NoteKind.ERROR, error=error))
            return
        wait.failures += 1
        wait.last_error = error
        delay = poll_retry_delay(error, wait.failures, self.config.retry_backoff, wait.interval)
        wait.tell(Note(NoteKind.RETRYING, error=error, next_in=delay, failures=wait.failures))
        self._schedule(wait, self._loop.time() + delay)
