"""
Lip-sync media that lives in object storage, and write the result back there.

``locate`` builds ``ObjectStoragePath`` objects for the clip, the dubbed audio and the result under
one base URI: ``s3://bucket/prefix`` (with an ``aws`` connection), ``gs://bucket/prefix`` (with a
``google_cloud_platform`` connection) or ``file:///mnt/media``, whatever Airflow's object storage
opens, and hands them on as URIs, which keep the connection id (``s3://aws_default@bucket/...``).

``lip_sync`` is a single ``LipSyncOperator`` with ``wait_for_completion=True``: it checks both
inputs, streams them from the bucket into Jogg's asset upload, creates the task, waits for it in
the triggerer (no worker slot held), and streams the result into the bucket under a temporary name
that is moved into place only when the download is complete. It returns the same dict as
``LipSyncSensor``, with ``output_path``.

``verify`` reads the stored result back through the same object storage and checks it is an MP4.

S3 needs ``apache-airflow-providers-amazon[s3fs]`` on the workers; GCS needs
``apache-airflow-providers-google``. ``file://`` needs nothing.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from airflow.sdk import DAG, ObjectStoragePath, Param, task

from airflow_provider_jogg.operators.lip_sync import LipSyncOperator

with DAG(
    dag_id="example_jogg_object_storage",
    description="Lip-sync a clip stored in a bucket with JoggAI and store the result in the bucket",
    schedule=None,
    start_date=datetime(2026, 1, 1),
    catchup=False,
    tags=["example", "jogg", "object-storage"],
    params={
        "base": Param("s3://media-bucket/dubbing", type="string", description="s3://, gs://, file://..."),
        "conn_id": Param(
            "aws_default", type=["null", "string"], description="storage connection (none for file://)"
        ),
        "video": Param("clips/interview.mp4", type="string", description="the clip, under base"),
        "audio": Param("dubs/interview.de.m4a", type="string", description="the dubbed audio, under base"),
        "output": Param("lip-synced/interview.de.mp4", type="string", description="the result, under base"),
    },
) as dag:

    @task(multiple_outputs=True)
    def locate(params: dict[str, Any]) -> dict[str, str]:
        """The inputs and the output in object storage, one XCom each."""
        base = ObjectStoragePath(params["base"], conn_id=params["conn_id"] or None)
        # as URIs: they keep the connection id (s3://aws_default@bucket/...) and read well in XCom
        return {name: str(base / params[name]) for name in ("video", "audio", "output")}

    media = locate()

    lip_sync = LipSyncOperator(
        task_id="lip_sync",
        video_url=media["video"],
        audio_url=media["audio"],
        wait_for_completion=True,
        output_path=media["output"],
        poke_interval=10,
        timeout=60 * 60,
    )

    @task
    def verify(result: dict[str, Any]) -> dict[str, Any]:
        """Read the stored result back: it is there, complete, and an MP4."""
        stored = ObjectStoragePath(result["output_path"])  # the string keeps the connection id
        size = stored.stat().st_size
        with stored.open("rb") as f:
            head = f.read(12)
        if head[4:8] != b"ftyp":
            raise ValueError(f"{stored} is not an MP4 file")
        print(f"Jogg task {result['task_id']}: {size} bytes at {stored}")
        return {"jogg_task_id": result["task_id"], "output_path": str(stored), "bytes": size}

    verify(lip_sync.output)
