"""LipSyncOperator: creates a Jogg lip-sync task; by default returns its id at once."""

from __future__ import annotations

from functools import cached_property
from typing import TYPE_CHECKING, Any

from airflow.sdk import BaseOperator

from airflow_provider_jogg.completion import LipSyncCompletionMixin
from airflow_provider_jogg.connection import DEFAULT_CONN_ID
from airflow_provider_jogg.exceptions import JoggCreateUncertainError, JoggTaskNotFoundError
from airflow_provider_jogg.links import JoggResultLink
from airflow_provider_jogg.media_inputs import DigestingFile, MediaFile, inspect_file, is_http_url, sha256_of
from airflow_provider_jogg.validation import (
    validate_media_url,
    validate_playback_type,
    validate_task_id,
    validate_wait_seconds,
)

#: the task state store key holding ``{"task_id", "video_url", "audio_url", "playback_type"}``;
#: renaming it would break retries of tasks in flight
STATE_KEY = "jogg_lip_sync_task"
#: the task state store key holding uploaded inputs: ``{role: {"source", "size", "sha256", "asset_url"}}``
#: (``sha256``: of the bytes uploaded; ``size`` and ``sha256`` are ``None`` for a re-hosted URL)
INPUTS_STATE_KEY = "jogg_lip_sync_inputs"
#: XCom keys pushed besides ``return_value``
TASK_ID_XCOM_KEY = "jogg_task_id"
INPUTS_XCOM_KEY = "jogg_inputs"
#: default ``timeout`` when the operator waits
DEFAULT_WAIT_TIMEOUT = 3 * 60 * 60

if TYPE_CHECKING:
    import datetime
    from collections.abc import Sequence

    from airflow.sdk import Context

    from airflow_provider_jogg.hooks.jogg import JoggHook


