"""LipSyncSensor: waits for a Jogg lip-sync task; deferrable by default."""

from __future__ import annotations

import datetime
import time
from functools import cached_property
from typing import TYPE_CHECKING, Any

from airflow.sdk import BaseSensorOperator, PokeReturnValue

from airflow_provider_jogg import exceptions as exc
from airflow_provider_jogg.hooks.jogg import JoggHook
from airflow_provider_jogg.policy import (
    DEFAULT_CONN_ID,
    EventStatus,
    JoggStatus,
    LipSyncResult,
    parse_event,
    validate_task_id,
)
from airflow_provider_jogg.triggers.lip_sync import LipSyncTrigger

try:
    from airflow.sdk.exceptions import AirflowRescheduleException, AirflowSensorTimeout
except ImportError:  # pragma: no cover - Airflow 3.0
    from airflow.exceptions import AirflowRescheduleException, AirflowSensorTimeout  # type: ignore[no-redef]

if TYPE_CHECKING:
    from collections.abc import Sequence

    from airflow.sdk import Context

#: default ``timeout``: lip sync takes minutes; three hours means something is wrong
DEFAULT_SENSOR_TIMEOUT = 3 * 60 * 60
#: the scheduler's deferral timeout is a backstop: the trigger's own ``end_time`` fires first
DEFERRAL_GRACE = 60.0


class LipSyncSensor(BaseSensorOperator):
    """
    Waits for a Jogg lip-sync task to finish and returns its result.

    Returns (XCom ``return_value``) a plain-JSON dict: ``task_id``, ``status`` (``"success"``),
    ``result_url``, ``cover_url``, ``duration_seconds``, ``created_at``, ``completed_at``,
    ``error_message`` (``None``).

    .. note::
        ``deferrable=True`` (the default, whatever ``[operators] default_deferrable`` says) checks once,
        returns at once if the task already finished, and otherwise waits in the triggerer, holding no
        worker slot. ``deferrable=False`` pokes from a worker in ``mode="poke"`` or ``"reschedule"``.

    .. note::
        A Jogg task that **failed** fails this Airflow task without retries
        (:class:`JoggLipSyncFailedError`, an ``AirflowFailException``), and so do an unknown task id,
        an invalid key and a plan without API access. Transient errors (429, 5xx, timeouts) never fail
        the wait: they are retried with backoff until ``timeout``, after which the task fails with
        ``AirflowSensorTimeout`` in every mode.

    :param jogg_task_id: the Jogg task id (templated), e.g. ``"{{ ti.xcom_pull(task_ids='lip_sync') }}"``
    :param jogg_conn_id: the Airflow connection id (templated)
    :param deferrable: wait in the triggerer (default ``True``)
    :param poke_interval: seconds between two status polls, in every mode (fractions allowed)
    :param timeout: seconds to wait in all before failing with ``AirflowSensorTimeout`` (default 3 h)
    """

    template_fields: Sequence[str] = ("jogg_task_id", "jogg_conn_id")
    ui_color = "#e8f4fd"

    def __init__(
        self,
        *,
        jogg_task_id: str,
        jogg_conn_id: str = DEFAULT_CONN_ID,
        deferrable: bool = True,
        poke_interval: float = 10,
        timeout: float = DEFAULT_SENSOR_TIMEOUT,
        **kwargs: Any,
    ) -> None:
        super().__init__(poke_interval=poke_interval, timeout=timeout, **kwargs)
        self.jogg_task_id = jogg_task_id
        self.jogg_conn_id = jogg_conn_id
        self.deferrable = deferrable
        self._last_status: str | None = None

    @cached_property
    def hook(self) -> JoggHook:
        return JoggHook(jogg_conn_id=self.jogg_conn_id)

    # --- deferrable ---
    def execute(self, context: Context) -> Any:
        if not self.deferrable:
            return super().execute(context)
        task_id = validate_task_id(self.jogg_task_id)
        try:
            # one check, no retries: a worker slot is not the place to wait
            result = self.hook.get_lip_sync_video(task_id, max_retries=0)
        except exc.JoggRateLimitError as error:
            if error.retry_after:
                # the trigger's kwargs carry no retry time: sit out Retry-After in the triggerer first
                self.log.warning(
                    "Jogg rate limit; waiting %.1f s before the deferred wait starts", error.retry_after
                )
                self._defer_until(error.retry_after)
            self.log.warning("Jogg task %s: first check hit the rate limit; deferring anyway", task_id)
        except exc.JoggTransientError as error:
            self.log.warning("Jogg task %s: first check failed (%s); the trigger will retry", task_id, error)
        else:
            self._log_status(result)
            if result.is_terminal:
                return self._finish(result)
        self._defer_to_trigger(task_id)

    def _defer_until(self, seconds: float) -> None:
        from airflow.providers.standard.triggers.temporal import DateTimeTrigger

        moment = datetime.datetime.now(datetime.timezone.utc) + datetime.timedelta(seconds=seconds)
        self.defer(trigger=DateTimeTrigger(moment=moment), method_name="resume_after_rate_limit")

    def resume_after_rate_limit(self, context: Context, event: Any = None) -> Any:
        """Called when ``Retry-After`` has passed: start the real wait."""
        self._defer_to_trigger(validate_task_id(self.jogg_task_id))

    def _defer_to_trigger(self, task_id: str) -> None:
        self.defer(
            trigger=LipSyncTrigger(
                jogg_task_id=task_id,
                jogg_conn_id=self.jogg_conn_id,
                poll_interval=self.poke_interval,
                end_time=time.time() + self.timeout,
            ),
            method_name="execute_complete",
            timeout=datetime.timedelta(seconds=self.timeout + DEFERRAL_GRACE),
        )

    def execute_complete(self, context: Context, event: Any = None) -> dict[str, Any]:
        """Resume from the trigger. Everything needed is in ``event`` (the task is a fresh instance)."""
        parsed = parse_event(event)
        if parsed.status is EventStatus.TIMEOUT:
            raise AirflowSensorTimeout(parsed.message)
        if parsed.status is EventStatus.ERROR:
            assert parsed.error is not None
            raise parsed.error
        assert parsed.result is not None
        return self._finish(parsed.result)

    # --- poke / reschedule ---
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
        return PokeReturnValue(is_done=True, xcom_value=self._finish(result))

    # --- shared ---
    def _log_status(self, result: LipSyncResult) -> None:
        if result.status == self._last_status:
            return
        self._last_status = result.status
        if JoggStatus.is_known(result.status):
            self.log.info("Jogg task %s is %s", result.task_id, result.status)
        else:
            self.log.warning(
                "Jogg task %s reports an unknown status %r; waiting on", result.task_id, result.status
            )

    def _finish(self, result: LipSyncResult) -> dict[str, Any]:
        if result.failed:
            raise exc.JoggLipSyncFailedError(result.task_id, result.error_message)
        if not result.succeeded:  # pragma: no cover - callers only pass terminal results
            raise exc.JoggEventError(f"Jogg task {result.task_id} is not finished ({result.status!r})")
        self.log.info(
            "Jogg task %s succeeded: %s (%s s of video)",
            result.task_id,
            result.result_url,
            result.duration_seconds,
        )
        return result.to_dict()
