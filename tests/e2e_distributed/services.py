"""A distributed Airflow deployment on loopback: CeleryExecutor, Redis broker, PostgreSQL metadata DB.

:class:`DistributedDeployment` reuses :class:`tests.e2e.deployment.Deployment` (the temporary
``AIRFLOW_HOME``, the fake Jogg servers, api-server, scheduler, dag-processor, the first triggerer,
the REST API helpers and the log capture) and adds:

- its own ``redis-server`` (free loopback port, no persistence) as the Celery broker;
- its own PostgreSQL cluster (``initdb`` in a temp dir, free loopback port, unix socket in the temp
  dir, password auth) as the metadata DB and the Celery result backend. PostgreSQL refuses to run as
  root: as root, the cluster runs as the ``postgres`` system user (Debian's package creates it);
- two ``airflow celery worker`` processes (distinct ``--celery-hostname``, concurrency 2 each);
- a second ``airflow triggerer``;
- a third fake Jogg server, ``jogg_dist`` (connection with default extras), rate limited, whose tasks
  finish a set time after the first status answer about them (``--clock-from-first-status``: for a
  sensor, its check before deferring), the time of their URL's lane (:data:`USER_LANES`), for the
  user-like DAG in ``dags/`` (copied into the DAGs folder next to the e2e suite's).

PostgreSQL can be restarted in place (:meth:`DistributedDeployment.restart_postgres`: fast shutdown
by its PID, same data dir and port), and an Airflow component that exited can be started again with
its own command line (:meth:`DistributedDeployment.respawn`), as a service manager would.

Every process is started in its own session and stopped by its own PID (Airflow first, then Redis
and PostgreSQL), and the temp dirs are removed by the fixture. The system's own Redis/PostgreSQL
services and clusters are never touched.
"""

from __future__ import annotations

import contextlib
import datetime
import json
import os
import pwd
import re
import secrets
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tests.e2e.deployment import (
    AIRFLOW,
    SETTLE_FALLBACK_SECONDS,
    Component,
    DeferralWatcher,
    Deployment,
    DeploymentError,
    FakeJogg,
    free_port,
    start_fake_jogg,
    tail,
    wait_until,
)

if TYPE_CHECKING:
    from collections.abc import Iterable, Mapping

    import psycopg2.extensions

TRIGGERER_NAMES = ("triggerer", "triggerer-b")  # the base class starts the first one
WORKER_NAMES = ("celery-worker-a", "celery-worker-b")
WORKER_CONCURRENCY = 2
DIST_DAGS = Path(__file__).resolve().parent / "dags"
#: URL marker (a path segment of the user-like DAG's pairs) -> seconds the fake ``jogg_dist`` keeps
#: those Jogg tasks processing after their 1 s pending (``None``: until the test finishes them), both
#: counted from the first status answer about the task (the sensor's check before it defers, or the
#: trigger's first poll when that check was refused with 429): Jogg tasks that finish within seconds
#: of their deferral, however loaded the machine, next to tasks that finish long after it.
USER_LANES: dict[str, float | None] = {
    "/q00/": 0.0,
    "/q03/": 3.0,
    "/q06/": 6.0,
    "/q12/": 12.0,
    "/q25/": 25.0,
    "/late/": None,
}


def postgres_bin_dir() -> Path:
    """``$JOGG_PG_BIN`` or the newest ``/usr/lib/postgresql/<version>/bin`` holding ``initdb``."""
    if os.environ.get("JOGG_PG_BIN"):
        return Path(os.environ["JOGG_PG_BIN"])
    found = sorted(
        (p.parent for p in Path("/usr/lib/postgresql").glob("*/bin/initdb")),
        key=lambda p: int(p.parent.name) if p.parent.name.isdigit() else 0,
    )
    if not found:
        raise DeploymentError(
            "no PostgreSQL server binaries (/usr/lib/postgresql/*/bin/initdb): "
            "run scripts/install_distributed_deps.sh"
        )
    return found[-1]


def redis_server_binary() -> str:
    path = shutil.which("redis-server")
    if path is None:
        raise DeploymentError("redis-server is not installed: run scripts/install_distributed_deps.sh")
    return path