class LipSyncOperator(LipSyncCompletionMixin, BaseOperator):
    """
    Creates a Jogg lip-sync task: the video is re-timed so its lips follow the audio.

    Returns (XCom ``return_value``) the Jogg task id, or with ``wait_for_completion=True`` the same
    result dict as :class:`~airflow_provider_jogg.sensors.lip_sync.LipSyncSensor`. Also pushes XCom
    ``jogg_task_id`` (the id) and ``jogg_inputs`` (the URLs Jogg was given, after any upload).

    Inputs may be http(s) URLs (given to Jogg as is), local paths, ``file://``/``s3://``/``gs://``
    URIs or ``ObjectStoragePath`` objects: files are checked before any request (exists, not empty,
    a video/audio type Jogg takes), then uploaded with Jogg's asset flow, streamed.

    .. note::
        Creating a task bills credits and Jogg has no idempotency key. The create request is sent
        again only when it surely created nothing (HTTP 429, or no connection could be made). Any
        other failure after the request was sent fails the task **without Airflow retries**
        (:class:`~airflow_provider_jogg.exceptions.JoggCreateUncertainError`), saying a Jogg task may
        exist.

    .. note::
        Retries after a crash (worker lost, node gone, a failure after the create request): on
        Airflow 3.3+ the Jogg task id is written to the task state store right after Jogg answers,
        before anything else can fail. A retry of the same task instance reads it back and, if that
        Jogg task is still ``pending``/``processing`` or ``success`` and was created for the same
        inputs, uses it again without a create request. If it ``failed``, is unknown to Jogg, or the
        inputs changed, a new task is created. Uploaded files are remembered the same way, by location,
        size and SHA-256 of their content, and not uploaded again while all three match (a retry reads
        such a file once to hash it). If the id cannot be written to the store, the task fails with
        :class:`~airflow_provider_jogg.exceptions.JoggCreateUncertainError` naming the id, without
        Airflow retries. On Airflow < 3.3 there is no task state store: a retry creates a new task.

    :param video_url: the source video (templated): http(s) URL, local path, URI or ``ObjectStoragePath``
    :param audio_url: the target audio (templated), same forms
    :param playback_type: what to do when the video is shorter than the audio (templated):
        ``normal`` (play once, default), ``normal_reverse`` (alternate forward and reverse),
        ``normal_reverse_by_audio`` (extend to the audio's length)
    :param jogg_conn_id: the Airflow connection id (templated)
    :param reattach: on Airflow 3.3+, let a retry reuse the Jogg task an earlier try created
        (default ``True``)
    :param upload_public_urls: also download http(s) inputs and upload them as Jogg assets
        (Jogg recommends it: third-party URLs can fail mid-task); default ``False``
    :param wait_for_completion: wait for the result in this task (default ``False``: pair the
        operator with a ``LipSyncSensor``)
    :param deferrable: when waiting, wait in the triggerer (default ``True``)
    :param poke_interval: when waiting, seconds between status polls (above 0; a ``timedelta`` too)
    :param timeout: when waiting, seconds before :class:`JoggWaitTimeoutError` (above 0; retryable: a
        retry reattaches to the same Jogg task)
    :param output_path: when waiting, where to save the result video (templated; path, URI or
        ``ObjectStoragePath``)
    :param cover_output_path: when waiting, where to save the cover image (templated)
    """

    template_fields: Sequence[str] = (
        "video_url",
        "audio_url",
        "playback_type",
        "jogg_conn_id",
        "output_path",
        "cover_output_path",
    )
    operator_extra_links = (JoggResultLink(),)
    ui_color = "#d6ecfa"

    def __init__(
        self,
        *,
        video_url: Any,
        audio_url: Any,
        playback_type: str = "normal",
        jogg_conn_id: str = DEFAULT_CONN_ID,
        reattach: bool = True,
        upload_public_urls: bool = False,
        wait_for_completion: bool = False,
        deferrable: bool = True,
        poke_interval: float | datetime.timedelta = 10,
        timeout: float | datetime.timedelta = DEFAULT_WAIT_TIMEOUT,
        output_path: Any = None,
        cover_output_path: Any = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        # assigned unchanged: validation runs in execute(), after Jinja rendering
        self.video_url = video_url
        self.audio_url = audio_url
        self.playback_type = playback_type
        self.jogg_conn_id = jogg_conn_id
        self.reattach = reattach
        self.upload_public_urls = upload_public_urls
        self.wait_for_completion = wait_for_completion
        self.deferrable = deferrable
        # not templated: checked now, so a bad value is a DAG parse error
        self.poke_interval = validate_wait_seconds(poke_interval, "poke_interval")
        self.timeout = validate_wait_seconds(timeout, "timeout")
        self.output_path = output_path
        self.cover_output_path = cover_output_path

    @cached_property
    def hook(self) -> JoggHook:
        # imported here, not at the top: the hook brings requests and aiohttp, which a DAG file
        # that only builds this operator (parsed all day by the dag-processor) has no use for
        from airflow_provider_jogg.hooks.jogg import JoggHook

        return JoggHook(jogg_conn_id=self.jogg_conn_id)

    def execute(self, context: Context) -> Any:
        self._reset_result_link(context)
        # every input checked before the first request
        playback_type = validate_playback_type(self.playback_type)
        files = {role: self._check_input(role, value) for role, value in self._inputs().items()}
        store = context.get("task_state_store") if self.reattach else None
        if self.reattach and store is None:
            self.log.info("No task state store (Airflow < 3.3): a retry of this task creates a new Jogg task")

        urls = self._upload_inputs(files, store)
        ti = context.get("ti")
        if ti is not None:
            ti.xcom_push(key=INPUTS_XCOM_KEY, value=urls)
        inputs = {**urls, "playback_type": playback_type}
        task_id = self._task_to_reattach(store.get(STATE_KEY), inputs) if store is not None else None
        reused = task_id is not None
        if task_id is None:
            task_id = self.hook.create_lip_sync_video(**inputs)
            # logged before anything else can fail: the id of a billed task must never be lost
            self.log.info("Created Jogg lip-sync task %s (playback_type=%s)", task_id, playback_type)
            if store is not None:
                self._save_created(store, ti, task_id, inputs)
        self._created_task_id = task_id
        if ti is not None:
            ti.xcom_push(key=TASK_ID_XCOM_KEY, value=task_id)
        if not self.wait_for_completion:
            return task_id
        if not self.deferrable:
            return self._wait_in_worker(context, task_id)
        if reused:  # an earlier try's task may have finished already
            return self._check_or_defer(context, task_id)
        self._defer_to_trigger(task_id)  # a task created a moment ago is not finished: no check
        return None  # pragma: no cover - defer raises

    _created_task_id: str | None = None

    def get_openlineage_facets_on_complete(self, task_instance: Any) -> Any:
        """OpenLineage: the video and audio inputs, the Jogg task id, and the result when waiting."""
        return self._lineage(
            [str(v) for v in self._inputs().values()],
            self._created_task_id,
            playback_type=str(self.playback_type),
        )

    def _inputs(self) -> dict[str, Any]:
        return {"video_url": self.video_url, "audio_url": self.audio_url}

    def _check_input(self, role: str, value: Any) -> str | MediaFile:
        """An http(s) URL (validated) or a checked file to upload; raises before any request."""
        if is_http_url(value):
            return validate_media_url(value, role)
        return inspect_file(value, role)

    def _save_created(self, store: Any, ti: Any, task_id: str, inputs: dict[str, str]) -> None:
        """Save a new Jogg task for a retry to reattach to; if that fails, fail with no retry."""
        try:
            store.set(STATE_KEY, {"task_id": task_id, **inputs})
        except Exception as error:
            # an api-server blip, say; a retry would not find this task and would create (and bill)
            # a second one, so fail for good, and leave the id where the user looks
            if ti is not None:
                try:
                    ti.xcom_push(key=TASK_ID_XCOM_KEY, value=task_id)
                except Exception:
                    self.log.warning("Could not push Jogg task id %s to XCom either", task_id, exc_info=True)
            raise JoggCreateUncertainError(
                f"Jogg lip-sync task {task_id} was created (and billed), but saving its id to the task "
                f"state store failed ({type(error).__name__}: {error}), so a retry could not reattach "
                "to it and would create a second task: failing without Airflow retries. Wait for it "
                f"with LipSyncSensor(jogg_task_id={task_id!r}), or clear this task to create a new one.",
                error,
            ) from error

    def _upload_inputs(self, files: dict[str, str | MediaFile], store: Any) -> dict[str, str]:
        """The URLs to give Jogg: uploads what must be uploaded, reusing an earlier try's uploads."""
        done: dict[str, Any] = dict(store.get(INPUTS_STATE_KEY) or {}) if store is not None else {}
        urls: dict[str, str] = {}
        for role, item in files.items():
            if isinstance(item, str) and not self.upload_public_urls:
                urls[role] = item
                continue
            earlier = done.get(role)
            reused = self._earlier_upload(item, earlier) if isinstance(earlier, dict) else None
            if reused is not None:
                urls[role] = reused
                continue
            if isinstance(item, str):
                urls[role] = self.hook.rehost_url(item, role=role)
                done[role] = {"source": item, "size": None, "sha256": None, "asset_url": urls[role]}
            else:
                # hashed while it is uploaded: the digest is of the bytes Jogg got, for one read
                digesting = DigestingFile(item)
                urls[role] = self.hook.upload_media(digesting.media)
                done[role] = {
                    "source": item.location,
                    "size": item.size,
                    "sha256": digesting.sha256,
                    "asset_url": urls[role],
                }
            if store is not None:
                # if this fails, the try fails before any create: a retry uploads again, bills nothing
                store.set(INPUTS_STATE_KEY, done)
        return urls

    def _earlier_upload(self, item: str | MediaFile, earlier: dict[str, Any]) -> str | None:
        """The asset URL of an earlier try's upload of the same content, if there is one."""
        asset_url = earlier.get("asset_url")
        source = item if isinstance(item, str) else item.location
        if not isinstance(asset_url, str) or earlier.get("source") != source:
            return None
        if isinstance(item, MediaFile):
            # a file rewritten in place may keep its size: only its content tells
            if earlier.get("size") != item.size:
                return None
            if not isinstance(earlier.get("sha256"), str):
                self.log.info("The earlier upload of %s has no content digest; uploading it again", source)
                return None
            if sha256_of(item) != earlier["sha256"]:
                self.log.info(
                    "%s changed since an earlier try uploaded it (same size, other content); "
                    "uploading it again",
                    source,
                )
                return None
        # a re-hosted http(s) URL is taken as the same input while the URL is the same, as when the
        # URL is given to Jogg directly
        self.log.info("Reusing the upload of %s from an earlier try: %s", source, asset_url)
        return asset_url

    def _task_to_reattach(self, previous: Any, inputs: dict[str, str]) -> str | None:
        """The Jogg task an earlier try created, if a retry should use it instead of creating one."""
        if not isinstance(previous, dict) or not isinstance(previous.get("task_id"), str):
            return None
        task_id = previous["task_id"]
        if any(previous.get(k) != v for k, v in inputs.items()):
            self.log.info(
                "Jogg task %s was created by an earlier try for other inputs; creating a new one", task_id
            )
            return None
        try:
            result = self.hook.get_lip_sync_video(task_id)
        except JoggTaskNotFoundError:
            self.log.warning("Jogg no longer knows task %s from an earlier try; creating a new one", task_id)
            return None
        if result.failed:
            self.log.warning(
                "Jogg task %s from an earlier try failed (%s); creating a new one",
                task_id,
                result.error_message,
            )
            return None
        self.log.info(
            "Reattaching to Jogg task %s created by an earlier try (status %s)", task_id, result.status
        )
        return task_id

    def _jogg_task_id_for_wait(self, context: Context) -> str:
        ti = context["ti"]
        return validate_task_id(
            ti.xcom_pull(task_ids=self.task_id, key=TASK_ID_XCOM_KEY, map_indexes=ti.map_index)
        )
