"""A real Airflow deployment on loopback ports, for the end-to-end tests.

One :class:`Deployment` owns a temporary ``AIRFLOW_HOME`` with a SQLite metadata DB, a DAGs folder,
and these processes, each started with ``start_new_session=True`` and stopped by its own PID:

- two fake Jogg servers (``python -m airflow_provider_jogg.testing``), each its own process:
  ``jogg_default`` (tasks stay ``processing`` until the test says otherwise, so every wait is
  observable) and ``jogg_load`` (a real timeline and a request-rate limit that answers 429);
- ``airflow api-server`` (started first: the workers call its Execution API),
- ``airflow scheduler`` (LocalExecutor, low parallelism), ``airflow dag-processor`` and
  ``airflow triggerer``.

Every process writes stdout and stderr to ``<root>/proc/<name>.log``; :meth:`Deployment.diagnostics`
returns their tails for a failure message. Nothing here ever writes an API key to disk: the keys
reach the processes through the environment and the fake servers' command lines only.
"""

from __future__ import annotations

import contextlib
import datetime
import json
import os
import re
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import requests

from airflow_provider_jogg import protocol

if TYPE_CHECKING:
    from collections.abc import Callable, Iterable, Mapping

ROOT = Path(__file__).resolve().parents[2]
VENV_BIN = Path(sys.executable).parent
AIRFLOW = str(VENV_BIN / "airflow")
EXAMPLE_DAG = ROOT / "example_dags" / "example_jogg_lip_sync.py"
E2E_DAGS = Path(__file__).resolve().parent / "dags"

TRIGGER_CLASSPATH = "airflow_provider_jogg.triggers.lip_sync.LipSyncTrigger"
#: the provider's deferral floor; the unit suites set it to 0 (tests/conftest.py), a real deployment
#: must run with the default, so no spawned component may inherit it
MIN_DEFERRAL_ENV = "AIRFLOW__JOGG__MIN_DEFERRAL_SECONDS"
#: the extras of the connections unless a Deployment says otherwise (short backoff: quick tests)
E2E_CONN_EXTRA: dict[str, Any] = {"retry_backoff": 0.2, "timeout": 10, "api_platform": "airflow-e2e"}
CREATE_PATH = protocol.CREATE_PATH
#: the status route without the task id: ``STATUS_PATH + task_id``
STATUS_PATH = protocol.STATUS_PATH.format(task_id="")

T = TypeVar("T")


class DeploymentError(AssertionError):
    """A wait ran out or a component misbehaved; the message carries the evidence."""


def free_port() -> int:
    """A TCP port that was free on 127.0.0.1 a moment ago (bind port 0, read it, close)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def tail(path: Path, lines: int = 80) -> str:
    """The last ``lines`` lines of a text file ('' when it does not exist)."""
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return ""
    return "\n".join(text.splitlines()[-lines:])


def wait_until(
    what: str,
    probe: Callable[[], T],
    *,
    timeout: float,
    interval: float = 0.5,
    diagnostics: Callable[[], str] | None = None,
) -> T:
    """Call ``probe`` until it returns something truthy; fail after ``timeout`` seconds saying what."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while True:
        last = probe()
        if last:
            return last
        if time.monotonic() >= deadline:
            extra = diagnostics() if diagnostics is not None else ""
            raise DeploymentError(
                f"timed out after {timeout:.0f} s waiting for {what}; last: {last!r}\n{extra}"
            )
        time.sleep(interval)


# --------------------------------------------------------------------------------------------------
# Processes
# --------------------------------------------------------------------------------------------------
@dataclass
class Component:
    """One child process, started in its own session; output in ``log``."""

    name: str
    popen: subprocess.Popen[bytes]
    log: Path
    #: SIGKILL was needed: it did not exit within the timeout after SIGTERM
    killed: bool = False
    stopped: bool = False
    terminated: bool = False

    @property
    def pid(self) -> int:
        return self.popen.pid

    @property
    def alive(self) -> bool:
        return self.popen.poll() is None

    def terminate(self) -> None:
        """Send SIGTERM once (a second one makes the scheduler stop waiting for its tasks)."""
        if not self.terminated and self.popen.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.popen.pid, signal.SIGTERM)
        self.terminated = True

    def stop(self, timeout: float = 30.0) -> int | None:
        """SIGTERM to its own PID, SIGKILL after ``timeout``; then whatever is left of its session.

        Idempotent: the session is swept only once, right after its leader exited, so that a
        recycled PID can never be hit later.
        """
        if self.stopped:
            return self.popen.returncode
        proc = self.popen
        if proc.poll() is None:
            self.terminate()
            try:
                proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.killed = True
                with contextlib.suppress(ProcessLookupError):
                    os.kill(proc.pid, signal.SIGKILL)
                proc.wait(timeout=10)
        # Its children (LocalExecutor workers, the trigger runner, api-server workers) live in the
        # session this process leads: the process group id is its PID, which we started.
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, signal.SIGKILL)
        self.stopped = True
        return proc.returncode


