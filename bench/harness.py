"""One measurement: N triggers of one kind, run by Airflow's own triggerer machinery.

This process is a real ``TriggerRunnerSupervisor`` (Airflow 3.3's triggerer supervisor), subclassed
only where it would touch the metadata DB: instead of assigning ``Trigger`` rows, it builds the
``RunTrigger`` workloads in memory (trigger object -> ``serialize()`` -> ``Trigger.encrypt_kwargs``,
with a ``TaskInstanceDTO`` and a per-trigger log file, as ``_create_workload`` does) and hands them
to the runner through the normal ``TriggerStateSync`` reply. It forks the real ``TriggerRunner``
subprocess (``TriggerRunnerSupervisor.start``), which runs every trigger in
``TriggerRunner.run_trigger`` on one asyncio loop with its housekeeping loop
(``cleanup_finished_triggers`` / ``sync_state_to_supervisor`` / ``create_triggers`` every second),
the greenback portal, trigger logging over the JSON log channel, and secret masking through the
supervisor. The runner is pinned to one core; this supervisor to another (with the status server).

Timeline:
  warm-up:  the loop probe and trigger #0 start (imports, shared session); 1 s later the
            baseline RSS is taken
  creation: triggers #1..N-1 are created evenly over one poll interval from c0 (they reach the
            runner in batches at its 1 s state syncs, exactly as DB-assigned triggers do)
  settle:   the window starts ``settle`` seconds after the runner took the last batch (default
            1.5 x interval: LipSyncTrigger spreads first polls over 0.5-1.5 intervals), so every
            trigger has made its first poll and the window holds steady-state polls only
  window:   ``--window`` seconds: runner CPU, polls, lateness, loop lag, RSS, sockets are measured
  [complete]: optionally every task finishes and the fired events are counted

Writes one JSON result (``--out``). Normally started by ``bench/run.py``.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import shutil
import signal
import sys
import tempfile
import time
import urllib.request
import uuid
from pathlib import Path

HERE = Path(__file__).resolve().parent

KINDS = {
    "lip_sync": "LipSyncTrigger (this provider)",
    "lip_sync_default": "LipSyncTrigger, connection defaults",
    "lip_sync_batch": "one LipSyncBatchTrigger waiting for N clips (this provider)",
    "http_sensor": "HttpSensorTrigger",
    "dbt_cloud": "DbtCloudRunJobTrigger",
    "aiohttp_shared": "shared aiohttp session (lower bound)",
    "aiohttp_lockstep": "shared aiohttp session, lockstep schedule",
    "aiohttp_tick": "shared aiohttp session, spread schedule on a 50 ms grid",
    "httpx_shared": "shared httpx.AsyncClient (reference)",
    "idle": "triggers that never poll (the runner's own cost per trigger)",
}

API_KEY = "bench-key-0123456789"
PROBE_ID = 1
#: seconds between the first trigger (imports, shared session) and the baseline RSS
WARMUP = 1.0
#: seconds past creation + 3 intervals after which the window starts even if the runner has not
#: taken all workloads yet (it is overloaded; the result says so)
HANDOVER_GRACE = 20.0
FIRST_ID = 10


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description="One trigger benchmark measurement (see bench/README.md)")
    p.add_argument("--kind", required=True, choices=sorted(KINDS))
    p.add_argument("--n", type=int, required=True)
    p.add_argument("--interval", type=float, required=True, help="poll interval, seconds")
    p.add_argument("--window", type=float, required=True, help="measurement window, seconds")
    p.add_argument(
        "--settle",
        type=float,
        default=None,
        help="seconds from the runner taking the last batch of triggers to the window; default 1.5 x "
        "interval, so every trigger has made its first poll (LipSyncTrigger spreads first polls over "
        "0.5-1.5 intervals) and the window holds steady-state polls only",
    )
    p.add_argument("--port", type=int, required=True, help="status server port on 127.0.0.1")
    p.add_argument("--server-pid", type=int, default=None)
    p.add_argument("--tag", type=int, required=True, help="unique integer per measurement")
    p.add_argument("--out", required=True)
    p.add_argument("--runner-cpu", type=int, default=0)
    p.add_argument("--supervisor-cpu", type=int, default=1)
    p.add_argument("--rate-limit", type=float, default=0.0, help="server-side limit, requests/s (0: none)")
    p.add_argument("--retry-after", default="1")
    p.add_argument(
        "--conn-extra",
        default=None,
        help="JSON extra for the jogg_default connection; default for kind lip_sync: "
        '{"max_requests_per_second": 5000} (a limit above any N / interval measured: the throttle '
        "runs in the poll path but never holds a poll back), for lip_sync_default: {} (the defaults)",
    )
    p.add_argument("--complete", action="store_true", help="finish every task after the window, count events")
    p.add_argument("--keep-home", action="store_true", help="keep the temporary AIRFLOW_HOME (trigger logs)")
    p.add_argument("--profile", choices=("pyspy", "cprofile"), default=None)
    p.add_argument("--profile-out", default=None)
    args = p.parse_args(argv)
    if args.conn_extra is None:
        args.conn_extra = json.dumps(DEFAULT_CONN_EXTRA.get(args.kind, {}))
    return args


#: the bench's jogg_default connection extra per kind, unless --conn-extra is given
DEFAULT_CONN_EXTRA = {
    "lip_sync": {"max_requests_per_second": 5000},
    "lip_sync_default": {},
    "lip_sync_batch": {"max_requests_per_second": 5000},
}

#: the batch kind's ledger fingerprint (any string: the trigger reads only pages that carry it)
BATCH_FINGERPRINT = "bench-batch"
#: the batch kind's ledger folder, written by :func:`write_batch_ledger` before the runner starts
BATCH_LEDGER: str = ""

ARGS: argparse.Namespace


def setup_environment(args: argparse.Namespace, home: Path) -> None:
    """Everything Airflow reads at import time; the forked runner inherits it."""
    from cryptography.fernet import Fernet

    base = f"http://127.0.0.1:{args.port}"
    env = {
        "AIRFLOW_HOME": str(home),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__CORE__FERNET_KEY": Fernet.generate_key().decode(),
        "AIRFLOW__LOGGING__BASE_LOG_FOLDER": str(home / "logs"),
        "AIRFLOW__LOGGING__LOGGING_LEVEL": "INFO",
        "AIRFLOW_CONN_JOGG_DEFAULT": json.dumps(
            {"conn_type": "jogg", "host": base, "password": API_KEY, "extra": json.loads(args.conn_extra)}
        ),
        "AIRFLOW_CONN_BENCH_HTTP": json.dumps({"conn_type": "http", "host": base}),
        # dbt Cloud's tenant is a host name; the hook builds https://{tenant}/api/v2/accounts/...
        "AIRFLOW_CONN_DBT_CLOUD_DEFAULT": json.dumps(
            {
                "conn_type": "dbt_cloud",
                "host": f"127.0.0.1:{args.port}",
                "login": str(args.tag),
                "password": API_KEY,
            }
        ),
        "BENCH_JOGG_URL": base,
        "BENCH_JOGG_KEY": API_KEY,
    }
    os.environ.update(env)
    sys.path.insert(0, str(HERE))


def write_batch_ledger(home: Path, tag: int, n: int) -> str:
    """The ledger a ``LipSyncBatchOperator`` leaves when it defers: N clips, each with a created Jogg
    task (the status server's ``t{tag}-{i}``), every page written (the triggerer knows no clip list)."""
    from airflow_provider_jogg.batch.ledger import CREATED, FilePages, Ledger

    folder = home / "manifest.csv.ledger"
    ledger = Ledger([f"clip-{i:05d}" for i in range(n)], [FilePages(folder)], BATCH_FINGERPRINT)
    for i, clip in enumerate(ledger.records):
        ledger.update(clip, state=CREATED, task_id=f"t{tag}-{i}", creates=1)
    ledger.flush(all_pages=True)
    return str(folder)


def make_trigger(kind: str, i: int, tag: int, interval: float):
    """The trigger object a deferring task would hand to ``defer()``."""
    end_time = time.time() + 3 * 3600
    task = f"t{tag}-{i}"
    if kind == "lip_sync_batch":  # one trigger for every clip of the ledger
        from airflow_provider_jogg.triggers.lip_sync_batch import LipSyncBatchTrigger

        return LipSyncBatchTrigger(
            ledger_location=BATCH_LEDGER,
            fingerprint=BATCH_FINGERPRINT,
            poll_interval=interval,
            end_time=end_time,
            progress_interval=60,
        )
    if kind in ("lip_sync", "lip_sync_default"):
        from airflow_provider_jogg.triggers.lip_sync import LipSyncTrigger

        return LipSyncTrigger(jogg_task_id=task, poll_interval=interval, end_time=end_time)
    if kind == "http_sensor":
        from airflow.providers.http.triggers.http import HttpSensorTrigger

        return HttpSensorTrigger(
            endpoint=f"http/{task}", http_conn_id="bench_http", method="GET", poke_interval=interval
        )
    if kind == "dbt_cloud":
        from airflow.providers.dbt.cloud.triggers.dbt import DbtCloudRunJobTrigger

        return DbtCloudRunJobTrigger(
            conn_id="dbt_cloud_default", run_id=i, account_id=tag, end_time=end_time, poll_interval=interval
        )
    if kind in ("aiohttp_shared", "aiohttp_lockstep", "aiohttp_tick"):
        from bench_triggers import SharedAiohttpTrigger

        schedule = {"aiohttp_lockstep": "lockstep", "aiohttp_tick": "tick"}.get(kind, "spread")
        return SharedAiohttpTrigger(status_id=task, poll_interval=interval, schedule=schedule)
    if kind == "idle":
        from bench_triggers import IdleTrigger

        return IdleTrigger(status_id=task)
    if kind == "httpx_shared":
        from bench_triggers import SharedHttpxTrigger

        return SharedHttpxTrigger(status_id=task, poll_interval=interval)
    raise ValueError(kind)


def patch_dbt_scheme() -> None:
    """dbt Cloud's hook hard-codes ``https://{tenant}``; the bench server speaks plain HTTP on loopback.

    Only the scheme of the built URL changes (one string slice per poll); everything else in the
    hook's poll path (new ClientSession, headers, tenacity, logging) runs as shipped.
    """
    from airflow.providers.dbt.cloud.hooks.dbt import DbtCloudHook

    original = DbtCloudHook.get_request_url_params

    def get_request_url_params(tenant, endpoint, include_related=None, *, api_version="v2"):
        url, data = original(tenant, endpoint, include_related, api_version=api_version)
        return ("http://" + url[len("https://") :] if url.startswith("https://") else url), data

    DbtCloudHook.get_request_url_params = staticmethod(get_request_url_params)


def values_in_window(path: Path, t0: float, t1: float) -> list[float]:
    """The values of a ``epoch_seconds value`` lines file whose time lies in [t0, t1]."""
    values = []
    try:
        for line in path.read_text().splitlines():
            t, value = line.split()
            if t0 <= float(t) <= t1:
                values.append(float(value))
    except OSError:
        pass
    return values


def record_full_collections(path: Path) -> None:
    """In the runner: append ``end_time pause_seconds`` for every generation-2 collection."""
    import gc

    started = [0.0]

    def callback(phase: str, info: dict) -> None:
        if info.get("generation") != 2:
            return
        if phase == "start":
            started[0] = time.perf_counter()
        else:
            with path.open("a") as f:
                f.write(f"{time.time()} {time.perf_counter() - started[0]}\n")

    gc.callbacks.append(callback)


def server_get(path: str, timeout: float = 30.0) -> dict:
    with urllib.request.urlopen(f"http://127.0.0.1:{ARGS.port}{path}", timeout=timeout) as resp:
        return json.loads(resp.read())


def socket_fds(pid: int) -> int:
    count = 0
    try:
        for fd in os.listdir(f"/proc/{pid}/fd"):
            try:
                if os.readlink(f"/proc/{pid}/fd/{fd}").startswith("socket:"):
                    count += 1
            except OSError:
                pass
    except OSError:
        return -1
    return count


def runqueue_wait_seconds(pid: int) -> float:
    """Seconds the process's threads were runnable but waiting for a CPU (schedstat field 2):
    how much other processes on the runner's core disturbed the measurement."""
    total = 0
    try:
        for tid in os.listdir(f"/proc/{pid}/task"):
            try:
                with open(f"/proc/{pid}/task/{tid}/schedstat") as f:
                    total += int(f.read().split()[1])
            except (OSError, ValueError, IndexError):
                pass
    except OSError:
        pass
    return total / 1e9


def cpu_seconds(pid: int) -> float:
    """User+system CPU of a process with nanosecond resolution: the sum of its threads' schedstat
    run time (psutil's cpu_times has 10 ms clock-tick resolution); falls back to psutil."""
    total = 0
    try:
        for tid in os.listdir(f"/proc/{pid}/task"):
            try:
                with open(f"/proc/{pid}/task/{tid}/schedstat") as f:
                    total += int(f.read().split()[0])
            except (OSError, ValueError, IndexError):
                pass
    except OSError:
        total = 0
    if total:
        return total / 1e9
    import psutil

    cpu = psutil.Process(pid).cpu_times()
    return cpu.user + cpu.system


def vm_hwm_bytes(pid: int) -> int:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    return 0


def percentile(values: list[float], q: float) -> float | None:
    if not values:
        return None
    values = sorted(values)
    k = (len(values) - 1) * q
    lo = math.floor(k)
    hi = min(lo + 1, len(values) - 1)
    return values[lo] + (values[hi] - values[lo]) * (k - lo)


class Bench:
    """The measurement's state machine, driven from the supervisor's ``run_once`` loop."""

    def __init__(self, args: argparse.Namespace, home: Path) -> None:
        self.args = args
        self.home = home
        self.n = args.n  # waits (tasks polled): one per trigger, or the clips of the one batch trigger
        self.batch = args.kind == "lip_sync_batch"
        self.triggers = 1 if self.batch else self.n
        self.row_bytes: list[int] = []  # per trigger: its kwargs as JSON, and encrypted as stored
        self.row_encrypted_bytes: list[int] = []
        self.event_bytes: list[int] = []
        self.interval = args.interval
        self.settle = args.settle if args.settle is not None else 1.5 * args.interval
        self.probe_path = home / "probe.txt"
        self.gc_path = home / "gc.txt"
        self.phase = "start"
        self.created = 0
        self.warm_until = 0.0
        self.c0 = 0.0
        self.t0_due = 0.0
        self.t1_due = 0.0
        self.done = False
        self.events: dict[str, int] = {}
        self.failures = 0
        self.failure_samples: list[str] = []
        self.snap0: dict = {}
        self.snap1: dict = {}
        self.rss_base = 0
        self.sockets_base = 0
        self.samples: list[tuple[float, int, int]] = []  # (time, rss, socket fds) in the window
        self.last_sample = 0.0
        self.complete_due = 0.0
        self.result: dict = {}
        self.profiler = None
        self.dag_version = uuid.uuid4()
        self.build_seconds = 0.0
        self.handed_over = 0.0
        self.handover_overdue = False
        self.cpu_c0 = 0.0
        self.writer = None
        self.outbox = None
        self.idle: dict = {}

    # ---- replies to the runner (see BenchTriggerRunnerSupervisor.send_msg) -----------------------
    def write(self, sock, data: bytes) -> None:
        if self.writer is None:
            import queue
            import threading

            self.outbox = queue.SimpleQueue()

            def pump() -> None:
                while True:
                    item = self.outbox.get()
                    if item is None:
                        return
                    try:
                        sock.sendall(item)
                    except OSError:
                        return

            self.writer = threading.Thread(target=pump, name="bench-reply-writer", daemon=True)
            self.writer.start()
        self.outbox.put(data)

    # ---- workloads -------------------------------------------------------------------------------
    def workload(self, sup, i: int):
        from airflow.executors import workloads
        from airflow.executors.workloads.task import TaskInstanceDTO
        from airflow.jobs.triggerer_job_runner import TriggerLoggingFactory
        from airflow.models.trigger import Trigger

        start = time.perf_counter()
        classpath, kwargs = make_trigger(self.args.kind, i, self.args.tag, self.interval).serialize()
        encrypted = Trigger.encrypt_kwargs(kwargs)
        self.row_bytes.append(len(json.dumps(kwargs)))
        self.row_encrypted_bytes.append(len(encrypted))
        ti = TaskInstanceDTO(
            id=uuid.uuid4(),
            task_id=f"wait_{i}",
            dag_id="bench_lip_sync",
            run_id=f"bench_{self.args.tag}",
            try_number=1,
            dag_version_id=self.dag_version,
            map_index=-1,
            pool_slots=1,
            priority_weight=1,
        )
        trigger_id = FIRST_ID + i
        sup.logger_cache[trigger_id] = TriggerLoggingFactory(
            log_path=f"bench/{self.args.tag}/wait_{i}.trigger.log", ti=ti
        )
        w = workloads.RunTrigger(id=trigger_id, classpath=classpath, encrypted_kwargs=encrypted, ti=ti)
        self.build_seconds += time.perf_counter() - start
        return w

    def probe_workload(self):
        from airflow.executors import workloads
        from airflow.models.trigger import Trigger
        from bench_triggers import LoopProbeTrigger

        classpath, kwargs = LoopProbeTrigger(path=str(self.probe_path)).serialize()
        return workloads.RunTrigger(
            id=PROBE_ID, classpath=classpath, encrypted_kwargs=Trigger.encrypt_kwargs(kwargs)
        )

    # ---- measurements ----------------------------------------------------------------------------
    def snapshot(self, sup) -> dict:
        import psutil

        proc = psutil.Process(sup.pid)
        snap = {
            "time": time.time(),
            "cpu": cpu_seconds(sup.pid),
            "runqueue_wait": runqueue_wait_seconds(sup.pid),
            "loadavg": os.getloadavg()[0],
            "rss": proc.memory_info().rss,
            "sockets": socket_fds(sup.pid),
            "threads": proc.num_threads(),
        }
        if self.args.server_pid:
            with contextlib.suppress(OSError, psutil.Error):
                snap["server_cpu"] = cpu_seconds(self.args.server_pid)
        return snap

    def tick(self, sup) -> None:
        now = time.time()
        args = self.args
        if self.phase == "start":
            server_get(
                f"/_bench/register?tag={args.tag}&n={self.n}&complete_at=inf&spread=0"
                f"&rate={args.rate_limit}&retry_after={args.retry_after}"
            )
            self.sockets_base = socket_fds(sup.pid)
            sup.creating_triggers.append(self.probe_workload())
            if not self.batch:  # the batch's one trigger starts with the creation phase
                sup.creating_triggers.append(self.workload(sup, 0))
                self.created = 1
            self.warm_until = now + WARMUP
            self.phase = "warmup"
            return
        if self.phase == "warmup":
            if now < self.warm_until:
                if not self.idle and now >= self.warm_until - WARMUP / 2:
                    self.idle = self.snapshot(sup)
                return
            import psutil

            self.rss_base = psutil.Process(sup.pid).memory_info().rss
            self.cpu_c0 = cpu_seconds(sup.pid)
            if self.idle:
                end = self.snapshot(sup)
                self.idle = {
                    "idle_cpu_ms_per_s": (end["cpu"] - self.idle["cpu"])
                    * 1000
                    / (end["time"] - self.idle["time"])
                }
            self.c0 = now
            self.t0_due = self.c0 + self.interval + self.settle
            self.phase = "create"
        if self.phase == "create":
            due = 1 + math.ceil((self.triggers - 1) * min(1.0, (now - self.c0) / self.interval))
            due = min(self.triggers, due)
            while self.created < due:
                sup.creating_triggers.append(self.workload(sup, self.created))
                self.created += 1
            overdue = now > self.c0 + 3 * self.interval + HANDOVER_GRACE
            all_created = self.created >= self.triggers
            if all_created and not self.handed_over and (not sup.creating_triggers or overdue):
                # the runner took the last batch at its state sync just now: it creates them at once
                # (or it is so overloaded that it has not asked for them yet: measure anyway)
                self.handed_over = now
                self.handover_overdue = bool(sup.creating_triggers)
                self.t0_due = max(self.t0_due, now + self.settle)
            if self.handed_over and now >= self.t0_due:
                self.snap0 = self.snapshot(sup)
                self.t1_due = self.snap0["time"] + args.window
                self.phase = "window"
                self.start_profile(sup)
            return
        if self.phase == "window":
            if now - self.last_sample >= 0.5:
                import psutil

                with contextlib.suppress(psutil.Error):
                    self.samples.append((now, psutil.Process(sup.pid).memory_info().rss, socket_fds(sup.pid)))
                self.last_sample = now
            if now >= self.t1_due:
                self.snap1 = self.snapshot(sup)
                self.snap1["vm_hwm"] = vm_hwm_bytes(sup.pid)
                self.stop_profile(sup)
                self.collect(sup)
                if args.complete:
                    server_get(f"/_bench/complete?tag={args.tag}&at={time.time()}&spread=0")
                    self.complete_due = time.time() + 1.5 * self.interval + 10
                    self.phase = "complete"
                else:
                    self.done = True
            return
        if self.phase == "complete":
            fired = sum(self.events.values()) + self.failures
            if fired >= self.triggers or now >= self.complete_due:
                self.result["events"] = dict(self.events)
                self.result["events_total"] = sum(self.events.values())
                self.result["event_bytes_max"] = max(self.event_bytes, default=0)
                self.result["event_bytes_total"] = sum(self.event_bytes)
                self.result["failures_after_complete"] = self.failures
                self.result["complete_seconds"] = now - (self.complete_due - 1.5 * self.interval - 10)
                self.done = True

    def start_profile(self, sup) -> None:
        args = self.args
        if args.profile == "pyspy":
            import subprocess

            exe = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
            self.profiler = subprocess.Popen(
                [
                    exe,
                    "record",
                    "--pid",
                    str(sup.pid),
                    "--duration",
                    str(int(args.window)),
                    "--rate",
                    "250",
                    "--format",
                    "raw",
                    "--output",
                    args.profile_out,
                ],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
        elif args.profile == "cprofile":
            os.kill(sup.pid, signal.SIGUSR1)

    def stop_profile(self, sup) -> None:
        if self.args.profile == "pyspy" and self.profiler is not None:
            try:
                self.profiler.wait(timeout=30)
            except Exception:
                self.profiler.kill()
        elif self.args.profile == "cprofile":
            os.kill(sup.pid, signal.SIGUSR2)
            deadline = time.time() + 60
            while not Path(self.args.profile_out + ".done").exists() and time.time() < deadline:
                time.sleep(0.1)

    def loop_lag(self, t0: float, t1: float) -> dict:
        lags = values_in_window(self.probe_path, t0, t1)
        return {
            "loop_lag_samples": len(lags),
            "loop_lag_p50_ms": (percentile(lags, 0.5) or 0.0) * 1000 if lags else None,
            "loop_lag_p99_ms": (percentile(lags, 0.99) or 0.0) * 1000 if lags else None,
            "loop_lag_max_ms": max(lags) * 1000 if lags else None,
        }

    def gc_pauses(self, t0: float, t1: float) -> dict:
        """Python's full (generation 2) garbage collections in the runner during the window."""
        pauses = values_in_window(self.gc_path, t0, t1)
        return {
            "gc_full_collections": len(pauses),
            "gc_full_pause_max_ms": max(pauses) * 1000 if pauses else 0.0,
            "gc_full_pause_total_ms": sum(pauses) * 1000,
        }

    def collect(self, sup) -> None:
        args = self.args
        s0, s1 = self.snap0, self.snap1
        t0, t1 = s0["time"], s1["time"]
        span = t1 - t0
        srv = server_get(f"/_bench/stats?tag={args.tag}&t0={t0}&t1={t1}&interval={self.interval}")
        polls = srv.get("polls", 0)
        timeline = server_get(f"/_bench/timeline?tag={args.tag}")["per_second"]
        cpu = s1["cpu"] - s0["cpu"]
        intended = self.n * span / self.interval
        rss_window = [r for _, r, _ in self.samples] + [s1["rss"]]
        sockets_window = [s for _, _, s in self.samples if s >= 0] + [s1["sockets"]]
        res = {
            "kind": args.kind,
            "label": KINDS[args.kind],
            "n": self.n,
            "triggers": self.triggers,
            # the trigger rows: kwargs as JSON, and as stored (Fernet-encrypted) in the trigger table
            "trigger_row_bytes_max": max(self.row_bytes, default=0),
            "trigger_row_bytes_total": sum(self.row_bytes),
            "trigger_row_encrypted_bytes_total": sum(self.row_encrypted_bytes),
            "interval": self.interval,
            "window": span,
            "tag": args.tag,
            "rate_limit": args.rate_limit,
            "conn_extra": json.loads(args.conn_extra),
            "runner_cpu_s": cpu,
            "runner_cpu_util": cpu / span if span > 0 else None,
            # share of the window the runner was ready to run but another process had its core
            "runner_runqueue_wait": (s1["runqueue_wait"] - s0["runqueue_wait"]) / span if span > 0 else None,
            "loadavg_1min": s1["loadavg"],
            "polls": polls,
            "polls_intended": intended,
            "polls_ratio": polls / intended if intended else None,
            "cpu_ms_per_poll": cpu * 1000 / polls if polls else None,
            "lateness_p50_s": srv.get("lateness_p50"),
            "lateness_p99_s": srv.get("lateness_p99"),
            "lateness_max_s": srv.get("lateness_max"),
            "max_gap_s": srv.get("max_gap"),
            "tasks_polled": srv.get("tasks_polled"),
            "requests": srv.get("requests"),
            "rejected_429": srv.get("rejected_429"),
            "share_429": srv.get("share_429"),
            "new_connections": srv.get("new_connections"),
            "new_conn_per_poll": (srv.get("new_connections", 0) / polls) if polls else None,
            "rss_base_mb": self.rss_base / 2**20,
            "rss_end_mb": s1["rss"] / 2**20,
            "peak_rss_mb": max(s1.get("vm_hwm", 0), *rss_window) / 2**20,
            # per wait: per trigger, or per clip of the batch (whose baseline holds no wait at all)
            "rss_per_trigger_kb": (s1["rss"] - self.rss_base) / max(self.n - (not self.batch), 1) / 1024,
            "open_sockets_end": s1["sockets"] - self.sockets_base,
            "open_sockets_max": max(sockets_window) - self.sockets_base if sockets_window else None,
            "runner_threads": s1.get("threads"),
            "failures": self.failures,
            "failure_samples": self.failure_samples[:3],
            "events_during_window": dict(self.events),
            "workload_build_ms_per_trigger": self.build_seconds * 1000 / max(self.created, 1),
            "server": srv,
            # polls answered per second, relative to the start of creation: [second, polls, 429s]
            "timeline": [[int(t - self.c0), p, r] for t, p, r in timeline],
            "window_start_s": t0 - self.c0,
            "handover_s": self.handed_over - self.c0,
            "handover_overdue": self.handover_overdue,
        }
        if "server_cpu" in s0 and "server_cpu" in s1:
            res["server_cpu_util"] = (s1["server_cpu"] - s0["server_cpu"]) / span
        # trigger start-up: runner CPU from creation start to the window, minus the polls made
        # meanwhile at the window's CPU per poll, per trigger created
        polls_before = sum(p for sec, p, _ in res["timeline"] if 0 <= sec < int(t0 - self.c0))
        if polls and self.cpu_c0:
            startup = (s0["cpu"] - self.cpu_c0) - polls_before * cpu / polls
            res["startup_cpu_ms_per_trigger"] = max(startup, 0.0) * 1000 / max(self.n - 1, 1)
        res.update(self.loop_lag(t0, t1))
        res.update(self.gc_pauses(t0, t1))
        res.update(self.idle if "idle_cpu_ms_per_s" in self.idle else {})
        self.result = res


BENCH: Bench


def _die_with_parent() -> None:
    """The runner gets SIGKILL if this supervisor dies (no orphaned runner eating the core)."""
    try:
        import ctypes

        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        libc.prctl(1, signal.SIGKILL, 0, 0, 0)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


def build_supervisor_class():
    from airflow.jobs.triggerer_job_runner import TriggerRunner, TriggerRunnerSupervisor

    class BenchTriggerRunnerSupervisor(TriggerRunnerSupervisor):
        """The real supervisor minus its metadata-DB calls; workloads come from :class:`Bench`."""

        def load_triggers(self) -> None:
            BENCH.tick(self)

        def heartbeat(self) -> None:  # no Job row to heartbeat
            pass

        def clean_unused(self) -> None:  # no Trigger rows to delete
            pass

        def on_trigger_event(self, trigger_id, event) -> None:
            payload = getattr(event, "payload", event)
            status = payload.get("status") if isinstance(payload, dict) else str(payload)
            BENCH.event_bytes.append(len(json.dumps(payload, default=str)))
            BENCH.events[str(status)] = BENCH.events.get(str(status), 0) + 1

        def on_trigger_failure(self, trigger_id, exc) -> None:
            BENCH.failures += 1
            if len(BENCH.failure_samples) < 3:
                BENCH.failure_samples.append("".join(exc or [])[-2000:])

        def metric_tags(self) -> dict[str, str]:
            return {"hostname": "bench"}

        def send_msg(self, msg, request_id, error=None, **dump_opts) -> None:
            """As the parent, but the frame is written by a helper thread.

            Airflow 3.3.2's supervisor writes replies with a blocking ``sendall`` while the runner
            writes log lines to its log socket with blocking writes from the event-loop thread. A
            ``TriggerStateSync`` carrying thousands of workloads is larger than the socket buffer,
            so when the runner is busy logging (a peer that logs every poll, or "trigger ...
            starting" lines of a new batch), the supervisor waits for the runner to read the reply,
            the runner waits for the supervisor to read its logs, and both stop for good (seen at
            N = 10,000 with DbtCloudRunJobTrigger; py-spy: supervisor in ``send_msg`` ->
            ``sendall``, runner in ``BytesLogger.msg``). Writing from a thread keeps the supervisor
            draining logs; frames keep their order.
            """
            from airflow.sdk.execution_time.comms import _ResponseFrame

            if msg:
                frame = _ResponseFrame(id=request_id, body=self._serialize_response(msg, **dump_opts))
            else:
                err_resp = self._serialize_response(error) if error else None
                frame = _ResponseFrame(id=request_id, error=err_resp)
            BENCH.write(self.stdin, frame.as_bytes())

        def make_client(self):
            raise RuntimeError("the bench serves connections from AIRFLOW_CONN_* env vars only")

        def should_stop(self) -> bool:
            return self.stop or BENCH.done

        @classmethod
        def run_in_process(cls) -> None:
            # the forked runner: one core, then Airflow's TriggerRunner as the triggerer runs it
            _die_with_parent()
            if hasattr(os, "sched_setaffinity"):
                os.sched_setaffinity(0, {ARGS.runner_cpu})
            if ARGS.kind == "dbt_cloud":
                patch_dbt_scheme()
            if ARGS.kind == "lip_sync_batch":
                # what the other kinds' trigger #0 imports during the warm-up, before the baseline RSS
                import aiohttp  # noqa: F401

                import airflow_provider_jogg.triggers.lip_sync_batch
                import airflow_provider_jogg.triggers.polling  # noqa: F401
            record_full_collections(BENCH.gc_path)
            if ARGS.profile == "cprofile":
                import cProfile

                profiler = cProfile.Profile()

                def start(signum, frame):
                    profiler.enable()

                def stop(signum, frame):
                    profiler.disable()
                    profiler.dump_stats(ARGS.profile_out)
                    Path(ARGS.profile_out + ".done").touch()

                signal.signal(signal.SIGUSR1, start)
                signal.signal(signal.SIGUSR2, stop)
            TriggerRunner().run()

    return BenchTriggerRunnerSupervisor


def main(argv: list[str] | None = None) -> int:
    global ARGS, BENCH, BATCH_LEDGER
    ARGS = parse_args(argv)
    if hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {ARGS.supervisor_cpu})
    home = Path(tempfile.mkdtemp(prefix="jogg-bench-"))
    setup_environment(ARGS, home)
    BENCH = Bench(ARGS, home)
    if BENCH.batch:
        BATCH_LEDGER = write_batch_ledger(home, ARGS.tag, ARGS.n)
    started = time.time()
    import structlog

    cls = build_supervisor_class()
    sup = cls.start(job=None, capacity=ARGS.n + 10, logger=structlog.get_logger(logger_name="bench"))
    try:
        sup.run()
    finally:
        alive = sup.is_alive()
        if alive:
            sup.kill(signal.SIGKILL, escalation_delay=5)
        for factory in list(sup.logger_cache.values()):
            factory.close()
    result = BENCH.result or {"kind": ARGS.kind, "n": ARGS.n, "interval": ARGS.interval, "error": "no result"}
    if not BENCH.result:
        result["runner_alive_at_end"] = alive
        result["failures"] = BENCH.failures
        result["failure_samples"] = BENCH.failure_samples
    result["harness_seconds"] = time.time() - started
    Path(ARGS.out).write_text(json.dumps(result, indent=2, default=str))
    with contextlib.suppress(OSError):
        server_get(f"/_bench/forget?tag={ARGS.tag}")
    if ARGS.keep_home:
        print(f"kept {home}", flush=True)
    else:
        shutil.rmtree(home, ignore_errors=True)
    return 0 if BENCH.result else 1


if __name__ == "__main__":
    sys.exit(main())
