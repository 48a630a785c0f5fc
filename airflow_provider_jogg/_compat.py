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
==============================  ========================================  ============================

Runtime shims only: what ``dag.test()`` needs on each line is in :mod:`airflow_provider_jogg.testing.dagrun`.
Import this module only from modules that import Airflow anyway: it imports Airflow.
"""

from __future__ import annotations

import contextlib
import json
import logging
from typing import TYPE_CHECKING, Any

from airflow import __version__ as AIRFLOW_VERSION_STRING

if TYPE_CHECKING:
    from airflow.sdk import Connection

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
    "mask_secret",
]
