"""The batch operator in one real Airflow deployment (issue 16, "Measured").

Starts the e2e suite's deployment (``tests/e2e/deployment.py``: LocalExecutor on SQLite, api-server,
scheduler, dag-processor, triggerer, fake Jogg servers as processes) with Airflow's default settings
wherever the harness would otherwise tune them for quick tests, then runs one scenario:

``--scenario batch10k``
    10,000 clips (http inputs; each Jogg task ends a few seconds after its create) in one
    ``LipSyncBatchOperator`` against the ``jogg_batch`` fake (``--rate-limit 100``, tagged results,
    a bounded request log), results downloaded to ``output_dir``. Reports the run's wall time, the
    create phase (first to last create the fake saw), creates / limit, downloads, 429s, the trigger
    row's kwargs and the XCom.

``--scenario cost1k``
    The same 1,000 clips twice in one deployment, one after the other: as one
    ``LipSyncBatchOperator`` (``bench/dags/jogg_bench_lip_sync_batch.py``), then as the mapped shape
    of ``example_dags/example_jogg_batch.py`` (``LipSyncOperator.partial().expand_kwargs`` +
    ``LipSyncSensor``), both against the ``jogg_default`` fake, no downloads. For each: the CPU
    seconds (user + system, own + reaped children) of every process of the api-server, scheduler
    (with LocalExecutor's workers and their task processes), dag-processor and triggerer sessions,
    and the metadata DB's growth (file size, rows per table), as deltas over the run, per clip.

    .venv/bin/python bench/batch_deployment.py --scenario batch10k
    .venv/bin/python bench/batch_deployment.py --scenario cost1k [--clips 1000]

Runs from the main ``.venv`` (``make venv``): the harness lives in ``tests/`` and needs the dev
extra. Writes ``bench/results/batch_deployment_<scenario>.json`` and prints a table.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import platform
import secrets
import shutil
import signal
import sqlite3
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import TYPE_CHECKING, Any

import psutil

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from airflow_provider_jogg.testing.server import FINISH_AFTER_CREATE, FINISH_AFTER_POLL  # noqa: E402
from tests.e2e.deployment import Deployment  # noqa: E402

if TYPE_CHECKING:
    from collections.abc import Callable

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results"
BATCH_DAG = HERE / "dags" / "jogg_bench_lip_sync_batch.py"
MAPPED_DAG = ROOT / "example_dags" / "example_jogg_batch.py"
BATCH_DAG_ID, BATCH_TASK = "jogg_bench_lip_sync_batch", "lip_sync_batch"
MAPPED_DAG_ID = "example_jogg_batch"
#: the Airflow components whose CPU is counted (each leads its own session; the fakes are not Airflow)
COMPONENTS = ("api-server", "scheduler", "dag-processor", "triggerer")
#: Airflow's own defaults for the settings the e2e harness tunes for quick tests (values from
#: Airflow 3.3's config.yml); what the deployment needs (executor, ports, keys, SQLite) stays
AIRFLOW_DEFAULTS = {
    "AIRFLOW__CORE__PARALLELISM": "32",
    "AIRFLOW__TRIGGERER__TRIGGERER_HEALTH_CHECK_THRESHOLD": "30",
    "AIRFLOW__TRIGGERER__JOB_HEARTBEAT_SEC": "5",
    "AIRFLOW__DAG_PROCESSOR__REFRESH_INTERVAL": "300",
    "AIRFLOW__DAG_PROCESSOR__MIN_FILE_PROCESS_INTERVAL": "30",
    "AIRFLOW__DAG_PROCESSOR__PARSING_PROCESSES": "2",
    "AIRFLOW__SCHEDULER__ORPHANED_TASKS_CHECK_INTERVAL": "300",
    "AIRFLOW__WORKERS__MIN_HEARTBEAT_INTERVAL": "5",
}
#: the tables the issue asks about (others are reported in ``rows_all``)
TABLES = (
    "task_instance",
    "task_instance_history",
    "xcom",
    "trigger",
    "log",
    "dag_run",
    "rendered_task_instance_fields",
    "task_state_store",
    "job",
)


# --------------------------------------------------------------------------------------------------
# Measurements
# --------------------------------------------------------------------------------------------------
def cpu_seconds(dep: Deployment) -> dict[str, float]:
    """CPU seconds (user + system, own + reaped children) of every live process in each component's
    session. A task process is reaped by its LocalExecutor worker, which lives in the scheduler's
    session, so the scheduler's figure holds the workers and every task they ran."""
    sessions = {dep.components[name].pid: name for name in COMPONENTS}
    totals = dict.fromkeys(COMPONENTS, 0.0)
    for proc in psutil.process_iter():
        try:
            sid = os.getsid(proc.pid)
            if sid not in sessions:
                continue
            t = proc.cpu_times()
        except (psutil.Error, ProcessLookupError, PermissionError):
            continue
        totals[sessions[sid]] += t.user + t.system + t.children_user + t.children_system
    return totals


