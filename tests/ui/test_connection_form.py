"""The Jogg connection in Airflow 3's real UI: the form, saving, reading back, the Test button.

Runs against ``airflow api-server`` (simple auth manager, every user an admin,
``[core] test_connection = Enabled``) and a fake Jogg server, in headless Chromium driven by
Playwright. ``make ui-test``; screenshots for the docs with ``make ui-screenshots``.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

import pytest

from airflow_provider_jogg.connection import (
    DEFAULT_MAX_REQUESTS_PER_SECOND,
    DEFAULT_RATE_LIMIT_WAIT,
    JoggConnectionConfig,
)
from airflow_provider_jogg.get_provider_info import CONN_FIELDS, UI_FIELD_BEHAVIOUR
from airflow_provider_jogg.protocol import WHOAMI_PATH
from tests.ui.conftest import UI_API_KEY, WRONG_API_KEY, missing_ui_deps

try:
    from playwright.sync_api import expect
except ImportError:  # the module is skipped below, with the reason
    expect = None  # type: ignore[assignment]

if TYPE_CHECKING:
    from pathlib import Path

    from tests.ui.pages import ConnectionsUI
    from tests.ui.stack import UIStack

_MISSING = missing_ui_deps()
pytestmark = [pytest.mark.ui, pytest.mark.skipif(_MISSING is not None, reason=_MISSING or "")]

PLATFORM = "airflow-ui-test"
TIMEOUT_TEXT = "7.5"


def form_extras() -> dict[str, tuple[str, dict[str, Any], str]]:
    """The conn-fields the tests type into: an API platform and a request timeout."""
    return {
        "api_platform": (
            CONN_FIELDS["api_platform"]["label"],
            CONN_FIELDS["api_platform"]["schema"],
            PLATFORM,
        ),
        "timeout": (CONN_FIELDS["timeout"]["label"], CONN_FIELDS["timeout"]["schema"], TIMEOUT_TEXT),
    }


def add_connection(ui: ConnectionsUI, stack: UIStack, conn_id: str, key: str = UI_API_KEY) -> None:
    ui.add_jogg_connection(conn_id=conn_id, host=stack.fake_url, api_key=key, extras=form_extras())


def whoami_calls(stack: UIStack) -> list[dict[str, Any]]:
    return [r for r in stack.fake_requests() if r["path"].endswith(WHOAMI_PATH)]


def test_form_shows_jogg_labels_placeholders_and_conn_fields(ui: ConnectionsUI) -> None:
    dlg = ui.open_add_form()
    dlg.get_by_role("textbox", name="Connection ID").fill("jogg_ui_fields")
    ui.choose_jogg(dlg)

    # relabeling + placeholders from ui-field-behaviour
    placeholders = UI_FIELD_BEHAVIOUR["placeholders"]
    host = dlg.get_by_role("textbox", name="Base URL")
    expect(host).to_be_visible()
    expect(host).to_have_attribute("name", "host")
    expect(host).to_have_attribute("placeholder", placeholders["host"])
    assert placeholders["host"] == "https://api.jogg.ai"
    key = dlg.get_by_role("textbox", name="API Key")
    expect(key).to_have_attribute("name", "password")
    expect(key).to_have_attribute("type", "password")
    expect(key).to_have_attribute("placeholder", placeholders["password"])
    assert placeholders["password"] == "your JoggAI API key"

    # hidden-fields: no input, no label; and Airflow's own labels were replaced
    assert set(UI_FIELD_BEHAVIOUR["hidden-fields"]) == {"schema", "port", "login"}
    for name in ("schema", "port", "login"):
        expect(dlg.locator(f'[name="{name}"]')).to_have_count(0)
    for label in ("Schema", "Port", "Login", "Host", "Password"):
        expect(dlg.get_by_text(label, exact=True)).to_have_count(0)
    expect(dlg.get_by_role("spinbutton", name="Port")).to_have_count(0)

    # conn-fields: label, widget of the schema's type with its default, description
    ui.expand(dlg, "Extra Fields")
    expected_labels = {
        "api_platform": "API platform",
        "timeout": "Request timeout (seconds)",
        "max_retries": "Max retries",
        "retry_backoff": "Retry backoff (seconds)",
        "rate_limit_wait": "Rate limit wait (seconds)",
        "max_requests_per_second": "Max requests per second",
        "allow_insecure_http": "Allow plain http:// to non-loopback hosts",
        "allow_private_media_urls": "Allow media URLs on private addresses",
    }
    assert {k: v["label"] for k, v in CONN_FIELDS.items()} == expected_labels
    for spec in CONN_FIELDS.values():
        group = ui.field(dlg, spec["label"])
        expect(group).to_be_visible()
        expect(group).to_contain_text(spec["description"])
        widget = ui.conn_field_widget(dlg, spec["label"], spec["schema"])
        expect(widget).to_be_visible()
        default = spec["schema"].get("default")
        if isinstance(default, bool):
            expect(widget).to_be_checked(checked=default)
        elif default is not None:
            expect(widget).to_have_value(str(default))
        else:
            expect(widget).to_have_value("")


def test_add_connection_through_the_form_and_read_it_back(
    ui: ConnectionsUI, ui_stack: UIStack, screenshot_dir: Path
) -> None:
    conn_id = "jogg_ui_form"
    dlg = ui.open_add_form()
    ui.fill_jogg_form(dlg, conn_id=conn_id, host=ui_stack.fake_url, api_key=UI_API_KEY, extras=form_extras())
    ui.page.set_viewport_size({"width": 1280, "height": 1200})
    # the sections are an accordion (one open at a time): one picture each
    dlg.get_by_role("heading", name="Add Connection").click()  # no focus ring in the picture
    dlg.screenshot(path=str(screenshot_dir / "connection-form-extra-fields.png"), animations="disabled")
    ui.expand(dlg, "Standard Fields")
    key = dlg.get_by_role("textbox", name="API Key")
    expect(key).to_have_value(UI_API_KEY)
    expect(key).to_have_attribute("type", "password")  # dots on screen
    expect(dlg.get_by_role("textbox", name="Base URL")).to_have_value(ui_stack.fake_url)
    dlg.screenshot(path=str(screenshot_dir / "connection-form.png"), animations="disabled")
    ui.save(dlg, method="POST")
    expect(ui.toast("Create Connection Request Submitted")).to_be_visible()

    # the REST API: host and extras as entered; the password masked
    got = ui_stack.get_connection(conn_id)
    assert got["conn_type"] == "jogg"
    assert got["host"] == ui_stack.fake_url
    assert got["password"] == "***", "the REST API must not return the key"
    assert (got["schema"], got["port"], got["login"]) == (None, None, None)
    extra = json.loads(got["extra"])
    # what Airflow 3.3's form stores: every conn-field under its bare name, untouched ones at their
    # schema default (the hook's own default), numbers as JSON numbers (not "extra__jogg__"-prefixed,
    # not strings)
    assert extra == {
        "api_platform": PLATFORM,
        "timeout": 7.5,
        "max_retries": 3,
        "retry_backoff": 1,
        "rate_limit_wait": DEFAULT_RATE_LIMIT_WAIT,
        "max_requests_per_second": DEFAULT_MAX_REQUESTS_PER_SECOND,
        "allow_insecure_http": False,
        "allow_private_media_urls": False,
    }
    assert not any(k.startswith("extra__") for k in extra)

    # the metadata DB (decrypted): the key as typed
    stored = ui_stack.stored_connection(conn_id)
    assert stored["password"] == UI_API_KEY
    assert stored["host"] == ui_stack.fake_url

    # and the provider reads it as meant
    config = JoggConnectionConfig.from_connection(conn_id, host=got["host"], password=UI_API_KEY, extra=extra)
    assert config.base_url == ui_stack.fake_url
    assert config.api_platform == PLATFORM
    assert config.timeout == 7.5
    assert config.max_retries == 3

    # never shown again: the list, then the edit form (with "Show value" pressed)
    ui.open_list()
    expect(ui.row(conn_id)).to_contain_text(ui_stack.fake_url)
    ui.assert_not_shown(UI_API_KEY, "connection list")
    dlg = ui.open_edit_form(conn_id)
    key = dlg.get_by_role("textbox", name="API Key")
    expect(key).to_have_value("***")
    dlg.get_by_role("button", name="Show value").click()
    expect(key).to_have_attribute("type", "text")
    expect(key).to_have_value("***")
    ui.expand(dlg, "Extra Fields")
    expect(
        ui.conn_field_widget(dlg, "Request timeout (seconds)", CONN_FIELDS["timeout"]["schema"])
    ).to_have_value(TIMEOUT_TEXT)
    ui.assert_not_shown(UI_API_KEY, "edit form")
    assert UI_API_KEY not in ui_stack.all_logs(), "the key is in a process log"


def test_test_button_reports_success(ui: ConnectionsUI, ui_stack: UIStack, screenshot_dir: Path) -> None:
    conn_id = "jogg_ui_test_ok"
    add_connection(ui, ui_stack, conn_id)
    before = len(whoami_calls(ui_stack))

    # on Airflow <= 3.3.2 the first click shows "Bad Request" (apache/airflow#73298): pictured too
    answer = ui.click_test(conn_id, bug_screenshot=screenshot_dir / "connection-test-airflow-3.3.2-bug.png")

    assert answer["status"] is True, answer
    assert "connected" in answer["message"]
    assert answer["message"] == f"Connection successfully tested: connected to {ui_stack.fake_url} as demo"
    toast = ui.toast("Test Connection Successful")
    expect(toast).to_be_visible()
    expect(toast).to_contain_text(f"connected to {ui_stack.fake_url}")
    ui.page.screenshot(path=str(screenshot_dir / "connection-test-ok.png"), animations="disabled")
    # the hook ran in the api-server with the stored key and the form's extras
    calls = whoami_calls(ui_stack)[before:]
    assert calls, "the fake Jogg server saw no whoami"
    assert calls[-1]["headers"].get("x-api-key") == "<valid>"
    assert calls[-1]["headers"].get("x-api-platform") == PLATFORM
    ui.assert_not_shown(UI_API_KEY, "after a successful test")


def test_test_button_reports_a_wrong_key(ui: ConnectionsUI, ui_stack: UIStack, screenshot_dir: Path) -> None:
    conn_id = "jogg_ui_wrong_key"
    add_connection(ui, ui_stack, conn_id)
    # a user edits the key (to a wrong one) in the edit form and saves
    dlg = ui.open_edit_form(conn_id)
    ui.assert_not_shown(UI_API_KEY, "edit form")
    dlg.get_by_role("textbox", name="API Key").fill(WRONG_API_KEY)
    ui.save(dlg, method="PATCH")
    before = len(whoami_calls(ui_stack))

    answer = ui.click_test(conn_id)

    assert answer["status"] is False, answer
    message = answer["message"]
    assert "10105" in message, message
    assert "API key" in message, message
    assert WRONG_API_KEY not in message
    toast = ui.toast("Test Connection Failed")
    expect(toast).to_be_visible()
    expect(toast).to_contain_text("rejected the API key")
    expect(toast).to_contain_text("10105")
    ui.page.screenshot(path=str(screenshot_dir / "connection-test-failed.png"), animations="disabled")
    calls = whoami_calls(ui_stack)[before:]
    assert calls, "the fake Jogg server saw no whoami"
    assert calls[-1]["headers"].get("x-api-key") == "<invalid>"
    ui.open_list()
    ui.assert_not_shown(WRONG_API_KEY, "connection list after a failed test")
