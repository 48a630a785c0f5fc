"""One LipSyncBatchTrigger over N clips against N LipSyncTriggers, in the same harness.

Runs (unless ``--report`` is given) ``run.py --kinds lip_sync_batch,lip_sync`` for N clips at one poll
interval with ``--complete`` (every task finishes after the window, so each kind fires its events),
then prints the comparison table of ``bench/README.md``: per kind the medians over the repeats of
the triggerer's CPU per poll, polls done / intended, RSS, the trigger rows (kwargs as JSON, and
encrypted as stored) and the events (largest, and all of them together).

    bench/.venv/bin/python bench/batch_compare.py                        # 10,000 clips, 10 s, 2 rounds
    bench/.venv/bin/python bench/batch_compare.py --report bench/results/batch.json

Goals (issue 16): the batch's CPU per poll at most half of the individual triggers', polls done
>= 99.5 %, the trigger row and the event small at 10,000 clips.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
KINDS = ("lip_sync_batch", "lip_sync")
LABELS = {"lip_sync_batch": "one `LipSyncBatchTrigger`", "lip_sync": "N `LipSyncTrigger`s"}


def median(rows: list[dict], key: str) -> float | None:
    values = [r[key] for r in rows if isinstance(r.get(key), (int, float))]
    return statistics.median(values) if values else None


def table(doc: dict) -> str:
    by_kind = {k: [r for r in doc["results"] if r.get("kind") == k and "error" not in r] for k in KINDS}
    missing = [k for k, rows in by_kind.items() if not rows]
    if missing:
        raise SystemExit(f"no result for {', '.join(missing)} in {doc.get('name')}")
    n = by_kind["lip_sync"][0]["n"]
    interval = by_kind["lip_sync"][0]["interval"]
    lines = [
        f"N = {n:,} clips, poll interval {interval:g} s, window "
        f"{median(by_kind['lip_sync'], 'window'):.0f} s, {len(by_kind['lip_sync'])} round(s) "
        "(medians); tasks never finish in the window, then all finish and the events are counted.",
        "",
        "| kind | triggers | CPU ms/poll | polls done / intended | runner CPU | peak RSS (MB) "
        "| RSS / clip (KB) | trigger rows: largest / all (bytes, JSON) | all rows, encrypted (bytes) "
        "| events: largest / all (bytes) |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for kind in KINDS:
        rows = by_kind[kind]
        polls, intended = median(rows, "polls") or 0, median(rows, "polls_intended") or 0
        lines.append(
            f"| {LABELS[kind]} | {median(rows, 'triggers'):,.0f} | {median(rows, 'cpu_ms_per_poll'):.3f} "
            f"| {polls:,.0f} / {intended:,.0f} ({100 * polls / intended:.1f} %) "
            f"| {100 * (median(rows, 'runner_cpu_util') or 0):.0f} % | {median(rows, 'peak_rss_mb'):.0f} "
            f"| {median(rows, 'rss_per_trigger_kb'):.1f} "
            f"| {median(rows, 'trigger_row_bytes_max'):,.0f} "
            f"/ {median(rows, 'trigger_row_bytes_total'):,.0f} "
            f"| {median(rows, 'trigger_row_encrypted_bytes_total'):,.0f} "
            f"| {median(rows, 'event_bytes_max') or 0:,.0f} / {median(rows, 'event_bytes_total') or 0:,.0f} |"
        )
    batch, single = by_kind["lip_sync_batch"], by_kind["lip_sync"]
    ratio = (median(batch, "cpu_ms_per_poll") or 0) / (median(single, "cpu_ms_per_poll") or 1)
    done = min(r["polls_ratio"] for r in batch)
    lines += [
        "",
        f"- CPU per poll, batch / individual triggers: **{ratio:.2f}x** (goal <= 0.5x: "
        f"{'met' if ratio <= 0.5 else 'NOT met'})",
        f"- polls done by the batch, worst round: **{100 * done:.1f} %** (goal >= 99.5 %: "
        f"{'met' if done >= 0.995 else 'NOT met'})",
        f"- events fired: batch {[r.get('events') for r in batch]}, individual "
        f"{[r.get('events') for r in single]}; trigger failures: "
        f"{sum(r.get('failures', 0) for r in batch + single)}",
    ]
    machine = doc.get("machine", {})
    lines.append(
        f"- machine: {machine.get('cpu_model', '?')}, {machine.get('cpus', '?')} cores, "
        f"load average at start {[round(x, 1) for x in machine.get('loadavg_at_start', [])]}; "
        f"run `{doc.get('name')}` started {doc.get('started')}"
    )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--report", type=Path, help="print the table of an earlier run's results JSON only")
    p.add_argument("--n", type=int, default=10_000)
    p.add_argument("--interval", type=float, default=10.0)
    p.add_argument("--window", type=float, default=30.0)
    p.add_argument("--repeat", type=int, default=2)
    p.add_argument("--name", default="batch")
    args = p.parse_args(argv)
    path = args.report
    if path is None:
        command = [
            sys.executable,
            str(HERE / "run.py"),
            "--kinds",
            ",".join(KINDS),
            "--n",
            str(args.n),
            "--interval",
            str(args.interval),
            "--window",
            str(args.window),
            "--repeat",
            str(args.repeat),
            "--complete",
            "--name",
            args.name,
        ]
        subprocess.run(command, check=True)
        path = HERE / "results" / f"{args.name}.json"
    print(table(json.loads(path.read_text())))
    return 0


if __name__ == "__main__":
    sys.exit(main())
