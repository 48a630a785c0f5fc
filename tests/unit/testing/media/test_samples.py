"""The shipped sample media and their regeneration."""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest

from airflow_provider_jogg.testing import media
from airflow_provider_jogg.testing.media.samples import shipped_bytes
from tests.media_binaries import FFMPEG
from tests.unit.testing.media.support import (
    SAMPLE_JPG,
    SAMPLE_MP4,
    kinds,
    probe,
)

if TYPE_CHECKING:
    from pathlib import Path

    pass


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


def test_shipped_bytes_are_shared_and_follow_a_changed_file(tmp_path: Path) -> None:
    sample = tmp_path / "sample.bin"
    sample.write_bytes(b"first")
    first = shipped_bytes(sample)
    assert shipped_bytes(sample) is first  # one copy, however many tasks serve it
    sample.write_bytes(b"second, longer")  # e.g. regenerate_samples()
    assert shipped_bytes(sample) == b"second, longer"