def db_state(dep: Deployment) -> dict[str, Any]:
    """The metadata DB's size (``airflow.db`` + its ``-wal``; page count x page size) and rows per table."""
    db = dep.db_path
    wal = db.with_name(db.name + "-wal")
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=60)
    try:
        tables = [r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")]
        rows = {t: conn.execute(f'SELECT count(*) FROM "{t}"').fetchone()[0] for t in sorted(tables)}
        page_size = conn.execute("PRAGMA page_size").fetchone()[0]
        pages = conn.execute("PRAGMA page_count").fetchone()[0]
        free = conn.execute("PRAGMA freelist_count").fetchone()[0]
    finally:
        conn.close()
    return {
        "file_bytes": db.stat().st_size,
        "wal_bytes": wal.stat().st_size if wal.exists() else 0,
        "used_bytes": (pages - free) * page_size,
        "rows": rows,
    }


def snapshot(dep: Deployment) -> dict[str, Any]:
    return {"time": time.monotonic(), "cpu": cpu_seconds(dep), "db": db_state(dep)}


def delta(before: dict[str, Any], after: dict[str, Any], clips: int) -> dict[str, Any]:
    cpu = {k: after["cpu"][k] - before["cpu"][k] for k in COMPONENTS}
    rows = {
        t: after["db"]["rows"].get(t, 0) - before["db"]["rows"].get(t, 0)
        for t in sorted(set(after["db"]["rows"]) | set(before["db"]["rows"]))
    }
    db_bytes = {k: after["db"][k] - before["db"][k] for k in ("file_bytes", "wal_bytes", "used_bytes")}
    total_cpu = sum(cpu.values())
    return {
        "clips": clips,
        "wall_seconds": round(after["time"] - before["time"], 1),
        "cpu_seconds": {k: round(v, 2) for k, v in cpu.items()},
        "cpu_seconds_total": round(total_cpu, 2),
        "cpu_seconds_per_clip": round(total_cpu / clips, 4),
        "db_bytes": db_bytes,
        "db_bytes_per_clip": round((db_bytes["file_bytes"] + db_bytes["wal_bytes"]) / clips, 1),
        "db_used_bytes_per_clip": round(db_bytes["used_bytes"] / clips, 1),
        "rows": {t: rows[t] for t in TABLES if t in rows},
        "rows_all": {t: n for t, n in rows.items() if n},
        "rows_per_clip": round(sum(rows.values()) / clips, 2),
    }


def idle_rate(dep: Deployment, seconds: float) -> dict[str, float]:
    """CPU seconds per second of each component with nothing running (its background cost)."""
    first = cpu_seconds(dep)
    time.sleep(seconds)
    last = cpu_seconds(dep)
    return {k: round((last[k] - first[k]) / seconds, 4) for k in COMPONENTS}


def machine() -> dict[str, Any]:
    return {
        "cpus": os.cpu_count(),
        "cpu_model": next(
            (
                line.split(":", 1)[1].strip()
                for line in Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("model name")
            ),
            platform.processor(),
        ),
        "memory_gb": round(psutil.virtual_memory().total / 2**30, 1),
        "python": platform.python_version(),
        "loadavg_at_start": os.getloadavg(),
    }


# --------------------------------------------------------------------------------------------------
# The deployment and the runs
# --------------------------------------------------------------------------------------------------
def start_deployment(root: Path, batch_rate_limit: float, dag_files: tuple[Path, ...]) -> Deployment:
    dep = Deployment(
        root=root,
        default_key=f"sk-jogg-BENCH-DEFAULT-{secrets.token_hex(12)}",
        load_key=f"sk-jogg-BENCH-LOAD-{secrets.token_hex(12)}",
        batch_key=f"sk-jogg-BENCH-BATCH-{secrets.token_hex(12)}",
        batch_rate_limit=batch_rate_limit,
        parallelism=int(AIRFLOW_DEFAULTS["AIRFLOW__CORE__PARALLELISM"]),
        env_overrides=dict(AIRFLOW_DEFAULTS),
    )
    # the benchmark's DAGs beside the harness's (start() copies those and keeps what is there)
    dep.dags_folder.mkdir(parents=True, exist_ok=True)
    for dag_file in dag_files:
        shutil.copy(dag_file, dep.dags_folder / dag_file.name)
    dep.start()
    return dep


def write_clips(
    path: Path, run_id: str, clips: int, finish_after: float, *, mapped: bool, after_poll: bool = False
) -> None:
    """``clips`` rows with http inputs naming the run; each Jogg task ends ``finish_after`` s after
    its create (``after_poll``: after the first status answer about it, so that whoever looks first
    finds it running). The mapped example reads ``video_url``/``audio_url``, the batch
    ``video``/``audio``."""
    base = f"https://media.example.com/bench/{run_id}"
    marker = FINISH_AFTER_POLL if after_poll else FINISH_AFTER_CREATE
    video, audio = ("video_url", "audio_url") if mapped else ("video", "audio")
    with path.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=["clip", video, audio])
        writer.writeheader()
        for i in range(clips):
            writer.writerow(
                {
                    "clip": f"c{i:05d}",
                    video: f"{base}/video-{i:05d}.mp4?{marker}={finish_after:g}",
                    audio: f"{base}/audio-{i:05d}.mp3",
                }
            )


