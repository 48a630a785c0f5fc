"""Import cost of the provider's modules beyond what the importing process has already imported.

Each measurement runs in a fresh interpreter: import a baseline, then time ``import <targets>``
with ``perf_counter``; the median of ``--repeat`` runs is reported, together with the modules the
targets added and the largest of them by ``-X importtime``.

DAG parsing (``--part parse``). The dag-processor parses a DAG file all day, and each task run on a
worker parses its DAG file again; the file has imported ``airflow.sdk`` (and with it Airflow's
models, SQLAlchemy, pydantic, ...) before it reaches the provider's imports:

* ``airflow.sdk`` from a bare interpreter -- the scale the rest compares with;
* ``airflow_provider_jogg.operators.lip_sync`` + ``airflow_provider_jogg.sensors.lip_sync`` (and the
  package ``__init__``) after ``airflow.sdk`` -- what a DAG file using ``LipSyncOperator`` and
  ``LipSyncSensor`` pays (the aim: under 20 ms; the hook, ``requests`` and ``aiohttp`` load when a
  task runs);
* the same plus ``airflow_provider_jogg.triggers.lip_sync``, for a DAG file that imports the trigger;
* reference: dbt Cloud's operator module (``airflow.providers.dbt.cloud.operators.dbt``,
  ``apache-airflow-providers-dbt-cloud``) after ``airflow.sdk``.

The triggerer (``--part trigger``). A triggerer has imported ``airflow.jobs.triggerer_job_runner``
before it loads any trigger class:

* ``airflow_provider_jogg.triggers.lip_sync`` -- what ``TriggerRunner.get_trigger_by_classpath``
  imports to build the trigger (the aim: under 30 ms);
* ``+ airflow_provider_jogg.triggers.polling`` and ``aiohttp`` -- what the trigger imports lazily on
  its first run (the poll scheduler and the async client, which never import ``requests``);
* the same with ``aiohttp`` already loaded, as in a triggerer that also runs other aiohttp-based
  triggers (the HTTP provider's, for instance).

Run: ``bench/.venv/bin/python bench/import_cost.py [--part all|parse|trigger] [--repeat 5]
[--json out.json]``.
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
SDK = "airflow.sdk"
DAG_IMPORTS = [
    "airflow_provider_jogg",
    "airflow_provider_jogg.operators.lip_sync",
    "airflow_provider_jogg.sensors.lip_sync",
]
DBT_CLOUD_OPERATORS = "airflow.providers.dbt.cloud.operators.dbt"
#: the aims, in ms beyond the baseline
PARSE_AIM_MS = 20
TRIGGER_AIM_MS = 30

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


PARSE_CASES = [
    ("airflow.sdk, bare interpreter", [], [SDK]),
    ("operator + sensor modules", [SDK], DAG_IMPORTS),
    ("operator + sensor + trigger modules", [SDK], [*DAG_IMPORTS, TRIGGER]),
    ("reference: dbt Cloud operator module", [SDK], [DBT_CLOUD_OPERATORS]),
]
TRIGGER_CASES = [
    ("trigger module", [BASELINE], [TRIGGER]),
    ("trigger + first run (scheduler, aiohttp)", [BASELINE], [TRIGGER, HOOK, "aiohttp"]),
    ("trigger + first run, aiohttp already loaded", [BASELINE, "aiohttp"], [TRIGGER, HOOK]),
    ("reference: aiohttp alone", [BASELINE], ["aiohttp"]),
]
#: the cases whose largest imports are listed
IMPORTTIME_CASES = [PARSE_CASES[1], PARSE_CASES[3], TRIGGER_CASES[0], TRIGGER_CASES[1]]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--part", choices=["all", "parse", "trigger"], default="all")
    p.add_argument("--repeat", type=int, default=5)
    p.add_argument("--json", default=None, help="also write the results here")
    args = p.parse_args(argv)
    cases = []
    if args.part in ("all", "parse"):
        cases += PARSE_CASES
    if args.part in ("all", "trigger"):
        cases += TRIGGER_CASES
    results = {}
    for label, pre, targets in cases:
        r = measure(pre, targets, args.repeat)
        results[label] = r
        after = f"after {', '.join(pre)}" if pre else "from nothing"
        packages = r["top_level_packages_added"]
        shown = ", ".join(packages) if len(packages) <= 30 else f"{len(packages)} top-level packages"
        print(
            f"{label:42s} median {r['median_ms']:7.1f} ms (min {r['min_ms']:.1f}) {after}; "
            f"{r['modules_added']} modules: {shown}"
        )
    for label, pre, targets in IMPORTTIME_CASES:
        if label not in results:
            continue
        top = importtime_top(pre, targets)
        results[label]["importtime_top"] = top
        print(f"\n-X importtime, largest cumulative among what '{label}' adds (ms):")
        for ms, name in top:
            print(f"  {ms:7.1f}  {name}")
    print()
    if "operator + sensor modules" in results:
        ours = results["operator + sensor modules"]["median_ms"]
        dbt = results["reference: dbt Cloud operator module"]["median_ms"]
        sdk = results["airflow.sdk, bare interpreter"]["median_ms"]
        verdict = "met" if ours < PARSE_AIM_MS else "NOT met"
        print(
            f"operator + sensor modules beyond airflow.sdk: {ours:.1f} ms (aim < {PARSE_AIM_MS} ms: "
            f"{verdict}); dbt Cloud's operator module: {dbt:.1f} ms; airflow.sdk itself: {sdk:.0f} ms"
        )
    if "trigger module" in results:
        aim = results["trigger module"]["median_ms"]
        verdict = "met" if aim < TRIGGER_AIM_MS else "NOT met"
        print(f"trigger module beyond Airflow: {aim:.1f} ms (aim < {TRIGGER_AIM_MS} ms: {verdict})")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
