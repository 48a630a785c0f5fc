"""End to end on the deployment users grow into: CeleryExecutor with a Redis broker and a PostgreSQL
metadata DB, two Celery workers, two triggerers, api-server, scheduler, dag-processor, and the fake
Jogg server, all on loopback (see ``services.py``).

The mapped batch DAG of the e2e suite (``tests/e2e/dags/jogg_e2e_batch.py``: 200 pairs, one
``LipSyncOperator`` and one deferrable ``LipSyncSensor`` per pair, against a rate-limited fake that
keeps every Jogg task ``processing`` until the test finishes it) runs there. Mid-run, once the
triggers are spread over both triggerers, the triggerer holding the most of them is killed with
SIGKILL; the other one must adopt its triggers (same trigger rows, new ``triggerer_id``) and poll
them. Then the Jogg tasks finish and every run must succeed with exactly one accepted create POST
per pair, every result matching its pair, no trigger rows and nothing of the deployment left running.

Run with ``make e2e-distributed`` (``pytest -m e2e_distributed tests/e2e_distributed``);
``JOGG_E2E_DIST_PAIRS`` changes the batch size (default 200) for a quick local check.
"""

from __future__ import annotations

import collections
import json
import os
import socket
import time
import uuid
from typing import TYPE_CHECKING, Any

import pytest

from tests.e2e.deployment import CREATE_PATH, STATUS_PATH, TRIGGER_CLASSPATH
from tests.e2e_distributed.services import (
    TRIGGERER_NAMES,
    WORKER_NAMES,
    DistributedDeployment,
    leftover_processes,
)

if TYPE_CHECKING:
    from collections.abc import Callable
    from pathlib import Path

pytestmark = pytest.mark.e2e_distributed

