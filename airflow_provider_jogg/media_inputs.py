"""Where media comes from and where results go: http(s) URLs, local paths, URIs, ObjectStoragePath.

An input is either an http(s) URL (handed to Jogg as is) or a file: a local path, a ``file://``
URI, or anything Airflow's object storage opens (``s3://``, ``gs://``, an ``ObjectStoragePath``).
Files are checked before any request (exists, not empty, a content type Jogg takes) and uploaded
with Jogg's two-step asset flow, streamed. A file's identity across retries is the SHA-256 of its
content, read through the same ``open()`` the upload uses, in chunks.
"""

from __future__ import annotations

import dataclasses
import hashlib
import mimetypes
import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO, cast
from urllib.parse import unquote, urlsplit

from airflow_provider_jogg import exceptions as exc

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator

#: content types the provider uploads for each input, by file extension
VIDEO_TYPES: dict[str, str] = {
    ".mp4": "video/mp4",
    ".m4v": "video/mp4",
    ".mov": "video/quicktime",
    ".webm": "video/webm",
    ".mkv": "video/x-matroska",
}
AUDIO_TYPES: dict[str, str] = {
    ".mp3": "audio/mpeg",
    ".wav": "audio/wav",
    ".m4a": "audio/mp4",
    ".aac": "audio/aac",
    ".ogg": "audio/ogg",
    ".flac": "audio/flac",
}
_TYPES_FOR_ROLE = {"video_url": VIDEO_TYPES, "audio_url": AUDIO_TYPES}
#: bytes read at a time when hashing a file: memory stays bounded whatever the file's size
DIGEST_CHUNK = 1024 * 1024


def is_http_url(value: Any) -> bool:
    return isinstance(value, str) and urlsplit(value.strip()).scheme in ("http", "https")


def to_path(value: Any, role: str = "path") -> Any:
    """
    A local :class:`~pathlib.Path` for local paths and ``file://`` URIs, an ``ObjectStoragePath``
    for other URIs, the value itself if it already is a path object.
    """
    if hasattr(value, "open") and hasattr(value, "stat") and not isinstance(value, str):
        return value  # ObjectStoragePath (not os.PathLike on Airflow 3.3) or pathlib.Path
    if isinstance(value, os.PathLike):
        return Path(value)
    if not isinstance(value, str) or not value.strip():
        raise exc.JoggConfigError(f"{role} must be a URL, a path or an ObjectStoragePath, got {value!r}.")
    value = value.strip()
    parts = urlsplit(value)
    if parts.scheme in ("", "file") or (len(parts.scheme) == 1 and os.name == "nt"):
        return Path(unquote(parts.path) if parts.scheme == "file" else value).expanduser()
    from airflow.sdk import ObjectStoragePath

    try:
        return ObjectStoragePath(value)
    except (ValueError, ImportError) as error:  # unknown scheme, or its filesystem package missing
        raise exc.JoggConfigError(f"{role} {value!r} cannot be opened: {error}") from None


def is_local_path(path: Any) -> bool:
    """A path of this machine's file system (a pathlib path, not an object-storage path)."""
    # before universal-pathlib 0.3 (Airflow 3.0), ObjectStoragePath subclassed pathlib.Path
    return isinstance(path, Path) and not hasattr(path, "protocol")


def content_type_for(name: str, role: str) -> str:
    """The content type of a media file by its name; rejects what Jogg would not take for ``role``."""
    allowed = _TYPES_FOR_ROLE.get(role)
    suffix = Path(name).suffix.lower()
    if allowed is None:
        guessed = mimetypes.guess_type(name)[0]
        if guessed:
            return guessed
        raise exc.JoggConfigError(
            f"Cannot tell the content type of {name!r} from its name; pass content_type, "
            "e.g. 'video/mp4' or 'audio/mpeg'."
        )
    if suffix not in allowed:
        raise exc.JoggConfigError(
            f"{role} {name!r} is not {'a video' if role == 'video_url' else 'an audio'} file Jogg takes: "
            "use one of "
            f"{', '.join(sorted(allowed))}."
        )
    return allowed[suffix]


@dataclass(frozen=True)
class MediaFile:
    """A checked file to upload: its name, size, content type and how to open it."""

    name: str
    size: int
    content_type: str
    location: str
    open: Callable[[], BinaryIO]


def inspect_file(value: Any, role: str, content_type: str | None = None) -> MediaFile:
    """Check a file input before any request: it exists, is a file, is not empty, has a usable type."""
    path = to_path(value, role)
    location = str(path)
    try:
        is_file = path.is_file()
        size = int(path.stat().st_size) if is_file else 0
    except (OSError, ValueError) as error:
        raise exc.JoggConfigError(f"{role} {location!r} cannot be read: {error}") from None
    if not is_file:
        raise exc.JoggConfigError(f"{role} {location!r}: no such file (or it is not a file).")
    if size < 1:
        raise exc.JoggConfigError(f"{role} {location!r}: the file is empty.")
    content_type = content_type or content_type_for(path.name, role)
    return MediaFile(
        name=path.name,
        size=size,
        content_type=content_type,
        location=location,
        open=lambda: path.open("rb"),
    )


def sha256_of(media: MediaFile) -> str:
    """The hex SHA-256 of a file's content, read through ``media.open()`` in chunks (never whole)."""
    digest = hashlib.sha256()
    with media.open() as stream:
        while chunk := stream.read(DIGEST_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


class DigestingFile:
    """
    A :class:`MediaFile` whose every ``open()`` hashes what is read from it, so that uploading the
    file also yields its SHA-256, without reading it a second time.

    :attr:`sha256` is the digest of the last ``open()`` read to its end (an upload sent again after
    a failure opens the file again and starts over), ``None`` before that. It is the digest of the
    bytes the upload sent, even if the file changed meanwhile.
    """

    def __init__(self, media: MediaFile) -> None:
        self._source = media
        self.sha256: str | None = None
        self.media = dataclasses.replace(media, open=self._open)

    def _open(self) -> BinaryIO:
        # duck-typed: requests only reads it, and knows its length from __len__
        return cast("BinaryIO", _HashingReader(self._source.open(), self._source.size, self._finished))

    def _finished(self, hexdigest: str) -> None:
        self.sha256 = hexdigest


class _HashingReader:
    """
    A read-only stream over ``stream`` that hashes what passes through.

    ``requests`` sends it as a body of known length: ``__len__`` gives the size (the object has no
    ``tell``/``fileno`` on purpose, which would make requests measure it or fall back to chunked
    encoding), and ``read``/``__iter__`` let requests and urllib3 stream it.
    """

    def __init__(self, stream: BinaryIO, size: int, on_end: Callable[[str], None]) -> None:
        self._stream = stream
        self._size = size
        self._on_end = on_end
        self._hash = hashlib.sha256()
        self._ended = False

    def read(self, size: int = -1) -> bytes:
        chunk = self._stream.read(size)
        if chunk:
            self._hash.update(chunk)
        elif not self._ended and size != 0:
            self._ended = True
            self._on_end(self._hash.hexdigest())
        return chunk

    def __len__(self) -> int:
        return self._size

    def __iter__(self) -> Iterator[bytes]:
        while chunk := self.read(DIGEST_CHUNK):
            yield chunk

    def close(self) -> None:
        self._stream.close()

    def __enter__(self) -> _HashingReader:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


def partial_name(path: Any, token: str) -> Any:
    """Where a download is written before it is complete: same folder, a name that is clearly partial."""
    return path.with_name(f".{path.name}.partial-{token}")
