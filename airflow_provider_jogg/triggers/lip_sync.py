"""LipSyncTrigger: waits for a Jogg lip-sync task in the triggerer, holding no worker slot."""

from __future__ import annotations

import asyncio
import time
from typing import TYPE_CHECKING, Any

from airflow.triggers.base import BaseTrigger, TriggerEvent

from airflow_provider_jogg import exceptions as exc
from airflow_provider_jogg.policy import (
    DEFAULT_CONN_ID,
    JoggStatus,
    error_event,
    result_event,
    timeout_event,
)

if TYPE_CHECKING:
    from collections.abc import AsyncIterator

    from airflow_provider_jogg.triggers.polling import Note


class LipSyncTrigger(BaseTrigger):
    """
    Polls one Jogg lip-sync task until it ends, then fires exactly one event.

    The event is a dict ``{"status": "success" | "failed" | "timeout" | "error", "task_id": ...}``;
    ``success``/``failed`` carry ``result`` (the plain-JSON task), ``error`` carries ``error`` and
    ``message``. :func:`airflow_provider_jogg.policy.parse_event` validates it.

    .. note::
        Transient failures (429, 5xx, code 50000, timeouts, broken connections, unreadable bodies) are
        retried with exponential backoff, never sooner than the poll interval (a 429: its
        ``Retry-After``, during which nobody polls that account), until the task ends or ``end_time``
        passes. The connection is looked up once per run, with the async connection API; the key never
        enters the trigger's kwargs.

        The trigger holds no polling timer of its own: every wait on one account in one event loop is polled
        by that account's :class:`~airflow_provider_jogg.triggers.polling.PollScheduler`, which sends
        due polls together on a 50 ms grid over the loop's one shared session, and wakes the trigger
        only to log a new status or a retried failure, and to end the wait. The first poll comes
        after ``poll_interval`` x U(0.5, 1.5) (and not before ``not_before``), the next ones
        ``poll_interval`` x U(0.99, 1.01) apart. ``end_time`` is kept by a timer of its own, so a
        ``Retry-After`` pause or a slow answer never delays the timeout event.

    :param jogg_task_id: the Jogg task id
    :param jogg_conn_id: the Airflow connection id
    :param poll_interval: seconds between two polls (fractions allowed)
    :param end_time: wall-clock epoch seconds after which the trigger fires a ``timeout`` event;
        wall clock on purpose, because a trigger resumes in another process after a restart
    :param not_before: wall-clock epoch seconds before which the trigger neither polls nor fires any
        event (``None``: no such floor). The operators set it to the deferral time plus
        ``[jogg] min_deferral_seconds`` or a ``Retry-After``, whichever is later: Airflow fails a task
        whose trigger fires before the scheduler has processed the deferral (apache/airflow#67287).
    """

    def __init__(
        self,
        jogg_task_id: str,
        jogg_conn_id: str = DEFAULT_CONN_ID,
        poll_interval: float = 10.0,
        end_time: float | None = None,
        not_before: float | None = None,
    ) -> None:
        super().__init__()
        self.jogg_task_id = jogg_task_id
        self.jogg_conn_id = jogg_conn_id
        self.poll_interval = float(poll_interval)
        self.end_time = None if end_time is None else float(end_time)
        self.not_before = None if not_before is None else float(not_before)

    def serialize(self) -> tuple[str, dict[str, Any]]:
        # a persistent schema: later versions may only add keyword arguments with defaults
        return (
            "airflow_provider_jogg.triggers.lip_sync.LipSyncTrigger",
            {
                "jogg_task_id": self.jogg_task_id,
                "jogg_conn_id": self.jogg_conn_id,
                "poll_interval": self.poll_interval,
                "end_time": self.end_time,
                "not_before": self.not_before,
            },
        )

    async def run(self) -> AsyncIterator[TriggerEvent]:
        event = await self._wait()
        if self.not_before is not None:
            # whatever ended the wait (even a bad connection), no event before the floor
            delay = self.not_before - time.time()
            if delay > 0:
                await asyncio.sleep(delay)
        yield TriggerEvent(event)

    async def _wait(self) -> dict[str, Any]:
        """Wait until the task ends; returns the one event payload."""
        from airflow_provider_jogg.hooks.async_client import config_for_connection
        from airflow_provider_jogg.triggers.polling import PollScheduler

        task_id = self.jogg_task_id
        if self.end_time is not None and time.time() >= self.end_time:
            return timeout_event(task_id, self.end_time)
        try:
            config = await config_for_connection(self.jogg_conn_id)
        except exc.JoggConfigError as error:
            return error_event(task_id, error)
        except Exception as error:  # connection missing or secrets backend down: say which
            return error_event(
                task_id, exc.JoggConfigError(f"Connection {self.jogg_conn_id!r} could not be read: {error}")
            )
        # this trigger's task sleeps until the account's scheduler has news: no timer, no wake-up per poll
        scheduler = PollScheduler.for_config(config)
        wait = await scheduler.register(task_id, self.poll_interval, self.end_time, self.not_before)
        started = time.time()
        try:
            while True:
                for note in await wait.next_notes():
                    event = self._on_note(note, started)
                    if event is not None:
                        return event
        finally:
            await scheduler.unregister(wait)

    def _on_note(self, note: Note, started: float) -> dict[str, Any] | None:
        """Log what the scheduler says (in this trigger's own log); the event once the wait ends."""
        task_id = self.jogg_task_id
        if note.kind == "retry":
            self.log.warning(
                "Jogg task %s: poll failed (%d in a row), next poll in %.1f s: %s",
                task_id,
                note.failures,
                note.next_in,
                note.error,
            )
            return None
        if note.kind == "status":
            status = note.status or ""
            if JoggStatus.is_known(status):
                self.log.info(
                    "Jogg task %s is %s (%.0f s since this wait started)",
                    task_id,
                    status,
                    time.time() - started,
                )
            else:
                self.log.warning(
                    "Jogg task %s reports an unknown status %r; treating it as not finished", task_id, status
                )
            return None
        if note.crash is not None:
            raise note.crash
        if note.error is not None:
            self.log.error("Jogg task %s: %s", task_id, note.error)
            return error_event(task_id, note.error)
        if note.result is not None:
            self.log.info(
                "Jogg task %s is %s (%.0f s since this wait started)",
                task_id,
                note.result.status,
                time.time() - started,
            )
            return result_event(note.result)
        assert self.end_time is not None  # only a wait with an end time times out
        return timeout_event(task_id, self.end_time, failures=note.failures, cause=note.cause)
