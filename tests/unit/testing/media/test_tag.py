"""The tag that names a result's task and clip inside the MP4 (``testing.media.tag``)."""

from __future__ import annotations

import struct
from typing import TYPE_CHECKING

import pytest

from airflow_provider_jogg.testing import media
from tests.unit.testing.media.support import SAMPLE_JPG, SAMPLE_MP4, kinds, probe

if TYPE_CHECKING:
    from pathlib import Path

TAG = {"task_id": "t-1", "video_url": "https://media.example/clip-00001.mp4", "audio_url": "a", "n": "é"}


def test_tag_round_trip_keeps_the_video_bytes_in_front() -> None:
    tagged = media.tag_result(SAMPLE_MP4, TAG)
    assert tagged.startswith(SAMPLE_MP4)
    assert media.result_tag(tagged) == TAG
    assert media.result_tag(SAMPLE_MP4) is None  # an untagged MP4 has none


def test_tagged_sample_still_plays_as_the_sample(tmp_path: Path) -> None:
    plain = probe(SAMPLE_MP4, tmp_path, "plain.mp4")
    tagged = probe(media.tag_result(SAMPLE_MP4, TAG), tmp_path, "tagged.mp4")
    assert kinds(tagged) == kinds(plain) == [("video", "h264"), ("audio", "aac")]
    assert tagged["duration"] == plain["duration"]


def test_the_last_tag_wins_and_a_64_bit_box_is_walked() -> None:
    big_free = struct.pack(">I4sQ", 1, b"free", 16 + 3) + b"abc"
    data = media.tag_result(big_free + media.tag_result(SAMPLE_MP4, {"task_id": "old"}), TAG)
    assert media.result_tag(data) == TAG


@pytest.mark.parametrize(
    "data",
    [
        pytest.param(SAMPLE_JPG + media.tag_result(b"", TAG), id="not-an-mp4"),
        pytest.param(media.tag_result(SAMPLE_MP4, TAG)[:-1], id="truncated"),
        pytest.param(media.tag_result(SAMPLE_MP4, TAG) + b"\x00\x00", id="trailing-garbage"),
        pytest.param(SAMPLE_MP4 + struct.pack(">I4s", 24, b"uuid") + media.RESULT_TAG_UUID, id="no-json"),
        pytest.param(
            SAMPLE_MP4 + struct.pack(">I4s", 26, b"uuid") + media.RESULT_TAG_UUID + b"[]", id="not-a-dict"
        ),
        pytest.param(b"", id="empty"),
    ],
)
def test_no_tag_is_read_out_of_a_damaged_file(data: bytes) -> None:
    assert media.result_tag(data) is None
