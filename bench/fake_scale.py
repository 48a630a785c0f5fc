"""How the offline fake Jogg server copes with one batch of thousands of clips.

Starts the fake as a subprocess (``python -m airflow_provider_jogg.testing``), then drives, with
``--concurrency`` keep-alive ``requests`` sessions in threads:

1. **create**: one ``POST /v2/create_lip_sync_video`` per clip (distinct video/audio URLs per clip);
2. **poll**: rounds of ``GET /v2/lip_sync_video/{id}`` over every task not finished yet, at least
   ``--poll-rounds`` rounds and until every task is done;
3. **download**: ``GET`` of every task's ``result_url``; with ``--check`` each result must name its
   own task and clip (the fake's ``--tag-results``, read with ``testing.media.result_tag``).

A ``429`` is retried after the answer's ``Retry-After`` (the plan limit of ``--rate-limit``). Per
phase it prints requests/s, the 429s, and the fake's RSS and CPU time (from ``psutil``).

Examples (from the repository root, with bench/.venv: ``make bench-venv``)::

    bench/.venv/bin/python bench/fake_scale.py --clips 10000
    bench/.venv/bin/python bench/fake_scale.py --clips 10000 --rate-limit 100
    bench/.venv/bin/python bench/fake_scale.py --clips 10000 --fake-arg=--max-recorded-requests=1000 \\
        --fake-arg=--tag-results --check
"""

from __future__ import annotations

import argparse
import json
import queue
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from typing import Any

import psutil
import requests

KEY = "bench-key"
CREATE = "/v2/create_lip_sync_video"
STATUS = "/v2/lip_sync_video/{task_id}"


@dataclass
class Phase:
    """What one phase did: requests sent, 429s, wall time, and the fake's resources after it."""

    name: str
    requests: int = 0
    throttled: int = 0
    seconds: float = 0.0
    rss_mb: float = 0.0
    cpu_s: float = 0.0
    extra: dict[str, Any] = field(default_factory=dict)

    def line(self) -> str:
        """One printed line."""
        rate = self.requests / self.seconds if self.seconds else 0.0
        extra = "".join(f"  {k}={v}" for k, v in self.extra.items())
        return (
            f"{self.name:<9} {self.requests:>7} req in {self.seconds:7.2f} s = {rate:7.0f} req/s"
            f"  429s={self.throttled:<6} fake RSS={self.rss_mb:7.1f} MB  fake CPU={self.cpu_s:6.1f} s{extra}"
        )


def start_fake(fake_args: list[str]) -> tuple[subprocess.Popen[str], str]:
    """Start the fake and return it with its base URL (the one line it prints)."""
    cmd = [sys.executable, "-m", "airflow_provider_jogg.testing", "--api-key", KEY, *fake_args]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    line = proc.stdout.readline().strip()
    if not line.startswith("JOGG_FAKE_URL="):
        proc.kill()
        raise SystemExit(f"the fake did not start: {line!r}")
    return proc, line.partition("=")[2]


def run_phase(
    name: str, items: list[Any], concurrency: int, work: Any, fake: psutil.Process
) -> tuple[Phase, list[Any]]:
    """Run ``work(session, item) -> (result, requests, throttled)`` over ``items`` in threads."""
    todo: queue.SimpleQueue[tuple[int, Any] | None] = queue.SimpleQueue()
    for index, item in enumerate(items):
        todo.put((index, item))
    for _ in range(concurrency):
        todo.put(None)
    out: list[Any] = [None] * len(items)
    counts = [[0, 0] for _ in range(concurrency)]
    errors: list[BaseException] = []

    def worker(slot: int) -> None:
        with requests.Session() as session:
            session.headers["x-api-key"] = KEY
            while (job := todo.get()) is not None:
                index, item = job
                try:
                    out[index], sent, throttled = work(session, item)
                except BaseException as exc:  # reported after the phase
                    errors.append(exc)
                    return
                counts[slot][0] += sent
                counts[slot][1] += throttled

    threads = [threading.Thread(target=worker, args=(slot,)) for slot in range(concurrency)]
    started = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    seconds = time.perf_counter() - started
    if errors:
        raise errors[0]
    cpu = fake.cpu_times()
    phase = Phase(
        name,
        requests=sum(c[0] for c in counts),
        throttled=sum(c[1] for c in counts),
        seconds=seconds,
        rss_mb=fake.memory_info().rss / 2**20,
        cpu_s=cpu.user + cpu.system,
    )
    return phase, out


def send(
    session: requests.Session, method: str, url: str, **kwargs: Any
) -> tuple[requests.Response, int, int]:
    """Send until not 429 (waiting the ``Retry-After``); returns the answer, requests sent, 429s."""
    sent = throttled = 0
    while True:
        response = session.request(method, url, timeout=60, **kwargs)
        sent += 1
        if response.status_code != 429:
            response.raise_for_status()
            return response, sent, throttled
        throttled += 1
        time.sleep(float(response.headers.get("Retry-After", "1")))