BATCH = "jogg_e2e_batch"
SENSOR = "wait"
PAIRS = int(os.environ.get("JOGG_E2E_DIST_PAIRS", "200"))
#: kill a triggerer once this many LipSyncTriggers are assigned (the rest of the batch still arriving)
KILL_AT = max(2, PAIRS // 2)
#: ... and each triggerer holds at least this many of them
MIN_PER_TRIGGERER = max(1, PAIRS // 20)
AIOHTTP_UA = "aiohttp/"  # the trigger's client
#: after SIGKILL the trigger-runner child of the killed triggerer must be gone within this many seconds
ORPHAN_GRACE_SECONDS = 30.0
#: [triggerer] triggerer_health_check_threshold (10 s) + a few triggerer loops + a busy 2-core machine
ADOPTION_TIMEOUT = 120.0


def trigger_logs(dep: DistributedDeployment, run_id: str, map_index: int) -> list[Path]:
    folder = (
        dep.task_logs
        / f"dag_id={BATCH}"
        / f"run_id={run_id}"
        / f"task_id={SENSOR}"
        / f"map_index={map_index}"
    )
    return sorted(folder.glob("attempt=*.log.trigger.*.log"))


def polled_by(dep: DistributedDeployment, run_id: str, map_index: int, job_id: int, jogg_id: str) -> bool:
    """The trigger log written by triggerer job ``job_id`` says the trigger polled this Jogg task."""
    needle = f"Jogg task {jogg_id} is processing"
    for path in trigger_logs(dep, run_id, map_index):
        if int(path.name.rsplit(".", 2)[-2]) != job_id:
            continue
        for line in path.read_text(errors="replace").splitlines():
            try:
                if json.loads(line).get("event", "").startswith(needle):
                    return True
            except ValueError:
                continue
    return False


def lip_sync_triggers(dep: DistributedDeployment, run_id: str) -> list[dict[str, Any]]:
    """Deferred sensors of the run waiting on a LipSyncTrigger (not on the DateTimeTrigger that sits
    out a 429), with the trigger row; the Jogg task id comes from the decrypted trigger kwargs."""
    rows = []
    for row in dep.deferred_sensors(BATCH, run_id, SENSOR):
        if row["classpath"] != TRIGGER_CLASSPATH:
            continue
        item = dict(row)
        item["jogg_task_id"] = json.loads(dep.decrypt_trigger_kwargs(row["kwargs"]))["jogg_task_id"]
        rows.append(item)
    return rows


def port_closed(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1):
            return False
    except OSError:
        return True


@pytest.mark.timeout(1800)
def test_batch_survives_a_sigkilled_triggerer(
    distributed: DistributedDeployment, report: Callable[[str], None]
) -> None:
    dep = distributed
    fake = dep.load_fake
    job_of = dict(dep.triggerer_job_ids)  # component name -> TriggererJob id
    name_of = {job: name for name, job in job_of.items()}
    assert set(job_of) == set(TRIGGERER_NAMES), job_of
    assert len(name_of) == 2, job_of

    dep.wait_for_dag(BATCH)
    run_id = f"e2e-dist-{uuid.uuid4().hex[:8]}"
    started = time.monotonic()
    dep.trigger(BATCH, run_id, {"pairs": PAIRS, "tag": run_id})

    def no_failures() -> None:
        states = dep.task_states(BATCH, run_id)
        bad = {
            k: v
            for k, v in states.items()
            if v in ("failed", "upstream_failed") or (v == "up_for_retry" and k[0] != SENSOR)
        }
        if bad:
            raise AssertionError(f"tasks failed before the Jogg tasks finished: {bad}\n{dep.diagnostics()}")

    # ---- 1. the batch is under way and its triggers are spread over both triggerers
    spread: dict[int, int] = {}

    def triggers_spread() -> list[dict[str, Any]] | None:
        no_failures()
        rows = [r for r in lip_sync_triggers(dep, run_id) if r["triggerer_id"] is not None]
        spread.clear()
        spread.update(collections.Counter(r["triggerer_id"] for r in rows))
        if len(rows) >= KILL_AT and all(spread.get(job, 0) >= MIN_PER_TRIGGERER for job in name_of):
            return rows
        if len(rows) == PAIRS:
            raise AssertionError(
                f"all {PAIRS} triggers are assigned but not spread over both triggerers "
                f"(jobs {sorted(name_of)}): {dict(spread)}"
            )
        return None

    rows = dep.wait_until(
        f"{KILL_AT} LipSyncTriggers, at least {MIN_PER_TRIGGERER} in each triggerer",
        triggers_spread,
        timeout=900,
        interval=1,
    )
    assert rows is not None
    at_kill = dict(spread)
    victim_job = max(name_of, key=lambda job: (at_kill.get(job, 0), job))
    survivor_job = next(job for job in name_of if job != victim_job)
    victim_name, survivor_name = name_of[victim_job], name_of[survivor_job]
    victim_triggers = {r["trigger_id"]: r for r in rows if r["triggerer_id"] == victim_job}
    polled_by_victim = sum(
        polled_by(dep, run_id, r["map_index"], victim_job, r["jogg_task_id"])
        for r in victim_triggers.values()
    )

    # ---- 2. SIGKILL the triggerer holding the most triggers (its own PID; no SIGTERM, no cleanup)
    lip_sync_done = sum(
        1
        for (task, _), state in dep.task_states(BATCH, run_id).items()
        if task == "lip_sync" and state == "success"
    )
    killed = dep.kill_triggerer(victim_name)
    killed_at = time.time()
    t_kill = time.monotonic()
    # triggers it assigned itself between the query above and the kill are its triggers as well
    for row in lip_sync_triggers(dep, run_id):
        if row["triggerer_id"] == victim_job:
            victim_triggers.setdefault(row["trigger_id"], row)
    assert victim_triggers
    assert dep.components[survivor_name].alive

    # Its trigger-runner child (same process group) notices its supervisor is gone and exits.
    def runner_gone() -> bool:
        return not leftover_processes({killed.pid}, [])["alive"]

    dep.wait_until(
        f"the killed triggerer's process group {killed.pid} to be empty",
        runner_gone,
        timeout=ORPHAN_GRACE_SECONDS,
    )
    orphan_gone_after = time.monotonic() - t_kill

    # ---- 3. the survivor adopts the same trigger rows once the dead one's heartbeat is stale
    def adopted() -> bool:
        no_failures()
        current = {r["trigger_id"]: r for r in lip_sync_triggers(dep, run_id)}
        gone = sorted(set(victim_triggers) - set(current))
        # the Jogg tasks are all still processing: no trigger of the victim may have fired or vanished
        assert not gone, f"triggers of the killed triggerer vanished before adoption: {gone}"
        return all(current[t]["triggerer_id"] == survivor_job for t in victim_triggers)

    dep.wait_until(
        f"triggerer job {survivor_job} to adopt the {len(victim_triggers)} triggers of job {victim_job}",
        adopted,
        timeout=ADOPTION_TIMEOUT,
        interval=0.5,
    )
    adopted_after = time.monotonic() - t_kill

    def adopted_ones_polled() -> bool:
        return all(
            polled_by(dep, run_id, r["map_index"], survivor_job, r["jogg_task_id"])
            for r in victim_triggers.values()
        )

    dep.wait_until("the survivor to poll every adopted trigger", adopted_ones_polled, timeout=240, interval=2)
    adopted_polled_after = time.monotonic() - t_kill

    # ---- 4. the rest of the batch defers onto the survivor; every deferral processed by the scheduler
    peak = 0

    def all_deferred() -> bool:
        nonlocal peak
        no_failures()
        current = lip_sync_triggers(dep, run_id)
        peak = max(peak, len(current))
        stray = {
            r["map_index"]: r["triggerer_id"]
            for r in current
            if r["triggerer_id"] not in (None, survivor_job)
        }
        assert not stray, f"triggers held by a triggerer other than the survivor {survivor_job}: {stray}"
        settled = [r for r in current if r["triggerer_id"] == survivor_job and dep.deferral_settled(r)]
        return len(settled) == PAIRS

    dep.wait_until(
        f"all {PAIRS} sensors to be deferred in triggerer job {survivor_job}",
        all_deferred,
        timeout=900,
        interval=2,
    )
    all_deferred_after = time.monotonic() - started
    deferred_rows = {r["map_index"]: r for r in lip_sync_triggers(dep, run_id)}
    assert sorted(deferred_rows) == list(range(PAIRS))
    jogg_ids: dict[int, str] = dep.xcoms(BATCH, run_id, "lip_sync")
    assert sorted(jogg_ids) == list(range(PAIRS))
    for index, row in deferred_rows.items():
        assert row["jogg_task_id"] == jogg_ids[index], index
    jobs = {job["id"]: dict(job) for job in dep.triggerer_jobs()}
    assert jobs[survivor_job]["state"] == "running", jobs

    # ---- 5. the Jogg tasks finish; the survivor delivers every result
    t_finish = time.monotonic()
    for index in range(PAIRS):
        fake.set_status(jogg_ids[index], "success")
    states = dep.wait_for_runs(BATCH, [run_id], timeout=900)
    finished = time.monotonic()
    ti_states = dep.task_states(BATCH, run_id)
    not_ok = {k: v for k, v in ti_states.items() if v != "success"}
    assert states == {run_id: "success"}, not_ok
    assert not not_ok
    assert len(ti_states) == 2 + 2 * PAIRS  # make_pairs, lip_sync x PAIRS, wait x PAIRS, collect

    # Only the sensors may have retried, and only after Airflow's own state-mismatch race
    # (apache/airflow#67287, see the DAG); never a create.
    retried = {
        (r["task_id"], r["map_index"]): r["try_number"]
        for r in dep.query(
            "SELECT task_id, map_index, try_number FROM task_instance "
            "WHERE dag_id = ? AND run_id = ? AND try_number > 1",
            (BATCH, run_id),
        )
    }
    mismatches = {
        (r["task_id"], r["map_index"])
        for r in dep.query(
            "SELECT task_id, map_index FROM log WHERE dag_id = ? AND run_id = ? AND event = 'state mismatch'",
            (BATCH, run_id),
        )
    }
    assert all(task == SENSOR for task, _ in retried), retried
    assert set(retried) <= mismatches, {"retried": retried, "state mismatches": mismatches}

    # Each result belongs to its own pair.
    pairs = dep.xcoms(BATCH, run_id, "make_pairs")[-1]
    results = dep.xcoms(BATCH, run_id, SENSOR)
    tasks = fake.tasks()
    assert len(pairs) == PAIRS
    assert sorted(results) == list(range(PAIRS))
    for index in range(PAIRS):
        jogg_id = jogg_ids[index]
        assert results[index]["task_id"] == jogg_id, index
        assert results[index]["status"] == "success", index
        assert results[index]["result_url"], index
        created = tasks[jogg_id]
        expected_video = f"https://media.example.com/e2e/{run_id}/video-{index:03d}.mp4"
        expected_audio = f"https://media.example.com/e2e/{run_id}/audio-{index:03d}.mp3"
        assert created["video_url"] == pairs[index]["video_url"] == expected_video, index
        assert created["audio_url"] == pairs[index]["audio_url"] == expected_audio, index
    collected = dep.xcoms(BATCH, run_id, "collect")[-1]
    assert collected == {"count": PAIRS, "task_ids": [jogg_ids[i] for i in range(PAIRS)]}

    # Exactly one accepted create per pair; any other create POST was a 429, which creates nothing.
    recorded = fake.requests()
    creates = [r for r in recorded if r["method"] == "POST" and r["path"] == CREATE_PATH]
    accepted = [r for r in creates if r["status"] == 200]
    assert len(accepted) == PAIRS, collections.Counter(r["status"] for r in creates)
    assert all(r["status"] == 429 for r in creates if r["status"] != 200)
    by_pair = collections.Counter((r["json"]["video_url"], r["json"]["audio_url"]) for r in accepted)
    assert set(by_pair.values()) == {1}
    assert len(by_pair) == PAIRS
    assert sum(1 for t in tasks.values() if f"/e2e/{run_id}/" in t["video_url"]) == PAIRS
    statuses = collections.Counter(r["status"] for r in recorded)
    assert set(statuses) <= {200, 429}, statuses

    # The adopted triggers were polled again by a trigger (aiohttp) after the kill, and succeeded.
    for row in victim_triggers.values():
        polls = [
            r
            for r in recorded
            if r["method"] == "GET"
            and r["path"] == STATUS_PATH + row["jogg_task_id"]
            and r["time"] > killed_at
        ]
        assert any(AIOHTTP_UA in r["headers"].get("user-agent", "") and r["status"] == 200 for r in polls), (
            row
        )

    # ---- 6. nothing left: trigger rows, Celery messages and results, then every process
    dep.wait_until(
        "the trigger table to be empty",
        lambda: dep.query("SELECT count(*) FROM trigger")[0][0] == 0,
        timeout=120,
        interval=1,
    )
    assert dep.redis is not None
    assert dep.redis.integer("LLEN", "default") == 0  # the Celery queue Airflow uses
    assert dep.redis.integer("HLEN", "unacked") == 0  # messages delivered to a worker, not acked
    celery_states = {
        r[0]: r[1] for r in dep.query("SELECT status, count(*) FROM celery_taskmeta GROUP BY status")
    }
    assert set(celery_states) == {"SUCCESS"}, celery_states
    received = {
        name: dep.components[name].log.read_text(errors="replace").count("] received")
        for name in WORKER_NAMES
    }
    assert all(received.values()), f"a Celery worker ran no task: {received}"
    dead_job = jobs[victim_job]
    paused, acked = dep.deferral_counts()
    run_seconds = finished - started

    t_stop = time.monotonic()
    codes = dep.stop()
    dep.timings["teardown"] = time.monotonic() - t_stop
    groups = {c.pid for c in dep.all_components()}
    markers = [str(dep.root).encode(), str(dep.services_root).encode()]
    left = leftover_processes(groups, markers)
    assert not left["alive"], f"processes of the deployment left running: {left['alive']}"
    ports = {"api-server": dep.api_port}
    if dep.redis is not None:
        ports["redis"] = dep.redis.port
    if dep.postgres is not None:
        ports["postgres"] = dep.postgres.port
    assert all(port_closed(port) for port in ports.values()), ports
    killed_codes = {c.name: c.popen.returncode for c in dep.retired}
    clean_exit = {name: code for name, code in codes.items() if code not in (0, None)}

    t = dep.timings
    report(
        f"setup {t['start']:.1f} s | run {run_seconds:.1f} s | teardown {t['teardown']:.1f} s "
        f"(CeleryExecutor, Redis, PostgreSQL, {len(WORKER_NAMES)} workers x 2 slots, 2 triggerers)"
    )
    report(
        f"batch: {PAIRS} pairs succeeded in {run_seconds:.1f} s; SIGKILL after {t_kill - started:.1f} s "
        f"({lip_sync_done} creates done, {sum(at_kill.values())} LipSyncTriggers assigned: "
        f"{ {name_of[j]: n for j, n in at_kill.items()} }); killed {victim_name} (job {victim_job}, pid "
        f"{killed.pid}, exit {killed.popen.returncode}) held {len(victim_triggers)} triggers "
        f"({polled_by_victim} had polled there); its trigger runner was gone "
        f"{orphan_gone_after:.1f} s after; "
        f"{survivor_name} (job {survivor_job}) took them over {adopted_after:.1f} s after the kill and had "
        f"polled all {adopted_polled_after:.1f} s after; all {PAIRS} deferred in job {survivor_job} at "
        f"{all_deferred_after:.1f} s (peak {peak}); results delivered {finished - t_finish:.1f} s after "
        f"the Jogg tasks finished"
    )
    report(
        f"jogg: {len(recorded)} API requests, {len(accepted)} accepted create POSTs "
        f"({len(creates) - len(accepted)} create POSTs answered 429), {statuses[429]} answers 429 in all at "
        f"a {dep.load_rate_limit:g} req/s limit; sensors retried after Airflow's state-mismatch race "
        f"(apache/airflow#67287): {len(retried)}"
    )
    report(
        f"celery: task messages received per worker {received}, celery_taskmeta {celery_states}; "
        f"deferrals logged {paused}, processed by the scheduler {acked}; dead triggerer job row: "
        f"state={dead_job['state']} end_date={dead_job['end_date']}; trigger rows left: 0; "
        f"exit codes {codes} (non-zero: {clean_exit}; killed: {killed_codes}); processes left: none "
        f"(zombies awaiting init: {len(left['zombies'])}); ports closed: {sorted(ports)}"
    )
