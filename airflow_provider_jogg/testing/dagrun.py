"""Run DAGs offline with ``dag.test()`` and read what they produced.

For users' own tests and for this project's demo and tests. Set ``AIRFLOW_HOME`` (and
``AIRFLOW__CORE__LOAD_EXAMPLES=False``) before importing this module: importing Airflow reads them.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from pathlib import Path

    from airflow.models.dagrun import DagRun
    from airflow.sdk import DAG


def reset_metadata_db() -> None:
    """Build a fresh metadata database in ``AIRFLOW_HOME`` (about a second on SQLite)."""
    from airflow.utils import db

    db.resetdb()


def load_dag(path: str | Path, dag_id: str) -> DAG:
    """Parse one DAG file and return the DAG ``dag_id``; parse errors are raised, not swallowed."""
    from airflow_provider_jogg._compat import dagbag_class

    bag = dagbag_class()(dag_folder=str(path), safe_mode=False)
    if bag.import_errors:
        raise RuntimeError(f"Cannot import {path}: {bag.import_errors}")
    dag = bag.dags.get(dag_id)
    if dag is None:
        raise KeyError(f"{path} has no DAG {dag_id!r} (found {sorted(bag.dags)})")
    return dag


def run_dag(dag: DAG, run_conf: dict[str, Any] | None = None) -> DagRun:
    """
    Serialize ``dag`` into the metadata DB (``dag.test()`` needs it there even for a DAG built in
    code) and run it once with ``dag.test()``. Deferred tasks run their trigger inline.
    """
    from airflow_provider_jogg._compat import prepare_dag_test, sync_dag_to_db

    prepare_dag_test()
    sync_dag_to_db(dag)
    return dag.test(run_conf=run_conf)


def task_states(dag_run: DagRun) -> dict[str, str | None]:
    """``{task_id: state}`` of a finished run (mapped tasks as ``task_id[index]``)."""
    from airflow.utils.session import create_session

    with create_session() as session:
        tis = dag_run.get_task_instances(session=session)
        return {
            (ti.task_id if ti.map_index < 0 else f"{ti.task_id}[{ti.map_index}]"): (
                str(ti.state.value) if ti.state is not None and hasattr(ti.state, "value") else ti.state
            )
            for ti in tis
        }


def xcom_value(dag_run: DagRun, task_id: str, key: str = "return_value", map_index: int = -1) -> Any:
    """The XCom ``key`` a task of ``dag_run`` pushed, or ``None``."""
    from airflow.models.xcom import XComModel
    from airflow.utils.session import create_session

    with create_session() as session:
        row = session.scalars(
            XComModel.get_many(
                run_id=dag_run.run_id,
                key=key,
                task_ids=task_id,
                dag_ids=dag_run.dag_id,
                map_indexes=map_index,
            )
        ).first()
        return None if row is None else XComModel.deserialize_value(row)
