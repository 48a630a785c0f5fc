"""Building a task's result with ffmpeg: its video with its audio muxed in, a JPEG cover, the duration.

Results are cached per process by (binaries, input contents, playback type): most tasks of a test
suite use the same inputs (the shipped samples), and one build serves them all.
"""

from __future__ import annotations

import hashlib
import re
import tempfile
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path

from airflow_provider_jogg.testing.media.tools import (
    InputInfo,
    MediaError,
    log,
    probe_duration,
    probe_inputs,
    run,
    tail,
)

__all__ = ["BuiltMedia", "MediaInput", "build_result", "clear_results"]

# Results built from the same inputs are shared by every server of the process (most tasks in a
# test suite use external URLs, i.e. the same shipped samples): at most this many, each at most
# _CACHE_MAX_BYTES big.
_CACHE_SIZE = 16
_CACHE_MAX_BYTES = 8 * 1024 * 1024

_SUFFIX_RE = re.compile(r"\.[0-9A-Za-z]{1,8}$")


@dataclass(frozen=True)
class MediaInput:
    """One input of a build: bytes (an uploaded asset) or a file (a shipped sample).

    ``name`` is the original file name; only its extension is used, as a hint for ffmpeg.
    """

    data: bytes | None = None
    path: Path | None = None
    name: str = ""

    def digest(self) -> str:
        """SHA-256 of the content (the cache key)."""
        if self.data is not None:
            return hashlib.sha256(self.data).hexdigest()
        assert self.path is not None
        return hashlib.sha256(self.path.read_bytes()).hexdigest()

    def materialise(self, directory: Path, stem: str) -> Path:
        """A path ffmpeg can read: the shipped file itself, or the bytes written in ``directory``."""
        if self.data is None:
            assert self.path is not None
            return self.path
        match = _SUFFIX_RE.search(self.name or "")
        target = directory / (stem + (match.group(0).lower() if match else ".bin"))
        target.write_bytes(self.data)
        return target


@dataclass(frozen=True)
class BuiltMedia:
    """A task's result: MP4 bytes, JPEG cover bytes and the MP4's duration.

    ``duration`` is ``None`` when unknown (the server then reports its configured
    ``duration_seconds``). ``from_ffmpeg`` tells a real mux from the shipped fallback; ``note``
    says why the fallback was used, if it was.
    """

    video: bytes
    cover: bytes
    duration: float | None
    from_ffmpeg: bool
    note: str | None = None


def _mux_command(
    ffmpeg: str,
    video: Path,
    audio: Path,
    out: Path,
    playback_type: str,
    info: tuple[InputInfo, InputInfo],
    *,
    copy_video: bool,
) -> list[str]:
    """The ffmpeg command muxing ``video`` and ``audio`` into ``out`` (see :func:`build_result`)."""
    video_info, audio_info = info
    loop = playback_type != "normal"
    cmd = [ffmpeg, "-hide_banner", "-nostdin", "-y", "-loglevel", "error"]
    if loop:
        cmd += ["-stream_loop", "-1"]
    cmd += ["-i", str(video), "-i", str(audio), "-map", "0:v:0", "-map", "1:a:0", "-sn", "-dn"]
    if copy_video:
        cmd += ["-c:v", "copy"]
    else:
        cmd += [
            "-c:v", "libx264", "-preset", "ultrafast", "-pix_fmt", "yuv420p",
            "-vf", "scale=trunc(iw/2)*2:trunc(ih/2)*2",
        ]  # fmt: skip
    cmd += ["-c:a", "aac", "-b:a", "128k"]
    length = audio_info.duration if loop else video_info.duration
    if not loop:
        cmd += ["-af", "apad"]  # silence after a short audio, so the video plays to its end
    cmd += ["-shortest"]
    if length is not None and length > 0:
        cmd += ["-t", f"{length:.3f}"]
    cmd += ["-movflags", "+faststart", "-metadata", "comment=fake-jogg lip-sync result", str(out)]
    return cmd


