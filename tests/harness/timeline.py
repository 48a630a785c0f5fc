"""Deferral timelines read from a deployment's logs: when each task instance deferred, when the
scheduler processed the executor's event for that worker run, and when its trigger fired.

Airflow 3.3.2 fails a deferred task whose trigger fires before the scheduler has processed the
executor's "success" event for the worker run that deferred it (apache/airflow#67287, fixed upstream
by apache/airflow#68741 after 3.3.2: the scheduler then finds the task scheduled, queued or running
again and records a ``state mismatch``). This module measures that window per deferral and tells
whether a trigger fired inside it. Three sources, one clock (every process runs on this machine):

- the worker's task log (``.../attempt=N.log``, JSON lines): ``Pausing task as DEFERRED``, logged
  just before the supervisor hands the deferral to the Execution API (any executor);
- the scheduler's output (``scheduler*.log``, one file per scheduler process): one
  ``TaskInstance Finished: ... ti_id=..., state=<the TI's state in the DB>, ... try_number=N`` line
  per executor event that ends a worker run, written while the scheduler processes it (3.3.2
  wording, ``SchedulerJobRunner.process_executor_events``);
- the triggerer's per-trigger log (``.../attempt=N.log.trigger.<job>.log``): ``Trigger fired event``,
  logged as the trigger yields its event, before the triggerer moves the task on in the DB.

A deferral pairs with the first executor event of its try processed after it that no earlier
deferral of the try took; a trigger event belongs to the latest deferral of the try before it.
"""

from __future__ import annotations

import datetime
import json
import re
import statistics
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from collections.abc import Iterable, Iterator
    from pathlib import Path

#: (run_id, map_index, try_number)
TryKey = tuple[str, int, int]

PAUSED_EVENT = "Pausing task as DEFERRED"
FIRED_EVENT = "Trigger fired event"
_FINISHED = re.compile(
    r"^(?P<ts>\S+) .*?TaskInstance Finished: dag_id=(?P<dag>[^,]+), task_id=(?P<task>[^,]+), "
    r"run_id=(?P<run>[^,]+), map_index=(?P<map>-?\d+), ti_id=(?P<ti_id>[0-9a-f-]+),"
    r".*? state=(?P<state>\w+), .*?executor_state=(?P<executor_state>\w+), try_number=(?P<try>\d+),"
)
_TRIGGER_ID = re.compile(r"\(ID (\d+)\)")
_TASK_LOGS = "dag_id={dag}/run_id=*/task_id={task}/**/attempt=*.log"


def parse_time(text: str) -> float:
    """An ISO-8601 timestamp as written by Airflow's loggers (``...Z`` or ``+00:00``) -> epoch seconds."""
    moment = datetime.datetime.fromisoformat(text.replace("Z", "+00:00"))
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=datetime.timezone.utc)
    return moment.timestamp()


def json_lines(lines: Iterable[str]) -> Iterator[dict[str, Any]]:
    """The JSON objects among some log lines (others are skipped)."""
    for line in lines:
        if not line.startswith("{"):
            continue
        try:
            record = json.loads(line)
        except ValueError:
            continue
        if isinstance(record, dict):
            yield record


def _read_lines(path: Path) -> list[str]:
    try:
        return path.read_text(errors="replace").splitlines()
    except OSError:
        return []


def try_key(path: Path) -> TryKey:
    """(run_id, map_index, try_number) of a task or trigger log file, from its path
    (``run_id=R/task_id=T[/map_index=M]/attempt=N.log[.trigger.J.log]``)."""
    parts = dict(p.split("=", 1) for p in path.parent.parts if "=" in p)
    attempt = path.name.split(".", 1)[0].split("=", 1)[1]
    return parts["run_id"], int(parts.get("map_index", -1)), int(attempt)


@dataclass(frozen=True)
class Processed:
    """One executor event the scheduler processed: when, and the TI's state in the DB at that time."""

    at: float
    ti_state: str
    executor_state: str
    ti_id: str
    scheduler_log: str


@dataclass(frozen=True)
class Fire:
    at: float
    trigger_id: int
    #: the event came from a LipSyncTrigger (its payload is a dict with the Jogg task id)
    lip_sync: bool
    triggerer_job: int


@dataclass
class Deferral:
    """One deferral of a try, with the scheduler's processing of its worker run and its trigger events."""

    key: TryKey
    index: int
    #: the worker's "Pausing task as DEFERRED" (epoch seconds)
    at: float
    ti_id: str | None = None
    processed: Processed | None = None
    fires: list[Fire] = field(default_factory=list)
    #: the triggerer job ids whose trigger logs hold this try
    triggerer_jobs: tuple[int, ...] = ()

    @property
    def map_index(self) -> int:
        return self.key[1]

    @property
    def window(self) -> float | None:
        """Seconds from the deferral to the scheduler's processing of its worker run's executor event."""
        return None if self.processed is None else self.processed.at - self.at

    @property
    def fired_at(self) -> float | None:
        """The first trigger event after this deferral (``None``: not seen)."""
        return self.fires[0].at if self.fires else None

    @property
    def early_fires(self) -> list[Fire]:
        """Trigger events that came before the scheduler had processed this run's executor event."""
        if self.processed is None:
            return list(self.fires)
        return [f for f in self.fires if f.at <= self.processed.at]

    @property
    def fired_first(self) -> bool:
        """The race: a trigger fired before the scheduler had processed the deferral's executor event
        (seen directly as a TI that was no longer deferred when the scheduler looked, or by the clocks)."""
        if self.processed is None or not self.fires:
            return False
        return self.processed.ti_state != "deferred" or self.fires[0].at <= self.processed.at


