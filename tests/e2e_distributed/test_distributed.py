"""End to end on the deployment users grow into: CeleryExecutor with a Redis broker and a PostgreSQL
metadata DB, two Celery workers, two triggerers, api-server, scheduler, dag-processor, and fake Jogg
servers, all on loopback (see ``services.py``).

The DAG is written as a user writes it (``tests/harness/dags/jogg_batch.py``: a mapped batch, one
``LipSyncOperator`` and one deferrable ``LipSyncSensor`` per pair, Airflow's default ``retries`` of
0), the connection has default extras, and the test never waits for the scheduler before it lets a
Jogg task finish. The fake account answers 429 (``Retry-After: 1``) above a few requests per second,
and another system on the same account (:class:`Neighbour`, a quota reader) takes half of that while
the batch starts, so that creates and first checks before a deferral are refused however fast the
machine runs the workers. The account's Jogg tasks finish at a spread of times
(:data:`USER_LANES`): before the sensor's first check, within
seconds of its deferral, and long after it.

1. :func:`test_user_batch_no_wait_lost`: mid-batch, the triggerer holding the most waits is
   SIGKILLed and the other adopts them. No task instance may fail, each pair is created exactly
   once and gets its own result. Every deferral's window (from the deferral to the scheduler's
   processing of the executor event of that worker run) is measured from the logs, and no
   LipSyncTrigger may fire inside it: Airflow 3.3.2 fails a task whose trigger does
   (apache/airflow#67287, "state mismatch").
2. :func:`test_postgres_restart_while_waits_are_deferred`: the metadata DB is restarted (fast
   shutdown by PID, same data dir and port) while a batch waits in the triggerer; components that
   exit are started again as a service manager would. Nothing may be lost or created twice.
3. :func:`test_stop_leaves_nothing_running`: Celery's queue and results are clean, and stopping by
   PID leaves no process and no open port.

Run with ``make e2e-distributed`` (``pytest -m e2e_distributed tests/e2e_distributed``);
``JOGG_E2E_DIST_PAIRS`` changes the batch size of test 1 (default 48).
"""

from __future__ import annotations

import collections
import datetime
import json
import os
import socket
import threading
import time
import uuid
from typing import TYPE_CHECKING, Any

import pytest

from airflow_provider_jogg.completion import DEFAULT_MIN_DEFERRAL_SECONDS
from airflow_provider_jogg.protocol import CREATE_PATH, QUOTA_PATH
from airflow_provider_jogg.testing.server import FINISH_AFTER_POLL
from tests.e2e.deployment import TRIGGER_CLASSPATH
from tests.e2e_distributed.services import TRIGGERER_NAMES, WORKER_NAMES, DistributedDeployment
from tests.harness import timeline
from tests.harness.fake import STATUS_ROUTE
from tests.harness.processes import leftover_processes
from tests.harness.waiting import wait_until

if TYPE_CHECKING:
    from collections.abc import Callable
    from pathlib import Path

pytestmark = pytest.mark.e2e_distributed

