"""End to end: ``LipSyncBatchOperator`` with 2,000 clips in the real deployment, through two crashes.

One task instance creates a Jogg task per clip against the ``jogg_batch`` fake, a separate process
with a rate limit (429 + ``Retry-After`` above it, while the connection's own limit is the hook's
default, far higher), then waits for all of them with one ``LipSyncBatchTrigger``. On the way:

- the task's process is SIGKILLed in the create phase, once some hundreds of Jogg tasks exist; the
  retry (``retries=1``) resumes from the batch's ledger: no clip gets a second Jogg task, and the
  clips whose create was announced but not answered are ``uncertain`` and never sent again;
- the triggerer is SIGKILLed during the wait, once the trigger has written some hundreds of ended
  clips back to the ledger and others still run; a new triggerer adopts the trigger row, which
  resumes from the ledger and polls only the clips still running.

Then every saved result must carry the tag of its own clip (the fake tags each result with the
task's inputs). Runtime: about 3.5-4 minutes on a busy two-core machine (203-218 s measured),
bounded by the fake's rate limit (``Deployment.batch_rate_limit``, 40 requests/s, for 2,000 creates
and at least 2,000 status polls), the deployment's 30 s deferral floor and 2,000 downloads. The
module runs before ``test_deployment.py``, whose secrets test then also searches what this batch
left in the logs, the DB and the files.
"""

from __future__ import annotations

import collections
import csv
import json
import os
import re
import signal
import time
import uuid
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from airflow_provider_jogg.protocol import CREATE_PATH
from airflow_provider_jogg.testing.media import result_tag
from airflow_provider_jogg.testing.server import FINISH_AFTER_CREATE, FINISH_AFTER_POLL
from airflow_provider_jogg.triggers.lip_sync_batch import LipSyncBatchTrigger

if TYPE_CHECKING:
    from collections.abc import Callable

    from tests.e2e.deployment import Deployment

pytestmark = pytest.mark.e2e

DAG_ID = "jogg_e2e_lip_sync_batch"
TASK = "lip_sync_batch"
BATCH_CLASSPATH = f"{LipSyncBatchTrigger.__module__}.{LipSyncBatchTrigger.__qualname__}"
CLIPS = 2000
#: the DAG's create_concurrency: a worker killed mid-create leaves at most one window uncertain
CREATE_CONCURRENCY = 8
#: every LATE_EVERY-th clip's Jogg task ends LATE_AFTER_POLL s after its first status answer (the
#: wait goes on after the first round of polls, so the triggerer surely dies mid-wait); the others
#: end soon after their create, so most clips need one poll
LATE_EVERY = 20
LATE_AFTER_POLL = 30
EARLY_AFTER_CREATE = 2
#: SIGKILL the task once this many Jogg tasks exist (of CLIPS): well inside the create phase
KILL_WORKER_AT = 400
#: seconds the fake takes over one create just before the worker is killed (under the connection's
#: 10 s timeout: the worker waits for it, the kill comes first)
SLOW_CREATE = 8.0
#: SIGKILL the triggerer once the trigger has written this many ended clips to the ledger
KILL_TRIGGERER_AT = 500
#: the summary's keys: counts and totals, never the rows
SUMMARY_KEYS = {
    "clips",
    "counts",
    "succeeded",
    "failed",
    "duration_seconds",
    "credits",
    "manifest",
    "not_saved",
}
TRIGGER_KWARGS = {
    "ledger_location",
    "fingerprint",
    "jogg_conn_id",
    "poll_interval",
    "end_time",
    "not_before",
    "progress_interval",
}


def clip_rows(run_id: str) -> list[dict[str, str]]:
    """CLIPS rows, each with its own http inputs naming the run; the URL marker sets the fake's timing."""
    base = f"https://media.example.com/b2k/{run_id}"
    rows = []
    for i in range(CLIPS):
        late = i % LATE_EVERY == LATE_EVERY - 1
        marker = (
            f"{FINISH_AFTER_POLL}={LATE_AFTER_POLL}"
            if late
            else f"{FINISH_AFTER_CREATE}={EARLY_AFTER_CREATE}"
        )
        rows.append(
            {
                "clip": f"c{i:04d}",
                "video": f"{base}/video-{i:04d}.mp4?{marker}",
                "audio": f"{base}/audio-{i:04d}.mp3",
            }
        )
    return rows


