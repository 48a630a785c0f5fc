"""The deferral timeline reader of the e2e suites, on log lines in Airflow 3.3.2's formats.

No deployment: a unit test of the harness, run by ``make test``.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING

import pytest

from tests.harness import timeline

if TYPE_CHECKING:
    from pathlib import Path

DAG, TASK, RUN = "jogg_dist_user_batch", "wait", "e2e-dist-1"
LIP_SYNC_RESULT = (
    "TriggerEvent<{'status': 'success', 'task_id': 'a348422c', 'result': {'task_id': 'a348422c'}}>"
)
DATETIME_RESULT = "TriggerEvent<DateTime(2026, 12, 2, 10, 37, 9, tzinfo=Timezone('UTC'))>"


def received(ts: str, state: str, map_index: int, try_number: int = 1, task: str = TASK) -> str:
    return (
        f"{ts} [info     ] Received executor event with state {state} for task instance "
        f"TaskInstanceKey(dag_id='{DAG}', task_id='{task}', run_id='{RUN}', try_number={try_number}, "
        f"map_index={map_index}) [airflow.jobs.scheduler_job_runner.SchedulerJobRunner] "
        "loc=scheduler_job_runner.py:1347"
    )


def finished(ts: str, ti_state: str, map_index: int, try_number: int = 1, task: str = TASK) -> str:
    return (
        f"{ts} [info     ] TaskInstance Finished: dag_id={DAG}, task_id={task}, run_id={RUN}, "
        f"map_index={map_index}, ti_id=01a23654-3a5a-7182-988e-651a1ca8edd{map_index}, "
        "run_start_date=2026-12-02 "
        "10:36:49.071003+00:00, run_end_date=None, run_duration=None, "
        f"state={ti_state}, executor=CeleryExecutor(parallelism=8), executor_state=success, "
        f"try_number={try_number}, max_tries=0, pool=default_pool, queue=default"
    )


def task_line(ts: str, event: str, map_index: int, try_number: int = 1) -> str:
    return json.dumps(
        {
            "timestamp": ts,
            "ti_id": f"01a23654-3a5a-7182-988e-651a1ca8edd{map_index}",
            "level": "info",
            "event": event,
            "dag_id": DAG,
            "task_id": TASK,
            "run_id": RUN,
            "try_number": try_number,
            "map_index": map_index,
        }
    )


def fired(ts: str, trigger_id: int, result: str, map_index: int, try_number: int = 1) -> str:
    return json.dumps(
        {
            "timestamp": ts,
            "level": "info",
            "event": "Trigger fired event",
            "name": f"{DAG}/{RUN}/{TASK}/{map_index}/{try_number} (ID {trigger_id})",
            "result": result,
            "run_id": RUN,
            "try_number": try_number,
            "map_index": map_index,
        }
    )


def write_logs(
    root: Path,
    scheduler: list[str],
    task: dict[int, list[str]],
    trig: dict[int, list[str]],
    job: int = 4,
) -> Path:
    (root / "scheduler.log").write_text("\n".join(scheduler) + "\n")
    base = root / "logs" / f"dag_id={DAG}" / f"run_id={RUN}" / f"task_id={TASK}"
    for name, files in (("attempt=1.log", task), (f"attempt=1.log.trigger.{job}.log", trig)):
        for map_index, lines in files.items():
            folder = base / f"map_index={map_index}"
            folder.mkdir(parents=True, exist_ok=True)
            with open(folder / name, "a") as fh:
                fh.write("\n".join(lines) + "\n")
    return root / "scheduler.log"


def test_pairs_deferrals_with_their_executor_events_and_fires(tmp_path: Path) -> None:
    scheduler = [
        received("2026-12-02T10:37:00.000000Z", "queued", 0),
        # map 0: a 1 s DateTimeTrigger hop, then the LipSyncTrigger; both runs processed in time
        received("2026-12-02T10:37:04.000000Z", "success", 0),
        finished("2026-12-02T10:37:04.010000Z", "deferred", 0),
        received("2026-12-02T10:37:04.000000Z", "success", 0, task="lip_sync"),
        finished("2026-12-02T10:37:04.020000Z", "success", 0, task="lip_sync"),
        received("2026-12-02T10:37:12.500000Z", "success", 0),
        finished("2026-12-02T10:37:12.510000Z", "deferred", 0),
        # map 1: the trigger fired 1 s after the deferral, 3 s before the scheduler processed it
        received("2026-12-02T10:37:06.000000Z", "success", 1),
        finished("2026-12-02T10:37:06.010000Z", "queued", 1),
        received("2026-12-02T10:37:30.000000Z", "success", 0),  # the resumed run of map 0 ends
        finished("2026-12-02T10:37:30.010000Z", "success", 0),
    ]
    tasks = {
        0: [
            task_line("2026-12-02T10:37:01.000000Z", "Jogg rate limit; waiting 1.0 s", 0),
            task_line("2026-12-02T10:37:01.500000Z", "Pausing task as DEFERRED. ", 0),
            task_line("2026-12-02T10:37:10.000000Z", "Pausing task as DEFERRED. ", 0),
        ],
        1: [task_line("2026-12-02T10:37:02.000000Z", "Pausing task as DEFERRED. ", 1)],
        2: [task_line("2026-12-02T10:37:03.000000Z", "Pausing task as DEFERRED. ", 2)],
    }
    fires = {
        0: [
            fired("2026-12-02T10:37:05.000000Z", 7, DATETIME_RESULT, 0),
            fired("2026-12-02T10:37:25.000000Z", 9, LIP_SYNC_RESULT, 0),
        ],
        1: [fired("2026-12-02T10:37:03.000000Z", 8, LIP_SYNC_RESULT, 1)],
    }
    log = write_logs(tmp_path, scheduler, tasks, fires)

    line = timeline.build([log], tmp_path / "logs", DAG, TASK)

    by_key = {(d.key[1], d.index): d for d in line.deferrals}
    assert sorted(by_key) == [(0, 0), (0, 1), (1, 0), (2, 0)]
    first, second = by_key[(0, 0)], by_key[(0, 1)]
    assert first.window == pytest.approx(2.51)
    assert [f.trigger_id for f in first.fires] == [7]
    assert not first.fires[0].lip_sync
    assert first.processed is not None
    assert first.processed.ti_state == "deferred"
    assert second.window == pytest.approx(2.51)
    assert [(f.trigger_id, f.lip_sync) for f in second.fires] == [(9, True)]
    assert not second.early_fires
    race = by_key[(1, 0)]
    assert race.window == pytest.approx(4.01)
    assert race.processed is not None
    assert race.processed.ti_state == "queued"
    assert [f.trigger_id for f in race.early_fires] == [8]
    # map 2's run was never processed (yet): no window, and listed as such
    assert by_key[(2, 0)].window is None
    assert line.unprocessed == [by_key[(2, 0)]]
    assert sorted(line.windows) == pytest.approx([2.51, 2.51, 4.01])
    assert [(d.key[1], f.trigger_id) for d, f in line.early()] == [(1, 8)]
    # the race as the LocalExecutor suite reads it: the TI was no longer deferred when processed
    assert line.raced == [race]
    assert [d.fired_first for d in (race, first, second)] == [True, False, False]
    assert first.fired_at == pytest.approx(timeline.parse_time("2026-12-02T10:37:05Z"))
    assert (race.map_index, race.ti_id, race.triggerer_jobs) == (
        1,
        "01a23654-3a5a-7182-988e-651a1ca8edd1",
        (4,),
    )
    # the resumed run's event (10:37:30) pairs with no deferral; the lip_sync task's is not read
    assert len(line.events[(RUN, 0, 1)]) == 3
    assert {k[0] for k in line.events} == {RUN}
    assert timeline.build([log], tmp_path / "logs", DAG, TASK, run_ids=["other"]).deferrals == []


def test_reads_every_scheduler_and_triggerer_of_a_crash(tmp_path: Path) -> None:
    """A scheduler crashed and restarted (two output files) and a trigger adopted by another
    triggerer job (two trigger logs): one deferral, processed by the second scheduler, fired in the
    second triggerer; the first scheduler's events of other runs or tasks are not taken."""
    first_scheduler = [finished("2026-12-02T10:37:01.000000Z", "deferred", 0, task="lip_sync")]
    log = write_logs(
        tmp_path,
        first_scheduler,
        {0: [task_line("2026-12-02T10:37:02Z", "Pausing task as DEFERRED. ", 0)]},
        {0: []},
    )
    write_logs(tmp_path, [], {}, {0: [fired("2026-12-02T10:37:20Z", 11, LIP_SYNC_RESULT, 0)]}, job=6)
    second = tmp_path / "scheduler-2.log"
    second.write_text(finished("2026-12-02T10:37:09.000000Z", "deferred", 0) + "\n")

    line = timeline.build([log, second], tmp_path / "logs", DAG, TASK, [RUN])

    (only,) = line.deferrals
    assert only.processed is not None
    assert (only.processed.scheduler_log, only.processed.executor_state) == ("scheduler-2.log", "success")
    assert only.window == pytest.approx(7.0)
    assert only.triggerer_jobs == (4, 6)
    assert [(f.trigger_id, f.triggerer_job) for f in only.fires] == [(11, 6)]
    assert not only.fired_first
    assert not line.raced


def test_summary_nearest_rank_p95() -> None:
    values = [float(v) for v in range(1, 21)]  # 1..20
    assert timeline.summary(values) == {"n": 20, "min": 1.0, "median": 10.5, "p95": 19.0, "max": 20.0}
    assert timeline.summary([]) == {"n": 0}
    assert timeline.format_summary([3.0]) == "n=1 min 3.0 s, median 3.0 s, p95 3.0 s, max 3.0 s"
