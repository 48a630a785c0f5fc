"""What the fake server's successful tasks serve: real media built with ffmpeg, or the shipped samples."""

from __future__ import annotations

import logging
import os
import subprocess
import threading
import time
from typing import TYPE_CHECKING, Any

import pytest
import requests

from airflow_provider_jogg.protocol import STATUS_PATH
from airflow_provider_jogg.testing import FakeJoggServer, media
from tests.media_binaries import FFMPEG, FFPROBE
from tests.unit.testing.media.support import (
    CREATE,
    KEY,
    SAMPLE_JPG,
    SAMPLE_MP4,
    download,
    kinds,
    make_audio,
    make_video,
    posix_only,
    probe,
    run_task,
    shell_script,
    upload,
)
from tests.unit.testing.server.support import wait_until

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator
    from pathlib import Path


@pytest.fixture
def make_server(make_server: Callable[..., FakeJoggServer]) -> Callable[..., FakeJoggServer]:
    """The package's ``make_server``, with tasks that finish at once and the wheel's ffmpeg."""

    def make(**kwargs: Any) -> FakeJoggServer:
        kwargs.setdefault("ffmpeg", FFMPEG)
        kwargs.setdefault("pending_seconds", 0)
        kwargs.setdefault("processing_seconds", 0)
        return make_server(**kwargs)

    return make


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
    again = session.get(server.url + STATUS_PATH.format(task_id=data["task_id"]), timeout=5).json()["data"]
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
    status = session.get(server.url + STATUS_PATH.format(task_id=task_id), timeout=5).json()["data"]
    assert status["status"] == "pending"
    assert spawned == []  # no ffmpeg while the task is not done
    data = run_task(session, server, **body)  # a second task, same inputs
    assert spawned, "the first success answer builds the result"
    builds = len(spawned)
    assert data["data"]["duration_seconds"] == pytest.approx(2.0, abs=0.3)
    for _ in range(3):
        session.get(server.url + STATUS_PATH.format(task_id=data["task_id"]), timeout=5)
    result = download(data["data"]["result_url"], "video/mp4")
    download(data["data"]["cover_url"], "image/jpeg")
    assert len(spawned) == builds  # polls and downloads reuse it

    # The first task has the same inputs: its result comes from the process-wide cache.
    assert wait_until(lambda: server.tasks[task_id]["status"] == "success", timeout=5.0)
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


@posix_only
def test_broken_ffmpeg_falls_back_to_the_configured_duration(
    make_server: Callable[..., FakeJoggServer],
    session: requests.Session,
    tmp_path: Path,
    fresh_cache: None,
    spawned: list[list[str]],
) -> None:
    broken = shell_script(tmp_path, "ffmpeg", "echo 'simulated failure' >&2; exit 1")
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
    session.get(server.url + STATUS_PATH.format(task_id=data["task_id"]), timeout=5)
    assert len(spawned) == attempts
    built = server.task_media(data["task_id"])
    assert built is not None
    assert "simulated failure" in (built.note or "")


@posix_only
def test_stop_does_not_wait_for_a_hanging_ffmpeg(
    make_server: Callable[..., FakeJoggServer], tmp_path: Path, fresh_cache: None
) -> None:
    started_marker = tmp_path / "ffmpeg-started"
    hanging = shell_script(tmp_path, "ffmpeg", f"touch {started_marker}\nexec sleep 30")
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
    assert wait_until(started_marker.exists, timeout=30)  # the download is waiting for the build
    assert outcome == []  # still building
    started = time.monotonic()
    server.stop()
    assert time.monotonic() - started < 3
    thread.join(5)
    assert len(outcome) == 1


@pytest.mark.parametrize("use_ffmpeg", [False, True], ids=["shipped", "ffmpeg"])
def test_tagged_results_each_name_their_own_clip(
    make_server: Callable[..., FakeJoggServer], session: requests.Session, tmp_path: Path, use_ffmpeg: bool
) -> None:
    server = make_server(tag_results=True, **({} if use_ffmpeg else {"ffmpeg": False}))
    clips = [
        (f"https://media.example/batch/clip-{index}.mp4", f"https://media.example/batch/voice-{index}.m4a")
        for index in range(3)
    ]
    results = []
    for video_url, audio_url in clips:
        data = run_task(session, server, video_url=video_url, audio_url=audio_url)
        results.append((data["task_id"], download(data["data"]["result_url"], "video/mp4")))
    for (video_url, audio_url), (task_id, result) in zip(clips, results, strict=True):
        assert media.result_tag(result) == {
            "task_id": task_id,
            "video_url": video_url,
            "audio_url": audio_url,
            "playback_type": "normal",
        }
        built = server.task_media(task_id)
        assert built is not None
        assert result.startswith(built.video)  # the built (or shipped) media, then the tag
        assert KEY.encode() not in result
    # the same inputs give the same media, so only the tags tell these results apart
    assert len({result for _, result in results}) == 3
    info = probe(results[0][1], tmp_path, "tagged.mp4")
    assert kinds(info) == [("video", "h264"), ("audio", "aac")]
    assert info["duration"] == pytest.approx(2.0, abs=0.3)


def test_untagged_results_by_default(
    make_server: Callable[..., FakeJoggServer], session: requests.Session
) -> None:
    server = make_server(ffmpeg=False)
    data = run_task(
        session, server, video_url="https://media.example/x.mp4", audio_url="https://media.example/a.m4a"
    )
    result = download(data["data"]["result_url"], "video/mp4")
    assert result == SAMPLE_MP4
    assert media.result_tag(result) is None


def test_tasks_served_the_samples_share_one_copy_of_them(
    make_server: Callable[..., FakeJoggServer], session: requests.Session
) -> None:
    # A batch of thousands of clips must not hold the samples once per task.
    server = make_server(ffmpeg=False)
    built = []
    for index in range(2):
        data = run_task(
            session,
            server,
            video_url=f"https://media.example/{index}.mp4",
            audio_url="https://media.example/a.m4a",
        )
        built.append(server.task_media(data["task_id"]))
    first, second = built
    assert first is not None
    assert second is not None
    assert first.video is second.video
    assert first.cover is second.cover
    assert first.video == SAMPLE_MP4
