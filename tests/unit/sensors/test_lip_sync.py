"""LipSyncSensor: deferral, every event, poke and reschedule modes, against the fake server."""

from __future__ import annotations

import datetime
import time

import pytest

from airflow_provider_jogg import exceptions as exc
from airflow_provider_jogg._compat import (
    AirflowFailException,
    AirflowRescheduleException,
    AirflowSensorTimeout,
    TaskDeferred,
)
from airflow_provider_jogg.completion import DEFAULT_MIN_DEFERRAL_SECONDS
from airflow_provider_jogg.events import error_event, result_event, timeout_event
from airflow_provider_jogg.protocol import STATUS_PATH
from airflow_provider_jogg.results import LipSyncResult
from airflow_provider_jogg.sensors.lip_sync import DEFERRAL_GRACE, LipSyncSensor
from airflow_provider_jogg.testing import FAILURE_MESSAGE, Fault
from airflow_provider_jogg.triggers.lip_sync import LipSyncTrigger
from tests.conftest import TEST_API_KEY

STATUS = STATUS_PATH.format(task_id="")


def sensor(**kwargs) -> LipSyncSensor:
    kwargs.setdefault("task_id", "wait")
    kwargs.setdefault("poke_interval", 0.05)
    return LipSyncSensor(**kwargs)


def processing_task(server) -> str:
    task_id = server.add_task("https://m.example/v.mp4", "https://m.example/a.mp3")
    server.set_task(task_id, "processing")
    return task_id


def test_defaults_and_templates():
    s = LipSyncSensor(task_id="w", jogg_task_id="{{ ti.xcom_pull(task_ids='lip_sync') }}")
    assert s.deferrable is True
    assert s.poke_interval == 10
    assert s.timeout == 3 * 60 * 60
    assert s.jogg_conn_id == "jogg_default"
    assert set(s.template_fields) == {"jogg_task_id", "jogg_conn_id", "output_path", "cover_output_path"}
    # a Jinja string is kept as is until rendering
    assert s.jogg_task_id == "{{ ti.xcom_pull(task_ids='lip_sync') }}"


def test_deferrable_ignores_airflow_default_deferrable(monkeypatch):
    monkeypatch.setenv("AIRFLOW__OPERATORS__DEFAULT_DEFERRABLE", "False")
    assert LipSyncSensor(task_id="w", jogg_task_id="t").deferrable is True


@pytest.mark.parametrize("name", ["poke_interval", "timeout"])
@pytest.mark.parametrize(
    "value",
    [0, -1, float("nan"), float("inf"), True, datetime.timedelta(0)],
    ids=["zero", "negative", "nan", "inf", "bool", "zero-timedelta"],
)
def test_bad_wait_seconds_are_refused_at_construction(name, value):
    with pytest.raises(exc.JoggConfigError, match=name) as info:
        sensor(jogg_task_id="t", **{name: value})
    assert isinstance(info.value, AirflowFailException)


def test_wait_seconds_accept_fractions_and_timedeltas():
    s = sensor(jogg_task_id="t", poke_interval=datetime.timedelta(seconds=0.5), timeout=0.3)
    assert (s.poke_interval, s.timeout) == (0.5, 0.3)


# --- deferrable ----------------------------------------------------------------------------------------
def test_defers_with_exact_trigger(jogg_conn):
    task_id = processing_task(jogg_conn)
    s = sensor(jogg_task_id=task_id, poke_interval=0.25, timeout=600)
    before = time.time()
    with pytest.raises(TaskDeferred) as info:
        s.execute({})
    deferred = info.value
    assert deferred.method_name == "execute_complete"
    assert deferred.timeout == datetime.timedelta(seconds=600 + DEFERRAL_GRACE)
    trigger = deferred.trigger
    assert isinstance(trigger, LipSyncTrigger)
    kwargs = trigger.serialize()[1]
    assert kwargs["jogg_task_id"] == task_id
    assert kwargs["jogg_conn_id"] == "jogg_default"
    assert kwargs["poll_interval"] == 0.25  # poke_interval used as given, no hidden minimum
    assert before + 600 <= kwargs["end_time"] <= time.time() + 600
    assert jogg_conn.count(path=STATUS) == 1  # one check before deferring


def test_already_succeeded_returns_without_deferring(jogg_conn):
    task_id = jogg_conn.add_task("https://m.example/v.mp4", "https://m.example/a.mp3")
    jogg_conn.set_task(task_id, "success")
    result = sensor(jogg_task_id=task_id).execute({})
    assert result["task_id"] == task_id
    assert result["status"] == "success"
    assert result["result_url"].endswith(f"/files/{task_id}/result.mp4")
    for key in ("cover_url", "duration_seconds", "created_at", "completed_at"):
        assert key in result


