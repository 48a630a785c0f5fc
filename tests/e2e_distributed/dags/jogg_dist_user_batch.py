"""Distributed e2e DAG, written as a user would: a mapped batch of lip syncs with Airflow's defaults.

``make_pairs`` builds ``params.pairs`` (video, audio) pairs whose URLs carry their index, ``params.tag``
and one of ``params.lanes`` (pair ``i`` gets lane ``i % len(lanes)``: the test's fake Jogg server
gives each lane its own processing time); ``lip_sync`` creates one Jogg task per pair, ``wait`` waits
for each in the triggerer, ``collect`` receives every result. No ``retries`` anywhere (Airflow's
default is 0) and nothing shaped around Airflow's deferral race: a lost wait fails the run.
Connection ``jogg_dist``: the rate-limited fake of tests/e2e_distributed, with default extras.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from airflow.sdk import DAG, Param, task

from airflow_provider_jogg.operators.lip_sync import LipSyncOperator
from airflow_provider_jogg.sensors.lip_sync import LipSyncSensor

with DAG(
    dag_id="jogg_dist_user_batch",
    description="distributed e2e: a user-like batch of lip syncs through dynamic task mapping",
    schedule=None,
    start_date=datetime(2026, 1, 1),
    catchup=False,
    tags=["jogg", "e2e"],
    params={
        "pairs": Param(48, type="integer", minimum=1),
        "tag": Param("batch", type="string"),
        "lanes": Param(["any"], type="array", minItems=1),
    },
) as dag:

    @task
    def make_pairs(params: dict[str, Any]) -> list[dict[str, str]]:
        lanes = list(params["lanes"])
        base = f"https://media.example.com/dist/{params['tag']}"
        return [
            {
                "video_url": f"{base}/{lanes[i % len(lanes)]}/video-{i:03d}.mp4",
                "audio_url": f"{base}/{lanes[i % len(lanes)]}/audio-{i:03d}.mp3",
            }
            for i in range(int(params["pairs"]))
        ]

    lip_sync = LipSyncOperator.partial(task_id="lip_sync", jogg_conn_id="jogg_dist").expand_kwargs(
        make_pairs()
    )

    wait = LipSyncSensor.partial(
        task_id="wait", jogg_conn_id="jogg_dist", poke_interval=2, timeout=30 * 60
    ).expand(jogg_task_id=lip_sync.output)

    @task
    def collect(results: list[dict[str, Any]]) -> dict[str, Any]:
        results = list(results)
        bad = [r for r in results if r.get("status") != "success" or not r.get("result_url")]
        if bad:
            raise ValueError(f"{len(bad)} results are not successes: {bad[:3]}")
        return {"count": len(results), "task_ids": [r["task_id"] for r in results]}

    collect(wait.output)
