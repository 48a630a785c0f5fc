"""LipSyncOperator: validation after rendering, one create request, errors that say what happened."""

from __future__ import annotations

import pytest

from airflow_provider_jogg import exceptions as exc
from airflow_provider_jogg._compat import AirflowFailException
from airflow_provider_jogg.operators.lip_sync import LipSyncOperator
from airflow_provider_jogg.testing import Fault

VIDEO, AUDIO = "https://m.example/v.mp4", "https://m.example/a.mp3"


def operator(**kwargs) -> LipSyncOperator:
    kwargs.setdefault("task_id", "lip_sync")
    kwargs.setdefault("video_url", VIDEO)
    kwargs.setdefault("audio_url", AUDIO)
    return LipSyncOperator(**kwargs)


def test_templated_fields_and_no_validation_at_construction():
    op = operator(
        video_url="{{ params.video }}", audio_url="{{ params.audio }}", playback_type="{{ params.pt }}"
    )
    assert set(op.template_fields) == {
        "video_url",
        "audio_url",
        "playback_type",
        "jogg_conn_id",
        "output_path",
        "cover_output_path",
    }
    assert op.video_url == "{{ params.video }}"
    assert op.jogg_conn_id == "jogg_default"


def test_execute_creates_one_task_and_returns_its_id(jogg_conn):
    task_id = operator(playback_type="normal_reverse_by_audio").execute({})
    assert list(jogg_conn.tasks) == [task_id]
    (create,) = [r for r in jogg_conn.requests if r.method == "POST"]
    assert create.json == {"video_url": VIDEO, "audio_url": AUDIO, "playback_type": "normal_reverse_by_audio"}
    assert jogg_conn.count() == 1  # it never waits for the result


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"video_url": "/local/clip.mp4"}, "video_url"),
        ({"audio_url": "ftp://x/a.mp3"}, "audio_url"),
        ({"video_url": ""}, "video_url"),
        ({"playback_type": "backwards"}, "normal_reverse_by_audio"),
    ],
    ids=["local-path", "ftp", "empty", "playback"],
)
def test_bad_input_fails_before_any_request(jogg_conn, kwargs, match):
    with pytest.raises(exc.JoggConfigError, match=match) as info:
        operator(**kwargs).execute({})
    assert isinstance(info.value, AirflowFailException)  # no Airflow retry for bad input
    assert jogg_conn.count() == 0


def test_ambiguous_failure_is_not_resent_and_not_retried(jogg_conn):
    jogg_conn.add_fault(Fault("status", status=502, path="/v2/create_lip_sync_video"))
    with pytest.raises(exc.JoggCreateUncertainError, match="may have been created") as info:
        operator().execute({})
    assert isinstance(info.value, AirflowFailException)
    assert "502" in str(info.value)
    assert jogg_conn.create_count == 1


def test_rate_limit_is_retried_to_exactly_one_task(jogg_conn):
    jogg_conn.add_fault(Fault("status", status=429, path="/v2/create_lip_sync_video", times=2))
    task_id = operator().execute({})
    assert list(jogg_conn.tasks) == [task_id]
    assert jogg_conn.create_count == 3
