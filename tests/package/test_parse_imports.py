"""What a DAG file pays at parse time for importing the provider's operator, sensor and trigger.

The dag-processor parses DAG files all day and every task run parses its DAG file again, so these
modules must not import an HTTP client or the retry library: those load when a task runs. Each
check runs in a fresh interpreter and compares ``sys.modules`` after ``import airflow.sdk`` with the
set after also importing the provider modules, so that what Airflow itself imports (``airflow.sdk``
brings ``tenacity`` and ``httpx`` in Airflow 3.3) is not counted against the provider.
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

#: top-level packages a DAG file must not get from the provider; the HTTP clients with their
#: dependencies, and the retry library
HEAVY = (
    "requests",
    "urllib3",
    "charset_normalizer",
    "aiohttp",
    "aiohappyeyeballs",
    "yarl",
    "multidict",
    "frozenlist",
    "aiosignal",
    "propcache",
    "httpx",
    "httpcore",
    "tenacity",
)
#: what a DAG file imports from the provider: the operator and sensor, the batch's manifest reader,
#: and sometimes the trigger
DAG_IMPORTS = (
    "airflow_provider_jogg",
    "airflow_provider_jogg.operators.lip_sync",
    "airflow_provider_jogg.sensors.lip_sync",
    "airflow_provider_jogg.operators.lip_sync_batch",
    # the batch's pieces (a DAG may read a manifest at parse time)
    "airflow_provider_jogg.batch",
    "airflow_provider_jogg.batch.manifest",
)
TRIGGER_MODULE = "airflow_provider_jogg.triggers.lip_sync"
#: the provider's modules that bring the HTTP clients (or OpenLineage): loaded when a task runs
TASK_RUN_MODULES = (
    "airflow_provider_jogg.hooks.jogg",
    "airflow_provider_jogg.hooks.async_client",
    "airflow_provider_jogg.hooks.media_fetch",
    "airflow_provider_jogg.triggers.polling",
    "airflow_provider_jogg.lineage",
)

_PROBE = """
import json, sys
import airflow.sdk
baseline = set(sys.modules)
for name in {dag_imports!r}:
    __import__(name)
operators = set(sys.modules)
__import__({trigger!r})
trigger = set(sys.modules)
# what a task run adds: the hook the operators build in execute()
__import__("airflow_provider_jogg.hooks.jogg")
run = set(sys.modules)
print(json.dumps({{
    "baseline": sorted(baseline),
    "operators": sorted(operators - baseline),
    "parse": sorted(trigger - baseline),
    "run": sorted(run - trigger),
}}))
"""


def _top_levels(modules: list[str]) -> set[str]:
    return {m.split(".", 1)[0] for m in modules}


@pytest.fixture(scope="module")
def probe() -> dict[str, list[str]]:
    """The modules ``airflow.sdk`` loads, then what the DAG imports add, then what the hook adds."""
    # a fresh interpreter: this pytest process has imported everything already. It inherits the
    # isolated AIRFLOW_HOME that conftest.py set.
    out = subprocess.run(
        [sys.executable, "-c", _PROBE.format(dag_imports=DAG_IMPORTS, trigger=TRIGGER_MODULE)],
        capture_output=True,
        text=True,
        check=True,
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_dag_file_imports_pull_no_http_client_or_retry_library(probe: dict[str, list[str]]):
    added_at_parse = probe["parse"]
    # the probe did import the modules (airflow.sdk may load the package itself: Airflow's provider
    # discovery reads get_provider_info, and the package __init__ imports nothing)
    assert {*DAG_IMPORTS[1:], TRIGGER_MODULE} <= set(added_at_parse)
    heavy_from_provider = sorted(_top_levels(added_at_parse) & set(HEAVY))
    assert heavy_from_provider == [], (
        f"importing {', '.join([*DAG_IMPORTS, TRIGGER_MODULE])} after airflow.sdk imports "
        f"{heavy_from_provider}; provider modules it loads: "
        f"{[m for m in added_at_parse if m.startswith('airflow_provider_jogg')]}"
    )
    assert sorted(set(TASK_RUN_MODULES) & set(added_at_parse)) == []


def test_operator_and_sensor_leave_the_trigger_for_deferral(probe: dict[str, list[str]]):
    """The trigger (and Airflow's trigger base with it) loads when a task defers, not at parse."""
    assert TRIGGER_MODULE not in probe["operators"]
    assert "airflow.triggers.base" not in probe["operators"]


def test_the_probe_sees_what_a_task_run_imports(probe: dict[str, list[str]]):
    """The same probe catches the clients when they do load: the check above is not vacuous."""
    baseline = _top_levels(probe["baseline"])
    # whatever Airflow has not imported already, the hook brings at task run
    expected = {"requests", "urllib3", "aiohttp", "yarl", "multidict"} - baseline
    assert expected, "airflow.sdk already imports every HTTP client: nothing left for this test to check"
    assert expected <= _top_levels(probe["run"])
    assert {"airflow_provider_jogg.hooks.jogg", "airflow_provider_jogg.hooks.async_client"} <= set(
        probe["run"]
    )
