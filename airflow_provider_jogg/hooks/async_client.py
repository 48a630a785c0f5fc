"""The async transport: one shared ``aiohttp`` session per event loop, and the lean status client.

Kept apart from :mod:`airflow_provider_jogg.hooks.jogg` so that a triggerer, which only polls, never
imports ``requests`` or ``tenacity``. What the answers mean, which failures are retried and how long
to wait is decided in :mod:`airflow_provider_jogg.policy`, shared with the sync path.
"""

from __future__ import annotations

import asyncio
import json
import weakref
from typing import TYPE_CHECKING, Any

import aiohttp

from airflow_provider_jogg import exceptions as exc
from airflow_provider_jogg._compat import aextra_dejson, aget_connection, amask_secret
from airflow_provider_jogg.policy import (
    STATUS_PATH,
    AccountThrottle,
    JoggConnectionConfig,
    LipSyncResult,
    parse_envelope,
    parse_lip_sync_result,
    redirect_refused,
)

if TYPE_CHECKING:
    from airflow.sdk import Connection

__all__ = ["AsyncJoggClient", "acquire_shared_session", "config_from_connection", "release_shared_session"]

#: connections one shared session keeps open to one host (aiohttp's default); the trigger's poll
#: scheduler never runs more requests than this at once, so requests never queue inside aiohttp
SESSION_CONNECTION_LIMIT = 100
#: what a request can fail with below the HTTP level
_TRANSPORT_ERRORS = (asyncio.TimeoutError, aiohttp.ClientError)


def config_from_connection(conn: Connection, extra: dict[str, Any] | None = None) -> JoggConnectionConfig:
    """Validate an Airflow connection into a :class:`JoggConnectionConfig`."""
    return JoggConnectionConfig.from_connection(
        conn.conn_id,
        host=conn.host,
        password=conn.password,
        port=conn.port,
        extra=conn.extra_dejson if extra is None else extra,
    )


def close_on_rate_limit(
    throttle: AccountThrottle, error: exc.JoggAPIError, config: JoggConnectionConfig
) -> None:
    """After a 429 every caller on the account waits, not only the one that saw it."""
    if isinstance(error, exc.JoggRateLimitError):
        throttle.close_for(error.retry_after if error.retry_after is not None else config.retry_backoff)


# --------------------------------------------------------------------------------------------------
# One session per event loop and base URL
# --------------------------------------------------------------------------------------------------
class _SharedSession:
    __slots__ = ("session", "users")

    def __init__(self, session: aiohttp.ClientSession) -> None:
        self.session = session
        self.users = 0


_ASYNC_SESSIONS: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, dict[str, _SharedSession]] = (
    weakref.WeakKeyDictionary()
)


def acquire_shared_session(base_url: str) -> aiohttp.ClientSession:
    """
    Lease the ``aiohttp`` session shared by every caller in this event loop for one base URL,
    whatever their API key (it keeps no cookies, so nothing of one account reaches another).

    One pooled keep-alive session for thousands of triggers is what keeps a poll cheap; a session per
    poll (new TCP connection each time) costs several times more CPU. The session is closed when its
    last user releases it (:func:`release_shared_session`), so no session outlives its users.
    """
    per_loop = _ASYNC_SESSIONS.setdefault(asyncio.get_running_loop(), {})
    shared = per_loop.get(base_url)
    if shared is None or shared.session.closed:
        connector = aiohttp.TCPConnector(limit=SESSION_CONNECTION_LIMIT, ttl_dns_cache=300)
        # the session is shared by every account (API key) on this base URL: it must keep no
        # per-account state, so no cookie jar (a gateway's cookie set for one key would go out with
        # the others). The API authenticates each request by its header; cookies serve it nothing
        session = aiohttp.ClientSession(connector=connector, cookie_jar=aiohttp.DummyCookieJar())
        # aiohttp silently re-sends an idempotent request once when a kept-alive connection drops;
        # the provider's retry policy (counted, backed off, Retry-After aware) must be the only one
        if hasattr(session, "_retry_connection"):
            session._retry_connection = False
        shared = per_loop[base_url] = _SharedSession(session)
    shared.users += 1
    return shared.session


async def release_shared_session(base_url: str) -> None:
    """Give a lease back; the last one out closes the session."""
    per_loop = _ASYNC_SESSIONS.get(asyncio.get_running_loop(), {})
    shared = per_loop.get(base_url)
    if shared is None:
        return
    shared.users -= 1
    if shared.users <= 0:
        del per_loop[base_url]
        await shared.session.close()


