"""How long a media file plays, without downloading it: its container header, else a local ffprobe.

Used by the batch's credit budget (:mod:`airflow_provider_jogg.batch.budget`) to estimate what a
batch costs before anything is created. Reading is cheap on purpose: a few small positioned reads
(see :mod:`airflow_provider_jogg.batch.containers`), and object-storage files are opened with a
small block size so that those reads are small range requests, not the filesystem's default
read-ahead of many megabytes.
"""

from __future__ import annotations

import logging
import math
import shutil
import subprocess
from pathlib import Path
from typing import Any

from airflow_provider_jogg import exceptions as exc
from airflow_provider_jogg.batch.containers import Source, header_duration
from airflow_provider_jogg.media_inputs import is_http_url, is_local_path, to_path

log = logging.getLogger(__name__)

#: block size for object-storage reads: one range request covers a header and its first frames
#: (s3fs would otherwise fetch 50 MiB ahead on the first read)
STORAGE_BLOCK_SIZE = 64 * 1024
#: seconds an ffprobe run may take before it is killed (it reads a local file's header)
FFPROBE_TIMEOUT = 30.0


def media_duration(location: Any) -> float | None:
    """
    The duration in seconds of a media file, or ``None`` when it cannot be told.

    :param location: a local path, a ``file://`` or object-storage URI (``s3://``, ...), or an
        ``ObjectStoragePath``. An ``http(s)`` URL gives ``None``: it is not fetched.

    The container header is read first (WAV, MP3, MP4/M4A/MOV, FLAC, Ogg Vorbis/Opus, AAC ADTS);
    when it says nothing and the file is local, ``ffprobe`` is asked if one is on ``PATH``. Never
    raises for a missing, unreadable or unknown file: the caller counts it as not measured.
    """
    if is_http_url(location):
        return None
    try:
        path = to_path(location, "audio")
    except exc.JoggConfigError as error:
        log.debug("Cannot measure %r: %s", location, error)
        return None
    seconds = _from_header(path)
    if seconds is None:
        local = _local_file(path)
        if local is not None:
            seconds = _from_ffprobe(local)
    return seconds


def _open(path: Any) -> Any:
    if is_local_path(path):
        return path.open("rb")
    try:
        return path.open("rb", block_size=STORAGE_BLOCK_SIZE, cache_type="readahead")
    except TypeError:  # an opener that takes no fsspec options
        return path.open("rb")


def _from_header(path: Any) -> float | None:
    # Any error of any filesystem (botocore, gcsfs, permissions, a broken connection) only means
    # "not measured" here: the upload that follows reports the file's real problem.
    try:
        with _open(path) as stream:
            stream.seek(0, 2)
            size = stream.tell()
            seconds = header_duration(Source(stream, size))
    except Exception as error:
        log.debug("Cannot read the header of %s: %s: %s", path, type(error).__name__, error)
        return None
    return seconds if seconds is not None and math.isfinite(seconds) else None


def _local_file(path: Any) -> Path | None:
    """The local path of ``path``, for ffprobe: pathlib paths and ``file`` object-storage paths."""
    if is_local_path(path):
        return Path(path)
    if getattr(path, "protocol", None) in ("file", "local") and isinstance(getattr(path, "path", None), str):
        return Path(path.path)
    return None


def _from_ffprobe(path: Path) -> float | None:
    ffprobe = shutil.which("ffprobe")
    if ffprobe is None or not path.is_file():
        return None
    command = [ffprobe, "-v", "error", "-show_entries", "format=duration", "-of", "csv=p=0", str(path)]
    try:
        done = subprocess.run(
            command, stdin=subprocess.DEVNULL, capture_output=True, timeout=FFPROBE_TIMEOUT, check=False
        )
        seconds = float(done.stdout.decode("ascii", "replace").strip()) if done.returncode == 0 else None
    except (OSError, subprocess.TimeoutExpired, ValueError) as error:  # "N/A", a crash, a hang
        log.debug("ffprobe could not measure %s: %s", path, error)
        return None
    return seconds if seconds is not None and math.isfinite(seconds) and seconds > 0 else None
