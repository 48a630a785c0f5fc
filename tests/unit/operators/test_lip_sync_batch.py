"""LipSyncBatchOperator through dag.test() against the fake Jogg server: every option of the batch."""

from __future__ import annotations

import csv
import datetime
import itertools
import json
from collections import Counter
from pathlib import Path

import pytest
from airflow.sdk import DAG

from airflow_provider_jogg import exceptions as exc
from airflow_provider_jogg.api_paths import CREATE_PATH
from airflow_provider_jogg.batch import creating
from airflow_provider_jogg.operators.lip_sync_batch import LipSyncBatchOperator
from airflow_provider_jogg.testing.dagrun import run_dag, task_states, xcom_value
from airflow_provider_jogg.triggers.lip_sync_batch import LipSyncBatchTrigger

pytestmark = [pytest.mark.dagtest, pytest.mark.usefixtures("airflow_db")]

_ids = itertools.count()


def rows(n: int, *, fail: tuple[int, ...] = ()) -> list[dict[str, str]]:
    """n clips with distinct http inputs; the ones in ``fail`` make the fake's Jogg task fail."""
    return [
        {
            "clip": f"clip-{i:03d}",
            "video": f"https://media.example/{'fail-' if i in fail else ''}video-{i}.mp4",
            "audio": f"https://media.example/voice-{i}.mp3",
        }
        for i in range(n)
    ]


def batch_dag(op_class: type[LipSyncBatchOperator] = LipSyncBatchOperator, retries: int = 0, **kwargs) -> DAG:
    kwargs.setdefault("poke_interval", 0.1)
    kwargs.setdefault("progress_interval", 0.5)
    kwargs.setdefault("check_quota", False)
    with DAG(
        dag_id=f"jogg_batch_{next(_ids)}",
        schedule=None,
        start_date=datetime.datetime(2026, 1, 1),
        default_args={"retries": retries, "retry_delay": datetime.timedelta(seconds=0)},
    ) as dag:
        op_class(task_id="batch", **kwargs)
    return dag


