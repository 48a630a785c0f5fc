"""AsyncJoggClient: the trigger's status polls over one shared ``aiohttp`` session per event loop.

Kept apart from :mod:`airflow_provider_jogg.hooks.jogg` so that a triggerer, which only polls, never
imports ``requests`` or ``tenacity``. What the answers mean is :mod:`airflow_provider_jogg.protocol`'s
business, which failures are retried :mod:`airflow_provider_jogg.retry`'s, shared with the sync path.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

import aiohttp

from airflow_provider_jogg import exceptions as exc
from airflow_provider_jogg.connection import JoggConnectionConfig, config_for_connection
from airflow_provider_jogg.protocol import STATUS_PATH, parse_envelope, redirect_refused
from airflow_provider_jogg.registries import lease_aiohttp_session, return_aiohttp_session
from airflow_provider_jogg.results import LipSyncResult, parse_lip_sync_result
from airflow_provider_jogg.retry import close_on_rate_limit

__all__ = ["AsyncJoggClient", "acquire_shared_session", "release_shared_session"]

#: connections one shared session keeps open to one host (aiohttp's default); the trigger's poll
#: scheduler never runs more requests than this at once, so requests never queue inside aiohttp
SESSION_CONNECTION_LIMIT = 100
#: what a request can fail with below the HTTP level
_TRANSPORT_ERRORS = (asyncio.TimeoutError, aiohttp.ClientError)


def _new_session() -> aiohttp.ClientSession:
    connector = aiohttp.TCPConnector(limit=SESSION_CONNECTION_LIMIT, ttl_dns_cache=300)
    # the session is shared by every account (API key) on this base URL: it must keep no
    # per-account state, so no cookie jar (a gateway's cookie set for one key would go out with
    # the others). The API authenticates each request by its header; cookies serve it nothing
    session = aiohttp.ClientSession(connector=connector, cookie_jar=aiohttp.DummyCookieJar())
    # aiohttp silently re-sends an idempotent request once when a kept-alive connection drops;
    # the provider's retry policy (counted, backed off, Retry-After aware) must be the only one
    if hasattr(session, "_retry_connection"):
        session._retry_connection = False
    return session


def acquire_shared_session(base_url: str) -> aiohttp.ClientSession:
    """
    Lease the ``aiohttp`` session shared by every caller in this event loop for one base URL,
    whatever their API key (it keeps no cookies, so nothing of one account reaches another).

    One pooled keep-alive session for thousands of triggers is what keeps a poll cheap; a session per
    poll (new TCP connection each time) costs several times more CPU. The session is closed when its
    last user releases it (:func:`release_shared_session`), so no session outlives its users.
    """
    return lease_aiohttp_session(base_url, _new_session)


async def release_shared_session(base_url: str) -> None:
    """Give a lease back; the last one out closes the session."""
    await return_aiohttp_session(base_url)


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
        return parse_lip_sync_result(await self.fetch_status(task_id), task_id)

    async def fetch_status(self, task_id: str) -> dict[str, Any]:
        """
        One status request, no retry: the ``data`` object of a well-formed answer, unparsed.

        The common answer (HTTP 200, code 0, a ``data`` object with a string ``status``) takes a
        short path; anything else goes through :func:`~airflow_provider_jogg.protocol.parse_envelope`
        and :func:`~airflow_provider_jogg.results.parse_lip_sync_result`, which raise the error that
        says what went wrong.
        """
        throttle = self.throttle
        for delay in throttle.waits_before_send():
            await asyncio.sleep(delay)
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
        action = f"status of task {task_id}"
        if 300 <= status < 400:
            raise redirect_refused(status, location, self.config.base_url, action)
        try:
            data = parse_envelope(status, body, retry_after=retry_after, action=action, task_id=task_id)
        except exc.JoggAPIError as error:
            close_on_rate_limit(throttle, error, self.config)
            raise
        parse_lip_sync_result(data, task_id)  # raises the precise error for a malformed 'data'
        return data

    def _transport_error(self, error: BaseException, action: str) -> exc.JoggConnectionError:
        if isinstance(error, asyncio.TimeoutError):
            return exc.JoggConnectionError(
                f"Jogg {action}: no complete answer within the {self.config.timeout:g} s timeout"
            )
        if isinstance(error, aiohttp.ClientConnectorError):
            return exc.JoggConnectionError(
                f"Jogg {action}: could not connect ({type(error).__name__})", request_sent=False
            )
        return exc.JoggConnectionError(
            f"Jogg {action}: the connection failed before a complete answer arrived ({type(error).__name__})"
        )
