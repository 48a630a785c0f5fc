"""
The media examples (``example_dags/example_jogg_*``) run for real through ``dag.test()``: real files
made with ffmpeg, the fake Jogg server muxing them into a real MP4, ffprobe checking what lands on
disk or in a bucket (the static ffmpeg and ffprobe of the dev extra's wheel: tests/media_binaries.py).
Also the provider features they rely on: uploads, downloads that never look complete when they are
not, ``wait_for_completion``, ``upload_public_urls``, asset events.
"""

from __future__ import annotations

import csv
import datetime
import itertools
import json
import os
import re
import time
from pathlib import Path
from typing import Any

import pytest
from airflow.sdk import DAG, Asset

from airflow_provider_jogg import exceptions as exc
from airflow_provider_jogg._compat import AIRFLOW_V_3_3_PLUS
from airflow_provider_jogg.hooks.jogg import JoggHook
from airflow_provider_jogg.operators.lip_sync import LipSyncOperator
from airflow_provider_jogg.sensors.lip_sync import LipSyncSensor
from airflow_provider_jogg.testing import FakeJoggServer, Fault
from airflow_provider_jogg.testing.dagrun import load_dag, run_dag, task_states, xcom_value
from tests.conftest import ROOT, TEST_API_KEY, conn_json
from tests.dags.media_fixtures import (
    FFMPEG,
    FFPROBE,
    decode_errors,
    fast_polls,
    leftovers,
    make_audio,
    make_clip,
    probe,
    run_existing_dagrun,
    scheduler_creates_dagruns,
    set_paused,
)

pytestmark = [pytest.mark.dagtest, pytest.mark.usefixtures("airflow_db")]

EXAMPLES = ROOT / "example_dags"
CLIP_SECONDS = 3.0
#: what LipSyncSensor and LipSyncOperator(wait_for_completion=True) return
RESULT_KEYS = {
    "task_id",
    "status",
    "result_url",
    "cover_url",
    "duration_seconds",
    "created_at",
    "completed_at",
    "error_message",
    "credits",
    "output_path",
    "cover_output_path",
}
#: pairs the batch example test runs on Airflow 3.3+ (measured on 2 busy cores, downloads included:
#: 200 pairs in 66-70 s, 400 in 133 s; about 0.16 s per task instance in dag.test(), which runs them
#: one after the other)
BATCH_PAIRS_AIRFLOW_3_3 = 200
#: pairs on Airflow 3.0-3.2 (make test-matrix): their dag.test() builds a new in-process Execution API
#: app for every task instance, about 1-2.2 s each, so a pair costs 2-4.5 s there (200 pairs took 11
#: and 15 min on 3.1 and 3.2). Still more than ten map indexes, so an order that sorts "10" before "2"
#: shows.
BATCH_PAIRS_BEFORE_AIRFLOW_3_3 = 25
BATCH_PAIRS = BATCH_PAIRS_AIRFLOW_3_3 if AIRFLOW_V_3_3_PLUS else BATCH_PAIRS_BEFORE_AIRFLOW_3_3
_ids = itertools.count()


@pytest.fixture(scope="session")
def media(tmp_path_factory) -> dict[str, Path]:
    """A real 3 s clip (H.264 + its own AAC track) and a real 3 s dub (AAC in .m4a), made once."""
    folder = tmp_path_factory.mktemp("media")
    return {
        "video": make_clip(folder / "interview.mp4", CLIP_SECONDS),
        "audio": make_audio(folder / "interview.de.m4a", CLIP_SECONDS),
    }


@pytest.fixture
def media_jogg(monkeypatch):
    """
    ``jogg_default`` on a fake Jogg server that builds real results with the wheel's ffmpeg: the
    uploaded clip with the uploaded audio muxed in (the shared ``fake_jogg`` serves a fixed sample,
    for speed).
    """
    server = FakeJoggServer(
        api_key=TEST_API_KEY, pending_seconds=0.05, processing_seconds=0.25, ffmpeg=FFMPEG, ffprobe=FFPROBE
    ).start()
    monkeypatch.setenv("AIRFLOW_CONN_JOGG_DEFAULT", conn_json(server.url))
    try:
        yield server
    finally:
        server.stop()


def check_result(result: dict[str, Any], server) -> None:
    """The result dict of a finished wait: its shape, and what it says agrees with the server."""
    assert set(result) == RESULT_KEYS
    assert result["status"] == "success"
    assert result["error_message"] is None
    assert result["task_id"] in server.tasks
    assert result["result_url"] == f"{server.root_url}/files/{result['task_id']}/result.mp4"
    assert result["credits"] == round(result["duration_seconds"] / 125, 4)  # Jogg: 1 credit per 125 s
    json.dumps(result)  # plain JSON