def wait_parsed(dep: Deployment) -> None:
    """Wait until every DAG file of the folder is serialized, so the baseline holds their rows."""
    files = len(list(dep.dags_folder.glob("*.py")))
    dep.wait_until(
        f"{files} DAGs to be serialized",
        lambda: dep.query("SELECT count(*) AS n FROM serialized_dag")[0]["n"] >= files,
        timeout=300,
        interval=2,
    )


def quiet(dep: Deployment) -> None:
    """Wait until no DAG run is queued or running (e.g. the mapped example's own @daily run)."""
    dep.wait_until(
        "no DAG run queued or running",
        lambda: not dep.query("SELECT 1 FROM dag_run WHERE state IN ('queued', 'running')"),
        timeout=600,
        interval=2,
    )


def run_and_watch(
    dep: Deployment, dag_id: str, run_id: str, conf: dict[str, Any], timeout: float, watch: Callable[[], None]
) -> tuple[str, float]:
    started = time.monotonic()
    dep.trigger(dag_id, run_id, conf)
    state: dict[str, str] = {}

    def over() -> bool:
        watch()
        s = dep.run_state(dag_id, run_id)
        if s in ("success", "failed"):
            state["s"] = s
            return True
        return False

    dep.wait_until(f"run {run_id} of {dag_id} to finish", over, timeout=timeout, interval=1)
    return state["s"], time.monotonic() - started


def trigger_rows(dep: Deployment, dag_id: str, run_id: str, seen: dict[int, int]) -> None:
    """Record the size of each trigger row of the run while it exists (rows are deleted after firing)."""
    for row in dep.query(
        "SELECT t.id, t.kwargs FROM task_instance ti JOIN trigger t ON t.id = ti.trigger_id "
        "WHERE ti.dag_id = ? AND ti.run_id = ?",
        (dag_id, run_id),
    ):
        seen[row["id"]] = len(row["kwargs"])


def span(
    samples: list[tuple[float, int, int, int]], column: int, total: int
) -> tuple[float | None, float | None]:
    """Seconds since the trigger of the first sample where ``column`` > 0 and of the first where it
    reached ``total``."""
    first = next((s[0] for s in samples if s[column] > 0), None)
    done = next((s[0] for s in samples if s[column] >= total), None)
    return (round(first, 1) if first is not None else None, round(done, 1) if done is not None else None)


def duration(phase: tuple[float | None, float | None]) -> float | None:
    first, last = phase
    return None if first is None or last is None else round(last - first, 1)