# --------------------------------------------------------------------------------------------------
# Redis and PostgreSQL, each its own process started and stopped by PID
# --------------------------------------------------------------------------------------------------
@dataclass
class Service(Component):
    """A server process stopped with its own shutdown signal (PostgreSQL: SIGINT, "fast" shutdown;
    its SIGTERM would wait for every client to disconnect)."""

    stop_signal: int = signal.SIGTERM

    def terminate(self) -> None:
        if not self.terminated and self.popen.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.popen.pid, self.stop_signal)
        self.terminated = True


def _spawn_service(
    name: str,
    args: list[str],
    log_dir: Path,
    cwd: Path,
    stop_signal: int,
    env: dict[str, str] | None = None,
    user: str | None = None,
) -> Service:
    log = log_dir / f"{name}.log"
    run_as: dict[str, Any] = {}
    if user is not None:
        entry = pwd.getpwnam(user)
        run_as = {"user": entry.pw_uid, "group": entry.pw_gid, "extra_groups": []}
    with open(log, "ab") as out:
        popen = subprocess.Popen(
            args,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            env=env,
            cwd=cwd,
            start_new_session=True,
            **run_as,
        )
    return Service(name, popen, log, stop_signal=stop_signal)


@dataclass
class Redis:
    """``redis-server`` on a free loopback port; no RDB/AOF files, nothing outside ``workdir``."""

    workdir: Path
    log_dir: Path
    port: int = 0
    service: Service | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        self.port = free_port()
        args = [
            redis_server_binary(),
            "--port", str(self.port),
            "--bind", "127.0.0.1",
            "--save", "",
            "--appendonly", "no",
            "--daemonize", "no",
            "--dir", str(self.workdir),
            "--logfile", "",
        ]  # fmt: skip
        self.service = _spawn_service("redis", args, self.log_dir, self.workdir, signal.SIGTERM)
        wait_until("redis-server to answer PING", self._ping, timeout=30, interval=0.1)

    def _ping(self) -> bool:
        assert self.service is not None
        if not self.service.alive:
            code = self.service.popen.returncode
            raise DeploymentError(f"redis-server exited with {code}:\n{tail(self.service.log)}")
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=2) as sock:
                sock.sendall(b"PING\r\n")
                return sock.recv(64).startswith(b"+PONG")
        except OSError:
            return False

    def command(self, *args: str) -> bytes:
        """One Redis command (RESP); the raw first line of the reply, e.g. ``b":0"`` for LLEN."""
        request = f"*{len(args)}\r\n".encode() + b"".join(
            f"${len(arg.encode())}\r\n".encode() + arg.encode() + b"\r\n" for arg in args
        )
        with socket.create_connection(("127.0.0.1", self.port), timeout=5) as sock:
            sock.sendall(request)
            data = b""
            while b"\r\n" not in data:
                chunk = sock.recv(4096)
                if not chunk:
                    break
                data += chunk
        return data.split(b"\r\n", 1)[0]

    def integer(self, *args: str) -> int:
        reply = self.command(*args)
        if not reply.startswith(b":"):
            raise DeploymentError(f"redis {args}: unexpected reply {reply!r}")
        return int(reply[1:])

    def info(self, section: str = "clients") -> dict[str, str]:
        """``INFO <section>`` as a dict (the test reads connected_clients, ...)."""
        with socket.create_connection(("127.0.0.1", self.port), timeout=5) as sock:
            sock.sendall(f"INFO {section}\r\n".encode())
            data = b""
            while True:
                chunk = sock.recv(65536)
                if not chunk:
                    break
                data += chunk
                # "$<len>\r\n<payload>\r\n"
                header, _, rest = data.partition(b"\r\n")
                if header.startswith(b"$") and len(rest) >= int(header[1:]) + 2:
                    break
        body = data.partition(b"\r\n")[2].decode(errors="replace")
        lines = [line for line in body.splitlines() if ":" in line and not line.startswith("#")]
        return dict(line.split(":", 1) for line in lines)