@dataclass
class Timeline:
    """Every deferral of one task (``dag_id``/``task_id``) found in the logs."""

    deferrals: list[Deferral]
    events: dict[TryKey, list[Processed]]

    @property
    def windows(self) -> list[float]:
        return [d.window for d in self.deferrals if d.window is not None]

    def early(self, *, lip_sync_only: bool = True) -> list[tuple[Deferral, Fire]]:
        return [(d, f) for d in self.deferrals for f in d.early_fires if f.lip_sync or not lip_sync_only]

    @property
    def unprocessed(self) -> list[Deferral]:
        return [d for d in self.deferrals if d.processed is None]

    @property
    def raced(self) -> list[Deferral]:
        return [d for d in self.deferrals if d.fired_first]


def parse_finished(line: str) -> dict[str, str] | None:
    """The fields of a scheduler's ``TaskInstance Finished`` line (``None`` for any other line)."""
    if "TaskInstance Finished:" not in line:
        return None
    match = _FINISHED.search(line)
    return None if match is None else match.groupdict()


def processed_events(
    scheduler_logs: Iterable[Path], dag_id: str, task_id: str
) -> dict[TryKey, list[Processed]]:
    """(run_id, map_index, try_number) -> the executor events the scheduler processed, oldest first."""
    found: dict[TryKey, list[Processed]] = {}
    for log in scheduler_logs:
        for line in _read_lines(log):
            m = parse_finished(line)
            if m is None or m["dag"] != dag_id or m["task"] != task_id:
                continue
            event = Processed(parse_time(m["ts"]), m["state"], m["executor_state"], m["ti_id"], log.name)
            found.setdefault((m["run"], int(m["map"]), int(m["try"])), []).append(event)
    for events in found.values():
        events.sort(key=lambda p: p.at)
    return found


def _pauses(task_logs: Path, dag_id: str, task_id: str) -> dict[TryKey, list[tuple[float, str | None]]]:
    found: dict[TryKey, list[tuple[float, str | None]]] = {}
    for path in task_logs.glob(_TASK_LOGS.format(dag=dag_id, task=task_id)):
        for record in json_lines(_read_lines(path)):
            if str(record.get("event", "")).startswith(PAUSED_EVENT):
                ti_id = record.get("ti_id")
                found.setdefault(try_key(path), []).append(
                    (parse_time(str(record["timestamp"])), None if ti_id is None else str(ti_id))
                )
    for pauses in found.values():
        pauses.sort(key=lambda p: p[0])
    return found


def _fires(
    task_logs: Path, dag_id: str, task_id: str
) -> tuple[dict[TryKey, list[Fire]], dict[TryKey, set[int]]]:
    fires: dict[TryKey, list[Fire]] = {}
    jobs: dict[TryKey, set[int]] = {}
    for path in task_logs.glob(_TASK_LOGS.format(dag=dag_id, task=task_id) + ".trigger.*.log"):
        key, job = try_key(path), int(path.name.rsplit(".", 2)[-2])
        jobs.setdefault(key, set()).add(job)
        for record in json_lines(_read_lines(path)):
            if record.get("event") != FIRED_EVENT:
                continue
            match = _TRIGGER_ID.search(str(record.get("name", "")))
            fires.setdefault(key, []).append(
                Fire(
                    at=parse_time(str(record["timestamp"])),
                    trigger_id=int(match.group(1)) if match else -1,
                    lip_sync="'task_id':" in str(record.get("result", "")),
                    triggerer_job=job,
                )
            )
    for found in fires.values():
        found.sort(key=lambda f: f.at)
    return fires, jobs


def build(
    scheduler_logs: Iterable[Path],
    task_logs: Path,
    dag_id: str,
    task_id: str,
    run_ids: Iterable[str] | None = None,
) -> Timeline:
    """The deferrals of ``task_id`` (in ``run_ids``, default all), each paired with its executor event
    and its trigger events (those after it and before the next deferral of the try)."""
    runs = None if run_ids is None else set(run_ids)
    events = processed_events(scheduler_logs, dag_id, task_id)
    fires, jobs = _fires(task_logs, dag_id, task_id)
    deferrals: list[Deferral] = []
    for key, pauses in sorted(_pauses(task_logs, dag_id, task_id).items()):
        if runs is not None and key[0] not in runs:
            continue
        candidates = events.get(key, [])
        used: set[int] = set()
        for index, (at, ti_id) in enumerate(pauses):
            match = next((i for i, p in enumerate(candidates) if i not in used and p.at >= at), None)
            if match is not None:
                used.add(match)
            until = pauses[index + 1][0] if index + 1 < len(pauses) else float("inf")
            deferrals.append(
                Deferral(
                    key=key,
                    index=index,
                    at=at,
                    ti_id=ti_id,
                    processed=None if match is None else candidates[match],
                    fires=[f for f in fires.get(key, []) if at <= f.at < until],
                    triggerer_jobs=tuple(sorted(jobs.get(key, ()))),
                )
            )
    return Timeline(deferrals, {k: v for k, v in events.items() if runs is None or k[0] in runs})


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