def xcom_sizes(dep: Deployment, dag_id: str, run_id: str) -> dict[str, int]:
    rows = dep.query(
        "SELECT length(CAST(value AS BLOB)) AS n FROM xcom WHERE dag_id = ? AND run_id = ?", (dag_id, run_id)
    )
    sizes = [int(r["n"] or 0) for r in rows]
    return {"rows": len(sizes), "bytes": sum(sizes), "largest": max(sizes, default=0)}


# --------------------------------------------------------------------------------------------------
# Scenarios
# --------------------------------------------------------------------------------------------------
def batch10k(
    dep: Deployment, args: argparse.Namespace, save: Callable[[dict[str, Any]], None]
) -> dict[str, Any]:
    fake = dep.batch_fake
    dep.wait_for_dag(BATCH_DAG_ID)
    wait_parsed(dep)
    quiet(dep)
    run_id = f"bench-batch10k-{uuid.uuid4().hex[:6]}"
    folder = dep.root / run_id
    folder.mkdir()
    manifest_in = folder / "clips.csv"
    write_clips(manifest_in, run_id, args.clips, args.finish_after, mapped=False)
    conf = {
        "clips": str(manifest_in),
        "manifest_path": str(folder / "results.csv"),
        "output_dir": str(folder / "results"),
        "conn_id": "jogg_batch",
    }
    before = snapshot(dep)
    # (seconds since the trigger, creates and status polls the fake saw, results saved so far)
    samples: list[tuple[float, int, int, int]] = []
    triggers: dict[int, int] = {}
    results = folder / "results"
    t0 = time.monotonic()
    last = [0.0]

    def watch() -> None:
        now = time.monotonic()
        if now - last[0] >= 1.0:
            last[0] = now
            counts = fake.counts()
            saved = sum(1 for _ in results.glob("*.mp4")) if results.is_dir() else 0
            samples.append((now - t0, int(counts["creates"]), int(counts["status_polls"]), saved))
            trigger_rows(dep, BATCH_DAG_ID, run_id, triggers)

    state, wall = run_and_watch(dep, BATCH_DAG_ID, run_id, conf, args.timeout, watch)
    after = snapshot(dep)
    counts = fake.counts()
    phases = {
        "create": span(samples, 1, args.clips),
        "status_polls": span(samples, 2, args.clips),
        "download": span(samples, 3, args.clips),
    }
    task_logs = dep.task_logs / f"dag_id={BATCH_DAG_ID}" / f"run_id={run_id}"
    oversized = sum(
        log.read_text(errors="replace").count("exceeds configured max_value_storage_bytes")
        for log in task_logs.rglob("*.log")
    )
    xcoms = dep.xcoms(BATCH_DAG_ID, run_id, BATCH_TASK)
    summary = xcoms.get(-1)
    saved = sorted((folder / "results").glob("*.mp4"))
    return {
        "run_state": state,
        "wall_seconds": round(wall, 1),
        "create_phase_seconds": duration(phases["create"]),
        "phases_seconds_since_trigger": phases,
        "phases_sampled": "(first, last) sample with creates / status polls / saved results > 0 and "
        ">= clips; the fake's counts and the output folder polled every ~1 s",
        "state_store_oversized_warnings": oversized,
        "creates": counts["creates"],
        "creates_over_limit_seconds": round(args.clips / args.rate_limit, 1),
        "status_polls": counts["status_polls"],
        "answers_by_status": counts["by_status"],
        "answers_429": int(counts["by_status"].get("429", 0)),
        "fake_requests": counts["requests"],
        "downloads": len(saved),
        "downloaded_bytes": sum(p.stat().st_size for p in saved),
        "trigger_rows": len(triggers),
        "trigger_kwargs_bytes_encrypted": max(triggers.values(), default=None),
        "xcom": xcom_sizes(dep, BATCH_DAG_ID, run_id),
        "summary": summary,
        "cost": delta(before, after, args.clips),
    }


