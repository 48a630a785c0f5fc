"""LipSyncOperator: validation after rendering, one create request, errors that say what happened."""

from __future__ import annotations

import datetime
import textwrap

import pytest

from airflow_provider_jogg import exceptions as exc
from airflow_provider_jogg._compat import AirflowFailException
from airflow_provider_jogg.operators.lip_sync import LipSyncOperator
from airflow_provider_jogg.protocol import CREATE_PATH
from airflow_provider_jogg.testing import Fault
from airflow_provider_jogg.testing.dagrun import load_dag

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
    jogg_conn.add_fault(Fault("status", status=502, path=CREATE_PATH))
    with pytest.raises(exc.JoggCreateUncertainError, match="may have been created") as info:
        operator().execute({})
    assert isinstance(info.value, AirflowFailException)
    assert "502" in str(info.value)
    assert jogg_conn.create_count == 1


def test_rate_limit_is_retried_to_exactly_one_task(jogg_conn):
    jogg_conn.add_fault(Fault("status", status=429, path=CREATE_PATH, times=2))
    task_id = operator().execute({})
    assert list(jogg_conn.tasks) == [task_id]
    assert jogg_conn.create_count == 3


#: wait settings no wait can use: a zero or negative interval polls in a tight loop, NaN compares
#: false with everything, infinity never polls again; a bool or a string is a mistake
BAD_WAIT_SECONDS = [0, -1, -0.5, float("nan"), float("inf"), True, "10", None]
BAD_WAIT_IDS = ["zero", "negative", "negative-fraction", "nan", "inf", "bool", "string", "none"]


@pytest.mark.parametrize("name", ["poke_interval", "timeout"])
@pytest.mark.parametrize("value", BAD_WAIT_SECONDS, ids=BAD_WAIT_IDS)
def test_bad_wait_seconds_are_refused_at_construction(name, value):
    with pytest.raises(exc.JoggConfigError, match=name) as info:
        operator(**{name: value})
    assert repr(value) in str(info.value)
    assert isinstance(info.value, AirflowFailException)


def test_wait_seconds_accept_fractions_and_timedeltas():
    op = operator(poke_interval=0.05, timeout=datetime.timedelta(minutes=2))
    assert (op.poke_interval, op.timeout) == (0.05, 120.0)


def test_a_bad_poke_interval_is_a_dag_parse_error_naming_it(tmp_path):
    dag_file = tmp_path / "bad_poke_interval.py"
    dag_file.write_text(
        textwrap.dedent(
            """
            import datetime
            from airflow.sdk import DAG
            from airflow_provider_jogg.operators.lip_sync import LipSyncOperator

            with DAG(dag_id="bad_poke_interval", schedule=None, start_date=datetime.datetime(2026, 1, 1)):
                LipSyncOperator(
                    task_id="lip_sync",
                    video_url="https://m.example/v.mp4",
                    audio_url="https://m.example/a.mp3",
                    wait_for_completion=True,
                    poke_interval=0,
                )
            """
        )
    )
    with pytest.raises(RuntimeError, match="poke_interval must be") as info:
        load_dag(dag_file, "bad_poke_interval")
    assert "JoggConfigError" in str(info.value)
