"""JoggHook: the connection, credentials and HTTP calls to the JoggAI API.

The sync path uses one pooled ``requests.Session`` per worker process and account; the async path
(used by the trigger) uses one ``aiohttp.ClientSession`` per event loop and base URL, shared by every
trigger in the triggerer. What the answers mean, which failures are retried and how long to wait is
decided in :mod:`airflow_provider_jogg.policy`, shared by both paths.
"""

from __future__ import annotations

import contextlib
import logging
import os
import tempfile
import threading
import time
import uuid
from functools import cached_property
from pathlib import Path
from typing import Any, ClassVar
from urllib.parse import unquote, urlsplit

import requests
import tenacity
from urllib3.exceptions import NewConnectionError

from airflow_provider_jogg import exceptions as exc
from airflow_provider_jogg._compat import BaseHook, connection_form_widgets, mask_secret
from airflow_provider_jogg.hooks.async_client import (
    _ASYNC_SESSIONS,
    AsyncJoggClient,
    acquire_shared_session,
    close_on_rate_limit,
    config_from_connection,
    release_shared_session,
)
from airflow_provider_jogg.hooks.media_fetch import open_media, shown_url
from airflow_provider_jogg.policy import (
    CREATE_PATH,
    DEFAULT_CONN_ID,
    PLAYBACK_TYPES,
    QUOTA_PATH,
    STATUS_PATH,
    UPLOAD_PATH,
    WHOAMI_PATH,
    JoggConnectionConfig,
    JoggStatus,
    LipSyncResult,
    backoff_delay,
    body_snippet,
    is_create_retryable,
    is_retryable,
    parse_envelope,
    parse_lip_sync_result,
    redirect_refused,
    validate_media_url,
    validate_playback_type,
    validate_task_id,
)
from airflow_provider_jogg.storage import MediaFile, content_type_for, inspect_file, partial_name, to_path

__all__ = [
    "_ASYNC_SESSIONS",
    "AsyncJoggClient",
    "JoggHook",
    "JoggStatus",
    "LipSyncResult",
    "acquire_shared_session",
    "config_from_connection",
    "release_shared_session",
]

log = logging.getLogger(__name__)

#: HTTP status codes of storage and CDN requests (upload PUT, result download) worth another attempt
_RETRY_PUT_STATUSES = frozenset({408, 429, 500, 502, 503, 504})
#: bytes per read when streaming a result to its destination
DOWNLOAD_CHUNK = 1024 * 1024
#: downloads ask for media as it is stored, not compressed on the way
_IDENTITY = {"Accept-Encoding": "identity"}


# --------------------------------------------------------------------------------------------------
# Retrying (shared by the sync and the async path)
# --------------------------------------------------------------------------------------------------
def _retry_kwargs(
    config: JoggConnectionConfig, what: str, *, create: bool, max_retries: int | None
) -> dict[str, Any]:
    retries = config.max_retries if max_retries is None else max_retries

    def wait(state: tenacity.RetryCallState) -> float:
        error = state.outcome.exception() if state.outcome else None
        return backoff_delay(state.attempt_number, config.retry_backoff, getattr(error, "retry_after", None))

    def before_sleep(state: tenacity.RetryCallState) -> None:
        error = state.outcome.exception() if state.outcome else None
        log.warning(
            "Jogg %s failed (attempt %d of %d), retrying in %.2f s: %s",
            what,
            state.attempt_number,
            retries + 1,
            state.upcoming_sleep,
            error,
        )

    return {
        "retry": tenacity.retry_if_exception(is_create_retryable if create else is_retryable),
        "stop": tenacity.stop_after_attempt(retries + 1),
        "wait": wait,
        "before_sleep": before_sleep,
        "reraise": True,
    }


# --------------------------------------------------------------------------------------------------
# Sync transport
# --------------------------------------------------------------------------------------------------
_SESSIONS: dict[tuple[int, str, str], requests.Session] = {}
_SESSIONS_LOCK = threading.Lock()


def _session_for(config: JoggConnectionConfig) -> requests.Session:
    """One keep-alive session per worker process and account (keyed by pid: forks get their own)."""
    key = (os.getpid(), config.base_url, config.key_id)
    session = _SESSIONS.get(key)
    if session is None:
        with _SESSIONS_LOCK:
            session = _SESSIONS.get(key)
            if session is None:
                session = _SESSIONS[key] = requests.Session()
    return session


