"""LipSyncOperator: creates a Jogg lip-sync task and returns its id at once."""

from __future__ import annotations

from functools import cached_property
from typing import TYPE_CHECKING, Any

from airflow.sdk import BaseOperator

from airflow_provider_jogg.hooks.jogg import JoggHook
from airflow_provider_jogg.policy import DEFAULT_CONN_ID, validate_media_url, validate_playback_type

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
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        # assigned unchanged: validation runs in execute(), after Jinja rendering
        self.video_url = video_url
        self.audio_url = audio_url
        self.playback_type = playback_type
        self.jogg_conn_id = jogg_conn_id

    @cached_property
    def hook(self) -> JoggHook:
        return JoggHook(jogg_conn_id=self.jogg_conn_id)

    def execute(self, context: Context) -> str:
        # all input checked before the first request
        video_url = validate_media_url(self.video_url, "video_url")
        audio_url = validate_media_url(self.audio_url, "audio_url")
        playback_type = validate_playback_type(self.playback_type)
        task_id = self.hook.create_lip_sync_video(video_url, audio_url, playback_type)
        self.log.info("Created Jogg lip-sync task %s (playback_type=%s)", task_id, playback_type)
        return task_id
