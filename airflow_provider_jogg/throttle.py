"""The rate at which one Jogg account is asked: :class:`AccountThrottle`, and the one wait for a slot."""

from __future__ import annotations

import math
import threading
import time
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator


#: the rate limit lets this many seconds' worth of requests go out at once (at least one request)
THROTTLE_BURST_SECONDS = 0.1


class AccountThrottle:
    """
    When the next request to one Jogg account may be sent: a process-wide rate limit and the
    account's ``Retry-After``, shared by every caller in the process (hook instances, pokes and
    all triggers in a triggerer) that uses the same base URL and key.

    Requests reserve send times in call order (a generic cell rate algorithm): ``1 / rate``
    seconds apart on average, with bursts of up to :data:`THROTTLE_BURST_SECONDS` x ``rate``
    requests sent at once, so polls that fall due together go out together while any second
    holds at most ``rate`` x (1 + :data:`THROTTLE_BURST_SECONDS`) requests. Thousands of waits
    share the rate fairly: with N waits, rate R and poll interval P each task is polled about every
    ``max(P, N / R)`` seconds and none starves. A 429 closes the account until its ``Retry-After``
    has passed, for every caller at once.

    All times are on the monotonic clock (``clock``), never the wall clock: a wall clock stepped
    back (NTP, a VM resumed) would otherwise hold every request for as long as it was stepped, and
    one stepped forward would undercut a ``Retry-After``. Callers ask for the wait with
    :meth:`reserve` and :meth:`remaining` and pass no time of their own, so clocks cannot be mixed.

    :param rate: requests per second; 0 or less disables the limit
    :param clock: seconds on a monotonic clock (``time.monotonic``; a fake one in tests)
    """

    __slots__ = ("_clock", "_lock", "_next_slot", "open_at", "rate")

    def __init__(self, rate: float = 0.0, clock: Callable[[], float] = time.monotonic) -> None:
        self.rate = rate
        #: when (on ``clock``) the account opens again after a 429
        self.open_at = -math.inf
        self._next_slot = -math.inf
        self._clock = clock
        self._lock = threading.Lock()

    def reserve(self) -> float:
        """Reserve the next send time; returns the seconds to wait before sending (0 to send now)."""
        with self._lock:
            now = self._clock()
            slot = max(now, self.open_at)
            if self.rate > 0:
                period = 1.0 / self.rate
                theoretical = max(self._next_slot, slot)
                slot = max(slot, theoretical - max(THROTTLE_BURST_SECONDS - period, 0.0))
                self._next_slot = theoretical + period
            return slot - now

    def close_for(self, seconds: float) -> None:
        """Nobody on this account sends anything for ``seconds`` (a 429's ``Retry-After``)."""
        with self._lock:
            self.open_at = max(self.open_at, self._clock() + seconds)

    def remaining(self) -> float:
        """Seconds until the account is open again after a 429 (0 when open)."""
        return max(self.open_at - self._clock(), 0.0)

    def limit(self, rate: float) -> None:
        """
        Apply one connection's rate: the lowest real limit wins (0 or less, "no limit", never
        replaces a real one), so a connection that allows more cannot lift another's limit.
        """
        with self._lock:
            if rate > 0 and (self.rate <= 0 or rate < self.rate):
                self.rate = rate

    def waits_before_send(self) -> Iterator[float]:
        """
        The one "wait for a slot" of every caller (the sync hook sleeps, the async client awaits):
        the seconds to wait for the slot this reserves, then again while a 429's ``Retry-After``
        keeps the account closed. Nothing is yielded when the request may go out at once::

            for delay in throttle.waits_before_send():
                time.sleep(delay)
        """
        while True:
            delay = self.reserve()
            if delay <= 0:  # the slot is now, so the account is open too: nothing more to ask
                return
            yield delay
            if self.remaining() <= 0:
                return
