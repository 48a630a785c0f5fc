"""What a good batch row is: its keys, a clip name that can name a file anywhere, media in a form
``LipSyncOperator`` takes, a valid ``playback_type``. No I/O: files are checked for form only (a
media name Jogg takes); the operator checks that they exist before it uploads anything.

Each check returns the value it accepts or why not, as a phrase: :mod:`.manifest` gathers the
phrases of every row into one error.
"""

from __future__ import annotations

import difflib
import os
import unicodedata
from collections.abc import Mapping
from typing import Any
from urllib.parse import urlsplit

from airflow_provider_jogg import exceptions as exc
from airflow_provider_jogg.media_inputs import content_type_for, is_http_url
from airflow_provider_jogg.validation import validate_media_url, validate_playback_type

#: the keys of a row; ``video_url`` and ``audio_url`` (LipSyncOperator's names) are aliases
COLUMNS: tuple[str, ...] = ("clip", "video", "audio", "playback_type", "output_path")
ALIASES: dict[str, str] = {"video_url": "video", "audio_url": "audio"}
#: longest clip name, in characters and in UTF-8 bytes: file systems allow 255 bytes per name, and
#: the result file adds its suffix (and, while it downloads, a partial-file prefix and token)
MAX_CLIP_NAME = 200
#: names Windows reserves for devices, with or without an extension
_WINDOWS_DEVICES = frozenset(
    ["CON", "PRN", "AUX", "NUL", *(f"COM{i}" for i in range(1, 10)), *(f"LPT{i}" for i in range(1, 10))]
)
_WINDOWS_FORBIDDEN = '<>:"|?*'
_ROLES = {"video": "video_url", "audio": "audio_url"}  # media_inputs' role names, for the suffix check


def check_row(raw: Any, default_playback_type: str) -> tuple[dict[str, Any] | None, str | None, list[str]]:
    """
    ``(the row's values, its clip name, [])`` for a good row; ``(None, the clip name if it is usable,
    the row's problems)`` for a bad one. The values are the fields of a ``ClipRow``, without its line.
    """
    if not isinstance(raw, Mapping):
        return None, None, [f"not a dict (got {type(raw).__name__}): a row has the keys {', '.join(COLUMNS)}"]
    problems = key_problems(list(raw), "key", required=False)
    values = {ALIASES.get(str(key), str(key)): value for key, value in raw.items()}
    clip, clip_problem = clip_name(values.get("clip"))
    problems += [clip_problem] if clip_problem else []
    media = {}
    for name in ("video", "audio"):
        media[name], problem = media_value(values.get(name), name)
        problems += [problem] if problem else []
    playback_type = _text(values.get("playback_type")) or default_playback_type
    try:
        playback_type = validate_playback_type(playback_type)
    except exc.JoggConfigError as error:
        problems.append(str(error).rstrip("."))
    output_path, problem = location_value(values.get("output_path"), "output_path")
    problems += [problem] if problem else []
    if problems:
        return None, clip, problems
    return {"clip": clip, **media, "playback_type": playback_type, "output_path": output_path}, clip, []


def key_problems(keys: list[Any], noun: str, *, required: bool) -> list[str]:
    """
    Unknown keys (with the nearest known one: a typo must not drop a value silently), a key given
    with its alias, and, if ``required``, a missing ``clip``, video or audio (a row's missing value
    is reported by its own check).
    """
    known = [*COLUMNS, *ALIASES]
    problems = []
    for key in keys:
        if key not in known:
            near = difflib.get_close_matches(str(key), known, n=1)
            problems.append(f"unknown {noun} {key!r}" + (f" (did you mean {near[0]!r}?)" if near else ""))
    for alias, name in ALIASES.items():
        if alias in keys and name in keys:
            problems.append(f"both {name!r} and {alias!r} given: use one")
        elif required and alias not in keys and name not in keys:
            problems.append(f"no {name!r} (or {alias!r}) {noun}")
    if required and "clip" not in keys:
        problems.append(f"no 'clip' {noun}")
    return problems


