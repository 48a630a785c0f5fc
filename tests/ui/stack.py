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

import contextlib
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import requests

if TYPE_CHECKING:
    from collections.abc import Callable

ROOT = Path(__file__).resolve().parents[2]
VENV_BIN = Path(sys.executable).parent
AIRFLOW = str(VENV_BIN / "airflow")
SIMPLE_AUTH_MANAGER = "airflow.api_fastapi.auth.managers.simple.simple_auth_manager.SimpleAuthManager"

T = TypeVar("T")


class StackError(AssertionError):
    """A process did not start or a wait ran out; the message carries the logs."""


def free_port() -> int:
    """A TCP port that was free on 127.0.0.1 a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def tail(path: Path, lines: int = 60) -> str:
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return ""
    return "\n".join(text.splitlines()[-lines:])


def wait_until(what: str, probe: Callable[[], T], *, timeout: float, interval: float = 0.25) -> T:
    deadline = time.monotonic() + timeout
    while True:
        result = probe()
        if result:
            return result
        if time.monotonic() >= deadline:
            raise StackError(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(interval)


@dataclass
class Process:
    """One child process in its own session, output in ``log``."""

    name: str
    popen: subprocess.Popen[bytes]
    log: Path

    @property
    def alive(self) -> bool:
        return self.popen.poll() is None

    def stop(self, timeout: float = 20.0) -> None:
        """SIGTERM to its own PID, SIGKILL after ``timeout``; then anything left in its own session."""
        proc = self.popen
        if proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(proc.pid, signal.SIGKILL)
                proc.wait(timeout=10)
        # uvicorn workers live in the session this process leads (its PID is the group id, ours)
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, signal.SIGKILL)


@dataclass
class UIStack:
    """A fake Jogg server and an Airflow api-server for the browser to talk to."""

    api_key: str
    root: Path = field(default_factory=lambda: Path(tempfile.mkdtemp(prefix="jogg-ui-")))
    processes: list[Process] = field(default_factory=list)
    fake_url: str = ""
    airflow_url: str = ""

    @property
    def home(self) -> Path:
        return self.root / "airflow-home"

    def env(self) -> dict[str, str]:
        """The environment of every Airflow command: this stack's home, nothing from the caller's."""
        env = {
            k: v
            for k, v in os.environ.items()
            if not k.startswith(("AIRFLOW__", "AIRFLOW_CONN_", "AIRFLOW_VAR_", "AIRFLOW_HOME"))
        }
        dags = self.root / "dags"
        dags.mkdir(exist_ok=True)
        env.update(
            AIRFLOW_HOME=str(self.home),
            AIRFLOW__CORE__LOAD_EXAMPLES="False",
            AIRFLOW__CORE__DAGS_FOLDER=str(dags),
            AIRFLOW__CORE__AUTH_MANAGER=SIMPLE_AUTH_MANAGER,
            AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_ALL_ADMINS="True",
            AIRFLOW__CORE__TEST_CONNECTION="Enabled",
            PYTHONUNBUFFERED="1",
        )
        return env

    # --- processes ---
    def _spawn(self, name: str, args: list[str]) -> Process:
        log = self.root / f"{name}.log"
        with open(log, "ab") as out:
            popen = subprocess.Popen(
                args,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                env=self.env(),
                cwd=ROOT,
                start_new_session=True,
            )
        proc = Process(name, popen, log)
        self.processes.append(proc)
        return proc

    def start(self) -> UIStack:
        self.home.mkdir(parents=True, exist_ok=True)
        self._start_fake_jogg()
        self._migrate()
        self._start_api_server()
        return self

    def _start_fake_jogg(self) -> None:
        proc = self._spawn(
            "fake-jogg",
            [sys.executable, "-m", "airflow_provider_jogg.testing", "--port", "0", "--api-key", self.api_key],
        )

        def url() -> str | None:
            if not proc.alive:
                raise StackError(f"fake Jogg server exited with {proc.popen.returncode}:\n{tail(proc.log)}")
            match = re.search(r"^JOGG_FAKE_URL=(\S+)$", tail(proc.log, 20), re.MULTILINE)
            return match.group(1) if match else None

        self.fake_url = str(wait_until("the fake Jogg server to print its URL", url, timeout=60))

    def _migrate(self) -> None:
        log = self.root / "db-migrate.log"
        with open(log, "wb") as out:
            done = subprocess.run(
                [AIRFLOW, "db", "migrate"],
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                env=self.env(),
                cwd=ROOT,
                timeout=300,
                check=False,
            )
        if done.returncode != 0:
            raise StackError(f"airflow db migrate failed ({done.returncode}):\n{tail(log)}")

    def _start_api_server(self, attempts: int = 3) -> None:
        for attempt in range(1, attempts + 1):
            port = free_port()
            proc = self._spawn(
                f"api-server-{attempt}", [AIRFLOW, "api-server", "--host", "127.0.0.1", "--port", str(port)]
            )
            url = f"http://127.0.0.1:{port}"

            def healthy(proc: Process = proc, url: str = url) -> bool | str:
                if not proc.alive:
                    return "exited"
                try:
                    return requests.get(url + "/api/v2/monitor/health", timeout=5).status_code == 200
                except requests.RequestException:
                    return False

            state = wait_until("the api-server to answer /api/v2/monitor/health", healthy, timeout=180)
            if state is True:
                self.airflow_url = url
                return
            # exited: most likely somebody took the port between free_port() and bind; try another
            if "address already in use" not in tail(proc.log).lower() or attempt == attempts:
                raise StackError(f"airflow api-server exited with {proc.popen.returncode}:\n{tail(proc.log)}")

    def stop(self) -> None:
        for proc in reversed(self.processes):
            proc.stop()

    def cleanup(self) -> None:
        shutil.rmtree(self.root, ignore_errors=True)

    def diagnostics(self, lines: int = 60) -> str:
        """The last ``lines`` lines of each process's log, without the api-server's access log."""
        parts = []
        for proc in self.processes:
            text = "\n".join(
                line for line in tail(proc.log, 100_000).splitlines() if "[http.access]" not in line
            )
            last = "\n".join(text.splitlines()[-lines:])
            parts.append(f"--- {proc.name} (pid {proc.popen.pid}, exit {proc.popen.poll()}) ---\n{last}")
        return "\n".join(parts)

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
        resp = requests.get(self.fake_url + "/_fake/requests", timeout=30)
        resp.raise_for_status()
        return resp.json()
