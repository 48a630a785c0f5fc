"""
One waiting task as the poll scheduler keeps it (:class:`Wait`), and what its trigger is told
(:class:`Note`, whose :class:`NoteKind` names the outcome).

A wait is a few hundred bytes: no task of its own, one timer handle (for its deadline) only when it
has an end time. Its trigger sleeps on one future until :meth:`Wait.next_notes` has something to say.
"""

from __future__ import annotations

import asyncio
import enum
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from airflow_provider_jogg import exceptions as exc
    from airflow_provider_jogg.results import LipSyncResult


class NoteKind(enum.Enum):
    """What a :class:`Note` tells a waiting trigger."""

    #: the task has a new status that is not final (``Note.status``)
    STATUS = "status"
    #: a poll failed for a reason that may pass; the next one goes out in ``Note.next_in`` seconds
    RETRYING = "retrying"
    #: the task ended, successfully or not (``Note.result``): the wait is over
    FINISHED = "finished"
    #: a fatal error (``Note.error``) ended the wait: an invalid key, a task Jogg does not know
    ERROR = "error"
    #: the wait reached its end time; ``Note.cause`` is its latest poll's error if its last
    #: ``Note.failures`` polls failed
    TIMED_OUT = "timed_out"
    #: an unexpected exception (``Note.crash``) ended the wait: a bug, raised in the trigger
    CRASHED = "crashed"

    @property
    def ends_wait(self) -> bool:
        return self not in (NoteKind.STATUS, NoteKind.RETRYING)


class Note:
    """What a :class:`Wait`'s trigger is told: a :class:`NoteKind` and the fields that kind sets."""

    __slots__ = ("cause", "crash", "error", "failures", "kind", "next_in", "result", "status")

    def __init__(
        self,
        kind: NoteKind,
        *,
        status: str | None = None,
        result: LipSyncResult | None = None,
        error: exc.JoggError | None = None,
        crash: BaseException | None = None,
        next_in: float = 0.0,
        failures: int = 0,
        cause: exc.JoggError | None = None,
    ) -> None:
        self.kind = kind
        self.cause = cause
        self.status = status
        self.result = result
        self.error = error
        self.crash = crash
        self.next_in = next_in
        self.failures = failures


class Wait:
    """
    One task's wait, as the scheduler keeps it (a few hundred bytes: no task; one timer handle, for
    its deadline, only when it has an end time).
    """

    __slots__ = (
        "active",
        "deadline",
        "due",
        "end_time",
        "ended",
        "expiry",
        "failures",
        "future",
        "inbox",
        "interval",
        "last_error",
        "notes",
        "raw_status",
        "task_id",
    )

    def __init__(
        self,
        task_id: str,
        interval: float,
        end_time: float | None,
        deadline: float | None,
        inbox: Inbox | None = None,
    ) -> None:
        self.task_id = task_id
        self.inbox = inbox  # where the notes go when many waits share one trigger
        self.interval = interval
        self.end_time = end_time  # wall clock, for the timeout event
        self.deadline = deadline  # the same instant on the loop clock
        self.due = 0.0
        self.failures = 0
        self.last_error: exc.JoggError | None = None  # of the latest failed poll, while they fail
        self.raw_status: str | None = None
        self.active = True
        self.ended = False  # the one note that ends the wait was told: later answers are ignored
        self.expiry: asyncio.TimerHandle | None = None
        self.notes: list[Note] = []
        self.future: asyncio.Future[None] | None = None

    async def next_notes(self) -> list[Note]:
        """Wait until the scheduler has something to say; returns it (at least one note)."""
        await _until_told(self)
        notes, self.notes = self.notes, []
        return notes

    def end(self, note: Note) -> None:
        """Tell the one note that ends the wait (later calls do nothing)."""
        if self.ended:
            return
        self.ended = True
        if self.expiry is not None:
            self.expiry.cancel()
            self.expiry = None
        self.tell(note)

    def tell(self, note: Note) -> None:
        if self.inbox is not None:
            self.inbox.put(self, note)
            return
        self.notes.append(note)
        future = self.future
        if future is not None and not future.done():
            future.set_result(None)


class Inbox:
    """
    Where the notes of many waits go: the one trigger of a batch sleeps on one future for all of its
    clips, instead of one per wait.
    """

    __slots__ = ("future", "notes")

    def __init__(self) -> None:
        self.notes: list[tuple[Wait, Note]] = []
        self.future: asyncio.Future[None] | None = None

    def put(self, wait: Wait, note: Note) -> None:
        self.notes.append((wait, note))
        future = self.future
        if future is not None and not future.done():
            future.set_result(None)

    async def next_notes(self) -> list[tuple[Wait, Note]]:
        """Wait until some wait has something to say; returns every note so far, in order."""
        await _until_told(self)
        notes, self.notes = self.notes, []
        return notes


async def _until_told(listener: Wait | Inbox) -> None:
    """Sleep on one future until ``listener`` holds a note (whoever tells it sets the future)."""
    while not listener.notes:
        listener.future = asyncio.get_running_loop().create_future()
        try:
            await listener.future
        finally:
            listener.future = None
