"""Retries never bill a second Jogg task: the operator reattaches, the sensor waits on the same task."""

from __future__ import annotations

import datetime
import itertools
from typing import Any

import pytest
from airflow.sdk import DAG

from airflow_provider_jogg._compat import AIRFLOW_V_3_3_PLUS
from airflow_provider_jogg.operators.lip_sync import STATE_KEY, LipSyncOperator
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