# --------------------------------------------------------------------------------------------------
# example_jogg_upload_lip_sync_transcode
# --------------------------------------------------------------------------------------------------
@pytest.fixture
def ffmpeg_on_path(tmp_path, monkeypatch) -> Path:
    """
    The wheel's ffmpeg as ``ffmpeg`` first on ``PATH`` (a symlink in a temporary folder, for this
    test only): found by name, as on a worker with ffmpeg installed.
    """
    folder = tmp_path / "bin"
    folder.mkdir()
    (folder / "ffmpeg").symlink_to(FFMPEG)
    monkeypatch.setenv("PATH", os.pathsep.join([str(folder), os.environ.get("PATH", "")]))
    return folder / "ffmpeg"


def transcode_task():
    dag = load_dag(
        EXAMPLES / "example_jogg_upload_lip_sync_transcode.py", "example_jogg_upload_lip_sync_transcode"
    )
    return dag.get_task("transcode")


def test_upload_lip_sync_transcode_example(media_jogg, media, tmp_path, ffmpeg_on_path):
    dag = fast_polls(
        load_dag(
            EXAMPLES / "example_jogg_upload_lip_sync_transcode.py", "example_jogg_upload_lip_sync_transcode"
        )
    )
    out = tmp_path / "published"
    dag_run = run_dag(
        dag,
        run_conf={
            "video_path": str(media["video"]),
            "audio_path": str(media["audio"]),
            "output_dir": str(out),
            "rendition_height": 120,
            # no "ffmpeg": the param's default, the name "ffmpeg", is looked up on PATH
        },
    )
    assert task_states(dag_run) == dict.fromkeys(
        ["lip_sync", "wait_for_lip_sync", "transcode", "publish"], "success"
    )

    # upload: both local files went to Jogg's asset storage, byte for byte, and Jogg got their URLs
    jogg_task_id = xcom_value(dag_run, "lip_sync")
    inputs = xcom_value(dag_run, "lip_sync", key="jogg_inputs")
    assert set(inputs) == {"video_url", "audio_url"}
    assets = media_jogg.assets
    assert assets[inputs["video_url"]]["data"] == media["video"].read_bytes()
    assert assets[inputs["audio_url"]]["data"] == media["audio"].read_bytes()
    assert assets[inputs["video_url"]]["content_type"] == "video/mp4"
    assert assets[inputs["audio_url"]]["content_type"] == "audio/mp4"
    task = media_jogg.tasks[jogg_task_id]
    assert (task["video_url"], task["audio_url"]) == (inputs["video_url"], inputs["audio_url"])
    assert media_jogg.create_count == 1

    # lip sync + download: the saved video is the server's result, byte for byte, and so is the cover
    result = xcom_value(dag_run, "wait_for_lip_sync")
    check_result(result, media_jogg)
    built = media_jogg.task_media(jogg_task_id)
    assert built.from_ffmpeg, built.note  # a real mux of the uploaded clip and dub
    master = out / jogg_task_id / "lip_synced.mp4"
    assert result["output_path"] == str(master)
    assert master.read_bytes() == built.video
    cover = Path(result["cover_output_path"])
    assert cover == out / jogg_task_id / "cover.jpg"
    assert cover.read_bytes()[:3] == b"\xff\xd8\xff"  # a JPEG
    assert xcom_value(dag_run, "wait_for_lip_sync", key="jogg_result_url") == result["result_url"]

    # transcode: a second rendition that plays, with video and audio, as long as the clip
    rendition = Path(xcom_value(dag_run, "transcode"))
    assert rendition == out / jogg_task_id / "lip_synced_120p.mp4"
    info = probe(rendition)
    assert "mp4" in info["format"]
    video, audio = info["streams"]["video"], info["streams"]["audio"]
    assert (video["codec_name"], video["height"], video["width"]) == ("h264", 120, 160)
    assert audio["codec_name"] == "aac"
    assert info["duration"] == pytest.approx(CLIP_SECONDS, abs=0.15)
    assert float(audio["duration"]) == pytest.approx(CLIP_SECONDS, abs=0.15)
    assert info["duration"] == pytest.approx(result["duration_seconds"], abs=0.1)
    assert decode_errors(rendition) == ""  # every frame and sample decodes
    assert probe(master)["streams"]["video"]["height"] == 240

    # publish: the paths and the numbers, for the next step
    assert xcom_value(dag_run, "publish") == {
        "jogg_task_id": jogg_task_id,
        "video": str(master),
        "rendition": str(rendition),
        "cover": str(cover),
        "duration_seconds": result["duration_seconds"],
        "credits": result["credits"],
    }
    assert leftovers(out) == []


