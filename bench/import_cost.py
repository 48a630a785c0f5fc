"""Import cost of the trigger module beyond what a triggerer process has already imported.

A triggerer has imported ``airflow.jobs.triggerer_job_runner`` (and with it Airflow's models, the
task SDK, structlog, pydantic, ...) before it loads any trigger class. Each measurement runs in a
fresh interpreter: import that baseline, then time ``import <target>`` with ``perf_counter``;
the median of ``--repeat`` runs is reported, together with the modules the target added and the
largest of them by ``-X importtime``.

Targets:

* ``airflow_provider_jogg.triggers.lip_sync`` -- what ``TriggerRunner.get_trigger_by_classpath``
  imports to build the trigger (the aim: under 30 ms);
* ``+ airflow_provider_jogg.triggers.polling`` and ``aiohttp`` -- what the trigger imports lazily on
  its first run (the poll scheduler and the async client, which never import ``requests``);
* the same with ``aiohttp`` already loaded, as in a triggerer that also runs other aiohttp-based
  triggers (the HTTP provider's, for instance).

Run: ``bench/.venv/bin/python bench/import_cost.py [--repeat 5] [--json out.json]``.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile

BASELINE = "airflow.jobs.triggerer_job_runner"
TRIGGER = "airflow_provider_jogg.triggers.lip_sync"
HOOK = "airflow_provider_jogg.triggers.polling"

_PROBE = r"""
import sys, time, json
for m in {pre!r}:
    __import__(m)
before = set(sys.modules)
t = time.perf_counter()
for m in {targets!r}:
    __import__(m)
dt = time.perf_counter() - t
added = sorted(set(sys.modules) - before)
print(json.dumps({{"seconds": dt, "added": added}}))
"""


def _env() -> dict[str, str]:
    env = dict(os.environ)
    home = tempfile.mkdtemp(prefix="jogg-import-")
    env.update(AIRFLOW_HOME=home, AIRFLOW__CORE__LOAD_EXAMPLES="False")
    env.pop("PYTHONDONTWRITEBYTECODE", None)  # use (and keep) the venv's compiled bytecode
    return env


def measure(pre: list[str], targets: list[str], repeat: int) -> dict:
    env = _env()
    runs = []
    added: list[str] = []
    # one warm-up run so that every .pyc exists and the page cache holds the files
    for i in range(repeat + 1):
        out = subprocess.run(
            [sys.executable, "-c", _PROBE.format(pre=pre, targets=targets)],
            env=env,
            capture_output=True,
            text=True,
            check=True,
        )
        data = json.loads(out.stdout.strip().splitlines()[-1])
        if i:
            runs.append(data["seconds"])
        added = data["added"]
    return {
        "pre": pre,
        "targets": targets,
        "median_ms": statistics.median(runs) * 1000,
        "min_ms": min(runs) * 1000,
        "runs_ms": [round(r * 1000, 2) for r in runs],
        "modules_added": len(added),
        "top_level_packages_added": sorted({m.split(".")[0] for m in added}),
    }


def importtime_top(pre: list[str], targets: list[str], top: int = 12) -> list[tuple[float, str]]:
    """The largest cumulative import times (ms) among the modules the targets added."""
    code = (
        "".join(f"import {m}\n" for m in pre)
        + "import sys\nsys.stderr.write('--MARK--\\n')\n"
        + "".join(f"import {m}\n" for m in targets)
    )
    out = subprocess.run(
        [sys.executable, "-X", "importtime", "-c", code],
        env=_env(),
        capture_output=True,
        text=True,
        check=True,
    )
    lines = out.stderr.split("--MARK--\n", 1)[-1].splitlines()
    rows = []
    for line in lines:
        if not line.startswith("import time:") or line.count("|") != 2:
            continue
        _self_us, cum_us, name = line[len("import time:") :].split("|")
        try:
            cum = float(cum_us)
        except ValueError:
            continue
        depth = (len(name) - len(name.lstrip()) - 1) // 2
        if depth <= 1:
            rows.append((cum / 1000, name.strip(), depth))
    rows.sort(reverse=True)
    return [(round(ms, 1), name) for ms, name, _ in rows[:top]]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--repeat", type=int, default=5)
    p.add_argument("--json", default=None, help="also write the results here")
    args = p.parse_args(argv)
    cases = [
        ("trigger module", [BASELINE], [TRIGGER]),
        ("trigger + first run (scheduler, aiohttp)", [BASELINE], [TRIGGER, HOOK, "aiohttp"]),
        ("trigger + first run, aiohttp already loaded", [BASELINE, "aiohttp"], [TRIGGER, HOOK]),
        ("reference: aiohttp alone", [BASELINE], ["aiohttp"]),
    ]
    results = {}
    for label, pre, targets in cases:
        r = measure(pre, targets, args.repeat)
        results[label] = r
        print(
            f"{label:42s} median {r['median_ms']:7.1f} ms (min {r['min_ms']:.1f}), "
            f"{r['modules_added']} modules: {', '.join(r['top_level_packages_added'])}"
        )
    for label, pre, targets in cases[:2]:
        top = importtime_top(pre, targets)
        results[label]["importtime_top"] = top
        print(f"\n-X importtime, largest cumulative among what '{label}' adds (ms):")
        for ms, name in top:
            print(f"  {ms:7.1f}  {name}")
    aim = results["trigger module"]["median_ms"]
    print(f"\ntrigger module beyond Airflow: {aim:.1f} ms (aim < 30 ms: {'met' if aim < 30 else 'NOT met'})")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
