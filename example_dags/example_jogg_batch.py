"""
Lip-sync a whole batch of clips every day: one mapped task instance per clip.

``read_manifest`` reads a CSV manifest (columns ``clip``, ``video_url``, ``audio_url`` and an
optional ``playback_type``) from a local path, relative to this file, or from object storage
(``s3://...``, ``gs://...``). Each row becomes one mapped ``LipSyncOperator`` instance
(``.partial(...).expand_kwargs(...)``) and one mapped ``LipSyncSensor`` instance that waits for it
in the triggerer and, when ``output_dir`` is set, saves the result as ``<output_dir>/<clip>.mp4``
(a local folder or an object storage URI). ``report`` receives every per-clip result dict and adds
up durations and credits.

Media columns take anything ``LipSyncOperator`` takes: http(s) URLs are given to Jogg as they are,
local paths and storage URIs are uploaded first. Hundreds of clips are fine: the sensors hold no
worker slot while they wait, and every request of a process to one Jogg account shares one rate
limit (the connection's ``max_requests_per_second``). A clip whose Jogg task fails fails its own map
index only: the other clips finish and keep their results, and ``report`` does not run.

The schedule is ``@daily`` without catch-up: point ``manifest`` at the file your media team
drops every day (the default is the small sample in ``manifests/``).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from airflow.sdk import DAG, Param, task

from airflow_provider_jogg.operators.lip_sync import LipSyncOperator
from airflow_provider_jogg.sensors.lip_sync import LipSyncSensor


def create_kwargs(clip: dict[str, Any]) -> dict[str, Any]:
    """The LipSyncOperator arguments of one manifest row."""
    return {
        "video_url": clip["video_url"],
        "audio_url": clip["audio_url"],
        "playback_type": clip["playback_type"],
    }


def wait_kwargs(created: tuple[str, dict[str, Any]]) -> dict[str, Any]:
    """The LipSyncSensor arguments of one created Jogg task and its manifest row."""
    jogg_task_id, clip = created
    return {"jogg_task_id": jogg_task_id, "output_path": clip["output_path"]}


with DAG(
    dag_id="example_jogg_batch",
    description="Lip-sync every clip of a manifest with JoggAI, one mapped task per clip",
    schedule="@daily",
    start_date=datetime(2026, 1, 1),
    catchup=False,
    max_active_runs=1,
    tags=["example", "jogg", "batch"],
    params={
        "manifest": Param(
            "manifests/example_jogg_batch.csv",
            type="string",
            description="CSV manifest: a path relative to this file, an absolute path or a storage URI",
        ),
        "output_dir": Param(
            "",
            type="string",
            description="where results are saved as <clip>.mp4 (path or URI); empty: keep only the URLs",
        ),
        "limit": Param(0, type="integer", minimum=0, description="lip-sync only the first N rows (0: all)"),
    },
) as dag:

    @task
    def read_manifest(params: dict[str, Any]) -> list[dict[str, Any]]:
        """The manifest's rows, checked: every clip named once, with a video and an audio."""
        import csv
        import io
        from pathlib import Path

        from airflow.sdk import ObjectStoragePath

        location = params["manifest"]
        if "://" in location:
            text = ObjectStoragePath(location).read_text(encoding="utf-8")
        else:
            text = (Path(__file__).parent / location).read_text(encoding="utf-8")
        output_dir = params["output_dir"].rstrip("/")

        clips: list[dict[str, Any]] = []
        for line, row in enumerate(csv.DictReader(io.StringIO(text)), start=2):
            clip = (row.get("clip") or "").strip()
            if not clip or not row.get("video_url") or not row.get("audio_url"):
                raise ValueError(f"{location}, line {line}: clip, video_url and audio_url are required")
            clips.append(
                {
                    "clip": clip,
                    "video_url": row["video_url"].strip(),
                    "audio_url": row["audio_url"].strip(),
                    "playback_type": (row.get("playback_type") or "normal").strip(),
                    "output_path": f"{output_dir}/{clip}.mp4" if output_dir else None,
                }
            )
        names = [c["clip"] for c in clips]
        if len(set(names)) != len(names):
            raise ValueError(f"{location}: clip names must be unique (they name the result files)")
        if params["limit"]:
            clips = clips[: params["limit"]]
        if not clips:
            raise ValueError(f"{location} lists no clips")
        print(f"{len(clips)} clips to lip-sync from {location}")
        return clips

    clips = read_manifest()

    lip_sync = LipSyncOperator.partial(task_id="lip_sync").expand_kwargs(clips.map(create_kwargs))

    wait_for_lip_sync = LipSyncSensor.partial(
        task_id="wait_for_lip_sync",
        poke_interval=30,
        timeout=6 * 60 * 60,
        retries=2,  # a failed download is tried again; the Jogg task is not created again
    ).expand_kwargs(lip_sync.output.zip(clips).map(wait_kwargs))

    @task
    def report(clips: list[dict[str, Any]], results: list[dict[str, Any]]) -> dict[str, Any]:
        """One line per clip, and the batch's total duration and credits (estimate)."""
        rows = [
            {
                "clip": clip["clip"],
                "jogg_task_id": result["task_id"],
                "result_url": result["result_url"],
                "output_path": result["output_path"],
                "duration_seconds": result["duration_seconds"],
                "credits": result["credits"],
            }
            for clip, result in zip(clips, results, strict=True)
        ]
        total = {
            "clips": len(rows),
            "duration_seconds": round(sum(r["duration_seconds"] or 0 for r in rows), 3),
            "credits": round(sum(r["credits"] or 0 for r in rows), 4),
        }
        print(
            f"Lip-synced {total['clips']} clips: {total['duration_seconds']} s, ~{total['credits']} credits"
        )
        return {**total, "results": rows}

    report(clips, wait_for_lip_sync.output)