def _build(
    ffmpeg: str,
    ffprobe: str | None,
    video: MediaInput,
    audio: MediaInput,
    playback_type: str,
    cancel: threading.Event | None,
) -> BuiltMedia:
    """Mux, extract the cover and measure the duration in a temporary folder (always removed)."""
    with tempfile.TemporaryDirectory(prefix="fake-jogg-media-") as tmp:
        folder = Path(tmp)
        video_path = video.materialise(folder, "video")
        audio_path = audio.materialise(folder, "audio")
        video_info, audio_info = probe_inputs(ffmpeg, [video_path, audio_path], cancel)
        if video_info.video_codec is None:
            raise MediaError(f"the video input ({video.name or video_path.name}) has no video stream")
        if audio_info.audio_codec is None:
            raise MediaError(f"the audio input ({audio.name or audio_path.name}) has no audio stream")
        out = folder / "result.mp4"
        # Stream copy keeps an H.264 video as it is; a looped video is re-encoded (copied packets
        # of a looped input give an output that overshoots the requested length).
        can_copy = video_info.video_codec == "h264" and playback_type == "normal"
        attempts = [True, False] if can_copy else [False]
        problems = []
        for copy_video in attempts:
            cmd = _mux_command(
                ffmpeg,
                video_path,
                audio_path,
                out,
                playback_type,
                (video_info, audio_info),
                copy_video=copy_video,
            )
            result = run(cmd, cancel=cancel)
            if result.returncode == 0 and out.is_file() and out.stat().st_size > 0:
                break
            problems.append(f"{'copy' if copy_video else 'libx264'}: {tail(result.stderr)}")
        else:
            raise MediaError("ffmpeg could not mux the inputs: " + "; ".join(problems))

        cover = folder / "cover.jpg"
        cover_cmd = [
            ffmpeg, "-hide_banner", "-nostdin", "-y", "-i", str(out), "-map", "0:v:0",
            "-frames:v", "1", "-q:v", "4", "-c:v", "mjpeg", "-f", "image2", str(cover),
        ]  # fmt: skip
        result = run(cover_cmd, cancel=cancel)
        if result.returncode != 0 or not cover.is_file() or cover.stat().st_size == 0:
            raise MediaError(f"ffmpeg could not extract a cover frame: {tail(result.stderr)}")
        # The cover run printed the result's "Duration:" (centiseconds): used without ffprobe.
        duration = probe_duration(ffprobe, out, result.stderr.decode("utf-8", "replace"), cancel)
        return BuiltMedia(out.read_bytes(), cover.read_bytes(), duration, from_ffmpeg=True)


_cache: OrderedDict[tuple[str, ...], BuiltMedia] = OrderedDict()
_cache_lock = threading.Lock()
_key_locks: dict[tuple[str, ...], threading.Lock] = {}


def clear_results() -> None:
    """Forget the cached results."""
    with _cache_lock:
        _cache.clear()


def build_result(
    ffmpeg: str,
    ffprobe: str | None,
    video: MediaInput,
    audio: MediaInput,
    playback_type: str = "normal",
    *,
    cancel: threading.Event | None = None,
) -> BuiltMedia:
    """Mux ``audio`` into ``video`` with ffmpeg and return the MP4, a JPEG cover and the duration.

    - Video: the first video stream of ``video``, stream-copied when it is H.264 and plays once
      (re-encoded with ``libx264 -preset ultrafast`` if the copy fails), else re-encoded that way
      (yuv420p, even dimensions). Other streams of ``video`` (its own audio included) are dropped.
    - Audio: the first audio stream of ``audio``, encoded as AAC 128 kb/s.
    - Length, following ``playback_type`` loosely: ``normal`` = as long as the video (a longer
      audio is cut, a shorter one padded with silence); ``normal_reverse`` and
      ``normal_reverse_by_audio`` = as long as the audio, the video looping *forward* (no reverse
      playback) as many times as needed. The length is enforced with ``-t`` (the input durations
      are read first with ``ffmpeg -i``) and ``-shortest``.
    - Cover: the first frame of the result, as a JPEG. Duration: ffprobe's ``format=duration`` of
      the result, else the ``Duration:`` line ffmpeg prints when reading it.

    Results are cached per process by (binaries, input contents, playback type), so that many tasks
    with the same inputs cost one build. ``MediaError`` when ffmpeg fails (not cached).
    """
    key = (ffmpeg, ffprobe or "", video.digest(), audio.digest(), playback_type)
    with _cache_lock:
        cached = _cache.get(key)
        if cached is not None:
            _cache.move_to_end(key)
            return cached
        key_lock = _key_locks.setdefault(key, threading.Lock())
    with key_lock:
        with _cache_lock:
            cached = _cache.get(key)
        if cached is not None:
            return cached
        started = time.monotonic()
        try:
            built = _build(ffmpeg, ffprobe, video, audio, playback_type, cancel)
        finally:
            with _cache_lock:
                _key_locks.pop(key, None)
        log.debug("built a %d-byte result in %.2fs", len(built.video), time.monotonic() - started)
        if len(built.video) + len(built.cover) <= _CACHE_MAX_BYTES:
            with _cache_lock:
                _cache[key] = built
                while len(_cache) > _CACHE_SIZE:
                    _cache.popitem(last=False)
        return built
