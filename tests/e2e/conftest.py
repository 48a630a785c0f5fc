"""The e2e deployment fixture: one real Airflow deployment (+ fake Jogg servers) per test session.

Everything is started in a temporary directory on free loopback ports and stopped by PID when the
session ends, pass or fail (also on Ctrl-C and SIGTERM). When a test fails, the tails of every
component's output and of the Airflow task logs are attached to its report. The directory is deleted
after a clean session and kept (its path is printed) after a failure, or always with
``JOGG_E2E_KEEP=1``.
"""

from __future__ import annotations

import atexit
import os
import secrets
import shutil
import signal
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from tests.e2e.deployment import Deployment, tail

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator

#: requests per second the ``jogg_load`` account takes; above it the fake answers 429, Retry-After: 1
LOAD_RATE_LIMIT = 3.0

_ACTIVE: list[Deployment] = []
_REPORT_LINES: list[str] = []
#: nodeid -> "passed" / "failed" / "skipped" (a failed setup or teardown counts as failed)
_OUTCOMES: dict[str, str] = {}


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
    )

    # start_new_session=True keeps Ctrl-C away from the children: stop them ourselves on every exit.
    def on_sigterm(signum: int, frame: object) -> None:
        raise KeyboardInterrupt(f"signal {signum}")

    previous = signal.signal(signal.SIGTERM, on_sigterm)
    atexit.register(dep.stop)
    _ACTIVE.append(dep)
    try:
        dep.start()
        _REPORT_LINES.append(
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
        _ACTIVE.remove(dep)
        codes = dep.stop()
        atexit.unregister(dep.stop)
        signal.signal(signal.SIGTERM, previous)
        _REPORT_LINES.append(f"stopped by PID, exit codes: {codes}")
        # delete only when every test that used this deployment ran and passed (not interrupted)
        users = [item.nodeid for item in request.session.items if "deployment" in item.fixturenames]
        clean = all(_OUTCOMES.get(nodeid) == "passed" for nodeid in users)
        if not clean or os.environ.get("JOGG_E2E_KEEP"):
            _REPORT_LINES.append(f"kept the deployment directory for inspection: {root}")
        else:
            shutil.rmtree(root, ignore_errors=True)


@pytest.fixture
def report(capsys: pytest.CaptureFixture[str]) -> Callable[[str], None]:
    """Print a result line now (even without ``-s``) and again in the terminal summary."""

    def emit(line: str) -> None:
        _REPORT_LINES.append(line)
        with capsys.disabled():
            print(f"\n[e2e] {line}", flush=True)

    return emit


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> pytest.TestReport:
    rep: pytest.TestReport = yield
    if rep.when == "call" or rep.failed:
        _OUTCOMES[item.nodeid] = "failed" if rep.failed else rep.outcome
    if rep.failed and _ACTIVE and item.get_closest_marker("e2e") is not None:
        dep = _ACTIVE[-1]
        rep.sections.append((f"e2e component output ({rep.when})", dep.diagnostics(lines=120)))
        rep.sections.append((f"e2e task and trigger logs ({rep.when})", _task_log_tails(dep)))
    return rep


def _task_log_tails(dep: Deployment, limit: int = 12) -> str:
    """The most recent Airflow task/trigger log files, failed-looking ones first."""
    files = sorted(dep.task_logs.glob("dag_id=*/**/*.log"), key=lambda p: p.stat().st_mtime, reverse=True)
    failing = [p for p in files if '"level":"error"' in p.read_text(errors="replace")]
    chosen = list(dict.fromkeys(failing[:limit] + files[: max(0, limit - len(failing))]))
    return "\n".join(f"----- {p.relative_to(dep.task_logs)} -----\n{tail(p, 40)}" for p in chosen)


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if _REPORT_LINES:
        terminalreporter.write_sep("=", "jogg e2e summary")
        for line in _REPORT_LINES:
            terminalreporter.write_line(line)
