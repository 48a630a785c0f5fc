"""
media_duration on real media made with the dev extra's static ffmpeg, checked against that build's
ffprobe (tests/media_binaries.py): local files, ``file://`` object storage, moto's S3 on loopback.
"""

from __future__ import annotations

import http.server
import itertools
import random
import struct
import subprocess
import threading
from typing import TYPE_CHECKING, Any

import pytest

from airflow_provider_jogg.batch import durations
from airflow_provider_jogg.batch.containers import Source, header_duration
from airflow_provider_jogg.batch.durations import STORAGE_BLOCK_SIZE, media_duration
from tests.dags.media_fixtures import probe
from tests.media_binaries import FFMPEG, FFPROBE

if TYPE_CHECKING:
    from pathlib import Path

SECONDS = 7.3
#: how far our header reading may be from ffprobe's own: under one MP3 frame (26 ms), so an
#: encoder's padding left in would show
TOLERANCE = 0.01
SINE = ("-f", "lavfi", "-i", f"sine=frequency=440:sample_rate=44100:duration={SECONDS}")
VIDEO = ("-f", "lavfi", "-i", f"testsrc2=size=160x120:rate=25:duration={SECONDS}")
H264 = ("-c:v", "libx264", "-preset", "ultrafast", "-pix_fmt", "yuv420p")
#: file name -> ffmpeg arguments (inputs and codec); each is a format media_duration reads itself
FORMATS: dict[str, tuple[str, ...]] = {
    "pcm.wav": (*SINE, "-c:a", "pcm_s16le"),
    "float.wav": (*SINE, "-ac", "2", "-c:a", "pcm_f32le"),
    "extensible.wav": (*SINE, "-ac", "2", "-c:a", "pcm_s24le"),
    "rf64.wav": (*SINE, "-c:a", "pcm_s16le", "-rf64", "always"),
    "cbr.mp3": (*SINE, "-c:a", "libmp3lame", "-b:a", "128k"),
    "vbr.mp3": (*SINE, "-c:a", "libmp3lame", "-q:a", "4"),
    "cbr-no-xing.mp3": (*SINE, "-c:a", "libmp3lame", "-b:a", "64k", "-write_xing", "0"),
    "mpeg2-22khz.mp3": (*SINE, "-ar", "22050", "-c:a", "libmp3lame", "-b:a", "32k", "-write_xing", "0"),
    "aac.m4a": (*SINE, "-c:a", "aac"),
    "moov-at-end.mp4": (*VIDEO, *SINE, *H264, "-c:a", "aac", "-shortest"),
    "faststart.mp4": (*VIDEO, *SINE, *H264, "-c:a", "aac", "-shortest", "-movflags", "+faststart"),
    "video.mov": (*VIDEO, *SINE, *H264, "-c:a", "aac", "-shortest"),
    "audio.flac": (*SINE, "-c:a", "flac"),
    "vorbis.ogg": (*SINE, "-ac", "2", "-c:a", "vorbis", "-strict", "-2"),
    "opus.ogg": (*SINE, "-c:a", "libopus"),
    "flac.ogg": (*SINE, "-c:a", "flac"),
}
_buckets = itertools.count()