# --------------------------------------------------------------------------------------------------
# The client
# --------------------------------------------------------------------------------------------------
class AsyncJoggClient:
    """
    A lean async client for status polls: everything is resolved once, a poll is one request.

    Use it as an async context manager: it leases the event loop's shared session on entry and
    gives it back on exit::

        async with await AsyncJoggClient.for_connection("jogg_default") as client:
            result = await client.get_lip_sync_video(task_id)

    :param config: resolved connection settings
    """

    def __init__(self, config: JoggConnectionConfig) -> None:
        self.config = config
        self.throttle = config.throttle()
        self._headers = config.headers()
        self._timeout = aiohttp.ClientTimeout(total=config.timeout)
        self._status_prefix = config.url(STATUS_PATH.format(task_id=""))
        self._session: aiohttp.ClientSession | None = None

    async def __aenter__(self) -> AsyncJoggClient:
        if self._session is None:
            self._session = acquire_shared_session(self.config.base_url)
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        if self._session is not None:
            self._session = None
            await release_shared_session(self.config.base_url)

    @classmethod
    async def for_connection(cls, conn_id: str) -> AsyncJoggClient:
        """Resolve an Airflow connection without blocking the event loop."""
        return cls(await config_for_connection(conn_id))

    async def get_lip_sync_video(self, task_id: str) -> LipSyncResult:
        """One status request, no retry. Raises a :class:`JoggAPIError` subclass on any failure."""
        return parse_lip_sync_result(await self.poll(task_id), task_id)

    async def poll(self, task_id: str) -> dict[str, Any]:
        """
        One status request, no retry: the ``data`` object of a well-formed answer, unparsed.

        The common answer (HTTP 200, code 0, a ``data`` object with a string ``status``) takes a
        short path; anything else goes through :func:`~airflow_provider_jogg.policy.parse_envelope`
        and :func:`~airflow_provider_jogg.policy.parse_lip_sync_result`, which raise the error that
        says what went wrong.
        """
        throttle = self.throttle
        delay = throttle.reserve()
        if delay > 0:
            await self._wait_for_slot(delay)
        session = self._session
        if session is None:
            raise RuntimeError("AsyncJoggClient used outside 'async with'")
        try:
            # never follow a redirect: aiohttp would re-send x-api-key to whatever host it names
            async with session.get(
                self._status_prefix + task_id,
                headers=self._headers,
                timeout=self._timeout,
                allow_redirects=False,
            ) as resp:
                body = await resp.read()
                status = resp.status
                if status == 200:
                    try:
                        envelope = json.loads(body)
                        code = envelope["code"]
                        data = envelope["data"]
                        if type(code) is int and code == 0 and type(data["status"]) is str:
                            return data
                    except (ValueError, TypeError, LookupError):
                        pass
                retry_after = resp.headers.get("Retry-After")
                location = resp.headers.get("Location")
        except _TRANSPORT_ERRORS as error:
            raise self._transport_error(error, f"status of task {task_id}") from None
        what = f"status of task {task_id}"
        if 300 <= status < 400:
            raise redirect_refused(status, location, self.config.base_url, what)
        try:
            data = parse_envelope(status, body, retry_after=retry_after, what=what, task_id=task_id)
        except exc.JoggAPIError as error:
            close_on_rate_limit(throttle, error, self.config)
            raise
        parse_lip_sync_result(data, task_id)  # raises the precise error for a malformed 'data'
        return data

    async def request(
        self, method: str, url: str, *, what: str, task_id: str | None = None, json: Any = None
    ) -> Any:
        """One request, no retry; returns the answer's ``data``. Raises a :class:`JoggAPIError` subclass."""
        await self._wait_for_slot(self.throttle.reserve())
        if self._session is None:
            raise RuntimeError("AsyncJoggClient used outside 'async with'")
        try:
            async with self._session.request(
                method, url, headers=self._headers, timeout=self._timeout, json=json, allow_redirects=False
            ) as resp:
                body = await resp.read()
                status, retry_after = resp.status, resp.headers.get("Retry-After")
                location = resp.headers.get("Location")
        except _TRANSPORT_ERRORS as error:
            raise self._transport_error(error, what) from None
        if 300 <= status < 400:
            raise redirect_refused(status, location, self.config.base_url, what)
        try:
            return parse_envelope(status, body, retry_after=retry_after, what=what, task_id=task_id)
        except exc.JoggAPIError as error:
            close_on_rate_limit(self.throttle, error, self.config)
            raise

    async def _wait_for_slot(self, delay: float) -> None:
        """Wait ``delay`` (a reserved slot), and again while a ``Retry-After`` keeps the account closed."""
        throttle = self.throttle
        while True:
            if delay > 0:
                await asyncio.sleep(delay)
            if throttle.remaining() <= 0:
                return
            delay = throttle.reserve()

    def _transport_error(self, error: BaseException, what: str) -> exc.JoggConnectionError:
        if isinstance(error, asyncio.TimeoutError):
            return exc.JoggConnectionError(
                f"Jogg {what}: no complete answer within the {self.config.timeout:g} s timeout"
            )
        if isinstance(error, aiohttp.ClientConnectorError):
            return exc.JoggConnectionError(
                f"Jogg {what}: could not connect ({type(error).__name__})", request_sent=False
            )
        return exc.JoggConnectionError(
            f"Jogg {what}: the connection failed before a complete answer arrived ({type(error).__name__})"
        )


async def config_for_connection(conn_id: str) -> JoggConnectionConfig:
    """Look up and validate an Airflow connection without blocking the event loop; masks the key."""
    conn = await aget_connection(conn_id)
    config = config_from_connection(conn, extra=await aextra_dejson(conn))
    await amask_secret(config.api_key)
    return config
