"""
Lip-sync a whole manifest every night in one task: ``LipSyncBatchOperator``.

The same job as ``example_jogg_batch`` (one mapped task instance per clip), for batches of
thousands: one task instance creates every Jogg task under the account's rate limit, one trigger
waits for all of them, the results are saved as ``<output_dir>/<clip>.mp4`` and a result manifest
(one row per clip: its Jogg task, status, result URL, duration, credits, saved file, error) is
written to ``manifest_path``. Nothing per clip goes through XCom: the task returns a summary.

Each run works in its own folder, ``<output_root>/<ds>/``: ``manifest.csv`` (the result manifest),
``manifest.csv.ledger/`` (the batch's durable per-clip records, which a retry resumes from; the
triggerer reads them, so the folder must be on storage it can reach) and ``clips/``.

The input manifest is the same CSV as the mapped example's (``clip``, ``video_url``, ``audio_url``,
optional ``playback_type``; the batch also takes ``video``/``audio`` and a per-row ``output_path``,
or a ``.jsonl`` file). Every row is checked before the first request.

Failures: up to 1 % of the clips (``max_failed_ratio``) may fail with the task still succeeding;
more fail the task after the result manifest is written, and a retry re-creates only the clips
whose Jogg task failed. A batch estimated above ``max_credits`` (or above the account's remaining
quota) is refused before anything is created. On success the ``JOGG_NIGHTLY_BATCH`` asset gets an
event whose ``extra`` names the result manifest (``manifest``) with ``clips``, ``succeeded``,
``failed`` and ``credits``: schedule the next DAG on it.
"""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

from airflow.sdk import DAG, Asset, Param

from airflow_provider_jogg.operators.lip_sync_batch import LipSyncBatchOperator

#: the sample manifest shipped beside this file (the media.example.com URLs work with the fake server)
SAMPLE_MANIFEST = str(Path(__file__).parent / "manifests" / "example_jogg_batch.csv")
#: updated after every nightly batch; the event's extra names that night's result manifest
JOGG_NIGHTLY_BATCH = Asset(name="jogg_nightly_batch", uri="jogg://batches/nightly")

with DAG(
    dag_id="example_jogg_batch_operator",
    description="Lip-sync every clip of a manifest with JoggAI in one task, with a result manifest",
    schedule="@daily",
    start_date=datetime(2026, 1, 1),
    catchup=False,
    max_active_runs=1,
    tags=["example", "jogg", "batch"],
    params={
        "manifest": Param(
            SAMPLE_MANIFEST,
            type="string",
            description="the input manifest (.csv or .jsonl): an absolute path or a storage URI",
        ),
        "output_root": Param(
            "/data/jogg-batches",
            type="string",
            description="each run writes <output_root>/<ds>/manifest.csv and clips/<clip>.mp4 (path or URI)",
        ),
    },
) as dag:
    LipSyncBatchOperator(
        task_id="lip_sync_batch",
        clips="{{ params.manifest }}",
        manifest_path="{{ params.output_root }}/{{ ds }}/manifest.csv",
        output_dir="{{ params.output_root }}/{{ ds }}/clips",
        max_failed_ratio=0.01,  # up to 1 % of the clips may fail; the manifest says which
        max_credits=500,  # refuse a night estimated above 500 credits, before any create
        poke_interval=30,
        progress_interval=300,  # "N of M done, K failed, about S s to go" every 5 minutes
        timeout=12 * 60 * 60,
        retries=2,  # a retry resumes from the ledger: nothing is created twice
        outlets=[JOGG_NIGHTLY_BATCH],
    )
