"""
The batch's ledger: one durable record per clip, from "about to be created" to "saved".

The ledger is how a batch survives a worker killed mid-create, a retry, or a triggerer restart:
every record is written before the step it announces can be lost. Records live in pages of at most
:data:`PAGE_SIZE` clips, fewer when the clips' inputs are long (:func:`page_size_for`: a page stays
under :data:`PAGE_BYTES`); a change rewrites one page, never the whole batch. Pages are kept in
every store the batch has:

- a folder of JSON pages beside the result manifest (:class:`FilePages`: a local folder or object
  storage, on every Airflow line; the triggerer reads and updates it during the wait);
- the task state store on Airflow 3.3+ (:class:`StatePages`), which survives even when the folder's
  last write did not.

On load, the stores are merged clip by clip and the most advanced record wins
(:data:`STATE_RANK`). A create is announced (``sending``) before its request goes out; a record still
``sending`` when a retry loads the ledger becomes ``uncertain``: Jogg may have created (and billed) a
task, and it is never sent again.
"""

from __future__ import annotations

import json
import logging
import threading
from dataclasses import asdict, dataclass, field, fields
from typing import TYPE_CHECKING, Any, Protocol

from airflow_provider_jogg.media_inputs import is_local_path

if TYPE_CHECKING:
    from collections.abc import Iterable, Iterator

    from airflow_provider_jogg.results import LipSyncResult

log = logging.getLogger(__name__)

#: the most clips a page holds
PAGE_SIZE = 100
#: a page's JSON size it is planned to stay under: Airflow's ``[state_store] max_value_storage_bytes``
#: (64 KiB by default) less a margin; above that limit Airflow warns on every write of the page
PAGE_BYTES = 48_000
#: what a record holds beyond its clip name, inputs and output path, planned generously: its keys, its
#: state, a task id, Jogg's result and cover URLs, a duration, an error of up to ERROR_CHARS
RECORD_BYTES = 1_000
#: a clip's error as the ledger keeps it (longer ones are cut): a record stays within its plan
ERROR_CHARS = 500
#: the length planned for an output path under ``output_dir`` (a row's own ``output_path`` counts as is)
OUTPUT_PATH_CHARS = 256
#: task state store key of the batch's own facts (fingerprint, page count); pages are ``..._page_N``
STATE_KEY = "jogg_batch"

# the states of a clip, in the order a clip moves through them
NEW = "new"  # nothing sent yet
SENDING = "sending"  # the create request may be on its way: never send it again
UNCERTAIN = "uncertain"  # a create may have made a task; none is known: never sent again
REFUSED = "refused"  # Jogg refused the create (nothing created): a failure of the clip
SKIPPED = "skipped"  # not created: the batch stopped creating (account error, budget)
CREATED = "created"  # a Jogg task exists: wait for it
FAILED = "failed"  # the Jogg task failed
SUCCEEDED = "succeeded"  # the Jogg task succeeded: its result can be saved
SAVED = "saved"  # the result is saved where the row asked

#: which record wins when two stores disagree about a clip (the higher rank)
STATE_RANK = {
    NEW: 0,
    SKIPPED: 1,
    SENDING: 2,
    REFUSED: 3,
    UNCERTAIN: 3,
    CREATED: 4,
    FAILED: 5,
    SUCCEEDED: 5,
    SAVED: 6,
}
#: states in which the clip waits for its Jogg task
WAITING = frozenset({CREATED})
#: states that count as a failed clip in the summary and the failure policy
FAILURES = frozenset({UNCERTAIN, REFUSED, SKIPPED, FAILED})


@dataclass
class ClipRecord:
    """What the batch knows about one clip. Plain JSON fields only."""

    clip: str
    state: str = NEW
    task_id: str | None = None
    #: what Jogg was given (after uploads): video_url, audio_url, playback_type
    inputs: dict[str, str] = field(default_factory=dict)
    status: str | None = None
    result_url: str | None = None
    cover_url: str | None = None
    duration_seconds: float | None = None
    error: str | None = None
    output_path: str | None = None
    #: tries of this batch that created a Jogg task for this clip (a failed task is created anew)
    creates: int = 0

    def to_json(self) -> dict[str, Any]:
        return {k: v for k, v in asdict(self).items() if v not in (None, {}, 0) or k in ("clip", "state")}

    @classmethod
    def from_json(cls, value: dict[str, Any]) -> ClipRecord:
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in value.items() if k in known})


