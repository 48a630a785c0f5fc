"""Page helpers for Airflow 3.3's React UI: Admin -> Connections, the Add/Edit dialog, the Test button.

Selectors are accessible roles and names (what a user sees), never CSS classes or generated ids:

- the list: ``row`` filtered by its ``cell`` with the connection id; row actions are buttons named
  "Test Connection", "Edit Connection", "Delete Connection";
- the dialog: ``dialog`` with heading "Add Connection"/"Edit Connection"; the type picker is the
  ``combobox`` "Connection Type" with ``option`` "JoggAI" (the provider's ``hook-name``);
- standard fields are ``textbox``es named by their label ("Base URL", "API Key": the provider's
  relabeling); the ``name`` attribute (``host``, ``password``, ``port``...) is only used to prove a
  hidden field is absent;
- conn-fields: each is a ``group`` holding its label text, its widget and its description. The
  widget is found inside the group by role: ``textbox`` (string), ``spinbutton`` (number/integer),
  ``checkbox`` (boolean). (A string field's ``<label for>`` does not point at its ``<input>`` in
  3.3.2, so ``get_by_label`` cannot find it; the group works for every type.)
- notifications are ``status`` elements in the "Notifications" region, found by title.
"""

from __future__ import annotations

import contextlib
import json
import re
import warnings
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from playwright.sync_api import expect

if TYPE_CHECKING:
    from pathlib import Path

    from playwright.sync_api import Locator, Page, Request, Response, Route

JOGG_TYPE_NAME = "JoggAI"
TEST_ENDPOINT = "/api/v2/connections/test"
#: Airflow <= 3.3.2 answers this when the list's Test button sends ``port: 0`` for a connection that
#: has no port (the UI sends ``Number(null)``): apache/airflow#73298, fixed after 3.3.2.
PORT_ZERO_BUG = "The host or port to test differs from the stored connection"
WIDGET_ROLE = {"string": "textbox", "number": "spinbutton", "integer": "spinbutton", "boolean": "checkbox"}


class AirflowTestButtonBug(UserWarning):
    """The Airflow UI's Test button hit apache/airflow#73298; the test applied the upstream fix's effect."""


def widget_role(schema: dict[str, Any]) -> str:
    kinds = schema.get("type")
    kinds = [kinds] if isinstance(kinds, str) else list(kinds or [])
    main = next(k for k in kinds if k != "null")
    return WIDGET_ROLE[main]


@dataclass
class NetworkLog:
    """Bodies of every answer the browser got from the api-server (to prove a key never came back)."""

    base_url: str
    bodies: list[tuple[str, bytes]] = field(default_factory=list)

    def record(self, response: Response) -> None:
        if not response.url.startswith(self.base_url) or "/static/" in response.url:
            return
        with contextlib.suppress(Exception):  # redirects and aborted requests have no body
            self.bodies.append((f"{response.request.method} {response.url}", response.body()))

    def containing(self, secret: str) -> list[str]:
        return [where for where, body in self.bodies if secret.encode() in body]