@dataclass
class Postgres:
    """A throwaway PostgreSQL cluster: ``initdb`` in ``workdir``, one database ``airflow``.

    As root the server runs as ``run_as`` (default ``postgres``), which then owns ``workdir``. It
    listens on 127.0.0.1 only (and on a unix socket inside ``workdir``), with password (SCRAM) auth.
    """

    workdir: Path
    log_dir: Path
    run_as: str | None = None
    port: int = 0
    user: str = "airflow"
    database: str = "airflow"
    password: str = field(default_factory=lambda: secrets.token_hex(16))
    service: Service | None = None
    bin_dir: Path = field(default_factory=postgres_bin_dir)
    timings: dict[str, float] = field(default_factory=dict)

    @property
    def data_dir(self) -> Path:
        return self.workdir / "data"

    @property
    def socket_dir(self) -> Path:
        return self.workdir / "socket"

    def url(self, driver: str = "postgresql+psycopg2", database: str | None = None) -> str:
        return f"{driver}://{self.user}:{self.password}@127.0.0.1:{self.port}/{database or self.database}"

    def _env(self) -> dict[str, str]:
        # a clean environment: no PG* settings of the caller, a locale that initdb accepts
        return {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "LC_ALL": "C.UTF-8", "LANG": "C.UTF-8"}

    def _run_as_kwargs(self) -> dict[str, Any]:
        if self.run_as is None:
            return {}
        entry = pwd.getpwnam(self.run_as)
        return {"user": entry.pw_uid, "group": entry.pw_gid, "extra_groups": []}

    def start(self) -> None:
        if os.geteuid() == 0 and self.run_as is None:
            self.run_as = "postgres"
        if self.run_as is not None:
            try:
                entry = pwd.getpwnam(self.run_as)
            except KeyError as exc:
                raise DeploymentError(
                    f"PostgreSQL refuses to run as root and there is no '{self.run_as}' user: "
                    "run scripts/install_distributed_deps.sh (Debian's postgresql creates it)"
                ) from exc
            os.chown(self.workdir, entry.pw_uid, entry.pw_gid)
        self.workdir.chmod(0o700)
        self.socket_dir.mkdir()
        pwfile = self.workdir / "pwfile"
        pwfile.write_text(self.password + "\n")
        pwfile.chmod(0o600)
        if self.run_as is not None:
            entry = pwd.getpwnam(self.run_as)
            for path in (self.socket_dir, pwfile):
                os.chown(path, entry.pw_uid, entry.pw_gid)

        t0 = time.monotonic()
        log = self.log_dir / "postgres-initdb.log"
        initdb = [
            str(self.bin_dir / "initdb"),
            "--pgdata", str(self.data_dir),
            "--username", self.user,
            "--pwfile", str(pwfile),
            "--auth", "scram-sha-256",
            "--encoding", "UTF8",
            "--no-locale",
            "--no-sync",
        ]  # fmt: skip
        with open(log, "wb") as out:
            result = subprocess.run(
                initdb,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                env=self._env(),
                cwd=self.workdir,
                timeout=120,
                check=False,
                start_new_session=True,
                **self._run_as_kwargs(),
            )
        pwfile.unlink()
        if result.returncode != 0:
            raise DeploymentError(f"initdb failed ({result.returncode}):\n{tail(log)}")
        self.timings["initdb"] = time.monotonic() - t0

        t0 = time.monotonic()
        self.port = free_port()
        self._launch()
        with contextlib.closing(self.connect("postgres")) as conn:
            conn.autocommit = True
            with conn.cursor() as cur:
                cur.execute(f'CREATE DATABASE "{self.database}"')
        self.timings["start"] = time.monotonic() - t0

    def _launch(self) -> None:
        """Start the server on ``self.port`` over the existing data dir; wait until it accepts connections."""
        args = [
            str(self.bin_dir / "postgres"),
            "-D", str(self.data_dir),
            "-p", str(self.port),
            "-c", "listen_addresses=127.0.0.1",
            "-c", f"unix_socket_directories={self.socket_dir}",
            "-c", "max_connections=200",
            # a throwaway cluster: durability buys nothing here, and the machine has 2 cores
            "-c", "fsync=off",
            "-c", "synchronous_commit=off",
            "-c", "full_page_writes=off",
            "-c", "log_min_messages=warning",
            "-c", "log_line_prefix=%m [%p] ",
        ]  # fmt: skip
        self.service = _spawn_service(
            "postgres", args, self.log_dir, self.workdir, signal.SIGINT, env=self._env(), user=self.run_as
        )
        wait_until("PostgreSQL to accept connections", self._ready, timeout=60, interval=0.2)

    def restart(self, timeout: float = 60.0) -> tuple[Service, float, float]:
        """Fast shutdown (SIGINT to the postmaster's PID: clients are disconnected, open transactions
        roll back), wait for it to exit, start it again on the same data dir and port.

        Returns (the old server process, seconds until it had exited, seconds of outage in all).
        """
        old = self.service
        assert old is not None
        t0 = time.monotonic()
        old.stop(timeout=timeout)
        if old.killed:
            raise DeploymentError(f"postgres (pid {old.pid}) ignored its fast shutdown for {timeout:.0f} s")
        down = time.monotonic() - t0
        self._launch()
        return old, down, time.monotonic() - t0

    def _ready(self) -> bool:
        import psycopg2

        assert self.service is not None
        if not self.service.alive:
            code = self.service.popen.returncode
            raise DeploymentError(f"postgres exited with {code}:\n{tail(self.service.log)}")
        try:
            self.connect("postgres").close()
        except psycopg2.OperationalError:
            return False
        return True

    def connect(self, database: str | None = None) -> psycopg2.extensions.connection:
        import psycopg2

        return psycopg2.connect(
            host="127.0.0.1",
            port=self.port,
            user=self.user,
            password=self.password,
            dbname=database or self.database,
            connect_timeout=10,
            application_name="jogg-e2e-test",
        )