def test_already_failed_fails_without_retries(jogg_conn):
    task_id = jogg_conn.add_task("https://m.example/fail.mp4", "https://m.example/a.mp3")
    jogg_conn.set_task(task_id, "failed", error_message="lips not found")
    with pytest.raises(exc.JoggLipSyncFailedError) as info:
        sensor(jogg_task_id=task_id).execute({})
    assert isinstance(info.value, AirflowFailException)
    assert task_id in str(info.value)
    assert "lips not found" in str(info.value)


@pytest.mark.parametrize("fault", [Fault("status", status=503), Fault("reset")], ids=["503", "reset"])
def test_transient_first_check_still_defers_after_one_request(jogg_conn, fault):
    task_id = processing_task(jogg_conn)
    fault.path = STATUS
    jogg_conn.add_fault(fault)
    with pytest.raises(TaskDeferred) as info:
        sensor(jogg_task_id=task_id).execute({})
    assert isinstance(info.value.trigger, LipSyncTrigger)
    assert jogg_conn.count(path=STATUS) == 1  # no retries in the worker slot


def test_rate_limited_first_check_waits_retry_after_in_the_triggerer(jogg_conn):
    task_id = processing_task(jogg_conn)
    jogg_conn.add_fault(Fault("status", status=429, path=STATUS, retry_after="30"))
    s = sensor(jogg_task_id=task_id)
    before = time.time()
    with pytest.raises(TaskDeferred) as info:
        s.execute({})
    # no short deferral of our own (a DateTimeTrigger firing within seconds of the deferral meets
    # Airflow's deferral race): straight into the real wait, which polls only after Retry-After
    assert isinstance(info.value.trigger, LipSyncTrigger)
    assert info.value.method_name == "execute_complete"
    kwargs = info.value.trigger.serialize()[1]
    assert before + 30 <= kwargs["not_before"] <= time.time() + 30
    assert kwargs["end_time"] <= time.time() + s.timeout
    # Airflow's own deferral timeout leaves room for both
    assert info.value.timeout >= datetime.timedelta(seconds=s.timeout + DEFERRAL_GRACE - 1)
    assert jogg_conn.count(path=STATUS) == 1


def test_deferral_floor_from_airflow_config(jogg_conn, monkeypatch):
    """Whatever poke_interval says, the trigger starts no earlier than [jogg] min_deferral_seconds."""
    task_id = processing_task(jogg_conn)
    monkeypatch.delenv("AIRFLOW__JOGG__MIN_DEFERRAL_SECONDS")
    before = time.time()
    with pytest.raises(TaskDeferred) as info:
        sensor(jogg_task_id=task_id, poke_interval=0.05).execute({})
    not_before = info.value.trigger.serialize()[1]["not_before"]
    assert before + DEFAULT_MIN_DEFERRAL_SECONDS <= not_before <= time.time() + DEFAULT_MIN_DEFERRAL_SECONDS
    monkeypatch.setenv("AIRFLOW__JOGG__MIN_DEFERRAL_SECONDS", "40")
    with pytest.raises(TaskDeferred) as info:
        sensor(jogg_task_id=task_id, timeout=10).execute({})
    kwargs = info.value.trigger.serialize()[1]
    assert kwargs["not_before"] >= before + 40
    # a floor beyond the timeout: Airflow's deferral timeout must not fire before the trigger can
    assert info.value.timeout >= datetime.timedelta(seconds=40 + DEFERRAL_GRACE - 1)


@pytest.mark.parametrize("value", ["-1", "soon", "inf"])
def test_invalid_deferral_floor_is_a_config_error(jogg_conn, monkeypatch, value):
    task_id = processing_task(jogg_conn)
    monkeypatch.setenv("AIRFLOW__JOGG__MIN_DEFERRAL_SECONDS", value)
    with pytest.raises(exc.JoggConfigError, match="min_deferral_seconds"):
        sensor(jogg_task_id=task_id).execute({})


def test_deferral_of_an_earlier_version_still_resumes(jogg_conn):
    """A task deferred to the DateTimeTrigger of earlier versions resumes into the real wait."""
    task_id = processing_task(jogg_conn)
    with pytest.raises(TaskDeferred) as info:
        sensor(jogg_task_id=task_id).resume_after_rate_limit(
            {}, event={"moment": "2026-01-01T00:00:00+00:00"}
        )
    assert isinstance(info.value.trigger, LipSyncTrigger)
    assert info.value.method_name == "execute_complete"
    assert jogg_conn.count(path=STATUS) == 0


def test_invalid_task_id_fails_before_any_request(jogg_conn):
    with pytest.raises(exc.JoggConfigError, match="jogg_task_id"):
        sensor(jogg_task_id="None").execute({})
    assert jogg_conn.count() == 0