def clip_name(value: Any) -> tuple[str | None, str | None]:
    """``(the name, None)`` if it can name a file on every OS and object store, else ``(None, why)``."""
    if value is None or (isinstance(value, str) and not value.strip()):
        return None, "no clip name"
    if not isinstance(value, str):
        return None, f"clip must be a string, got {type(value).__name__} {short(value)}"
    name = value.strip()
    shown = short(name)
    if any(c in "/\\" for c in name):
        return None, f"clip {shown} contains a path separator ('/' or '\\'): it names a file, not a folder"
    if any(unicodedata.category(c) == "Cc" for c in name):
        return None, f"clip {shown} contains a control character (a NUL, tab or newline, say)"
    if name in (".", ".."):
        return None, f"clip {shown} is not a file name"
    if len(name) > MAX_CLIP_NAME or len(name.encode("utf-8")) > MAX_CLIP_NAME:
        return None, (
            f"clip {shown} is {len(name)} characters ({len(name.encode('utf-8'))} bytes in UTF-8); "
            f"at most {MAX_CLIP_NAME} of each"
        )
    forbidden = sorted({c for c in name if c in _WINDOWS_FORBIDDEN})
    if forbidden:
        return None, f"clip {shown} contains {', '.join(map(repr, forbidden))}: Windows file names cannot"
    if name.endswith("."):
        return None, f"clip {shown} ends with a dot, which Windows drops from file names"
    if name.split(".", 1)[0].rstrip(" ").upper() in _WINDOWS_DEVICES:
        return None, f"clip {shown} is a device name on Windows ({name.split('.', 1)[0]})"
    return name, None


def name_key(name: str) -> str:
    # macOS and Windows file names ignore case, and macOS normalizes Unicode: two such names would
    # write one result file
    return unicodedata.normalize("NFC", name).casefold()


def media_value(value: Any, name: str) -> tuple[str | None, str | None]:
    """A video or audio value: a valid http(s) URL, or a path or URI whose name Jogg takes."""
    location, problem = location_value(value, name)
    if problem or location is None:
        return None, problem or f"no {name}"
    if is_http_url(location):
        try:
            return validate_media_url(location, name), None
        except exc.JoggConfigError as error:
            # its advice to upload first does not apply: a batch uploads its files itself
            return None, str(error).split(" Upload local files first", 1)[0].rstrip(".")
    file_name = (urlsplit(location).path if "://" in location else location).replace("\\", "/")
    file_name = file_name.rsplit("/", 1)[-1]
    try:
        content_type_for(file_name, _ROLES[name])
    except exc.JoggConfigError as error:
        return None, str(error).replace(repr(file_name), short(file_name)).rstrip(".")
    return location, None


def location_value(value: Any, name: str) -> tuple[str | None, str | None]:
    """A URL, path or URI as a string (``None`` if not given), or why it is not one."""
    if isinstance(value, os.PathLike) or is_path_object(value):
        value = os.fspath(value) if isinstance(value, os.PathLike) else str(value)
    if value is None:
        return None, None
    if not isinstance(value, str):
        return None, f"{name} must be a URL, a path or a URI, got {type(value).__name__} {short(value)}"
    value = value.strip()
    if any(unicodedata.category(c) == "Cc" for c in value):
        return None, f"{name} {short(value)} contains a control character"
    return value or None, None


def _text(value: Any) -> Any:
    return value.strip() if isinstance(value, str) else value


def short(value: Any, limit: int = 60) -> str:
    """A value for a message: quoted, and cut short, so a message never carries a whole manifest."""
    text = repr(value)
    return text if len(text) <= limit else f"{text[: limit - 4]}...{text[-1]}"


def is_path_object(value: Any) -> bool:
    """An ``ObjectStoragePath`` (not ``os.PathLike`` on Airflow 3.3), told without importing it."""
    return hasattr(value, "open") and hasattr(value, "stat") and not isinstance(value, (str, bytes))