# --------------------------------------------------------------------------------------------------
# The deployment
# --------------------------------------------------------------------------------------------------
@dataclass
class DistributedDeployment(Deployment):
    """:class:`Deployment` on CeleryExecutor + Redis + PostgreSQL, with two workers and two triggerers."""

    services_root: Path | None = None
    redis: Redis | None = None
    postgres: Postgres | None = None
    #: triggerer component name -> its TriggererJob id
    triggerer_job_ids: dict[str, int] = field(default_factory=dict)
    dist_key: str = field(default_factory=lambda: f"sk-jogg-E2E-DIST-USER-{secrets.token_hex(12)}")
    #: requests per second the ``jogg_dist`` fake answers before it says 429 (``Retry-After: 1``)
    dist_rate_limit: float = 3.0
    dist_lanes: dict[str, float | None] = field(default_factory=lambda: dict(USER_LANES))
    #: component name -> its command line, to start it again (:meth:`respawn`)
    _args: dict[str, list[str]] = field(default_factory=dict)
    _deferral_log_reader: TaskLogDeferrals | None = None
    _db: Any = None

    # ---- lifecycle
    def start(self) -> None:
        started = time.monotonic()
        self.proc_logs.mkdir(parents=True, exist_ok=True)
        self.services_root = Path(tempfile.mkdtemp(prefix="jogg-e2e-dist-services-"))
        self.services_root.chmod(0o711)  # the postgres user must reach its own dir inside
        (self.services_root / "redis").mkdir()
        (self.services_root / "postgres").mkdir()
        self.dags_folder.mkdir(parents=True, exist_ok=True)
        for dag_file in sorted(DIST_DAGS.glob("jogg_dist_*.py")):
            shutil.copy(dag_file, self.dags_folder / dag_file.name)
        self._start_dist_fake()
        t0 = time.monotonic()
        self.redis = Redis(self.services_root / "redis", self.proc_logs)
        self.redis.start()
        self.timings["redis"] = time.monotonic() - t0
        self.postgres = Postgres(self.services_root / "postgres", self.proc_logs)
        self.postgres.start()
        self.timings["postgres_initdb"] = self.postgres.timings["initdb"]
        self.timings["postgres_start"] = self.postgres.timings["start"]

        db_url = self.postgres.url("postgresql+psycopg2")
        self.env_overrides = {
            "AIRFLOW__CORE__EXECUTOR": "CeleryExecutor",
            "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": db_url,
            "AIRFLOW__CELERY__BROKER_URL": self.redis.url,
            "AIRFLOW__CELERY__RESULT_BACKEND": "db+" + db_url,
            "AIRFLOW__CELERY__WORKER_CONCURRENCY": str(WORKER_CONCURRENCY),
            # one process sends the Celery messages (the default is one per core minus one)
            "AIRFLOW__CELERY__SYNC_PARALLELISM": "1",
            "AIRFLOW__LOGGING__CELERY_LOGGING_LEVEL": "INFO",
            # a user's connection: no extras, the hook's defaults (3 retries, 1 s backoff, 100 req/s)
            "AIRFLOW_CONN_JOGG_DIST": json.dumps(
                {"conn_type": "jogg", "host": self.dist_fake.url, "password": self.dist_key}
            ),
            **self.env_overrides,
        }
        # the base class: fake Jogg servers, db migrate, api-server, scheduler, dag-processor, triggerer
        super().start()

        # Name the triggerers' jobs: the second one starts once the first one's job row exists.
        t0 = time.monotonic()
        self.triggerer_job_ids[TRIGGERER_NAMES[0]] = self._wait_new_triggerer_job(set())
        for name in WORKER_NAMES:
            hostname = f"{name}@%h"
            self._start(
                name,
                [
                    AIRFLOW, "celery", "worker",
                    "--celery-hostname", hostname,
                    "--concurrency", str(WORKER_CONCURRENCY),
                    "--skip-serve-logs",
                    "--without-gossip",
                    "--without-mingle",
                ],
            )  # fmt: skip
        self._start(TRIGGERER_NAMES[1], [AIRFLOW, "triggerer", "--skip-serve-logs"])
        self.triggerer_job_ids[TRIGGERER_NAMES[1]] = self._wait_new_triggerer_job(
            set(self.triggerer_job_ids.values())
        )
        self.wait_until("both Celery workers to be ready", self._workers_ready, timeout=180, interval=1)
        self.timings["workers_and_triggerers"] = time.monotonic() - t0
        self.timings["start"] = time.monotonic() - started

    @property
    def dist_fake(self) -> FakeJogg:
        return self.fakes["jogg_dist"]

    def _start_dist_fake(self) -> None:
        # like the base class's fakes: the shell's environment without any AIRFLOW* setting
        env = {k: v for k, v in os.environ.items() if not k.startswith("AIRFLOW")}
        env["PYTHONUNBUFFERED"] = "1"
        options = ["--pending-seconds", "1", "--processing-seconds", "never", "--clock-from-first-status"]
        options += ["--rate-limit", f"{self.dist_rate_limit:g}"]
        for marker, seconds in self.dist_lanes.items():
            options += [
                "--processing-seconds-for",
                f"{marker}={'never' if seconds is None else f'{seconds:g}'}",
            ]
        self.fakes["jogg_dist"] = start_fake_jogg(
            "fake-jogg-dist", self.dist_key, self.proc_logs, env, *options
        )

    def _start(self, name: str, args: list[str]) -> Component:
        self._args[name] = list(args)
        return super()._start(name, args)

    def respawn(self, name: str) -> Component:
        """Start an Airflow component that has exited again, with its own command line (what a
        service manager's restart policy does); the exited one is kept in :attr:`retired`."""
        old = self.components.pop(name)
        if old.alive:
            self.components[name] = old
            raise DeploymentError(f"{name} (pid {old.pid}) is still running")
        old.stop()  # reaps it and sweeps its process group
        self.retired.append(old)
        return self._start(name, self._args[name])

    def restart_postgres(self) -> dict[str, float]:
        """Restart the metadata DB in place (see :meth:`Postgres.restart`); timings in seconds."""
        assert self.postgres is not None
        self.close_db()
        old, down, outage = self.postgres.restart()
        self.retired.append(old)
        return {"stopped_after": down, "outage": outage}

    def _wait_new_triggerer_job(self, known: set[int]) -> int:
        def new_job() -> int | None:
            ids = [r["id"] for r in self.triggerer_jobs() if r["state"] == "running" and r["id"] not in known]
            return ids[-1] if ids else None

        found = self.wait_until("a new triggerer job to heartbeat", new_job, timeout=180, interval=0.5)
        assert found is not None
        return found

    def _workers_ready(self) -> bool:
        # Celery logs "<hostname> ready." once the worker consumes from its queue
        return all(" ready." in tail(self.components[name].log, 400) for name in WORKER_NAMES)

    def stop(self) -> dict[str, int | None]:
        """Airflow and the fakes (base class), then Redis and PostgreSQL; all by PID. Idempotent."""
        self.close_db()
        codes = super().stop()
        for svc in self.services():
            svc.terminate()
            codes[svc.name] = svc.stop(timeout=60)
        return codes

    def remove_service_dirs(self) -> None:
        if self.services_root is not None:
            shutil.rmtree(self.services_root, ignore_errors=True)

    def all_components(self) -> list[Component]:
        """Every process this deployment started (including the retired / killed ones)."""
        found: list[Component] = [*self.components.values(), *self.retired]
        found += [fake.component for fake in self.fakes.values()]
        return found + self.services()

    def services(self) -> list[Service]:
        """The Redis and PostgreSQL server processes (those started so far)."""
        found = [self.redis.service if self.redis else None, self.postgres.service if self.postgres else None]
        return [svc for svc in found if svc is not None]

    def check_alive(self) -> None:
        super().check_alive()
        for svc in self.services():
            if not svc.alive:
                raise DeploymentError(f"{svc.name} died (exit {svc.popen.returncode})\n{self.diagnostics()}")

    def kill_triggerer(self, name: str) -> Component:
        """SIGKILL one triggerer's own PID (no SIGTERM, no cleanup): a crashed triggerer."""
        component = self.components.pop(name)
        self.retired.append(component)
        os.kill(component.pid, signal.SIGKILL)
        component.popen.wait(timeout=30)
        component.killed = True
        return component

    # ---- the metadata DB is PostgreSQL: the base class's helpers call this with "?" placeholders
    def _connection(self) -> Any:
        import psycopg2

        if self._db is None or self._db.closed:
            assert self.postgres is not None
            self._db = self.postgres.connect()
            self._db.autocommit = True  # every query sees the latest commits; no open transaction
        try:
            with self._db.cursor() as cur:
                cur.execute("SELECT 1")
        except psycopg2.Error:
            self._db.close()
            self._db = self.postgres.connect() if self.postgres else None
            self._db.autocommit = True
        return self._db

    def close_db(self) -> None:
        if self._db is not None:
            with contextlib.suppress(Exception):
                self._db.close()
            self._db = None

    def query(self, sql: str, params: Iterable[Any] = ()) -> list[Any]:
        """Rows that support ``row["column"]`` and ``row[0]`` (psycopg2's DictRow), like sqlite3.Row."""
        import psycopg2.extras

        with self._connection().cursor(cursor_factory=psycopg2.extras.DictCursor) as cur:
            cur.execute(sql.replace("?", "%s"), tuple(params))
            return cur.fetchall()

    # ---- deferral bookkeeping: the task logs hold the deferrals, the scheduler's output their processing
    def deferral_settled(self, row: Mapping[str, Any]) -> bool:
        """Whether the scheduler has processed the executor event of every deferral of this TI.

        On CeleryExecutor the "Pausing task as DEFERRED" lines are not in any component's output
        (as they are with LocalExecutor, whose workers are the scheduler's children): they are read
        from the task attempt logs, which carry the ``ti_id``. Same rule as the base class otherwise.
        """
        if self._watcher is None:
            self._watcher = DeferralWatcher(self.components["scheduler"].log)
        self._watcher.refresh()
        self._task_log_deferrals.refresh()
        key = str(row["ti_id"]).replace("-", "")
        acked = self._watcher.acked.get(key, 0)
        if acked >= 1 and acked >= self._task_log_deferrals.paused.get(key, 0):
            return True
        created = row["created_date"]
        if isinstance(created, str):
            created = datetime.datetime.fromisoformat(created).replace(tzinfo=datetime.timezone.utc)
        age = datetime.datetime.now(datetime.timezone.utc) - created
        return age.total_seconds() > SETTLE_FALLBACK_SECONDS

    def deferral_counts(self) -> tuple[int, int]:
        """(deferrals logged by tasks, deferrals whose executor event the scheduler processed)."""
        paused = sum(self._task_log_deferrals.paused.values())
        acked = sum(self._watcher.acked.values()) if self._watcher is not None else 0
        return paused, acked

    @property
    def _task_log_deferrals(self) -> TaskLogDeferrals:
        if self._deferral_log_reader is None:
            self._deferral_log_reader = TaskLogDeferrals(self.task_logs)
        return self._deferral_log_reader