def ledger_states(folder: Path) -> collections.Counter[str]:
    """Clips by ledger state, as the pages in the folder say now (each page is replaced atomically)."""
    states: collections.Counter[str] = collections.Counter()
    for page in sorted(folder.glob("page-*.json")):
        states.update(record["state"] for record in json.loads(page.read_text())["clips"].values())
    return states


def ti_row(dep: Deployment, run_id: str) -> dict[str, Any] | None:
    rows = dep.query(
        "SELECT state, pid, try_number, trigger_id FROM task_instance WHERE dag_id = ? AND run_id = ?",
        (DAG_ID, run_id),
    )
    return dict(rows[0]) if rows else None


def waiting_lines(log: Path) -> list[int]:
    """The clip counts of the trigger's "waiting for N clips" lines in one trigger log."""
    return [
        int(n) for n in re.findall(r"Jogg batch: waiting for (\d+) clips", log.read_text(errors="replace"))
    ]


@pytest.mark.timeout(1200)
def test_batch_of_2000_through_a_worker_and_a_triggerer_crash(
    deployment: Deployment, report: Callable[[str], None]
) -> None:
    dep = deployment
    fake = dep.batch_fake
    dep.wait_for_dag(DAG_ID)
    run_id = f"e2e-batch-{uuid.uuid4().hex[:8]}"
    folder = dep.root / f"batch-{run_id}"
    folder.mkdir()
    rows = clip_rows(run_id)
    inputs = {r["clip"]: (r["video"], r["audio"]) for r in rows}
    manifest_in = folder / "clips.csv"
    with manifest_in.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=["clip", "video", "audio"])
        writer.writeheader()
        writer.writerows(rows)
    manifest_out = folder / "results.csv"
    output_dir = folder / "results"
    ledger = folder / "results.csv.ledger"
    started = time.monotonic()
    dep.trigger(
        DAG_ID,
        run_id,
        {"clips": str(manifest_in), "manifest_path": str(manifest_out), "output_dir": str(output_dir)},
    )

    def run_over() -> bool:
        return dep.run_state(DAG_ID, run_id) in ("success", "failed")

    # 1. The worker, mid-create: some hundreds of Jogg tasks exist, the rest are still to be created.
    #    Then one create answer is slow (the fake sleeps SLOW_CREATE s before it creates the task),
    #    so the worker is killed inside a window: its clips announced in the ledger, all but the slow
    #    one answered (those answers not recorded yet), the slow one still on its way; Jogg creates
    #    that task after the worker died. Those clips are the ones a retry must never send again.
    def creating() -> int | None:
        assert not run_over(), dep.task_states(DAG_ID, run_id)
        created = sum(fake.counts()["tasks"].values())
        return created if created >= KILL_WORKER_AT else None

    created_before = dep.wait_until(
        "the batch's creates to be under way", creating, timeout=600, interval=0.2
    )
    fake.add_fault(kind="slow", method="POST", path=CREATE_PATH, delay=SLOW_CREATE, times=1)

    def inside_a_window() -> int | None:
        assert not run_over(), dep.task_states(DAG_ID, run_id)
        if fake.faults():
            return None  # the slow create has not arrived yet
        created = sum(fake.counts()["tasks"].values())
        row = ti_row(dep, run_id)
        # windows are sent whole (none is refused here): all of this one's creates but the slow one
        if (
            row
            and row["state"] == "running"
            and row["pid"]
            and created % CREATE_CONCURRENCY == CREATE_CONCURRENCY - 1
        ):
            return int(row["pid"])
        return None

    pid = dep.wait_until(
        "a window of creates waiting on the slow one", inside_a_window, timeout=SLOW_CREATE, interval=0.1
    )
    assert pid is not None
    assert created_before is not None
    # the task's own process, a descendant of the scheduler we started (same session)
    assert os.getsid(pid) == dep.components["scheduler"].pid
    os.kill(pid, signal.SIGKILL)
    killed_after = time.monotonic() - started
    created_at_kill = sum(fake.counts()["tasks"].values())
    assert created_at_kill < CLIPS, (
        "the creates were over before the kill: raise CLIPS or lower KILL_WORKER_AT"
    )

    # 2. The triggerer, mid-wait: the retry deferred, its trigger runs in the triggerer and has
    #    written hundreds of ended clips back to the ledger, while others are still running.
    def mid_wait() -> dict[str, Any] | None:
        assert not run_over(), dep.task_states(DAG_ID, run_id)
        rows = dep.query(
            "SELECT ti.try_number, t.id AS trigger_id, t.classpath, t.kwargs, t.triggerer_id "
            "FROM task_instance ti JOIN trigger t ON t.id = ti.trigger_id "
            "WHERE ti.dag_id = ? AND ti.run_id = ? AND ti.state = 'deferred'",
            (DAG_ID, run_id),
        )
        if not rows or rows[0]["triggerer_id"] is None:
            return None
        states = ledger_states(ledger)
        ended = states["succeeded"] + states["failed"]
        if ended >= KILL_TRIGGERER_AT and states["created"] > 0:
            return {**dict(rows[0]), "states": states}
        return None

    trigger = dep.wait_until("the batch's trigger to be mid-wait", mid_wait, timeout=600, interval=0.5)
    assert trigger is not None
    crashed = dep.crash("triggerer")
    crashed_after = time.monotonic() - started
    replacement = dep.start_again("triggerer", crashed)

    states = dep.wait_for_runs(DAG_ID, [run_id], timeout=900)
    finished_after = time.monotonic() - started
    dep.wait_until(
        "the crashed triggerer's trigger runner to exit", lambda: not crashed.session_alive(), timeout=120
    )
    counts = fake.counts()
    summary = dep.xcoms(DAG_ID, run_id, TASK)[-1]
    report(
        f"batch of {CLIPS}: run {states[run_id]} in {finished_after:.1f} s; task process (pid {pid}) "
        f"SIGKILLed {killed_after:.1f} s in with {created_at_kill} Jogg tasks created; triggerer job "
        f"{trigger['triggerer_id']} (pid {crashed.pid}) SIGKILLed {crashed_after:.1f} s in with ledger "
        f"{dict(trigger['states'])}, replacement pid {replacement.pid}; fake: {counts['creates']} create "
        f"POSTs, {counts['status_polls']} status polls, answers by status {counts['by_status']}, tasks "
        f"{counts['tasks']}; summary {summary}; trigger kwargs {len(trigger['kwargs'])} bytes (encrypted)"
    )
    assert states == {run_id: "success"}, dep.task_states(DAG_ID, run_id)
    row = ti_row(dep, run_id)
    assert row is not None
    assert (row["state"], row["try_number"]) == ("success", 2)

    # The retry resumed from the ledger: it loaded the first try's records and created only the rest.
    task_logs = dep.task_logs / f"dag_id={DAG_ID}" / f"run_id={run_id}" / f"task_id={TASK}"
    second = (task_logs / "attempt=2.log").read_text(errors="replace")
    loaded = re.search(rf"(\d+) of {CLIPS} clips have a record of an earlier try", second)
    assert loaded is not None, second[-3000:]
    creating_again = re.search(r"Creating (\d+) Jogg tasks", second)
    assert creating_again is not None, second[-3000:]
    # the windows before the kill, and the one it hit (its slow create was not yet answered)
    assert int(loaded.group(1)) == created_at_kill + 1, (loaded.group(1), created_at_kill)
    assert int(creating_again.group(1)) == CLIPS - int(loaded.group(1))

    # The triggerer crash: the replacement's trigger resumed from the ledger, waiting for fewer clips
    # than the first triggerer did (those that ended before the crash were flushed to the ledger).
    trigger_logs = sorted(task_logs.glob("attempt=2.log.trigger.*.log"))
    by_job = {int(p.name.rsplit(".", 2)[-2]): waiting_lines(p) for p in trigger_logs}
    assert trigger["triggerer_id"] in by_job, by_job
    (first_wait,) = by_job.pop(trigger["triggerer_id"])
    resumed = [n for lines in by_job.values() for n in lines]
    assert resumed, f"no other triggerer ran the batch's trigger: {sorted(p.name for p in trigger_logs)}"
    assert max(resumed) <= first_wait - KILL_TRIGGERER_AT, (first_wait, resumed)

    # The trigger row was small: a few strings and numbers, no clip list.
    kwargs = json.loads(dep.decrypt_trigger_kwargs(trigger["kwargs"]))
    assert trigger["classpath"] == BATCH_CLASSPATH
    assert set(kwargs) == TRIGGER_KWARGS, kwargs
    assert kwargs["ledger_location"] == str(ledger)
    assert len(trigger["kwargs"]) < 2000, len(trigger["kwargs"])

    # The XCom is the summary only.
    assert set(summary) == SUMMARY_KEYS, summary
    assert len(json.dumps(summary)) < 1000
    assert summary["clips"] == CLIPS
    assert summary["manifest"] == str(manifest_out)
    assert summary["not_saved"] == 0

    # Exactly one Jogg task per clip, except uncertain clips, which have at most one (never re-sent).
    tasks = {tid: t for tid, t in fake.tasks().items() if f"/b2k/{run_id}/" in t["video_url"]}
    per_pair = collections.Counter((t["video_url"], t["audio_url"]) for t in tasks.values())
    assert set(per_pair.values()) == {1}, {pair: n for pair, n in per_pair.items() if n != 1}
    with manifest_out.open(newline="") as handle:
        results = list(csv.DictReader(handle))
    assert [r["clip"] for r in results] == [r["clip"] for r in rows]
    outcomes = collections.Counter(r["status"] for r in results)
    assert set(outcomes) <= {"succeeded", "uncertain"}, outcomes
    uncertain = [r for r in results if r["status"] == "uncertain"]
    # exactly the window the worker died in: announced, then lost with their answers
    assert len(uncertain) == CREATE_CONCURRENCY, uncertain
    assert all(not r["jogg_task_id"] and "lost while creating" in r["error"] for r in uncertain), uncertain
    uncertain_with_task = [r for r in uncertain if inputs[r["clip"]] in per_pair]
    # Jogg made a task for each (the slow one's after the kill, unless its late answer was a 429)
    assert len(uncertain_with_task) >= CREATE_CONCURRENCY - 1, uncertain_with_task
    assert len(tasks) == outcomes["succeeded"] + len(uncertain_with_task)
    assert summary["counts"] == dict(outcomes), (summary["counts"], outcomes)
    assert (summary["succeeded"], summary["failed"]) == (outcomes["succeeded"], len(uncertain))

    # Every result is its own clip's: the Jogg task made from the clip's inputs, and the saved file
    # is the result the fake served for that task.
    for result in results:
        if result["status"] != "succeeded":
            continue
        clip = result["clip"]
        task = tasks[result["jogg_task_id"]]
        assert (task["video_url"], task["audio_url"]) == inputs[clip], clip
        assert result["output_path"] == str(output_dir / f"{clip}.mp4"), result
        tag = result_tag(Path(result["output_path"]).read_bytes())
        assert tag is not None, clip
        assert tag["task_id"] == result["jogg_task_id"], (clip, tag)
        assert (tag["video_url"], tag["audio_url"]) == inputs[clip], (clip, tag)

    # The account's rate limit was hit, and absorbed: nothing was left uncreated.
    assert int(counts["by_status"].get("429", 0)) > 0, counts
    assert "not_created" not in summary["counts"]
    report(
        f"batch of {CLIPS}: {outcomes['succeeded']} succeeded (each file tagged with its own clip), "
        f"{len(uncertain)} uncertain ({len(uncertain_with_task)} of them with a Jogg task, none re-sent); "
        f"{len(tasks)} Jogg tasks, none twice for a clip; retry loaded {loaded.group(1)} records and created "
        f"{creating_again.group(1)}; the first trigger waited for {first_wait} clips, the adopted one for "
        f"{resumed}; {counts['by_status'].get('429', 0)} answers 429 at {dep.batch_rate_limit:g} req/s"
    )