def encode(path: Path, *args: str) -> Path:
    done = subprocess.run(
        [FFMPEG, "-hide_banner", "-nostdin", "-y", "-loglevel", "error", *args, str(path)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    return path


def ffprobe_seconds(path: Path) -> float:
    return float(probe(path)["duration"])


@pytest.fixture(scope="module")
def media(tmp_path_factory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("durations")
    return {name: encode(folder / name, *args) for name, args in FORMATS.items()}


@pytest.fixture
def no_ffprobe(tmp_path, monkeypatch) -> None:
    """No ffprobe on PATH: what a worker without ffmpeg installed has."""
    empty = tmp_path / "empty-bin"
    empty.mkdir()
    monkeypatch.setenv("PATH", str(empty))


@pytest.fixture
def ffprobe_on_path(tmp_path, monkeypatch) -> Path:
    """The wheel's ffprobe as ``ffprobe``, alone on PATH: found by name, as on a worker that has it."""
    folder = tmp_path / "bin"
    folder.mkdir()
    (folder / "ffprobe").symlink_to(FFPROBE)
    monkeypatch.setenv("PATH", str(folder))
    return folder / "ffprobe"


# --------------------------------------------------------------------------------------------------
# Local files, from the header alone
# --------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", sorted(FORMATS))
def test_header_duration_matches_ffprobe(media, name, no_ffprobe):
    path = media[name]
    assert media_duration(path) == pytest.approx(ffprobe_seconds(path), abs=TOLERANCE)
    assert media_duration(str(path)) == media_duration(path)
    assert media_duration(path.as_uri()) == media_duration(path)


def test_the_wav_cases_are_the_ones_named(media):
    """The parametrized WAVs do cover WAVE_FORMAT_EXTENSIBLE and RF64 (a new ffmpeg could change that)."""
    assert media["extensible.wav"].read_bytes()[20:22] == struct.pack("<H", 0xFFFE)
    assert media["rf64.wav"].read_bytes()[:4] == b"RF64"
    assert media["vbr.mp3"].read_bytes()[:3] == b"ID3"  # ffmpeg's ID3v2 tag is skipped
    head = media["moov-at-end.mp4"].read_bytes()
    assert head.find(b"moov") > head.find(b"mdat")
    head = media["faststart.mp4"].read_bytes()
    assert head.find(b"moov") < head.find(b"mdat")


def test_adts_aac_is_estimated_from_its_first_frames(tmp_path, no_ffprobe):
    path = encode(tmp_path / "raw.aac", *SINE, "-c:a", "aac", "-f", "adts")
    # ADTS has no length anywhere; ffprobe estimates it too: the real length is the reference
    assert media_duration(path) == pytest.approx(SECONDS, rel=0.02)


def test_a_wav_written_to_a_pipe_runs_to_the_end_of_the_file(tmp_path, no_ffprobe):
    """A WAV streamed to a pipe has no data size (ffmpeg leaves 0xFFFFFFFF): the data is the rest."""
    done = subprocess.run(
        [FFMPEG, "-hide_banner", "-nostdin", "-loglevel", "error", *SINE, "-f", "wav", "pipe:1"],
        capture_output=True,
        timeout=120,
        check=True,
    )
    path = tmp_path / "streamed.wav"
    path.write_bytes(done.stdout)
    data = done.stdout.index(b"data")
    assert struct.unpack("<I", done.stdout[data + 4 : data + 8])[0] == 0xFFFFFFFF
    assert media_duration(path) == pytest.approx(SECONDS, abs=TOLERANCE)


def test_64_bit_box_sizes(media, tmp_path, no_ffprobe):
    """
    The mdat of a file over 4 GiB has a 64-bit size. ffmpeg reserves a ``free`` box before mdat for
    that header; turning it into one gives the same file layout as a large recording.
    """
    data = media["moov-at-end.mp4"].read_bytes()
    free = data.index(b"\x00\x00\x00\x08free")
    mdat_size = struct.unpack(">I", data[free + 8 : free + 12])[0]
    assert data[free + 12 : free + 16] == b"mdat"
    large = data[:free] + struct.pack(">I4sQ", 1, b"mdat", mdat_size + 8) + data[free + 16 :]
    path = tmp_path / "large-boxes.mp4"
    path.write_bytes(large)
    assert ffprobe_seconds(path) == pytest.approx(SECONDS, abs=TOLERANCE)  # still a valid file
    assert media_duration(path) == pytest.approx(ffprobe_seconds(path), abs=TOLERANCE)


def test_fragmented_mp4_uses_the_movie_extends_header(tmp_path, no_ffprobe):
    """mvhd of a fragmented file covers only the samples in moov; mehd (when written) has the total."""
    path = encode(tmp_path / "fragmented.m4a", *SINE, "-c:a", "aac", "-movflags", "+frag_keyframe")
    assert media_duration(path) is None  # ffmpeg writes no mehd: only the fragments know
    data = path.read_bytes()
    mvex = data.index(b"mvex") - 4
    moov = data.index(b"moov") - 4
    mehd = struct.pack(">I4sII", 16, b"mehd", 0, 7300)  # version 0, 7.3 s at mvhd's timescale 1000
    assert struct.unpack(">I", data[data.index(b"mvhd") + 16 : data.index(b"mvhd") + 20])[0] == 1000

    def grow(blob: bytes, at: int) -> bytes:
        return blob[:at] + struct.pack(">I", struct.unpack(">I", blob[at : at + 4])[0] + 16) + blob[at + 4 :]

    data = grow(grow(data, moov), mvex)
    (tmp_path / "with-mehd.m4a").write_bytes(data[: mvex + 8] + mehd + data[mvex + 8 :])
    assert media_duration(tmp_path / "with-mehd.m4a") == pytest.approx(7.3)


# --------------------------------------------------------------------------------------------------
# What cannot be measured gives None, never an error
# --------------------------------------------------------------------------------------------------
def _cut(source: Path, target: Path, size: int) -> Path:
    target.write_bytes(source.read_bytes()[:size])
    return target


@pytest.mark.parametrize("with_ffprobe", [False, True], ids=["no-ffprobe", "ffprobe-on-path"])
def test_unreadable_files_give_none(media, tmp_path, request, with_ffprobe):
    request.getfixturevalue("ffprobe_on_path" if with_ffprobe else "no_ffprobe")
    noise = random.Random(16).randbytes(200_000)
    folder = tmp_path / "folder.wav"
    folder.mkdir()
    cases = {
        "garbage.mp3": tmp_path / "garbage.mp3",
        "garbage.wav": tmp_path / "garbage.wav",
        "garbage.m4a": tmp_path / "garbage.m4a",
        "empty.flac": tmp_path / "empty.flac",
        "wav cut inside its header": _cut(media["pcm.wav"], tmp_path / "cut.wav", 30),
        "flac cut inside STREAMINFO": _cut(media["audio.flac"], tmp_path / "cut.flac", 20),
        "mp4 cut before its moov": _cut(media["moov-at-end.mp4"], tmp_path / "cut.mp4", 40_000),
        "ogg cut after its first page": _cut(media["vorbis.ogg"], tmp_path / "cut.ogg", 58),
        "missing": tmp_path / "missing.mp3",
        "a folder": folder,
    }
    for name in ("garbage.mp3", "garbage.wav", "garbage.m4a"):
        cases[name].write_bytes(noise)
    cases["empty.flac"].write_bytes(b"")
    assert {name: media_duration(path) for name, path in cases.items()} == dict.fromkeys(cases)


@pytest.mark.parametrize("value", [None, "", "   ", 42, "unknownscheme://bucket/a.mp3"])
def test_values_that_are_no_location_give_none(value):
    assert media_duration(value) is None


def test_http_urls_are_not_fetched(media):
    hits: list[str] = []
    body = media["pcm.wav"].read_bytes()

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            hits.append(self.path)
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: Any) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}/dub.wav"
        assert media_duration(url) is None
        assert media_duration(url.replace("http", "HTTPS", 1)) is None
    finally:
        server.shutdown()
        server.server_close()
        thread.join()
    assert hits == []


# --------------------------------------------------------------------------------------------------
# ffprobe, for local files whose header is not read here
# --------------------------------------------------------------------------------------------------
def test_ffprobe_measures_what_the_header_reader_does_not(tmp_path, ffprobe_on_path):
    matroska = encode(tmp_path / "dub.mka", *SINE, "-c:a", "aac")
    assert header_duration(Source(matroska.open("rb"), matroska.stat().st_size)) is None
    assert media_duration(matroska) == pytest.approx(ffprobe_seconds(matroska), abs=0.001)


def test_without_ffprobe_such_a_file_is_not_measured(tmp_path, no_ffprobe):
    matroska = encode(tmp_path / "dub.mka", *SINE, "-c:a", "aac")
    assert media_duration(matroska) is None


def test_ffprobe_that_cannot_read_the_file_gives_none(tmp_path, ffprobe_on_path):
    path = tmp_path / "dub.mka"
    path.write_bytes(random.Random(3).randbytes(4096))
    assert media_duration(path) is None


# --------------------------------------------------------------------------------------------------
# Object storage: file:// and moto's S3, read in ranges
# --------------------------------------------------------------------------------------------------
def test_file_object_storage_paths(media, tmp_path, ffprobe_on_path):
    from airflow.sdk import ObjectStoragePath

    for name in ("pcm.wav", "vbr.mp3", "moov-at-end.mp4", "opus.ogg"):
        assert media_duration(ObjectStoragePath(media[name].as_uri())) == media_duration(media[name])
    matroska = encode(tmp_path / "dub.mka", *SINE, "-c:a", "aac")  # a local file: ffprobe can read it
    assert media_duration(ObjectStoragePath(matroska.as_uri())) == pytest.approx(ffprobe_seconds(matroska))


class CountingPath:
    """An object-storage path whose every open is recorded, with the bytes read through it."""

    def __init__(self, path: Any) -> None:
        self._path = path
        self.name = path.name
        self.bytes_read = 0
        self.files: list[Any] = []

    def stat(self) -> Any:
        return self._path.stat()

    def open(self, mode: str = "rb", **options: Any) -> Any:
        handle = self._path.open(mode, **options)
        self.files.append(handle)
        read = handle.read

        def counting_read(size: int = -1) -> bytes:
            data = read(size)
            self.bytes_read += len(data)
            return data

        handle.read = counting_read
        return handle


@pytest.fixture(scope="module")
def large_media(tmp_path_factory) -> dict[str, Path]:
    """Two minutes of audio, so that reading the whole file and reading a header differ by far."""
    folder = tmp_path_factory.mktemp("large")
    sine = ("-f", "lavfi", "-i", "sine=frequency=440:sample_rate=48000:duration=120")
    return {
        "long.wav": encode(folder / "long.wav", *sine, "-c:a", "pcm_s16le"),
        "long.m4a": encode(folder / "long.m4a", *sine, "-c:a", "aac", "-b:a", "256k"),
        "long.mp3": encode(folder / "long.mp3", *sine, "-c:a", "libmp3lame", "-b:a", "320k"),
        "long.ogg": encode(folder / "long.ogg", *sine, "-c:a", "libopus", "-b:a", "128k"),
    }


def test_s3_objects_are_measured_from_a_few_ranges(large_media, s3, monkeypatch, ffprobe_on_path):
    from airflow.sdk import ObjectStoragePath
    from s3fs.core import S3File

    bucket = f"jogg-durations-{next(_buckets)}"
    s3.create_bucket(Bucket=bucket)
    fetched: list[tuple[int, int]] = []
    fetch_range = S3File._fetch_range

    def spy(self: S3File, start: int, end: int) -> bytes:
        fetched.append((start, end))
        return fetch_range(self, start, end)

    monkeypatch.setattr(S3File, "_fetch_range", spy)
    for name, local in large_media.items():
        s3.put_object(Bucket=bucket, Key=f"dubs/{name}", Body=local.read_bytes())
        remote = CountingPath(ObjectStoragePath(f"s3://aws_default@{bucket}/dubs/{name}"))
        fetched.clear()
        size = local.stat().st_size
        assert size > 1_500_000

        assert media_duration(remote) == pytest.approx(ffprobe_seconds(local), abs=TOLERANCE), name
        transferred = sum(end - start for start, end in fetched)
        assert remote.files, name
        assert remote.bytes_read < 2 * STORAGE_BLOCK_SIZE, name
        assert 0 < transferred <= 4 * STORAGE_BLOCK_SIZE < size // 5, (name, fetched)


def test_an_s3_object_that_is_not_there_gives_none(s3):
    from airflow.sdk import ObjectStoragePath

    bucket = f"jogg-durations-{next(_buckets)}"
    s3.create_bucket(Bucket=bucket)
    assert media_duration(ObjectStoragePath(f"s3://aws_default@{bucket}/missing.wav")) is None
    assert media_duration(f"s3://aws_default@{bucket}/missing.wav") is None


def test_ffprobe_never_runs_on_object_storage(tmp_path, s3, ffprobe_on_path, monkeypatch):
    """ffprobe would download the object: an unreadable s3 header is simply not measured."""
    bucket = f"jogg-durations-{next(_buckets)}"
    s3.create_bucket(Bucket=bucket)
    matroska = encode(tmp_path / "dub.mka", *SINE, "-c:a", "aac")
    s3.put_object(Bucket=bucket, Key="dub.mka", Body=matroska.read_bytes())
    runs: list[Any] = []
    monkeypatch.setattr(durations.subprocess, "run", lambda *a, **k: runs.append(a))
    assert media_duration(f"s3://aws_default@{bucket}/dub.mka") is None
    assert runs == []