def _spawn(name: str, args: list[str], env: dict[str, str], log_dir: Path, cwd: Path) -> Component:
    log = log_dir / f"{name}.log"
    with open(log, "ab") as out:
        popen = subprocess.Popen(
            args,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            env=env,
            cwd=cwd,
            start_new_session=True,
        )
    return Component(name, popen, log)


# --------------------------------------------------------------------------------------------------
# The fake Jogg server, as a separate process, driven over its admin routes
# --------------------------------------------------------------------------------------------------
@dataclass
class FakeJogg:
    """Client of a fake Jogg server process (admin routes only; they are never rate limited)."""

    component: Component
    url: str
    session: requests.Session = field(default_factory=requests.Session)

    def _get(self, path: str) -> Any:
        resp = self.session.get(self.url + path, timeout=30)
        resp.raise_for_status()
        return resp.json()

    def requests(self) -> list[dict[str, Any]]:
        """Every ``/v2`` request the server saw: method, path, headers, json, time, status."""
        return self._get("/_fake/requests")

    def tasks(self) -> dict[str, dict[str, Any]]:
        """task_id -> video_url, audio_url, playback_type, created_at, status."""
        return self._get("/_fake/tasks")

    def faults(self) -> list[dict[str, Any]]:
        """The faults still active."""
        return self._get("/_fake/faults")

    def set_status(self, task_id: str, status: str) -> None:
        """Force a task's status (e.g. ``success``): the Jogg job 'finishes' now."""
        resp = self.session.post(self.url + f"/_fake/tasks/{task_id}", json={"status": status}, timeout=30)
        resp.raise_for_status()
        body = resp.json()
        if body.get("code") != 0:
            raise DeploymentError(f"fake server refused to set {task_id} to {status}: {body}")

    def add_fault(self, **spec: Any) -> None:
        resp = self.session.post(self.url + "/_fake/faults", json=spec, timeout=30)
        resp.raise_for_status()

    def creates(self) -> list[dict[str, Any]]:
        return [r for r in self.requests() if r["method"] == "POST" and r["path"] == CREATE_PATH]


def start_fake_jogg(name: str, api_key: str, log_dir: Path, env: dict[str, str], *options: str) -> FakeJogg:
    # --no-ffmpeg: 200 results built with ffmpeg would cost ~0.7 s of CPU each; samples cost nothing
    args = [
        sys.executable,
        "-m",
        "airflow_provider_jogg.testing",
        "--port",
        "0",
        "--api-key",
        api_key,
        "--no-ffmpeg",
    ]
    component = _spawn(name, [*args, *options], env, log_dir, ROOT)

    def url() -> str | None:
        if not component.alive:
            raise DeploymentError(f"{name} exited with {component.popen.returncode}:\n{tail(component.log)}")
        match = re.search(r"^JOGG_FAKE_URL=(\S+)$", tail(component.log, 20), re.MULTILINE)
        return match.group(1) if match else None

    found = wait_until(f"{name} to print its URL", url, timeout=60, interval=0.1)
    return FakeJogg(component, found)


# --------------------------------------------------------------------------------------------------
# Deferral bookkeeping from the scheduler's output
# --------------------------------------------------------------------------------------------------
_UUID = r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}"
_PAUSED = re.compile(rf"Pausing task as DEFERRED.*?ti_id=({_UUID})")
# The scheduler logs one such line per processed executor event; after a deferral the TI is then
# deferred, or already scheduled/queued/running again when the trigger fired first.
_FINISHED = re.compile(rf"TaskInstance Finished: .*?ti_id=({_UUID}),.* state=(\w+),")
_TERMINAL_TI_STATES = frozenset(
    {"success", "failed", "up_for_retry", "upstream_failed", "skipped", "removed"}
)
#: fallback when the log lines cannot be found (format change): surely processed after this long
SETTLE_FALLBACK_SECONDS = 120.0


