"""Waiting for a Jogg task and finishing it: shared by LipSyncSensor and LipSyncOperator(wait_for_completion).

One implementation of the deferral (check once, defer with a floor and any ``Retry-After``), of the
trigger event handling, and of what a finished task does: fail on ``failed``, save the result
files, log duration and credits, feed the "Jogg result" link and the outlets' asset events.
"""

from __future__ import annotations

import datetime
import math
import time
from typing import TYPE_CHECKING, Any

from airflow_provider_jogg import exceptions as exc
from airflow_provider_jogg.events import EventStatus, parse_event
from airflow_provider_jogg.links import RESULT_URL_XCOM_KEY
from airflow_provider_jogg.results import JoggStatus, LipSyncResult, credits_estimate

if TYPE_CHECKING:
    from airflow.sdk import Context

    from airflow_provider_jogg.hooks.jogg import JoggHook

#: the scheduler's deferral timeout is a backstop: the trigger's own ``end_time`` fires first
DEFERRAL_GRACE = 60.0
#: default of ``[jogg] min_deferral_seconds``: a deferred wait neither polls Jogg nor ends sooner than
#: this after its deferral. Airflow 3.3.2 fails a task whose trigger fires before the scheduler has
#: processed the executor's report of the deferral (apache/airflow#67287); how late that report
#: comes is measured in docs/airflow-compatibility.md
DEFAULT_MIN_DEFERRAL_SECONDS = 30.0


def min_deferral_seconds() -> float:
    """``[jogg] min_deferral_seconds`` (env ``AIRFLOW__JOGG__MIN_DEFERRAL_SECONDS``), >= 0."""
    from airflow.configuration import conf

    raw = conf.get("jogg", "min_deferral_seconds", fallback=None)
    if raw is None or not str(raw).strip():
        return DEFAULT_MIN_DEFERRAL_SECONDS
    try:
        value = float(raw)
    except ValueError:
        value = math.nan
    if not 0 <= value < math.inf:
        raise exc.JoggConfigError(
            f"[jogg] min_deferral_seconds must be a number of seconds >= 0, got {raw!r}."
        )
    return value


