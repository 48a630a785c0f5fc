"""
The objects one process shares between callers, each kept in one registry here.

- an account's :class:`~airflow_provider_jogg.throttle.AccountThrottle` (per base URL and key
  fingerprint): every hook, poke and trigger on the account takes its turn from it;
- a worker's ``requests`` session (per process, base URL and key): keep-alive across calls;
- an event loop's ``aiohttp`` session (per base URL, leased and given back: the last user closes it);
- an event loop's poll scheduler (per account): every wait of a triggerer on that account.

Registries hold what the owners build (a factory is passed in), so this module imports no HTTP
client. Keys carry a key fingerprint, never the key.
"""

from __future__ import annotations

import asyncio
import os
import threading
import weakref
from typing import TYPE_CHECKING, Any, TypeVar

from airflow_provider_jogg.throttle import AccountThrottle

if TYPE_CHECKING:
    from collections.abc import Callable, Hashable

T = TypeVar("T")

_LOCK = threading.Lock()
_THROTTLES: dict[tuple[str, str], AccountThrottle] = {}
_REQUESTS_SESSIONS: dict[tuple[int, str, str], Any] = {}


class _Lease:
    __slots__ = ("session", "users")

    def __init__(self, session: Any) -> None:
        self.session = session
        self.users = 0


_AIOHTTP_SESSIONS: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, dict[str, _Lease]] = (
    weakref.WeakKeyDictionary()
)
_POLL_SCHEDULERS: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, dict[Hashable, Any]] = (
    weakref.WeakKeyDictionary()
)


# --- throttles: per process and account ---
def account_throttle(base_url: str, key_id: str, rate: float) -> AccountThrottle:
    """
    The process-wide throttle for one account (``key_id`` is a fingerprint, never the key).

    Every connection to the same account shares it, at the lowest rate any of them has set in this
    process (see :meth:`AccountThrottle.limit`): a limit configured for the account holds however
    many connections use it. Raising a connection's limit takes effect when the process restarts.
    """
    throttle = _THROTTLES.get((base_url, key_id))
    if throttle is None:
        with _LOCK:
            throttle = _THROTTLES.setdefault((base_url, key_id), AccountThrottle(rate))
    throttle.limit(rate)
    return throttle


def forget_throttles() -> None:
    """Drop every throttle (a test starts from an open account at its own rate)."""
    with _LOCK:
        _THROTTLES.clear()


# --- requests sessions: per worker process and account ---
def requests_session(base_url: str, key_id: str, create: Callable[[], T]) -> T:
    """One keep-alive session per worker process and account (keyed by pid: forks get their own)."""
    key = (os.getpid(), base_url, key_id)
    session = _REQUESTS_SESSIONS.get(key)
    if session is None:
        with _LOCK:
            session = _REQUESTS_SESSIONS.get(key)
            if session is None:
                session = _REQUESTS_SESSIONS[key] = create()
    return session


# --- aiohttp sessions: per event loop and base URL, leased ---
def lease_aiohttp_session(base_url: str, create: Callable[[], T]) -> T:
    """
    Lease the session shared by every caller in the running loop for ``base_url``, whatever their
    key; ``create`` builds it when there is none (or it was closed). Give it back with
    :func:`return_aiohttp_session`.
    """
    per_loop = _AIOHTTP_SESSIONS.setdefault(asyncio.get_running_loop(), {})
    lease = per_loop.get(base_url)
    if lease is None or lease.session.closed:
        lease = per_loop[base_url] = _Lease(create())
    lease.users += 1
    return lease.session


async def return_aiohttp_session(base_url: str) -> None:
    """Give a lease back; the last user out closes the session."""
    per_loop = _AIOHTTP_SESSIONS.get(asyncio.get_running_loop(), {})
    lease = per_loop.get(base_url)
    if lease is None:
        return
    lease.users -= 1
    if lease.users <= 0:
        del per_loop[base_url]
        await lease.session.close()


def aiohttp_leases() -> dict[str, tuple[Any, int]]:
    """The running loop's shared sessions: ``{base_url: (session, users)}`` (a copy, to inspect)."""
    per_loop = _AIOHTTP_SESSIONS.get(asyncio.get_running_loop(), {})
    return {url: (lease.session, lease.users) for url, lease in per_loop.items()}


# --- poll schedulers: per event loop and account ---
def poll_scheduler(account: Hashable, create: Callable[[], T]) -> T:
    """The running loop's poll scheduler for ``account`` (its settings); ``create`` builds it on first use."""
    per_loop = _POLL_SCHEDULERS.setdefault(asyncio.get_running_loop(), {})
    scheduler = per_loop.get(account)
    if scheduler is None:
        scheduler = per_loop[account] = create()
    return scheduler


def forget_poll_scheduler(account: Hashable, scheduler: object, loop: asyncio.AbstractEventLoop) -> None:
    """Take a scheduler that closes out of the registry (a new wait then gets a fresh one)."""
    per_loop = _POLL_SCHEDULERS.get(loop, {})
    if per_loop.get(account) is scheduler:
        del per_loop[account]


def poll_schedulers() -> dict[Hashable, Any]:
    """The running loop's poll schedulers by account (a copy, to inspect)."""
    return dict(_POLL_SCHEDULERS.get(asyncio.get_running_loop(), {}))
