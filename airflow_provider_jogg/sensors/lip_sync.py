"""LipSyncSensor: waits for a Jogg lip-sync task; deferrable by default."""

from __future__ import annotations

import datetime
from functools import cached_property
from typing import TYPE_CHECKING, Any

from airflow.sdk import BaseSensorOperator, PokeReturnValue

from airflow_provider_jogg import exceptions as exc
from airflow_provider_jogg._compat import AirflowRescheduleException, AirflowSensorTimeout
from airflow_provider_jogg.completion import DEFERRAL_GRACE, LipSyncCompletionMixin
from airflow_provider_jogg.connection import DEFAULT_CONN_ID
from airflow_provider_jogg.links import JoggResultLink
from airflow_provider_jogg.validation import validate_task_id, validate_wait_seconds

if TYPE_CHECKING:
    from collections.abc import Sequence

    from airflow.sdk import Context

    from airflow_provider_jogg.hooks.jogg import JoggHook

#: default ``timeout``: lip sync takes minutes; three hours means something is wrong
DEFAULT_SENSOR_TIMEOUT = 3 * 60 * 60

__all__ = ["DEFAULT_SENSOR_TIMEOUT", "DEFERRAL_GRACE", "LipSyncSensor"]


class LipSyncSensor(LipSyncCompletionMixin, BaseSensorOperator):
    """
    Waits for a Jogg lip-sync task to finish, optionally saves the result, and returns it.

    Returns (XCom ``return_value``) a plain-JSON dict: ``task_id``, ``status`` (``"success"``),
    ``result_url``, ``cover_url``, ``duration_seconds``, ``created_at``, ``completed_at``,
    ``error_message`` (``None``), ``credits`` (estimate), ``output_path``, ``cover_output_path``.

    .. note::
        ``deferrable=True`` (the default, whatever ``[operators] default_deferrable`` says) checks once,
        returns at once if the task already finished, and otherwise waits in the triggerer, holding no
        worker slot. ``deferrable=False`` pokes from a worker in ``mode="poke"`` or ``"reschedule"``.

    .. note::
        A Jogg task that **failed** fails this Airflow task without retries
        (:class:`JoggLipSyncFailedError`, an ``AirflowFailException``), and so do an unknown task id,
        an invalid key and a plan without API access. Transient errors (429, 5xx, timeouts) never fail
        the wait: they are retried with backoff until ``timeout``, after which the task fails with
        ``AirflowSensorTimeout`` in every mode. A download of the result is retried on transient
        failures; if it still fails, the task fails normally and its retry finds the Jogg task
        finished and only downloads again (a 403/404 from the result URL fails without retries).

    :param jogg_task_id: the Jogg task id (templated), e.g. ``"{{ ti.xcom_pull(task_ids='lip_sync') }}"``
    :param jogg_conn_id: the Airflow connection id (templated)
    :param deferrable: wait in the triggerer (default ``True``)
    :param poke_interval: seconds between two status polls, in every mode (fractions allowed, above 0;
        a ``timedelta`` too)
    :param timeout: seconds to wait in all before failing with ``AirflowSensorTimeout`` (default 3 h;
        above 0)
    :param output_path: where to save the result video (templated): a local path, a URI
        (``file://``, ``s3://``, ...) or an ``ObjectStoragePath``; ``None`` saves nothing
    :param cover_output_path: where to save the cover image (templated), same forms
    """

    template_fields: Sequence[str] = ("jogg_task_id", "jogg_conn_id", "output_path", "cover_output_path")
    operator_extra_links = (JoggResultLink(),)
    ui_color = "#e8f4fd"

    def __init__(
        self,
        *,
        jogg_task_id: str,
        jogg_conn_id: str = DEFAULT_CONN_ID,
        deferrable: bool = True,
        poke_interval: float | datetime.timedelta = 10,
        timeout: float | datetime.timedelta = DEFAULT_SENSOR_TIMEOUT,
        output_path: Any = None,
        cover_output_path: Any = None,
        **kwargs: Any,
    ) -> None:
        # stricter than BaseSensorOperator, which takes 0 (a tight poll loop) and NaN
        super().__init__(
            poke_interval=validate_wait_seconds(poke_interval, "poke_interval"),
            timeout=validate_wait_seconds(timeout, "timeout"),
            **kwargs,
        )
        self.jogg_task_id = jogg_task_id
        self.jogg_conn_id = jogg_conn_id
        self.deferrable = deferrable
        self.output_path = output_path
        self.cover_output_path = cover_output_path

    @cached_property
    def hook(self) -> JoggHook:
        # imported here, not at the top: the hook brings requests and aiohttp, which a DAG file
        # that only builds this operator (parsed all day by the dag-processor) has no use for
        from airflow_provider_jogg.hooks.jogg import JoggHook

        return JoggHook(jogg_conn_id=self.jogg_conn_id)

    def execute(self, context: Context) -> Any:
        self._reset_result_link(context)
        if not self.deferrable:
            return super().execute(context)
        return self._check_or_defer(context, validate_task_id(self.jogg_task_id))

    def get_openlineage_facets_on_complete(self, task_instance: Any) -> Any:
        """OpenLineage: the result video (and its saved copy) as outputs, the Jogg task id in a facet."""
        return self._lineage([], str(self.jogg_task_id))

    def _jogg_task_id_for_wait(self, context: Context) -> str:
        return validate_task_id(self.jogg_task_id)

    def _timeout_error(self, message: str) -> BaseException:
        return AirflowSensorTimeout(message)

    def poke(self, context: Context) -> bool | PokeReturnValue:
        task_id = validate_task_id(self.jogg_task_id)
        try:
            result = self.hook.get_lip_sync_video(task_id)
        except exc.JoggRateLimitError as error:
            wait = max(self.poke_interval, error.retry_after or 0.0)
            if self.reschedule:
                # a rescheduled poke must not come back before Retry-After
                self.log.warning("Jogg rate limit; rescheduling in %.1f s", wait)
                raise AirflowRescheduleException(
                    datetime.datetime.now(datetime.timezone.utc) + datetime.timedelta(seconds=wait)
                ) from None
            self.log.warning(
                "Jogg task %s: still rate limited after retries; keeps waiting: %s", task_id, error
            )
            return False
        except exc.JoggTransientError as error:
            self.log.warning(
                "Jogg task %s: status poll still failing after retries; keeps waiting: %s", task_id, error
            )
            return False
        self._log_status(result)
        if not result.is_terminal:
            return False
        return PokeReturnValue(is_done=True, xcom_value=self._finish(context, result))
