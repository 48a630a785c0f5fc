"""LipSyncTrigger: waits for a Jogg lip-sync task in the triggerer, holding no worker slot."""

from __future__ import annotations

import asyncio
import time
from typing import TYPE_CHECKING, Any, Protocol

from airflow.triggers.base import BaseTrigger, TriggerEvent

from airflow_provider_jogg import exceptions as exc
from airflow_provider_jogg.connection import DEFAULT_CONN_ID
from airflow_provider_jogg.events import error_event, result_event, timeout_event
from airflow_provider_jogg.results import JoggStatus
from airflow_provider_jogg.retry import backoff_delay

if TYPE_CHECKING:
    from collections.abc import AsyncIterator

    from airflow_provider_jogg.connection import JoggConnectionConfig
    from airflow_provider_jogg.triggers.waits import Note

#: seconds a connection reported "not found" is looked up again before the wait ends with an error:
#: on Airflow 3.1+ an API server that cannot be reached, or a secrets backend that fails, also
#: surfaces as "not found", and an outage of a minute or two must not fail the task for good
CONNECTION_NOT_FOUND_GRACE = 120.0
#: first wait in seconds before a failed connection lookup is tried again (a shorter poll interval
#: makes it shorter); doubles per attempt, up to :data:`~airflow_provider_jogg.retry.MAX_BACKOFF`
CONNECTION_RETRY_BACKOFF = 1.0


class _Log(Protocol):
    """What :func:`read_connection` needs of a logger (a trigger's ``log`` on any Airflow 3 line)."""

    def warning(self, event: Any, *args: Any, **kw: Any) -> Any: ...


async def read_connection(
    conn_id: str, *, end_time: float | None, retry_backoff: float, log: _Log
) -> JoggConnectionConfig | None:
    """
    Look the wait's connection up; a lookup that fails for a reason that may pass is tried again.

    The same failure on a worker fails the try and Airflow retries the task; in the triggerer it
    would end the wait for good, so it is retried here, with backoff, logged, until ``end_time``.
    Ends the wait at once, with :class:`JoggConfigError`, for an invalid connection and for one the
    API server refuses to give out; a connection still not found after
    :data:`CONNECTION_NOT_FOUND_GRACE` seconds ends it too.

    :param conn_id: the Airflow connection id
    :param end_time: wall-clock epoch seconds after which the wait times out
    :param retry_backoff: first wait before a failed lookup is tried again, in seconds
    :param log: the trigger's logger
    :return: the validated settings, or ``None`` when ``end_time`` passed first
    """
    from airflow_provider_jogg._compat import AirflowNotFoundException
    from airflow_provider_jogg.connection import config_for_connection

    attempt = 0
    missing_since: float | None = None
    while True:
        try:
            return await config_for_connection(conn_id)
        except exc.JoggConfigError:
            raise
        except PermissionError as error:  # 3.2+'s AirflowSecretsBackendAccessDenied: an explicit "no"
            raise exc.JoggConfigError(f"Connection {conn_id!r} could not be read: {error}") from None
        except Exception as error:  # API server or secrets backend down, or the connection missing
            attempt += 1
            now = time.monotonic()
            delay = backoff_delay(attempt, retry_backoff)
            if isinstance(error, AirflowNotFoundException):
                if missing_since is None:
                    missing_since = now
                grace_left = missing_since + CONNECTION_NOT_FOUND_GRACE - now
                if grace_left <= 0:
                    raise exc.JoggConfigError(
                        f"Connection {conn_id!r} was not found by the triggerer ({attempt} lookups over "
                        f"{now - missing_since:.0f} s): {error}. Define it where the triggerer can read "
                        "it: the metadata database, a secrets backend, or an AIRFLOW_CONN_* variable in "
                        "the triggerer's environment."
                    ) from None
                delay = min(delay, grace_left)
            if end_time is not None:
                delay = min(delay, max(end_time - time.time(), 0.0))
            log.warning(
                "Connection %r could not be read (attempt %d), trying again in %.1f s: %s",
                conn_id,
                attempt,
                delay,
                error,
            )
        await asyncio.sleep(delay)
        if end_time is not None and time.time() >= end_time:
            return None


