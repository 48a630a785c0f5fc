"""End-to-end load DAG: lip-sync a batch of (video, audio) pairs with dynamic task mapping.

``make_pairs`` builds ``params.pairs`` pairs whose URLs carry their index and ``params.tag``;
``lip_sync`` creates one Jogg task per pair (``LipSyncOperator.partial(...).expand_kwargs(...)``),
``wait`` waits for each of them in the triggerer (``LipSyncSensor.partial(...).expand(...)``),
and ``collect`` receives every result. It uses the ``jogg_load`` connection (the rate-limited
fake server of the e2e deployment).
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from airflow.sdk import DAG, Param, task

from airflow_provider_jogg.operators.lip_sync import LipSyncOperator
from airflow_provider_jogg.sensors.lip_sync import LipSyncSensor

with DAG(
    dag_id="jogg_e2e_batch",
    description="e2e: a batch of lip syncs through dynamic task mapping",
    schedule=None,
    start_date=datetime(2026, 1, 1),
    catchup=False,
    max_active_tasks=64,
    tags=["jogg", "e2e"],
    params={
        "pairs": Param(200, type="integer", minimum=1),
        "tag": Param("batch", type="string"),
    },
) as dag:

    @task
    def make_pairs(params: dict[str, Any]) -> list[dict[str, str]]:
        base = f"https://media.example.com/e2e/{params['tag']}"
        return [
            {"video_url": f"{base}/video-{i:03d}.mp4", "audio_url": f"{base}/audio-{i:03d}.mp3"}
            for i in range(int(params["pairs"]))
        ]

    lip_sync = LipSyncOperator.partial(task_id="lip_sync", jogg_conn_id="jogg_load").expand_kwargs(
        make_pairs()
    )

    wait = LipSyncSensor.partial(
        task_id="wait",
        jogg_conn_id="jogg_load",
        poke_interval=2.0,
        timeout=30 * 60,
        # Only for Airflow's own race (apache/airflow#67287, not fixed in 3.3.2): a deferral that
        # ends within a second or two, as the sensor's 1 s wait after a 429 on its first check does,
        # can be failed by the scheduler as "state changed externally". Jogg errors never retry
        # (they are AirflowFailExceptions); the test checks every retry has that signature.
        retries=2,
        retry_delay=timedelta(seconds=1),
    ).expand(jogg_task_id=lip_sync.output)

    @task
    def collect(results: list[dict[str, Any]]) -> dict[str, Any]:
        results = list(results)
        bad = [r for r in results if r.get("status") != "success" or not r.get("result_url")]
        if bad:
            raise ValueError(f"{len(bad)} results are not successes: {bad[:3]}")
        return {"count": len(results), "task_ids": [r["task_id"] for r in results]}

    collect(wait.output)
