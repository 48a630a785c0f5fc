"""Level suite ``ui`` (``make ui-test``, ``pytest -p no:xdist -m ui tests/ui``, about a minute): the
Jogg connection form in a real Airflow UI. An Airflow api-server (SQLite, simple auth manager) with a
fake Jogg server behind it (:mod:`tests.ui.stack`, on :mod:`tests.harness`), and Debian's Chromium
driven by Playwright (``executable_path``; Playwright never downloads a browser).

Needs ``/usr/bin/chromium`` and the ``playwright`` package (``make ui-deps``); skipped, with the
reason, only when one of them is missing.

Environment:
- ``JOGG_UI_SCREENSHOT_DIR``: where the screenshots go (``make ui-screenshots`` sets ``docs/images``);
  by default a pytest temporary directory, so a test run never changes the work tree.
"""

from __future__ import annotations

import importlib.util
import os
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from tests.ui.stack import ROOT, UIStack

if TYPE_CHECKING:
    from collections.abc import Generator, Iterator

CHROMIUM = "/usr/bin/chromium"
#: required on these machines (running as root, closed network); see the README's UI tests section
CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
#: distinctive, so it can be searched for in pages, answers and logs
UI_API_KEY = "sk-jogg-UI-KEY-3f9a61c0d2b84e75"
WRONG_API_KEY = "sk-jogg-WRONG-KEY-8e2d4b6a0c1f3957"


def missing_ui_deps() -> str | None:
    if not (os.path.isfile(CHROMIUM) and os.access(CHROMIUM, os.X_OK)):
        return f"{CHROMIUM} not found: run scripts/install_ui_deps.sh (installs Debian's chromium package)"
    if importlib.util.find_spec("playwright") is None:
        return "playwright is not installed: run scripts/install_ui_deps.sh (or install the dev extra)"
    return None


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "ui: real-browser tests of the connection form (Chromium + Playwright; make ui-test)"
    )


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    """On a failure: a screenshot of the page and the tails of every process's log in the report."""
    report = yield
    if not report.failed:
        return report
    funcargs: dict[str, Any] = getattr(item, "funcargs", {})
    ui = funcargs.get("ui")
    if ui is not None:
        try:
            shot = Path(tempfile.gettempdir()) / f"jogg-ui-failure-{item.name}.png"
            ui.page.screenshot(path=str(shot), full_page=True)
            report.sections.append(("jogg ui: page at failure", f"{ui.page.url}\nscreenshot: {shot}"))
        except Exception as error:
            report.sections.append(("jogg ui: page at failure", f"no screenshot: {error}"))
    stack = funcargs.get("ui_stack")
    if isinstance(stack, UIStack):
        report.sections.append(("jogg ui: process logs", stack.diagnostics()))
    return report


@pytest.fixture(scope="module")
def ui_stack(request: pytest.FixtureRequest) -> Iterator[UIStack]:
    """Fake Jogg server + ``airflow db migrate`` + ``airflow api-server`` on free loopback ports."""
    reason = missing_ui_deps()
    if reason:
        pytest.skip(reason)
    stack = UIStack(api_key=UI_API_KEY)
    failed_before = request.session.testsfailed
    try:
        try:
            stack.start()
        except Exception as error:
            raise AssertionError(
                f"the UI test stack did not start: {error}\n{stack.diagnostics()}"
            ) from error
        yield stack
    finally:
        stack.stop()
        if request.session.testsfailed == failed_before:
            stack.cleanup()
        else:
            print(f"\njogg ui: logs kept in {stack.root}")


@pytest.fixture(scope="module")
def browser_context(tmp_path_factory: pytest.TempPathFactory, ui_stack: UIStack) -> Iterator[Any]:
    """Debian's Chromium with a fresh user-data-dir; closed by Playwright, pass or fail."""
    from playwright.sync_api import expect, sync_playwright

    expect.set_options(timeout=30_000)  # a loaded 2-core machine
    user_data_dir = tmp_path_factory.mktemp("chromium-profile")
    with sync_playwright() as playwright:
        context = playwright.chromium.launch_persistent_context(
            str(user_data_dir),
            executable_path=CHROMIUM,
            headless=True,
            args=CHROMIUM_FLAGS,
            viewport={"width": 1280, "height": 900},
        )
        context.set_default_timeout(30_000)
        try:
            yield context
        finally:
            context.close()


@pytest.fixture
def ui(browser_context: Any, ui_stack: UIStack) -> Iterator[Any]:
    from tests.ui.pages import ConnectionsUI, NetworkLog

    page = browser_context.new_page()
    network = NetworkLog(ui_stack.airflow_url)
    page.on("response", network.record)
    try:
        yield ConnectionsUI(page, ui_stack.airflow_url, network)
    finally:
        page.close()


@pytest.fixture(scope="session")
def screenshot_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    configured = os.environ.get("JOGG_UI_SCREENSHOT_DIR")
    if configured:
        path = Path(configured)
        path = path if path.is_absolute() else ROOT / path
        path.mkdir(parents=True, exist_ok=True)
        return path
    return tmp_path_factory.mktemp("screenshots")
