"""
Wake the next DAG when a lip-synced result lands: a producer DAG updates an Asset, a consumer DAG
is scheduled on it and reads where the result is from the asset event.

``example_jogg_asset_producer``: ``LipSyncOperator`` -> ``LipSyncSensor`` with
``outlets=[LIP_SYNC_RESULTS]``. When the wait succeeds and the result is saved, the sensor's asset
event carries this ``extra``::

    {"jogg_task_id": "3d5c...", "result_url": "https://...", "duration_seconds": 12.5,
     "output_path": "/data/lip-synced/3d5c....mp4"}

``example_jogg_asset_consumer``: ``schedule=[LIP_SYNC_RESULTS]``. The scheduler creates one run
after each update (several updates that arrive before the run starts are consumed by one run), and
``pick_up`` reads them from ``triggering_asset_events``. Run by hand (no triggering event), it picks
up the latest result instead, through ``inlet_events``.

The consumer DAG must be unpaused for the scheduler to queue runs for it.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from airflow.sdk import DAG, Asset, ObjectStoragePath, Param, task

from airflow_provider_jogg.operators.lip_sync import LipSyncOperator
from airflow_provider_jogg.sensors.lip_sync import LipSyncSensor

#: updated each time a lip-synced result is saved
LIP_SYNC_RESULTS = Asset("jogg://lip-sync/results")

with DAG(
    dag_id="example_jogg_asset_producer",
    description="Lip-sync a clip with JoggAI, save the result and announce it as an asset event",
    schedule=None,
    start_date=datetime(2026, 1, 1),
    catchup=False,
    tags=["example", "jogg", "assets"],
    params={
        "video": Param("https://media.example.com/clips/interview.mp4", type="string"),
        "audio": Param("https://media.example.com/dubs/interview.de.mp3", type="string"),
        "output_dir": Param("/data/lip-synced", type="string"),
    },
) as producer:
    lip_sync = LipSyncOperator(
        task_id="lip_sync", video_url="{{ params.video }}", audio_url="{{ params.audio }}"
    )
    LipSyncSensor(
        task_id="wait_for_lip_sync",
        jogg_task_id=lip_sync.output,
        output_path="{{ params.output_dir }}/{{ ti.xcom_pull(task_ids='lip_sync') }}.mp4",
        poke_interval=10,
        timeout=60 * 60,
        outlets=[LIP_SYNC_RESULTS],
    )


with DAG(
    dag_id="example_jogg_asset_consumer",
    description="Pick up each lip-synced result as soon as it is saved",
    schedule=[LIP_SYNC_RESULTS],
    start_date=datetime(2026, 1, 1),
    catchup=False,
    tags=["example", "jogg", "assets"],
) as consumer:

    @task(inlets=[LIP_SYNC_RESULTS])
    def pick_up(triggering_asset_events: Any, inlet_events: Any) -> list[dict[str, Any]]:
        """The results this run was triggered by (run by hand: the latest one)."""
        events = list(triggering_asset_events[LIP_SYNC_RESULTS])
        if not events and len(inlet_events[LIP_SYNC_RESULTS]):
            events = [inlet_events[LIP_SYNC_RESULTS][-1]]
        picked = []
        for event in events:
            extra = event.extra  # what LipSyncSensor put in the event
            stored = ObjectStoragePath(extra["output_path"])  # a local path or a storage URI
            size = stored.stat().st_size
            print(
                f"Jogg task {extra['jogg_task_id']}: {extra['duration_seconds']} s, {size} bytes at {stored}"
            )
            picked.append({**extra, "bytes": size, "timestamp": event.timestamp.isoformat()})
        return picked

    pick_up()
