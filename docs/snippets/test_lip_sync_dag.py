"""Test a lip-sync DAG offline: the fake Jogg server on loopback, dag.test() in process."""

from __future__ import annotations

import json
import os
import tempfile
from datetime import datetime

# Airflow reads its configuration when first imported: isolate it before anything imports it
os.environ["AIRFLOW_HOME"] = tempfile.mkdtemp(prefix="airflow-test-")
os.environ["AIRFLOW__CORE__LOAD_EXAMPLES"] = "False"

import pytest
from airflow.sdk import DAG

from airflow_provider_jogg.operators.lip_sync import LipSyncOperator
from airflow_provider_jogg.sensors.lip_sync import LipSyncSensor
from airflow_provider_jogg.testing import FakeJoggServer, Fault
from airflow_provider_jogg.testing.dagrun import (
    reset_metadata_db,
    run_dag,
    task_states,
    xcom_value,
)

API_KEY = "test-key-0123456789"


@pytest.fixture(scope="session")
def airflow_db():
    """A fresh SQLite metadata DB in the temporary AIRFLOW_HOME (dag.test() needs one)."""
    reset_metadata_db()


@pytest.fixture
def jogg(monkeypatch):
    """The fake Jogg API, and jogg_default pointing at it. Tasks finish in about 0.25 s."""
    with FakeJoggServer(api_key=API_KEY, pending_seconds=0.05, processing_seconds=0.2) as server:
        connection = {
            "conn_type": "jogg",
            "host": server.url,  # plain http:// is fine: the server is on loopback
            "password": API_KEY,
            "extra": {"retry_backoff": 0.01},  # same policy, shorter waits
        }
        monkeypatch.setenv("AIRFLOW_CONN_JOGG_DEFAULT", json.dumps(connection))
        yield server


def build_dag(video_url: str) -> DAG:
    with DAG(dag_id="dub_clip_test", schedule=None, start_date=datetime(2026, 1, 1)) as dag:
        lip_sync = LipSyncOperator(
            task_id="lip_sync", video_url=video_url, audio_url="https://media.example.com/dub.mp3"
        )
        LipSyncSensor(task_id="wait_for_lip_sync", jogg_task_id=lip_sync.output, poke_interval=0.2)
    return dag


def test_success_through_server_errors(airflow_db, jogg):
    # the first two status polls get HTTP 503: retried, never a failure
    jogg.add_fault(Fault("status", status=503, path="/v2/lip_sync_video", times=2))

    dag_run = run_dag(build_dag("https://media.example.com/clip.mp4"))

    assert task_states(dag_run) == {"lip_sync": "success", "wait_for_lip_sync": "success"}
    result = xcom_value(dag_run, "wait_for_lip_sync")
    assert result["status"] == "success"
    assert result["result_url"].startswith(jogg.root_url)
    assert jogg.create_count == 1  # one billed task
    assert jogg.count_status(503) == 2


def test_a_failed_jogg_task_fails_the_sensor(airflow_db, jogg):
    # a media URL containing "fail" makes the fake task end as failed
    dag_run = run_dag(build_dag("https://media.example.com/fail.mp4"))

    # JoggLipSyncFailedError is an AirflowFailException: failed at once, no retries
    assert task_states(dag_run)["wait_for_lip_sync"] == "failed"
    assert jogg.tasks[xcom_value(dag_run, "lip_sync")]["status"] == "failed"
