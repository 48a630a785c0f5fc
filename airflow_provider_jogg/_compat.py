"""Shims over the Airflow 3.x differences the provider meets, in one place.

The package supports every Airflow 3 line (3.0, 3.1, 3.2, 3.3); ``make test-matrix`` runs the suite
on the newest patch of each. Everything that differs between them is imported or wrapped here, and
the rest of the package imports it from here:

==============================  ========================================  ============================
name                            Airflow 3.2+ (3.3 for the async helpers)  older lines
==============================  ========================================  ============================
``AirflowFailException`` & co.  ``airflow.sdk.exceptions``                ``airflow.exceptions`` (3.0/1)
``BaseHook``                    ``airflow.sdk``                           ``airflow.hooks.base`` (3.0)
``aget_connection``             ``BaseHook.aget_connection``              ``sync_to_async`` (3.0)
``amask_secret``                ``airflow.sdk.log.amask_secret``          local masker + ``asend``
``aextra_dejson``               ``Connection.aextra_dejson``              JSON + ``amask_secret``
``connection_form_widgets``     ``conn-fields`` (provider info)           wtforms fields (3.0, 3.1)
``DagBag``/``sync_dag_to_db``   ``airflow.dag_processing.dagbag``         ``airflow.models.dagbag``
``serialized_dag_for_run``      ``DBDagBag().get_dag_for_run``            ``SerializedDagModel`` (3.0)
``run_task_instance``           ``_run_task(ti=, task=)``                 ``_run_task(ti=)`` (3.0)
``prepare_dag_test``            nothing to do                             see its docstring
==============================  ========================================  ============================

Import this module only from modules that import Airflow anyway: it imports Airflow.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from typing import TYPE_CHECKING, Any

from airflow import __version__ as AIRFLOW_VERSION_STRING

if TYPE_CHECKING:
    from airflow.sdk import DAG, Connection

log = logging.getLogger(__name__)


def _version_tuple(version: str) -> tuple[int, int, int]:
    from packaging.version import Version

    parsed = Version(version)
    return parsed.major, parsed.minor, parsed.micro


#: ``(major, minor, micro)`` of the running Airflow; pre-releases count as their release
AIRFLOW_VERSION = _version_tuple(AIRFLOW_VERSION_STRING)
AIRFLOW_V_3_1_PLUS = AIRFLOW_VERSION >= (3, 1, 0)
AIRFLOW_V_3_2_PLUS = AIRFLOW_VERSION >= (3, 2, 0)
AIRFLOW_V_3_3_PLUS = AIRFLOW_VERSION >= (3, 3, 0)

# --- exceptions ------------------------------------------------------------------------------------
# The task runner catches these by class: ours must derive from the very classes it imports, or a
# "no retry" error would be retried. 3.2 moved them to the task SDK (``airflow.exceptions`` re-exports
# them there); 3.0 and 3.1 only have them in ``airflow.exceptions``.
try:
    from airflow.sdk.exceptions import (
        AirflowException,
        AirflowFailException,
        AirflowNotFoundException,
        AirflowRescheduleException,
        AirflowSensorTimeout,
        AirflowSkipException,
        TaskDeferred,
    )
except ImportError:  # Airflow 3.0, 3.1
    from airflow.exceptions import (  # type: ignore[no-redef]
        AirflowException,
        AirflowFailException,
        AirflowNotFoundException,
        AirflowRescheduleException,
        AirflowSensorTimeout,
        AirflowSkipException,
        TaskDeferred,
    )

# --- hooks -----------------------------------------------------------------------------------------
try:
    from airflow.sdk import BaseHook
except ImportError:  # Airflow 3.0: the task SDK has no BaseHook yet
    from airflow.hooks.base import BaseHook  # type: ignore[no-redef,attr-defined]


def mask_secret(secret: Any) -> None:
    """Register a secret with Airflow's log masker (every 3.x)."""
    try:
        from airflow.sdk.log import mask_secret as _mask
    except ImportError:  # Airflow 3.0 before the re-export
        from airflow.sdk.execution_time.secrets_masker import mask_secret as _mask  # type: ignore[no-redef]
    if not AIRFLOW_V_3_1_PLUS:
        # 3.0's mask_secret only sends the secret to the supervisor, in a message that dag.test()'s
        # in-process comms log at DEBUG before anything masks it; 3.1+ masks in this process first
        with contextlib.suppress(Exception):
            _mask_locally(secret)
    _mask(secret)


def _mask_locally(secret: Any) -> None:
    """Add ``secret`` to this process's masker only (no message to a supervisor)."""
    try:  # Airflow 3.1+
        from airflow.sdk._shared.secrets_masker import _secrets_masker
    except ImportError:  # Airflow 3.0
        from airflow.sdk.execution_time.secrets_masker import (  # type: ignore[no-redef]
            _secrets_masker,
        )
    _secrets_masker().add_mask(secret, None)


async def amask_secret(secret: Any) -> None:
    """
    Async twin of :func:`mask_secret`, for triggers.

    The sync one sends a message to the supervisor and waits for it: from the triggerer's event loop
    that raises or blocks the loop on Airflow < 3.3. Before 3.3 this does what 3.3's ``amask_secret``
    does: mask in this process, then tell the supervisor with the comms' async ``asend``.
    """
    try:
        from airflow.sdk.log import amask_secret as _amask
    except ImportError:  # Airflow 3.0 - 3.2
        pass
    else:
        await _amask(secret)
        return
    with contextlib.suppress(Exception):
        _mask_locally(secret)
    with contextlib.suppress(Exception):
        from airflow.sdk.execution_time import task_runner
        from airflow.sdk.execution_time.comms import MaskSecret

        asend = getattr(getattr(task_runner, "SUPERVISOR_COMMS", None), "asend", None)
        if asend is not None:
            await asend(MaskSecret(value=secret, name=None))