def test_transcode_example_takes_the_path_of_an_ffmpeg_off_path(media, tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))  # no ffmpeg by name
    source = tmp_path / "task-1" / "lip_synced.mp4"
    source.parent.mkdir()
    source.write_bytes(media["video"].read_bytes())
    transcode = transcode_task().python_callable
    params = {"rendition_height": 120}

    rendition = Path(transcode({"output_path": str(source)}, {**params, "ffmpeg": FFMPEG}))
    assert rendition == source.with_name("lip_synced_120p.mp4")
    info = probe(rendition)
    assert (info["streams"]["video"]["codec_name"], info["streams"]["video"]["height"]) == ("h264", 120)
    assert info["duration"] == pytest.approx(CLIP_SECONDS, abs=0.15)
    assert leftovers(tmp_path) == []

    with pytest.raises(FileNotFoundError, match=r"ffmpeg not found: 'ffmpeg' .*'ffmpeg' param"):
        transcode({"output_path": str(source)}, {**params, "ffmpeg": "ffmpeg"})
    missing = str(tmp_path / "no" / "ffmpeg")
    with pytest.raises(FileNotFoundError, match=re.escape(repr(missing))):
        transcode({"output_path": str(source)}, {**params, "ffmpeg": missing})


# --------------------------------------------------------------------------------------------------
# example_jogg_object_storage: file:// and s3:// (moto's S3 server on loopback)
# --------------------------------------------------------------------------------------------------
def keys(client, bucket: str) -> list[str]:
    return sorted(o["Key"] for o in client.list_objects_v2(Bucket=bucket).get("Contents", []))


@pytest.mark.parametrize("scheme", ["file", "s3"])
def test_object_storage_example(media_jogg, media, tmp_path, request, scheme):
    inputs = {"clips/interview.mp4": media["video"], "dubs/interview.de.m4a": media["audio"]}
    if scheme == "file":
        base_dir = tmp_path / "media"
        for key, source in inputs.items():
            (base_dir / key).parent.mkdir(parents=True, exist_ok=True)
            (base_dir / key).write_bytes(source.read_bytes())
        conf = {"base": base_dir.as_uri(), "conn_id": None}
    else:
        client = request.getfixturevalue("s3")
        bucket = f"jogg-media-{next(_ids)}"
        client.create_bucket(Bucket=bucket)
        for key, source in inputs.items():
            client.put_object(Bucket=bucket, Key=f"dubbing/{key}", Body=source.read_bytes())
        conf = {"base": f"s3://{bucket}/dubbing", "conn_id": "aws_default"}

    dag = fast_polls(load_dag(EXAMPLES / "example_jogg_object_storage.py", "example_jogg_object_storage"))
    dag_run = run_dag(
        dag,
        run_conf={
            **conf,
            "video": "clips/interview.mp4",
            "audio": "dubs/interview.de.m4a",
            "output": "lip-synced/interview.de.mp4",
        },
    )
    assert task_states(dag_run) == {"locate": "success", "lip_sync": "success", "verify": "success"}

    # the inputs were streamed from storage into Jogg's upload, byte for byte
    uploaded = xcom_value(dag_run, "lip_sync", key="jogg_inputs")
    assert media_jogg.assets[uploaded["video_url"]]["data"] == media["video"].read_bytes()
    assert media_jogg.assets[uploaded["audio_url"]]["data"] == media["audio"].read_bytes()

    # the operator waited and returned the sensor's dict; the result is in storage, complete
    result = xcom_value(dag_run, "lip_sync")
    check_result(result, media_jogg)
    assert xcom_value(dag_run, "lip_sync", key="jogg_task_id") == result["task_id"]
    expected = media_jogg.task_media(result["task_id"]).video
    if scheme == "file":
        stored = base_dir / "lip-synced" / "interview.de.mp4"
        assert result["output_path"] == stored.as_uri()
        assert stored.read_bytes() == expected
        assert leftovers(base_dir) == []
        local = stored
    else:
        assert result["output_path"] == f"s3://aws_default@{bucket}/dubbing/lip-synced/interview.de.mp4"
        body = client.get_object(Bucket=bucket, Key="dubbing/lip-synced/interview.de.mp4")["Body"].read()
        assert body == expected
        # nothing half-written is left in the bucket
        assert keys(client, bucket) == [
            "dubbing/clips/interview.mp4",
            "dubbing/dubs/interview.de.m4a",
            "dubbing/lip-synced/interview.de.mp4",
        ]
        local = tmp_path / "from-s3.mp4"
        local.write_bytes(body)
    info = probe(local)
    assert set(info["streams"]) == {"video", "audio"}
    assert info["duration"] == pytest.approx(CLIP_SECONDS, abs=0.15)

    verified = xcom_value(dag_run, "verify")
    assert verified == {
        "jogg_task_id": result["task_id"],
        "output_path": result["output_path"],
        "bytes": len(expected),
    }


