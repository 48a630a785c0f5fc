"""airflow_provider_jogg.events: the trigger event's one shape, and its validation."""

from __future__ import annotations

import json

import pytest

from airflow_provider_jogg import exceptions as exc
from airflow_provider_jogg.events import EventStatus, error_event, parse_event, result_event, timeout_event
from airflow_provider_jogg.results import LipSyncResult


def test_event_round_trips():
    ok = LipSyncResult(task_id="t", status="success", result_url="https://r")
    parsed = parse_event(json.loads(json.dumps(result_event(ok))))
    assert parsed.status is EventStatus.SUCCESS
    assert parsed.result == ok

    bad = LipSyncResult(task_id="t", status="failed", error_message="boom")
    assert parse_event(result_event(bad)).status is EventStatus.FAILED

    timeout = parse_event(timeout_event("t", 1700000000.0))
    assert timeout.status is EventStatus.TIMEOUT
    assert "1700000000" in timeout.message

    err = parse_event(
        error_event("t", exc.JoggAuthError("bad key", http_status=401, code=10105, jogg_message="no"))
    )
    assert isinstance(err.error, exc.JoggAuthError)
    assert (err.error.http_status, err.error.code, err.error.jogg_message) == (401, 10105, "no")

    cfg = parse_event(error_event("t", exc.JoggConfigError("conn missing")))
    assert isinstance(cfg.error, exc.JoggConfigError)
    assert "conn missing" in str(cfg.error)


def test_event_payload_is_deterministic():
    ok = LipSyncResult(task_id="t", status="success", result_url="https://r")
    assert result_event(ok) == result_event(ok)
    assert timeout_event("t", 5.0) == timeout_event("t", 5.0)


@pytest.mark.parametrize(
    "event",
    [
        None,
        "success",
        {},
        {"status": "done", "task_id": "t"},
        {"status": "success"},
        {"status": "success", "task_id": "t"},
        {"status": "success", "task_id": "t", "result": {"task_id": "t", "status": "processing"}},
        {"status": "success", "task_id": "t", "result": {"task_id": "other", "status": "success"}},
        {"status": "error", "task_id": "t", "error": {"type": "ValueError"}},
        {"status": "error", "task_id": "t"},
    ],
    ids=lambda e: json.dumps(e)[:40],
)
def test_invalid_events_are_errors_never_success(event):
    with pytest.raises(exc.JoggEventError):
        parse_event(event)
