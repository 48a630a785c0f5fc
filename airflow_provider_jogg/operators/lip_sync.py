"""LipSyncOperator: creates a Jogg lip-sync task and returns its id at once."""

from __future__ import annotations

from functools import cached_property
from typing import TYPE_CHECKING, Any

from airflow.sdk import BaseOperator

from airflow_provider_jogg.exceptions import JoggTaskNotFoundError
from airflow_provider_jogg.hooks.jogg import JoggHook
from airflow_provider_jogg.policy import DEFAULT_CONN_ID, validate_media_url, validate_playback_type

#: the task state store key holding ``{"task_id", "video_url", "audio_url", "playback_type"}``;
#: renaming it would break retries of tasks in flight
STATE_KEY = "jogg_lip_sync_task"

if TYPE_CHECKING:
    from collections.abc import Sequence

    from airflow.sdk import Context


class LipSyncOperator(BaseOperator):
    """
    Creates a Jogg lip-sync task: the video is re-timed so its lips follow the audio.

    Returns (XCom ``return_value``) the Jogg task id; it never waits for the result (use
    :class:`~airflow_provider_jogg.sensors.lip_sync.LipSyncSensor` downstream).

    .. note::
        Creating a task bills credits and Jogg has no idempotency key. The create request is sent
        again only when it surely created nothing (HTTP 429, or no connection could be made). Any
        other failure after the request was sent fails the task **without Airflow retries**
        (:class:`~airflow_provider_jogg.exceptions.JoggCreateUncertainError`), saying a Jogg task may
        exist. A later, explicit re-run does create a new task.

    :param video_url: http(s) URL of the source video (templated)
    :param audio_url: http(s) URL of the target audio (templated)
    :param playback_type: what to do when the video is shorter than the audio (templated):
        ``normal`` (play once, default), ``normal_reverse`` (alternate forward and reverse),
        ``normal_reverse_by_audio`` (extend to the audio's length)
    :param jogg_conn_id: the Airflow connection id (templated)
    :param reattach: on Airflow 3.3+, remember the created task id in Airflow's task state store so
        that a retry of this Airflow task reuses the Jogg task instead of creating (and billing) a
        second one (default ``True``). See the note above.

    .. note::
        Retries after a crash (worker lost, node gone, a failure after the create request): on
        Airflow 3.3+ the Jogg task id is written to the task state store right after Jogg answers,
        before anything else can fail. A retry of the same task instance reads it back and, if that
        Jogg task is still ``pending``/``processing`` or ``success`` and was created for the same
        inputs, returns its id again without a create request. If it ``failed``, is unknown to Jogg,
        or the inputs changed, a new task is created. On Airflow < 3.3 there is no task state store:
        a retry always creates a new task.
    """

    template_fields: Sequence[str] = ("video_url", "audio_url", "playback_type", "jogg_conn_id")
    ui_color = "#d6ecfa"

    def __init__(
        self,
        *,
        video_url: str,
        audio_url: str,
        playback_type: str = "normal",
        jogg_conn_id: str = DEFAULT_CONN_ID,
        reattach: bool = True,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        # assigned unchanged: validation runs in execute(), after Jinja rendering
        self.video_url = video_url
        self.audio_url = audio_url
        self.playback_type = playback_type
        self.jogg_conn_id = jogg_conn_id
        self.reattach = reattach

    @cached_property
    def hook(self) -> JoggHook:
        return JoggHook(jogg_conn_id=self.jogg_conn_id)

    def execute(self, context: Context) -> str:
        # all input checked before the first request
        inputs = {
            "video_url": validate_media_url(self.video_url, "video_url"),
            "audio_url": validate_media_url(self.audio_url, "audio_url"),
            "playback_type": validate_playback_type(self.playback_type),
        }
        store = context.get("task_state_store") if self.reattach else None
        if self.reattach and store is None:
            self.log.info("No task state store (Airflow < 3.3): a retry of this task creates a new Jogg task")
        if store is not None:
            previous = store.get(STATE_KEY)
            reused = self._reusable(previous, inputs)
            if reused is not None:
                return reused
        task_id = self.hook.create_lip_sync_video(**inputs)
        if store is not None:
            # persist first: from here on, a crash must not lead to a second billed task
            store.set(STATE_KEY, {"task_id": task_id, **inputs})
        self.log.info("Created Jogg lip-sync task %s (playback_type=%s)", task_id, inputs["playback_type"])
        return task_id

    def _reusable(self, previous: Any, inputs: dict[str, str]) -> str | None:
        """The Jogg task an earlier try created, if a retry should wait on it instead of creating one."""
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
