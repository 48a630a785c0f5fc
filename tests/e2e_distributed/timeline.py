"""Deferral timelines from a deployment's logs: when each deferral happened, when the scheduler
processed the executor's event for that worker run, and when the trigger fired.

Airflow 3.3.2 fails a task whose trigger fires before the scheduler has processed the executor's
"success" event of the worker run that deferred it (apache/airflow#67287). This module reads the
three timestamps of every deferral of one task so that a test can measure that window and check that
no trigger event came inside it:

- the deferral: ``"Pausing task as DEFERRED"`` in the task attempt log (JSON lines, with ``ti_id``);
- the executor event: ``Received executor event with state success for task instance
  TaskInstanceKey(dag_id=..., task_id=..., run_id=..., try_number=N, map_index=M)`` in the
  scheduler's output (``airflow/jobs/scheduler_job_runner.py``; one per worker run of a try), with
  the ``TaskInstance Finished: ... state=<the TI's state then>`` line the scheduler logs right after;
- the trigger event: ``"Trigger fired event"`` in the trigger log (``attempt=N.log.trigger.<job>.log``).

The k-th deferral of a try ends the k-th worker run of that try, so it pairs with the k-th executor
event of that try; a trigger event belongs to the latest deferral before it.
"""

from __future__ import annotations

import datetime
import json
import re
import statistics
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import Iterable
    from pathlib import Path

#: (run_id, map_index, try_number)
TryKey = tuple[str, int, int]

_EVENT = re.compile(
    r"^(?P<ts>\S+) .*Received executor event with state (?P<state>\w+) for task instance "
    r"TaskInstanceKey\(dag_id='(?P<dag>[^']*)', task_id='(?P<task>[^']*)', run_id='(?P<run>[^']*)', "
    r"try_number=(?P<try>\d+), map_index=(?P<map>-?\d+)\)"
)
_FINISHED = re.compile(
    r"^(?P<ts>\S+) .*TaskInstance Finished: dag_id=(?P<dag>[^,]*), task_id=(?P<task>[^,]*), "
    r"run_id=(?P<run>[^,]*), map_index=(?P<map>-?\d+), .*? state=(?P<state>\w+), .*?"
    r"executor_state=(?P<executor_state>\w+), try_number=(?P<try>\d+),"
)
_TRIGGER_ID = re.compile(r"\(ID (\d+)\)")
#: executor states that end a worker run (a deferral ends it with "success")
_RUN_ENDED = frozenset({"success", "failed"})


def parse_time(text: str) -> float:
    """An ISO-8601 UTC timestamp (``...Z`` or ``+00:00``) as epoch seconds."""
    moment = datetime.datetime.fromisoformat(text.replace("Z", "+00:00"))
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=datetime.timezone.utc)
    return moment.timestamp()


@dataclass
class ExecutorEvent:
    at: float
    state: str
    #: the TI's state when the scheduler processed the event ("TaskInstance Finished" line), if logged
    ti_state: str | None = None


@dataclass
class Fire:
    at: float
    trigger_id: int
    #: the event came from a LipSyncTrigger (its payload is a dict with the Jogg task id)
    lip_sync: bool


@dataclass
class Deferral:
    """One deferral of a try, with the scheduler's processing of its worker run and its trigger event."""

    key: TryKey
    index: int
    at: float
    processed: ExecutorEvent | None = None
    fires: list[Fire] = field(default_factory=list)

    @property
    def window(self) -> float | None:
        """Seconds from the deferral to the scheduler processing its worker run's executor event."""
        return None if self.processed is None else self.processed.at - self.at

    @property
    def early_fires(self) -> list[Fire]:
        """Trigger events that came before the scheduler had processed this run's executor event."""
        if self.processed is None:
            return list(self.fires)
        return [f for f in self.fires if f.at <= self.processed.at]


@dataclass
class Timeline:
    """Every deferral of one task (``dag_id``/``task_id``) found in the logs."""

    deferrals: list[Deferral]
    events: dict[TryKey, list[ExecutorEvent]]

    @property
    def windows(self) -> list[float]:
        return [d.window for d in self.deferrals if d.window is not None]

    def early(self, *, lip_sync_only: bool = True) -> list[tuple[Deferral, Fire]]:
        return [(d, f) for d in self.deferrals for f in d.early_fires if f.lip_sync or not lip_sync_only]

    @property
    def unprocessed(self) -> list[Deferral]:
        return [d for d in self.deferrals if d.processed is None]