class PageStore(Protocol):
    """Where pages are kept: a page is a JSON object ``{"clips": {clip: record}}``."""

    def load(self, page: int) -> dict[str, Any] | None: ...

    def save(self, page: int, content: dict[str, Any]) -> None: ...

    def describe(self) -> str: ...


class FilePages:
    """Pages as ``page-NNNNN.json`` files in a folder: local (written atomically) or object storage."""

    def __init__(self, folder: Any) -> None:
        self.folder = folder

    def _path(self, page: int) -> Any:
        return self.folder / f"page-{page:05d}.json"

    def load(self, page: int) -> dict[str, Any] | None:
        path = self._path(page)
        try:
            with path.open("r", encoding="utf-8") as handle:
                content = json.load(handle)
        except FileNotFoundError:
            return None
        return content if isinstance(content, dict) else None

    def save(self, page: int, content: dict[str, Any]) -> None:
        path = self._path(page)
        body = json.dumps(content, separators=(",", ":"), sort_keys=True)
        if is_local_path(path):  # a local file: never half written (rename is atomic)
            path.parent.mkdir(parents=True, exist_ok=True)
            partial = path.with_name(f".{path.name}.partial")
            partial.write_text(body, encoding="utf-8")
            partial.replace(path)
            return
        with path.open("w", encoding="utf-8") as handle:  # an object store writes an object whole
            handle.write(body)

    def describe(self) -> str:
        return str(self.folder)


class StatePages:
    """Pages in the task state store (Airflow 3.3+), under the keys ``jogg_batch_page_N``."""

    def __init__(self, store: Any) -> None:
        self.store = store

    def load(self, page: int) -> dict[str, Any] | None:
        content = self.store.get(f"{STATE_KEY}_page_{page}")
        return content if isinstance(content, dict) else None

    def save(self, page: int, content: dict[str, Any]) -> None:
        self.store.set(f"{STATE_KEY}_page_{page}", content)

    def describe(self) -> str:
        return "the task state store"