_PAUSED_JSON = re.compile(r'"event":\s*"Pausing task as DEFERRED.*?"ti_id":\s*"([0-9a-f-]{36})"')


@dataclass
class TaskLogDeferrals:
    """Counts "Pausing task as DEFERRED" lines per ``ti_id`` in the task attempt logs (JSON lines),
    reading each file incrementally."""

    logs: Path
    paused: dict[str, int] = field(default_factory=dict)
    _offsets: dict[Path, int] = field(default_factory=dict)
    _partial: dict[Path, bytes] = field(default_factory=dict)

    def refresh(self) -> None:
        for path in self.logs.glob("dag_id=*/run_id=*/task_id=*/**/attempt=*.log"):
            if ".log.trigger." in path.name:
                continue
            offset = self._offsets.get(path, 0)
            try:
                if path.stat().st_size <= offset:
                    continue
                with open(path, "rb") as fh:
                    fh.seek(offset)
                    chunk = fh.read()
            except OSError:
                continue
            self._offsets[path] = offset + len(chunk)
            lines = (self._partial.pop(path, b"") + chunk).split(b"\n")
            if lines[-1]:
                self._partial[path] = lines[-1]
            for raw in lines[:-1]:
                if b"Pausing task as DEFERRED" not in raw:
                    continue
                match = _PAUSED_JSON.search(raw.decode(errors="replace"))
                if match is not None:
                    key = match.group(1).replace("-", "")
                    self.paused[key] = self.paused.get(key, 0) + 1


