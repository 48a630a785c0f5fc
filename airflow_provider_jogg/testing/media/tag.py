"""Tagging a result MP4 with the task and the clip it was made for, and reading the tag back.

At batch scale (thousands of clips) the fake server cannot afford one ffmpeg mux per clip, and
results built from the shipped samples are all alike. A tag makes each result tell which task and
which clip it belongs to, at the cost of a few hundred bytes: a top-level ISO BMFF ``uuid`` box
(ISO/IEC 14496-12, 4.2) appended after the file's last box, holding a JSON object. Players and
ffprobe skip boxes they do not know, and appending after the last box moves no sample offset, so
the tagged file plays exactly as the untagged one.
"""

from __future__ import annotations

import json
import struct
from typing import Any

__all__ = ["RESULT_TAG_UUID", "result_tag", "tag_result"]

#: The extended type of the fake's tag box (a fixed, random UUID: it names this format only).
RESULT_TAG_UUID = bytes.fromhex("6a6f67676661b4e59a7c1d2e3f405162")

_HEADER = struct.Struct(">I4s")


def tag_result(video: bytes, tag: dict[str, Any]) -> bytes:
    """``video`` followed by a ``uuid`` box holding ``tag`` as JSON (see :func:`result_tag`)."""
    payload = json.dumps(tag, separators=(",", ":"), sort_keys=True).encode("utf-8")
    box = _HEADER.pack(_HEADER.size + len(RESULT_TAG_UUID) + len(payload), b"uuid")
    return b"".join((video, box, RESULT_TAG_UUID, payload))


def result_tag(data: bytes) -> dict[str, Any] | None:
    """The tag of a result tagged by :func:`tag_result`, or ``None`` when it has none.

    The fake server's tag (``FakeJoggServer(tag_results=True)``) is
    ``{"task_id": ..., "video_url": ..., "audio_url": ..., "playback_type": ...}``: compare it with
    the clip a result was downloaded for. Walks the file's top-level boxes, so a file that is not
    an MP4 (or is truncated) gives ``None`` rather than a tag read out of its media data.
    """
    offset, end = 0, len(data)
    found: dict[str, Any] | None = None
    while offset + _HEADER.size <= end:
        size, kind = _HEADER.unpack_from(data, offset)
        header = _HEADER.size
        if size == 1:  # 64-bit size follows the type
            if offset + 16 > end:
                return None
            (size,) = struct.unpack_from(">Q", data, offset + 8)
            header = 16
        elif size == 0:  # the box runs to the end of the file
            size = end - offset
        if size < header or offset + size > end:
            return None
        if kind == b"uuid" and data[offset + header : offset + header + 16] == RESULT_TAG_UUID:
            try:
                value = json.loads(data[offset + header + 16 : offset + size])
            except (ValueError, UnicodeDecodeError):
                return None
            found = value if isinstance(value, dict) else None
        offset += size
    return found if offset == end else None