@pytest.mark.parametrize(
    ("setup", "error"),
    [("unknown", exc.JoggTaskNotFoundError), ("bad-key", exc.JoggAuthError)],
)
def test_fatal_first_check_fails_fast(fake_jogg, set_conn, setup, error):
    task_id = "does-not-exist" if setup == "unknown" else processing_task(fake_jogg)
    set_conn("jogg_s", fake_jogg.url, key="wrong" if setup == "bad-key" else TEST_API_KEY)
    with pytest.raises(error):
        sensor(jogg_task_id=task_id, jogg_conn_id="jogg_s").execute({})
    assert fake_jogg.count(path=STATUS) == 1


# --- execute_complete: every event ---------------------------------------------------------------------
def test_execute_complete_success_returns_plain_dict():
    result = LipSyncResult(task_id="t1", status="success", result_url="https://r/v.mp4", duration_seconds=3.0)
    expected = {**result.to_dict(), "credits": 0.024, "output_path": None, "cover_output_path": None}
    assert sensor(jogg_task_id="t1").execute_complete({}, result_event(result)) == expected


def test_execute_complete_failed_raises_fail_exception():
    result = LipSyncResult(task_id="t1", status="failed", error_message="audio duration fetch failed")
    with pytest.raises(exc.JoggLipSyncFailedError, match=r"t1.*audio duration fetch failed"):
        sensor(jogg_task_id="t1").execute_complete({}, result_event(result))


def test_execute_complete_timeout_raises_sensor_timeout():
    with pytest.raises(AirflowSensorTimeout, match="t1"):
        sensor(jogg_task_id="t1").execute_complete({}, timeout_event("t1", time.time()))


def test_execute_complete_error_raises_typed_error():
    event = error_event("t1", exc.JoggInsufficientCreditError("no credits", http_status=200, code=18020))
    with pytest.raises(exc.JoggInsufficientCreditError, match="18020"):
        sensor(jogg_task_id="t1").execute_complete({}, event)


@pytest.mark.parametrize(
    "event",
    [None, {}, {"status": "running", "task_id": "t1"}, {"status": "success", "task_id": "t1"}],
    ids=["none", "empty", "unknown-status", "success-without-result"],
)
def test_execute_complete_rejects_malformed_events(event):
    with pytest.raises(exc.JoggEventError):
        sensor(jogg_task_id="t1").execute_complete({}, event)


# --- poke and reschedule -------------------------------------------------------------------------------
def test_poke_mode_waits_to_success(jogg_conn):
    task_id = jogg_conn.add_task("https://m.example/v.mp4", "https://m.example/a.mp3")
    result = sensor(jogg_task_id=task_id, deferrable=False, mode="poke", timeout=30).execute({})
    assert result["status"] == "success"
    assert jogg_conn.count(path=STATUS) >= 2


def test_poke_keeps_waiting_through_transient_errors(fake_jogg, set_conn):
    set_conn("jogg_p", fake_jogg.url, max_retries=0)
    task_id = fake_jogg.add_task("https://m.example/v.mp4", "https://m.example/a.mp3")
    fake_jogg.add_fault(Fault("status", status=502, path=STATUS, times=4))
    result = sensor(jogg_task_id=task_id, jogg_conn_id="jogg_p", deferrable=False, timeout=30).execute({})
    assert result["status"] == "success"
    assert fake_jogg.count_status(502) == 4


def test_poke_mode_failure_and_timeout(jogg_conn):
    failed = jogg_conn.add_task("https://m.example/fail.mp4", "https://m.example/a.mp3")
    with pytest.raises(exc.JoggLipSyncFailedError, match=FAILURE_MESSAGE):
        sensor(jogg_task_id=failed, deferrable=False, timeout=30).execute({})
    stuck = processing_task(jogg_conn)
    with pytest.raises(AirflowSensorTimeout):
        sensor(jogg_task_id=stuck, deferrable=False, timeout=0.3).execute({})


def test_poke_returns_false_while_processing(jogg_conn):
    task_id = processing_task(jogg_conn)
    assert sensor(jogg_task_id=task_id, deferrable=False, mode="reschedule").poke({}) is False


def test_reschedule_poke_respects_retry_after(fake_jogg, set_conn):
    set_conn("jogg_r", fake_jogg.url, max_retries=0)
    task_id = processing_task(fake_jogg)
    fake_jogg.add_fault(Fault("status", status=429, path=STATUS, retry_after="45"))
    s = sensor(jogg_task_id=task_id, jogg_conn_id="jogg_r", deferrable=False, mode="reschedule")
    before = datetime.datetime.now(datetime.timezone.utc)
    with pytest.raises(AirflowRescheduleException) as info:
        s.poke({})
    assert info.value.reschedule_date >= before + datetime.timedelta(seconds=45)