async def hold_until(not_before: float | None) -> None:
    """Sleep until ``not_before`` (wall-clock epoch seconds), the deferral floor: no event before it."""
    if not_before is not None:
        delay = not_before - time.time()
        if delay > 0:
            await asyncio.sleep(delay)


class LipSyncTrigger(BaseTrigger):
    """
    Polls one Jogg lip-sync task until it ends, then fires exactly one event.

    The event is a dict ``{"status": "success" | "failed" | "timeout" | "error", "task_id": ...}``;
    ``success``/``failed`` carry ``result`` (the plain-JSON task), ``error`` carries ``error`` and
    ``message``. :func:`airflow_provider_jogg.events.parse_event` validates it.

    .. note::
        Transient failures (429, 5xx, code 50000, timeouts, broken connections, unreadable bodies) are
        retried with exponential backoff, never sooner than the poll interval (a 429: its
        ``Retry-After``, during which nobody polls that account), until the task ends or ``end_time``
        passes. The connection is looked up once per run, with the async connection API; the key never
        enters the trigger's kwargs. A lookup that fails (API server or secrets backend down) is tried
        again with backoff until ``end_time``; a connection that is invalid, or still not found after
        :data:`CONNECTION_NOT_FOUND_GRACE` seconds, ends the wait with an ``error`` event.

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
        await hold_until(self.not_before)  # whatever ended the wait (a bad connection too)
        yield TriggerEvent(event)

    async def _wait(self) -> dict[str, Any]:
        """Wait until the task ends; returns the one event payload."""
        from airflow_provider_jogg.triggers.polling import PollScheduler

        task_id = self.jogg_task_id
        if self.end_time is not None and time.time() >= self.end_time:
            return timeout_event(task_id, self.end_time)
        try:
            config = await read_connection(
                self.jogg_conn_id,
                end_time=self.end_time,
                retry_backoff=min(CONNECTION_RETRY_BACKOFF, max(self.poll_interval, 0.01)),
                log=self.log,
            )
        except exc.JoggConfigError as error:  # invalid, denied, or still missing after the grace
            return error_event(task_id, error)
        if config is None:  # end_time passed while the lookup kept failing
            assert self.end_time is not None
            return timeout_event(task_id, self.end_time)
        if self.not_before is not None and self.not_before > time.time():
            self.log.info(
                "Jogg task %s: first poll in %.0f s at the earliest (the deferral floor, "
                "[jogg] min_deferral_seconds, or the account's Retry-After)",
                task_id,
                self.not_before - time.time(),
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
        from airflow_provider_jogg.triggers.waits import NoteKind

        task_id = self.jogg_task_id
        if note.kind is NoteKind.RETRYING:
            self.log.warning(
                "Jogg task %s: poll failed (%d in a row), next poll in %.1f s: %s",
                task_id,
                note.failures,
                note.next_in,
                note.error,
            )
            return None
        if note.kind is NoteKind.STATUS:
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
        if note.kind is NoteKind.CRASHED and note.crash is not None:
            raise note.crash
        if note.kind is NoteKind.ERROR and note.error is not None:
            self.log.error("Jogg task %s: %s", task_id, note.error)
            return error_event(task_id, note.error)
        if note.kind is NoteKind.FINISHED and note.result is not None:
            self.log.info(
                "Jogg task %s is %s (%.0f s since this wait started)",
                task_id,
                note.result.status,
                time.time() - started,
            )
            return result_event(note.result)
        if note.kind is NoteKind.TIMED_OUT and self.end_time is not None:
            return timeout_event(task_id, self.end_time, failures=note.failures, cause=note.cause)
        raise RuntimeError(f"Jogg task {task_id}: a {note.kind.value} note without its field")