def _never_sent(error: BaseException) -> bool:
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


def _connection_error(error: requests.RequestException, what: str, timeout: float) -> exc.JoggConnectionError:
    sent = not _never_sent(error)
    if isinstance(error, requests.exceptions.ReadTimeout):
        reason = f"no complete answer within the {timeout:g} s timeout"
    elif not sent:
        reason = "could not connect (the request was not sent)"
    else:
        reason = "the connection failed before a complete answer arrived"
    # the class name only: requests' text repeats the URL and adds nothing for the user
    return exc.JoggConnectionError(f"Jogg {what}: {reason} ({type(error).__name__})", request_sent=sent)


# --------------------------------------------------------------------------------------------------
# The hook
# --------------------------------------------------------------------------------------------------
class JoggHook(BaseHook):
    """
    Talks to the JoggAI API with the key and settings of one Airflow connection.

    Connection fields: **password** is the API key; **host** is the base URL with scheme (default
    ``https://api.jogg.ai``; a path prefix such as ``/open`` is kept; ``http://`` only for loopback
    unless the extra says ``"allow_insecure_http": true``). Extra JSON: ``api_platform`` (sent as
    ``x-api-platform``), ``timeout`` (seconds per request, default 30), ``max_retries`` (retries after
    the first attempt, default 3, 0 disables them), ``retry_backoff`` (first backoff in seconds,
    default 1, doubling per attempt), ``max_requests_per_second`` (per account and process, default
    100, 0 disables the limit), ``allow_insecure_http`` (default false), ``allow_private_media_urls``
    (default false: :meth:`rehost_url` fetches public addresses only).

    .. note::
        API requests never follow redirects: a 3xx answer raises :class:`JoggRedirectError`, so the
        key is never sent to another host.

    :param jogg_conn_id: the Airflow connection id
    """

    conn_name_attr = "jogg_conn_id"
    default_conn_name = DEFAULT_CONN_ID
    conn_type = "jogg"
    hook_name = "JoggAI"

    PLAYBACK_TYPES: ClassVar[tuple[str, ...]] = PLAYBACK_TYPES

    def __init__(self, jogg_conn_id: str = DEFAULT_CONN_ID, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.jogg_conn_id = jogg_conn_id

    @classmethod
    def get_connection_form_widgets(cls) -> dict[str, Any]:
        """The form's extra fields on Airflow 3.0/3.1; 3.2+ reads ``conn-fields`` from the provider info."""
        from airflow_provider_jogg.get_provider_info import CONN_FIELDS

        return connection_form_widgets(CONN_FIELDS)

    @classmethod
    def get_ui_field_behaviour(cls) -> dict[str, Any]:
        """The connection form: same content as ``ui-field-behaviour`` in the provider info."""
        from airflow_provider_jogg.get_provider_info import UI_FIELD_BEHAVIOUR

        return {
            "hidden_fields": list(UI_FIELD_BEHAVIOUR["hidden-fields"]),
            "relabeling": dict(UI_FIELD_BEHAVIOUR["relabeling"]),
            "placeholders": dict(UI_FIELD_BEHAVIOUR["placeholders"]),
        }

    @cached_property
    def config(self) -> JoggConnectionConfig:
        """The connection, resolved and validated once per hook."""
        config = config_from_connection(self.get_connection(self.jogg_conn_id))
        mask_secret(config.api_key)
        return config

    def get_conn(self) -> requests.Session:
        """The pooled ``requests.Session`` this hook uses."""
        return _session_for(self.config)

    # --- sync core ---
    def _send(self, method: str, path: str, *, what: str, task_id: str | None, json: Any) -> Any:
        config = self.config
        throttle = config.throttle()
        while True:  # wait for our slot under the rate limit, and past any Retry-After
            wait = throttle.reserve()
            if wait > 0:
                if wait >= 1:
                    self.log.info("Waiting %.1f s (Jogg rate limit) before the %s", wait, what)
                time.sleep(wait)
            if throttle.remaining() <= 0:
                break
        try:
            # never follow a redirect: requests would re-send x-api-key to whatever host it names
            resp = self.get_conn().request(
                method,
                config.url(path),
                headers=config.headers(),
                json=json,
                timeout=config.timeout,
                allow_redirects=False,
            )
            body = resp.content
        except requests.RequestException as error:
            raise _connection_error(error, what, config.timeout) from None
        if 300 <= resp.status_code < 400:
            raise redirect_refused(resp.status_code, resp.headers.get("Location"), config.base_url, what)
        try:
            return parse_envelope(
                resp.status_code,
                body,
                retry_after=resp.headers.get("Retry-After"),
                what=what,
                task_id=task_id,
            )
        except exc.JoggAPIError as error:
            close_on_rate_limit(throttle, error, config)
            raise

    def _call(
        self,
        method: str,
        path: str,
        *,
        what: str,
        task_id: str | None = None,
        json: Any = None,
        create: bool = False,
        max_retries: int | None = None,
    ) -> Any:
        retrying = tenacity.Retrying(
            **_retry_kwargs(self.config, what, create=create, max_retries=max_retries)
        )
        return retrying(self._send, method, path, what=what, task_id=task_id, json=json)

    # --- API ---
    def create_lip_sync_video(self, video_url: str, audio_url: str, playback_type: str = "normal") -> str:
        """
        Create a lip-sync task and return its Jogg task id. Bills credits.

        .. note::
            Sent again only when nothing can have been created (HTTP 429, 408 or 425, or the
            connection was never established). Any failure after the request was sent raises
            :class:`JoggCreateUncertainError`: Jogg has no idempotency key, so a second request could
            create and bill a second task.

        :param video_url: http(s) URL of the source video
        :param audio_url: http(s) URL of the target audio
        :param playback_type: ``normal``, ``normal_reverse`` or ``normal_reverse_by_audio``
        """
        body = {
            "video_url": validate_media_url(video_url, "video_url"),
            "audio_url": validate_media_url(audio_url, "audio_url"),
            "playback_type": validate_playback_type(playback_type),
        }
        what = "create lip-sync task"
        try:
            data = self._call("POST", CREATE_PATH, what=what, json=body, create=True)
        except exc.JoggAPIError as error:
            if is_create_retryable(error) or _refused(error):
                raise
            raise exc.JoggCreateUncertainError(
                f"Creating the Jogg lip-sync task failed after the request was sent, so a task may have "
                f"been created (and billed) anyway: {error}. Not sent again, to avoid a duplicate; check "
                "the Jogg dashboard before running this task again.",
                error,
            ) from error
        task_id = data.get("task_id") if isinstance(data, dict) else None
        if not isinstance(task_id, str) or not task_id:
            raise exc.JoggCreateUncertainError(
                "Jogg accepted the create request but its answer has no task_id "
                f"({body_snippet(repr(data).encode())!r}); "
                "a task may have been created. Not sent again, to avoid a duplicate.",
                exc.JoggResponseError("create answer without task_id"),
            )
        return task_id

    def get_lip_sync_video(self, task_id: str, *, max_retries: int | None = None) -> LipSyncResult:
        """
        Read a lip-sync task. Transient failures are retried with backoff.

        :param task_id: the Jogg task id
        :param max_retries: override the connection's ``max_retries`` for this call
        """
        task_id = validate_task_id(task_id)
        data = self._call(
            "GET",
            STATUS_PATH.format(task_id=task_id),
            what=f"status of task {task_id}",
            task_id=task_id,
            max_retries=max_retries,
        )
        return parse_lip_sync_result(data, task_id)

    async def aget_lip_sync_video(self, task_id: str) -> LipSyncResult:
        """Async :meth:`get_lip_sync_video`, with the same retries; never blocks the event loop."""
        task_id = validate_task_id(task_id)
        async with await self.get_async_client() as client:
            retrying = tenacity.AsyncRetrying(
                **_retry_kwargs(client.config, f"status of task {task_id}", create=False, max_retries=None)
            )
            return await retrying(client.get_lip_sync_video, task_id)

    async def get_async_client(self) -> AsyncJoggClient:
        """An :class:`AsyncJoggClient` for this hook's connection (looked up asynchronously);
        enter it with ``async with`` before use."""
        return await AsyncJoggClient.for_connection(self.jogg_conn_id)

    def whoami(self, *, max_retries: int | None = None) -> dict[str, Any]:
        """The account behind the key: ``{"email": ..., "username": ...}``. Read-only."""
        data = self._call("GET", WHOAMI_PATH, what="whoami", max_retries=max_retries)
        return data if isinstance(data, dict) else {}

    def get_remaining_quota(self) -> float:
        """Credits left on the account. Read-only."""
        data = self._call("GET", QUOTA_PATH, what="remaining quota")
        quota = data.get("remaining_quota") if isinstance(data, dict) else None
        if isinstance(quota, bool) or not isinstance(quota, (int, float)):
            raise exc.JoggResponseError(
                "Jogg's quota answer has no remaining_quota", body_snippet=repr(data)[:200]
            )
        return float(quota)

    def test_connection(self) -> tuple[bool, str]:
        """Check the key with ``GET /v2/user/whoami``: read-only, creates and bills nothing."""
        try:
            # one retry at most: a person is waiting for the Test button
            account = self.whoami(max_retries=min(self.config.max_retries, 1))
        except Exception as error:
            return False, str(error)
        who = account.get("username") or account.get("email") or "an unnamed account"
        return True, f"Connection successfully tested: connected to {self.config.base_url} as {who}"

    def upload_asset(
        self, path: str | os.PathLike[str] | Any, content_type: str | None = None, *, role: str = "path"
    ) -> str:
        """
        Upload a file with Jogg's two-step flow and return the asset URL to use as
        ``video_url``/``audio_url``. The file is streamed, never read into memory.

        :param path: a local path, a ``file://``/``s3://``/... URI or an ``ObjectStoragePath``
        :param content_type: MIME type; from the file name when omitted
        :param role: what the file is for (``video_url``/``audio_url``), named in errors and used to
            check the content type
        """
        media = inspect_file(path, role, content_type)
        return self._upload(media)

    def _upload(self, media: MediaFile) -> str:
        data = self._call(
            "POST",
            UPLOAD_PATH,
            what=f"upload of {media.name}",
            json={"filename": media.name, "content_type": media.content_type, "file_size": media.size},
        )
        sign_url = data.get("sign_url") if isinstance(data, dict) else None
        asset_url = data.get("asset_url") if isinstance(data, dict) else None
        if not isinstance(sign_url, str) or not isinstance(asset_url, str):
            raise exc.JoggResponseError(
                f"Jogg's upload answer for {media.name} lacks sign_url or asset_url "
                "(an asset_id-only answer is the retired v1 API)",
                body_snippet=repr(sorted(data) if isinstance(data, dict) else data)[:200],
            )
        what = f"storage upload of {media.name}"
        tenacity.Retrying(**_retry_kwargs(self.config, what, create=False, max_retries=None))(
            self._put_file, sign_url, media, what
        )
        self.log.info(
            "Uploaded %s (%d bytes, %s) to Jogg storage", media.location, media.size, media.content_type
        )
        return asset_url

    def _put_file(self, sign_url: str, media: MediaFile, what: str) -> None:
        # no x-api-key here: the pre-signed URL goes to storage, not to the API
        try:
            with media.open() as stream:
                resp = self.get_conn().put(
                    sign_url,
                    data=stream,
                    headers={"Content-Type": media.content_type, "Content-Length": str(media.size)},
                    timeout=self.config.timeout,
                )
        except requests.RequestException as error:
            raise _connection_error(error, what, self.config.timeout) from None
        _check_plain_answer(resp, what)

    def rehost_url(self, url: str, *, role: str = "path") -> str:
        """
        Download a public http(s) URL and upload it as a Jogg asset (Jogg recommends re-hosting:
        third-party URLs can fail mid-task). Streamed through a temporary file, never into memory.

        .. note::
            Only public addresses are fetched, redirects included, and the answer must be media
            for ``role`` (see :mod:`airflow_provider_jogg.hooks.media_fetch`); the connection extra
            ``allow_private_media_urls`` lifts the address check for internal media servers.

        :param url: the http(s) URL of the media
        :param role: ``video_url`` or ``audio_url``: named in errors, and the media type expected
        """
        url = validate_media_url(url, role)
        name = Path(unquote(urlsplit(url).path)).name or "media"
        content_type_for(name, role)  # a file name Jogg would refuse fails before any request
        with tempfile.TemporaryDirectory(prefix="jogg-rehost-") as tmp:
            local = Path(tmp) / name
            self._download(url, local, f"download of {role} {shown_url(url)}", media_role=role)
            return self._upload(inspect_file(local, role))

    def download(self, url: str, destination: str | os.PathLike[str] | Any) -> int:
        """
        Stream ``url`` to ``destination`` (local path, URI or ``ObjectStoragePath``); returns bytes written.

        Written under a temporary name beside the destination and moved into place only when complete
        and as long as ``Content-Length`` says; a partial file is deleted. Transient failures (5xx,
        429, broken connections, short bodies) are retried with the connection's backoff.

        .. note::
            Meant for Jogg's results (``result_url``, ``cover_url``): redirects are followed and no
            address check is made, unlike :meth:`rehost_url`. The URL comes from Jogg's
            authenticated answer, and the bytes only go to ``destination``, which the DAG chose.
        """
        target = to_path(destination, "output_path")
        written = self._download(url, target, f"download of {url}", media_role=None)
        self.log.info("Saved %s (%d bytes) to %s", url, written, target)
        return written

    def _download(self, url: str, target: Any, what: str, *, media_role: str | None) -> int:
        retrying = tenacity.Retrying(**_retry_kwargs(self.config, what, create=False, max_retries=None))
        written: int = retrying(self._download_once, url, target, what, media_role)
        return written

    def _open_download(self, url: str, what: str, media_role: str | None) -> Any:
        """The streamed answer: a Jogg result as it comes, or a DAG's media URL through the checks."""
        if media_role is not None:
            return open_media(
                url,
                role=media_role,
                allow_private=self.config.allow_private_media_urls,
                timeout=self.config.timeout,
                what=what,
            )
        # no x-api-key: results are served from Jogg's CDN, not the API. Media gains nothing from
        # compression: ask for the bytes as they are
        return self.get_conn().get(url, stream=True, timeout=self.config.timeout, headers=_IDENTITY)

    def _download_once(self, url: str, target: Any, what: str, media_role: str | None = None) -> int:
        partial = partial_name(target, uuid.uuid4().hex[:12])
        with contextlib.suppress(Exception):  # local folders must exist; object stores have none
            target.parent.mkdir(parents=True, exist_ok=True)
        written = 0
        try:
            with self._open_download(url, what, media_role) as resp:
                _check_plain_answer(resp, what)
                expected = resp.headers.get("Content-Length")
                with partial.open("wb") as out:
                    for chunk in resp.iter_content(chunk_size=DOWNLOAD_CHUNK):
                        out.write(chunk)
                        written += len(chunk)
                # a CDN may gzip anyway: the file gets the decoded bytes (the real media), while
                # Content-Length counts the encoded ones, so compare it with what came over the wire
                received = resp.raw.tell()
            if expected is not None and expected.isdigit() and received != int(expected):
                raise exc.JoggConnectionError(f"Jogg {what}: got {received} of {expected} bytes")
            partial.rename(target)
        except requests.RequestException as error:
            _remove_quietly(partial)
            raise _connection_error(error, what, self.config.timeout) from None
        except BaseException:
            _remove_quietly(partial)
            raise
        return written


def _check_plain_answer(resp: requests.Response, what: str) -> None:
    """Storage and CDN answers have no envelope: judge them by HTTP status alone."""
    if 200 <= resp.status_code < 300:
        return
    if resp.status_code in _RETRY_PUT_STATUSES:
        raise exc.JoggTransientError(
            f"Jogg {what} was refused for now",
            http_status=resp.status_code,
            body_snippet=body_snippet(resp.content),
        )
    raise exc.JoggFatalAPIError(
        f"Jogg {what} failed", http_status=resp.status_code, body_snippet=body_snippet(resp.content)
    )


def _remove_quietly(path: Any) -> None:
    """Best effort: a partial download must not stay behind looking like a result."""
    try:
        path.unlink(missing_ok=True)
    except Exception as error:
        log.warning("Could not remove the partial download %s: %s", path, error)


def _refused(error: exc.JoggAPIError) -> bool:
    """Jogg answered and said no (a business code, or a 4xx): no task was created."""
    if isinstance(error, exc.JoggRedirectError):  # a redirect is an answer instead of processing
        return True
    if error.transient:  # 5xx, code 50000, broken bodies and connections: the outcome is unknown
        return False
    if error.code not in (None, 0):
        return True
    return error.http_status is not None and 400 <= error.http_status < 500
