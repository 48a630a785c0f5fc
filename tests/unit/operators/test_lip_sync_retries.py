"""Retries never bill a second Jogg task: the operator reattaches, the sensor waits on the same task."""

from __future__ import annotations

import datetime
import itertools
from pathlib import Path
from typing import Any

import pytest
from airflow.sdk import DAG

from airflow_provider_jogg._compat import AIRFLOW_V_3_3_PLUS
from airflow_provider_jogg.operators.lip_sync import (
    INPUTS_STATE_KEY,
    STATE_KEY,
    TASK_ID_XCOM_KEY,
    LipSyncOperator,
)
from airflow_provider_jogg.sensors.lip_sync import LipSyncSensor
from airflow_provider_jogg.testing.dagrun import run_dag, task_states, xcom_value

pytestmark = [pytest.mark.dagtest, pytest.mark.usefixtures("airflow_db")]
#: reattaching needs the task state store, new in Airflow 3.3; before it a retry creates a new task
needs_state_store = pytest.mark.skipif(not AIRFLOW_V_3_3_PLUS, reason="the task state store is Airflow 3.3+")

_ids = itertools.count()
#: fake servers by id: an operator gets the key, not the server, because Airflow keeps operator
#: arguments and 3.0's dag.test() deep-copies them (a server holds locks)
_SERVERS: dict[int, Any] = {}


