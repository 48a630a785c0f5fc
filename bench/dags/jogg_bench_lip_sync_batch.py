"""Benchmark DAG (``bench/batch_deployment.py``): one ``LipSyncBatchOperator`` with its defaults.

Only what the benchmark must choose is set: the clips manifest, the result manifest, the output
folder (empty: results are not downloaded) and the connection, all as params so nothing of the
thousands of rows is rendered into the metadata DB. Every other argument is the operator's default
(``create_concurrency`` 8, ``download_concurrency`` 4, ``poke_interval`` 30 s, ``progress_interval``
60 s, ``check_quota`` on, no retries).
"""

from __future__ import annotations

from datetime import datetime

from airflow.sdk import DAG, Param

from airflow_provider_jogg.operators.lip_sync_batch import LipSyncBatchOperator

with DAG(
    dag_id="jogg_bench_lip_sync_batch",
    description="bench: a batch of clips in one task instance, operator defaults",
    schedule=None,
    start_date=datetime(2026, 1, 1),
    catchup=False,
    tags=["jogg", "bench"],
    params={
        "clips": Param("/nonexistent/clips.csv", type="string"),
        "manifest_path": Param("/nonexistent/results.csv", type="string"),
        "output_dir": Param("", type="string"),
        "conn_id": Param("jogg_default", type="string"),
    },
) as dag:
    LipSyncBatchOperator(
        task_id="lip_sync_batch",
        clips="{{ params.clips }}",
        manifest_path="{{ params.manifest_path }}",
        output_dir="{{ params.output_dir }}",
        jogg_conn_id="{{ params.conn_id }}",
    )