# --------------------------------------------------------------------------------------------------
# What is left running: by process group / session of every PID we started, and by AIRFLOW_HOME
# --------------------------------------------------------------------------------------------------
def _proc_stat(pid: int) -> tuple[str, int, int] | None:
    """(state, process group, session) of a live process, or None."""
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = raw[raw.rfind(")") + 2 :].split()
    return fields[0], int(fields[2]), int(fields[3])


def leftover_processes(groups: set[int], markers: Iterable[bytes]) -> dict[str, list[str]]:
    """Processes still in one of ``groups`` (process group or session ids: the PIDs we started with
    ``start_new_session=True``), or whose working directory, environment or command line holds one
    of ``markers`` (the deployment's own temp dirs). Zombies (exited, not yet reaped) are listed apart."""
    markers = [m for m in markers if m]
    alive: list[str] = []
    zombies: list[str] = []
    me = os.getpid()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == me:
            continue
        pid = int(entry.name)
        stat = _proc_stat(pid)
        if stat is None:
            continue
        state, pgid, sid = stat
        hit = pgid in groups or sid in groups
        if not hit:
            # PostgreSQL's children are session leaders of their own and rewrite their command
            # line, but they keep the data dir as their working directory
            with contextlib.suppress(OSError):
                cwd = os.fsencode(os.readlink(entry / "cwd"))
                hit = any(cwd.startswith(m) for m in markers)
        if not hit:
            for name in ("environ", "cmdline"):
                with contextlib.suppress(OSError):
                    data = (entry / name).read_bytes()
                    if any(m in data for m in markers):
                        hit = True
                        break
        if hit:
            cmd = ""
            with contextlib.suppress(OSError):
                cmd = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")[:200]
            line = f"pid {pid} (pgid {pgid}, sid {sid}, state {state}): {cmd}"
            (zombies if state == "Z" else alive).append(line)
    return {"alive": alive, "zombies": zombies}