@dataclass
class DeferralWatcher:
    """Counts, per task instance id, the deferrals a worker made and the scheduler has processed.

    Airflow 3.3.2 fails a task whose trigger fires before the scheduler has processed the
    executor's event for the worker run that deferred it (apache/airflow#67287, fixed upstream by
    apache/airflow#68741 after 3.3.2). Tests that decide when a Jogg task finishes wait for that
    acknowledgement first, so they never provoke the race themselves.
    """

    log: Path
    offset: int = 0
    partial: bytes = b""
    paused: dict[str, int] = field(default_factory=dict)
    acked: dict[str, int] = field(default_factory=dict)

    def refresh(self) -> None:
        try:
            with open(self.log, "rb") as fh:
                fh.seek(self.offset)
                chunk = fh.read()
        except OSError:
            return
        self.offset += len(chunk)
        data = self.partial + chunk
        lines = data.split(b"\n")
        self.partial = lines.pop()
        for raw in lines:
            if b"Pausing task as DEFERRED" in raw:
                match = _PAUSED.search(raw.decode(errors="replace"))
                counts = self.paused
            elif b"TaskInstance Finished:" in raw:
                match = _FINISHED.search(raw.decode(errors="replace"))
                if match is not None and match.group(2) in _TERMINAL_TI_STATES:
                    continue
                counts = self.acked
            else:
                continue
            if match is not None:
                key = match.group(1).replace("-", "")
                counts[key] = counts.get(key, 0) + 1

    def settled(self, ti_id: str) -> bool:
        """The scheduler has processed every deferral of this task instance seen so far."""
        key = ti_id.replace("-", "")
        acked = self.acked.get(key, 0)
        return acked >= 1 and acked >= self.paused.get(key, 0)


