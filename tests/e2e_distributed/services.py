"""A distributed Airflow deployment on loopback: CeleryExecutor, Redis broker, PostgreSQL metadata DB.

:class:`DistributedDeployment` extends :class:`tests.e2e.deployment.Deployment` (the temporary
``AIRFLOW_HOME``, the fake Jogg servers, api-server, scheduler, dag-processor, the first triggerer,
the REST API helpers and the log capture) with what is its own:

- its own ``redis-server`` (free loopback port, no persistence) as the Celery broker;
- its own PostgreSQL cluster (``initdb`` in a temp dir, free loopback port, unix socket in the temp
  dir, password auth) as the metadata DB and the Celery result backend. PostgreSQL refuses to run as
  root: as root, the cluster runs as the ``postgres`` system user (Debian's package creates it);
- two ``airflow celery worker`` processes (distinct ``--celery-hostname``, concurrency 2 each);
- a second ``airflow triggerer``.

PostgreSQL can be restarted in place (:meth:`DistributedDeployment.restart_postgres`: fast shutdown
by its PID, same data dir and port), and an Airflow component that exited can be started again with
its own command line (:meth:`~tests.e2e.deployment.Deployment.respawn`), as a service manager would.

Every process is started in its own session and stopped by its own PID (Airflow first, then Redis
and PostgreSQL; :mod:`tests.harness.processes`), and the temp dirs are removed by the fixture. The
system's own Redis/PostgreSQL services and clusters are never touched.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import secrets
import shutil
import signal
import socket
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tests.e2e.deployment import Deployment
from tests.harness.processes import AIRFLOW, Process, run_logged, spawn, tail
from tests.harness.waiting import HarnessError, free_port, wait_until

if TYPE_CHECKING:
    from collections.abc import Iterable

    import psycopg2.extensions

TRIGGERER_NAMES = ("triggerer", "triggerer-b")  # the base class starts the first one
WORKER_NAMES = ("celery-worker-a", "celery-worker-b")
WORKER_CONCURRENCY = 2


def postgres_bin_dir() -> Path:
    """``$JOGG_PG_BIN`` or the newest ``/usr/lib/postgresql/<version>/bin`` holding ``initdb``."""
    if os.environ.get("JOGG_PG_BIN"):
        return Path(os.environ["JOGG_PG_BIN"])
    found = sorted(
        (p.parent for p in Path("/usr/lib/postgresql").glob("*/bin/initdb")),
        key=lambda p: int(p.parent.name) if p.parent.name.isdigit() else 0,
    )
    if not found:
        raise HarnessError(
            "no PostgreSQL server binaries (/usr/lib/postgresql/*/bin/initdb): "
            "run scripts/install_distributed_deps.sh"
        )
    return found[-1]


def redis_server_binary() -> str:
    path = shutil.which("redis-server")
    if path is None:
        raise HarnessError("redis-server is not installed: run scripts/install_distributed_deps.sh")
    return path


# --------------------------------------------------------------------------------------------------
# Redis and PostgreSQL, each its own process started and stopped by PID
# --------------------------------------------------------------------------------------------------
@dataclass
class Redis:
    """``redis-server`` on a free loopback port; no RDB/AOF files, nothing outside ``workdir``."""

    workdir: Path
    log_dir: Path
    port: int = 0
    service: Process | None = None

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
        self.service = spawn("redis", args, env=None, log_dir=self.log_dir, cwd=self.workdir)
        wait_until("redis-server to answer PING", self._ping, timeout=30, interval=0.1)

    def _ping(self) -> bool:
        assert self.service is not None
        self.service.raise_if_exited()
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
            raise HarnessError(f"redis {args}: unexpected reply {reply!r}")
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
    service: Process | None = None
    bin_dir: Path = field(default_factory=postgres_bin_dir)
    timings: dict[str, float] = field(default_factory=dict)

    data_dir: Path = field(init=False)
    socket_dir: Path = field(init=False)

    def __post_init__(self) -> None:
        self.data_dir, self.socket_dir = self.workdir / "data", self.workdir / "socket"

    def url(self, driver: str = "postgresql+psycopg2", database: str | None = None) -> str:
        return f"{driver}://{self.user}:{self.password}@127.0.0.1:{self.port}/{database or self.database}"

    def _env(self) -> dict[str, str]:
        # a clean environment: no PG* settings of the caller, a locale that initdb accepts
        return {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "LC_ALL": "C.UTF-8", "LANG": "C.UTF-8"}

    def start(self) -> None:
        if os.geteuid() == 0 and self.run_as is None:
            self.run_as = "postgres"
        if self.run_as is not None:
            try:
                entry = pwd.getpwnam(self.run_as)
            except KeyError as exc:
                raise HarnessError(
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
        try:
            run_logged(
                "postgres-initdb",
                initdb,
                env=self._env(),
                log_dir=self.log_dir,
                cwd=self.workdir,
                timeout=120,
                user=self.run_as,
            )
        finally:
            pwfile.unlink()
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
        self.service = spawn(
            "postgres",
            args,
            env=self._env(),
            log_dir=self.log_dir,
            cwd=self.workdir,
            stop_signal=signal.SIGINT,
            user=self.run_as,
        )
        wait_until("PostgreSQL to accept connections", self._ready, timeout=60, interval=0.2)

    def restart(self, timeout: float = 60.0) -> tuple[Process, float, float]:
        """Fast shutdown (SIGINT to the postmaster's PID: clients are disconnected, open transactions
        roll back), wait for it to exit, start it again on the same data dir and port.

        Returns (the old server process, seconds until it had exited, seconds of outage in all).
        """
        old = self.service
        assert old is not None
        t0 = time.monotonic()
        old.stop(timeout=timeout)
        if old.killed:
            raise HarnessError(f"postgres (pid {old.pid}) ignored its fast shutdown for {timeout:.0f} s")
        down = time.monotonic() - t0
        self._launch()
        return old, down, time.monotonic() - t0

    def _ready(self) -> bool:
        import psycopg2

        assert self.service is not None
        self.service.raise_if_exited()
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
    _db: Any = None

    # ---- lifecycle
    def start(self) -> None:
        started = time.monotonic()
        self.proc_logs.mkdir(parents=True, exist_ok=True)
        self.services_root = Path(tempfile.mkdtemp(prefix="jogg-e2e-dist-services-"))
        self.services_root.chmod(0o711)  # the postgres user must reach its own dir inside
        (self.services_root / "redis").mkdir()
        (self.services_root / "postgres").mkdir()
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

    def all_components(self) -> list[Process]:
        """Every process this deployment started (including the retired / killed ones)."""
        found: list[Process] = [*self.components.values(), *self.retired]
        found += [fake.process for fake in self.fakes.values()]
        return found + self.services()

    def services(self) -> list[Process]:
        """The Redis and PostgreSQL server processes (those started so far)."""
        found = [self.redis.service if self.redis else None, self.postgres.service if self.postgres else None]
        return [svc for svc in found if svc is not None]

    def check_alive(self) -> None:
        super().check_alive()
        for svc in self.services():
            if not svc.alive:
                raise HarnessError(f"{svc.name} died (exit {svc.popen.returncode})\n{self.diagnostics()}")

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