# --------------------------------------------------------------------------------------------------
# example_jogg_batch
# --------------------------------------------------------------------------------------------------
def write_manifest(path: Path, rows: list[tuple[str, str, str]]) -> Path:
    with path.open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["clip", "video_url", "audio_url"])
        writer.writerows(rows)
    return path


def batch_dag() -> DAG:
    return fast_polls(load_dag(EXAMPLES / "example_jogg_batch.py", "example_jogg_batch"))


def test_batch_example_is_daily_without_catchup():
    dag = batch_dag()
    assert dag.catchup is False
    assert dag.schedule == "@daily"
    assert {t.task_id for t in dag.tasks} == {"read_manifest", "lip_sync", "wait_for_lip_sync", "report"}


def test_batch_example_with_the_shipped_manifest(jogg_conn):
    dag_run = run_dag(batch_dag())
    shipped = list(csv.DictReader((EXAMPLES / "manifests" / "example_jogg_batch.csv").open()))
    states = task_states(dag_run)
    assert len(states) == 2 + 2 * len(shipped)
    assert set(states.values()) == {"success"}
    for index, row in enumerate(shipped):
        task = jogg_conn.tasks[xcom_value(dag_run, "lip_sync", map_index=index)]
        assert (task["video_url"], task["audio_url"], task["playback_type"]) == (
            row["video_url"],
            row["audio_url"],
            row["playback_type"],
        )
    report = xcom_value(dag_run, "report")
    assert [r["clip"] for r in report["results"]] == [row["clip"] for row in shipped]
    assert all(r["output_path"] is None for r in report["results"])  # no output_dir: URLs only


