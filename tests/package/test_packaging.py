"""The release artifacts: build the sdist and the wheel as a release would, then check what they hold.

One build per test session (``uv build``: the sdist first, then the wheel from that sdist, so a file
missing from the sdist breaks the wheel too), checked with ``twine check --strict`` and read back.
"""

from __future__ import annotations

import configparser
import email
import email.policy
import re
import shutil
import subprocess
import sys
import tarfile
import zipfile
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

import airflow_provider_jogg

if TYPE_CHECKING:
    from email.message import Message

ROOT = Path(__file__).resolve().parents[2]
PACKAGE = "airflow_provider_jogg"
DIST_NAME = "airflow-provider-jogg"
ENTRY_POINT_GROUP = "apache_airflow_provider"
ENTRY_POINT_VALUE = "airflow_provider_jogg.get_provider_info:get_provider_info"
PROJECT_URL_LABELS = {"Homepage", "Source", "Changelog", "Issues"}


def _uv() -> list[str]:
    """``uv`` from PATH, else ``python -m uv`` (pip-installed uv); skip only if there is neither."""
    found = shutil.which("uv")
    if found:
        return [found]
    probe = subprocess.run([sys.executable, "-m", "uv", "--version"], capture_output=True, check=False)
    if probe.returncode == 0:
        return [sys.executable, "-m", "uv"]
    pytest.skip("uv is not installed (neither on PATH nor as `python -m uv`); `make venv` installs it")


def _run(cmd: list[str], what: str) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=240, check=False)
    if result.returncode != 0:
        pytest.fail(f"{what} failed ({result.returncode}): {' '.join(cmd)}\n{result.stdout}\n{result.stderr}")
    return result


