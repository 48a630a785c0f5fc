"""The fake server's per-server rate limit: a token bucket that refuses ``/v2`` requests above it."""

from __future__ import annotations

import threading
import time

__all__ = ["TokenBucket"]


class TokenBucket:
    """Token bucket: capacity max(1, rate), refilled at ``rate`` tokens per second (thread-safe).

    The rate is given at each :meth:`admit`, so that a test may change the server's ``rate_limit``
    while it runs.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._tokens = 0.0
        self._bucket_at: float | None = None

    def admit(self, rate: float | None) -> bool:
        """Take a token; ``False`` when none is left (the request is refused). ``rate=None``: no limit."""
        if rate is None:
            return True
        now = time.monotonic()
        capacity = max(1.0, rate)
        with self._lock:
            if self._bucket_at is None:
                tokens = capacity
            else:
                tokens = min(capacity, self._tokens + (now - self._bucket_at) * rate)
            self._bucket_at = now
            if tokens >= 1.0:
                self._tokens = tokens - 1.0
                return True
            self._tokens = tokens
            return False

    def reset(self) -> None:
        """Refill the bucket: the next request starts a new one."""
        with self._lock:
            self._bucket_at = None
