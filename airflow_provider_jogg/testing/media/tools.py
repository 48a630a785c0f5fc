"""Running ffmpeg and ffprobe, and reading what they say about media (durations, streams)."""

from __future__ import annotations

import contextlib
import logging
import os
import re
import subprocess
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import threading
    from pathlib import Path

__all__ = [
    "DEFAULT_TIMEOUT",
    "Cancelled",
    "InputInfo",
    "MediaError",
    "parse_duration",
    "probe_duration",
    "probe_inputs",
    "run",
    "tail",
]

# The module the fake's media logging used before the split: users filter its messages by this name.
log = logging.getLogger("airflow_provider_jogg.testing.media")

#: Seconds one ffmpeg/ffprobe run may take before it is killed.
DEFAULT_TIMEOUT = 120.0

_DURATION_RE = re.compile(r"Duration:\s*(\d+):(\d{2}):(\d{2}(?:\.\d+)?)")
_STREAM_RE = re.compile(r"Stream #\d+:\d+.*?: (Video|Audio): ([0-9A-Za-z_]+)")


class MediaError(Exception):
    """ffmpeg could not build a result (the message says why)."""


class Cancelled(MediaError):
    """The build was abandoned because the server is stopping."""


def run(
    cmd: list[str], *, timeout: float = DEFAULT_TIMEOUT, cancel: threading.Event | None = None
) -> subprocess.CompletedProcess[bytes]:
    """Run ``cmd`` (stdout and stderr captured); kill it on timeout or when ``cancel`` is set."""
    try:
        proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    except OSError as exc:
        raise MediaError(f"cannot run {cmd[0]}: {exc}") from exc
    deadline = time.monotonic() + timeout
    try:
        while True:
            try:
                out, err = proc.communicate(timeout=0.1)
            except subprocess.TimeoutExpired:
                if cancel is not None and cancel.is_set():
                    raise Cancelled("the server is stopping") from None
                if time.monotonic() > deadline:
                    raise MediaError(f"{os.path.basename(cmd[0])} took more than {timeout:g}s") from None
                continue
            return subprocess.CompletedProcess(cmd, proc.returncode, out, err)
    except BaseException:
        with contextlib.suppress(OSError):
            proc.kill()
        with contextlib.suppress(Exception):
            proc.communicate(timeout=5)
        raise


def tail(stderr: bytes, lines: int = 3) -> str:
    """The last lines of a tool's stderr, for an error message."""
    text = stderr.decode("utf-8", "replace").strip().splitlines()
    return " | ".join(line.strip() for line in text[-lines:]) or "no error output"


def parse_duration(text: str) -> float | None:
    """Seconds of the first ``Duration: HH:MM:SS.ss`` line of ffmpeg's stderr (``None``: N/A)."""
    match = _DURATION_RE.search(text)
    if match is None:
        return None
    hours, minutes, seconds = match.groups()
    return int(hours) * 3600 + int(minutes) * 60 + float(seconds)


@dataclass(frozen=True)
class InputInfo:
    """What ``ffmpeg -i`` says about one input."""

    duration: float | None
    video_codec: str | None
    audio_codec: str | None


def probe_inputs(ffmpeg: str, paths: list[Path], cancel: threading.Event | None) -> list[InputInfo]:
    """Durations and first video/audio codec of each input, from ``ffmpeg -i a -i b`` (no output)."""
    cmd = [ffmpeg, "-hide_banner", "-nostdin"]
    for path in paths:
        cmd += ["-i", str(path)]
    result = run(cmd, cancel=cancel)  # exits 1 ("At least one output file must be specified")
    text = result.stderr.decode("utf-8", "replace")
    sections = re.split(r"^Input #(\d+)", text, flags=re.MULTILINE)
    found: dict[int, InputInfo] = {}
    for index in range(1, len(sections) - 1, 2):
        body = sections[index + 1]
        codecs: dict[str, str] = {}
        for kind, codec in _STREAM_RE.findall(body):
            codecs.setdefault(kind, codec)
        found[int(sections[index])] = InputInfo(
            parse_duration(body), codecs.get("Video"), codecs.get("Audio")
        )
    infos = []
    for index, path in enumerate(paths):
        if index not in found:
            raise MediaError(f"ffmpeg cannot read {path.name}: {tail(result.stderr)}")
        infos.append(found[index])
    return infos


def probe_duration(
    ffprobe: str | None, path: Path, fallback_text: str, cancel: threading.Event | None
) -> float | None:
    """Duration of ``path`` by ffprobe, else from ``fallback_text`` (ffmpeg's stderr about it)."""
    if ffprobe:
        result = run(
            [ffprobe, "-v", "error", "-show_entries", "format=duration", "-of", "csv=p=0", str(path)],
            cancel=cancel,
        )
        with contextlib.suppress(ValueError):
            if result.returncode == 0:
                return round(float(result.stdout.decode().strip()), 3)
        log.debug("ffprobe gave no duration for %s: %s", path.name, tail(result.stderr))
    duration = parse_duration(fallback_text)
    return None if duration is None else round(duration, 3)
