"""airflow_provider_jogg.results: a status answer read into a LipSyncResult; never success by default."""

from __future__ import annotations

import json

import pytest

from airflow_provider_jogg import exceptions as exc
from airflow_provider_jogg.results import JoggStatus, LipSyncResult, parse_lip_sync_result


def test_result_parsing_full():
    data = {
        "task_id": "t1",
        "status": "SUCCESS",
        "created_at": 1741500000,
        "completed_at": 1741500030,
        "data": {"result_url": "https://r/v.mp4", "cover_url": "https://r/c.jpg", "duration_seconds": 12.5},
        "error": None,
    }
    result = parse_lip_sync_result(data, "t1")
    assert result == LipSyncResult(
        task_id="t1",
        status="success",
        result_url="https://r/v.mp4",
        cover_url="https://r/c.jpg",
        duration_seconds=12.5,
        created_at=1741500000,
        completed_at=1741500030,
    )
    assert result.succeeded
    assert result.is_terminal
    assert json.loads(json.dumps(result.to_dict())) == result.to_dict()


def test_failed_result_keeps_error_message():
    result = parse_lip_sync_result({"status": "failed", "error": {"message": "audio fetch failed"}}, "t9")
    assert result.failed
    assert result.task_id == "t9"
    assert result.error_message == "audio fetch failed"


@pytest.mark.parametrize("returned", ["another-task", "T-1X", 12, ["t-1"]])
def test_an_answer_about_another_task_is_never_this_tasks_result(returned):
    # a caching proxy's mix-up: transient, so a wait asks again instead of ending with the wrong result
    data = {"task_id": returned, "status": "success", "data": {"result_url": "https://x/other.mp4"}}
    with pytest.raises(exc.JoggMalformedResponseError) as info:
        parse_lip_sync_result(data, "t-1")
    assert info.value.transient
    assert "t-1" in str(info.value)
    assert "another task" in str(info.value)


@pytest.mark.parametrize("returned", ["t-1", "T-1", None, ""], ids=["same", "other-case", "none", "empty"])
def test_an_answer_about_this_task_keeps_the_id_asked_for(returned):
    result = parse_lip_sync_result({"task_id": returned, "status": "processing"}, "t-1")
    assert result.task_id == "t-1"


@pytest.mark.parametrize("data", [{"task_id": "t"}, {"status": ""}, {"status": 3}, None, []])
def test_missing_status_is_never_success(data):
    with pytest.raises(exc.JoggResponseError):
        parse_lip_sync_result(data, "t")


def test_statuses():
    assert JoggStatus.is_terminal("success")
    assert JoggStatus.is_terminal("failed")
    assert not JoggStatus.is_terminal("pending")
    assert not JoggStatus.is_terminal("processing")
    assert not JoggStatus.is_terminal("queued")
    assert not JoggStatus.is_known("queued")
