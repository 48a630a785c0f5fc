"""The fake server's own control routes, ``/_fake/...``: what tests and shells use to inspect and steer it.

No key is needed; these requests are neither recorded nor ever faulted.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any
from urllib.parse import unquote

from airflow_provider_jogg.api_paths import STATUS_PATH
from airflow_provider_jogg.testing.server.faults import Fault
from airflow_provider_jogg.testing.server.responses import NOT_FOUND, Response, envelope, json_response, ok

if TYPE_CHECKING:
    from airflow_provider_jogg.testing.server import FakeJoggServer

__all__ = ["admin_response", "counts"]


def counts(fake: FakeJoggServer) -> dict[str, Any]:
    """Exact counts for a fake run as a subprocess: requests (also those dropped from the detailed
    log by ``max_recorded_requests``) by route and by status, and tasks by status."""
    tasks: dict[str, int] = {}
    for task in fake.tasks.values():
        tasks[task["status"]] = tasks.get(task["status"], 0) + 1
    return {
        "requests": fake.count(),
        "recorded": fake.count() - fake.dropped_requests,
        "dropped": fake.dropped_requests,
        "creates": fake.create_count,
        "status_polls": fake.count("GET", STATUS_PATH.format(task_id="")),
        "by_status": {str(status): number for status, number in fake.counts_by_status().items()},
        "tasks": tasks,
    }


def admin_response(fake: FakeJoggServer, method: str, path: str, body: Any, body_ok: bool) -> Response:
    """Answer ``/_fake/requests``, ``/_fake/counts``, ``/_fake/tasks[/{id}]``, ``/_fake/faults`` and
    ``/_fake/reset``."""
    if path == "/_fake/requests" and method == "GET":
        return json_response(200, [record.to_dict() for record in fake.requests])
    if path == "/_fake/counts" and method == "GET":
        return json_response(200, counts(fake))
    if path == "/_fake/tasks" and method == "GET":
        return json_response(200, fake.tasks)
    if path == "/_fake/faults":
        if method == "GET":
            return json_response(200, [fault.to_dict() for fault in fake.faults])
        if method == "DELETE":
            fake.clear_faults()
            return ok(None)
        if method == "POST":
            if not body_ok:
                return json_response(400, envelope(40000, "the body must be a JSON fault spec"))
            try:
                fault = Fault.from_dict(body)
            except ValueError as exc:
                return json_response(400, envelope(40000, str(exc)))
            fake.add_fault(fault)
            return ok({"fault": fault.to_dict(), "active_faults": len(fake.faults)})
    if path == "/_fake/reset" and method == "POST":
        fake.reset()
        return ok(None)
    if path.startswith("/_fake/tasks/") and method == "POST":
        task_id = unquote(path[len("/_fake/tasks/") :])
        status = body.get("status") if body_ok and isinstance(body, dict) else None
        if not isinstance(status, str) or not status:
            return json_response(400, envelope(40000, "status is required"))
        error_message = body.get("error_message")
        try:
            fake.set_task(task_id, status, error_message if isinstance(error_message, str) else None)
        except KeyError:
            return json_response(200, envelope(10104, "Record not found"))
        return ok(fake.tasks[task_id])
    return NOT_FOUND
