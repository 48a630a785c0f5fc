"""Deferral timelines read from a deployment's logs: when each task instance deferred, when the
scheduler processed the executor's event for that worker run, and when its trigger fired.

Airflow 3.3.2 fails a deferred task whose trigger fires before the scheduler has processed the
executor's "success" event for the worker run that deferred it (apache/airflow#67287: the scheduler
then finds the task scheduled, queued or running again and records a ``state mismatch``). This module
measures that window per deferral and tells whether any trigger fired inside it. Three sources, one
clock (every process runs on this machine):

- the worker's own task log (``.../attempt=N.log``, JSON lines): ``Pausing task as DEFERRED``, logged
  just before the supervisor hands the deferral to the Execution API, so the window measured from it
  is, if anything, a few milliseconds too long;
- the scheduler's output (``scheduler*.log``, one file per scheduler process): one
  ``TaskInstance Finished: ... ti_id=..., state=<state in the DB>, ... try_number=N`` line per
  processed executor event, written while it processes the event (3.3.2 wording, see
  ``SchedulerJobRunner.process_executor_events``);
- the triggerer's per-trigger log (``.../attempt=N.log.trigger.<job>.log``): ``Trigger fired event``,
  logged as the trigger yields its event, before the triggerer moves the task on in the DB.
"""

from __future__ import annotations

import datetime
import json
import math
import re
import statistics
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from collections.abc import Iterable, Iterator
    from pathlib import Path

PAUSED_EVENT = "Pausing task as DEFERRED"
FIRED_EVENT = "Trigger fired event"
_FINISHED = re.compile(
    r"^(?P<ts>\S+) .*?TaskInstance Finished: dag_id=(?P<dag_id>[^,]+), task_id=(?P<task_id>[^,]+), "
    r"run_id=(?P<run_id>[^,]+), map_index=(?P<map_index>-?\d+), ti_id=(?P<ti_id>[0-9a-f-]+),"
    r".*? state=(?P<state>\w+), .*?try_number=(?P<try_number>\d+),"
)


def parse_time(text: str) -> float:
    """An ISO-8601 timestamp as written by Airflow's loggers (``...Z`` or ``+00:00``) -> epoch seconds."""
    moment = datetime.datetime.fromisoformat(text.replace("Z", "+00:00"))
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=datetime.timezone.utc)
    return moment.timestamp()


def json_lines(path: Path) -> Iterator[dict[str, Any]]:
    for line in path.read_text(errors="replace").splitlines():
        try:
            event = json.loads(line)
        except ValueError:
            continue
        if isinstance(event, dict):
            yield event


@dataclass(frozen=True)
class Processed:
    """One executor event the scheduler processed: when, and the TI's state in the DB at that time."""

    at: float
    state: str
    scheduler_log: str


@dataclass(frozen=True)
class Deferral:
    """One deferral of one try of one task instance, with what followed it."""

    ti_id: str
    task_id: str
    map_index: int
    try_number: int
    #: the worker's "Pausing task as DEFERRED" (epoch seconds)
    paused_at: float
    #: the scheduler's processing of this worker run's executor event (``None``: not seen)
    processed: Processed | None
    #: the first "Trigger fired event" of this try after ``paused_at`` (``None``: not seen)
    fired_at: float | None
    #: the triggerer job ids whose trigger logs hold this try
    triggerer_jobs: tuple[int, ...]

    @property
    def window(self) -> float | None:
        """Seconds from the deferral to the scheduler's processing of its executor event."""
        return None if self.processed is None else self.processed.at - self.paused_at

    @property
    def fired_first(self) -> bool:
        """The race: the trigger fired before the scheduler had processed the deferral's executor event
        (seen directly as a TI that was no longer deferred when the scheduler looked, or by the clocks)."""
        if self.processed is None or self.fired_at is None:
            return False
        return self.processed.state != "deferred" or self.fired_at <= self.processed.at


def _attempt_logs(task_logs: Path, dag_id: str, run_id: str, task_id: str) -> Iterator[tuple[int, Path]]:
    """(map_index, worker log file) for every attempt of a task in a run, mapped or not."""
    folder = task_logs / f"dag_id={dag_id}" / f"run_id={run_id}" / f"task_id={task_id}"
    for path in sorted(folder.glob("attempt=*.log")):
        yield -1, path
    for path in sorted(folder.glob("map_index=*/attempt=*.log")):
        yield int(path.parent.name.split("=", 1)[1]), path


def processed_events(scheduler_logs: Iterable[Path], run_id: str) -> dict[tuple[str, int], list[Processed]]:
    """(ti_id, try_number) -> the executor events the scheduler processed for it, oldest first."""
    found: dict[tuple[str, int], list[Processed]] = {}
    for log in scheduler_logs:
        for line in log.read_text(errors="replace").splitlines():
            if "TaskInstance Finished:" not in line or run_id not in line:
                continue
            match = _FINISHED.search(line)
            if match is None or match["run_id"] != run_id:
                continue
            key = (match["ti_id"], int(match["try_number"]))
            found.setdefault(key, []).append(Processed(parse_time(match["ts"]), match["state"], log.name))
    for events in found.values():
        events.sort(key=lambda p: p.at)
    return found


def deferrals(
    task_logs: Path, scheduler_logs: Iterable[Path], dag_id: str, run_id: str, task_id: str
) -> list[Deferral]:
    """Every deferral of ``task_id`` in a run, paired with its processing and its trigger's firing."""
    processed = processed_events(list(scheduler_logs), run_id)
    result: list[Deferral] = []
    for map_index, worker_log in _attempt_logs(task_logs, dag_id, run_id, task_id):
        pauses = [
            (parse_time(e["timestamp"]), str(e["ti_id"]), int(e["try_number"]))
            for e in json_lines(worker_log)
            if str(e.get("event", "")).startswith(PAUSED_EVENT)
        ]
        fired: list[float] = []
        jobs: list[int] = []
        for trigger_log in sorted(worker_log.parent.glob(f"{worker_log.name}.trigger.*.log")):
            jobs.append(int(trigger_log.name.rsplit(".", 2)[-2]))
            fired += [
                parse_time(e["timestamp"]) for e in json_lines(trigger_log) if e.get("event") == FIRED_EVENT
            ]
        fired.sort()
        used: set[int] = set()
        for paused_at, ti_id, try_number in sorted(pauses):
            # the first processed event after this pause that no earlier pause of the try claimed
            candidates = processed.get((ti_id, try_number), [])
            match = next((i for i, p in enumerate(candidates) if i not in used and p.at >= paused_at), None)
            if match is not None:
                used.add(match)
            result.append(
                Deferral(
                    ti_id=ti_id,
                    task_id=task_id,
                    map_index=map_index,
                    try_number=try_number,
                    paused_at=paused_at,
                    processed=None if match is None else candidates[match],
                    fired_at=next((t for t in fired if t >= paused_at), None),
                    triggerer_jobs=tuple(sorted(jobs)),
                )
            )
    return result


def spread(values: Iterable[float]) -> dict[str, float]:
    """min / median / p95 / max of some seconds (p95: nearest rank)."""
    ordered = sorted(values)
    if not ordered:
        return {}
    rank = math.ceil(0.95 * len(ordered)) - 1
    return {
        "min": ordered[0],
        "median": statistics.median(ordered),
        "p95": ordered[rank],
        "max": ordered[-1],
    }


def describe_spread(values: Iterable[float]) -> str:
    found = spread(values)
    if not found:
        return "none"
    return " / ".join(f"{found[k]:.2f}" for k in ("min", "median", "p95", "max")) + " s (min/median/p95/max)"
