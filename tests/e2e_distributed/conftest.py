"""Level suite ``e2e_distributed`` (``make e2e-distributed``, ``pytest -m e2e_distributed
tests/e2e_distributed``, about 4-7 minutes): the deployment users grow into, on loopback: CeleryExecutor
with its own Redis broker and PostgreSQL metadata DB, two Celery workers, two triggerers, api-server,
scheduler, dag-processor, and fake Jogg servers.

Needs Debian's ``redis-server`` and ``postgresql`` (``make distributed-deps``). Started in temporary
directories on free loopback ports, stopped by PID when the test ends, pass or fail (also on Ctrl-C
and SIGTERM); component output and task/trigger logs are attached to a failing test's report. The
directories are deleted after a clean run and kept (path printed) after a failure, or always with
``JOGG_E2E_KEEP=1``. The harness itself is :mod:`tests.harness`.

These tests run only when selected with ``-m e2e_distributed``: a plain ``pytest`` or ``-m "not e2e"``
run skips them, so the unit-test run never starts a deployment.
"""

from __future__ import annotations

import os
import secrets
import shutil
import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from tests.e2e_distributed.services import DistributedDeployment
from tests.harness.reports import SuiteSession

if TYPE_CHECKING:
    from collections.abc import Iterator

MARKER = "e2e_distributed"
HERE = Path(__file__).resolve().parent
#: requests per second the user's Jogg account (``jogg_load``) takes; above it the fake answers 429
USER_RATE_LIMIT = 3.0
SUITE = SuiteSession("e2e-distributed", marker=MARKER)


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        f"{MARKER}: CeleryExecutor deployment on loopback (Redis, PostgreSQL, 2 Celery workers, "
        "2 triggerers); make e2e-distributed",
    )


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if MARKER in (config.getoption("markexpr", "") or ""):
        return
    reason = f"a deployment test of several minutes: run it with -m {MARKER} (make e2e-distributed)"
    skip = pytest.mark.skip(reason=reason)
    for item in items:
        if item.get_closest_marker(MARKER) is not None and HERE in Path(str(item.path)).parents:
            item.add_marker(skip)


@pytest.fixture(scope="session")
def distributed(request: pytest.FixtureRequest) -> Iterator[DistributedDeployment]:
    root = Path(tempfile.mkdtemp(prefix="jogg-e2e-dist-"))
    # jogg_load is the user's account: a connection with default extras (3 retries, 1 s backoff,
    # 100 req/s) on an account that answers 429 above a few requests per second
    dep = DistributedDeployment(
        root=root,
        default_key=f"sk-jogg-E2E-DIST-DEFAULT-{secrets.token_hex(12)}",
        load_key=f"sk-jogg-E2E-DIST-USER-{secrets.token_hex(12)}",
        parallelism=8,
        load_rate_limit=USER_RATE_LIMIT,
        load_conn_extra={},
    )
    t0: float | None = None
    try:
        with SUITE.running(dep):
            dep.start()
            t = dep.timings
            SUITE.lines.append(
                f"setup: deployment ready in {t['start']:.1f} s (redis {t['redis']:.1f} s, postgres initdb "
                f"{t['postgres_initdb']:.1f} s + start {t['postgres_start']:.1f} s, db migrate "
                f"{t['db_migrate']:.1f} s, api-server {t['api_server_ready']:.1f} s, workers + 2nd triggerer "
                f"{t['workers_and_triggerers']:.1f} s); root {root}, services {dep.services_root}"
            )
            yield dep
            t0 = time.monotonic()
    finally:
        codes = dep.stop()  # a no-op when the test already stopped it
        if t0 is not None and "teardown" not in dep.timings:
            dep.timings["teardown"] = time.monotonic() - t0
            SUITE.lines.append(f"stopped by PID in {dep.timings['teardown']:.1f} s, exit codes: {codes}")
        if not SUITE.all_passed(request, "distributed") or os.environ.get("JOGG_E2E_KEEP"):
            SUITE.lines.append(f"kept for inspection: {root} and {dep.services_root}")
        else:
            shutil.rmtree(root, ignore_errors=True)
            dep.remove_service_dirs()


report = SUITE.report_fixture()
pytest_runtest_makereport = SUITE.makereport
pytest_terminal_summary = SUITE.summary
