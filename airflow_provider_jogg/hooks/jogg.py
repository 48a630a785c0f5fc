"""JoggHook: the connection, credentials and calls of the JoggAI API.

The hook is the API as methods: create, status, account, upload, download. How one request is sent
is :mod:`~airflow_provider_jogg.hooks.sync_transport`'s business (``requests``, one pooled session per
worker process and account), how media moves is :mod:`~airflow_provider_jogg.hooks.transfers`', and
the async status path (the trigger's) is :mod:`~airflow_provider_jogg.hooks.async_client`'s. What the
answers mean and which failures are retried is decided once, in :mod:`airflow_provider_jogg.protocol`
and :mod:`airflow_provider_jogg.retry`.
"""

from __future__ import annotations

import tempfile
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar
from urllib.parse import unquote, urlsplit

from airflow_provider_jogg import exceptions as exc
from airflow_provider_jogg._compat import BaseHook, connection_form_widgets, mask_secret
from airflow_provider_jogg.connection import DEFAULT_CONN_ID, JoggConnectionConfig, config_from_connection
from airflow_provider_jogg.hooks import transfers
from airflow_provider_jogg.hooks.async_client import AsyncJoggClient
from airflow_provider_jogg.hooks.media_fetch import shown_url
from airflow_provider_jogg.hooks.sync_transport import api_request, session_for
from airflow_provider_jogg.media_inputs import MediaFile, content_type_for, inspect_file, to_path
from airflow_provider_jogg.protocol import CREATE_PATH, QUOTA_PATH, STATUS_PATH, WHOAMI_PATH, body_snippet
from airflow_provider_jogg.results import JoggStatus, LipSyncResult, parse_lip_sync_result
from airflow_provider_jogg.retry import create_refused, is_create_retryable, retrying
from airflow_provider_jogg.validation import (
    PLAYBACK_TYPES,
    validate_media_url,
    validate_playback_type,
    validate_task_id,
)

if TYPE_CHECKING:
    import os

    import requests

__all__ = ["AsyncJoggClient", "JoggHook", "JoggStatus", "LipSyncResult"]


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
        return session_for(self.config)

    def _request(self, method: str, path: str, *, action: str, **kwargs: Any) -> Any:
        """One API call with this connection, retried as :mod:`airflow_provider_jogg.retry` allows."""
        return api_request(self.config, method, path, action=action, **kwargs)

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
        try:
            data = self._request("POST", CREATE_PATH, action="create lip-sync task", json=body, create=True)
        except exc.JoggAPIError as error:
            if is_create_retryable(error) or create_refused(error):
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
        data = self._request(
            "GET",
            STATUS_PATH.format(task_id=task_id),
            action=f"status of task {task_id}",
            task_id=task_id,
            max_retries=max_retries,
        )
        return parse_lip_sync_result(data, task_id)

    async def aget_lip_sync_video(self, task_id: str) -> LipSyncResult:
        """Async :meth:`get_lip_sync_video`, with the same retries; never blocks the event loop."""
        task_id = validate_task_id(task_id)
        async with await self.get_async_client() as client:
            retry = retrying(client.config, f"status of task {task_id}", asynchronous=True)
            return await retry(client.get_lip_sync_video, task_id)

    async def get_async_client(self) -> AsyncJoggClient:
        """An :class:`AsyncJoggClient` for this hook's connection (looked up asynchronously);
        enter it with ``async with`` before use."""
        return await AsyncJoggClient.for_connection(self.jogg_conn_id)

    def whoami(
        self, *, max_retries: int | None = None, rate_limit_wait: float | None = None
    ) -> dict[str, Any]:
        """The account behind the key: ``{"email": ..., "username": ...}``. Read-only.

        :param max_retries: override the connection's ``max_retries`` for this call
        :param rate_limit_wait: override the connection's ``rate_limit_wait`` for this call
        """
        data = self._request(
            "GET", WHOAMI_PATH, action="whoami", max_retries=max_retries, rate_limit_wait=rate_limit_wait
        )
        return data if isinstance(data, dict) else {}

    def get_remaining_quota(self) -> float:
        """Credits left on the account. Read-only."""
        data = self._request("GET", QUOTA_PATH, action="remaining quota")
        quota = data.get("remaining_quota") if isinstance(data, dict) else None
        if isinstance(quota, bool) or not isinstance(quota, (int, float)):
            raise exc.JoggResponseError(
                "Jogg's quota answer has no remaining_quota", body_snippet=repr(data)[:200]
            )
        return float(quota)

    def test_connection(self) -> tuple[bool, str]:
        """Check the key with ``GET /v2/user/whoami``: read-only, creates and bills nothing."""
        try:
            # one retry at most, and a 429 is that retry: a person is waiting for the Test button
            account = self.whoami(max_retries=min(self.config.max_retries, 1), rate_limit_wait=0)
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
        return self.upload_media(inspect_file(path, role, content_type))

    def upload_media(self, media: MediaFile) -> str:
        """
        Upload a file already inspected (:func:`~airflow_provider_jogg.media_inputs.inspect_file`:
        checked, typed and sized) and return its asset URL. The operator inspects every input before
        its first request, then uploads with this.
        """
        return transfers.upload(self.config, media)

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
            transfers.download(
                self.config, url, local, f"download of {role} {shown_url(url)}", media_role=role
            )
            return self.upload_media(inspect_file(local, role))

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
        written = transfers.download(self.config, url, target, f"download of {url}", media_role=None)
        self.log.info("Saved %s (%d bytes) to %s", url, written, target)
        return written