def summary(values: Iterable[float]) -> dict[str, float]:
    """n, min, median, p95 (nearest rank) and max."""
    ordered = sorted(values)
    if not ordered:
        return {"n": 0}
    p95 = ordered[max(0, -(-95 * len(ordered) // 100) - 1)]
    return {
        "n": len(ordered),
        "min": ordered[0],
        "median": statistics.median(ordered),
        "p95": p95,
        "max": ordered[-1],
    }


def format_summary(values: Iterable[float]) -> str:
    s = summary(values)
    if not s["n"]:
        return "n=0"
    return (
        f"n={s['n']:.0f} min {s['min']:.1f} s, median {s['median']:.1f} s, p95 {s['p95']:.1f} s, "
        f"max {s['max']:.1f} s"
    )


def _json_lines(path: Path) -> Iterable[dict[str, object]]:
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return
    for line in text.splitlines():
        if not line.startswith("{"):
            continue
        try:
            record = json.loads(line)
        except ValueError:
            continue
        if isinstance(record, dict):
            yield record


def executor_events(scheduler_log: Path, dag_id: str, task_id: str) -> dict[TryKey, list[ExecutorEvent]]:
    """Executor events that end a worker run of ``task_id``, per try, in the scheduler's order."""
    found: dict[TryKey, list[ExecutorEvent]] = {}
    pending: dict[TryKey, list[ExecutorEvent]] = {}
    with open(scheduler_log, errors="replace") as fh:
        for line in fh:
            if "Received executor event" in line:
                m = _EVENT.match(line)
                if m is None or m["dag"] != dag_id or m["task"] != task_id or m["state"] not in _RUN_ENDED:
                    continue
                key = (m["run"], int(m["map"]), int(m["try"]))
                event = ExecutorEvent(parse_time(m["ts"]), m["state"])
                found.setdefault(key, []).append(event)
                pending.setdefault(key, []).append(event)
            elif "TaskInstance Finished:" in line:
                m = _FINISHED.match(line)
                if m is None or m["dag"] != dag_id or m["task"] != task_id:
                    continue
                key = (m["run"], int(m["map"]), int(m["try"]))
                if pending.get(key):
                    pending[key].pop(0).ti_state = m["state"]
    return found


def deferral_times(task_logs: Path, dag_id: str, task_id: str) -> dict[TryKey, list[float]]:
    """Times of the "Pausing task as DEFERRED" lines, per try, in order."""
    found: dict[TryKey, list[float]] = {}
    for path in sorted(task_logs.glob(f"dag_id={dag_id}/run_id=*/task_id={task_id}/**/attempt=*.log")):
        if ".log.trigger." in path.name:
            continue
        for record in _json_lines(path):
            if not str(record.get("event", "")).startswith("Pausing task as DEFERRED"):
                continue
            key = (str(record["run_id"]), int(str(record["map_index"])), int(str(record["try_number"])))
            found.setdefault(key, []).append(parse_time(str(record["timestamp"])))
    for times in found.values():
        times.sort()
    return found


def trigger_fires(task_logs: Path, dag_id: str, task_id: str) -> dict[TryKey, list[Fire]]:
    """Every "Trigger fired event" line, per try (from every triggerer's log file), by time."""
    found: dict[TryKey, list[Fire]] = {}
    for path in task_logs.glob(f"dag_id={dag_id}/run_id=*/task_id={task_id}/**/attempt=*.log.trigger.*.log"):
        for record in _json_lines(path):
            if record.get("event") != "Trigger fired event":
                continue
            key = (str(record["run_id"]), int(str(record["map_index"])), int(str(record["try_number"])))
            match = _TRIGGER_ID.search(str(record.get("name", "")))
            result = str(record.get("result", ""))
            found.setdefault(key, []).append(
                Fire(
                    at=parse_time(str(record["timestamp"])),
                    trigger_id=int(match.group(1)) if match else -1,
                    lip_sync="'task_id':" in result,
                )
            )
    for fires in found.values():
        fires.sort(key=lambda f: f.at)
    return found


def build(
    scheduler_log: Path, task_logs: Path, dag_id: str, task_id: str, run_ids: Iterable[str] | None = None
) -> Timeline:
    """The deferrals of ``task_id`` (in ``run_ids``, default all), each paired with its executor
    event (the k-th deferral of a try with the k-th event of that try) and its trigger events (those
    after it and before the next deferral of the try)."""
    runs = None if run_ids is None else set(run_ids)
    events = executor_events(scheduler_log, dag_id, task_id)
    fires = trigger_fires(task_logs, dag_id, task_id)
    deferrals: list[Deferral] = []
    for key, times in sorted(deferral_times(task_logs, dag_id, task_id).items()):
        if runs is not None and key[0] not in runs:
            continue
        run_events = events.get(key, [])
        for index, at in enumerate(times):
            until = times[index + 1] if index + 1 < len(times) else float("inf")
            deferrals.append(
                Deferral(
                    key=key,
                    index=index,
                    at=at,
                    processed=run_events[index] if index < len(run_events) else None,
                    fires=[f for f in fires.get(key, []) if at <= f.at < until],
                )
            )
    return Timeline(deferrals, {k: v for k, v in events.items() if runs is None or k[0] in runs})
