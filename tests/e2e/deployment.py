"""A real Airflow deployment on loopback ports, for the end-to-end tests: LocalExecutor on SQLite.

One :class:`Deployment` owns a temporary ``AIRFLOW_HOME`` with a SQLite metadata DB, a DAGs folder,
and these processes, each started in its own session and stopped by its own PID
(:mod:`tests.harness.processes`):

- two fake Jogg servers (:mod:`tests.harness.fake`), each its own process: ``jogg_default`` (tasks
  stay ``processing`` until the test says otherwise, so every wait is observable) and ``jogg_load``
  (a request-rate limit that answers 429; tasks end when their URL's marker says, or when the test
  says); with a ``batch_key``, a third, ``jogg_batch``, for the batch operator's thousands of clips
  (its own rate limit, a bounded request log, results tagged with their task and clip);
- ``airflow api-server`` (started first: the workers call its Execution API),
- ``airflow scheduler`` (LocalExecutor, low parallelism), ``airflow dag-processor`` and
  ``airflow triggerer``.

Every process writes stdout and stderr to ``<root>/proc/<name>.log``; :meth:`Deployment.diagnostics`
returns their tails for a failure message. Nothing here ever writes an API key to disk: the keys
reach the processes through the environment and the fake servers' command lines only.
"""

from __future__ import annotations

import json
import os
import shutil
import sqlite3
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import requests

from airflow_provider_jogg.triggers.lip_sync import LipSyncTrigger
from tests.harness import airflow
from tests.harness.fake import FakeJogg, start_fake_jogg
from tests.harness.processes import AIRFLOW, ROOT, Process, inherited_env, log_tails, spawn
from tests.harness.waiting import HarnessError, free_port, wait_until

if TYPE_CHECKING:
    from collections.abc import Callable, Iterable, Mapping

EXAMPLE_DAG = ROOT / "example_dags" / "example_jogg_lip_sync.py"
#: the DAG files of every deployment here: the batch DAG both e2e suites run, this suite's own
DAG_FILES = (
    EXAMPLE_DAG,
    *sorted((ROOT / "tests" / "harness" / "dags").glob("jogg_*.py")),
    *sorted((Path(__file__).resolve().parent / "dags").glob("jogg_e2e_*.py")),
)

TRIGGER_CLASSPATH = f"{LipSyncTrigger.__module__}.{LipSyncTrigger.__qualname__}"
#: the provider's deferral floor; the unit suites set it to 0 (tests/conftest.py), a real deployment
#: must run with the default, so no spawned component may inherit it
MIN_DEFERRAL_ENV = "AIRFLOW__JOGG__MIN_DEFERRAL_SECONDS"
#: the extras of the connections unless a Deployment says otherwise (short backoff: quick tests)
E2E_CONN_EXTRA: dict[str, Any] = {"retry_backoff": 0.2, "timeout": 10, "api_platform": "airflow-e2e"}
#: fake Jogg options: a task stays ``processing`` after 1 s ``pending`` until its URL's marker or the
#: test ends it
FAKE_TIMING = ("--pending-seconds", "1", "--processing-seconds", "never")
#: the ``jogg_batch`` fake: thousands of tasks in one session, so only the newest requests are kept
#: in detail (``GET /_fake/counts`` stays exact), the shipped sample is every result (no ffmpeg per
#: task) and each result names its task and clip
BATCH_FAKE_OPTIONS = ("--max-recorded-requests", "500", "--no-ffmpeg", "--tag-results")

