"""The processes behind the UI tests: a fake Jogg server and an Airflow api-server, on loopback.

:class:`UIStack` owns a temporary ``AIRFLOW_HOME`` (SQLite, ``airflow db migrate``) and two child
processes, each started with ``start_new_session=True`` and stopped by its own PID (SIGTERM, then
SIGKILL) in :meth:`UIStack.stop`:

- ``python -m airflow_provider_jogg.testing --port 0 --api-key <key>`` (prints ``JOGG_FAKE_URL=...``);
- ``airflow api-server --host 127.0.0.1 --port <free>`` with the simple auth manager, every user an
  admin, and ``[core] test_connection = Enabled``. The UI's Test button runs
  ``JoggHook.test_connection()`` inside this process (``POST /api/v2/connections/test``).

Each process writes its output to ``<root>/<name>.log``; :meth:`UIStack.diagnostics` returns the
tails for a failure report. The API key reaches the fake server on its command line only.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import requests

from tests.harness import airflow
from tests.harness.fake import FakeJogg, start_fake_jogg
from tests.harness.processes import AIRFLOW, ROOT, Process, log_tails, spawn, tail
from tests.harness.waiting import HarnessError, free_port, wait_until


@dataclass
class UIStack:
    """A fake Jogg server and an Airflow api-server for the browser to talk to."""

    api_key: str
    root: Path = field(default_factory=lambda: Path(tempfile.mkdtemp(prefix="jogg-ui-")))
    processes: list[Process] = field(default_factory=list)
    fake: FakeJogg | None = None
    airflow_url: str = ""

    @property
    def home(self) -> Path:
        return self.root / "airflow-home"

    @property
    def fake_url(self) -> str:
        return self.fake.url if self.fake is not None else ""

    def env(self) -> dict[str, str]:
        """The environment of every Airflow command: this stack's home, nothing from the caller's."""
        dags = self.root / "dags"
        dags.mkdir(exist_ok=True)
        return {**airflow.airflow_env(self.home, dags), "AIRFLOW__CORE__TEST_CONNECTION": "Enabled"}

    # --- processes ---
    def _spawn(self, name: str, args: list[str]) -> Process:
        proc = spawn(name, args, env=self.env(), log_dir=self.root, cwd=ROOT)
        self.processes.append(proc)
        return proc

    def start(self) -> UIStack:
        self.home.mkdir(parents=True, exist_ok=True)
        self.fake = start_fake_jogg("fake-jogg", self.api_key, log_dir=self.root, env=self.env())
        self.processes.append(self.fake.process)
        airflow.migrate(self.env(), self.root, ROOT)
        self._start_api_server()
        return self

    def _start_api_server(self, attempts: int = 3) -> None:
        for attempt in range(1, attempts + 1):
            port = free_port()
            proc = self._spawn(f"api-server-{attempt}", airflow.api_server_args(port))
            url = f"http://127.0.0.1:{port}"

            def healthy(proc: Process = proc, url: str = url) -> bool | str:
                return "exited" if not proc.alive else airflow.api_healthy(url)

            state = wait_until(
                "the api-server to answer /api/v2/monitor/health", healthy, timeout=180, interval=0.25
            )
            if state is True:
                self.airflow_url = url
                return
            # exited: most likely somebody took the port between free_port() and bind; try another
            if "address already in use" not in tail(proc.log).lower() or attempt == attempts:
                raise HarnessError(
                    f"airflow api-server exited with {proc.popen.returncode}:\n{tail(proc.log)}"
                )

    def stop(self) -> None:
        for proc in reversed(self.processes):
            proc.stop()

    def cleanup(self) -> None:
        shutil.rmtree(self.root, ignore_errors=True)

    def diagnostics(self, lines: int = 60) -> str:
        """The last ``lines`` lines of each log, without the api-server's access log."""
        return log_tails(sorted(self.root.glob("*.log")), lines, drop="[http.access]")

    def all_logs(self) -> str:
        return "\n".join(tail(proc.log, 10**9) for proc in self.processes)

    # --- reading back what the UI stored ---
    def api(self) -> requests.Session:
        """A REST client. With ``simple_auth_manager_all_admins`` the api-server's middleware makes
        every request an admin's: no token is needed (``GET /auth/token`` would hand one out)."""
        session = requests.Session()
        session.headers["Accept"] = "application/json"
        return session

    def get_connection(self, conn_id: str) -> dict[str, Any]:
        resp = self.api().get(f"{self.airflow_url}/api/v2/connections/{conn_id}", timeout=30)
        assert resp.status_code == 200, f"GET connection {conn_id}: {resp.status_code} {resp.text}"
        return resp.json()

    def stored_connection(self, conn_id: str) -> dict[str, Any]:
        """The connection as the metadata DB holds it, decrypted (``airflow connections get -o json``
        in this stack's home); the REST API only ever shows the password as ``***``."""
        done = subprocess.run(
            [AIRFLOW, "connections", "get", conn_id, "-o", "json"],
            capture_output=True,
            text=True,
            env=self.env(),
            cwd=ROOT,
            timeout=120,
            check=False,
        )
        # warnings may precede the JSON on stdout: start at the list
        start = done.stdout.find("[")
        failure = f"airflow connections get: {done.returncode}\n{done.stdout}\n{done.stderr}"
        assert done.returncode == 0, failure
        assert start >= 0, failure
        rows = json.JSONDecoder().raw_decode(done.stdout[start:])[0]
        assert len(rows) == 1, rows
        return rows[0]

    def fake_requests(self) -> list[dict[str, Any]]:
        """Every /v2 request the fake Jogg server saw (the key itself shows as <valid>/<invalid>)."""
        assert self.fake is not None
        return self.fake.requests()
