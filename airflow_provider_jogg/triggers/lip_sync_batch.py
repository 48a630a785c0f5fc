"""LipSyncBatchTrigger: one trigger waits for every clip of a batch, through the account's poll scheduler."""

from __future__ import annotations

import asyncio
import time
from typing import TYPE_CHECKING, Any

from airflow.triggers.base import BaseTrigger, TriggerEvent

from airflow_provider_jogg import exceptions as exc
from airflow_provider_jogg.connection import DEFAULT_CONN_ID

if TYPE_CHECKING:
    from collections.abc import AsyncIterator

    from airflow_provider_jogg.batch.ledger import ClipRecord
    from airflow_provider_jogg.triggers.waits import Note

#: seconds between two writes of the ledger pages that changed (a triggerer restart re-polls at most
#: the clips that ended in this window: polling is read-only)
FLUSH_SECONDS = 5.0


class LipSyncBatchTrigger(BaseTrigger):
    """
    Polls every clip of a batch that has a Jogg task still running, then fires one small event.

    The clips are read from the batch's ledger folder (a local folder the triggerer can read, or
    object storage), never from the trigger's kwargs: a 10,000-clip batch's trigger row holds a few
    strings and numbers. Each clip is one wait of the account's
    :class:`~airflow_provider_jogg.triggers.polling.PollScheduler` (shared with every other trigger of
    the account in this triggerer), all reporting to one inbox this trigger sleeps on. A clip that
    ends is written back to the ledger (pages that changed, every :data:`FLUSH_SECONDS`), so a
    triggerer restart resumes where it was: the adopted trigger polls only what is still running.

    The event: ``{"status": "done" | "timeout" | "error", "waiting": n, "ended": n, "message": ...}``;
    the results stay in the ledger, where the operator reads them.

    :param ledger_location: the ledger folder (a path or URI)
    :param fingerprint: the batch's fingerprint: pages of another batch are ignored
    :param jogg_conn_id: the Airflow connection id
    :param poll_interval: seconds between two polls of one clip
    :param end_time: wall-clock epoch seconds after which the wait ends with ``timeout``
    :param not_before: wall-clock epoch seconds before which nothing is polled and no event fires
    :param progress_interval: seconds between two progress lines in the trigger's log
    """

    def __init__(
        self,
        ledger_location: str,
        fingerprint: str,
        jogg_conn_id: str = DEFAULT_CONN_ID,
        poll_interval: float = 30.0,
        end_time: float | None = None,
        not_before: float | None = None,
        progress_interval: float = 60.0,
    ) -> None:
        super().__init__()
        self.ledger_location = ledger_location
        self.fingerprint = fingerprint
        self.jogg_conn_id = jogg_conn_id
        self.poll_interval = float(poll_interval)
        self.end_time = None if end_time is None else float(end_time)
        self.not_before = None if not_before is None else float(not_before)
        self.progress_interval = float(progress_interval)

    def serialize(self) -> tuple[str, dict[str, Any]]:
        # a persistent schema: later versions may only add keyword arguments with defaults
        return (
            "airflow_provider_jogg.triggers.lip_sync_batch.LipSyncBatchTrigger",
            {
                "ledger_location": self.ledger_location,
                "fingerprint": self.fingerprint,
                "jogg_conn_id": self.jogg_conn_id,
                "poll_interval": self.poll_interval,
                "end_time": self.end_time,
                "not_before": self.not_before,
                "progress_interval": self.progress_interval,
            },
        )

    async def run(self) -> AsyncIterator[TriggerEvent]:
        from airflow_provider_jogg.triggers.lip_sync import hold_until

        event = await self._wait()
        await hold_until(self.not_before)  # whatever ended the wait, no event before the floor
        yield TriggerEvent(event)

    async def _wait(self) -> dict[str, Any]:
        from airflow_provider_jogg.batch.ledger import WAITING, open_file_pages, read_pages
        from airflow_provider_jogg.triggers.lip_sync import CONNECTION_RETRY_BACKOFF, read_connection
        from airflow_provider_jogg.triggers.polling import PollScheduler
        from airflow_provider_jogg.triggers.waits import Inbox

        try:
            # opening is inside: a location no filesystem of the triggerer can open (an unknown
            # scheme, a provider package missing here) must end the wait with an event, not crash it
            pages = open_file_pages(self.ledger_location)
            ledger = await asyncio.to_thread(read_pages, pages, self.fingerprint)
        except Exception as error:
            return _event(
                "error", 0, 0, f"The batch ledger at {self.ledger_location} could not be read: {error}"
            )
        waiting = [r for r in ledger.records.values() if r.state in WAITING and r.task_id]
        if not waiting:
            return _event("done", 0, 0, "No clip of the batch is waiting for Jogg")
        try:
            config = await read_connection(
                self.jogg_conn_id,
                end_time=self.end_time,
                retry_backoff=min(CONNECTION_RETRY_BACKOFF, max(self.poll_interval, 0.01)),
                log=self.log,
            )
        except exc.JoggConfigError as error:
            return _event("error", len(waiting), 0, str(error))
        if config is None:
            return _event(
                "timeout", len(waiting), 0, "The batch's timeout passed while its connection was unreadable"
            )
        self.log.info(
            "Jogg batch: waiting for %d clips (%d in the ledger); progress every %.0f s",
            len(waiting),
            len(ledger.records),
            self.progress_interval,
        )
        scheduler = PollScheduler.for_config(config)
        inbox = Inbox()
        by_wait: dict[int, ClipRecord] = {}
        waits = []
        event: dict[str, Any] | None = None
        try:
            for record in waiting:
                wait = await scheduler.register(
                    record.task_id or "", self.poll_interval, None, self.not_before, inbox
                )
                by_wait[id(wait)] = record
                waits.append(wait)
            event = await self._collect(ledger, inbox, by_wait, len(waiting))
        finally:
            for wait in waits:
                await scheduler.unregister(wait)
            if event is None:  # cancelled (a triggerer stopping) or a bug: keep what ended if we can
                await self._flush(ledger)
        failure = await self._flush(ledger)
        if failure is not None:
            # the operator reads the results from the ledger: tell it they are not all there (its
            # retry reloads the ledger and polls the clips again: polling is read-only)
            return _event(
                "error",
                event["waiting"],
                event["ended"],
                f"{event['ended']} clips ended but the batch ledger at {self.ledger_location} could not "
                f"be written: {failure}",
            )
        return event

    async def _flush(self, ledger: Any) -> BaseException | None:
        """Write the pages that changed; a failure is logged (its pages stay due for the next flush)."""
        try:
            await asyncio.to_thread(ledger.flush)
        except Exception as error:  # object storage or a disk that fails now and then
            self.log.warning("Jogg batch: could not write the ledger at %s: %s", self.ledger_location, error)
            return error
        return None

    async def _collect(
        self, ledger: Any, inbox: Any, by_wait: dict[int, ClipRecord], total: int
    ) -> dict[str, Any]:
        from airflow_provider_jogg.triggers.waits import NoteKind

        loop = asyncio.get_running_loop()
        started = loop.time()
        ended = failed = 0
        next_flush = started + FLUSH_SECONDS
        next_progress = started + self.progress_interval
        while ended < total:
            now = loop.time()
            deadline = min(next_flush, next_progress)
            if self.end_time is not None:
                left = self.end_time - time.time()
                if left <= 0:
                    return _event(
                        "timeout",
                        total - ended,
                        ended,
                        f"{total - ended} clips were not finished by end_time",
                    )
                deadline = min(deadline, now + left)
            try:
                notes = await asyncio.wait_for(inbox.next_notes(), timeout=max(deadline - now, 0.0))
            except asyncio.TimeoutError:
                notes = []
            for wait, note in notes:
                if not note.kind.ends_wait:
                    continue
                record = by_wait.pop(id(wait), None)
                if record is None:
                    continue
                if note.kind is NoteKind.CRASHED and note.crash is not None:
                    raise note.crash
                ended += 1
                failed += self._record(ledger, record, note)
            now = loop.time()
            if now >= next_flush:
                await self._flush(ledger)  # a failure waits for the next flush: polling goes on
                next_flush = now + FLUSH_SECONDS
            if now >= next_progress:
                self._progress(ended, failed, total, now - started)
                next_progress = now + self.progress_interval
        self._progress(ended, failed, total, loop.time() - started)
        return _event("done", 0, ended, f"{ended} clips ended, {failed} of them failed")

    @staticmethod
    def _record(ledger: Any, record: ClipRecord, note: Note) -> int:
        """Write what ended one clip's wait into the ledger; 1 when the clip failed."""
        if note.result is not None:
            return int(ledger.record_result(record.clip, note.result))
        # a fatal error ends a clip's wait (its note carries it); the batch's waits have no end time
        ledger.record_wait_error(record.clip, note.error or f"the wait ended ({note.kind.value})")
        return 1

    def _progress(self, ended: int, failed: int, total: int, elapsed: float) -> None:
        rate = ended / elapsed if elapsed > 0 else 0.0
        eta = f", about {(total - ended) / rate:.0f} s to go" if rate > 0 and ended < total else ""
        self.log.info("Jogg batch: %d of %d done, %d failed%s", ended, total, failed, eta)


def _event(status: str, waiting: int, ended: int, message: str) -> dict[str, Any]:
    return {"status": status, "waiting": waiting, "ended": ended, "message": message}
