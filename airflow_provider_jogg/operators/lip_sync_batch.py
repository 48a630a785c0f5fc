"""LipSyncBatchOperator: thousands of clips in one task, one trigger, a manifest in and a manifest out."""

from __future__ import annotations

import datetime
import hashlib
import math
import time
from functools import cached_property
from typing import TYPE_CHECKING, Any

from airflow.sdk import BaseOperator

from airflow_provider_jogg import exceptions as exc
from airflow_provider_jogg.connection import DEFAULT_CONN_ID
from airflow_provider_jogg.validation import validate_wait_seconds

if TYPE_CHECKING:
    from collections.abc import Sequence

    from airflow.sdk import Context

    from airflow_provider_jogg.batch.ledger import Ledger
    from airflow_provider_jogg.batch.manifest import ClipRow
    from airflow_provider_jogg.hooks.jogg import JoggHook

#: how long the whole batch may wait for Jogg by default
DEFAULT_BATCH_TIMEOUT = 24 * 60 * 60


class LipSyncBatchOperator(BaseOperator):
    """
    Lip-syncs every clip of a manifest in one task: creates the Jogg tasks under the account's rate
    limit, waits for all of them with one trigger, saves the results and writes a result manifest.

    Every row is checked before any request. Each create is recorded in the batch's ledger (a
    folder beside ``manifest_path``, and the task state store on Airflow 3.3+) before its request
    goes out, so a retry after a crash creates nothing twice: a clip whose create may or may not
    have made a task is reported ``uncertain`` and never sent again. A retry waits again for the
    clips still running, re-creates only the clips whose Jogg task failed, and downloads only the
    results not saved yet.

    Returns (XCom) a summary: ``clips``, ``counts`` by outcome, ``succeeded``, ``failed``,
    ``duration_seconds``, ``credits`` and ``manifest`` (where the result manifest is), never the rows.

    :param clips: the rows (templated): a list of dicts (``clip``, ``video``, ``audio``, optional
        ``playback_type``, ``output_path``), or a CSV/JSON Lines manifest (path, URI or
        ``ObjectStoragePath``); see :func:`airflow_provider_jogg.batch.manifest.read_clips`
    :param manifest_path: where the result manifest is written (templated; ``.csv`` or ``.jsonl``; path,
        URI or ``ObjectStoragePath``); the ledger folder ``<manifest_path>.ledger`` sits beside it and
        must be readable by the triggerer when ``deferrable``
    :param output_dir: save each result as ``<output_dir>/<clip>.mp4`` (templated); a row's own
        ``output_path`` wins; ``None``: keep the result URLs only
    :param playback_type: the default for rows that give none (templated)
    :param jogg_conn_id: the Airflow connection id (templated)
    :param max_failed: clips that may fail (Jogg failed, refused, uncertain, not created, not finished,
        not saved) with the task still succeeding (default 0; templated, e.g. ``"{{ params.allowed }}"``)
    :param max_failed_ratio: the same as a fraction of the clips (``0.01``: 1 %); the larger allowance
        wins (templated)
    :param max_credits: refuse the batch before any create when its estimated credits exceed this
        (templated)
    :param check_quota: refuse the batch before any create when its estimate exceeds the account's
        remaining quota (default ``True``)
    :param deferrable: wait in the triggerer (default ``True``)
    :param poke_interval: seconds between two polls of one clip (above 0; a ``timedelta`` too)
    :param timeout: seconds the batch may wait for Jogg (above 0); clips still running then count as
        failed, and a retry waits for them again
    :param progress_interval: seconds between two progress lines while waiting
    :param create_concurrency: creates (and uploads) in flight at once, under the account's rate limit
    :param download_concurrency: results downloaded at once
    """

    template_fields: Sequence[str] = (
        "clips",
        "manifest_path",
        "output_dir",
        "playback_type",
        "jogg_conn_id",
        "max_failed",
        "max_failed_ratio",
        "max_credits",
    )
    ui_color = "#d6ecfa"

    def __init__(
        self,
        *,
        clips: Any,
        manifest_path: Any,
        output_dir: Any = None,
        playback_type: str = "normal",
        jogg_conn_id: str = DEFAULT_CONN_ID,
        max_failed: int = 0,
        max_failed_ratio: float | None = None,
        max_credits: float | None = None,
        check_quota: bool = True,
        deferrable: bool = True,
        poke_interval: float | datetime.timedelta = 30,
        timeout: float | datetime.timedelta = DEFAULT_BATCH_TIMEOUT,
        progress_interval: float | datetime.timedelta = 60,
        create_concurrency: int = 8,
        download_concurrency: int = 4,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.clips = clips
        self.manifest_path = manifest_path
        self.output_dir = output_dir
        self.playback_type = playback_type
        self.jogg_conn_id = jogg_conn_id
        # checked now, so a bad value is a DAG parse error; a template is checked once rendered
        self.max_failed, self.max_failed_ratio, self.max_credits = _checked_limits(
            max_failed, max_failed_ratio, max_credits, rendered=False
        )
        for name, value in (
            ("create_concurrency", create_concurrency),
            ("download_concurrency", download_concurrency),
        ):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise exc.JoggConfigError(f"{name} must be a whole number >= 1, got {value!r}.")
        self.check_quota = check_quota
        self.deferrable = deferrable
        self.poke_interval = validate_wait_seconds(poke_interval, "poke_interval")
        self.timeout = validate_wait_seconds(timeout, "timeout")
        self.progress_interval = validate_wait_seconds(progress_interval, "progress_interval")
        self.create_concurrency = create_concurrency
        self.download_concurrency = download_concurrency

    @cached_property
    def hook(self) -> JoggHook:
        # imported here: the hook brings requests and aiohttp, which a DAG file has no use for
        from airflow_provider_jogg.hooks.jogg import JoggHook

        return JoggHook(jogg_conn_id=self.jogg_conn_id)

    # --- the try ---------------------------------------------------------------------------------------
    def execute(self, context: Context) -> Any:
        from airflow_provider_jogg.batch import ledger as states
        from airflow_provider_jogg.batch.creating import CreatePhase

        self._render_limits()
        rows = self._rows()
        targets = self._targets(rows)
        inputs = self._checked_inputs(rows)  # every row checked before the first request
        ledger = self._ledger(context, rows)
        loaded = ledger.load()
        if loaded:
            self.log.info(
                "Batch ledger %s: %d of %d clips have a record of an earlier try",
                self._ledger_folder(),
                loaded,
                len(rows),
            )
        self._carry_over(ledger)
        work = [(r.clip, inputs[r.clip]) for r in rows if ledger.records[r.clip].state == states.NEW]
        if work:
            self._check_budget([r for r in rows if ledger.records[r.clip].state == states.NEW])
            self.log.info("Creating %d Jogg tasks (%d at a time)", len(work), self.create_concurrency)
            config = self.hook.config  # resolved once, before the threads share the hook
            self.log.info(
                "Jogg account: %s, at most %g requests/s", config.base_url, config.max_requests_per_second
            )
            phase = CreatePhase(
                upload=self.hook.upload_media,
                create=lambda video, audio, playback: self.hook.create_lip_sync_video(video, audio, playback),
                ledger=ledger,
                concurrency=self.create_concurrency,
            )
            step = max(len(work) // 10, 1)

            def progress(done: int) -> None:
                if done % step < self.create_concurrency or done == len(work):  # about every tenth
                    self._log_counts(ledger, "created")

            phase.run(work, progress=progress)
        ledger.flush()
        if not any(ledger.in_state(*states.WAITING)):
            return self._finish(context, ledger, targets, timed_out=False)
        if not self.deferrable:
            return self._wait_in_worker(context, ledger, targets)
        ledger.flush(all_pages=True)  # the triggerer reads every page, and knows no clip list
        self._defer(ledger)
        return None  # pragma: no cover - defer raises

    def execute_complete(self, context: Context, event: Any = None) -> Any:
        """Resume from the trigger: the results are in the ledger, the event only says how it ended."""
        if not isinstance(event, dict) or event.get("status") not in ("done", "timeout", "error"):
            raise exc.JoggEventError(f"Jogg batch trigger event has an unexpected shape: {str(event)[:200]}")
        if event["status"] == "error":
            raise exc.JoggEventError(f"The Jogg batch's wait failed: {event.get('message')}")
        self._render_limits()
        rows = self._rows()
        ledger = self._ledger(context, rows)
        ledger.load()
        return self._finish(context, ledger, self._targets(rows), timed_out=event["status"] == "timeout")

    def _render_limits(self) -> None:
        """The failure allowances and the budget as rendered: numbers (a template gives text)."""
        self.max_failed, self.max_failed_ratio, self.max_credits = _checked_limits(
            self.max_failed, self.max_failed_ratio, self.max_credits, rendered=True
        )

    # --- the rows --------------------------------------------------------------------------------------
    def _rows(self) -> list[ClipRow]:
        from airflow_provider_jogg.batch.manifest import read_clips

        return read_clips(self.clips, default_playback_type=self.playback_type)

    def _targets(self, rows: list[ClipRow]) -> dict[str, Any]:
        from airflow_provider_jogg.batch.inputs import output_targets

        return output_targets(rows, self.output_dir)

    def _checked_inputs(self, rows: list[ClipRow]) -> dict[str, dict[str, Any]]:
        from airflow_provider_jogg.batch.inputs import check_inputs

        return check_inputs(rows, unit="row" if isinstance(self.clips, (list, tuple)) else "line")

    # --- the ledger ------------------------------------------------------------------------------------
    def _ledger_folder(self) -> Any:
        from airflow_provider_jogg.media_inputs import to_path

        manifest = to_path(self.manifest_path, "manifest_path")
        return manifest.parent / f"{manifest.name}.ledger"

    def _ledger(self, context: Context, rows: list[ClipRow]) -> Ledger:
        from airflow_provider_jogg.batch.ledger import FilePages, Ledger, PageStore, StatePages, page_size_for
        from airflow_provider_jogg.batch.manifest import manifest_fingerprint

        stores: list[PageStore] = []
        store = context.get("task_state_store")
        if store is not None:
            stores.append(StatePages(store))
        stores.append(FilePages(self._ledger_folder()))
        # a batch is this task instance's run of these rows: its retries and clears resume it, while
        # another DAG run (or another task) with the same manifest_path starts afresh
        ti = context.get("ti")
        run = "/".join(str(getattr(ti, name, "")) for name in ("dag_id", "run_id", "task_id", "map_index"))
        fingerprint = hashlib.sha256(f"{run}\n{manifest_fingerprint(rows)}".encode()).hexdigest()[:16]
        page_size = page_size_for((r.clip, r.video, r.audio, r.output_path) for r in rows)
        return Ledger([r.clip for r in rows], stores, fingerprint, page_size)

    def _carry_over(self, ledger: Ledger) -> None:
        """Earlier tries: announced creates become uncertain, failed and skipped clips go again."""
        from airflow_provider_jogg.batch import ledger as states

        for record in list(ledger.in_state(states.SENDING)):
            ledger.update(
                record.clip,
                state=states.UNCERTAIN,
                error="an earlier try was lost while creating it: a Jogg task may exist (not sent again)",
            )
        again = list(ledger.in_state(states.FAILED, states.SKIPPED))
        for record in again:
            ledger.update(
                record.clip, state=states.NEW, task_id=None, status=None, error=None, result_url=None
            )
        if again:
            self.log.info(
                "%d clips failed or were not created in an earlier try: creating them again", len(again)
            )

    # --- budget ----------------------------------------------------------------------------------------
    def _check_budget(self, rows: list[ClipRow]) -> None:
        if self.max_credits is None and not self.check_quota:
            return
        from airflow_provider_jogg.batch.budget import check_budget, estimate_batch

        estimate = estimate_batch(rows)
        quota = self.hook.get_remaining_quota() if self.check_quota else None
        self.log.info(
            "Credit estimate: about %s credits for %d clips (%d more not measurable); remaining quota %s",
            estimate.credits,
            estimate.known,
            estimate.unknown,
            quota,
        )
        check_budget(estimate, max_credits=self.max_credits, remaining_quota=quota)

    # --- waiting ---------------------------------------------------------------------------------------
    def _defer(self, ledger: Ledger) -> None:
        from airflow_provider_jogg.completion import DEFERRAL_GRACE, min_deferral_seconds
        from airflow_provider_jogg.triggers.lip_sync_batch import LipSyncBatchTrigger

        now = time.time()
        not_before = now + min_deferral_seconds()
        end_time = now + self.timeout
        self.defer(
            trigger=LipSyncBatchTrigger(
                ledger_location=str(self._ledger_folder()),
                fingerprint=ledger.fingerprint,
                jogg_conn_id=self.jogg_conn_id,
                poll_interval=self.poke_interval,
                end_time=end_time,
                not_before=not_before,
                progress_interval=self.progress_interval,
            ),
            method_name="execute_complete",
            timeout=datetime.timedelta(seconds=max(end_time, not_before) - now + DEFERRAL_GRACE),
        )

    def _wait_in_worker(self, context: Context, ledger: Ledger, targets: dict[str, Any]) -> Any:
        """``deferrable=False``: poll every running clip from the worker, a round per ``poke_interval``."""
        from airflow_provider_jogg.batch import ledger as states

        deadline = time.time() + self.timeout
        while True:
            for record in list(ledger.in_state(*states.WAITING)):
                try:
                    result = self.hook.get_lip_sync_video(record.task_id or "")
                except exc.JoggTransientError as error:
                    self.log.warning(
                        "Clip %r: status poll failed after retries; waiting on: %s", record.clip, error
                    )
                    continue
                except exc.JoggFatalAPIError as error:
                    ledger.record_wait_error(record.clip, error)
                    continue
                if result.is_terminal:
                    ledger.record_result(record.clip, result)
            ledger.flush()
            self._log_counts(ledger, "waiting")
            if not any(ledger.in_state(*states.WAITING)):
                return self._finish(context, ledger, targets, timed_out=False)
            if time.time() >= deadline:
                return self._finish(context, ledger, targets, timed_out=True)
            time.sleep(self.poke_interval)

    # --- finishing -------------------------------------------------------------------------------------
    def _finish(
        self, context: Context, ledger: Ledger, targets: dict[str, Any], *, timed_out: bool
    ) -> dict[str, Any]:
        from airflow_provider_jogg.batch import report
        from airflow_provider_jogg.batch.saving import save_results
        from airflow_provider_jogg.media_inputs import to_path

        not_saved = save_results(ledger, targets, self.hook.download, concurrency=self.download_concurrency)
        manifest = report.write_manifest(ledger, to_path(self.manifest_path, "manifest_path"))
        summary = report.summary(ledger, manifest)
        summary["not_saved"] = len(not_saved)
        self.log.info(
            "Jogg batch: %d of %d clips succeeded (%s), %s s of video, about %s credits; manifest: %s",
            summary["succeeded"],
            summary["clips"],
            ", ".join(f"{n} {outcome}" for outcome, n in summary["counts"].items()),
            summary["duration_seconds"],
            summary["credits"],
            manifest,
        )
        self._emit_asset_extra(context, summary)
        failures = summary["failed"] + len(not_saved)
        allowed = max(self.max_failed, math.floor((self.max_failed_ratio or 0.0) * summary["clips"]))
        if failures > allowed:
            cause = " (the batch's timeout passed)" if timed_out else ""
            raise exc.JoggBatchFailedError(
                f"{failures} of {summary['clips']} clips of the Jogg batch did not succeed{cause}, more "
                f"than the {allowed} allowed (max_failed / max_failed_ratio). Every clip's outcome is in "
                f"the manifest {manifest}; a retry waits for the clips still running and re-creates the "
                "ones whose Jogg task failed, never an uncertain one.",
                summary,
            )
        return summary

    def _emit_asset_extra(self, context: Context, summary: dict[str, Any]) -> None:
        from airflow.sdk import Asset

        events = context.get("outlet_events")
        assets = [o for o in (self.outlets or []) if isinstance(o, Asset)]
        if events is None or not assets:
            return
        extra = {k: summary[k] for k in ("manifest", "clips", "succeeded", "failed", "credits")}
        for asset in assets:
            events[asset].extra.update(extra)

    def _log_counts(self, ledger: Ledger, phase: str) -> None:
        counts = ledger.counts()
        self.log.info(
            "Jogg batch (%s): %s", phase, ", ".join(f"{n} {state}" for state, n in sorted(counts.items()))
        )


def _checked_limits(
    max_failed: Any, max_failed_ratio: Any, max_credits: Any, *, rendered: bool
) -> tuple[Any, Any, Any]:
    """
    ``max_failed``, ``max_failed_ratio`` and ``max_credits`` checked and made numbers.

    Each may be given as text (a rendered template, ``"5"``; ``""`` or ``"None"`` for an optional
    one); before rendering (``rendered=False``) a value holding a Jinja template is left as it is.
    """

    def number(value: Any, whole: bool) -> Any:
        if not isinstance(value, str):
            return value
        text = value.strip()
        if text in ("", "None"):
            return None
        try:
            return int(text) if whole else float(text)
        except ValueError:
            return value  # reported below, as given

    def later(value: Any) -> bool:
        return not rendered and isinstance(value, str) and ("{{" in value or "{%" in value)

    def is_number(value: Any) -> bool:
        return isinstance(value, (int, float)) and not isinstance(value, bool)

    if not later(max_failed):
        max_failed = number(max_failed, True)
        if not (is_number(max_failed) and isinstance(max_failed, int) and max_failed >= 0):
            raise exc.JoggConfigError(f"max_failed must be a whole number >= 0, got {max_failed!r}.")
    if not later(max_failed_ratio):
        max_failed_ratio = number(max_failed_ratio, False)
        if max_failed_ratio is not None and not (is_number(max_failed_ratio) and 0 <= max_failed_ratio <= 1):
            raise exc.JoggConfigError(f"max_failed_ratio must be between 0 and 1, got {max_failed_ratio!r}.")
    if not later(max_credits):
        max_credits = number(max_credits, False)
        if max_credits is not None and not (is_number(max_credits) and max_credits >= 0):
            raise exc.JoggConfigError(f"max_credits must be a number >= 0, got {max_credits!r}.")
    return max_failed, max_failed_ratio, max_credits
