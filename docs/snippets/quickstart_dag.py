"""Lip-sync one clip to a dubbed audio track, then use the result (the quick start's DAG)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from airflow.sdk import DAG, task

from airflow_provider_jogg.operators.lip_sync import LipSyncOperator
from airflow_provider_jogg.sensors.lip_sync import LipSyncSensor

with DAG(
    dag_id="dub_clip",
    schedule=None,
    start_date=datetime(2026, 1, 1),
    params={
        "video_url": "https://media.example.com/clips/interview.mp4",
        "audio_url": "https://media.example.com/dubs/interview.de.mp3",
    },
):
    # creates the Jogg task (bills credits) and pushes its id to XCom at once
    lip_sync = LipSyncOperator(
        task_id="lip_sync",
        video_url="{{ params.video_url }}",
        audio_url="{{ params.audio_url }}",
    )

    # waits in the triggerer (deferrable by default); returns the result dict
    wait = LipSyncSensor(
        task_id="wait_for_lip_sync",
        jogg_task_id=lip_sync.output,
        poke_interval=30,
        timeout=60 * 60,
    )

    @task
    def publish(result: dict[str, Any]) -> None:
        print(result["result_url"], result["duration_seconds"], result["credits"])

    publish(wait.output)
