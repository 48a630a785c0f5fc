"""airflow_provider_jogg.protocol: answers judged on HTTP status, then business code; Retry-After."""

from __future__ import annotations

import email.utils
import json
import time

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from airflow_provider_jogg import exceptions as exc
from airflow_provider_jogg.protocol import RETRY_AFTER_CAP, parse_envelope, parse_retry_after
from airflow_provider_jogg.results import LipSyncResult, parse_lip_sync_result
from airflow_provider_jogg.retry import (
    is_create_retryable,
    is_retryable,
)


def envelope(code: int = 0, msg: str = "Success", data: object = None) -> bytes:
    return json.dumps({"code": code, "msg": msg, "data": data}).encode()


def test_success_returns_data():
    assert parse_envelope(200, envelope(data={"task_id": "t1"})) == {"task_id": "t1"}


@pytest.mark.parametrize(
    ("code", "cls"),
    [
        (10104, exc.JoggTaskNotFoundError),
        (10105, exc.JoggAuthError),
        (18020, exc.JoggInsufficientCreditError),
        (18025, exc.JoggPermissionError),
        (40000, exc.JoggParameterError),
        (50000, exc.JoggServerError),
        (12345, exc.JoggFatalAPIError),
    ],
    ids=["not-found", "auth", "credit", "permission", "parameter", "system", "unknown-code"],
)
def test_business_codes_map_to_typed_errors(code, cls):
    with pytest.raises(cls) as info:
        parse_envelope(200, envelope(code, "the reason"), action="create lip-sync task")
    error = info.value
    assert type(error) is cls
    assert (error.http_status, error.code, error.jogg_message) == (200, code, "the reason")
    # the message names the HTTP status, the code and Jogg's msg
    assert "HTTP status: 200" in str(error)
    assert f"business code: {code}" in str(error)
    assert "the reason" in str(error)
    assert error.transient is (code == 50000)


def test_fatal_codes_are_airflow_fail_exceptions():
    from airflow_provider_jogg._compat import AirflowFailException

    for code in (10104, 10105, 18020, 18025, 40000):
        with pytest.raises(AirflowFailException):
            parse_envelope(200, envelope(code))


def test_not_found_names_the_task_id_and_code():
    with pytest.raises(exc.JoggTaskNotFoundError) as info:
        parse_envelope(200, envelope(10104, "Record not found"), task_id="abc-123")
    assert "'abc-123'" in str(info.value)
    assert "10104" in str(info.value)


@pytest.mark.parametrize(
    "body",
    [b"<html><body>502 Bad Gateway</body></html>", b"", envelope(0, data={"x": 1})],
    ids=["html", "empty", "success-envelope"],
)
def test_http_status_is_classified_before_the_body(body):
    with pytest.raises(exc.JoggRateLimitError):
        parse_envelope(429, body, retry_after="7")
    with pytest.raises(exc.JoggServerError) as info:
        parse_envelope(502, body)
    assert info.value.http_status == 502


def test_rate_limit_carries_retry_after():
    with pytest.raises(exc.JoggRateLimitError) as info:
        parse_envelope(429, b"", retry_after="7")
    assert info.value.retry_after == 7.0
    with pytest.raises(exc.JoggRateLimitError) as info:
        parse_envelope(429, b"")
    assert info.value.retry_after is None


def test_non_json_body_is_transient_with_snippet():
    with pytest.raises(exc.JoggMalformedResponseError) as info:
        parse_envelope(200, b"Internal error, please retry")
    assert info.value.transient
    assert "Internal error, please retry" in str(info.value)


def test_truncated_json_is_transient():
    with pytest.raises(exc.JoggMalformedResponseError):
        parse_envelope(200, envelope(data={"task_id": "t"})[:20])


@pytest.mark.parametrize(
    "body",
    [b'{"code": 0, "msg": "ok"}', b'{"code": 0, "msg": "ok", "data": null}', b'{"msg": "ok"}', b"[1, 2]"],
    ids=["no-data", "null-data", "no-code", "not-an-object"],
)
def test_wrong_shape_is_a_response_error(body):
    with pytest.raises(exc.JoggResponseError):
        parse_envelope(200, body)


@pytest.mark.parametrize("status", [408, 425])
@pytest.mark.parametrize(
    "body",
    [b"<html>Request Timeout</html>", b"", envelope(408, msg="Request Timeout"), envelope(0, data={"x": 1})],
    ids=["html", "empty", "error-envelope", "success-envelope"],
)
def test_408_and_425_say_the_request_was_not_processed(status, body):
    # HTTP status first: whatever the body, the server says it did not process the request
    with pytest.raises(exc.JoggNotProcessedError) as info:
        parse_envelope(status, body, action="create lip-sync task")
    error = info.value
    assert error.http_status == status
    assert error.transient
    assert is_retryable(error)
    assert is_create_retryable(error)  # nothing was created: the create may be sent again
    assert "did not process the create lip-sync task" in str(error)


def test_4xx_without_envelope_is_not_transient():
    with pytest.raises(exc.JoggAPIError) as info:
        parse_envelope(403, b"<html>Forbidden</html>")
    assert not info.value.transient
    assert info.value.http_status == 403
    assert "Forbidden" in str(info.value)


def test_retry_after_seconds_and_dates():
    assert parse_retry_after("3") == 3.0
    assert parse_retry_after(" 1.5 ") == 1.5
    assert parse_retry_after("-4") == 0.0
    assert parse_retry_after("100000") == RETRY_AFTER_CAP
    assert RETRY_AFTER_CAP >= 60
    assert parse_retry_after(None) is None
    assert parse_retry_after("soon") is None
    now = time.time()
    date = email.utils.formatdate(now + 30, usegmt=True)
    assert 28 <= parse_retry_after(date, now=now) <= 31


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=10), children, max_size=4)
    ),
    max_leaves=20,
)


envelopes = st.fixed_dictionaries(
    {},
    optional={
        "code": st.one_of(st.integers(), st.sampled_from([0, 10104, 10105, 50000]), json_values),
        "msg": json_values,
        "data": st.one_of(
            json_values,
            st.fixed_dictionaries(
                {},
                optional={
                    "task_id": json_values,
                    "status": st.one_of(st.sampled_from(["pending", "success", "failed", "x"]), json_values),
                    "data": st.one_of(
                        json_values, st.dictionaries(st.sampled_from(["result_url"]), json_values)
                    ),
                    "error": json_values,
                    "created_at": json_values,
                },
            ),
        ),
    },
)


def _parse_status_answer(status: int, body: bytes) -> LipSyncResult | None:
    try:
        return parse_lip_sync_result(parse_envelope(status, body, task_id="t"), "t")
    except exc.JoggError:
        return None


@settings(max_examples=300, deadline=None)
@given(status=st.integers(100, 599), body=st.binary(max_size=200))
def test_arbitrary_bytes_give_a_result_or_a_jogg_error(status, body):
    result = _parse_status_answer(status, body)
    assert result is None or isinstance(result.status, str)


@settings(max_examples=500, deadline=None)
@given(status=st.sampled_from([200, 201, 400, 404, 429, 500, 503]), value=envelopes)
def test_arbitrary_json_gives_a_result_or_a_jogg_error(status, value):
    result = _parse_status_answer(status, json.dumps(value, allow_nan=True).encode())
    if result is not None:
        assert 200 <= status < 300
        assert value["code"] == 0
        assert result.status
        assert result.status == result.status.lower()
        json.dumps(result.to_dict(), allow_nan=False)