def read_manifest(path) -> list[dict[str, str]]:
    with open(path, newline="", encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


@pytest.mark.parametrize("deferrable", [True, False], ids=["deferrable", "in-worker"])
def test_every_clip_gets_one_task_and_its_own_result(jogg_conn, tmp_path, deferrable):
    given = rows(30)
    manifest = tmp_path / "out" / "manifest.csv"
    dag_run = run_dag(
        batch_dag(
            clips=given,
            manifest_path=str(manifest),
            output_dir=str(tmp_path / "results"),
            deferrable=deferrable,
        )
    )
    assert task_states(dag_run)["batch"] == "success"
    assert jogg_conn.create_count == 30
    summary = xcom_value(dag_run, "batch")
    assert summary["clips"] == summary["succeeded"] == 30
    assert summary["failed"] == 0
    assert summary["manifest"] == str(manifest)
    assert summary["duration_seconds"] == pytest.approx(30 * 12.5)
    assert len(json.dumps(summary)) < 1000  # a summary, never the rows
    written = read_manifest(manifest)
    assert [r["clip"] for r in written] == [r["clip"] for r in given]
    tasks = jogg_conn.tasks
    for row, out in zip(given, written, strict=True):
        task = tasks[out["jogg_task_id"]]
        # the Jogg task of this row was created from this row's own inputs
        assert (task["video_url"], task["audio_url"]) == (row["video"], row["audio"])
        assert out["status"] == "succeeded"
        assert out["output_path"] == str(tmp_path / "results" / f"{row['clip']}.mp4")
        assert (tmp_path / "results" / f"{row['clip']}.mp4").stat().st_size > 0


def test_bad_rows_fail_before_any_request(jogg_conn, tmp_path):
    given = rows(5)
    given[3]["audio"] = "ftp://nowhere/voice.mp3"
    given[4]["video"] = str(tmp_path / "missing.mp4")
    dag_run = run_dag(batch_dag(clips=given, manifest_path=str(tmp_path / "m.csv")))
    assert task_states(dag_run)["batch"] == "failed"
    assert jogg_conn.requests == []


def test_bad_rows_name_their_line(jogg_conn, tmp_path):
    given = rows(5)
    given[4]["video"] = str(tmp_path / "missing.mp4")
    op = LipSyncBatchOperator(
        task_id="b", clips=given, manifest_path=str(tmp_path / "m.csv"), check_quota=False
    )
    with pytest.raises(
        exc.JoggConfigError, match=r"(?s)1 clip of the batch.*row 5 \(clip 'clip-004'\).*missing\.mp4"
    ):
        op._checked_inputs(op._rows())
    assert jogg_conn.requests == []


def test_failed_clips_fail_the_task_after_the_manifest_is_written(jogg_conn, tmp_path):
    manifest = tmp_path / "manifest.jsonl"
    dag_run = run_dag(batch_dag(clips=rows(10, fail=(2, 7)), manifest_path=str(manifest)))
    assert task_states(dag_run)["batch"] == "failed"
    written = [json.loads(line) for line in manifest.read_text().splitlines()]
    assert [r["status"] for r in written].count("succeeded") == 8
    failed = [r for r in written if r["status"] == "failed"]
    assert [r["clip"] for r in failed] == ["clip-002", "clip-007"]
    assert all(r["error"] and r["jogg_task_id"] for r in failed)


@pytest.mark.parametrize(
    ("kwargs", "state"),
    [({"max_failed": 2}, "success"), ({"max_failed": 1}, "failed"), ({"max_failed_ratio": 0.2}, "success")],
)
def test_max_failed_lets_a_batch_succeed_with_some_failures(jogg_conn, tmp_path, kwargs, state):
    dag_run = run_dag(batch_dag(clips=rows(10, fail=(2, 7)), manifest_path=str(tmp_path / "m.csv"), **kwargs))
    assert task_states(dag_run)["batch"] == state


@pytest.mark.parametrize(("allowed", "state"), [(2, "success"), (1, "failed")])
def test_max_failed_can_come_from_the_run_conf(jogg_conn, tmp_path, allowed, state):
    dag = batch_dag(
        clips=rows(10, fail=(2, 7)),
        manifest_path=str(tmp_path / "m.csv"),
        max_failed="{{ dag_run.conf['allowed'] }}",
    )
    dag_run = run_dag(dag, run_conf={"allowed": allowed})
    assert task_states(dag_run)["batch"] == state


def test_a_limit_that_renders_to_no_number_fails_before_any_request(jogg_conn, tmp_path):
    dag = batch_dag(
        clips=rows(3), manifest_path=str(tmp_path / "m.csv"), max_failed_ratio="{{ dag_run.conf['ratio'] }}"
    )
    dag_run = run_dag(dag, run_conf={"ratio": "some"})
    assert task_states(dag_run)["batch"] == "failed"
    assert jogg_conn.requests == []


class _LostWorker(BaseException):
    """Stands in for a worker killed mid-create: nothing in the operator catches it."""


def test_a_worker_lost_mid_create_never_sends_a_create_twice(jogg_conn, tmp_path, monkeypatch):
    real = creating.CreatePhase._create_one
    calls = itertools.count()

    def dying(self, item):
        result = real(self, item)
        if next(calls) == 13:  # the 14th create was sent and answered, then the worker is gone
            raise _LostWorker
        return result

    monkeypatch.setattr(creating.CreatePhase, "_create_one", dying)
    manifest = tmp_path / "manifest.csv"
    dag = batch_dag(
        clips=rows(40), manifest_path=str(manifest), retries=1, max_failed=4, create_concurrency=4
    )
    dag_run = run_dag(dag)
    assert task_states(dag_run)["batch"] == "success"
    written = read_manifest(manifest)
    uncertain = [r for r in written if r["status"] == "uncertain"]
    # how many of the lost window's announced creates left before the worker was gone depends on
    # thread timing (a create not yet started is announced but never sent): count them per clip
    sent = Counter(r.json["video_url"] for r in jogg_conn.requests if r.path == CREATE_PATH)
    lost_window = {f"https://media.example/video-{i}.mp4" for i in range(12, 16)}
    assert all(n == 1 for n in sent.values())  # no clip was ever created twice
    assert {v for v in sent if v not in lost_window} == {
        f"https://media.example/video-{i}.mp4" for i in range(40) if not 12 <= i < 16
    }
    assert 1 <= sum(sent[v] for v in lost_window) <= 4  # the 14th create was answered, at least
    # the creates of the lost window were announced, sent and answered, but their answers never
    # reached the ledger: a task may exist for each, so none of them is sent again
    assert [r["clip"] for r in uncertain] == [f"clip-{i:03d}" for i in range(12, 16)]
    assert all("not sent again" in r["error"] and not r["jogg_task_id"] for r in uncertain)
    assert sum(r["status"] == "succeeded" for r in written) == 36


class _FailFirstTry(LipSyncBatchOperator):
    """On its first try, the Jogg task of clip-003 fails (Jogg's side); later tries go through."""

    # counted here, not read from the task instance: Airflow 3.0 gives a try that follows a deferred
    # one the deferred try's number
    tries = 0

    def execute(self, context):
        type(self).tries += 1
        if type(self).tries == 1:
            real = self.hook.create_lip_sync_video
            server = _SERVER[0]

            def create(video, audio, playback="normal"):
                task_id = real(video, audio, playback)
                if video.endswith("video-3.mp4"):
                    server.set_task(task_id, "failed", "the GPU caught fire")
                return task_id

            self.hook.create_lip_sync_video = create  # type: ignore[method-assign]
        return super().execute(context)


_SERVER: list = []


def test_a_retry_recreates_only_the_clip_whose_jogg_task_failed(jogg_conn, tmp_path):
    _SERVER[:] = [jogg_conn]
    _FailFirstTry.tries = 0
    manifest = tmp_path / "manifest.csv"
    # waiting in the worker: Airflow 3.0's dag.test() does not retry a try that failed after a deferral
    dag = batch_dag(_FailFirstTry, clips=rows(12), manifest_path=str(manifest), retries=1, deferrable=False)
    dag_run = run_dag(dag)
    assert task_states(dag_run)["batch"] == "success"
    assert jogg_conn.create_count == 13  # twelve clips, one of them created again
    written = read_manifest(manifest)
    assert {r["status"] for r in written} == {"succeeded"}
    again = [t for t in jogg_conn.tasks.values() if t["video_url"].endswith("video-3.mp4")]
    assert len(again) == 2


class _SeesItsResults(LipSyncBatchOperator):
    """Notes, as its second try starts, which results the first try saved (and their inodes)."""

    seen: dict[str, int] = {}
    tries = 0  # see _FailFirstTry

    def execute(self, context):
        type(self).tries += 1
        if type(self).tries == 2:
            folder = Path(self.output_dir)
            type(self).seen = {p.name: p.stat().st_ino for p in folder.iterdir()}
        return super().execute(context)


def test_a_retry_saves_only_what_is_not_saved(jogg_conn, tmp_path):
    _SeesItsResults.tries = 0
    manifest, results = tmp_path / "m.csv", tmp_path / "results"
    dag = batch_dag(
        _SeesItsResults,
        clips=rows(6, fail=(5,)),
        manifest_path=str(manifest),
        output_dir=str(results),
        retries=1,
        deferrable=False,  # see test_a_retry_recreates_only_the_clip_whose_jogg_task_failed
    )
    dag_run = run_dag(dag)
    assert task_states(dag_run)["batch"] == "failed"  # clip-005 fails on both tries
    assert jogg_conn.create_count == 7  # the second try re-created the failed clip only
    assert len(_SeesItsResults.seen) == 5
    # each download is a new file (written aside, then renamed): the same inode means not downloaded
    assert {p.name: p.stat().st_ino for p in results.iterdir()} == _SeesItsResults.seen


def test_another_run_with_the_same_manifest_path_is_a_new_batch(jogg_conn, tmp_path):
    manifest = tmp_path / "m.csv"
    for _ in range(2):
        dag_run = run_dag(batch_dag(clips=rows(3), manifest_path=str(manifest)))
        assert task_states(dag_run)["batch"] == "success"
    assert jogg_conn.create_count == 6  # the second run did not take the first run's tasks as its own


def test_the_trigger_row_stays_small_whatever_the_batch_size():
    trigger = LipSyncBatchTrigger(
        ledger_location="s3://bucket/2026-12-02/manifest.csv.ledger",
        fingerprint="f" * 16,
        end_time=1e9,
        not_before=1e9,
    )
    _path, kwargs = trigger.serialize()
    assert len(json.dumps(kwargs)) < 400  # no clip is in it: the trigger reads the ledger


def test_bad_settings_are_dag_parse_errors():
    with pytest.raises(exc.JoggConfigError, match="max_failed"):
        LipSyncBatchOperator(task_id="b", clips=[], manifest_path="m.csv", max_failed=-1)
    with pytest.raises(exc.JoggConfigError, match="max_failed_ratio"):
        LipSyncBatchOperator(task_id="b", clips=[], manifest_path="m.csv", max_failed_ratio=2)
    with pytest.raises(exc.JoggConfigError, match="create_concurrency"):
        LipSyncBatchOperator(task_id="b", clips=[], manifest_path="m.csv", create_concurrency=0)
    with pytest.raises(exc.JoggConfigError, match="max_credits must be a number >= 0, got 'many'"):
        LipSyncBatchOperator(task_id="b", clips=[], manifest_path="m.csv", max_credits="many")
    # text that is a number is one; a template is checked once rendered
    op = LipSyncBatchOperator(
        task_id="b", clips=[], manifest_path="m.csv", max_failed="3", max_credits="{{ params.budget }}"
    )
    assert (op.max_failed, op.max_credits) == (3, "{{ params.budget }}")
    op.max_credits = "-1"  # as rendered
    with pytest.raises(exc.JoggConfigError, match=r"max_credits must be a number >= 0, got -1\.0"):
        op._render_limits()


def wav(path, seconds: float):
    """A silent 8 kHz, 8-bit mono WAV of ``seconds`` (the standard library writes it: no ffmpeg)."""
    import wave

    with wave.open(str(path), "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(1)
        out.setframerate(8000)
        out.writeframes(b"\x80" * int(8000 * seconds))
    return path


def local_rows(tmp_path, n: int, seconds: float) -> list[dict[str, str]]:
    from airflow_provider_jogg.testing.media import SAMPLE_VIDEO

    return [
        {
            "clip": f"dub-{i}",
            "video": str(SAMPLE_VIDEO),
            "audio": str(wav(tmp_path / f"dub-{i}.wav", seconds)),
        }
        for i in range(n)
    ]


def test_a_batch_over_max_credits_sends_nothing(jogg_conn, tmp_path):
    # three dubs of 300 s: about 7.2 credits (1 per 125 s), above a cap of 5
    given = local_rows(tmp_path, 3, 300)
    dag_run = run_dag(batch_dag(clips=given, manifest_path=str(tmp_path / "m.csv"), max_credits=5))
    assert task_states(dag_run)["batch"] == "failed"
    assert jogg_conn.requests == []  # no upload, no create, not even the quota (check_quota=False)


def test_a_budget_from_the_run_conf_is_enforced(jogg_conn, tmp_path):
    given = local_rows(tmp_path, 3, 300)  # about 7.2 credits
    dag = batch_dag(
        clips=given, manifest_path=str(tmp_path / "m.csv"), max_credits="{{ dag_run.conf['budget'] }}"
    )
    dag_run = run_dag(dag, run_conf={"budget": 5})
    assert task_states(dag_run)["batch"] == "failed"
    assert jogg_conn.requests == []


def test_a_batch_over_the_remaining_quota_creates_nothing(jogg_conn, tmp_path):
    jogg_conn.remaining_quota = 2.0
    given = local_rows(tmp_path, 3, 300)
    dag_run = run_dag(batch_dag(clips=given, manifest_path=str(tmp_path / "m.csv"), check_quota=True))
    assert task_states(dag_run)["batch"] == "failed"
    assert [r.path for r in jogg_conn.requests] == ["/v2/user/remaining_quota"]


def test_local_files_are_uploaded_then_created_within_the_budget(jogg_conn, tmp_path):
    given = local_rows(tmp_path, 4, 10)
    manifest = tmp_path / "m.csv"
    dag = batch_dag(clips=given, manifest_path=str(manifest), max_credits=5, check_quota=True)
    dag_run = run_dag(dag)
    assert task_states(dag_run)["batch"] == "success"
    assert jogg_conn.create_count == 4
    assert jogg_conn.count("POST", "/v2/upload/asset") == 8  # a video and an audio per clip
    for out in read_manifest(manifest):
        task = jogg_conn.tasks[out["jogg_task_id"]]
        # Jogg was given the uploaded assets, the audio of this very clip
        assert task["audio_url"].startswith(jogg_conn.root_url + "/assets/")
        assert task["audio_url"].endswith(f"/{out['clip']}.wav")


def test_a_manifest_file_drives_the_batch(jogg_conn, tmp_path):
    source = tmp_path / "clips.csv"
    source.write_text(
        "clip,video,audio,playback_type\n"
        + "".join(
            f"c{i},https://m.example/v{i}.mp4,https://m.example/a{i}.mp3,normal_reverse\n" for i in range(5)
        ),
        encoding="utf-8",
    )
    manifest = tmp_path / "out.jsonl"
    dag_run = run_dag(batch_dag(clips=str(source), manifest_path=str(manifest)))
    assert task_states(dag_run)["batch"] == "success"
    written = [json.loads(line) for line in manifest.read_text().splitlines()]
    assert [r["clip"] for r in written] == [f"c{i}" for i in range(5)]
    assert {t["playback_type"] for t in jogg_conn.tasks.values()} == {"normal_reverse"}
