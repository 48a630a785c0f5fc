"""End-to-end DAG for the batch operator: thousands of clips in one task instance, one trigger.

The clips come from a CSV manifest the test writes (its location is a param, so nothing of the
2,000 rows is rendered into the metadata DB); the result manifest, the ledger folder beside it and
the saved results go where the test says (the deployment's temporary directory, which the triggerer
can read). ``retries=1`` with a short ``retry_delay`` is what a user sets who wants a lost worker to
be retried: the retry resumes from the ledger and sends no create twice.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from airflow.sdk import DAG, Param

from airflow_provider_jogg.operators.lip_sync_batch import LipSyncBatchOperator

with DAG(
    dag_id="jogg_e2e_lip_sync_batch",
    description="e2e: a 2,000-clip batch in one task, through crashes",
    schedule=None,
    start_date=datetime(2026, 1, 1),
    catchup=False,
    tags=["jogg", "e2e"],
    params={
        "clips": Param("/nonexistent/clips.csv", type="string"),
        "manifest_path": Param("/nonexistent/results.csv", type="string"),
        "output_dir": Param("/nonexistent/results", type="string"),
    },
) as dag:
    LipSyncBatchOperator(
        task_id="lip_sync_batch",
        clips="{{ params.clips }}",
        manifest_path="{{ params.manifest_path }}",
        output_dir="{{ params.output_dir }}",
        jogg_conn_id="jogg_batch",
        # a worker killed mid-create leaves at most one window (create_concurrency clips) announced
        # but not answered: those are "uncertain", never sent again, and counted as failures
        max_failed=8,
        check_quota=False,
        deferrable=True,
        poke_interval=5,
        progress_interval=10,
        create_concurrency=8,
        download_concurrency=4,
        retries=1,
        retry_delay=timedelta(seconds=2),
    )
