"""Real media for the fake JoggAI server: shipped samples, and ffmpeg muxing of a task's inputs.

The fake server answers ``result_url`` with a real, playable MP4 and ``cover_url`` with a real
JPEG so that a whole media pipeline (upload -> lip sync -> download -> transcode) can be tested.
With an ffmpeg binary the result is *the task's video with the task's audio muxed in* (see
:func:`build_result`); without one, the small files shipped in this folder are served as they are
(:mod:`~airflow_provider_jogg.testing.media.samples`).

- :mod:`~airflow_provider_jogg.testing.media.binaries`: locating ffmpeg and ffprobe;
- :mod:`~airflow_provider_jogg.testing.media.tools`: running them and reading their output;
- :mod:`~airflow_provider_jogg.testing.media.build`: building (and caching) a result;
- :mod:`~airflow_provider_jogg.testing.media.samples`: the shipped samples;
- :mod:`~airflow_provider_jogg.testing.media.tag`: the tag naming a result's task and clip.

This package imports the standard library only and runs nothing at import time: ffmpeg is only
looked up (:func:`resolve_ffmpeg`) when a server is created and only run when a result is built.
"""

from __future__ import annotations

from airflow_provider_jogg.testing.media.binaries import packaged_binaries, resolve_ffmpeg, resolve_ffprobe
from airflow_provider_jogg.testing.media.build import BuiltMedia, MediaInput, build_result, clear_results
from airflow_provider_jogg.testing.media.samples import (
    MEDIA_DIR,
    SAMPLE_AUDIO,
    SAMPLE_COVER,
    SAMPLE_VIDEO,
    forget_durations,
    regenerate_samples,
    shipped_media,
)
from airflow_provider_jogg.testing.media.tag import RESULT_TAG_UUID, result_tag, tag_result
from airflow_provider_jogg.testing.media.tools import DEFAULT_TIMEOUT, MediaError

__all__ = [
    "DEFAULT_TIMEOUT",
    "MEDIA_DIR",
    "RESULT_TAG_UUID",
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
    "result_tag",
    "shipped_media",
    "tag_result",
]


def clear_cache() -> None:
    """Forget the results shared between servers (tests use it to force a fresh build)."""
    clear_results()
    forget_durations()
