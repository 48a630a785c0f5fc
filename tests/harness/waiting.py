"""Free loopback ports and waiting on a condition, with the evidence in the failure message."""

from __future__ import annotations

import socket
import time
from typing import TYPE_CHECKING, Any, TypeVar

if TYPE_CHECKING:
    from collections.abc import Callable

T = TypeVar("T")


class HarnessError(AssertionError):
    """A wait ran out or a process misbehaved; the message carries the evidence (log tails)."""


def free_port() -> int:
    """A TCP port that was free on 127.0.0.1 a moment ago (bind port 0, read it, close)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_until(
    what: str,
    probe: Callable[[], T],
    *,
    timeout: float,
    interval: float = 0.5,
    diagnostics: Callable[[], str] | None = None,
) -> T:
    """Call ``probe`` until it returns something truthy and return that; after ``timeout`` seconds
    raise :class:`HarnessError` naming ``what``, the last value and ``diagnostics()``. A probe may
    raise to stop waiting at once (e.g. the process it waits for has exited)."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while True:
        last = probe()
        if last:
            return last
        if time.monotonic() >= deadline:
            extra = diagnostics() if diagnostics is not None else ""
            raise HarnessError(f"timed out after {timeout:.0f} s waiting for {what}; last: {last!r}\n{extra}")
        time.sleep(interval)
