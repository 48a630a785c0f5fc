"""A level suite's session bookkeeping, for its ``conftest.py``: the deployment that is running, the
result lines printed at once and again in the terminal summary, each test's outcome (to keep a failed
session's files), and the evidence attached to a failing test's report."""

from __future__ import annotations

import atexit
import contextlib
import signal
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

import pytest

from tests.harness.processes import tail

if TYPE_CHECKING:
    from collections.abc import Callable, Generator, Iterator
    from pathlib import Path


class Diagnosable(Protocol):
    task_logs: Path

    def diagnostics(self, lines: int = ...) -> str: ...

    def stop(self) -> Any: ...


def task_log_tails(task_logs: Path, limit: int = 12, lines: int = 40) -> str:
    """The most recent Airflow task/trigger log files, those with an error first."""
    files = sorted(task_logs.glob("dag_id=*/**/*.log"), key=lambda p: p.stat().st_mtime, reverse=True)
    failing = [p for p in files if '"level":"error"' in p.read_text(errors="replace")]
    chosen = list(dict.fromkeys(failing[:limit] + files[: max(0, limit - len(failing))]))
    return "\n".join(f"----- {p.relative_to(task_logs)} -----\n{tail(p, lines)}" for p in chosen)


@dataclass
class SuiteSession:
    """One suite's state across a pytest session (``name`` prefixes its lines and report sections)."""

    name: str
    #: the marker of the suite's tests: only their reports are recorded
    marker: str
    lines: list[str] = field(default_factory=list)
    #: nodeid -> "passed" / "failed" / "skipped" (a failed setup or teardown counts as failed)
    outcomes: dict[str, str] = field(default_factory=dict)
    active: list[Diagnosable] = field(default_factory=list)

    @contextlib.contextmanager
    def running(self, deployment: Diagnosable) -> Iterator[None]:
        """While the deployment runs: stopped by PID on every exit, also on SIGTERM and at interpreter
        exit (``start_new_session=True`` keeps Ctrl-C away from the children)."""

        def on_sigterm(signum: int, frame: object) -> None:
            raise KeyboardInterrupt(f"signal {signum}")

        previous = signal.signal(signal.SIGTERM, on_sigterm)
        atexit.register(deployment.stop)
        self.active.append(deployment)
        try:
            yield
        finally:
            self.active.remove(deployment)
            try:
                deployment.stop()
            finally:
                atexit.unregister(deployment.stop)
                signal.signal(signal.SIGTERM, previous)

    def all_passed(self, request: pytest.FixtureRequest, fixture: str) -> bool:
        """Every test of the session that used ``fixture`` ran and passed (not interrupted)."""
        users = [
            item.nodeid for item in request.session.items if fixture in getattr(item, "fixturenames", ())
        ]
        return all(self.outcomes.get(nodeid) == "passed" for nodeid in users)

    # ---- what a suite's conftest.py takes as its own: ``report = SUITE.report_fixture()``,
    # ``pytest_runtest_makereport = SUITE.makereport``, ``pytest_terminal_summary = SUITE.summary``
    def report_fixture(self) -> Any:
        """The ``report`` fixture: ``report(line)`` prints a result line now (even without ``-s``) and
        again in the terminal summary."""

        def report(capsys: pytest.CaptureFixture[str]) -> Callable[[str], None]:
            def emit(line: str) -> None:
                self.lines.append(line)
                with capsys.disabled():
                    print(f"\n[{self.name}] {line}", flush=True)

            return emit

        return pytest.fixture(report)

    @pytest.hookimpl(wrapper=True)
    def makereport(
        self, item: pytest.Item, call: pytest.CallInfo[None]
    ) -> Generator[None, pytest.TestReport, pytest.TestReport]:
        """``pytest_runtest_makereport``: the outcome of the suite's tests, and on a failure the
        components' output and the task and trigger logs of the running deployment."""
        rep: pytest.TestReport = yield
        if item.get_closest_marker(self.marker) is None:
            return rep
        if rep.when == "call" or rep.failed:
            self.outcomes[item.nodeid] = "failed" if rep.failed else rep.outcome
        if rep.failed and self.active:
            dep = self.active[-1]
            rep.sections.append((f"{self.name} component output ({rep.when})", dep.diagnostics(lines=120)))
            tails = task_log_tails(dep.task_logs)
            rep.sections.append((f"{self.name} task and trigger logs ({rep.when})", tails))
        return rep

    def summary(self, terminalreporter: pytest.TerminalReporter) -> None:
        if self.lines:
            terminalreporter.write_sep("=", f"jogg {self.name} summary")
            for line in self.lines:
                terminalreporter.write_line(line)