def test_batch_example_runs_hundreds_of_pairs(jogg_conn, tmp_path):
    manifest = write_manifest(
        tmp_path / "manifest.csv",
        [
            (f"clip-{i:03d}", f"https://cdn.example/v/{i:03d}.mp4", f"https://cdn.example/a/{i:03d}.mp3")
            for i in range(BATCH_PAIRS)
        ],
    )
    out = tmp_path / "results"
    started = time.monotonic()
    dag_run = run_dag(batch_dag(), run_conf={"manifest": str(manifest), "output_dir": str(out)})
    took = time.monotonic() - started
    print(f"{BATCH_PAIRS} pairs through dag.test() in {took:.1f} s")

    states = task_states(dag_run)
    assert sum(1 for k in states if k.startswith("lip_sync[")) == BATCH_PAIRS
    assert sum(1 for k in states if k.startswith("wait_for_lip_sync[")) == BATCH_PAIRS
    assert set(states.values()) == {"success"}
    assert jogg_conn.create_count == BATCH_PAIRS  # one Jogg task per pair, none twice
    assert len(jogg_conn.tasks) == BATCH_PAIRS

    report = xcom_value(dag_run, "report")
    assert report["clips"] == BATCH_PAIRS
    rows = report["results"]
    assert [r["clip"] for r in rows] == [f"clip-{i:03d}" for i in range(BATCH_PAIRS)]
    assert len({r["jogg_task_id"] for r in rows}) == BATCH_PAIRS
    for index in (0, 1, BATCH_PAIRS // 2, BATCH_PAIRS - 1):  # per clip: its own task, its own file
        row, result = rows[index], xcom_value(dag_run, "wait_for_lip_sync", map_index=index)
        assert row["jogg_task_id"] == result["task_id"] == xcom_value(dag_run, "lip_sync", map_index=index)
        assert jogg_conn.tasks[row["jogg_task_id"]]["video_url"] == f"https://cdn.example/v/{index:03d}.mp4"
        check_result(result, jogg_conn)
        assert row["output_path"] == str(out / f"clip-{index:03d}.mp4")
        assert Path(row["output_path"]).read_bytes() == jogg_conn.task_media(row["jogg_task_id"]).video
    assert len(list(out.glob("clip-*.mp4"))) == BATCH_PAIRS
    assert leftovers(out) == []
    assert report["duration_seconds"] == pytest.approx(sum(r["duration_seconds"] for r in rows))
    assert report["credits"] == pytest.approx(sum(r["credits"] for r in rows), abs=1e-3)


def test_batch_example_a_failed_clip_fails_only_its_map_index(jogg_conn, tmp_path):
    manifest = write_manifest(
        tmp_path / "manifest.csv",
        [
            ("ok-0", "https://cdn.example/v/0.mp4", "https://cdn.example/a/0.mp3"),
            ("broken", "https://cdn.example/v/fail.mp4", "https://cdn.example/a/1.mp3"),
            ("ok-2", "https://cdn.example/v/2.mp4", "https://cdn.example/a/2.mp3"),
        ],
    )
    dag_run = run_dag(batch_dag(), run_conf={"manifest": str(manifest)})
    states = task_states(dag_run)
    assert states["wait_for_lip_sync[0]"] == "success"
    assert states["wait_for_lip_sync[1]"] == "failed"
    assert states["wait_for_lip_sync[2]"] == "success"
    assert states["report"] == "upstream_failed"
    assert xcom_value(dag_run, "wait_for_lip_sync", map_index=2)["status"] == "success"
    assert jogg_conn.create_count == 3


@pytest.mark.parametrize(
    ("rows", "message"),
    [
        ([("a", "https://x/v.mp4", ""), ("b", "https://x/v.mp4", "https://x/a.mp3")], "line 2"),
        ([("a", "https://x/v.mp4", "https://x/a.mp3")] * 2, "unique"),
        ([], "no clips"),
    ],
    ids=["missing-audio", "duplicate-clip", "empty"],
)
def test_batch_example_rejects_a_bad_manifest_before_any_request(jogg_conn, tmp_path, rows, message, capfd):
    manifest = write_manifest(tmp_path / "manifest.csv", rows)
    dag_run = run_dag(batch_dag(), run_conf={"manifest": str(manifest)})
    assert task_states(dag_run)["read_manifest"] == "failed"
    assert message in capfd.readouterr().out
    assert jogg_conn.count() == 0


# --------------------------------------------------------------------------------------------------
# example_jogg_asset_consumer: the sensor's asset event schedules the consumer
# --------------------------------------------------------------------------------------------------
def test_asset_event_triggers_the_consumer(jogg_conn, tmp_path):
    from airflow.models.asset import AssetDagRunQueue, AssetEvent, AssetModel
    from airflow.models.dagrun import DagRun
    from airflow.utils.session import create_session
    from airflow.utils.types import DagRunType

    path = EXAMPLES / "example_jogg_asset_consumer.py"
    producer = fast_polls(load_dag(path, "example_jogg_asset_producer"))
    consumer = load_dag(path, "example_jogg_asset_consumer")
    uri = "jogg://lip-sync/results"
    assert producer.get_task("wait_for_lip_sync").outlets == [Asset(uri)]

    # the DAG processor has seen both DAGs; the consumer is switched on, as a user would in the UI
    from airflow_provider_jogg.testing.dagrun import sync_dag_to_db

    sync_dag_to_db(consumer)
    set_paused("example_jogg_asset_consumer", False)
    with create_session() as session:
        session.execute(AssetDagRunQueue.__table__.delete())  # events of earlier tests

    out = tmp_path / "lip-synced"
    dag_run = run_dag(producer, run_conf={"output_dir": str(out)})
    assert task_states(dag_run) == {"lip_sync": "success", "wait_for_lip_sync": "success"}
    result = xcom_value(dag_run, "wait_for_lip_sync")
    output = out / f"{result['task_id']}.mp4"
    assert output.read_bytes() == jogg_conn.task_media(result["task_id"]).video

    # 1. the sensor's success wrote an AssetEvent with the extra, and queued a run of the consumer
    expected_extra = {
        "jogg_task_id": result["task_id"],
        "result_url": result["result_url"],
        "duration_seconds": result["duration_seconds"],
        "output_path": str(output),
    }
    with create_session() as session:
        asset = session.query(AssetModel).filter_by(uri=uri).one()
        (event,) = session.query(AssetEvent).filter_by(asset_id=asset.id, source_run_id=dag_run.run_id).all()
        assert (event.source_dag_id, event.source_task_id) == (
            "example_jogg_asset_producer",
            "wait_for_lip_sync",
        )
        assert event.extra == expected_extra
        queued = session.query(AssetDagRunQueue).filter_by(asset_id=asset.id).all()
        assert [q.target_dag_id for q in queued] == ["example_jogg_asset_consumer"]
        event_id = event.id

    # 2. the scheduler's own run creation turns the queue into an asset-triggered run of the consumer
    triggered = scheduler_creates_dagruns("example_jogg_asset_consumer")
    assert (triggered.run_type, triggered.state) == (DagRunType.ASSET_TRIGGERED, "running")
    with create_session() as session:
        consumed = session.get(DagRun, triggered.id).consumed_asset_events
        assert [e.id for e in consumed] == [event_id]
        assert session.query(AssetDagRunQueue).count() == 0  # the queue was consumed

    # 3. that run reads the extra from triggering_asset_events
    finished = run_existing_dagrun(consumer, triggered)
    assert finished.state == "success"
    (picked,) = xcom_value(finished, "pick_up")
    assert {k: picked[k] for k in expected_extra} == expected_extra
    assert picked["bytes"] == output.stat().st_size

    # run by hand (no triggering event), the consumer picks up the latest result through inlet_events
    manual = run_dag(consumer)
    (latest,) = xcom_value(manual, "pick_up")
    assert {k: latest[k] for k in expected_extra} == expected_extra


# --------------------------------------------------------------------------------------------------
# Provider features the examples rely on
# --------------------------------------------------------------------------------------------------
def finished_task(server) -> tuple[str, str, bytes]:
    """A Jogg task that already succeeded: its id, its result URL and the bytes that URL serves."""
    task_id = server.add_task("https://m.example/v.mp4", "https://m.example/a.mp3", status="success")
    return task_id, f"{server.root_url}/files/{task_id}/result.mp4", server.task_media(task_id).video


BROKEN_DOWNLOADS = [
    Fault("truncated", path="/files/", after_create=True),  # half of the real MP4, then the socket closes
    Fault("truncated", path="/files/"),
    Fault("reset", path="/files/"),
    Fault("close", path="/files/"),
]
BROKEN_IDS = ["truncated-mp4", "truncated", "reset", "close"]


@pytest.mark.parametrize("fault", BROKEN_DOWNLOADS, ids=BROKEN_IDS)
def test_a_broken_download_never_leaves_a_file_that_looks_complete(fake_jogg, set_conn, tmp_path, fault):
    set_conn("jogg_default", fake_jogg.url, max_retries=0)  # one attempt per call: see it fail
    _, url, expected = finished_task(fake_jogg)
    destination = tmp_path / "out" / "result.mp4"
    fake_jogg.add_fault(fault)

    with pytest.raises(exc.JoggTransientError):  # retryable: not an AirflowFailException
        JoggHook().download(url, destination)
    assert not destination.exists()
    assert leftovers(tmp_path) == []

    assert JoggHook().download(url, destination) == len(expected)  # a later attempt succeeds
    assert destination.read_bytes() == expected
    assert leftovers(tmp_path) == []
    assert fake_jogg.count() == 0  # downloads go to the CDN, not the API: no key, not recorded


def test_a_broken_download_is_retried_within_one_call(jogg_conn, tmp_path):
    _, url, expected = finished_task(jogg_conn)
    destination = tmp_path / "result.mp4"
    for fault in BROKEN_DOWNLOADS[:3]:  # three failures, max_retries=3
        jogg_conn.add_fault(fault)
    assert JoggHook().download(url, destination) == len(expected)
    assert destination.read_bytes() == expected
    assert leftovers(tmp_path) == []


def test_a_broken_download_to_s3_leaves_nothing_in_the_bucket(fake_jogg, set_conn, s3):
    set_conn("jogg_default", fake_jogg.url, max_retries=0)
    _, url, expected = finished_task(fake_jogg)
    bucket = f"jogg-out-{next(_ids)}"
    s3.create_bucket(Bucket=bucket)
    destination = f"s3://aws_default@{bucket}/results/result.mp4"
    fake_jogg.add_fault(BROKEN_DOWNLOADS[0])

    with pytest.raises(exc.JoggTransientError):
        JoggHook().download(url, destination)
    assert keys(s3, bucket) == []

    JoggHook().download(url, destination)
    assert keys(s3, bucket) == ["results/result.mp4"]
    assert s3.get_object(Bucket=bucket, Key="results/result.mp4")["Body"].read() == expected


def test_sensor_retry_downloads_again_without_a_new_jogg_task(jogg_conn, tmp_path):
    output = tmp_path / "out" / "lip_synced.mp4"
    with DAG(
        dag_id=f"jogg_media_download_retry_{next(_ids)}",
        schedule=None,
        start_date=datetime.datetime(2026, 1, 1),
        default_args={"retries": 1, "retry_delay": datetime.timedelta(seconds=0)},
    ) as dag:
        create = LipSyncOperator(
            task_id="lip_sync", video_url="https://m.example/v.mp4", audio_url="https://m.example/a.mp3"
        )
        LipSyncSensor(
            task_id="wait_for_lip_sync",
            jogg_task_id=create.output,
            output_path=str(output),
            poke_interval=0.1,
        )
    # the whole first try's download fails: its first attempt and its three retries
    jogg_conn.add_fault(Fault("truncated", path="/files/", after_create=True, times=4))

    dag_run = run_dag(dag)
    assert task_states(dag_run) == {"lip_sync": "success", "wait_for_lip_sync": "success"}
    with_retry = [ti for ti in dag_run.get_task_instances() if ti.task_id == "wait_for_lip_sync"]
    assert with_retry[0].try_number == 2
    result = xcom_value(dag_run, "wait_for_lip_sync")
    assert result["output_path"] == str(output)
    assert output.read_bytes() == jogg_conn.task_media(result["task_id"]).video
    assert leftovers(tmp_path) == []
    assert jogg_conn.create_count == 1


def test_wait_for_completion_returns_the_sensor_dict_deferrable_or_not(jogg_conn, tmp_path):
    inputs = {"video_url": "https://m.example/v.mp4", "audio_url": "https://m.example/a.mp3"}
    with DAG(
        dag_id=f"jogg_media_wait_{next(_ids)}", schedule=None, start_date=datetime.datetime(2026, 1, 1)
    ) as dag:
        for name, deferrable in (("deferrable", True), ("in_worker", False)):
            LipSyncOperator(
                task_id=name,
                **inputs,
                wait_for_completion=True,
                deferrable=deferrable,
                poke_interval=0.1,
                output_path=str(tmp_path / name / "result.mp4"),
                cover_output_path=str(tmp_path / name / "cover.jpg"),
            )
        create = LipSyncOperator(task_id="lip_sync", **inputs)
        LipSyncSensor(
            task_id="sensor",
            jogg_task_id=create.output,
            poke_interval=0.1,
            output_path=str(tmp_path / "sensor" / "result.mp4"),
            cover_output_path=str(tmp_path / "sensor" / "cover.jpg"),
        )
    dag_run = run_dag(dag)
    assert set(task_states(dag_run).values()) == {"success"}
    assert jogg_conn.create_count == 3

    results = {name: xcom_value(dag_run, name) for name in ("deferrable", "in_worker", "sensor")}
    for name, result in results.items():
        check_result(result, jogg_conn)  # same keys, same meaning
        assert result["output_path"] == str(tmp_path / name / "result.mp4")
        assert Path(result["output_path"]).read_bytes() == jogg_conn.task_media(result["task_id"]).video
        assert Path(result["cover_output_path"]).read_bytes()[:3] == b"\xff\xd8\xff"
        assert xcom_value(dag_run, name, key="jogg_result_url") == result["result_url"]
    for name in ("deferrable", "in_worker"):
        assert xcom_value(dag_run, name, key="jogg_task_id") == results[name]["task_id"]
        assert xcom_value(dag_run, name, key="jogg_inputs") == inputs
    assert results["sensor"]["task_id"] == xcom_value(dag_run, "lip_sync")
    assert len({r["task_id"] for r in results.values()}) == 3


def test_upload_public_urls_rehosts_an_http_input(fake_jogg, set_conn, media):
    # the fake server is on loopback: media there is fetched only with the connection's opt-in
    set_conn("jogg_default", fake_jogg.url, allow_private_media_urls=True)
    jogg_conn = fake_jogg
    hook = JoggHook()
    public = {"video_url": hook.upload_asset(media["video"]), "audio_url": hook.upload_asset(media["audio"])}
    with DAG(
        dag_id=f"jogg_media_rehost_{next(_ids)}", schedule=None, start_date=datetime.datetime(2026, 1, 1)
    ) as dag:
        LipSyncOperator(task_id="rehosted", **public, upload_public_urls=True)
        LipSyncOperator(task_id="as_is", **public)
    dag_run = run_dag(dag)
    assert set(task_states(dag_run).values()) == {"success"}

    rehosted = xcom_value(dag_run, "rehosted", key="jogg_inputs")
    assets = jogg_conn.assets
    for role, url in rehosted.items():
        assert url != public[role]  # downloaded and uploaded again: a new asset...
        assert assets[url]["data"] == assets[public[role]]["data"]  # ...with the same bytes
    assert len(assets) == 4
    task = jogg_conn.tasks[xcom_value(dag_run, "rehosted")]
    assert (task["video_url"], task["audio_url"]) == (rehosted["video_url"], rehosted["audio_url"])
    # without the option an http(s) URL is given to Jogg as it is
    assert xcom_value(dag_run, "as_is", key="jogg_inputs") == public


def bad_inputs(tmp_path: Path, media) -> dict[str, tuple[dict[str, Any], list[str]]]:
    (tmp_path / "empty.mp4").write_bytes(b"")
    (tmp_path / "notes.txt").write_text("not audio")
    (tmp_path / "folder.mp4").mkdir()
    video, audio = str(media["video"]), str(media["audio"])
    missing = str(tmp_path / "missing.mp4")
    return {
        "missing": ({"video_url": missing, "audio_url": audio}, ["video_url", missing, "no such file"]),
        "empty": (
            {"video_url": str(tmp_path / "empty.mp4"), "audio_url": audio},
            ["video_url", "empty.mp4", "the file is empty"],
        ),
        "directory": (
            {"video_url": str(tmp_path / "folder.mp4"), "audio_url": audio},
            ["video_url", "folder.mp4"],
        ),
        "audio-as-video": (
            {"video_url": audio, "audio_url": audio},
            ["video_url", "interview.de.m4a", ".mp4"],
        ),
        "text-as-audio": (
            {"video_url": video, "audio_url": str(tmp_path / "notes.txt")},
            ["audio_url", "notes.txt", ".m4a"],
        ),
        "not-a-path": ({"video_url": video, "audio_url": 42}, ["audio_url", "42"]),
        "none": ({"video_url": None, "audio_url": audio}, ["video_url", "None"]),
        "file-uri-missing": (
            {"video_url": video, "audio_url": (tmp_path / "gone.m4a").as_uri()},
            ["audio_url", "gone.m4a", "no such file"],
        ),
    }


BAD_INPUT_CASES = [
    "missing",
    "empty",
    "directory",
    "audio-as-video",
    "text-as-audio",
    "not-a-path",
    "none",
    "file-uri-missing",
]


@pytest.mark.parametrize("case", BAD_INPUT_CASES)
def test_a_bad_input_fails_before_any_request_naming_it(jogg_conn, media, tmp_path, case):
    kwargs, words = bad_inputs(tmp_path, media)[case]
    with pytest.raises(exc.JoggConfigError) as info:
        LipSyncOperator(task_id="lip_sync", **kwargs, wait_for_completion=True).execute({})
    assert isinstance(info.value, exc.JoggFatalError)  # no Airflow retry can fix it
    for word in words:
        assert word in str(info.value)
    assert jogg_conn.count() == 0  # nothing uploaded, nothing created, even for the good input
    assert jogg_conn.assets == {}


def test_a_bad_input_fails_the_dag_task_once(jogg_conn, tmp_path):
    with DAG(
        dag_id=f"jogg_media_bad_input_{next(_ids)}",
        schedule=None,
        start_date=datetime.datetime(2026, 1, 1),
        default_args={"retries": 3, "retry_delay": datetime.timedelta(seconds=0)},
    ) as dag:
        LipSyncOperator(
            task_id="lip_sync", video_url=str(tmp_path / "nope.mp4"), audio_url=str(tmp_path / "a.mp3")
        )
    dag_run = run_dag(dag)
    assert task_states(dag_run) == {"lip_sync": "failed"}
    assert dag_run.get_task_instances()[0].try_number == 1  # retries=3 not used
    assert jogg_conn.count() == 0


# --------------------------------------------------------------------------------------------------
# ObjectStoragePath objects (not only URI strings) and a quiet log for plain operator runs
# --------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("scheme", ["file", "s3"])
def test_object_storage_path_objects_as_inputs_and_output(jogg_conn, media, tmp_path, request, scheme):
    from airflow.sdk import ObjectStoragePath

    if scheme == "file":
        base = ObjectStoragePath(tmp_path.as_uri())
        for name in ("video", "audio"):
            (tmp_path / media[name].name).write_bytes(media[name].read_bytes())
    else:
        client = request.getfixturevalue("s3")
        bucket = f"jogg-objects-{next(_ids)}"
        client.create_bucket(Bucket=bucket)
        for name in ("video", "audio"):
            client.put_object(Bucket=bucket, Key=media[name].name, Body=media[name].read_bytes())
        base = ObjectStoragePath(f"s3://{bucket}", conn_id="aws_default")
    output = base / "lip-synced" / "result.mp4"

    result = LipSyncOperator(
        task_id="lip_sync",
        video_url=base / media["video"].name,
        audio_url=base / media["audio"].name,
        wait_for_completion=True,
        deferrable=False,
        poke_interval=0.1,
        output_path=output,
    ).execute({})
    assert output.read_bytes() == jogg_conn.task_media(result["task_id"]).video
    assert {a["data"] for a in jogg_conn.assets.values()} == {
        media["video"].read_bytes(),
        media["audio"].read_bytes(),
    }


def test_a_plain_operator_run_logs_no_error(jogg_conn, capfd):
    with DAG(
        dag_id=f"jogg_media_quiet_{next(_ids)}", schedule=None, start_date=datetime.datetime(2026, 1, 1)
    ) as dag:
        LipSyncOperator(
            task_id="lip_sync", video_url="https://m.example/v.mp4", audio_url="https://m.example/a.mp3"
        )
    capfd.readouterr()
    dag_run = run_dag(dag)
    assert task_states(dag_run) == {"lip_sync": "success"}
    logged = capfd.readouterr()
    assert "XCom not found" not in logged.out + logged.err