class LipSyncCompletionMixin:
    """
    For operators that wait on a Jogg task. The class using it provides ``jogg_conn_id``,
    ``poke_interval``, ``timeout``, ``output_path``, ``cover_output_path``, ``hook``, ``log``,
    ``outlets`` and ``defer`` (BaseOperator/BaseSensorOperator give most of them).
    """

    if TYPE_CHECKING:
        jogg_conn_id: str
        poke_interval: float
        timeout: float
        output_path: Any
        cover_output_path: Any
        outlets: Any
        log: Any

        @property
        def hook(self) -> JoggHook: ...

        def defer(self, **kwargs: Any) -> Any: ...

    _last_status: str | None = None
    #: what _finish returned, for lineage
    _finished_output: dict[str, Any] | None = None

    def _reset_result_link(self, context: Context) -> None:
        """An empty "Jogg result" link until a wait succeeds (the UI reads it for every finished task)."""
        ti = context.get("ti")
        if ti is not None:
            ti.xcom_push(key=RESULT_URL_XCOM_KEY, value="")

    # --- deferral --------------------------------------------------------------------------------------
    def _check_or_defer(self, context: Context, task_id: str) -> dict[str, Any]:
        """Check once (no retries: a worker slot is no place to wait); finish now or defer."""
        retry_after = None
        try:
            result = self.hook.get_lip_sync_video(task_id, max_retries=0)
        except exc.JoggRateLimitError as error:
            # no short deferral of our own: the trigger itself sits out Retry-After (``not_before``)
            retry_after = error.retry_after
            self.log.warning(
                "Jogg task %s: first check hit the rate limit; the trigger polls after %.1f s",
                task_id,
                max(retry_after or 0.0, min_deferral_seconds()),
            )
        except exc.JoggTransientError as error:
            self.log.warning("Jogg task %s: first check failed (%s); the trigger will retry", task_id, error)
        else:
            self._log_status(result)
            if result.is_terminal:
                return self._finish(context, result)
        self._defer_to_trigger(task_id, retry_after=retry_after)
        raise AssertionError("defer() returned")  # pragma: no cover - defer always raises

    def resume_after_rate_limit(self, context: Context, event: Any = None) -> Any:
        """
        Start the real wait. Earlier versions deferred to a short ``DateTimeTrigger`` after a 429
        and resumed here; kept so that a task deferred that way still finishes after an upgrade.
        """
        self._defer_to_trigger(self._jogg_task_id_for_wait(context))

    def _jogg_task_id_for_wait(self, context: Context) -> str:
        raise NotImplementedError

    def _defer_to_trigger(self, task_id: str, *, retry_after: float | None = None) -> None:
        now = time.time()
        # Airflow's deferral race (apache/airflow#67287): an event that fires before the scheduler
        # has processed the executor's report of this deferral makes it fail the task. So the
        # trigger neither polls nor fires before a floor, nor before the account's Retry-After.
        not_before = now + max(min_deferral_seconds(), retry_after or 0.0)
        end_time = now + self.timeout
        # imported only when deferring: it brings airflow.triggers.base, which a DAG file has no use for
        from airflow_provider_jogg.triggers.lip_sync import LipSyncTrigger

        self.defer(
            trigger=LipSyncTrigger(
                jogg_task_id=task_id,
                jogg_conn_id=self.jogg_conn_id,
                poll_interval=self.poke_interval,
                end_time=end_time,
                not_before=not_before,
            ),
            method_name="execute_complete",
            # a backstop: the trigger's own end_time (or, past it, not_before) fires first
            timeout=datetime.timedelta(seconds=max(end_time, not_before) - now + DEFERRAL_GRACE),
        )

    def execute_complete(self, context: Context, event: Any = None) -> dict[str, Any]:
        """Resume from the trigger. Everything needed is in ``event`` (the task is a fresh instance)."""
        parsed = parse_event(event)
        if parsed.status is EventStatus.TIMEOUT:
            raise self._timeout_error(parsed.message)
        if parsed.status is EventStatus.ERROR:
            assert parsed.error is not None
            raise parsed.error
        assert parsed.result is not None
        return self._finish(context, parsed.result)

    def _timeout_error(self, message: str) -> BaseException:
        return exc.JoggWaitTimeoutError(message)

    # --- finishing -------------------------------------------------------------------------------------
    def _log_status(self, result: LipSyncResult) -> None:
        if result.status == self._last_status:
            return
        self._last_status = result.status
        age = f" ({time.time() - result.created_at:.0f} s after it was created)" if result.created_at else ""
        if JoggStatus.is_known(result.status):
            self.log.info("Jogg task %s is %s%s", result.task_id, result.status, age)
        else:
            self.log.warning(
                "Jogg task %s reports an unknown status %r; waiting on", result.task_id, result.status
            )

    def _finish(self, context: Context, result: LipSyncResult) -> dict[str, Any]:
        """A terminal task: fail, or save its files and return the plain-JSON result dict."""
        if result.failed:
            raise exc.JoggLipSyncFailedError(result.task_id, result.error_message)
        if not result.succeeded or not result.result_url:
            raise exc.JoggEventError(f"Jogg task {result.task_id} has no result URL ({result.status!r})")
        output = result.to_dict()
        output["credits"] = credits_estimate(result.duration_seconds)
        output["output_path"] = self._save(result.result_url, self.output_path)
        output["cover_output_path"] = (
            self._save(result.cover_url, self.cover_output_path) if result.cover_url else None
        )
        took = (
            f" in {result.completed_at - result.created_at} s"
            if result.completed_at and result.created_at
            else ""
        )
        self.log.info(
            "Jogg task %s succeeded%s: %s s of video, about %s credits (estimate: 1 credit per 125 s) -> %s",
            result.task_id,
            took,
            result.duration_seconds,
            output["credits"],
            output["output_path"] or result.result_url,
        )
        ti = context.get("ti")
        if ti is not None:
            ti.xcom_push(key=RESULT_URL_XCOM_KEY, value=result.result_url)
        self._emit_asset_extra(context, output)
        self._finished_output = output
        return output

    def _save(self, url: str | None, destination: Any) -> str | None:
        if not destination or not url:
            return None
        self.hook.download(url, destination)
        return str(destination)

    def _emit_asset_extra(self, context: Context, output: dict[str, Any]) -> None:
        from airflow.sdk import Asset

        events = context.get("outlet_events")
        assets = [o for o in (self.outlets or []) if isinstance(o, Asset)]
        if events is None or not assets:
            return
        extra = {
            "jogg_task_id": output["task_id"],
            "result_url": output["result_url"],
            "duration_seconds": output["duration_seconds"],
            "output_path": output["output_path"],
        }
        for asset in assets:
            events[asset].extra.update(extra)

    def _lineage(self, inputs: list[str], jogg_task_id: str | None, **facet: Any) -> Any:
        """OpenLineage for this run: media inputs, the result (and its saved copy) as outputs."""
        from airflow_provider_jogg.lineage import operator_lineage

        output = self._finished_output or {}
        outputs = [o for o in (output.get("result_url"), output.get("output_path")) if o]
        return operator_lineage(
            inputs=inputs,
            outputs=outputs,
            jogg_task_id=output.get("task_id") or jogg_task_id,
            result_url=output.get("result_url"),
            **facet,
        )

    def _wait_in_worker(self, context: Context, task_id: str) -> dict[str, Any]:
        """Poll from the worker until the task ends (``deferrable=False`` outside a sensor)."""
        deadline = time.time() + self.timeout
        while True:
            try:
                result = self.hook.get_lip_sync_video(task_id)
            except exc.JoggTransientError as error:
                self.log.warning(
                    "Jogg task %s: status poll failed after retries; waiting on: %s", task_id, error
                )
            else:
                self._log_status(result)
                if result.is_terminal:
                    return self._finish(context, result)
            if time.time() >= deadline:
                raise self._timeout_error(f"Jogg task {task_id} did not finish within {self.timeout:g} s")
            time.sleep(self.poke_interval)
