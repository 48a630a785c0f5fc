"""
Saving a batch's results: every clip that succeeded, downloaded to its output path, a few at a time.

Each download is atomic (the hook writes a temporary name and renames it when complete) and is
recorded in the ledger once done, so a retry downloads only what is not saved yet. A download that
fails leaves its clip ``succeeded`` (its result URL is in the manifest) and is named in the error.
"""

from __future__ import annotations

import logging
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any

from airflow_provider_jogg import exceptions as exc
from airflow_provider_jogg.batch import ledger as states

if TYPE_CHECKING:
    from collections.abc import Callable

    from airflow_provider_jogg.batch.ledger import ClipRecord, Ledger

log = logging.getLogger(__name__)

#: ledger writes during the downloads: after every this many saved results (and at the end)
FLUSH_EVERY = 50


def save_results(
    ledger: Ledger,
    targets: dict[str, Any],
    download: Callable[[str, Any], int],
    *,
    concurrency: int,
) -> list[str]:
    """
    Download the result of every clip that succeeded and has a target; returns the clips whose
    download failed (each logged with its error).
    """
    todo = [
        r
        for r in ledger.in_state(states.SUCCEEDED, states.SAVED)
        if r.clip in targets
        and r.result_url
        and not (r.state == states.SAVED and r.output_path == str(targets[r.clip]))
    ]
    if not todo:
        return []
    log.info("Saving %d results (%d at a time)", len(todo), concurrency)
    failed: list[str] = []

    def one(record: ClipRecord) -> None:
        target = targets[record.clip]
        try:
            download(record.result_url or "", target)
        except exc.JoggError as error:
            log.error("Clip %r: saving its result to %s failed: %s", record.clip, target, error)
            ledger.update(record.clip, error=f"saving the result failed: {error}")
            failed.append(record.clip)
            return
        ledger.update(record.clip, state=states.SAVED, output_path=str(target))

    with ThreadPoolExecutor(max_workers=max(1, concurrency), thread_name_prefix="jogg-save") as pool:
        for index, _ in enumerate(pool.map(one, todo), start=1):
            if index % FLUSH_EVERY == 0:
                ledger.flush()
    ledger.flush()
    return failed