async def aget_connection(conn_id: str) -> Connection:
    """
    Look a connection up without blocking the event loop (``BaseHook.aget_connection``).

    What a failed lookup raises (read in the task SDK of each line):

    * ``AirflowNotFoundException`` when no secrets backend has the connection; on 3.1+ also when
      the API server could not be reached or a secrets backend failed, since the SDK turns a
      backend's exception or the supervisor's error answer into "not found";
    * on 3.0, ``airflow.sdk.exceptions.AirflowRuntimeError`` (``API_SERVER_ERROR``) when the API
      server answered the lookup with an error;
    * on 3.2+, ``AirflowSecretsBackendAccessDenied`` (a ``PermissionError``) when the API server
      explicitly denies access.
    """
    getter = getattr(BaseHook, "aget_connection", None)
    if getter is not None:
        return await getter(conn_id)
    # Airflow 3.0: no async lookup. In the triggerer the sync one asks the supervisor through
    # ``async_to_sync``, which finds the triggerer's event loop only from a ``sync_to_async`` thread
    # (from a plain ``asyncio.to_thread`` one it would start a second loop on the same pipe); this is
    # what Airflow 3.0's own triggers do.
    from asgiref.sync import sync_to_async

    return await sync_to_async(BaseHook.get_connection)(conn_id)


async def aextra_dejson(conn: Any) -> dict[str, Any]:
    """
    ``conn.extra_dejson`` without blocking the event loop.

    Before 3.3 ``extra_dejson`` calls the sync ``mask_secret`` (see :func:`amask_secret`), so parse the
    extra here and mask it asynchronously, as 3.3's ``aextra_dejson`` does.
    """
    getter = getattr(conn, "aextra_dejson", None)
    if getter is not None:
        return dict(await getter())
    raw = conn.extra
    if not raw:
        return {}
    if isinstance(raw, dict):
        extra: Any = raw
    else:
        try:
            extra = json.loads(raw)
        except ValueError:
            log.warning("Connection %r: extra is not valid JSON; ignoring it", getattr(conn, "conn_id", None))
            return {}
    if not isinstance(extra, dict):
        return {}
    await amask_secret(extra)
    return dict(extra)


# --- connection form --------------------------------------------------------------------------------
def connection_form_widgets(conn_fields: dict[str, Any]) -> dict[str, Any]:
    """
    The connection form's extra fields as Airflow 3.0 and 3.1 want them, built from ``conn-fields``.

    Airflow 3.2+ reads ``conn-fields`` from the provider info and never calls a hook's
    ``get_connection_form_widgets``. 3.0 and 3.1 only know that method: their UI calls it with
    wtforms and flask_appbuilder replaced by stand-ins (``HookMetaService``), so it must use only the
    names those stand-ins cover: ``StringField``, ``IntegerField``, ``BooleanField``,
    ``BS3TextFieldWidget``, ``lazy_gettext`` and ``validators.Optional`` (hence no ``FloatField``: a
    number is a string field here, and the hook parses it). 3.0's UI replaces only the packages that
    are installed, so flask_appbuilder and flask_babel are optional here; without wtforms this raises
    ``ImportError``, which Airflow's providers manager expects and logs.
    """
    from wtforms import BooleanField, IntegerField, StringField
    from wtforms.validators import Optional

    try:
        from flask_appbuilder.fieldwidgets import BS3TextFieldWidget
    except ImportError:
        BS3TextFieldWidget = None
    try:
        from flask_babel import lazy_gettext
    except ImportError:
        lazy_gettext = str

    def text_widget() -> Any:
        return None if BS3TextFieldWidget is None else BS3TextFieldWidget()

    widgets: dict[str, Any] = {}
    for name, field in conn_fields.items():
        schema = field.get("schema", {})
        types = schema.get("type", "string")
        types = [types] if isinstance(types, str) else list(types)
        label = lazy_gettext(field.get("label", name))
        description = field.get("description", "")
        default = schema.get("default")
        if "boolean" in types:
            widgets[name] = BooleanField(label, description=description, default=default)
        elif "integer" in types:
            widgets[name] = IntegerField(
                label,
                validators=[Optional()],
                widget=text_widget(),
                description=description,
                default=default,
            )
        else:
            widgets[name] = StringField(
                label,
                validators=[Optional()],
                widget=text_widget(),
                description=description,
                default=None if default is None else str(default),
            )
    return widgets


# --- dag.test() helpers (airflow_provider_jogg.testing.dagrun) -------------------------------------
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
    if AIRFLOW_V_3_3_PLUS:
        return
    import os

    from airflow.configuration import conf

    if not conf.get("api_auth", "jwt_secret", fallback=None):
        conf.set("api_auth", "jwt_secret", os.urandom(16).hex())
    _wait_for_in_process_api_lifespan()


def _wait_for_in_process_api_lifespan() -> None:
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


__all__ = [
    "AIRFLOW_VERSION",
    "AIRFLOW_V_3_1_PLUS",
    "AIRFLOW_V_3_2_PLUS",
    "AIRFLOW_V_3_3_PLUS",
    "AirflowException",
    "AirflowFailException",
    "AirflowNotFoundException",
    "AirflowRescheduleException",
    "AirflowSensorTimeout",
    "AirflowSkipException",
    "BaseHook",
    "TaskDeferred",
    "aextra_dejson",
    "aget_connection",
    "amask_secret",
    "connection_form_widgets",
    "dagbag_class",
    "mask_secret",
    "prepare_dag_test",
    "run_task_instance",
    "serialized_dag_for_run",
    "sync_dag_to_db",
]