BATCH = "jogg_batch"
SENSOR = "wait"
PAIRS = int(os.environ.get("JOGG_E2E_DIST_PAIRS", "48"))
#: the lanes of the batch (its ``finish_after_poll`` param, cycled over the pairs): seconds from the
#: fake's first status answer about a Jogg task (the sensor's check before it defers, or the
#: trigger's first poll when that check was refused with 429) until it finishes; ``None``: until the
#: test finishes it. Jogg tasks that finish within seconds of their deferral, however loaded the
#: machine, next to tasks that finish long after it.
USER_LANES: list[float | None] = [1.0, 4.0, 7.0, 13.0, 26.0, None]
LATE = None
#: kill a triggerer once this many LipSyncTriggers are assigned to triggerers ...
KILL_AT = max(2, PAIRS // 4)
#: ... and each triggerer holds at least one wait of the late lane (still waiting after the adoption),
#: or, when every sensor has deferred and Airflow left one triggerer without one, the victim does
AIOHTTP_UA = "aiohttp/"  # the trigger's client
REQUESTS_UA = "python-requests/"  # the hook's client, in the workers
#: after SIGKILL the trigger-runner child of the killed triggerer must be gone within this many seconds
ORPHAN_GRACE_SECONDS = 30.0
#: [triggerer] triggerer_health_check_threshold (10 s) + a few triggerer loops + a busy 2-core machine
ADOPTION_TIMEOUT = 120.0
#: the provider's default ``[jogg] min_deferral_seconds``: no LipSyncTrigger polls or fires before it
DEFAULT_FLOOR_SECONDS = DEFAULT_MIN_DEFERRAL_SECONDS
#: sensor states before its deferral (or its end)
NOT_YET_DEFERRED = (None, "scheduled", "queued", "running", "up_for_retry", "up_for_reschedule")
#: requests per second another system on the same Jogg account (a dashboard reading the account's
#: quota) sends while the batch starts: half of the fake account's limit (3 req/s), so the users' DAG
#: meets 429s on its creates and first checks however fast or slow the machine runs its workers
NEIGHBOUR_RATE = 1.5
#: pairs of the PostgreSQL restart test (all in the late lane: every wait is deferred at the restart)
RESTART_PAIRS = 12


class Neighbour(threading.Thread):
    """Another system on the same Jogg account: reads the account's quota ``rate`` times a second
    until stopped, taking its share of the account's rate limit. Returns what it was answered."""

    def __init__(self, url: str, api_key: str, rate: float) -> None:
        super().__init__(name="jogg-neighbour", daemon=True)
        self.url, self.api_key, self.rate = url, api_key, rate
        self.answers: collections.Counter[int] = collections.Counter()
        self._stop_event = threading.Event()

    def run(self) -> None:
        import requests

        with requests.Session() as session:
            while not self._stop_event.wait(1 / self.rate):
                try:
                    resp = session.get(self.url + QUOTA_PATH, headers={"x-api-key": self.api_key}, timeout=10)
                except requests.RequestException:
                    continue
                self.answers[resp.status_code] += 1

    def stop(self) -> dict[int, int]:
        self._stop_event.set()
        self.join(timeout=30)
        return dict(self.answers)


def lane_of(map_index: int) -> float | None:
    """The lane the DAG gives pair ``map_index`` (``lanes[i % len(lanes)]``)."""
    return USER_LANES[map_index % len(USER_LANES)]


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
    """The trigger log written by triggerer job ``job_id`` shows a status answer for this Jogg task."""
    needle = f"Jogg task {jogg_id} is "
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


#: trigger id -> the row (with decrypted kwargs) of every LipSyncTrigger seen, per run id
SEEN: dict[str, dict[int, dict[str, Any]]] = collections.defaultdict(dict)


def lip_sync_triggers(dep: DistributedDeployment, run_id: str) -> list[dict[str, Any]]:
    """Deferred sensors of the run waiting on a LipSyncTrigger, with the trigger row and its decrypted
    kwargs (the Jogg task id, ``not_before``); each row is also kept in :data:`SEEN`."""
    rows = []
    for row in dep.deferred_sensors(BATCH, run_id, SENSOR):
        if row["classpath"] != TRIGGER_CLASSPATH:
            continue
        item = dict(row)
        item["trigger_kwargs"] = json.loads(dep.decrypt_trigger_kwargs(row["kwargs"]))
        item["jogg_task_id"] = item["trigger_kwargs"]["jogg_task_id"]
        rows.append(item)
        SEEN[run_id][item["trigger_id"]] = item
    return rows


def port_closed(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1):
            return False
    except OSError:
        return True


def bad_states(dep: DistributedDeployment, run_id: str) -> dict[tuple[str, int], str | None]:
    return {
        key: state
        for key, state in dep.task_states(BATCH, run_id).items()
        if state in ("failed", "upstream_failed", "up_for_retry")
    }


def state_mismatches(dep: DistributedDeployment, run_id: str) -> list[tuple[str, int]]:
    return [
        (r["task_id"], r["map_index"])
        for r in dep.query(
            "SELECT task_id, map_index FROM log WHERE dag_id = ? AND run_id = ? AND event = 'state mismatch'",
            (BATCH, run_id),
        )
    ]


def finish_late_tasks(dep: DistributedDeployment, run_id: str) -> int:
    """Let every Jogg task of the late lane created so far finish now; returns how many were finished."""
    fake = dep.load_fake
    done = 0
    for jogg_id, task in fake.tasks().items():
        url = task["video_url"]
        if f"/batch/{run_id}/" in url and FINISH_AFTER_POLL not in url and task["status"] == "processing":
            fake.set_status(jogg_id, "success")
            done += 1
    return done


def check_pairs(
    dep: DistributedDeployment, run_id: str, pairs: int, lanes: list[float | None]
) -> dict[str, Any]:
    """Exactly one accepted create per pair, and each pair's result is its own Jogg task's."""
    fake = dep.load_fake
    jogg_ids: dict[int, str] = dep.xcoms(BATCH, run_id, "lip_sync")
    assert sorted(jogg_ids) == list(range(pairs))
    made = dep.xcoms(BATCH, run_id, "make_pairs")[-1]
    results = dep.xcoms(BATCH, run_id, SENSOR)
    tasks = fake.tasks()
    assert len(made) == pairs
    assert sorted(results) == list(range(pairs)), sorted(set(range(pairs)) - set(results))
    for index in range(pairs):
        jogg_id = jogg_ids[index]
        assert results[index]["task_id"] == jogg_id, index
        assert results[index]["status"] == "success", index
        assert results[index]["result_url"], index
        lane = lanes[index % len(lanes)]
        base = f"https://media.example.com/batch/{run_id}"
        marker = "" if lane is None else f"?{FINISH_AFTER_POLL}={lane:g}"
        video = f"{base}/video-{index:03d}.mp4{marker}"
        assert tasks[jogg_id]["video_url"] == made[index]["video_url"] == video, index
        assert tasks[jogg_id]["audio_url"] == made[index]["audio_url"] == f"{base}/audio-{index:03d}.mp3", (
            index
        )
    assert dep.xcoms(BATCH, run_id, "collect")[-1] == {
        "count": pairs,
        "task_ids": [jogg_ids[i] for i in range(pairs)],
    }
    recorded = fake.requests()
    creates = [
        r
        for r in recorded
        if r["method"] == "POST"
        and r["path"] == CREATE_PATH
        and f"/batch/{run_id}/" in r["json"]["video_url"]
    ]
    accepted = [r for r in creates if r["status"] == 200]
    by_pair = collections.Counter((r["json"]["video_url"], r["json"]["audio_url"]) for r in accepted)
    assert len(accepted) == pairs, collections.Counter(r["status"] for r in creates)
    assert set(by_pair.values()) == {1}
    assert all(r["status"] == 429 for r in creates if r["status"] != 200)
    assert sum(1 for t in tasks.values() if f"/batch/{run_id}/" in t["video_url"]) == pairs
    return {"jogg_ids": jogg_ids, "creates": creates, "accepted": accepted, "recorded": recorded}


@pytest.mark.timeout(1800)
def test_user_batch_no_wait_lost(distributed: DistributedDeployment, report: Callable[[str], None]) -> None:
    dep = distributed
    # the deployment runs with the provider's default floor, whatever the pytest process has set
    assert not [k for k in dep.env if k.startswith("AIRFLOW__JOGG__")], sorted(dep.env)
    job_of = dict(dep.triggerer_job_ids)  # component name -> TriggererJob id
    name_of = {job: name for name, job in job_of.items()}
    assert set(job_of) == set(TRIGGERER_NAMES), job_of
    assert len(name_of) == 2, job_of

    dep.wait_for_dag(BATCH)
    run_id = f"e2e-dist-{uuid.uuid4().hex[:8]}"
    started = time.monotonic()
    neighbour = Neighbour(dep.load_fake.url, dep.load_key, NEIGHBOUR_RATE)
    neighbour.start()
    try:
        user_batch_no_wait_lost(dep, run_id, started, neighbour, report)
    finally:
        neighbour.stop()  # also when the test fails: no thread outlives it


def user_batch_no_wait_lost(
    dep: DistributedDeployment,
    run_id: str,
    started: float,
    neighbour: Neighbour,
    report: Callable[[str], None],
) -> None:
    """The body of :func:`test_user_batch_no_wait_lost`; the neighbour reads the quota until the kill."""
    job_of = dict(dep.triggerer_job_ids)
    name_of = {job: name for name, job in job_of.items()}
    dep.trigger(BATCH, run_id, {"pairs": PAIRS, "tag": run_id, "finish_after_poll": USER_LANES})

    def run_over() -> bool:
        return dep.run_state(BATCH, run_id) in ("success", "failed")

    # ---- 1. the batch is under way and waits of the late lane sit in both triggerers
    spread: dict[int, int] = {}
    late: collections.Counter[int] = collections.Counter()  # late-lane waits per triggerer job

    def triggers_spread() -> list[dict[str, Any]] | None:
        rows = [r for r in lip_sync_triggers(dep, run_id) if r["triggerer_id"] is not None]
        spread.clear()
        spread.update(collections.Counter(r["triggerer_id"] for r in rows))
        late.clear()
        late.update(r["triggerer_id"] for r in rows if lane_of(r["map_index"]) == LATE)
        if len(rows) >= KILL_AT and all(late.get(job, 0) >= 1 for job in name_of):
            return rows
        bad = bad_states(dep, run_id)
        if bad or run_over():
            # a task that failed before the kill (a create refused, say) ends the wait here, named,
            # rather than after the timeout: with retries 0 the run can no longer succeed
            raise AssertionError(
                f"before the kill, run {dep.run_state(BATCH, run_id)}; not successful: {bad}; "
                f"LipSyncTriggers per triggerer job {dict(spread)}"
            )
        sensors = [state for (task, _), state in dep.task_states(BATCH, run_id).items() if task == SENSOR]
        if len(sensors) == PAIRS and not any(state in NOT_YET_DEFERRED for state in sensors):
            # every sensor has deferred or ended. Where the waits sit is Airflow's choice: a triggerer
            # takes every unassigned trigger in each of its loops, so on a busy machine one of the two
            # may hold nearly all. The kill goes on as long as a late-lane wait is left to adopt
            if late:
                return rows
            raise AssertionError(
                f"every sensor has deferred or ended, and no wait of the late lane sat in a triggerer "
                f"({dict(spread)}); not successful: {bad_states(dep, run_id)}"
            )
        return None

    rows = dep.wait_until(
        f"{KILL_AT} LipSyncTriggers, late-lane waits in both triggerers",
        triggers_spread,
        timeout=900,
        interval=1,
    )
    assert rows is not None
    at_kill, late_at_kill = dict(spread), dict(late)
    # the triggerer holding the most waits, among those holding a late-lane wait (one that is still
    # waiting when the other triggerer adopts it)
    victim_job = max(
        (job for job in name_of if late_at_kill.get(job, 0) >= 1), key=lambda job: (at_kill.get(job, 0), job)
    )
    survivor_job = next(job for job in name_of if job != victim_job)
    victim_name, survivor_name = name_of[victim_job], name_of[survivor_job]

    neighbour_answers = neighbour.stop()
    assert neighbour_answers.get(200), neighbour_answers  # it did share the account

    # ---- 2. SIGKILL the triggerer holding the most waits (its own PID; no SIGTERM, no cleanup)
    killed = dep.crash(victim_name)
    killed_at = time.time()
    t_kill = time.monotonic()
    victim_triggers = {r["trigger_id"]: r for r in rows if r["triggerer_id"] == victim_job}
    for row in lip_sync_triggers(dep, run_id):  # assigned between the query above and the kill
        if row["triggerer_id"] == victim_job:
            victim_triggers.setdefault(row["trigger_id"], row)
    assert victim_triggers
    assert dep.components[survivor_name].alive

    def runner_gone() -> bool:
        # its trigger-runner child (same process group) notices its supervisor is gone and exits
        return not leftover_processes({killed.pid}, [])["alive"]

    dep.wait_until(
        f"the killed triggerer's process group {killed.pid} to be empty",
        runner_gone,
        timeout=ORPHAN_GRACE_SECONDS,
    )
    orphan_gone_after = time.monotonic() - t_kill

    # ---- 3. the survivor adopts the dead one's trigger rows once its heartbeat is stale
    adopted_ids: set[int] = set()

    def adopted() -> bool:
        current = {r["trigger_id"]: r for r in lip_sync_triggers(dep, run_id)}
        # a row may be gone only if its event was committed before the kill (the TI moved on)
        waiting = {t for t in victim_triggers if t in current}
        adopted_ids.update(t for t in waiting if current[t]["triggerer_id"] == survivor_job)
        return all(current[t]["triggerer_id"] == survivor_job for t in waiting)

    dep.wait_until(
        f"triggerer job {survivor_job} to adopt the {len(victim_triggers)} triggers of job {victim_job}",
        adopted,
        timeout=ADOPTION_TIMEOUT,
        interval=0.5,
    )
    adopted_after = time.monotonic() - t_kill
    assert adopted_ids, "no trigger of the killed triggerer was left to adopt"
    adopted_rows = [victim_triggers[t] for t in sorted(adopted_ids)]

    def adopted_ones_polled() -> bool:
        lip_sync_triggers(dep, run_id)  # records the trigger rows (kwargs) while they exist
        return all(
            polled_by(dep, run_id, r["map_index"], survivor_job, r["jogg_task_id"]) for r in adopted_rows
        )

    dep.wait_until("the survivor to poll every adopted trigger", adopted_ones_polled, timeout=240, interval=2)
    adopted_polled_after = time.monotonic() - t_kill

    # ---- 4. Jogg finishes the late lane now, whatever the sensors are doing; the run ends
    t_finish = time.monotonic()
    finished_late = 0

    def run_finished() -> bool:
        nonlocal finished_late
        finished_late += finish_late_tasks(dep, run_id)
        lip_sync_triggers(dep, run_id)  # records the trigger rows (kwargs) while they exist
        return run_over()

    dep.wait_until(f"run {run_id} to finish", run_finished, timeout=900, interval=1)
    finished = time.monotonic()
    run_state = dep.run_state(BATCH, run_id)

    # ---- 5. nothing lost: every task instance succeeded, no state mismatch
    ti_states = dep.task_states(BATCH, run_id)
    not_ok = {k: v for k, v in ti_states.items() if v != "success"}
    mismatches = state_mismatches(dep, run_id)
    line = timeline.build(dep.logs_of("scheduler"), dep.task_logs, BATCH, SENSOR, [run_id])
    early = line.early()
    report(
        f"no-wait-lost batch ({PAIRS} pairs, retries 0, run {run_state}): {len(not_ok)} task instances "
        f"not successful {sorted(not_ok.items())[:12]}; 'state mismatch' rows {len(mismatches)}; "
        f"LipSyncTrigger events before the scheduler processed the deferral {len(early)}"
    )
    assert not mismatches, mismatches
    assert not not_ok, not_ok
    assert run_state == "success"
    assert len(ti_states) == 2 + 2 * PAIRS  # make_pairs, lip_sync x PAIRS, wait x PAIRS, collect
    retried = dep.query(
        "SELECT task_id, map_index FROM task_instance WHERE dag_id = ? AND run_id = ? AND try_number > 1",
        (BATCH, run_id),
    )
    assert not retried, [tuple(r) for r in retried]

    # ---- 6. the window: deferral -> the scheduler processes that worker run's executor event
    assert not early, [(d.key, d.at, d.processed, f) for d, f in early]
    assert not line.unprocessed, [d.key for d in line.unprocessed]
    windows = line.windows
    assert len(windows) == len(line.deferrals) > 0
    # each fire came after its deferral's event: by how much (the floor's margin)
    margins = [f.at - d.processed.at for d in line.deferrals if d.processed for f in d.fires if f.lip_sync]
    deferred_pairs = {d.key[1] for d in line.deferrals}

    # The floor: every LipSyncTrigger seen holds not_before >= its deferral + the default floor.
    paused_at = {(d.key[1], d.key[2]): d.at for d in line.deferrals}
    floors = []
    for row in SEEN[run_id].values():
        key = (row["map_index"], 1)
        assert "not_before" in row["trigger_kwargs"], row["trigger_kwargs"]
        if key in paused_at:
            floors.append(row["trigger_kwargs"]["not_before"] - paused_at[key])
    assert floors
    assert min(floors) >= DEFAULT_FLOOR_SECONDS - 1.0, sorted(floors)[:5]

    # ---- 7. each pair created once, its own result; the adopted waits polled again after the kill
    checked = check_pairs(dep, run_id, PAIRS, USER_LANES)
    recorded = checked["recorded"]
    statuses = collections.Counter(r["status"] for r in recorded)
    assert set(statuses) <= {200, 429}, statuses
    for row in adopted_rows:
        polls = [
            r
            for r in recorded
            if r["method"] == "GET"
            and r["path"] == STATUS_ROUTE + row["jogg_task_id"]
            and r["time"] > killed_at
        ]
        assert any(AIOHTTP_UA in r["headers"].get("user-agent", "") and r["status"] == 200 for r in polls), (
            row
        )
    # first checks before a deferral (the sensor in a worker) refused with 429
    jogg_ids = set(checked["jogg_ids"].values())
    worker_checks = [
        r
        for r in recorded
        if r["method"] == "GET"
        and r["path"].startswith(STATUS_ROUTE)
        and r["path"][len(STATUS_ROUTE) :] in jogg_ids
        and REQUESTS_UA in r["headers"].get("user-agent", "")
    ]
    refused_checks = sum(1 for r in worker_checks if r["status"] == 429)
    assert refused_checks > 0, "no first check hit the rate limit: the scenario lost its 429s"
    by_lane = collections.Counter(str(lane_of(i)) for i in deferred_pairs)

    report(
        f"no-wait-lost batch: {PAIRS} pairs in {finished - started:.1f} s; SIGKILL of {victim_name} (job "
        f"{victim_job}) at {t_kill - started:.1f} s holding {len(victim_triggers)} of "
        f"{sum(at_kill.values())} LipSyncTriggers (per triggerer job {at_kill}, late lane {late_at_kill}); "
        f"its trigger runner gone {orphan_gone_after:.1f} s "
        f"after; {survivor_name} (job {survivor_job}) adopted {len(adopted_ids)} {adopted_after:.1f} s "
        f"after and had polled them {adopted_polled_after:.1f} s after; late lane ({finished_late} Jogg "
        f"tasks) finished by the test {t_finish - started:.1f} s in; results all in "
        f"{finished - t_finish:.1f} s later"
    )
    report(
        f"window on CeleryExecutor (deferral -> the scheduler's 'TaskInstance Finished' line for that "
        f"run): {timeline.format_summary(windows)}; deferrals per lane {dict(sorted(by_lane.items()))} "
        f"({PAIRS - len(deferred_pairs)} sensors finished at their first check); LipSyncTrigger events "
        f"after that processing by {timeline.format_summary(margins)}; not_before - deferral "
        f"{timeline.format_summary(floors)}"
    )
    report(
        f"jogg_load: {len(recorded)} API requests at a {dep.load_rate_limit:g} req/s limit, "
        f"{statuses[429]} answered 429 (the neighbour's quota reads until the kill: {neighbour_answers}); "
        f"first checks from workers {len(worker_checks)}, "
        f"{refused_checks} answered 429; {len(checked['accepted'])} accepted creates "
        f"({len(checked['creates']) - len(checked['accepted'])} create POSTs answered 429)"
    )


@pytest.mark.timeout(1200)
def test_postgres_restart_while_waits_are_deferred(
    distributed: DistributedDeployment, report: Callable[[str], None]
) -> None:
    dep = distributed
    assert dep.postgres is not None
    dep.wait_for_dag(BATCH)
    run_id = f"e2e-dist-pg-{uuid.uuid4().hex[:8]}"
    started = time.monotonic()
    dep.trigger(BATCH, run_id, {"pairs": RESTART_PAIRS, "tag": run_id, "finish_after_poll": [LATE]})

    # ---- 1. every wait is deferred on a LipSyncTrigger held by a live triggerer
    live_jobs = {dep.triggerer_job_ids[name] for name in dep.components if name in dep.triggerer_job_ids}

    def all_waiting() -> bool:
        bad = bad_states(dep, run_id)
        assert not bad, bad
        rows = lip_sync_triggers(dep, run_id)
        return len(rows) == RESTART_PAIRS and all(r["triggerer_id"] in live_jobs for r in rows)

    dep.wait_until(f"{RESTART_PAIRS} waits deferred in the triggerer", all_waiting, timeout=600, interval=1)
    before = {r["trigger_id"]: r["map_index"] for r in lip_sync_triggers(dep, run_id)}

    # ---- 2. restart PostgreSQL under the whole deployment
    pg_pid = dep.postgres.service.pid if dep.postgres.service else None
    restart_wall = datetime.datetime.now(datetime.timezone.utc)
    timings = dep.restart_postgres()
    restarted_at = time.monotonic()

    # ---- 3. the deployment is back: the scheduler and the triggerer heartbeat again. A component
    # that exited instead is started again, as its service manager would (Airflow 3.3.2's triggerer
    # exits when its pooled DB connection was dropped: Trigger.clean_unused does not retry).
    respawned: dict[str, int | None] = {}

    def heartbeats_after_restart() -> bool:
        for name, component in list(dep.components.items()):
            if not component.alive and name not in respawned:
                respawned[name] = component.popen.returncode
                dep.respawn(name)
        dep.check_alive()  # a second exit, or a dead fake, Redis or PostgreSQL, fails the test
        rows = dep.query(
            "SELECT job_type, max(latest_heartbeat) FROM job WHERE state = 'running' GROUP BY job_type"
        )
        latest = {r[0]: r[1] for r in rows}
        return all(
            latest.get(job) is not None and latest[job] > restart_wall
            for job in ("SchedulerJob", "TriggererJob")
        )

    wait_until(  # not dep.wait_until: that one fails at once on a component that exited
        "the scheduler and the triggerer to heartbeat after the restart",
        heartbeats_after_restart,
        timeout=300,
        interval=1,
        diagnostics=dep.diagnostics,
    )
    back_after = time.monotonic() - restarted_at
    after = {r["trigger_id"]: r["map_index"] for r in lip_sync_triggers(dep, run_id)}
    survived = sorted(set(before) & set(after))

    # ---- 4. the Jogg tasks finish; every wait must deliver its result
    t_finish = time.monotonic()

    def run_finished() -> bool:
        finish_late_tasks(dep, run_id)
        return dep.run_state(BATCH, run_id) in ("success", "failed")

    dep.wait_until(f"run {run_id} to finish", run_finished, timeout=600, interval=1)
    run_state = dep.run_state(BATCH, run_id)
    ti_states = dep.task_states(BATCH, run_id)
    not_ok = {k: v for k, v in ti_states.items() if v != "success"}
    sensors_ok = sum(1 for (task, _), state in ti_states.items() if task == SENSOR and state == "success")
    fake = dep.load_fake
    accepted = [
        r for r in fake.creates() if r["status"] == 200 and f"/batch/{run_id}/" in r["json"]["video_url"]
    ]
    duplicated = len(accepted) - len({r["json"]["video_url"] for r in accepted})
    report(
        f"PostgreSQL restarted (pid {pg_pid}, fast shutdown, down {timings['stopped_after']:.1f} s, "
        f"accepting again {timings['outage']:.1f} s after the stop) with {len(before)} waits deferred: "
        f"components that exited and were started again {respawned or 'none'}; scheduler and "
        f"triggerer heartbeating {back_after:.1f} s after; trigger rows kept {len(survived)}/{len(before)}; "
        f"run {run_state} {time.monotonic() - t_finish:.1f} s after the Jogg tasks finished "
        f"({time.monotonic() - started:.1f} s in all); injected 1, waits survived {sensors_ok}/"
        f"{RESTART_PAIRS}, lost {RESTART_PAIRS - sensors_ok}, creates duplicated {duplicated}; "
        f"not successful {not_ok or 'none'}; 'state mismatch' rows {len(state_mismatches(dep, run_id))}"
    )
    assert not not_ok, not_ok
    assert run_state == "success"
    assert not state_mismatches(dep, run_id)
    check_pairs(dep, run_id, RESTART_PAIRS, [LATE])


@pytest.mark.timeout(600)
def test_stop_leaves_nothing_running(
    distributed: DistributedDeployment, report: Callable[[str], None]
) -> None:
    dep = distributed
    # a test above that failed midway leaves waits on Jogg tasks nobody finishes: Jogg finishes them
    # now, so that what follows checks how the deployment drains and stops, whatever came before
    leftover = 0
    for fake in dep.fakes.values():
        for jogg_id, task in fake.tasks().items():
            if task["status"] in ("pending", "processing"):
                fake.set_status(jogg_id, "success")
                leftover += 1
    dep.wait_until(
        "the trigger table to be empty",
        lambda: dep.query("SELECT count(*) FROM trigger")[0][0] == 0,
        timeout=120,
        interval=1,
    )
    redis = dep.redis
    assert redis is not None

    def celery_drained() -> bool:
        # the Celery queue Airflow uses, and the messages delivered to a worker but not acked yet
        # (Airflow's Celery tasks ack late: after the task's own state is already committed)
        return redis.integer("LLEN", "default") == 0 and redis.integer("HLEN", "unacked") == 0

    dep.wait_until("Celery's queue to be empty and every message acked", celery_drained, timeout=120)
    celery_states = {
        r[0]: r[1] for r in dep.query("SELECT status, count(*) FROM celery_taskmeta GROUP BY status")
    }
    # a Celery task whose result write met the PostgreSQL restart is recorded FAILURE although its
    # task instance deferred and later succeeded (the restart test checks every run and pair)
    assert set(celery_states) <= {"SUCCESS", "FAILURE"}, celery_states
    assert celery_states.get("SUCCESS", 0) > 0, celery_states
    received = {
        name: dep.components[name].log.read_text(errors="replace").count("] received")
        for name in WORKER_NAMES
    }
    assert all(received.values()), f"a Celery worker ran no task: {received}"

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
    retired_codes = {f"{c.name} (pid {c.pid})": c.popen.returncode for c in dep.retired}
    report(
        f"Jogg tasks left processing by the tests above, finished first: {leftover}; "
        f"celery: task messages received per worker {received}, celery_taskmeta {celery_states}; "
        f"stopped by PID in {dep.timings['teardown']:.1f} s, exit codes {codes}; retired (killed, "
        f"exited or restarted) {retired_codes}; processes left: none (zombies awaiting init: "
        f"{len(left['zombies'])}); ports closed: {sorted(ports)}"
    )
