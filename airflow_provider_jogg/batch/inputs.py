"""A batch's inputs, checked before any request, and where its results go."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any

from airflow_provider_jogg import exceptions as exc
from airflow_provider_jogg.media_inputs import inspect_file, is_http_url, to_path
from airflow_provider_jogg.validation import validate_media_url

if TYPE_CHECKING:
    from airflow_provider_jogg.batch.manifest import ClipRow

#: bad rows named in one error, at most
MAX_ERRORS_SHOWN = 20
#: files inspected at once (object storage answers a stat in tens of milliseconds)
CHECK_WORKERS = 8


def check_inputs(rows: list[ClipRow], *, unit: str = "line") -> dict[str, dict[str, Any]]:
    """
    Every row's inputs, checked: http(s) URLs validated, files inspected (they exist, are not empty,
    have a type Jogg takes) into :class:`~airflow_provider_jogg.media_inputs.MediaFile` s to upload.
    Returns ``{clip: {"video_url", "audio_url", "playback_type"}}``; raises one
    :class:`~airflow_provider_jogg.exceptions.JoggConfigError` naming the first
    :data:`MAX_ERRORS_SHOWN` bad rows (``unit``: ``line`` of a manifest file, ``row`` of a list).
    """

    def check(row: ClipRow) -> tuple[str, dict[str, Any] | str]:
        try:
            checked: dict[str, Any] = {"playback_type": row.playback_type}
            for role, value in (("video_url", row.video), ("audio_url", row.audio)):
                checked[role] = (
                    validate_media_url(value, role) if is_http_url(value) else inspect_file(value, role)
                )
        except exc.JoggConfigError as error:
            where = f"{unit} {row.line} (clip {row.clip!r})" if row.line else f"clip {row.clip!r}"
            return row.clip, f"{where}: {error}"
        return row.clip, checked

    with ThreadPoolExecutor(max_workers=CHECK_WORKERS, thread_name_prefix="jogg-check") as pool:
        results = list(pool.map(check, rows))
    problems = [value for _clip, value in results if isinstance(value, str)]
    if problems:
        shown = "\n".join(problems[:MAX_ERRORS_SHOWN])
        extra = len(problems) - MAX_ERRORS_SHOWN
        more = f"\n... and {extra} more" if extra > 0 else ""
        count = f"{len(problems)} clip{'s' if len(problems) != 1 else ''}"
        raise exc.JoggConfigError(f"{count} of the batch with unusable inputs:\n{shown}{more}")
    return {clip: value for clip, value in results if isinstance(value, dict)}


def output_targets(rows: list[ClipRow], output_dir: Any) -> dict[str, Any]:
    """Where each clip's result is saved: its row's ``output_path``, else ``<output_dir>/<clip>.mp4``."""
    targets: dict[str, Any] = {}
    for row in rows:
        if row.output_path:
            targets[row.clip] = to_path(row.output_path, "output_path")
        elif output_dir:
            targets[row.clip] = to_path(output_dir, "output_dir") / f"{row.clip}.mp4"
    seen: dict[str, str] = {}
    for clip, target in targets.items():
        other = seen.setdefault(str(target), clip)
        if other != clip:
            raise exc.JoggConfigError(f"Clips {other!r} and {clip!r} would both be saved to {target}.")
    return targets
