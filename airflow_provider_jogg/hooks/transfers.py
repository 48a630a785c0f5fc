"""Moving media: uploads to Jogg's storage (the two-step flow) and downloads to a destination.

Both stream (never a whole file in memory) and retry transient failures with the connection's
backoff. A download is written under a temporary name beside its destination and moved into place
only when complete, so a destination never holds half a file.
"""

from __future__ import annotations

import contextlib
import logging
import uuid
from typing import TYPE_CHECKING, Any

import requests

from airflow_provider_jogg import exceptions as exc
from airflow_provider_jogg.hooks.media_fetch import open_media
from airflow_provider_jogg.hooks.sync_transport import (
    api_request,
    check_plain_answer,
    connection_error,
    session_for,
)
from airflow_provider_jogg.media_inputs import MediaFile, partial_name
from airflow_provider_jogg.protocol import UPLOAD_PATH
from airflow_provider_jogg.retry import retrying

if TYPE_CHECKING:
    from airflow_provider_jogg.connection import JoggConnectionConfig

log = logging.getLogger(__name__)

#: bytes per read when streaming a download to its destination
DOWNLOAD_CHUNK = 1024 * 1024
#: downloads ask for media as it is stored, not compressed on the way
_IDENTITY = {"Accept-Encoding": "identity"}


def upload(config: JoggConnectionConfig, media: MediaFile) -> str:
    """Register ``media`` with Jogg, PUT it to the pre-signed URL; returns the asset URL."""
    data = api_request(
        config,
        "POST",
        UPLOAD_PATH,
        action=f"upload of {media.name}",
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
    action = f"storage upload of {media.name}"
    retrying(config, action)(_put_file, config, sign_url, media, action)
    log.info("Uploaded %s (%d bytes, %s) to Jogg storage", media.location, media.size, media.content_type)
    return asset_url


def _put_file(config: JoggConnectionConfig, sign_url: str, media: MediaFile, action: str) -> None:
    # no x-api-key here: the pre-signed URL goes to storage, not to the API
    try:
        with media.open() as stream:
            resp = session_for(config).put(
                sign_url,
                data=stream,
                headers={"Content-Type": media.content_type, "Content-Length": str(media.size)},
                timeout=config.timeout,
            )
    except requests.RequestException as error:
        raise connection_error(error, action, config.timeout) from None
    check_plain_answer(resp, action)


def download(
    config: JoggConnectionConfig, url: str, target: Any, action: str, *, media_role: str | None
) -> int:
    """
    Stream ``url`` to ``target`` (a local ``Path`` or an ``ObjectStoragePath``), retried; returns
    the bytes written. ``media_role`` set: ``url`` is a DAG's media input, fetched through
    :func:`~airflow_provider_jogg.hooks.media_fetch.open_media`'s address and type checks; unset: a
    Jogg result, fetched as it comes.
    """
    written: int = retrying(config, action)(_download_once, config, url, target, action, media_role)
    return written


def _open(config: JoggConnectionConfig, url: str, action: str, media_role: str | None) -> Any:
    if media_role is not None:
        return open_media(
            url,
            role=media_role,
            allow_private=config.allow_private_media_urls,
            timeout=config.timeout,
            action=action,
        )
    # no x-api-key: results are served from Jogg's CDN, not the API. Media gains nothing from
    # compression: ask for the bytes as they are
    return session_for(config).get(url, stream=True, timeout=config.timeout, headers=_IDENTITY)


def _download_once(
    config: JoggConnectionConfig, url: str, target: Any, action: str, media_role: str | None
) -> int:
    partial = partial_name(target, uuid.uuid4().hex[:12])
    with contextlib.suppress(Exception):  # local folders must exist; object stores have none
        target.parent.mkdir(parents=True, exist_ok=True)
    written = 0
    try:
        with _open(config, url, action, media_role) as resp:
            check_plain_answer(resp, action)
            expected = resp.headers.get("Content-Length")
            with partial.open("wb") as out:
                for chunk in resp.iter_content(chunk_size=DOWNLOAD_CHUNK):
                    out.write(chunk)
                    written += len(chunk)
            # a CDN may gzip anyway: the file gets the decoded bytes (the real media), while
            # Content-Length counts the encoded ones, so compare it with what came over the wire
            received = resp.raw.tell()
        if expected is not None and expected.isdigit() and received != int(expected):
            raise exc.JoggConnectionError(f"Jogg {action}: got {received} of {expected} bytes")
        partial.rename(target)
    except requests.RequestException as error:
        _remove_quietly(partial)
        raise connection_error(error, action, config.timeout) from None
    except BaseException:
        _remove_quietly(partial)
        raise
    return written


def _remove_quietly(path: Any) -> None:
    """Best effort: a partial download must not stay behind looking like a result."""
    try:
        path.unlink(missing_ok=True)
    except Exception as error:
        log.warning("Could not remove the partial download %s: %s", path, error)
