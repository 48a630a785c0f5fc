"""Media helpers shared by the tests of the fake's results and of the media package."""

from __future__ import annotations

import json
import os
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest
import requests

import airflow_provider_jogg
from airflow_provider_jogg.protocol import CREATE_PATH, STATUS_PATH, UPLOAD_PATH
from airflow_provider_jogg.testing import FakeJoggServer, media
from tests.media_binaries import FFMPEG, FFPROBE

KEY = "media-test-key"
CREATE = CREATE_PATH
REPO_ROOT = Path(airflow_provider_jogg.__file__).resolve().parents[1]

posix_only = pytest.mark.skipif(os.name == "nt", reason="uses a shell script as a stand-in ffmpeg")

SAMPLE_MP4 = media.SAMPLE_VIDEO.read_bytes()
SAMPLE_JPG = media.SAMPLE_COVER.read_bytes()


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
        server.url + UPLOAD_PATH,
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
        answer = session.get(server.url + STATUS_PATH.format(task_id=task_id), timeout=30).json()
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


def shell_script(folder: Path, name: str, body: str) -> Path:
    path = folder / name
    path.write_text("#!/bin/sh\n" + body + "\n")
    path.chmod(0o755)
    return path
