"""Helpers for the media example tests: real media made with ffmpeg, ffprobe checks, scheduler steps."""

from __future__ import annotations

import json
import subprocess
import time
from typing import TYPE_CHECKING, Any

from tests.media_binaries import FFMPEG, FFPROBE

if TYPE_CHECKING:
    from pathlib import Path

    from airflow.models.dagrun import DagRun
    from airflow.sdk import DAG


def _ffmpeg(*args: str) -> None:
    done = subprocess.run(
        [FFMPEG, "-hide_banner", "-nostdin", "-y", "-loglevel", "error", *args],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr


def make_clip(path: Path, seconds: float, size: str = "320x240", rate: int = 25) -> Path:
    """A real H.264 + AAC clip: a moving test pattern with its own 440 Hz track (to be replaced)."""
    _ffmpeg(
        "-f", "lavfi", "-i", f"testsrc2=size={size}:rate={rate}:duration={seconds}",
        "-f", "lavfi", "-i", f"sine=frequency=440:sample_rate=44100:duration={seconds}",
        "-c:v", "libx264", "-preset", "ultrafast", "-pix_fmt", "yuv420p", "-g", str(rate),
        "-c:a", "aac", "-b:a", "64k", "-shortest", "-movflags", "+faststart", str(path),
    )  # fmt: skip
    return path


def make_audio(path: Path, seconds: float, frequency: int = 880) -> Path:
    """A real audio file (the codec follows the extension: .m4a AAC, .mp3, .wav ...)."""
    _ffmpeg(
        "-f", "lavfi", "-i", f"sine=frequency={frequency}:sample_rate=44100:duration={seconds}", str(path)
    )
    return path


def probe(path: Path | str) -> dict[str, Any]:
    """ffprobe's view of a file: ``{"duration": float, "streams": {"video": {...}, "audio": {...}}}``."""
    done = subprocess.run(
        [FFPROBE, "-v", "error", "-print_format", "json", "-show_format", "-show_streams", str(path)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, f"ffprobe cannot read {path}: {done.stderr}"
    info = json.loads(done.stdout)
    streams: dict[str, Any] = {}
    for stream in info["streams"]:
        streams.setdefault(stream["codec_type"], stream)
    return {
        "duration": float(info["format"]["duration"]),
        "format": info["format"]["format_name"],
        "streams": streams,
    }


def decode_errors(path: Path | str) -> str:
    """Decode every frame and sample (``ffmpeg -v error -f null``): what ffmpeg complains about."""
    done = subprocess.run(
        [FFMPEG, "-hide_banner", "-nostdin", "-v", "error", "-i", str(path), "-f", "null", "-"],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    return done.stderr.strip() if done.returncode == 0 else f"exit {done.returncode}: {done.stderr}"


def leftovers(folder: Path) -> list[Path]:
    """Half-written files anywhere under ``folder`` (the provider's ``.partial-`` downloads, ours)."""
    return [p for p in folder.rglob("*") if ".partial" in p.name]


def fast_polls(dag: DAG, seconds: float = 0.1) -> DAG:
    """Poll Jogg every ``seconds`` in this DAG's waits (the examples poll every 10-30 s)."""
    for task in dag.tasks:
        if task.task_type not in ("LipSyncOperator", "LipSyncSensor"):
            continue
        if hasattr(task, "partial_kwargs"):  # a mapped operator
            task.partial_kwargs["poke_interval"] = seconds
        else:
            task.poke_interval = seconds
    return dag


# --------------------------------------------------------------------------------------------------
# What the scheduler does with an asset event, step by step
# --------------------------------------------------------------------------------------------------
def set_paused(dag_id: str, paused: bool) -> None:
    """Toggle a DAG as the UI's switch does (DAGs are created paused)."""
    from airflow.models.dag import DagModel
    from airflow.utils.session import create_session

    with create_session() as session:
        model = session.get(DagModel, dag_id)
        assert model is not None, f"{dag_id} is not in the metadata DB"
        model.is_paused = paused


def scheduler_creates_dagruns(dag_id: str, timeout: float = 60.0) -> DagRun:
    """
    What the scheduler's loop does for an asset-scheduled DAG, with the scheduler's own code: its
    run creation turns the ``AssetDagRunQueue`` rows of a DAG whose asset condition is met into an
    ``ASSET_TRIGGERED`` run that consumes the asset events; then queued runs are started (the next
    loops, on SQLite: ``run_after <= now()`` compares at whole seconds there).
    """
    from airflow.jobs.job import Job
    from airflow.jobs.scheduler_job_runner import SchedulerJobRunner
    from airflow.models.dagrun import DagRun
    from airflow.utils.session import create_session
    from airflow.utils.sqlalchemy import prohibit_commit
    from airflow.utils.state import DagRunState

    runner = SchedulerJobRunner(job=Job(), num_runs=1)
    with create_session() as session, prohibit_commit(session) as guard:
        runner._create_dagruns_for_dags(guard, session)
    deadline = time.monotonic() + timeout
    while True:
        with create_session() as session:
            with prohibit_commit(session) as guard:
                runner._start_queued_dagruns(session)
                guard.commit()
            runs = session.query(DagRun).filter_by(dag_id=dag_id).all()
            if any(run.state == DagRunState.RUNNING for run in runs) or time.monotonic() > deadline:
                for run in runs:
                    session.expunge(run)
                (run,) = runs
                return run
        time.sleep(0.2)


def run_existing_dagrun(dag: DAG, dag_run: DagRun, max_loops: int = 100) -> DagRun:
    """
    Run the tasks of a run someone else created (here: the scheduler) in this process, with the loop
    and the in-process task runner of ``dag.test()`` (which itself always creates a new manual run).
    Returns the finished run, detached.
    """
    from airflow.models.dagrun import DagRun as DagRunModel
    from airflow.utils.session import create_session
    from airflow.utils.state import DagRunState, TaskInstanceState

    from airflow_provider_jogg.testing.dagrun import run_task_instance, serialized_dag_for_run

    for _ in range(max_loops):
        with create_session() as session:
            run = session.get(DagRunModel, dag_run.id)
            run.dag = serialized_dag_for_run(run, session)  # the serialized DAG
            if run.state != DagRunState.RUNNING:
                session.expunge(run)
                return run
            schedulable, _ = run.update_state(session=session)
            for ti in schedulable:
                if ti.state != TaskInstanceState.UP_FOR_RESCHEDULE:
                    ti.try_number += 1
                ti.state = TaskInstanceState.SCHEDULED
            session.commit()
            scheduled = [
                ti
                for ti in run.get_task_instances(session=session)
                if ti.state == TaskInstanceState.SCHEDULED
            ]
            for ti in scheduled:
                run_task_instance(ti, dag.task_dict[ti.task_id])
    raise AssertionError(f"{dag_run.run_id} did not finish in {max_loops} scheduling loops")
