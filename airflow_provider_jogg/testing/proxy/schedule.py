"""The schedule of a :class:`~airflow_provider_jogg.testing.proxy.FaultProxy`: which step applies now.

A step ends after ``times`` responses, after ``seconds`` seconds, or when the schedule is replaced
(:meth:`FaultSchedule.replace`: ``inject``, ``schedule``, ``heal``); then the next step starts. What
the connections and the listener do with a step is theirs: a connection asks :meth:`FaultSchedule.current`
at each response and reports each response a step applied to (:meth:`FaultSchedule.consume`); the
listener is told whenever another step starts (the ``on_change`` callback). A stalled response
waits on its step's :attr:`Step.released`.
"""

from __future__ import annotations

import asyncio
import threading
from collections import deque
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable, Iterable

    from airflow_provider_jogg.testing.proxy.faults import ProxyFault

__all__ = ["FaultSchedule", "Step"]


class Step:
    """A schedule step while it is queued or running: what is left of it."""

    __slots__ = ("active", "fault", "released", "remaining", "timer")

    def __init__(self, fault: ProxyFault) -> None:
        self.fault = fault
        self.remaining = fault.times
        self.active = True
        self.timer: asyncio.TimerHandle | None = None
        #: Set when the responses this step holds back (stalls) are let go: its time is up, the
        #: schedule is replaced or the proxy stops.
        self.released = asyncio.Event()


class FaultSchedule:
    """The steps of a proxy's schedule, applied in order; with none left, pass-through.

    Everything but :attr:`head` runs in the proxy's event loop.

    :param on_change: awaited with the fault of the step that starts (``None``: pass-through) each
        time the running step changes
    """

    def __init__(self, on_change: Callable[[ProxyFault | None], Awaitable[None]]) -> None:
        self._on_change = on_change
        self._lock = threading.Lock()  # head is read from other threads
        self._steps: deque[Step] = deque()
        # used-up steps (``times`` reached) whose stalled responses stay held until the next replace
        self._spent: list[Step] = []
        self._switches: set[asyncio.Task[None]] = set()  # on_change calls after a step ran out

    @property
    def head(self) -> ProxyFault | None:
        """The fault applied now (``None``: pass-through); safe from any thread."""
        with self._lock:
            return self._steps[0].fault if self._steps else None

    def current(self) -> Step | None:
        """The step applied now (``None``: pass-through)."""
        return self._steps[0] if self._steps else None

    async def replace(self, faults: Iterable[ProxyFault]) -> None:
        """End every step, letting go of every held response, and run these steps from now."""
        self._clear()
        with self._lock:
            self._steps.extend(Step(fault) for fault in faults)
        await self._head_changed()

    async def close(self) -> None:
        """End every step, letting go of every held response, and wait for pending ``on_change`` calls."""
        self._clear()
        if self._switches:
            await asyncio.gather(*self._switches, return_exceptions=True)

    def consume(self, step: Step) -> None:
        """Count one response the step applied to; a step used up gives way to the next one."""
        if step.remaining is None:
            return
        step.remaining -= 1
        if step.remaining <= 0:
            # used up: later responses get the next step; responses it holds stay held
            self._pop(step, release=False)

    def _clear(self) -> None:
        with self._lock:
            steps, self._steps = list(self._steps), deque()
        spent, self._spent = self._spent, []
        # also the responses held by steps that already ran out: a heal lets every one of them go
        for step in (*steps, *spent):
            self._end(step, release=True)

    def _end(self, step: Step, *, release: bool) -> None:
        step.active = False
        if step.timer is not None:
            step.timer.cancel()
            step.timer = None
        if release:
            # held-back responses are let go by closing their connections: the client has timed
            # out by now or sees the connection close, never a late answer
            step.released.set()
        else:
            self._spent.append(step)

    async def _head_changed(self) -> None:
        head = self.current()
        if head is not None and head.fault.seconds is not None and head.timer is None:
            head.timer = asyncio.get_running_loop().call_later(head.fault.seconds, self._expire, head)
        await self._on_change(head.fault if head is not None else None)

    def _expire(self, step: Step) -> None:
        step.timer = None
        self._pop(step, release=True)  # its time is up: the fault heals

    def _pop(self, step: Step, *, release: bool) -> None:
        """End the running step and start the next one."""
        with self._lock:
            if not self._steps or self._steps[0] is not step:
                return
            self._steps.popleft()
        self._end(step, release=release)
        switch = asyncio.get_running_loop().create_task(self._head_changed())
        self._switches.add(switch)
        switch.add_done_callback(self._switches.discard)