def main() -> int:
    """Parse the arguments, run the three phases, print (and optionally save) the figures."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--clips", type=int, default=10_000)
    parser.add_argument("--concurrency", type=int, default=8, help="client threads (one session each)")
    parser.add_argument("--rate-limit", type=float, default=None, help="the fake's --rate-limit")
    parser.add_argument("--poll-rounds", type=int, default=3, help="at least this many poll rounds")
    parser.add_argument("--check", action="store_true", help="each result must name its own clip")
    parser.add_argument("--fake-arg", action="append", default=[], help="extra argument for the fake")
    parser.add_argument("--json", help="write the figures to this file")
    args = parser.parse_args()

    fake_args = ["--pending-seconds", "0", "--processing-seconds", "0.5", *args.fake_arg]
    if args.rate_limit is not None:
        fake_args += ["--rate-limit", str(args.rate_limit)]
    proc, url = start_fake(fake_args)
    fake = psutil.Process(proc.pid)
    phases: list[Phase] = []
    try:
        print(f"fake {' '.join(fake_args)}: {args.clips} clips, {args.concurrency} client threads")
        idle = Phase("idle", rss_mb=fake.memory_info().rss / 2**20, cpu_s=sum(fake.cpu_times()[:2]))
        print(idle.line())

        def create(session: requests.Session, index: int) -> tuple[Any, int, int]:
            body = {
                "video_url": f"https://media.example/batch/clip-{index:05d}.mp4",
                "audio_url": f"https://media.example/batch/voice-{index:05d}.m4a",
            }
            response, sent, throttled = send(session, "POST", url + CREATE, json=body)
            payload = response.json()
            assert payload["code"] == 0, payload
            return (index, payload["data"]["task_id"]), sent, throttled

        phase, created = run_phase("create", list(range(args.clips)), args.concurrency, create, fake)
        phases.append(phase)
        print(phase.line())

        def poll(session: requests.Session, task_id: str) -> tuple[Any, int, int]:
            response, sent, throttled = send(session, "GET", url + STATUS.format(task_id=task_id))
            data = response.json()["data"]
            return (task_id, data["status"], data["data"]), sent, throttled

        results: dict[str, Any] = {}
        waiting = [task_id for _, task_id in created]
        rounds = 0
        while waiting or rounds < args.poll_rounds:
            rounds += 1
            ids = waiting if waiting else [task_id for _, task_id in created]
            phase, answers = run_phase(f"poll {rounds}", ids, args.concurrency, poll, fake)
            phases.append(phase)
            print(phase.line())
            waiting = []
            for task_id, status, data in answers:
                if status in ("success", "failed"):
                    results[task_id] = data
                else:
                    waiting.append(task_id)

        clip_of = {task_id: index for index, task_id in created}
        tagged = [0]

        def download(session: requests.Session, task_id: str) -> tuple[Any, int, int]:
            response, sent, throttled = send(session, "GET", results[task_id]["result_url"])
            if args.check:
                from airflow_provider_jogg.testing.media import result_tag

                tag = result_tag(response.content)
                index = clip_of[task_id]
                assert tag is not None, f"result of task {task_id} carries no tag"
                assert tag["task_id"] == task_id, (task_id, tag)
                assert tag["video_url"].endswith(f"/clip-{index:05d}.mp4"), (index, tag)
                assert tag["audio_url"].endswith(f"/voice-{index:05d}.m4a"), (index, tag)
                tagged[0] += 1
            return len(response.content), sent, throttled

        phase, sizes = run_phase("download", list(results), args.concurrency, download, fake)
        phase.extra["MB"] = round(sum(sizes) / 2**20, 1)
        if args.check:
            phase.extra["checked"] = tagged[0]
        phases.append(phase)
        print(phase.line())
        peak = fake.memory_info()
        hwm = _vm_hwm(proc.pid)
        print(f"fake peak RSS (VmHWM) {hwm:.1f} MB, RSS now {peak.rss / 2**20:.1f} MB")
    finally:
        proc.terminate()
        proc.wait(timeout=30)
    if args.json:
        with open(args.json, "w", encoding="utf-8") as handle:
            figures = {"fake_args": fake_args, "clips": args.clips, "phases": [vars(p) for p in phases]}
            json.dump(figures, handle, indent=1)
    return 0


def _vm_hwm(pid: int) -> float:
    """The process's peak resident set (Linux ``VmHWM``) in MB, 0 elsewhere."""
    try:
        with open(f"/proc/{pid}/status", encoding="ascii") as handle:
            for line in handle:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


if __name__ == "__main__":
    sys.exit(main())
