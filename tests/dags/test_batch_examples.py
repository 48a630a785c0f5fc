"""
The batch-operator examples through ``dag.test()`` against the fake Jogg server: the nightly batch
(``example_jogg_batch_operator``) and the batch with a human review before publishing
(``example_jogg_batch_review``), the review answered as a person would, through the Core API.
"""

from __future__ import annotations

import csv
import threading
import time
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from airflow_provider_jogg._compat import AIRFLOW_V_3_1_PLUS, AIRFLOW_V_3_3_PLUS
from airflow_provider_jogg.testing.dagrun import load_dag, run_dag, task_states, xcom_value
from tests.conftest import ROOT

if TYPE_CHECKING:
    from collections.abc import Iterator

    from airflow.models.dagrun import DagRun
    from airflow.sdk import DAG

pytestmark = [pytest.mark.dagtest, pytest.mark.usefixtures("airflow_db")]

EXAMPLES = ROOT / "example_dags"
SHIPPED = EXAMPLES / "manifests" / "example_jogg_batch.csv"
NIGHTLY = EXAMPLES / "example_jogg_batch_operator.py"
REVIEW = EXAMPLES / "example_jogg_batch_review.py"
HITL_SINCE = (
    "Human-in-the-loop operators exist from Airflow 3.1: example_jogg_batch_review defines no DAG before"
)
#: why the review runs are Airflow 3.3+: before, dag.test() runs the approval's HITLTrigger inline,
#: where the trigger's look-up of the answer gets nothing back (the in-process test supervisor does
#: not serve it: "'NoneType' object has no attribute 'response_received'"), so the task fails before
#: anyone can answer. From 3.3 the task waits in awaiting_input and dag.test() waits with it.
HITL_IN_DAG_TEST = (
    "dag.test() can answer a Human-in-the-loop task from Airflow 3.3: before, it runs the HITLTrigger "
    "inline and the trigger's answer look-up fails there"
)


def fast_batch(dag: DAG) -> DAG:
    """Poll every 0.1 s in the DAG's batch task (the examples poll every 30 s)."""
    task = dag.get_task("lip_sync_batch")
    task.poke_interval = 0.1
    task.progress_interval = 0.5
    return dag


