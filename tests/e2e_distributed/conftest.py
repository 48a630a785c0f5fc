"""The distributed e2e fixture: CeleryExecutor + Redis + PostgreSQL + 2 workers + 2 triggerers.

Started in temporary directories on free loopback ports, stopped by PID when the test ends, pass or
fail (also on Ctrl-C and SIGTERM); component output and task/trigger logs are attached to a failing
test's report. The directories are deleted after a clean run and kept (path printed) after a
failure, or always with ``JOGG_E2E_KEEP=1``.

These tests run only when selected with ``-m e2e_distributed`` (``make e2e-distributed``): a plain
``pytest`` or ``-m "not e2e"`` run skips them, so the unit-test run never starts a deployment.
"""

from __future__ import annotations

import atexit
import os
import secrets
import shutil
import signal
import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from tests.e2e.deployment import tail
from tests.e2e_distributed.services import DistributedDeployment

if TYPE_CHECKING:
    from collections.abc import Callable, Generator, Iterator

MARKER = "e2e_distributed"
HERE = Path(__file__).resolve().parent
_ACTIVE: list[DistributedDeployment] = []
_REPORT_LINES: list[str] = []
_OUTCOMES: dict[str, str] = {}


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
    dep = DistributedDeployment(
        root=root,
        default_key=f"sk-jogg-E2E-DIST-DEFAULT-{secrets.token_hex(12)}",
        load_key=f"sk-jogg-E2E-DIST-LOAD-{secrets.token_hex(12)}",
        parallelism=8,
    )

    def on_sigterm(signum: int, frame: object) -> None:
        raise KeyboardInterrupt(f"signal {signum}")

    previous = signal.signal(signal.SIGTERM, on_sigterm)
    atexit.register(dep.stop)
    _ACTIVE.append(dep)
    try:
        dep.start()
        t = dep.timings
        _REPORT_LINES.append(
            f"setup: deployment ready in {t['start']:.1f} s (redis {t['redis']:.1f} s, postgres initdb "
            f"{t['postgres_initdb']:.1f} s + start {t['postgres_start']:.1f} s, db migrate "
            f"{t['db_migrate']:.1f} s, api-server {t['api_server_ready']:.1f} s, workers + 2nd triggerer "
            f"{t['workers_and_triggerers']:.1f} s); root {root}, services {dep.services_root}"
        )
        yield dep
    finally:
        _ACTIVE.remove(dep)
        t0 = time.monotonic()
        codes = dep.stop()  # a no-op when the test already stopped it
        atexit.unregister(dep.stop)
        signal.signal(signal.SIGTERM, previous)
        if "teardown" not in dep.timings:
            dep.timings["teardown"] = time.monotonic() - t0
            _REPORT_LINES.append(f"stopped by PID in {dep.timings['teardown']:.1f} s, exit codes: {codes}")
        users = [
            item.nodeid
            for item in request.session.items
            if "distributed" in getattr(item, "fixturenames", ())
        ]
        clean = all(_OUTCOMES.get(nodeid) == "passed" for nodeid in users)
        if not clean or os.environ.get("JOGG_E2E_KEEP"):
            _REPORT_LINES.append(f"kept for inspection: {root} and {dep.services_root}")
        else:
            shutil.rmtree(root, ignore_errors=True)
            dep.remove_service_dirs()


@pytest.fixture
def report(capsys: pytest.CaptureFixture[str]) -> Callable[[str], None]:
    """Print a result line now (even without ``-s``) and again in the terminal summary."""

    def emit(line: str) -> None:
        _REPORT_LINES.append(line)
        with capsys.disabled():
            print(f"\n[e2e-distributed] {line}", flush=True)

    return emit


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    rep: pytest.TestReport = yield
    if item.get_closest_marker(MARKER) is None:
        return rep
    if rep.when == "call" or rep.failed:
        _OUTCOMES[item.nodeid] = "failed" if rep.failed else rep.outcome
    if rep.failed and _ACTIVE:
        dep = _ACTIVE[-1]
        rep.sections.append((f"e2e-distributed component output ({rep.when})", dep.diagnostics(lines=120)))
        rep.sections.append((f"e2e-distributed task and trigger logs ({rep.when})", _task_log_tails(dep)))
    return rep


def _task_log_tails(dep: DistributedDeployment, limit: int = 12) -> str:
    files = sorted(dep.task_logs.glob("dag_id=*/**/*.log"), key=lambda p: p.stat().st_mtime, reverse=True)
    failing = [p for p in files if '"level":"error"' in p.read_text(errors="replace")]
    chosen = list(dict.fromkeys(failing[:limit] + files[: max(0, limit - len(failing))]))
    return "\n".join(f"----- {p.relative_to(dep.task_logs)} -----\n{tail(p, 40)}" for p in chosen)


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if _REPORT_LINES:
        terminalreporter.write_sep("=", "jogg e2e-distributed summary")
        for line in _REPORT_LINES:
            terminalreporter.write_line(line)