def cost1k(
    dep: Deployment, args: argparse.Namespace, save: Callable[[dict[str, Any]], None]
) -> dict[str, Any]:
    dep.wait_for_dag(BATCH_DAG_ID)
    dep.wait_for_dag(MAPPED_DAG_ID)
    wait_parsed(dep)
    quiet(dep)  # the example's @daily run (its sample manifest is not in the DAGs folder: it fails)
    idle = idle_rate(dep, args.idle_seconds)
    shapes: dict[str, Any] = {"idle_cpu_seconds_per_second": idle}
    for shape in ("batch", "mapped"):
        run_id = f"bench-cost-{shape}-{uuid.uuid4().hex[:6]}"
        folder = dep.root / run_id
        folder.mkdir()
        manifest_in = folder / "clips.csv"
        write_clips(
            manifest_in,
            run_id,
            args.clips,
            args.finish_after,
            mapped=shape == "mapped",
            after_poll=args.finish_after_poll,
        )
        if shape == "batch":
            dag_id = BATCH_DAG_ID
            conf: dict[str, Any] = {
                "clips": str(manifest_in),
                "manifest_path": str(folder / "results.csv"),
                "output_dir": "",
                "conn_id": "jogg_default",
            }
        else:
            dag_id = MAPPED_DAG_ID
            conf = {"manifest": str(manifest_in), "output_dir": "", "limit": 0}
        triggers: dict[int, int] = {}
        last = [0.0]

        def watch(
            dag_id: str = dag_id,
            run_id: str = run_id,
            triggers: dict[int, int] = triggers,
            last: list[float] = last,
        ) -> None:
            now = time.monotonic()
            if now - last[0] >= 5.0:
                last[0] = now
                trigger_rows(dep, dag_id, run_id, triggers)

        print(f"[{time.strftime('%H:%M:%S')}] {shape}: {args.clips} clips, run {run_id}", flush=True)
        before = snapshot(dep)
        state, wall = run_and_watch(dep, dag_id, run_id, conf, args.timeout, watch)
        # let the last task processes exit and be reaped, the trigger rows be cleaned up
        time.sleep(args.settle_seconds)
        after = snapshot(dep)
        cost = delta(before, after, args.clips)
        idle_total = sum(idle.values()) * cost["wall_seconds"]
        cost["cpu_seconds_per_clip_minus_idle"] = round(
            (cost["cpu_seconds_total"] - idle_total) / args.clips, 4
        )
        ti = dep.query(
            "SELECT state, count(*) AS n FROM task_instance WHERE dag_id = ? AND run_id = ? GROUP BY state",
            (dag_id, run_id),
        )
        shapes[shape] = {
            "run_state": state,
            "run_wall_seconds": round(wall, 1),
            "task_instances": {r["state"]: r["n"] for r in ti},
            "trigger_rows_seen": len(triggers),
            "xcom": xcom_sizes(dep, dag_id, run_id),
            **cost,
        }
        print(f"[{time.strftime('%H:%M:%S')}] {shape}: {state} in {wall:.0f} s", flush=True)
        save(shapes)  # written after each shape: the batch's figures survive a mapped run cut short
    b, m = shapes["batch"], shapes["mapped"]
    shapes["ratio_batch_over_mapped"] = {
        key: round(b[key] / m[key], 4) if m[key] else None
        for key in (
            "cpu_seconds_per_clip",
            "cpu_seconds_per_clip_minus_idle",
            "db_bytes_per_clip",
            "db_used_bytes_per_clip",
            "rows_per_clip",
        )
    }
    return shapes


