"""The batch DAG of both e2e suites, written as a user writes it: lip-sync a batch of (video, audio)
pairs with dynamic task mapping.

``make_pairs`` builds ``params.pairs`` pairs whose URLs carry their index and ``params.tag``;
``lip_sync`` creates one Jogg task per pair (``LipSyncOperator.partial(...).expand_kwargs(...)``),
``wait`` waits for each of them in the triggerer (``LipSyncSensor.partial(...).expand(...)``), and
``collect`` receives every result. Connection ``jogg_load``: the rate-limited fake Jogg account of
the deployment. Airflow's defaults everywhere else (``retries`` 0 on every task, so that a task
Airflow loses fails the run instead of being papered over by a retry; ``max_active_tasks``), and
nothing shaped around Airflow's deferral race.

``params.finish_after_poll`` (seconds, cycled over the pairs) gives each Jogg task its own timing on
the fake server: pair ``i`` finishes that many seconds after the fake first answered a status request
for it (the URL marker ``jogg_fake_finish_after_poll``); ``null``, or an empty list: no marker, the
fake's own timeline (in these deployments: until the test finishes the task).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from airflow.sdk import DAG, Param, task

from airflow_provider_jogg.operators.lip_sync import LipSyncOperator
from airflow_provider_jogg.sensors.lip_sync import LipSyncSensor

with DAG(
    dag_id="jogg_batch",
    description="e2e: a user-like batch of lip syncs through dynamic task mapping",
    schedule=None,
    start_date=datetime(2026, 1, 1),
    catchup=False,
    tags=["jogg", "e2e"],
    params={
        "pairs": Param(48, type="integer", minimum=1),
        "tag": Param("batch", type="string"),
        "finish_after_poll": Param([], type="array", items={"type": ["number", "null"], "minimum": 0}),
    },
) as dag:

    @task
    def make_pairs(params: dict[str, Any]) -> list[dict[str, str]]:
        from airflow_provider_jogg.testing.server import FINISH_AFTER_POLL

        base = f"https://media.example.com/batch/{params['tag']}"
        timings = list(params["finish_after_poll"]) or [None]
        pairs = []
        for i in range(int(params["pairs"])):
            seconds = timings[i % len(timings)]
            marker = "" if seconds is None else f"?{FINISH_AFTER_POLL}={seconds:g}"
            pairs.append(
                {"video_url": f"{base}/video-{i:03d}.mp4{marker}", "audio_url": f"{base}/audio-{i:03d}.mp3"}
            )
        return pairs

    lip_sync = LipSyncOperator.partial(task_id="lip_sync", jogg_conn_id="jogg_load").expand_kwargs(
        make_pairs()
    )

    wait = LipSyncSensor.partial(
        task_id="wait", jogg_conn_id="jogg_load", poke_interval=2, timeout=30 * 60
    ).expand(jogg_task_id=lip_sync.output)

    @task
    def collect(results: list[dict[str, Any]]) -> dict[str, Any]:
        results = list(results)
        bad = [r for r in results if r.get("status") != "success" or not r.get("result_url")]
        if bad:
            raise ValueError(f"{len(bad)} results are not successes: {bad[:3]}")
        return {"count": len(results), "task_ids": [r["task_id"] for r in results]}

    collect(wait.output)