@dataclass
class ConnectionsUI:
    page: Page
    base_url: str
    network: NetworkLog

    # --- navigation ---
    def open_list(self) -> None:
        self.page.goto(self.base_url + "/connections")
        expect(self.page.get_by_role("button", name="Add Connection")).to_be_visible()

    def row(self, conn_id: str) -> Locator:
        return self.page.get_by_role("row").filter(
            has=self.page.get_by_role("cell", name=conn_id, exact=True)
        )

    def dialog(self, heading: str) -> Locator:
        dlg = self.page.get_by_role("dialog").filter(has=self.page.get_by_role("heading", name=heading))
        expect(dlg).to_be_visible()
        return dlg

    def open_add_form(self) -> Locator:
        self.open_list()
        self.page.get_by_role("button", name="Add Connection").click()
        return self.dialog("Add Connection")

    def choose_jogg(self, dlg: Locator) -> None:
        combo = dlg.get_by_role("combobox", name="Connection Type")
        combo.fill(JOGG_TYPE_NAME)
        self.page.get_by_role("option", name=JOGG_TYPE_NAME, exact=True).click()
        # the type's fields render once hook_meta is applied
        expect(dlg.get_by_role("textbox", name="API Key")).to_be_visible()

    def expand(self, dlg: Locator, section: str) -> Locator:
        """Open an accordion section ("Standard Fields", "Extra Fields", "Extra Fields JSON")."""
        trigger = dlg.get_by_role("button", name=section, exact=True)
        if trigger.get_attribute("aria-expanded") != "true":
            trigger.click()
        expect(trigger).to_have_attribute("aria-expanded", "true")
        return trigger

    def field(self, dlg: Locator, label: str) -> Locator:
        """The form group of one field, by the label text the user sees."""
        group = dlg.get_by_role("group").filter(has=self.page.get_by_text(label, exact=True))
        expect(group).to_have_count(1)
        return group

    def conn_field_widget(self, dlg: Locator, label: str, schema: dict[str, Any]) -> Locator:
        return self.field(dlg, label).get_by_role(widget_role(schema))  # type: ignore[arg-type]

    # --- actions ---
    def fill_jogg_form(
        self,
        dlg: Locator,
        *,
        conn_id: str,
        host: str,
        api_key: str,
        extras: dict[str, tuple[str, dict[str, Any], str]],
    ) -> None:
        """``extras``: conn-field name -> (label, schema, text to type)."""
        dlg.get_by_role("textbox", name="Connection ID").fill(conn_id)
        self.choose_jogg(dlg)
        dlg.get_by_role("textbox", name="Base URL").fill(host)
        dlg.get_by_role("textbox", name="API Key").fill(api_key)
        self.expand(dlg, "Extra Fields")
        for label, schema, text in extras.values():
            widget = self.conn_field_widget(dlg, label, schema)
            if widget_role(schema) == "checkbox":
                widget.set_checked(text.lower() == "true", force=True)
            else:
                widget.fill(text)
                widget.press("Tab")  # number inputs commit their value on blur

    def save(self, dlg: Locator, *, method: str) -> Response:
        """Click Save and wait for the api-server's answer and the dialog to close."""
        with self.page.expect_response(
            lambda r: "/api/v2/connections" in r.url and r.request.method == method
        ) as answer:
            dlg.get_by_role("button", name="Save").click()
        response = answer.value
        assert response.ok, f"Save ({method}) failed: {response.status} {response.text()}"
        expect(dlg).to_be_hidden()
        return response

    def add_jogg_connection(self, **form: Any) -> None:
        dlg = self.open_add_form()
        self.fill_jogg_form(dlg, **form)
        self.save(dlg, method="POST")
        expect(self.row(form["conn_id"])).to_be_visible()

    def open_edit_form(self, conn_id: str) -> Locator:
        self.open_list()
        self.row(conn_id).get_by_role("button", name="Edit Connection").click()
        dlg = self.dialog("Edit Connection")
        expect(dlg.get_by_role("textbox", name="Connection ID")).to_have_value(conn_id)
        expect(dlg.get_by_role("textbox", name="API Key")).to_be_visible()
        return dlg

    def toast(self, title: str) -> Locator:
        region = self.page.get_by_role("region", name=re.compile("Notifications"))
        return region.get_by_role("status").filter(has_text=title)

    def dismiss_toasts(self) -> None:
        region = self.page.get_by_role("region", name=re.compile("Notifications"))
        statuses = region.get_by_role("status")
        for i in range(statuses.count()):
            close = statuses.nth(i).get_by_role("button")
            if close.count():
                close.first.click()
        expect(statuses).to_have_count(0, timeout=15_000)

    def click_test(self, conn_id: str, *, bug_screenshot: Path | None = None) -> dict[str, Any]:
        """Click the row's Test button; return the api-server's JSON answer ({status, message}).

        On an Airflow with apache/airflow#73298 unfixed (3.3.2 and older 3.3.x), the button sends
        ``"port": 0`` for a connection without a port and the api-server refuses with 400 before the
        hook runs. That exact refusal is recognised (reported as an :class:`AirflowTestButtonBug`
        warning, pictured in ``bug_screenshot`` if given); the click is then repeated with ``port``
        left out of the request body, which is what the upstream fix makes the api-server do with
        ``0``. Every other field the UI sends (the masked ``***`` password, host, extra) is untouched,
        so the api-server still merges the stored key, and the hook runs in the api-server as on a
        fixed Airflow.
        """
        response = self._click_test_once(conn_id)
        if response.status == 400 and PORT_ZERO_BUG in response.text():
            sent = json.loads(response.request.post_data or "{}")
            assert sent.get("port") == 0, f"400 from the Test button, but not the known port bug: {sent}"
            warnings.warn(
                AirflowTestButtonBug(
                    "The Airflow UI's Test button is broken for connections without a port "
                    "(apache/airflow#73298: it sends port 0, the api-server answers 400 'Bad Request'); "
                    "the test re-sent the click without port to exercise JoggHook.test_connection()."
                ),
                stacklevel=2,
            )
            expect(self.toast("Test Connection Failed")).to_contain_text("Bad Request")
            if bug_screenshot is not None:
                self.page.screenshot(path=str(bug_screenshot), animations="disabled")
            self.dismiss_toasts()
            self.page.route("**" + TEST_ENDPOINT, _drop_port_zero)
            try:
                response = self._click_test_once(conn_id)
            finally:
                self.page.unroute("**" + TEST_ENDPOINT, _drop_port_zero)
        assert response.status == 200, f"Test button: {response.status} {response.text()}"
        return response.json()

    def _click_test_once(self, conn_id: str) -> Response:
        def is_test_call(r: Response) -> bool:
            return r.url.endswith(TEST_ENDPOINT) and r.request.method == "POST"

        with self.page.expect_response(is_test_call) as answer:
            self.row(conn_id).get_by_role("button", name="Test Connection").click()
        return answer.value

    # --- secrets ---
    def assert_not_shown(self, secret: str, where: str) -> None:
        html = self.page.content()
        assert secret not in html, f"the API key is in the page's HTML ({where})"
        assert secret not in self.page.locator("body").inner_text(), f"the API key is visible ({where})"
        leaked = self.network.containing(secret)
        assert not leaked, f"the api-server sent the API key back to the browser ({where}): {leaked}"


def _drop_port_zero(route: Route, request: Request) -> None:
    body = json.loads(request.post_data or "{}")
    if body.get("port") == 0:
        del body["port"]
    route.continue_(post_data=json.dumps(body))
