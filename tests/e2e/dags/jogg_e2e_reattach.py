"""End-to-end DAG for a worker lost mid-task: one LipSyncOperator that waits in its worker.

``wait_for_completion=True, deferrable=False`` keeps the task in its worker from the create request to
the result, so a test can kill the task's process at any point after Jogg answered. ``retries=1`` is
what a user sets who wants a lost worker to be retried: the retry finds the Jogg task id that the
first try wrote to the task state store (Airflow 3.3+) and reattaches to it instead of creating (and
paying for) a second one.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from airflow.sdk import DAG, Param

from airflow_provider_jogg.operators.lip_sync import LipSyncOperator

with DAG(
    dag_id="jogg_e2e_reattach",
    description="e2e: a lip sync that waits in its worker and survives losing it",
    schedule=None,
    start_date=datetime(2026, 1, 1),
    catchup=False,
    tags=["jogg", "e2e"],
    params={
        "video_url": Param("https://media.example.com/clips/interview.mp4", type="string"),
        "audio_url": Param("https://media.example.com/dubs/interview.de.mp3", type="string"),
    },
) as dag:
    LipSyncOperator(
        task_id="lip_sync",
        video_url="{{ params.video_url }}",
        audio_url="{{ params.audio_url }}",
        wait_for_completion=True,
        deferrable=False,
        poke_interval=2,
        timeout=30 * 60,
        retries=1,
        retry_delay=timedelta(seconds=1),
    )
