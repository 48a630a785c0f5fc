"""
Lip-sync a video to a new audio track, then hand the result to the next step.

``LipSyncOperator`` creates the Jogg task and pushes its id to XCom at once; ``LipSyncSensor`` waits
for the result in the triggerer (deferrable, no worker slot held); ``publish`` receives the result
dict and checks that the lip-synced video can be downloaded.

Run it against the offline fake server (see the README), or against JoggAI with a ``jogg_default``
connection holding your API key, passing your own media URLs as params.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from airflow.sdk import DAG, Param, task

from airflow_provider_jogg.operators.lip_sync import LipSyncOperator
from airflow_provider_jogg.sensors.lip_sync import LipSyncSensor

with DAG(
    dag_id="example_jogg_lip_sync",
    description="Lip-sync a clip to a dubbed audio track with JoggAI",
    schedule=None,
    start_date=datetime(2026, 1, 1),
    catchup=False,
    tags=["example", "jogg"],
    params={
        "video_url": Param("https://media.example.com/clips/interview.mp4", type="string"),
        "audio_url": Param("https://media.example.com/dubs/interview.de.mp3", type="string"),
        "playback_type": Param(
            "normal", type="string", enum=["normal", "normal_reverse", "normal_reverse_by_audio"]
        ),
    },
) as dag:
    lip_sync = LipSyncOperator(
        task_id="lip_sync",
        video_url="{{ params.video_url }}",
        audio_url="{{ params.audio_url }}",
        playback_type="{{ params.playback_type }}",
    )

    wait_for_lip_sync = LipSyncSensor(
        task_id="wait_for_lip_sync",
        jogg_task_id="{{ ti.xcom_pull(task_ids='lip_sync') }}",
        poke_interval=5,
        timeout=60 * 60,
    )

    @task
    def publish(result: dict[str, Any]) -> dict[str, Any]:
        """Check the lip-synced video is downloadable and pass its URL on."""
        import requests

        with requests.get(result["result_url"], stream=True, timeout=30) as resp:
            resp.raise_for_status()
            size = sum(len(chunk) for chunk in resp.iter_content(64 * 1024))
        print(f"Lip-synced video for Jogg task {result['task_id']}: {result['result_url']} ({size} bytes)")
        return {"task_id": result["task_id"], "result_url": result["result_url"], "bytes": size}

    lip_sync >> wait_for_lip_sync
    publish(wait_for_lip_sync.output)
