"""
The batch's create phase: upload what must be uploaded, create one Jogg task per clip, record each.

Clips go in windows of ``concurrency``: the window's files are uploaded, then every clip of the
window is announced in the ledger (``sending``) and the ledger flushed, and only then are the create
requests sent, side by side, each under the account's shared rate limit (the hook's throttle). Their
outcomes are recorded and flushed before the next window. A worker killed at any point leaves no
clip whose create could have been sent without a record saying so: a retry sends no create twice.
"""

from __future__ import annotations

import logging
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any

from airflow_provider_jogg import exceptions as exc
from airflow_provider_jogg.batch import ledger as states
from airflow_provider_jogg.media_inputs import MediaFile

if TYPE_CHECKING:
    from collections.abc import Callable, Sequence

    from airflow_provider_jogg.batch.ledger import Ledger

log = logging.getLogger(__name__)

#: errors after which nothing more is created for this account in this try: every later create
#: would be refused the same way (the clips not created are ``skipped``; a retry creates them)
ACCOUNT_ERRORS = (exc.JoggAuthError, exc.JoggPermissionError, exc.JoggInsufficientCreditError)


class CreatePhase:
    """
    Creates the Jogg tasks of the clips that need one.

    :param upload: uploads a :class:`~airflow_provider_jogg.media_inputs.MediaFile`, returns its URL
    :param create: ``create(video_url, audio_url, playback_type) -> task_id`` (the hook's)
    :param ledger: the batch's ledger (already loaded)
    :param concurrency: creates (and uploads) in flight at once
    """

    def __init__(
        self,
        *,
        upload: Callable[[MediaFile], str],
        create: Callable[[str, str, str], str],
        ledger: Ledger,
        concurrency: int,
    ) -> None:
        self.upload = upload
        self.create = create
        self.ledger = ledger
        self.concurrency = max(1, concurrency)
        self.stopped: str | None = None  # why no more creates are sent, once an account error came

    def run(self, work: Sequence[tuple[str, dict[str, Any]]], *, progress: Callable[[int], None]) -> None:
        """
        Create a task for each ``(clip, inputs)``; ``inputs`` holds ``video_url``/``audio_url``
        (an http(s) URL or a ``MediaFile`` to upload) and ``playback_type``.
        """
        done = 0
        with ThreadPoolExecutor(max_workers=self.concurrency, thread_name_prefix="jogg-create") as pool:
            for start in range(0, len(work), self.concurrency):
                window = work[start : start + self.concurrency]
                if self.stopped is not None:
                    for clip, _inputs in window:
                        self.ledger.update(clip, state=states.SKIPPED, error=self.stopped)
                    self.ledger.flush()
                    continue
                uploaded = list(pool.map(self._upload_inputs, window))
                ready = [(clip, inputs) for (clip, _), inputs in zip(window, uploaded, strict=True) if inputs]
                for clip, inputs in ready:
                    record = self.ledger.records[clip]
                    # announced before the request can leave: a crash from here on never re-sends it
                    self.ledger.update(clip, state=states.SENDING, inputs=inputs, creates=record.creates + 1)
                self.ledger.flush()
                list(pool.map(self._create_one, ready))
                self.ledger.flush()
                done += len(window)
                progress(done)

    def _upload_inputs(self, item: tuple[str, dict[str, Any]]) -> dict[str, str] | None:
        clip, inputs = item
        urls = {"playback_type": inputs["playback_type"]}
        try:
            for role in ("video_url", "audio_url"):
                value = inputs[role]
                urls[role] = self.upload(value) if isinstance(value, MediaFile) else value
        except exc.JoggError as error:
            # nothing was created: a retry of the batch tries this clip again
            log.warning("Clip %r: upload failed, not created: %s", clip, error)
            self.ledger.update(clip, state=states.SKIPPED, error=f"upload failed: {error}")
            if isinstance(error, ACCOUNT_ERRORS):
                self.stopped = f"not created: the account refused an earlier request ({error.summary})"
            return None
        return urls

    def _create_one(self, item: tuple[str, dict[str, str]]) -> None:
        clip, inputs = item
        if self.stopped is not None:  # an account error came while this window was on its way
            self.ledger.update(clip, state=states.SKIPPED, error=self.stopped)
            return
        try:
            task_id = self.create(inputs["video_url"], inputs["audio_url"], inputs["playback_type"])
        except exc.JoggCreateUncertainError as error:
            log.error("Clip %r: the create may have made a Jogg task; never sent again: %s", clip, error)
            self.ledger.update(clip, state=states.UNCERTAIN, error=str(error))
        except ACCOUNT_ERRORS as error:
            self.stopped = f"not created: the account refused an earlier create ({error.summary})"
            log.error("Clip %r: %s; creating no more tasks in this try", clip, error)
            self.ledger.update(clip, state=states.SKIPPED, error=str(error))
        except exc.JoggTransientError as error:
            # retried by the hook until the retries ran out; it surely created nothing
            log.warning("Clip %r: not created (%s); a retry of this task creates it", clip, error)
            self.ledger.update(clip, state=states.SKIPPED, error=str(error))
        except exc.JoggError as error:
            log.error("Clip %r: Jogg refused the create: %s", clip, error)
            self.ledger.update(clip, state=states.REFUSED, error=str(error))
        else:
            self.ledger.update(
                clip, state=states.CREATED, task_id=task_id, error=None, status="pending", result_url=None
            )