class CrashAfterCreate(LipSyncOperator):
    """Dies after the create request on its first try, like a worker lost right after the POST."""

    def __init__(self, *, server_key: int = 0, force_status: str | None = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._server_key = server_key
        self._force_status = force_status

    def execute(self, context):
        task_id = super().execute(context)
        if context["ti"].try_number == 1:
            if self._force_status:
                _SERVERS[self._server_key].set_task(task_id, self._force_status)
            raise RuntimeError("worker lost right after the create request")
        return task_id


class RewriteAfterCreate(LipSyncOperator):
    """
    First try: after the create, the local video is rewritten with other content of the same size
    (a pipeline re-rendering it in place), then the worker dies.
    """

    def __init__(self, *, new_content: bytes = b"", **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._new_content = new_content

    def execute(self, context):
        task_id = super().execute(context)
        if context["ti"].try_number == 1:
            Path(self.video_url).write_bytes(self._new_content)
            raise RuntimeError("worker lost right after the create request")
        return task_id


class LegacyInputsRecord(LipSyncOperator):
    """First try: rewrites its upload record as a release without digests kept it, then dies."""

    def execute(self, context):
        task_id = super().execute(context)
        if context["ti"].try_number == 1:
            store = context["task_state_store"]
            legacy = {
                role: {k: v for k, v in record.items() if k in ("source", "size", "asset_url")}
                for role, record in store.get(INPUTS_STATE_KEY).items()
            }
            store.set(INPUTS_STATE_KEY, legacy)
            raise RuntimeError("worker lost right after the create request")
        return task_id


class FlakySensor(LipSyncSensor):
    """Fails its first try before doing anything, so Airflow retries it."""

    def execute(self, context):
        if context["ti"].try_number == 1:
            raise RuntimeError("worker lost while waiting")
        return super().execute(context)


def dag_with(create: type[LipSyncOperator], sensor: type[LipSyncSensor], video: str, **create_kwargs) -> DAG:
    if "server" in create_kwargs:
        server = create_kwargs.pop("server")
        _SERVERS[id(server)] = server
        create_kwargs["server_key"] = id(server)
    with DAG(
        dag_id=f"jogg_retry_{next(_ids)}",
        schedule=None,
        start_date=datetime.datetime(2026, 1, 1),
        default_args={"retries": 2, "retry_delay": datetime.timedelta(seconds=0)},
    ) as dag:
        op = create(task_id="lip_sync", video_url=video, audio_url="https://m.example/a.mp3", **create_kwargs)
        sensor(task_id="wait_for_lip_sync", jogg_task_id=op.output, poke_interval=0.1, timeout=60)
    return dag


def try_number(dag_run, task_id: str) -> int:
    from airflow.utils.session import create_session

    with create_session() as session:
        return dag_run.get_task_instance(task_id, session=session).try_number


@needs_state_store
@pytest.mark.parametrize(
    ("pending", "processing", "force"),
    [(3.0, 0.5, None), (0.0, 3.0, None), (0.0, 0.0, "success")],
    ids=["pending", "processing", "success"],
)
def test_retry_after_create_reattaches_to_the_same_task(jogg_conn, pending, processing, force):
    # the retry comes at once (retry_delay 0), so it finds the task in the state named by the id
    jogg_conn.pending_seconds, jogg_conn.processing_seconds = pending, processing
    dag = dag_with(
        CrashAfterCreate, LipSyncSensor, "https://m.example/v.mp4", server=jogg_conn, force_status=force
    )
    dag_run = run_dag(dag)
    assert try_number(dag_run, "lip_sync") == 2  # the crash really happened and was retried
    assert jogg_conn.create_count == 1  # ...without a second create request
    (only_task,) = jogg_conn.tasks
    assert xcom_value(dag_run, "lip_sync") == only_task
    assert task_states(dag_run)["wait_for_lip_sync"] == "success"
    assert xcom_value(dag_run, "wait_for_lip_sync")["task_id"] == only_task


def test_retry_after_a_failed_jogg_task_creates_a_new_one(jogg_conn):
    dag = dag_with(
        CrashAfterCreate, LipSyncSensor, "https://m.example/v.mp4", server=jogg_conn, force_status="failed"
    )
    dag_run = run_dag(dag)
    assert try_number(dag_run, "lip_sync") == 2
    assert jogg_conn.create_count == 2
    _first, second = jogg_conn.tasks
    assert xcom_value(dag_run, "lip_sync") == second
    assert task_states(dag_run)["wait_for_lip_sync"] == "success"
    assert xcom_value(dag_run, "wait_for_lip_sync")["task_id"] == second


def test_reattach_can_be_disabled(jogg_conn):
    dag = dag_with(
        CrashAfterCreate, LipSyncSensor, "https://m.example/v.mp4", server=jogg_conn, reattach=False
    )
    dag_run = run_dag(dag)
    assert try_number(dag_run, "lip_sync") == 2
    assert jogg_conn.create_count == 2


@needs_state_store
def test_the_task_id_is_in_the_task_state_store(jogg_conn):
    dag_run = run_dag(dag_with(LipSyncOperator, LipSyncSensor, "https://m.example/v.mp4"))
    from airflow.models.task_state_store import TaskStateStoreModel
    from airflow.utils.session import create_session

    with create_session() as session:
        rows = session.query(TaskStateStoreModel).filter_by(run_id=dag_run.run_id, task_id="lip_sync").all()
    assert [row.key for row in rows] == [STATE_KEY]
    assert xcom_value(dag_run, "lip_sync") in str(rows[0].value)


def test_retried_sensor_waits_on_the_same_task(jogg_conn):
    dag_run = run_dag(dag_with(LipSyncOperator, FlakySensor, "https://m.example/v.mp4"))
    assert try_number(dag_run, "wait_for_lip_sync") == 2
    assert task_states(dag_run)["wait_for_lip_sync"] == "success"
    assert jogg_conn.create_count == 1
    assert xcom_value(dag_run, "wait_for_lip_sync")["task_id"] == xcom_value(dag_run, "lip_sync")


@pytest.fixture
def store_set_fails_once(monkeypatch):
    """
    ``arm(key)``: the next write of ``key`` to the task state store fails as an api-server blip does:
    the supervisor's request to the Execution API cannot connect. The store itself (accessor,
    supervisor, Execution API, metadata DB) is Airflow's own; only that one request is lost.
    """
    import httpx
    from airflow.sdk.api.client import TaskStateStoreOperations

    real_set = TaskStateStoreOperations.set
    failed: list[str] = []

    def arm(key: str) -> list[str]:
        def flaky_set(self, ti_id, store_key, value, expires_at):
            if store_key == key and not failed:
                failed.append(store_key)
                raise httpx.ConnectError("[Errno 111] Connection refused (the api-server is restarting)")
            return real_set(self, ti_id, store_key, value, expires_at)

        monkeypatch.setattr(TaskStateStoreOperations, "set", flaky_set)
        return failed

    return arm


@needs_state_store
def test_a_failed_save_of_the_task_id_fails_without_a_second_task(jogg_conn, store_set_fails_once, capfd):
    failed = store_set_fails_once(STATE_KEY)
    capfd.readouterr()
    dag_run = run_dag(dag_with(LipSyncOperator, LipSyncSensor, "https://m.example/v.mp4"))
    logged = capfd.readouterr()
    log = logged.out + logged.err
    assert failed == [STATE_KEY]  # the save really failed
    assert jogg_conn.create_count == 1  # ...and no retry created (and billed) a second task
    (only_task,) = jogg_conn.tasks
    assert task_states(dag_run)["lip_sync"] == "failed"
    assert try_number(dag_run, "lip_sync") == 1  # retries=2 not used
    # the id is not lost: it is in the log, in the error and in XCom
    assert f"Created Jogg lip-sync task {only_task}" in log
    assert f"JoggCreateUncertainError: Jogg lip-sync task {only_task} was created" in log
    assert xcom_value(dag_run, "lip_sync", key=TASK_ID_XCOM_KEY) == only_task


@needs_state_store
def test_a_failed_save_of_an_upload_costs_an_upload_not_a_task(jogg_conn, store_set_fails_once, tmp_path):
    video = tmp_path / "clip.mp4"
    video.write_bytes(b"v" * 5000)
    failed = store_set_fails_once(INPUTS_STATE_KEY)
    dag_run = run_dag(dag_with(LipSyncOperator, LipSyncSensor, str(video)))
    assert failed == [INPUTS_STATE_KEY]
    assert try_number(dag_run, "lip_sync") == 2  # nothing was billed yet: Airflow may retry
    assert len(jogg_conn.assets) == 2  # the retry uploaded again...
    assert jogg_conn.create_count == 1  # ...and created the only task
    assert task_states(dag_run)["wait_for_lip_sync"] == "success"


@needs_state_store
def test_a_file_rewritten_with_the_same_size_is_uploaded_again(jogg_conn, tmp_path):
    video = tmp_path / "clip.mp4"
    old, new = b"A" * 6000, b"B" * 6000
    video.write_bytes(old)
    dag_run = run_dag(dag_with(RewriteAfterCreate, LipSyncSensor, str(video), new_content=new))
    assert try_number(dag_run, "lip_sync") == 2
    assets = jogg_conn.assets
    assert sorted(asset["data"] for asset in assets.values()) == [old, new]  # uploaded again
    assert jogg_conn.create_count == 2  # the old task was made from the old content: not reused
    final = xcom_value(dag_run, "lip_sync")
    final_video = jogg_conn.tasks[final]["video_url"]
    assert assets[final_video]["data"] == new  # the result is made from what the file holds now
    assert xcom_value(dag_run, "lip_sync", key="jogg_inputs")["video_url"] == final_video
    assert xcom_value(dag_run, "wait_for_lip_sync")["task_id"] == final


@needs_state_store
def test_an_unchanged_file_is_neither_uploaded_nor_created_again(jogg_conn, tmp_path):
    video = tmp_path / "clip.mp4"
    video.write_bytes(b"A" * 6000)
    dag_run = run_dag(dag_with(CrashAfterCreate, LipSyncSensor, str(video), server=jogg_conn))
    assert try_number(dag_run, "lip_sync") == 2
    (asset,) = jogg_conn.assets.values()
    assert asset["data"] == b"A" * 6000
    assert asset["chunked"] is False  # streamed with its Content-Length while it was hashed
    assert jogg_conn.create_count == 1
    assert task_states(dag_run)["wait_for_lip_sync"] == "success"


@needs_state_store
def test_an_upload_record_without_a_digest_is_not_trusted(jogg_conn, tmp_path):
    # a record written before digests were kept cannot tell a rewritten file from the old one
    video = tmp_path / "clip.mp4"
    video.write_bytes(b"A" * 6000)
    dag_run = run_dag(dag_with(LegacyInputsRecord, LipSyncSensor, str(video)))
    assert try_number(dag_run, "lip_sync") == 2
    assert len(jogg_conn.assets) == 2
    assert task_states(dag_run)["wait_for_lip_sync"] == "success"