@pytest.fixture(scope="module")
def dist(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    out = tmp_path_factory.mktemp("dist")
    # --no-cache would cost a download of hatchling per run; the default cache is what CI has
    _run([*_uv(), "build", "--sdist", "--wheel", "--out-dir", str(out), str(ROOT)], "uv build")
    sdists = sorted(out.glob("*.tar.gz"))
    wheels = sorted(out.glob("*.whl"))
    assert len(sdists) == 1, sdists
    assert len(wheels) == 1, wheels
    return {"sdist": sdists[0], "wheel": wheels[0]}


@pytest.fixture(scope="module")
def wheel_files(dist: dict[str, Path]) -> dict[str, bytes]:
    with zipfile.ZipFile(dist["wheel"]) as wheel:
        return {name: wheel.read(name) for name in wheel.namelist()}


@pytest.fixture(scope="module")
def sdist_names(dist: dict[str, Path]) -> list[str]:
    with tarfile.open(dist["sdist"]) as sdist:
        return sdist.getnames()


def _dist_info(files: dict[str, bytes]) -> str:
    (info,) = {name.split("/", 1)[0] for name in files if name.split("/", 1)[0].endswith(".dist-info")}
    return info


@pytest.fixture(scope="module")
def metadata(wheel_files: dict[str, bytes]) -> Message:
    raw = wheel_files[f"{_dist_info(wheel_files)}/METADATA"]
    return email.message_from_bytes(raw, policy=email.policy.compat32)


def test_twine_check_passes_on_both(dist: dict[str, Path]) -> None:
    # --strict: warnings (a README PyPI cannot render, a missing content type) fail too
    probe = subprocess.run([sys.executable, "-m", "twine", "--version"], capture_output=True, check=False)
    if probe.returncode != 0:
        pytest.fail("twine is not installed in this environment: it belongs in the `dev` extra")
    _run(
        [sys.executable, "-m", "twine", "check", "--strict", str(dist["sdist"]), str(dist["wheel"])],
        "twine check",
    )


def test_artifact_names_carry_the_package_version(dist: dict[str, Path]) -> None:
    version = airflow_provider_jogg.__version__
    assert dist["wheel"].name == f"{PACKAGE}-{version}-py3-none-any.whl"
    assert dist["sdist"].name == f"{PACKAGE}-{version}.tar.gz"


def test_wheel_version_is_the_package_version(metadata: Message) -> None:
    assert metadata["Name"] == DIST_NAME
    assert metadata["Version"] == airflow_provider_jogg.__version__


def test_the_version_is_written_in_one_place() -> None:
    pyproject = (ROOT / "pyproject.toml").read_text()
    project = pyproject.split("[project]", 1)[1].split("\n[", 1)[0]
    assert re.search(r"^dynamic\s*=.*\"version\"", project, re.MULTILINE), "version must be dynamic"
    assert not re.search(r"^version\s*=", project, re.MULTILINE), "pyproject.toml repeats the version"
    assert 'path = "airflow_provider_jogg/__init__.py"' in pyproject
    holders = [
        path.relative_to(ROOT).as_posix()
        for path in (ROOT / PACKAGE).rglob("*.py")
        if re.search(r"^__version__\s*=", path.read_text(), re.MULTILINE)
    ]
    assert holders == [f"{PACKAGE}/__init__.py"]


def test_provider_info_reports_the_same_version() -> None:
    from airflow_provider_jogg.get_provider_info import get_provider_info

    info = get_provider_info()
    assert info["package-name"] == DIST_NAME
    assert info["versions"] == [airflow_provider_jogg.__version__]


def test_wheel_holds_the_typed_marker_and_provider_info(wheel_files: dict[str, bytes]) -> None:
    assert f"{PACKAGE}/py.typed" in wheel_files
    assert f"{PACKAGE}/get_provider_info.py" in wheel_files
    for module in ("hooks/jogg.py", "operators/lip_sync.py", "sensors/lip_sync.py", "triggers/lip_sync.py"):
        assert f"{PACKAGE}/{module}" in wheel_files, module


def test_wheel_registers_the_airflow_entry_point(wheel_files: dict[str, bytes]) -> None:
    parser = configparser.ConfigParser()
    parser.optionxform = str  # keep the names as written
    parser.read_string(wheel_files[f"{_dist_info(wheel_files)}/entry_points.txt"].decode())
    assert ENTRY_POINT_GROUP in parser.sections()
    assert list(parser[ENTRY_POINT_GROUP].values()) == [ENTRY_POINT_VALUE]


def test_wheel_carries_the_license(wheel_files: dict[str, bytes], metadata: Message) -> None:
    info = _dist_info(wheel_files)
    assert metadata["License-Expression"] == "Apache-2.0"
    assert "LICENSE" in (metadata.get_all("License-File") or [])
    license_text = wheel_files[f"{info}/licenses/LICENSE"].decode()
    assert license_text == (ROOT / "LICENSE").read_text()
    assert "Apache License" in license_text
    assert "Version 2.0, January 2004" in license_text


def test_wheel_metadata_has_classifiers_and_urls(metadata: Message) -> None:
    classifiers = set(metadata.get_all("Classifier") or [])
    assert {"Framework :: Apache Airflow", "Framework :: Apache Airflow :: Provider"} <= classifiers
    urls = dict(entry.split(", ", 1) for entry in metadata.get_all("Project-URL") or [])
    assert set(urls) >= PROJECT_URL_LABELS, f"Project-URL labels: {sorted(urls)}"
    for label in PROJECT_URL_LABELS:
        assert urls[label].startswith("https://"), (label, urls[label])
    assert metadata["Description-Content-Type"] == "text/markdown"
    assert metadata["Requires-Python"]


def test_wheel_holds_only_the_package(wheel_files: dict[str, bytes]) -> None:
    info = _dist_info(wheel_files)
    stray = [name for name in wheel_files if not name.startswith((f"{PACKAGE}/", f"{info}/"))]
    assert stray == [], "outside the package (tests/, example_dags/, scripts/...)"
    assert not [name for name in wheel_files if "/tests/" in f"/{name}"], "test files in the wheel"
    assert not [name for name in wheel_files if "__pycache__" in name or name.endswith(".pyc")]


def test_sdist_holds_the_sources_and_release_files(sdist_names: list[str]) -> None:
    top = f"{PACKAGE}-{airflow_provider_jogg.__version__}"
    names = {name.removeprefix(f"{top}/") for name in sdist_names}
    assert {"PKG-INFO", "pyproject.toml", "README.md", "LICENSE", "CHANGELOG.md"} <= names
    assert f"{PACKAGE}/py.typed" in names
    assert f"{PACKAGE}/get_provider_info.py" in names
    junk = [
        name
        for name in names
        if "__pycache__" in name
        or name.endswith(".pyc")
        or name.split("/", 1)[0] in {".venv", "bench", ".hypothesis", ".mypy_cache", ".ruff_cache", "dist"}
    ]
    assert junk == []
