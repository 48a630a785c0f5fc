"""The project's fake Jogg server as a child process (``python -m airflow_provider_jogg.testing``),
and a client of its admin routes (``/_fake/...``; they are never rate limited or faulted).

The server binds a free loopback port (``--port 0``) and prints ``JOGG_FAKE_URL=<url>``;
:func:`start_fake_jogg` waits for that line. The API key reaches it on its command line only.
"""

from __future__ import annotations

import re
import sys
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import requests

from airflow_provider_jogg.api_paths import CREATE_PATH, STATUS_PATH
from tests.harness.processes import ROOT, Process, spawn, tail
from tests.harness.waiting import HarnessError, wait_until

if TYPE_CHECKING:
    from pathlib import Path

#: the status route without the task id: ``STATUS_ROUTE + task_id``
STATUS_ROUTE = STATUS_PATH.format(task_id="")
_URL_LINE = re.compile(r"^JOGG_FAKE_URL=(\S+)$", re.MULTILINE)


@dataclass
class FakeJogg:
    """A fake Jogg server process and a client of its admin routes."""

    process: Process
    url: str
    session: requests.Session = field(default_factory=requests.Session)

    def _get(self, path: str) -> Any:
        resp = self.session.get(self.url + path, timeout=30)
        resp.raise_for_status()
        return resp.json()

    def requests(self) -> list[dict[str, Any]]:
        """Every ``/v2`` request the server saw: method, path, headers (the key itself shows as
        ``<valid>``/``<invalid>``), json, time, status."""
        return self._get("/_fake/requests")

    def tasks(self) -> dict[str, dict[str, Any]]:
        """task_id -> video_url, audio_url, playback_type, created_at, status, completed_at, ..."""
        return self._get("/_fake/tasks")

    def counts(self) -> dict[str, Any]:
        """Exact counts, also of requests no longer kept in detail (``--max-recorded-requests``):
        ``requests``, ``creates``, ``status_polls``, ``by_status`` (HTTP status as text -> n) and
        ``tasks`` (status -> n)."""
        return self._get("/_fake/counts")

    def faults(self) -> list[dict[str, Any]]:
        """The faults still active."""
        return self._get("/_fake/faults")

    def set_status(self, task_id: str, status: str) -> None:
        """Force a task's status (e.g. ``success``): the Jogg job 'finishes' now."""
        resp = self.session.post(self.url + f"/_fake/tasks/{task_id}", json={"status": status}, timeout=30)
        resp.raise_for_status()
        body = resp.json()
        if body.get("code") != 0:
            raise HarnessError(f"fake server refused to set {task_id} to {status}: {body}")

    def add_fault(self, **spec: Any) -> None:
        resp = self.session.post(self.url + "/_fake/faults", json=spec, timeout=30)
        resp.raise_for_status()

    def creates(self) -> list[dict[str, Any]]:
        """The create requests (``POST`` to the create route), whatever their answer."""
        return [r for r in self.requests() if r["method"] == "POST" and r["path"] == CREATE_PATH]


def start_fake_jogg(
    name: str, api_key: str, *options: str, log_dir: Path, env: dict[str, str] | None
) -> FakeJogg:
    """Start a fake Jogg server process named ``name`` with the server ``options`` (CLI flags of
    ``python -m airflow_provider_jogg.testing``); returns once it has printed its URL."""
    args = [sys.executable, "-m", "airflow_provider_jogg.testing", "--port", "0", "--api-key", api_key]
    process = spawn(name, [*args, *options], env=env, log_dir=log_dir, cwd=ROOT)

    def url() -> str | None:
        process.raise_if_exited()
        match = _URL_LINE.search(tail(process.log, 20))
        return match.group(1) if match else None

    found = wait_until(f"{name} to print its URL", url, timeout=60, interval=0.1)
    return FakeJogg(process, str(found))
