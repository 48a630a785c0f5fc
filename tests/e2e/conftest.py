"""Level suite ``e2e`` (``make e2e``, ``pytest -m e2e tests/e2e``, about 15 minutes): the provider in
one real Airflow deployment per session (LocalExecutor on SQLite: api-server, scheduler,
dag-processor, triggerer) against fake Jogg servers running as their own processes, all on loopback.

Needs nothing beyond the dev extra. The deployment is started in a temporary directory on free
loopback ports and stopped by PID when the session ends, pass or fail (also on Ctrl-C and SIGTERM).
When a test fails, the tails of every component's output and of the Airflow task logs are attached
to its report. The directory is deleted after a clean session and kept (its path is printed) after a
failure, or always with ``JOGG_E2E_KEEP=1``. The harness itself is :mod:`tests.harness`.
"""

from __future__ import annotations

import os
import secrets
import shutil
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from tests.e2e.deployment import Deployment
from tests.harness.reports import SuiteSession

if TYPE_CHECKING:
    from collections.abc import Iterator

#: requests per second the ``jogg_load`` account takes; above it the fake answers 429, Retry-After: 1
LOAD_RATE_LIMIT = 3.0
SUITE = SuiteSession("e2e", marker="e2e")


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "e2e: starts a real Airflow deployment (scheduler, triggerer, ...) on loopback ports"
    )


@pytest.fixture(scope="session")
def e2e_keys() -> dict[str, str]:
    """Distinctive API keys, fresh per session, so a leak anywhere can be searched for."""
    return {
        "jogg_default": f"sk-jogg-E2E-DEFAULT-{secrets.token_hex(12)}",
        "jogg_load": f"sk-jogg-E2E-LOAD-{secrets.token_hex(12)}",
        "jogg_batch": f"sk-jogg-E2E-BATCH-{secrets.token_hex(12)}",
    }


@pytest.fixture(scope="session")
def deployment(e2e_keys: dict[str, str], request: pytest.FixtureRequest) -> Iterator[Deployment]:
    root = Path(tempfile.mkdtemp(prefix="jogg-e2e-"))
    # The load account as a user has it: a connection with no extras (the hook's default of 100
    # requests/s, far above the account's real limit of 3/s, so that the fake's 429s really happen).
    dep = Deployment(
        root=root,
        default_key=e2e_keys["jogg_default"],
        load_key=e2e_keys["jogg_load"],
        load_rate_limit=LOAD_RATE_LIMIT,
        load_conn_extra={},
        batch_key=e2e_keys["jogg_batch"],
    )
    try:
        with SUITE.running(dep):
            dep.start()
            SUITE.lines.append(
                "deployment ready in {start:.1f} s (db migrate {db_migrate:.1f} s, api-server {api:.1f} s); "
                "root {root}".format(
                    start=dep.timings["start"],
                    db_migrate=dep.timings["db_migrate"],
                    api=dep.timings["api_server_ready"],
                    root=root,
                )
            )
            yield dep
    finally:
        SUITE.lines.append(f"stopped by PID, exit codes: {dep.stop()}")
        # delete only when every test that used this deployment ran and passed (not interrupted)
        if not SUITE.all_passed(request, "deployment") or os.environ.get("JOGG_E2E_KEEP"):
            SUITE.lines.append(f"kept the deployment directory for inspection: {root}")
        else:
            shutil.rmtree(root, ignore_errors=True)


report = SUITE.report_fixture()
pytest_runtest_makereport = SUITE.makereport
pytest_terminal_summary = SUITE.summary