# --------------------------------------------------------------------------------------------------
# Output
# --------------------------------------------------------------------------------------------------
def print_table(scenario: str, result: dict[str, Any]) -> None:
    if scenario == "batch10k":
        r = result
        rows = [
            ("run state", r["run_state"]),
            ("wall time of the run (s)", r["wall_seconds"]),
            ("create phase (s)", r["create_phase_seconds"]),
            ("creates / limit (s)", r["creates_over_limit_seconds"]),
            ("creates / status polls", f"{r['creates']} / {r['status_polls']}"),
            ("answers 429", r["answers_429"]),
            ("downloads", r["downloads"]),
            ("trigger kwargs (bytes, encrypted)", r["trigger_kwargs_bytes_encrypted"]),
            ("XCom (rows, bytes)", f"{r['xcom']['rows']}, {r['xcom']['bytes']}"),
            ("Airflow CPU (s)", r["cost"]["cpu_seconds_total"]),
            ("Airflow CPU per clip (s)", r["cost"]["cpu_seconds_per_clip"]),
            ("DB growth (bytes)", r["cost"]["db_bytes"]),
            ("DB growth per clip (bytes)", r["cost"]["db_bytes_per_clip"]),
        ]
        for k, v in rows:
            print(f"| {k} | {v} |")
        return
    b, m, ratio = result["batch"], result["mapped"], result["ratio_batch_over_mapped"]
    print("| per clip | batch | mapped | batch / mapped |")
    print("|---|---:|---:|---:|")
    for key in (
        "cpu_seconds_per_clip",
        "cpu_seconds_per_clip_minus_idle",
        "db_bytes_per_clip",
        "db_used_bytes_per_clip",
        "rows_per_clip",
    ):
        print(f"| {key} | {b[key]} | {m[key]} | {ratio[key]} |")
    for comp in COMPONENTS:
        print(f"| CPU s, {comp} (total) | {b['cpu_seconds'][comp]} | {m['cpu_seconds'][comp]} | |")
    for t in TABLES:
        print(f"| rows, {t} (total) | {b['rows'].get(t, '-')} | {m['rows'].get(t, '-')} | |")
    print(f"| run wall time (s) | {b['run_wall_seconds']} | {m['run_wall_seconds']} | |")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--scenario", choices=("batch10k", "cost1k"), required=True)
    parser.add_argument("--clips", type=int, help="clips (default: 10,000 for batch10k, 1,000 for cost1k)")
    parser.add_argument("--rate-limit", type=float, default=100.0, help="the jogg_batch fake's requests/s")
    parser.add_argument("--finish-after", type=float, default=3.0, help="Jogg tasks end N s after create")
    parser.add_argument(
        "--finish-after-poll",
        action="store_true",
        help="cost1k: count --finish-after from the first status answer, not the create: every "
        "sensor of the mapped shape finds its task running and defers, as with Jogg tasks of minutes",
    )
    parser.add_argument("--timeout", type=float, default=3600.0, help="seconds one run may take")
    parser.add_argument("--idle-seconds", type=float, default=30.0, help="cost1k: idle CPU measured over N s")
    parser.add_argument("--settle-seconds", type=float, default=10.0, help="cost1k: wait after a run ends")
    parser.add_argument("--keep", action="store_true", help="keep the deployment's directory")
    parser.add_argument("--out", type=Path, help="JSON output (default: bench/results/)")
    args = parser.parse_args()
    args.clips = args.clips or (10_000 if args.scenario == "batch10k" else 1_000)
    out = args.out or RESULTS / f"batch_deployment_{args.scenario}.json"

    root = Path(tempfile.mkdtemp(prefix=f"jogg-bench-{args.scenario}-"))
    doc: dict[str, Any] = {
        "scenario": args.scenario,
        "clips": args.clips,
        "date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "machine": machine(),
        "settings": {
            "airflow_defaults_restored": AIRFLOW_DEFAULTS,
            "fake_rate_limit": args.rate_limit if args.scenario == "batch10k" else None,
            "finish_after_create_seconds": None if args.finish_after_poll else args.finish_after,
            "finish_after_first_status_seconds": args.finish_after if args.finish_after_poll else None,
        },
    }
    print(f"deployment in {root}", flush=True)

    def stop_on_sigterm(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt(f"signal {signum}")  # the finally below stops the deployment by PID

    # a background job ignores SIGINT: SIGTERM to this script's PID must still stop what it started
    signal.signal(signal.SIGTERM, stop_on_sigterm)
    # the mapped example (an @daily DAG: its own first run fails at once) only where it is measured
    dags = (BATCH_DAG,) if args.scenario == "batch10k" else (BATCH_DAG, MAPPED_DAG)
    dep = start_deployment(root, args.rate_limit, dags)
    ok = False
    try:
        doc["deployment_start"] = {k: round(v, 1) for k, v in dep.timings.items()}

        def save(partial: dict[str, Any]) -> None:
            out.parent.mkdir(parents=True, exist_ok=True)
            out.write_text(
                json.dumps({**doc, "result": partial, "partial": True}, indent=2, default=str) + "\n"
            )

        doc["result"] = (batch10k if args.scenario == "batch10k" else cost1k)(dep, args, save)
        doc["machine"]["loadavg_at_end"] = os.getloadavg()
        ok = True
    finally:
        doc["stopped"] = dep.stop()
        if not ok or args.keep:
            print(f"kept {root}", flush=True)
        else:
            shutil.rmtree(root, ignore_errors=True)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(doc, indent=2, default=str) + "\n")
    print_table(args.scenario, doc["result"])
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
