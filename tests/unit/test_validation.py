"""airflow_provider_jogg.validation: inputs checked before any request."""

from __future__ import annotations

import pytest

from airflow_provider_jogg import exceptions as exc
from airflow_provider_jogg.validation import validate_media_url, validate_playback_type, validate_task_id


@pytest.mark.parametrize(
    "url", ["", None, "/tmp/x.mp4", "file:///tmp/x.mp4", "s3://b/k.mp4", "https://", "https://a b/c"], ids=str
)
def test_media_url_must_be_http(url):
    with pytest.raises(exc.JoggConfigError, match="video_url"):
        validate_media_url(url, "video_url")


def test_media_url_ok():
    assert validate_media_url(" https://cdn.example/v.mp4 ", "video_url") == "https://cdn.example/v.mp4"


def test_playback_type_lists_allowed_values():
    assert validate_playback_type("normal_reverse") == "normal_reverse"
    with pytest.raises(exc.JoggConfigError) as info:
        validate_playback_type("reverse")
    for allowed in ("normal", "normal_reverse", "normal_reverse_by_audio"):
        assert allowed in str(info.value)


@pytest.mark.parametrize("value", ["", None, "None", "a/b", "a b", 12])
def test_invalid_task_id(value):
    with pytest.raises(exc.JoggConfigError):
        validate_task_id(value)