T = TypeVar("T")


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
    components: dict[str, Process] = field(default_factory=dict)
    retired: list[Process] = field(default_factory=list)
    fakes: dict[str, FakeJogg] = field(default_factory=dict)
    api_port: int = 0
    env: dict[str, str] = field(default_factory=dict)
    timings: dict[str, float] = field(default_factory=dict)
    #: raw ``trigger`` rows seen while sensors were deferred (rows are deleted after firing)
    trigger_rows: dict[int, dict[str, Any]] = field(default_factory=dict)
    _api: requests.Session = field(default_factory=requests.Session)
    #: settings added to (or replacing) the defaults of every Airflow process, applied before
    #: ``airflow db migrate``: e.g. another executor, metadata DB or broker (tests/e2e_distributed)
    env_overrides: dict[str, str] = field(default_factory=dict)
    #: the ``extra`` of the ``jogg_load`` connection (``{}``: every setting at the hook's default)
    load_conn_extra: dict[str, Any] = field(default_factory=lambda: dict(E2E_CONN_EXTRA))
    #: the key of the ``jogg_batch`` account (``None``: no such fake, no such connection)
    batch_key: str | None = None
    #: requests per second the ``jogg_batch`` fake takes (429 above)
    batch_rate_limit: float = 40.0

    # ---- layout: the Airflow home (SQLite DB, task logs), the DAGs folder, the processes' output
    home: Path = field(init=False)
    dags_folder: Path = field(init=False)
    proc_logs: Path = field(init=False)

    def __post_init__(self) -> None:
        self.home, self.dags_folder, self.proc_logs = (
            self.root / n for n in ("airflow-home", "dags", "proc")
        )

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
    def batch_fake(self) -> FakeJogg:
        return self.fakes["jogg_batch"]

    @property
    def triggerer(self) -> Process:
        return self.components["triggerer"]

    # ---- lifecycle
    def start(self) -> None:
        started = time.monotonic()
        for folder in (self.home, self.dags_folder, self.proc_logs):
            folder.mkdir(parents=True, exist_ok=True)
        for dag_file in DAG_FILES:
            shutil.copy(dag_file, self.dags_folder / dag_file.name)

        # None of the AIRFLOW* settings of the test process reach a component: above all not the
        # deferral floor of 0 s the in-process suites run with (checked below).
        fake_env = inherited_env()
        self.fakes["jogg_default"] = start_fake_jogg(
            "fake-jogg-default", self.default_key, *FAKE_TIMING, log_dir=self.proc_logs, env=fake_env
        )
        self.fakes["jogg_load"] = start_fake_jogg(
            "fake-jogg-load",
            self.load_key,
            *FAKE_TIMING,
            "--rate-limit",
            f"{self.load_rate_limit:g}",
            log_dir=self.proc_logs,
            env=fake_env,
        )
        if self.batch_key is not None:
            self.fakes["jogg_batch"] = start_fake_jogg(
                "fake-jogg-batch",
                self.batch_key,
                *FAKE_TIMING,
                "--rate-limit",
                f"{self.batch_rate_limit:g}",
                *BATCH_FAKE_OPTIONS,
                log_dir=self.proc_logs,
                env=fake_env,
            )

        from cryptography.fernet import Fernet

        self.api_port = free_port()
        self.env = {
            **airflow.airflow_env(self.home, self.dags_folder),
            "AIRFLOW__CORE__EXECUTOR": "LocalExecutor",
            "AIRFLOW__CORE__PARALLELISM": str(self.parallelism),
            "AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION": "False",
            "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"{self.api_url}/execution/",
            "AIRFLOW__CORE__FERNET_KEY": Fernet.generate_key().decode(),
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
        if self.batch_key is not None:
            self.env["AIRFLOW_CONN_JOGG_BATCH"] = self._conn(self.batch_fake.url, self.batch_key)
        self.env.update(self.env_overrides)
        if MIN_DEFERRAL_ENV in self.env:
            raise HarnessError(
                f"{MIN_DEFERRAL_ENV} must not be set for a real deployment (got it in env_overrides): "
                "the deferral floor is what keeps Airflow's deferral race away"
            )

        t0 = time.monotonic()
        airflow.migrate(self.env, self.proc_logs, self.root)
        self.timings["db_migrate"] = time.monotonic() - t0

        t0 = time.monotonic()
        self._start("api-server", airflow.api_server_args(self.api_port))
        self.wait_until(
            "the api-server's health endpoint",
            lambda: airflow.api_healthy(self.api_url, self._api),
            timeout=180,
        )
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
        for component in (fake.process for fake in self.fakes.values()):
            component.terminate()
        for name, component in [
            *self.components.items(),
            *((f.process.name, f.process) for f in self.fakes.values()),
        ]:
            codes[name] = component.stop()
        return codes

    def _start(self, name: str, args: list[str]) -> Process:
        component = spawn(name, args, env=self.env, log_dir=self.proc_logs, cwd=self.root)
        self.components[name] = component
        return component

    def restart_triggerer(self, timeout: float = 60.0) -> tuple[Process, Process]:
        """SIGTERM the triggerer by PID, wait for it to exit, start a new one; returns (old, new)."""
        old = self.components.pop("triggerer")
        self.retired.append(old)
        old.stop(timeout=timeout)
        if old.killed:
            raise HarnessError(
                f"the triggerer (pid {old.pid}) did not exit within {timeout:.0f} s of SIGTERM\n"
                + self.diagnostics()
            )
        return old, self.start_again("triggerer", old)

    def crash(self, name: str) -> Process:
        """SIGKILL a component's own PID (a crash: no cleanup, no goodbye to the DB); it is retired.

        Its children (a scheduler's LocalExecutor workers and their tasks, a triggerer's trigger
        runner) are left to themselves as after a real crash; they stay in the crashed process's
        session, which :meth:`stop` sweeps at the end.
        """
        component = self.components.pop(name)
        self.retired.append(component)
        component.crash()
        return component

    def start_again(self, name: str, old: Process) -> Process:
        """Start ``name`` again with ``old``'s command line; its output goes to ``<name>-<n>.log``."""
        log_name = f"{name}-{len(self.retired) + 1}"
        self._start(log_name, old.args)
        new = self.components.pop(log_name)
        self.components[name] = new
        return new

    def respawn(self, name: str) -> Process:
        """Start an Airflow component that has exited again, with its own command line (what a
        service manager's restart policy does); the exited one is kept in :attr:`retired`."""
        old = self.components.pop(name)
        if old.alive:
            self.components[name] = old
            raise HarnessError(f"{name} (pid {old.pid}) is still running")
        old.stop()  # reaps it and sweeps its process group
        self.retired.append(old)
        return self._start(name, old.args)

    def logs_of(self, name: str) -> list[Path]:
        """The output files of every process that ran as ``name`` (``scheduler.log``, ``scheduler-3.log``)."""
        return sorted(self.proc_logs.glob(f"{name}.log")) + sorted(self.proc_logs.glob(f"{name}-*.log"))

    def component_environ(self, name: str) -> dict[str, str]:
        """The environment a running component really got (``/proc/<pid>/environ``)."""
        return self.components[name].environ()

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
        dead += [f.process for f in self.fakes.values() if not f.process.alive]
        if dead:
            names = ", ".join(f"{c.name} (exit {c.popen.returncode})" for c in dead)
            raise HarnessError(f"component(s) died: {names}\n{self.diagnostics()}")

    def wait_until(self, what: str, probe: Callable[[], T], *, timeout: float, interval: float = 0.5) -> T:
        def checked() -> T:
            self.check_alive()
            return probe()

        return wait_until(what, checked, timeout=timeout, interval=interval, diagnostics=self.diagnostics)

    def diagnostics(self, lines: int = 60) -> str:
        return log_tails(sorted(self.proc_logs.glob("*.log")), lines)

    # ---- REST API (simple auth manager, all admins: no login)
    def api(self, method: str, path: str, **kwargs: Any) -> Any:
        resp = self._api.request(method, f"{self.api_url}/api/v2{path}", timeout=30, **kwargs)
        if resp.status_code >= 400:
            raise HarnessError(f"{method} /api/v2{path} -> {resp.status_code}: {resp.text[:2000]}")
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