def read_csv(path: Path | str) -> list[dict[str, str]]:
    with open(path, newline="", encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


def run_folder(dag_run: DagRun, root: Path) -> Path:
    """``<root>/<ds>``: where a run of the examples writes its batch."""
    return root / dag_run.logical_date.strftime("%Y-%m-%d")


def asset_events(uri: str, dag_run: DagRun) -> list[dict[str, Any]]:
    """The extras of the events ``dag_run`` recorded for the asset ``uri``, from the metadata DB."""
    from airflow.models.asset import AssetEvent, AssetModel
    from airflow.utils.session import create_session

    with create_session() as session:
        asset = session.query(AssetModel).filter_by(uri=uri).one()
        events = session.query(AssetEvent).filter_by(asset_id=asset.id, source_run_id=dag_run.run_id).all()
        return [dict(event.extra) for event in events]


def check_results(manifest: list[dict[str, str]], server, clips_dir: Path) -> None:
    """Every row succeeded, its Jogg task came from its own inputs, and its result was saved whole."""
    shipped = read_csv(SHIPPED)
    assert [r["clip"] for r in manifest] == [r["clip"] for r in shipped]
    tasks = server.tasks
    for given, row in zip(shipped, manifest, strict=True):
        task = tasks[row["jogg_task_id"]]
        assert (task["video_url"], task["audio_url"], task["playback_type"]) == (
            given["video_url"],
            given["audio_url"],
            given["playback_type"],
        )
        assert row["status"] == "succeeded"
        assert row["error"] == ""
        saved = clips_dir / f"{row['clip']}.mp4"
        assert row["output_path"] == str(saved)
        assert saved.read_bytes() == server.task_media(row["jogg_task_id"]).video
    assert server.create_count == len(shipped)


# --------------------------------------------------------------------------------------------------
# example_jogg_batch_operator: the nightly batch in one task
# --------------------------------------------------------------------------------------------------
def test_nightly_batch_example_is_daily_one_task_with_an_asset():
    from airflow.sdk import Asset

    dag = load_dag(NIGHTLY, "example_jogg_batch_operator")
    assert (dag.schedule, dag.catchup, dag.max_active_runs) == ("@daily", False, 1)
    (task,) = dag.tasks
    assert task.task_type == "LipSyncBatchOperator"
    assert task.outlets == [Asset(name="jogg_nightly_batch", uri="jogg://batches/nightly")]
    assert (task.max_failed_ratio, task.max_credits) == (0.01, 500)


def test_nightly_batch_example_end_to_end(jogg_conn, tmp_path):
    dag = fast_batch(load_dag(NIGHTLY, "example_jogg_batch_operator"))
    dag_run = run_dag(dag, run_conf={"output_root": str(tmp_path / "batches")})
    assert task_states(dag_run) == {"lip_sync_batch": "success"}

    folder = run_folder(dag_run, tmp_path / "batches")
    manifest = folder / "manifest.csv"
    check_results(read_csv(manifest), jogg_conn, folder / "clips")
    assert (folder / "manifest.csv.ledger").is_dir()  # the records a retry resumes from

    summary = xcom_value(dag_run, "lip_sync_batch")
    assert summary["manifest"] == str(manifest)
    assert (summary["clips"], summary["succeeded"], summary["failed"]) == (4, 4, 0)
    assert summary["counts"] == {"succeeded": 4}
    # the asset event names this night's manifest, for the DAG scheduled on the asset
    assert asset_events("jogg://batches/nightly", dag_run) == [
        {"manifest": str(manifest), "clips": 4, "succeeded": 4, "failed": 0, "credits": summary["credits"]}
    ]


def test_nightly_batch_example_fails_over_one_percent_after_writing_the_manifest(jogg_conn, tmp_path):
    rows = read_csv(SHIPPED)
    rows[2]["video_url"] = "https://media.example.com/clips/fail-teaser.mp4"  # the fake fails this task
    given = tmp_path / "today.csv"
    with given.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    dag = fast_batch(load_dag(NIGHTLY, "example_jogg_batch_operator"))
    dag.get_task("lip_sync_batch").retries = 0
    dag_run = run_dag(dag, run_conf={"manifest": str(given), "output_root": str(tmp_path / "batches")})

    assert task_states(dag_run) == {"lip_sync_batch": "failed"}  # 1 of 4 is above 1 %
    written = read_csv(run_folder(dag_run, tmp_path / "batches") / "manifest.csv")
    assert [(r["clip"], r["status"]) for r in written] == [
        ("interview-de", "succeeded"),
        ("interview-fr", "succeeded"),
        ("product-teaser-es", "failed"),
        ("ceo-message-ja", "succeeded"),
    ]
    assert written[2]["error"]
    assert asset_events("jogg://batches/nightly", dag_run) == []  # a failed batch announces nothing


# --------------------------------------------------------------------------------------------------
# example_jogg_batch_review: batch -> a person approves or rejects -> publish
# --------------------------------------------------------------------------------------------------
@contextmanager
def answer_review(dag_id: str, task_id: str, option: str, monkeypatch) -> Iterator[dict[str, Any]]:
    """
    Answer the Human-in-the-loop task ``task_id`` of the run ``dag.test()`` is running, once it asks,
    the way the Required Actions page does: ``PATCH .../hitlDetails`` on Airflow's own Core API (in
    process, on this metadata DB, the simple auth manager letting everyone in as admin). The API
    records the answer and moves the task from ``awaiting_input`` back to ``scheduled``, and
    ``dag.test()``, which waits for exactly that, resumes it.

    Yields ``{"body": <the question's body>, "status": <the API's HTTP status>}`` once answered. An
    answer that fails fails the waiting task instance, so ``dag.test()`` cannot wait forever.
    """
    from airflow.api_fastapi.app import create_app
    from airflow.models.dagrun import DagRun
    from airflow.models.hitl import HITLDetail
    from airflow.models.taskinstance import TaskInstance
    from airflow.utils.session import create_session
    from airflow.utils.state import TaskInstanceState
    from fastapi.testclient import TestClient

    monkeypatch.setenv("AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_ALL_ADMINS", "True")
    client = TestClient(create_app(apps="core"))
    answered: dict[str, Any] = {}
    done = threading.Event()  # set when dag.test() returned: stop looking for the question
    asked = threading.Event()
    with create_session() as session:  # earlier tests' runs of the DAG, answered or not: not ours
        earlier = {run.run_id for run in session.query(DagRun).filter_by(dag_id=dag_id)}

    def asked_for() -> tuple[TaskInstance, HITLDetail] | None:
        with create_session() as session:
            row = (
                session.query(TaskInstance, HITLDetail)
                .join(HITLDetail, HITLDetail.ti_id == TaskInstance.id)
                .filter(
                    TaskInstance.dag_id == dag_id,
                    TaskInstance.task_id == task_id,
                    TaskInstance.run_id.not_in(earlier),
                )
                .first()
            )
            if row is not None:
                session.expunge_all()
            return row

    def answer() -> None:
        found = None
        while found is None and not done.is_set():
            found = asked_for()
            if found is None:
                asked.wait(0.1)  # polls the metadata DB: the task writes its question there
        if found is None:
            return
        ti, detail = found
        answered["body"] = detail.body
        url = f"/api/v2/dags/{dag_id}/dagRuns/{ti.run_id}/taskInstances/{task_id}/-1/hitlDetails"
        # SQLite has one writer: under load the API's write can meet dag.test()'s ("database is
        # locked"); a person would press the button again, and so does this thread, for a while
        deadline = time.monotonic() + 60
        while "status" not in answered or answered["status"] >= 500:
            try:
                response = client.patch(url, json={"chosen_options": [option], "params_input": {}})
                answered["status"] = response.status_code
                answered["response"] = response.json()
            except Exception as error:
                answered["error"] = repr(error)
            if answered.get("status", 500) < 500 or time.monotonic() > deadline:
                break
            time.sleep(0.5)
        if answered.get("status") != 200:  # no answer: fail the question, or dag.test() waits a day
            while True:
                try:
                    with create_session() as session:
                        session.get(TaskInstance, ti.id).state = TaskInstanceState.FAILED
                    break
                except Exception:
                    if time.monotonic() > deadline + 60:
                        raise
                    time.sleep(0.5)

    thread = threading.Thread(target=answer, name="hitl-answer", daemon=True)
    thread.start()
    try:
        yield answered
    finally:
        done.set()
        thread.join()


def review_dag() -> DAG:
    return fast_batch(load_dag(REVIEW, "example_jogg_batch_review"))


@pytest.mark.skipif(not AIRFLOW_V_3_1_PLUS, reason=HITL_SINCE)
@pytest.mark.skipif(not AIRFLOW_V_3_3_PLUS, reason=HITL_IN_DAG_TEST)
def test_review_example_approved_publishes_the_batch(jogg_conn, tmp_path, monkeypatch):
    conf = {"output_root": str(tmp_path / "batches"), "publish_root": str(tmp_path / "published")}
    with answer_review("example_jogg_batch_review", "review", "Approve", monkeypatch) as answered:
        dag_run = run_dag(review_dag(), run_conf=conf)
    assert answered["status"] == 200, answered
    assert answered["response"]["chosen_options"] == ["Approve"]
    assert task_states(dag_run) == dict.fromkeys(
        ["lip_sync_batch", "review_notes", "review", "publish"], "success"
    )

    # the reviewer saw the counts, the credits and links to the results of the result manifest
    summary = xcom_value(dag_run, "lip_sync_batch")
    written = read_csv(summary["manifest"])
    body = answered["body"]
    assert "**4 of 4 clips succeeded** (4 succeeded)" in body
    assert f"about **{summary['credits']} credits**" in body
    for row in written:
        assert f"[{row['clip']}]({row['result_url']})" in body
    assert body == xcom_value(dag_run, "review_notes")

    # published: every clip copied, byte for byte, and a manifest pointing at the copies
    published = run_folder(dag_run, tmp_path / "published")
    check_results(written, jogg_conn, run_folder(dag_run, tmp_path / "batches") / "clips")
    copies = read_csv(published / "manifest.csv")
    assert [r["clip"] for r in copies] == [r["clip"] for r in written]
    for row, copy in zip(written, copies, strict=True):
        assert copy["output_path"] == str(published / "clips" / f"{row['clip']}.mp4")
        assert Path(copy["output_path"]).read_bytes() == Path(row["output_path"]).read_bytes()
        assert {k: v for k, v in copy.items() if k != "output_path"} == {
            k: v for k, v in row.items() if k != "output_path"
        }
    result = {"manifest": str(published / "manifest.csv"), "clips": 4, "credits": summary["credits"]}
    assert xcom_value(dag_run, "publish") == result
    assert asset_events("jogg://batches/published", dag_run) == [result]


@pytest.mark.skipif(not AIRFLOW_V_3_1_PLUS, reason=HITL_SINCE)
@pytest.mark.skipif(not AIRFLOW_V_3_3_PLUS, reason=HITL_IN_DAG_TEST)
def test_review_example_rejected_publishes_nothing(jogg_conn, tmp_path, monkeypatch):
    conf = {"output_root": str(tmp_path / "batches"), "publish_root": str(tmp_path / "published")}
    with answer_review("example_jogg_batch_review", "review", "Reject", monkeypatch) as answered:
        dag_run = run_dag(review_dag(), run_conf=conf)
    assert answered["status"] == 200, answered
    assert task_states(dag_run) == {
        "lip_sync_batch": "success",
        "review_notes": "success",
        "review": "success",  # a person answered: the task did its job
        "publish": "skipped",
    }
    assert not (tmp_path / "published").exists()
    assert (run_folder(dag_run, tmp_path / "batches") / "manifest.csv").is_file()  # kept, unpublished
    assert asset_events("jogg://batches/published", dag_run) == []


def test_review_example_defines_no_dag_before_airflow_3_1():
    from airflow_provider_jogg.testing.dagrun import dagbag_class

    bag = dagbag_class()(dag_folder=str(REVIEW), safe_mode=False)
    assert bag.import_errors == {}
    if not AIRFLOW_V_3_1_PLUS:
        assert bag.dags == {}, "Human-in-the-loop operators exist from Airflow 3.1 only"
        pytest.skip(HITL_SINCE)
    assert list(bag.dags) == ["example_jogg_batch_review"]
    dag = bag.dags["example_jogg_batch_review"]
    review = dag.get_task("review")
    assert review.task_type == "ApprovalOperator"
    assert review.defaults == ["Reject"]  # no answer in time: nothing is published
    assert dag.get_task("publish").upstream_task_ids == {"review", "lip_sync_batch"}


def test_review_body_lists_a_few_results_and_the_failures():
    import importlib.util

    spec = importlib.util.spec_from_file_location("example_jogg_batch_review_body", REVIEW)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    empty = {"result_url": "", "duration_seconds": "", "output_path": "", "error": ""}
    ok = [
        {
            **empty,
            "clip": f"c{i}",
            "status": "succeeded",
            "result_url": f"https://r/{i}.mp4",
            "duration_seconds": "12.5",
        }
        for i in range(8)
    ]
    bad = [
        {**empty, "clip": "x1", "status": "failed", "error": "face not found"},
        {**empty, "clip": "x2", "status": "uncertain", "error": "a Jogg task may exist"},
    ]
    summary = {
        "clips": 10,
        "succeeded": 8,
        "counts": {"failed": 1, "succeeded": 8, "uncertain": 1},
        "duration_seconds": 100.0,
        "credits": 0.8,
        "manifest": "/m.csv",
    }
    body = module.review_body(summary, ok + bad)
    assert "**8 of 10 clips succeeded** (1 failed, 8 succeeded, 1 uncertain)." in body
    assert f"Results ({module.SHOWN_RESULTS} of 8):" in body
    assert "- [c4](https://r/4.mp4) (12.5 s)" in body
    assert "[c5]" not in body  # a few results, not all of them
    assert "Not succeeded (2 of 2):" in body
    assert "- x1: failed: face not found" in body
    assert "- x2: uncertain: a Jogg task may exist" in body