class Ledger:
    """
    The records of one batch, in clip order, with the stores they are written to.

    Thread-safe: the create phase records from several threads. :meth:`flush` writes the pages
    that changed since the last flush to every store; a store that fails is logged and the error
    raised after the others were written (a record must reach at least one store).
    """

    def __init__(
        self, clips: Iterable[str], stores: list[PageStore], fingerprint: str, page_size: int = PAGE_SIZE
    ) -> None:
        self.fingerprint = fingerprint
        self.stores = stores
        self.page_size = page_size
        self.records: dict[str, ClipRecord] = {clip: ClipRecord(clip) for clip in clips}
        self._page_of = {clip: index // page_size for index, clip in enumerate(self.records)}
        self._pages: list[list[str]] = []
        for clip, page in self._page_of.items():
            if page == len(self._pages):
                self._pages.append([])
            self._pages[page].append(clip)
        self._dirty: set[int] = set()
        self._lock = threading.Lock()

    @property
    def page_count(self) -> int:
        return len(self._pages)

    def load(self) -> int:
        """Merge what the stores hold for these clips; returns how many clips had a record."""
        found = 0
        for page in range(self.page_count):
            for store in self.stores:
                content = store.load(page)
                if not content or content.get("fingerprint") != self.fingerprint:
                    continue
                for clip, value in (content.get("clips") or {}).items():
                    current = self.records.get(clip)
                    if current is None or not isinstance(value, dict):
                        continue
                    stored = ClipRecord.from_json(value)
                    if STATE_RANK.get(stored.state, -1) > STATE_RANK[current.state]:
                        self.records[clip] = stored
        for record in self.records.values():
            if record.state != NEW:
                found += 1
        return found

    def update(self, clip: str, **changes: Any) -> ClipRecord:
        """Change one record in memory (written by the next :meth:`flush`)."""
        error = changes.get("error")
        if isinstance(error, str) and len(error) > ERROR_CHARS:
            changes["error"] = error[: ERROR_CHARS - 1] + "\u2026"
        with self._lock:
            record = self.records[clip]
            for name, value in changes.items():
                setattr(record, name, value)
            self._dirty.add(self._page_of[clip])
            return record

    def record_result(self, clip: str, result: LipSyncResult) -> bool:
        """A clip's Jogg task ended (``result`` is terminal); returns whether the clip failed."""
        self.update(
            clip,
            state=SUCCEEDED if result.succeeded else FAILED,
            status=result.status,
            result_url=result.result_url,
            cover_url=result.cover_url,
            duration_seconds=result.duration_seconds,
            error=result.error_message,
        )
        return not result.succeeded

    def record_wait_error(self, clip: str, error: BaseException | str) -> None:
        """A fatal error ended a clip's wait (Jogg does not know its task, say): the clip failed."""
        self.update(clip, state=FAILED, status="error", error=str(error))

    def flush(self, *, all_pages: bool = False) -> None:
        """Write the pages that changed (``all_pages``: every page, as the triggerer reads them all)."""
        with self._lock:
            dirty = range(self.page_count) if all_pages else sorted(self._dirty)
            self._dirty = set()
            contents = {page: self._content(page) for page in dirty}
        failure: BaseException | None = None
        unwritten: set[int] = set()
        for store in self.stores:
            for page, content in contents.items():
                try:
                    store.save(page, content)
                except Exception as error:
                    log.error(
                        "Could not write page %d of the batch ledger to %s: %s", page, store.describe(), error
                    )
                    unwritten.add(page)
                    failure = failure or error
        if failure is not None:
            with self._lock:  # written again by the next flush, with whatever changed since
                self._dirty |= unwritten
            raise failure

    def _content(self, page: int) -> dict[str, Any]:
        clips = {clip: self.records[clip].to_json() for clip in self._pages[page]}
        return {"fingerprint": self.fingerprint, "page_size": self.page_size, "clips": clips}

    def in_state(self, *states: str) -> Iterator[ClipRecord]:
        return (r for r in self.records.values() if r.state in states)

    def counts(self) -> dict[str, int]:
        counts: dict[str, int] = {}
        for record in self.records.values():
            counts[record.state] = counts.get(record.state, 0) + 1
        return counts


def page_size_for(strings: Iterable[tuple[str, str, str, str | None]]) -> int:
    """
    Clips per page for a batch whose clips are ``(clip, video, audio, output_path)``: as many as keep
    a page of the largest such record, with everything Jogg and the batch add to it, under
    :data:`PAGE_BYTES`; at most :data:`PAGE_SIZE`, at least 1. Only the rows decide it (the batch's
    fingerprint covers them), so every try of a batch pages its clips alike.
    """
    largest = 0
    for clip, video, audio, output_path in strings:
        text = [clip, video, audio, output_path if output_path is not None else "x" * OUTPUT_PATH_CHARS]
        largest = max(largest, len(json.dumps(text)))
    return max(1, min(PAGE_SIZE, PAGE_BYTES // (RECORD_BYTES + largest)))


def open_file_pages(location: Any) -> FilePages:
    """The ledger folder at ``location`` (a local path, a URI or an ``ObjectStoragePath``)."""
    from airflow_provider_jogg.media_inputs import to_path

    return FilePages(to_path(location, "ledger"))


def read_pages(store: PageStore, fingerprint: str) -> Ledger:
    """
    The ledger as one store holds it, without knowing the clips beforehand (the triggerer's view):
    pages 0, 1, ... until one is missing. Pages of another batch (fingerprint) end the read.
    """
    records: list[ClipRecord] = []
    page_size = PAGE_SIZE
    page = 0
    while True:
        content = store.load(page)
        if not content or content.get("fingerprint") != fingerprint:
            break
        if page == 0:  # the pages the operator planned: the view writes them back the same way
            page_size = int(content.get("page_size") or PAGE_SIZE)
        records += [
            ClipRecord.from_json(v) for v in (content.get("clips") or {}).values() if isinstance(v, dict)
        ]
        page += 1
    if not records:
        raise FileNotFoundError(f"no ledger pages of this batch in {store.describe()}")
    ledger = Ledger([r.clip for r in records], [store], fingerprint, page_size)
    ledger.records.update({r.clip: r for r in records})
    return ledger
