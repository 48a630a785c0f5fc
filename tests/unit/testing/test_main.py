"""``python -m airflow_provider_jogg.testing``: the fake server from a shell."""

from __future__ import annotations

import os
import queue
import re
import signal
import subprocess
import sys
import threading

import pytest
import requests

from airflow_provider_jogg.protocol import STATUS_PATH, WHOAMI_PATH
from airflow_provider_jogg.testing import media
from airflow_provider_jogg.testing.server import FINISH_AFTER_POLL
from tests.unit.testing.server.support import AUDIO, CREATE, KEY, REPO_ROOT, VIDEO


def _cli(*args: str) -> subprocess.Popen[str]:
    """Start ``python -m airflow_provider_jogg.testing`` with the repository on the path."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO_ROOT), env.get("PYTHONPATH")]))
    return subprocess.Popen(
        [sys.executable, "-m", "airflow_provider_jogg.testing", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
        cwd=REPO_ROOT,
    )


def _end(proc: subprocess.Popen[str]) -> None:
    """Whatever the test did, the CLI's process is gone and its pipes are closed."""
    if proc.poll() is None:
        proc.kill()
        proc.wait(5)
    for stream in (proc.stdout, proc.stderr):
        if stream is not None:
            stream.close()


def _read_line(proc: subprocess.Popen[str], timeout: float = 20) -> str:
    """Read one stdout line of ``proc`` or fail after ``timeout`` seconds."""
    lines: queue.Queue[str] = queue.Queue()
    assert proc.stdout is not None
    stdout = proc.stdout
    threading.Thread(target=lambda: lines.put(stdout.readline()), daemon=True).start()
    try:
        return lines.get(timeout=timeout)
    except queue.Empty:
        pytest.fail(f"no URL line within {timeout}s")


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_cli_serves_until_signal(sig: signal.Signals) -> None:
    proc = _cli("--port", "0", "--api-key", "cli-key", "--prefix", "/open", "--pending-seconds", "0")
    try:
        line = _read_line(proc)
        match = re.fullmatch(r"JOGG_FAKE_URL=(http://127\.0\.0\.1:(\d+)/open)\n", line)
        assert match, line
        url = match.group(1)
        whoami = requests.get(url + WHOAMI_PATH, headers={"x-api-key": "cli-key"}, timeout=5)
        assert whoami.json()["data"]["username"] == "demo"
        assert requests.get(url + WHOAMI_PATH, headers={"x-api-key": KEY}, timeout=5).status_code == 401
        proc.send_signal(sig)
        assert proc.wait(timeout=10) == 0
        assert proc.stdout is not None
        assert proc.stdout.read() == ""  # exactly one line on stdout
        with pytest.raises(requests.ConnectionError):
            requests.get(url + WHOAMI_PATH, timeout=2)
    finally:
        _end(proc)


def test_cli_refuses_non_loopback_host() -> None:
    proc = _cli("--host", "0.0.0.0")
    try:
        _, err = proc.communicate(timeout=20)
        assert proc.returncode == 2
        assert "loopback" in err
    finally:
        _end(proc)


def test_cli_bounded_request_log_and_tagged_results() -> None:
    proc = _cli(
        "--api-key", "cli-key", "--pending-seconds", "0", "--processing-seconds", "0", "--no-ffmpeg",
        "--max-recorded-requests", "1", "--tag-results",
    )  # fmt: skip
    try:
        url = _read_line(proc).strip().removeprefix("JOGG_FAKE_URL=")
        headers = {"x-api-key": "cli-key"}
        body = {"video_url": VIDEO, "audio_url": AUDIO}
        task_id = requests.post(url + CREATE, json=body, headers=headers, timeout=5).json()["data"]["task_id"]
        answer = requests.get(f"{url}/v2/lip_sync_video/{task_id}", headers=headers, timeout=5).json()
        result = requests.get(answer["data"]["data"]["result_url"], timeout=5).content
        assert media.result_tag(result) == {
            "task_id": task_id,
            "video_url": VIDEO,
            "audio_url": AUDIO,
            "playback_type": "normal",
        }
        assert [r["path"] for r in requests.get(url + "/_fake/requests", timeout=5).json()] == [
            f"/v2/lip_sync_video/{task_id}"
        ]
        counts = requests.get(url + "/_fake/counts", timeout=5).json()
        assert (counts["requests"], counts["dropped"], counts["creates"]) == (2, 1, 1)
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=10) == 0
    finally:
        _end(proc)


@pytest.mark.parametrize("value", ["-1", "ten", "2.5"])
def test_cli_rejects_bad_max_recorded_requests(value: str) -> None:
    proc = _cli("--max-recorded-requests", value)
    try:
        _, err = proc.communicate(timeout=20)
        assert proc.returncode == 2
        assert "argument --max-recorded-requests:" in err, err
    finally:
        _end(proc)


def test_cli_finish_after_poll_marker_on_a_server_that_never_finishes() -> None:
    """The e2e suites' fake: ``--processing-seconds never``; a task ends when its URL's marker says,
    counted from the first status answer about it, and an unmarked one only when the test says."""
    proc = _cli("--api-key", "cli-key", "--pending-seconds", "0", "--processing-seconds", "never")
    try:
        url = _read_line(proc).strip().removeprefix("JOGG_FAKE_URL=")
        headers = {"x-api-key": "cli-key"}
        ids = {}
        for name, video in (("marked", f"{VIDEO}?{FINISH_AFTER_POLL}=0"), ("plain", VIDEO)):
            body = {"video_url": video, "audio_url": AUDIO}
            answer = requests.post(url + CREATE, json=body, headers=headers, timeout=5).json()
            ids[name] = answer["data"]["task_id"]
        statuses = {}
        for name, task_id in ids.items():
            answer = requests.get(
                url + STATUS_PATH.format(task_id=task_id), headers=headers, timeout=5
            ).json()
            statuses[name] = answer["data"]["status"]
        assert statuses == {"marked": "success", "plain": "processing"}
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=10) == 0
    finally:
        _end(proc)


@pytest.mark.parametrize(
    "args",
    [("--processing-seconds-for", "/late/=never"), ("--clock-from-first-status",)],
    ids=["by-url", "clock"],
)
def test_cli_has_one_timing_mechanism(args: tuple[str, ...]) -> None:
    """Per-task timing is the URL markers' job only: the server options that did the same are gone."""
    proc = _cli(*args)
    try:
        _, err = proc.communicate(timeout=20)
        assert proc.returncode == 2
        assert f"unrecognized arguments: {' '.join(args)}" in err, err
    finally:
        _end(proc)
