"""The sync transport: one request to the JoggAI API with ``requests``, and its failures told apart.

Used by :class:`~airflow_provider_jogg.hooks.jogg.JoggHook` in a worker. Each request waits for its
turn under the account's throttle, never follows a redirect (the key must not reach another host),
and has its answer judged by :func:`~airflow_provider_jogg.protocol.parse_envelope`; retrying is
:mod:`airflow_provider_jogg.retry`'s business (:func:`api_request` with ``retries``).
"""

from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING, Any

import requests
from urllib3.exceptions import NewConnectionError

from airflow_provider_jogg import exceptions as exc
from airflow_provider_jogg.protocol import body_snippet, parse_envelope, redirect_refused
from airflow_provider_jogg.registries import requests_session
from airflow_provider_jogg.retry import RETRYABLE_STORAGE_STATUSES, close_on_rate_limit, retrying

if TYPE_CHECKING:
    from airflow_provider_jogg.connection import JoggConnectionConfig

log = logging.getLogger(__name__)


def session_for(config: JoggConnectionConfig) -> requests.Session:
    """The worker process's keep-alive session for this account."""
    return requests_session(config.base_url, config.key_id, requests.Session)


def send_once(
    config: JoggConnectionConfig, method: str, path: str, *, action: str, task_id: str | None, json: Any
) -> Any:
    """
    One API request, no retry; returns the answer's ``data``.

    :param action: what is asked, named in messages and logs (``"create lip-sync task"``)
    :param task_id: the task asked about, named in a "not found" error
    :raises JoggAPIError: a subclass that says what went wrong
    """
    throttle = config.throttle()
    for delay in throttle.waits_before_send():
        if delay >= 1:
            log.info("Waiting %.1f s (Jogg rate limit) before the %s", delay, action)
        time.sleep(delay)
    try:
        # never follow a redirect: requests would re-send x-api-key to whatever host it names
        resp = session_for(config).request(
            method,
            config.url(path),
            headers=config.headers(),
            json=json,
            timeout=config.timeout,
            allow_redirects=False,
        )
        body = resp.content
    except requests.RequestException as error:
        raise connection_error(error, action, config.timeout) from None
    if 300 <= resp.status_code < 400:
        raise redirect_refused(resp.status_code, resp.headers.get("Location"), config.base_url, action)
    try:
        return parse_envelope(
            resp.status_code,
            body,
            retry_after=resp.headers.get("Retry-After"),
            action=action,
            task_id=task_id,
        )
    except exc.JoggAPIError as error:
        close_on_rate_limit(throttle, error, config)
        raise


def api_request(
    config: JoggConnectionConfig,
    method: str,
    path: str,
    *,
    action: str,
    task_id: str | None = None,
    json: Any = None,
    create: bool = False,
    max_retries: int | None = None,
    rate_limit_wait: float | None = None,
) -> Any:
    """:func:`send_once`, sent again as :func:`airflow_provider_jogg.retry.retrying` allows."""
    retry = retrying(config, action, create=create, max_retries=max_retries, rate_limit_wait=rate_limit_wait)
    return retry(send_once, config, method, path, action=action, task_id=task_id, json=json)


def never_sent(error: BaseException) -> bool:
    """True when ``requests`` failed before the request left: connection refused or not established."""
    if isinstance(error, requests.exceptions.ConnectTimeout):
        return True
    seen: set[int] = set()
    stack: list[Any] = [error]
    while stack:
        item = stack.pop()
        if item is None or id(item) in seen:
            continue
        seen.add(id(item))
        if isinstance(item, (NewConnectionError, ConnectionRefusedError)):
            return True
        if isinstance(item, BaseException):
            stack.extend([item.__cause__, item.__context__, getattr(item, "reason", None), *item.args])
    return False


def connection_error(
    error: requests.RequestException, action: str, timeout: float
) -> exc.JoggConnectionError:
    """The provider's error for a request that got no complete answer (whether it left is kept)."""
    sent = not never_sent(error)
    if isinstance(error, requests.exceptions.ReadTimeout):
        reason = f"no complete answer within the {timeout:g} s timeout"
    elif not sent:
        reason = "could not connect (the request was not sent)"
    else:
        reason = "the connection failed before a complete answer arrived"
    # the class name only: requests' text repeats the URL and adds nothing for the user
    return exc.JoggConnectionError(f"Jogg {action}: {reason} ({type(error).__name__})", request_sent=sent)


def check_plain_answer(resp: requests.Response, action: str) -> None:
    """Storage and CDN answers have no envelope: judge them by HTTP status alone."""
    if 200 <= resp.status_code < 300:
        return
    if resp.status_code in RETRYABLE_STORAGE_STATUSES:
        raise exc.JoggTransientError(
            f"Jogg {action} was refused for now",
            http_status=resp.status_code,
            body_snippet=body_snippet(resp.content),
        )
    raise exc.JoggFatalAPIError(
        f"Jogg {action} failed", http_status=resp.status_code, body_snippet=body_snippet(resp.content)
    )
