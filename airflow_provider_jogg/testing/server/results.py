"""What a successful task of the fake server serves: its result video, its cover and their duration.

With an ffmpeg binary the result is the task's video with its audio muxed in (see
:mod:`airflow_provider_jogg.testing.media`): an asset uploaded to this server is used as it is, any
other URL is replaced by a shipped sample (the machine is offline). It is built once per task, on
the first status answer or download that needs it. Without ffmpeg the shipped ``sample.mp4`` and
``sample_cover.jpg`` are served and the duration is the server's ``duration_seconds``.

Tasks with the same inputs share one build (and every task served the samples shares their bytes),
so thousands of tasks cost one result in memory. With ``tag_results`` each ``result.mp4`` answer
carries its task and clip (:func:`airflow_provider_jogg.testing.media.tag_result`).
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote, urlsplit

from airflow_provider_jogg.testing import media
from airflow_provider_jogg.testing.server.responses import NOT_FOUND, Response

if TYPE_CHECKING:
    from pathlib import Path

    from airflow_provider_jogg.testing.server import FakeJoggServer
    from airflow_provider_jogg.testing.server.tasks import Task

__all__ = ["file_response", "media_for", "result_data", "result_tag_of"]

# The server's logger, as before the split: users filter the fake's warnings by this name.
log = logging.getLogger("airflow_provider_jogg.testing.server")


def result_data(fake: FakeJoggServer, task: Task) -> dict[str, Any]:
    """The ``data`` of a successful task's status answer: result and cover URLs, duration."""
    # With ffmpeg the duration is the real result's: build it now if it is not built yet
    # (once per task; later polls read the stored value).
    built = media_for(fake, task) if fake.ffmpeg is not None else task.media
    duration = fake.duration_seconds
    if built is not None and built.duration is not None:
        duration = built.duration
    return {
        "result_url": f"{fake.root_url}/files/{task.task_id}/result.mp4",
        "cover_url": f"{fake.root_url}/files/{task.task_id}/cover.jpg",
        "duration_seconds": duration,
    }


def file_response(fake: FakeJoggServer, path: str) -> Response:
    """``GET /files/{task_id}/result.mp4`` or ``/cover.jpg`` of a successful task."""
    task_id, sep, name = path[len("/files/") :].partition("/")
    if not sep or name not in ("result.mp4", "cover.jpg"):
        return NOT_FOUND
    task, status = fake._tasks.status_now(unquote(task_id))
    if task is None or status != "success":
        return NOT_FOUND
    built = media_for(fake, task)
    if name == "result.mp4":
        video = built.video
        if fake.tag_results:
            # Tagged per answer, not stored: many tasks share one built (or shipped) video.
            video = media.tag_result(video, result_tag_of(task))
        return Response(200, video, "video/mp4")
    return Response(200, built.cover, "image/jpeg")


def result_tag_of(task: Task) -> dict[str, str]:
    """What a tagged result says about itself (see ``FakeJoggServer(tag_results=True)``)."""
    return {
        "task_id": task.task_id,
        "video_url": task.video_url,
        "audio_url": task.audio_url,
        "playback_type": task.playback_type,
    }


def media_for(fake: FakeJoggServer, task: Task) -> media.BuiltMedia:
    """The task's result media, built on first use (one build per task, thread-safe)."""
    built = task.media
    if built is not None:
        return built
    with task.media_lock:
        if task.media is None:
            fresh = _build(fake, task)
            if fresh is None:  # the server is stopping: answer something, remember nothing
                return media.shipped_media()
            task.media = fresh
        return task.media


def _build(fake: FakeJoggServer, task: Task) -> media.BuiltMedia | None:
    """Mux the task's inputs with ffmpeg; the shipped sample without ffmpeg or when it fails."""
    if fake.ffmpeg is None:
        return media.shipped_media()
    video = _input(fake, task.video_url, media.SAMPLE_VIDEO)
    audio = _input(fake, task.audio_url, media.SAMPLE_AUDIO)
    stopping = fake._listener.stopping
    try:
        return media.build_result(
            fake.ffmpeg, fake.ffprobe, video, audio, task.playback_type, cancel=stopping
        )
    except media.MediaError as exc:
        if stopping.is_set():
            return None
        log.warning(
            "FakeJoggServer: cannot build the result of task %s (%s); serving the shipped %s instead",
            task.task_id,
            exc,
            media.SAMPLE_VIDEO.name,
        )
        return media.shipped_media(fake.ffmpeg, fake.ffprobe, note=str(exc))


def _input(fake: FakeJoggServer, url: str, sample: Path) -> media.MediaInput:
    """An uploaded asset of this server as bytes, or the shipped ``sample`` for any other URL."""
    if fake._is_own_asset_url(url):
        upload = fake._uploads.find(urlsplit(url).path, "/assets/")
        data = None if upload is None else upload.data
        if upload is not None and data is not None:
            return media.MediaInput(data=data, name=upload.filename)
    return media.MediaInput(path=sample, name=sample.name)