# --------------------------------------------------------------------------------------------------
# The deployment
# --------------------------------------------------------------------------------------------------
@dataclass
class Deployment:
    """A temporary Airflow home + the processes of a LocalExecutor deployment on SQLite."""

    root: Path
    default_key: str
    load_key: str
    parallelism: int = 4
    load_rate_limit: float = 20.0
    components: dict[str, Component] = field(default_factory=dict)
    retired: list[Component] = field(default_factory=list)
    fakes: dict[str, FakeJogg] = field(default_factory=dict)
    api_port: int = 0
    env: dict[str, str] = field(default_factory=dict)
    timings: dict[str, float] = field(default_factory=dict)
    #: raw ``trigger`` rows seen while sensors were deferred (rows are deleted after firing)
    trigger_rows: dict[int, dict[str, Any]] = field(default_factory=dict)
    _api: requests.Session = field(default_factory=requests.Session)
    _watcher: DeferralWatcher | None = None
    #: settings added to (or replacing) the defaults of every Airflow process, applied before
    #: ``airflow db migrate``: e.g. another executor, metadata DB or broker (tests/e2e_distributed)
    env_overrides: dict[str, str] = field(default_factory=dict)
    #: the ``extra`` of the ``jogg_load`` connection (``{}``: every setting at the hook's default)
    load_conn_extra: dict[str, Any] = field(default_factory=lambda: dict(E2E_CONN_EXTRA))

    # ---- layout
    @property
    def home(self) -> Path:
        return self.root / "airflow-home"

    @property
    def dags_folder(self) -> Path:
        return self.root / "dags"

    @property
    def proc_logs(self) -> Path:
        return self.root / "proc"

    @property
    def db_path(self) -> Path:
        return self.home / "airflow.db"

    @property
    def task_logs(self) -> Path:
        return self.home / "logs"

    @property
    def api_url(self) -> str:
        return f"http://127.0.0.1:{self.api_port}"

    @property
    def default_fake(self) -> FakeJogg:
        return self.fakes["jogg_default"]

    @property
    def load_fake(self) -> FakeJogg:
        return self.fakes["jogg_load"]

    @property
    def triggerer(self) -> Component:
        return self.components["triggerer"]

    # ---- lifecycle
    def start(self) -> None:
        started = time.monotonic()
        for folder in (self.home, self.dags_folder, self.proc_logs):
            folder.mkdir(parents=True, exist_ok=True)
        shutil.copy(EXAMPLE_DAG, self.dags_folder / EXAMPLE_DAG.name)
        for dag_file in sorted(E2E_DAGS.glob("jogg_e2e_*.py")):
            shutil.copy(dag_file, self.dags_folder / dag_file.name)

        # Inherit the shell's PATH etc., but none of the AIRFLOW* settings of the test process: above
        # all not the deferral floor of 0 s the in-process suites run with (named here so that a
        # change of the filter cannot let it through unnoticed).
        base = {k: v for k, v in os.environ.items() if not k.startswith("AIRFLOW")}
        base.pop(MIN_DEFERRAL_ENV, None)
        base["PYTHONUNBUFFERED"] = "1"
        fake_env = base
        self.fakes["jogg_default"] = start_fake_jogg(
            "fake-jogg-default",
            self.default_key,
            self.proc_logs,
            fake_env,
            "--pending-seconds",
            "1",
            "--processing-seconds",
            "never",  # the tests decide when a Jogg task finishes
        )
        self.fakes["jogg_load"] = start_fake_jogg(
            "fake-jogg-load",
            self.load_key,
            self.proc_logs,
            fake_env,
            "--pending-seconds",
            "1",
            "--processing-seconds",
            "never",
            "--rate-limit",
            str(self.load_rate_limit),
        )

        from cryptography.fernet import Fernet

        self.api_port = free_port()
        self.env = {
            **base,
            "AIRFLOW_HOME": str(self.home),
            "AIRFLOW__CORE__DAGS_FOLDER": str(self.dags_folder),
            "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
            "AIRFLOW__CORE__EXECUTOR": "LocalExecutor",
            "AIRFLOW__CORE__PARALLELISM": str(self.parallelism),
            "AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION": "False",
            "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"{self.api_url}/execution/",
            "AIRFLOW__CORE__FERNET_KEY": Fernet.generate_key().decode(),
            "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_ALL_ADMINS": "True",
            "AIRFLOW__API_AUTH__JWT_SECRET": os.urandom(24).hex(),
            "AIRFLOW__API__HOST": "127.0.0.1",
            "AIRFLOW__API__PORT": str(self.api_port),
            "AIRFLOW__API__BASE_URL": self.api_url,
            "AIRFLOW__API__WORKERS": "1",
            "AIRFLOW__TRIGGERER__TRIGGERER_HEALTH_CHECK_THRESHOLD": "10",
            "AIRFLOW__TRIGGERER__JOB_HEARTBEAT_SEC": "2",
            "AIRFLOW__DAG_PROCESSOR__REFRESH_INTERVAL": "5",
            "AIRFLOW__DAG_PROCESSOR__MIN_FILE_PROCESS_INTERVAL": "60",
            "AIRFLOW__DAG_PROCESSOR__PARSING_PROCESSES": "1",
            "AIRFLOW__SCHEDULER__ENABLE_HEALTH_CHECK": "False",
            # After a scheduler crash its queued/running task instances are adopted or reset by the
            # next scheduler only on this check (default every 300 s), once the dead job's heartbeat
            # is older than [scheduler] scheduler_health_check_threshold (kept at its default 30 s).
            "AIRFLOW__SCHEDULER__ORPHANED_TASKS_CHECK_INTERVAL": "10",
            # The task supervisor can sleep this long after its task has exited before it notices
            # (it selects on no sockets at all); at the default 5 s each worker slot idles ~5 s per task.
            "AIRFLOW__WORKERS__MIN_HEARTBEAT_INTERVAL": "1",
            "AIRFLOW__LOGGING__LOGGING_LEVEL": "INFO",
            "AIRFLOW_CONN_JOGG_DEFAULT": self._conn(self.default_fake.url, self.default_key),
            "AIRFLOW_CONN_JOGG_LOAD": self._conn(self.load_fake.url, self.load_key, self.load_conn_extra),
        }
        self.env.update(self.env_overrides)
        if MIN_DEFERRAL_ENV in self.env:
            raise DeploymentError(
                f"{MIN_DEFERRAL_ENV} must not be set for a real deployment (got it in env_overrides): "
                "the deferral floor is what keeps Airflow's deferral race away"
            )

        t0 = time.monotonic()
        with open(self.proc_logs / "db-migrate.log", "wb") as out:
            migrate = subprocess.run(
                [AIRFLOW, "db", "migrate"],
                env=self.env,
                cwd=self.root,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                timeout=300,
                start_new_session=True,
                check=False,
            )
        if migrate.returncode != 0:
            raise DeploymentError(f"airflow db migrate failed:\n{tail(self.proc_logs / 'db-migrate.log')}")
        self.timings["db_migrate"] = time.monotonic() - t0

        t0 = time.monotonic()
        self._start(
            "api-server",
            [AIRFLOW, "api-server", "--host", "127.0.0.1", "--port", str(self.api_port), "--workers", "1"],
        )
        self.wait_until("the api-server's health endpoint", self._api_healthy, timeout=180)
        self.timings["api_server_ready"] = time.monotonic() - t0
        self._start("scheduler", [AIRFLOW, "scheduler", "--skip-serve-logs"])
        self._start("dag-processor", [AIRFLOW, "dag-processor"])
        self._start("triggerer", [AIRFLOW, "triggerer", "--skip-serve-logs"])
        self.timings["start"] = time.monotonic() - started

    def stop(self) -> dict[str, int | None]:
        """Stop every process by its PID (SIGTERM, then SIGKILL), Airflow first, fakes last."""
        codes: dict[str, int | None] = {}
        # the workers' side first, all at once; the api-server (their Execution API) after them
        first = [c for name, c in self.components.items() if name != "api-server"] + self.retired
        for component in first:
            component.terminate()
        for component in first:
            component.stop()
        if "api-server" in self.components:
            self.components["api-server"].stop()
        for component in (fake.component for fake in self.fakes.values()):
            component.terminate()
        for name, component in [
            *self.components.items(),
            *((f.component.name, f.component) for f in self.fakes.values()),
        ]:
            codes[name] = component.stop()
        return codes

    def _start(self, name: str, args: list[str]) -> Component:
        component = _spawn(name, args, self.env, self.proc_logs, self.root)
        self.components[name] = component
        return component

    def restart_triggerer(self, timeout: float = 60.0) -> tuple[Component, Component]:
        """SIGTERM the triggerer by PID, wait for it to exit, start a new one; returns (old, new)."""
        old = self.components.pop("triggerer")
        self.retired.append(old)
        old.stop(timeout=timeout)
        if old.killed:
            raise DeploymentError(
                f"the triggerer (pid {old.pid}) did not exit within {timeout:.0f} s of SIGTERM\n"
                + self.diagnostics()
            )
        return old, self.start_again("triggerer", old)

    def crash(self, name: str) -> Component:
        """SIGKILL a component's own PID (a crash: no cleanup, no goodbye to the DB); it is retired.

        Its children (a scheduler's LocalExecutor workers and their tasks, a triggerer's trigger
        runner) are left to themselves as after a real crash; they stay in the crashed process's
        session, which :meth:`stop` sweeps at the end.
        """
        component = self.components.pop(name)
        self.retired.append(component)
        with contextlib.suppress(ProcessLookupError):
            os.kill(component.pid, signal.SIGKILL)
        component.popen.wait(timeout=30)
        component.killed = True
        return component

    def start_again(self, name: str, old: Component) -> Component:
        """Start ``name`` again with ``old``'s command line; its output goes to ``<name>-<n>.log``."""
        log_name = f"{name}-{len(self.retired) + 1}"
        args = [str(a) for a in old.popen.args] if isinstance(old.popen.args, list) else [str(old.popen.args)]
        self._start(log_name, args)
        new = self.components.pop(log_name)
        self.components[name] = new
        return new

    def logs_of(self, name: str) -> list[Path]:
        """The output files of every process that ran as ``name`` (``scheduler.log``, ``scheduler-3.log``)."""
        return sorted(self.proc_logs.glob(f"{name}.log")) + sorted(self.proc_logs.glob(f"{name}-*.log"))

    def session_alive(self, component: Component) -> bool:
        """Whether any process is left in the session ``component`` led (e.g. orphans of a crash)."""
        try:
            os.killpg(component.pid, 0)
        except ProcessLookupError:
            return False
        except PermissionError:
            return True
        return True

    def component_environ(self, name: str) -> dict[str, str]:
        """The environment a running component really got (``/proc/<pid>/environ``)."""
        raw = Path(f"/proc/{self.components[name].pid}/environ").read_bytes()
        pairs = (item.partition(b"=") for item in raw.split(b"\0") if item)
        return {k.decode(errors="replace"): v.decode(errors="replace") for k, _, v in pairs}

    @staticmethod
    def _conn(url: str, key: str, extra: Mapping[str, Any] | None = None) -> str:
        conn: dict[str, Any] = {"conn_type": "jogg", "host": url, "password": key}
        extra = E2E_CONN_EXTRA if extra is None else extra
        if extra:
            conn["extra"] = dict(extra)
        return json.dumps(conn)

    # ---- waiting, with the evidence in the failure message
    def check_alive(self) -> None:
        dead = [c for c in self.components.values() if not c.alive]
        dead += [f.component for f in self.fakes.values() if not f.component.alive]
        if dead:
            names = ", ".join(f"{c.name} (exit {c.popen.returncode})" for c in dead)
            raise DeploymentError(f"component(s) died: {names}\n{self.diagnostics()}")

    def wait_until(self, what: str, probe: Callable[[], T], *, timeout: float, interval: float = 0.5) -> T:
        def checked() -> T:
            self.check_alive()
            return probe()

        return wait_until(what, checked, timeout=timeout, interval=interval, diagnostics=self.diagnostics)

    def diagnostics(self, lines: int = 60) -> str:
        parts = []
        for log in sorted(self.proc_logs.glob("*.log")):
            parts.append(f"----- {log.name} (last {lines} lines) -----\n{tail(log, lines)}")
        return "\n".join(parts)

    # ---- REST API (simple auth manager, all admins: no login)
    def _api_healthy(self) -> bool:
        try:
            resp = self._api.get(f"{self.api_url}/api/v2/monitor/health", timeout=5)
        except requests.RequestException:
            return False
        return resp.status_code == 200

    def api(self, method: str, path: str, **kwargs: Any) -> Any:
        resp = self._api.request(method, f"{self.api_url}/api/v2{path}", timeout=30, **kwargs)
        if resp.status_code >= 400:
            raise DeploymentError(f"{method} /api/v2{path} -> {resp.status_code}: {resp.text[:2000]}")
        return resp.json() if resp.content else None

    def wait_for_dag(self, dag_id: str, timeout: float = 180) -> None:
        def parsed() -> bool:
            resp = self._api.get(f"{self.api_url}/api/v2/dags/{dag_id}", timeout=30)
            return resp.status_code == 200 and not resp.json().get("is_paused")

        self.wait_until(f"DAG {dag_id} to be parsed and unpaused", parsed, timeout=timeout, interval=1)

    def trigger(self, dag_id: str, run_id: str, conf: dict[str, Any] | None = None) -> str:
        body = {"dag_run_id": run_id, "logical_date": None, "conf": conf or {}}
        return str(self.api("POST", f"/dags/{dag_id}/dagRuns", json=body)["dag_run_id"])

    def run_state(self, dag_id: str, run_id: str) -> str:
        return str(self.api("GET", f"/dags/{dag_id}/dagRuns/{run_id}")["state"])

    def wait_for_runs(self, dag_id: str, run_ids: Iterable[str], timeout: float) -> dict[str, str]:
        """Wait until every run has finished; returns run_id -> state ('success' or 'failed')."""
        pending = list(run_ids)
        states: dict[str, str] = {}

        def done() -> bool:
            for run_id in list(pending):
                state = self.run_state(dag_id, run_id)
                if state in ("success", "failed"):
                    states[run_id] = state
                    pending.remove(run_id)
            return not pending

        self.wait_until(f"runs {pending} of {dag_id} to finish", done, timeout=timeout, interval=1)
        return states

    # ---- metadata DB (read-only, short transactions: the components keep writing)
    def query(self, sql: str, params: Iterable[Any] = ()) -> list[sqlite3.Row]:
        conn = sqlite3.connect(f"file:{self.db_path}?mode=ro", uri=True, timeout=30)
        try:
            conn.row_factory = sqlite3.Row
            return conn.execute(sql, tuple(params)).fetchall()
        finally:
            conn.close()

    def task_states(self, dag_id: str, run_id: str) -> dict[tuple[str, int], str | None]:
        rows = self.query(
            "SELECT task_id, map_index, state FROM task_instance WHERE dag_id = ? AND run_id = ?",
            (dag_id, run_id),
        )
        return {(r["task_id"], r["map_index"]): r["state"] for r in rows}

    def xcoms(self, dag_id: str, run_id: str, task_id: str) -> dict[int, Any]:
        """map_index -> return_value of a task in a run (mapped or not)."""
        rows = self.query(
            "SELECT map_index, value FROM xcom WHERE dag_id = ? AND run_id = ? AND task_id = ? "
            "AND key = 'return_value'",
            (dag_id, run_id, task_id),
        )
        return {r["map_index"]: decode_xcom(r["value"]) for r in rows}

    def deferral_settled(self, row: Mapping[str, Any]) -> bool:
        """Whether the scheduler has processed the worker's exit for every deferral of a deferred TI
        (a :meth:`deferred_sensors` row)."""
        if self._watcher is None:
            self._watcher = DeferralWatcher(self.components["scheduler"].log)
        self._watcher.refresh()
        if self._watcher.settled(row["ti_id"]):
            return True
        created = datetime.datetime.fromisoformat(row["created_date"]).replace(tzinfo=datetime.timezone.utc)
        age = datetime.datetime.now(datetime.timezone.utc) - created
        return age.total_seconds() > SETTLE_FALLBACK_SECONDS

    def deferred_sensors(self, dag_id: str, run_id: str, task_id: str) -> list[sqlite3.Row]:
        """Deferred TIs of ``task_id`` with their trigger row (recorded in :attr:`trigger_rows`)."""
        rows = self.query(
            "SELECT ti.id AS ti_id, ti.map_index, ti.state, ti.next_method, t.id AS trigger_id, "
            "t.classpath, t.kwargs, "
            "t.triggerer_id, t.created_date FROM task_instance ti JOIN trigger t ON t.id = ti.trigger_id "
            "WHERE ti.dag_id = ? AND ti.run_id = ? AND ti.task_id = ? AND ti.state = 'deferred'",
            (dag_id, run_id, task_id),
        )
        for row in rows:
            self.trigger_rows[row["trigger_id"]] = dict(row)
        return rows

    def triggerer_jobs(self) -> list[sqlite3.Row]:
        return self.query(
            "SELECT id, state, hostname, start_date, end_date, latest_heartbeat FROM job "
            "WHERE job_type = 'TriggererJob' ORDER BY id"
        )

    def decrypt_trigger_kwargs(self, encrypted: str) -> str:
        """The JSON text of a trigger's kwargs, decrypted with this deployment's Fernet key."""
        from cryptography.fernet import Fernet

        if encrypted.startswith("{"):
            return encrypted
        fernet = Fernet(self.env["AIRFLOW__CORE__FERNET_KEY"].encode())
        return fernet.decrypt(encrypted.encode()).decode()

    def checkpoint_wal(self) -> dict[str, int]:
        """``PRAGMA wal_checkpoint(TRUNCATE)``: move the WAL into ``airflow.db``.

        Returns the ``-wal`` file's size before and after, and SQLite's ``busy`` flag (1: readers
        kept it from finishing; the ``-wal`` file must then be scanned too, which the caller does
        anyway)."""
        wal = self.db_path.with_name(self.db_path.name + "-wal")
        before = wal.stat().st_size if wal.exists() else 0
        conn = sqlite3.connect(str(self.db_path), timeout=60)
        try:
            busy, _log, _done = conn.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()
        finally:
            conn.close()
        after = wal.stat().st_size if wal.exists() else 0
        return {"busy": int(busy), "wal_bytes_before": before, "wal_bytes_after": after}


def decode_xcom(value: Any) -> Any:
    """An XCom value as stored by Airflow 3 (JSON text, sometimes JSON inside JSON)."""
    if isinstance(value, bytes):
        value = value.decode()
    for _ in range(2):
        if not isinstance(value, str):
            break
        try:
            value = json.loads(value)
        except ValueError:
            break
    return value
