"""LipSyncTrigger: waits for a Jogg lip-sync task in the triggerer, holding no worker slot."""

from __future__ import annotations

import asyncio
import random
import time
from typing import TYPE_CHECKING, Any

from airflow.triggers.base import BaseTrigger, TriggerEvent

from airflow_provider_jogg import exceptions as exc
from airflow_provider_jogg.policy import (
    DEFAULT_CONN_ID,
    JoggStatus,
    backoff_delay,
    error_event,
    result_event,
    timeout_event,
)

if TYPE_CHECKING:
    from collections.abc import AsyncIterator

    from airflow_provider_jogg.hooks.jogg import AsyncJoggClient

#: normal polls wait ``poll_interval`` plus up to this fraction of it, so waits spread out
POLL_JITTER = 0.1
#: the first poll comes after ``poll_interval`` times a uniform factor in [1 - this, 1 + this]
FIRST_POLL_SPREAD = 0.5


class LipSyncTrigger(BaseTrigger):
    """
    Polls one Jogg lip-sync task until it ends, then fires exactly one event.

    The event is a dict ``{"status": "success" | "failed" | "timeout" | "error", "task_id": ...}``;
    ``success``/``failed`` carry ``result`` (the plain-JSON task), ``error`` carries ``error`` and
    ``message``. :func:`airflow_provider_jogg.policy.parse_event` validates it.

    .. note::
        Transient failures (429, 5xx, code 50000, timeouts, broken connections, unreadable bodies) are
        retried with exponential backoff, never sooner than the poll interval or a ``Retry-After``,
        until the task ends or ``end_time`` passes. The connection is looked up once per run, with the
        async connection API; the key never enters the trigger's kwargs.

    :param jogg_task_id: the Jogg task id
    :param jogg_conn_id: the Airflow connection id
    :param poll_interval: seconds between two polls (fractions allowed)
    :param end_time: wall-clock epoch seconds after which the trigger fires a ``timeout`` event;
        wall clock on purpose, because a trigger resumes in another process after a restart
    """

    def __init__(
        self,
        jogg_task_id: str,
        jogg_conn_id: str = DEFAULT_CONN_ID,
        poll_interval: float = 10.0,
        end_time: float | None = None,
    ) -> None:
        super().__init__()
        self.jogg_task_id = jogg_task_id
        self.jogg_conn_id = jogg_conn_id
        self.poll_interval = float(poll_interval)
        self.end_time = None if end_time is None else float(end_time)

    def serialize(self) -> tuple[str, dict[str, Any]]:
        # a persistent schema: later versions may only add keyword arguments with defaults
        return (
            "airflow_provider_jogg.triggers.lip_sync.LipSyncTrigger",
            {
                "jogg_task_id": self.jogg_task_id,
                "jogg_conn_id": self.jogg_conn_id,
                "poll_interval": self.poll_interval,
                "end_time": self.end_time,
            },
        )

    async def run(self) -> AsyncIterator[TriggerEvent]:
        event = await self._wait()
        yield TriggerEvent(event)

    async def _wait(self) -> dict[str, Any]:
        """Poll until the task ends; returns the one event payload."""
        from airflow_provider_jogg.hooks.jogg import AsyncJoggClient

        task_id = self.jogg_task_id
        try:
            client: AsyncJoggClient = await AsyncJoggClient.for_connection(self.jogg_conn_id)
        except exc.JoggConfigError as error:
            return error_event(task_id, error)
        except Exception as error:  # connection missing or secrets backend down: say which
            return error_event(
                task_id, exc.JoggConfigError(f"Connection {self.jogg_conn_id!r} could not be read: {error}")
            )

        async with client:
            return await self._poll(client)

    async def _poll(self, client: AsyncJoggClient) -> dict[str, Any]:
        task_id = self.jogg_task_id
        started = time.time()
        last_status: str | None = None
        failures = 0
        # the sensor checked just before deferring; spreading first polls over one interval keeps
        # thousands of waits deferred together from polling in lockstep
        delay = self.poll_interval * random.uniform(1 - FIRST_POLL_SPREAD, 1 + FIRST_POLL_SPREAD)
        while True:
            if self.end_time is not None:
                remaining = self.end_time - time.time()
                if remaining <= 0:
                    return timeout_event(task_id, self.end_time)
                delay = min(delay, remaining)
            await asyncio.sleep(max(delay, client.throttle.remaining()))
            if self.end_time is not None and time.time() >= self.end_time:
                return timeout_event(task_id, self.end_time)
            try:
                result = await client.get_lip_sync_video(task_id)
            except exc.JoggAPIError as error:
                if not error.transient:
                    self.log.error("Jogg task %s: %s", task_id, error)
                    return error_event(task_id, error)
                failures += 1
                retry_after = getattr(error, "retry_after", None)
                delay = max(
                    self.poll_interval, backoff_delay(failures, client.config.retry_backoff, retry_after)
                )
                self.log.warning(
                    "Jogg task %s: poll failed (%d in a row), next poll in %.1f s: %s",
                    task_id,
                    failures,
                    delay,
                    error,
                )
                continue
            failures = 0
            if result.status != last_status:
                last_status = result.status
                if JoggStatus.is_known(result.status):
                    self.log.info(
                        "Jogg task %s is %s (%.0f s since this wait started)",
                        task_id,
                        result.status,
                        time.time() - started,
                    )
                else:
                    self.log.warning(
                        "Jogg task %s reports an unknown status %r; treating it as not finished",
                        task_id,
                        result.status,
                    )
            if result.is_terminal:
                return result_event(result)
            delay = self.poll_interval * (1 + random.uniform(0, POLL_JITTER))
