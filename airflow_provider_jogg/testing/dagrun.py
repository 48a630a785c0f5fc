"""Run DAGs offline with ``dag.test()`` and read what they produced, on every Airflow 3 line.

For users' own tests and for this project's demo and tests. Set ``AIRFLOW_HOME`` (and
``AIRFLOW__CORE__LOAD_EXAMPLES=False``) before importing this module: importing Airflow reads them.

What differs between the lines for ``dag.test()`` is shimmed here, not in the runtime shims of
:mod:`airflow_provider_jogg._compat`:

==============================  ========================================  ============================
name                            Airflow 3.2+ (3.3 for the lifespan)       older lines
==============================  ========================================  ============================
``DagBag``/``sync_dag_to_db``   ``airflow.dag_processing.dagbag``         ``airflow.models.dagbag``
``serialized_dag_for_run``      ``DBDagBag().get_dag_for_run``            ``SerializedDagModel`` (3.0)
``run_task_instance``           ``_run_task(ti=, task=)``                 ``_run_task(ti=)`` (3.0)
``prepare_dag_test``            nothing to do                             see its docstring
==============================  ========================================  ============================
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


# --- the lines' differences ----------------------------------------------------------------------
def dagbag_class() -> type:
    """Airflow's ``DagBag`` (moved to ``airflow.dag_processing.dagbag`` in 3.2)."""
    try:
        from airflow.dag_processing.dagbag import DagBag
    except ImportError:  # Airflow 3.0, 3.1
        from airflow.models.dagbag import DagBag  # type: ignore[no-redef]
    return DagBag


def sync_dag_to_db(dag: DAG, bundle_name: str = "dags-folder") -> None:
    """
    Serialize one DAG into the metadata DB, as the DAG processor would: ``dag.test()`` needs it there
    even for a DAG built in code.
    """
    from airflow.dag_processing.bundles.manager import DagBundlesManager
    from airflow.utils.session import create_session

    with create_session() as session:
        DagBundlesManager().sync_bundles_to_db(session=session)
    bag = dagbag_class()(collect_dags=False)
    bag.bag_dag(dag)
    try:  # Airflow 3.2+
        from airflow.dag_processing.dagbag import sync_bag_to_db
    except ImportError:
        try:  # Airflow 3.1
            from airflow.models.dagbag import sync_bag_to_db  # type: ignore[no-redef]
        except ImportError:  # Airflow 3.0: a method of the bag, and it wants the file relative to the bundle
            if getattr(dag, "relative_fileloc", None) is None:
                dag.relative_fileloc = _relative_fileloc(dag)
            bag.sync_to_db(bundle_name, None)
            return
    sync_bag_to_db(bag, bundle_name, None)


def _relative_fileloc(dag: Any) -> str:
    """Where ``dag`` was defined, relative to the DAGs folder when it is inside it (as 3.0's DagBag sets)."""
    import os

    from airflow.configuration import conf

    fileloc = os.path.abspath(dag.fileloc)
    folder = os.path.abspath(os.path.expanduser(conf.get("core", "dags_folder")))
    if os.path.commonpath([fileloc, folder]) == folder:
        return os.path.relpath(fileloc, folder)
    return os.path.basename(fileloc)


def serialized_dag_for_run(dag_run: Any, session: Any) -> Any:
    """The serialized DAG (the scheduler's view) a run was created with."""
    try:  # Airflow 3.1+
        from airflow.models.dagbag import DBDagBag
    except ImportError:  # Airflow 3.0: one serialized version per DAG id
        from airflow.models.serialized_dag import SerializedDagModel

        return SerializedDagModel.get_dag(dag_run.dag_id, session=session)
    return DBDagBag().get_dag_for_run(dag_run=dag_run, session=session)


def run_task_instance(ti: Any, task: Any, *, run_triggerer: bool = True) -> Any:
    """Run one scheduled task instance in this process, as ``dag.test()`` does (deferrals inline)."""
    import inspect

    from airflow.sdk.definitions import dag as sdk_dag

    run: Any = sdk_dag._run_task
    if "task" in inspect.signature(run).parameters:  # Airflow 3.1+
        return run(ti=ti, task=task, run_triggerer=run_triggerer)
    ti.task = task  # Airflow 3.0 reads the task from the instance
    return run(ti=ti, run_triggerer=run_triggerer)


def prepare_dag_test() -> None:
    """
    Make ``dag.test()`` work in a bare ``AIRFLOW_HOME`` (no ``airflow.cfg``) on Airflow < 3.3.

    ``dag.test()`` runs each task against an in-process Execution API. Before 3.3 that API:

    * starts its lifespan (which registers the services every route depends on) without waiting for
      it, so the first request of a task can arrive first and fail with ``'State' object has no
      attribute 'svcs_registry'``;
    * keeps that lifespan open only as long as the ``InProcessExecutionAPI`` object, which
      ``dag.test()`` drops at once, keeping only its transport; with svcs >= 26 closing the lifespan
      removes the registry, so every later request of the task fails the same way.

      3.3 waits for the startup and ties the lifespan to the transport; the class is patched here
      to do the same (``airflow.api_fastapi.execution_api.app.InProcessExecutionAPI``);
    * needs ``[api_auth] jwt_secret`` to build its token validator even though ``dag.test()``
      overrides authentication; ``airflow.cfg`` normally holds a generated one, a test home has none
      — a random one is set for this process only.

    Idempotent; does nothing on 3.3+.
    """
    from airflow_provider_jogg._compat import AIRFLOW_V_3_3_PLUS

    if AIRFLOW_V_3_3_PLUS:
        return
    import os

    from airflow.configuration import conf

    if not conf.get("api_auth", "jwt_secret", fallback=None):
        conf.set("api_auth", "jwt_secret", os.urandom(16).hex())
    _wait_for_in_process_api_lifespan()


def _wait_for_in_process_api_lifespan() -> None:
    import asyncio
    from contextlib import AsyncExitStack
    from functools import cached_property

    from airflow.api_fastapi.execution_api import app as execution_api

    original: Any = execution_api.InProcessExecutionAPI
    if getattr(original, "_jogg_waits_for_lifespan", False):
        return

    # A plain subclass of the slotted attrs class has a __dict__, so a cached_property works on it;
    # dag.test() looks the class up in that module at call time, so it gets this one.
    class InProcessExecutionAPI(original):
        _jogg_waits_for_lifespan = True

        @cached_property
        def transport(self) -> Any:
            # Airflow 3.0-3.2's own body, plus the wait Airflow 3.3 added
            import httpx
            from a2wsgi import ASGIMiddleware

            middleware = ASGIMiddleware(self.app)

            async def start_lifespan(cm: AsyncExitStack, app: Any) -> None:
                await cm.enter_async_context(app.router.lifespan_context(app))

            cm = self._cm = AsyncExitStack()
            asyncio.run_coroutine_threadsafe(start_lifespan(cm, self.app), middleware.loop).result(timeout=60)
            transport = httpx.WSGITransport(app=middleware)  # type: ignore[arg-type]
            # dag.test() keeps the transport and drops this object: tie the open lifespan to the
            # transport, or collecting this object closes it and its services vanish mid-run
            transport._jogg_lifespan = cm  # type: ignore[attr-defined]
            return transport

    InProcessExecutionAPI.__qualname__ = original.__qualname__
    InProcessExecutionAPI.__module__ = original.__module__
    execution_api.InProcessExecutionAPI = InProcessExecutionAPI  # type: ignore[misc]
