"""The shared policy: answer parsing, error mapping, retry rules, validation, the event shape."""

from __future__ import annotations

import email.utils
import json
import re
import time
from urllib.parse import urlsplit

import pytest
import requests
import urllib3
import yarl
from hypothesis import given, settings
from hypothesis import strategies as st

from airflow_provider_jogg import exceptions as exc
from airflow_provider_jogg.policy import (
    JITTER_FRACTION,
    MAX_BACKOFF,
    RETRY_AFTER_CAP,
    EventStatus,
    JoggConnectionConfig,
    JoggStatus,
    LipSyncResult,
    backoff_delay,
    error_event,
    is_create_retryable,
    is_retryable,
    parse_envelope,
    parse_event,
    parse_lip_sync_result,
    parse_retry_after,
    result_event,
    timeout_event,
    validate_media_url,
    validate_playback_type,
    validate_task_id,
)


def envelope(code: int = 0, msg: str = "Success", data: object = None) -> bytes:
    return json.dumps({"code": code, "msg": msg, "data": data}).encode()


# --- answers ---------------------------------------------------------------------------------------
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
        parse_envelope(200, envelope(code, "the reason"), what="create lip-sync task")
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
        parse_envelope(status, body, what="create lip-sync task")
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


# --- results ---------------------------------------------------------------------------------------
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


# --- retry rules -------------------------------------------------------------------------------------
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


def test_backoff_grows_caps_and_never_undercuts_retry_after():
    for attempt in range(1, 12):
        base = min(0.5 * 2 ** (attempt - 1), MAX_BACKOFF)
        delay = backoff_delay(attempt, 0.5)
        assert base <= delay <= base * (1 + JITTER_FRACTION)
    for _ in range(50):
        assert backoff_delay(1, 0.01, retry_after=5.0) >= 5.0


@pytest.mark.parametrize("base", [0.0, 0.01, 1.0, 1e300], ids=["zero", "tiny", "one", "huge"])
def test_backoff_after_thousands_of_failures_stays_capped(base):
    # a wait that fails every poll for hours (1,025 polls is under 3 h at 10 s) must not overflow
    cap = MAX_BACKOFF if base > 0 else 0.0
    for attempt in (1024, 1025, 1026, 10**6):
        assert cap <= backoff_delay(attempt, base) <= cap * (1 + JITTER_FRACTION)


def test_which_failures_are_retried():
    rate = exc.JoggRateLimitError("r", retry_after=1)
    refused = exc.JoggConnectionError("c", request_sent=False)
    reset = exc.JoggConnectionError("c", request_sent=True)
    server = exc.JoggServerError("s", http_status=503)
    garbled = exc.JoggMalformedResponseError("m")
    not_processed = exc.JoggNotProcessedError("n", http_status=408)
    auth = exc.JoggAuthError("a", code=10105)
    for error in (rate, refused, reset, server, garbled, not_processed):
        assert is_retryable(error)
    assert not is_retryable(auth)
    assert not is_retryable(ValueError())
    # create: only what proves nothing was created
    assert is_create_retryable(rate)
    assert is_create_retryable(refused)
    assert is_create_retryable(not_processed)
    for error in (reset, server, garbled, auth):
        assert not is_create_retryable(error)


# --- connection and input ---------------------------------------------------------------------------
def make_config(host, password="k", port=None, **extra):
    return JoggConnectionConfig.from_connection(
        "jogg_x", host=host, password=password, port=port, extra=extra
    )


@pytest.mark.parametrize(
    ("host", "expected"),
    [
        (None, "https://api.jogg.ai"),
        ("", "https://api.jogg.ai"),
        ("https://api.jogg.ai/", "https://api.jogg.ai"),
        ("https://api.jogg.ai/open", "https://api.jogg.ai/open"),
        ("api.jogg.ai/open/", "https://api.jogg.ai/open"),
        ("http://127.0.0.1:8765", "http://127.0.0.1:8765"),
        ("http://localhost:9/open", "http://localhost:9/open"),
        ("http://[::1]:9", "http://[::1]:9"),
    ],
)
def test_base_url(host, expected):
    assert make_config(host).base_url == expected


def test_port_field_is_used_when_host_has_none():
    assert make_config("https://jogg.internal", port=8443).base_url == "https://jogg.internal:8443"


@pytest.mark.parametrize(
    "host", ["ftp://api.jogg.ai", "https://", "https://api.jogg.ai?x=1", "https://h:99999"], ids=str
)
def test_invalid_base_url(host):
    with pytest.raises(exc.JoggConfigError, match="jogg_x"):
        make_config(host)


# what the HTTP clients make of a URL: ``requests`` parses with urllib3, ``aiohttp`` with yarl
def clients_see(url: str) -> set[tuple[str | None, int | None]]:
    prepared = requests.Request("GET", url + "/v2/user/whoami").prepare().url
    parsed = urllib3.util.parse_url(url)
    return {
        (urlsplit(prepared).hostname, urlsplit(prepared).port),
        ((parsed.host or "").strip("[]").lower() or None, parsed.port),
        (yarl.URL(url).host, yarl.URL(url).explicit_port),
    }


@pytest.mark.parametrize(
    ("host", "problem"),
    [
        ("http://192.0.2.10\\@127.0.0.1", "backslash"),
        ("http://192.0.2.10\\.127.0.0.1", "backslash"),
        ("http://127.0.0.1 @192.0.2.10", "whitespace"),
        ("http://127.0.0.1\t.example.com", "whitespace"),
        ("http://127.0.0.1\n.example.com", "whitespace"),
        ("http://127.0.0.1\x00.example.com", "control"),
        ("http://l\u043ecalhost:9", "non-ASCII"),
        ("http://127.0.0.1%2f@192.0.2.10", "'@'"),
        ("http://192.0.2.10#@127.0.0.1", "'@'"),
        ("http://192.0.2.10#.127.0.0.1", "fragment"),
        ("http://192.0.2.10?@127.0.0.1", "'@'"),
        ("http://127.0.0.1%2e", "not a host name"),
        ("http://127.0.0.1:80:90", "port"),
        ("http://127.0.0.1:0080", "host:port"),
        ("http://127.0.0.1:", "host:port"),
        ("http://[::1%25lo]:9", "zone id"),
        ("http://[::1", "IPv6"),
    ],
    ids=[
        "backslash-userinfo",
        "backslash-host",
        "space",
        "tab",
        "newline",
        "nul",
        "cyrillic-o",
        "encoded-slash",
        "fragment-at",
        "fragment",
        "query-at",
        "percent-host",
        "two-ports",
        "padded-port",
        "empty-port",
        "zone-id",
        "unbalanced-bracket",
    ],
)
def test_crafted_base_urls_are_refused(host, problem):
    with pytest.raises(exc.JoggConfigError, match=f"'jogg_x'.*{re.escape(problem)}"):
        make_config(host)


@pytest.mark.parametrize(
    "host",
    [
        "http://gwuser:gw-S3cret@127.0.0.1:8765",
        "https://gwuser:gw-S3cret@api.jogg.ai/open",
        "https://gw-S3cret@api.jogg.ai",
        "https://gwuser:gw-S3cret/x@api.jogg.ai",
        "api.jogg.ai:gw-S3cret@127.0.0.1",
    ],
    ids=["http-loopback", "https", "user-only", "slash-in-password", "no-scheme"],
)
def test_credentials_in_the_host_are_refused_without_echoing_them(host):
    with pytest.raises(exc.JoggConfigError, match="password") as info:
        make_config(host)
    assert "gw-S3cret" not in f"{info.value} {info.value!r}"
    assert "gwuser" not in str(info.value)


@settings(max_examples=400, deadline=None)
@given(
    scheme=st.sampled_from(["http", "https", "HTTP"]),
    host=st.text(alphabet="al1270.:@[]\\/%?# \t-_\u0131", min_size=1, max_size=24),
)
def test_an_accepted_base_url_means_the_same_host_to_every_client(scheme, host):
    """Whatever is accepted, the host checked (e.g. for loopback) is the one both clients connect to."""
    try:
        config = make_config(f"{scheme}://{host}", allow_insecure_http=True)
    except exc.JoggConfigError:
        return
    ours = urlsplit(config.base_url)
    assert clients_see(config.base_url) == {(ours.hostname, ours.port)}


def test_plain_http_refused_off_loopback_unless_allowed():
    with pytest.raises(exc.JoggConfigError, match="allow_insecure_http"):
        make_config("http://jogg.example.com")
    assert make_config("http://jogg.example.com", allow_insecure_http=True).base_url.startswith("http://")
    assert make_config("http://jogg.example.com", allow_insecure_http="true").base_url.startswith("http://")
    with pytest.raises(exc.JoggConfigError, match="allow_insecure_http"):  # null means "not set"
        make_config("http://jogg.example.com", allow_insecure_http=None)


@pytest.mark.parametrize("key", ["k-123\n", "  k-123", "k-123\r\n", "\tk-123 "])
def test_surrounding_whitespace_is_stripped_from_the_key(key):
    config = make_config("https://api.jogg.ai", password=key)
    assert config.api_key == "k-123"
    assert config.headers()["x-api-key"] == "k-123"
    assert config.key_id == make_config("https://api.jogg.ai", password="k-123").key_id


@pytest.mark.parametrize(
    ("key", "problem"),
    [
        ("sk-jogg-SECRET part", "whitespace"),
        ("sk-jogg-SECRET\npart", "control character (U+000A)"),
        ("sk-jogg-SECRET\x7fpart", "control character (U+007F)"),
        ("sk-jogg-SECRET\u2013part", "non-ASCII"),
    ],
    ids=["space", "newline", "del", "en-dash"],
)
def test_a_key_that_is_not_a_header_value_is_refused_without_echoing_it(key, problem):
    with pytest.raises(exc.JoggConfigError, match=re.escape(problem)) as info:
        make_config("https://api.jogg.ai", password=key)
    assert "jogg_x" in str(info.value)
    assert "SECRET" not in f"{info.value} {info.value!r}"


@pytest.mark.parametrize("key", ["", "   ", "\n"])
def test_a_blank_key_is_a_missing_key(key):
    with pytest.raises(exc.JoggConfigError, match="'jogg_x' has no API key"):
        make_config("https://api.jogg.ai", password=key)


def test_api_platform_must_be_a_header_value():
    assert make_config(None, api_platform=" airflow\n").api_platform == "airflow"
    assert make_config(None, api_platform="  ").api_platform is None
    with pytest.raises(exc.JoggConfigError, match="'api_platform' contains a control character"):
        make_config(None, api_platform="airflow\r\nX-Injected: 1")


def test_allow_private_media_urls_extra():
    assert make_config(None).allow_private_media_urls is False
    assert make_config(None, allow_private_media_urls=True).allow_private_media_urls is True
    assert make_config(None, allow_private_media_urls="true").allow_private_media_urls is True
    with pytest.raises(exc.JoggConfigError, match="allow_private_media_urls"):
        make_config(None, allow_private_media_urls="yes")


def test_missing_key_names_the_connection():
    with pytest.raises(exc.JoggConfigError, match="'jogg_x' has no API key"):
        make_config("https://api.jogg.ai", password=None)


def test_extras_are_parsed_and_checked():
    config = make_config(
        "https://api.jogg.ai", api_platform="airflow", timeout="12.5", max_retries=0, retry_backoff=0.2
    )
    assert (config.api_platform, config.timeout, config.max_retries, config.retry_backoff) == (
        "airflow",
        12.5,
        0,
        0.2,
    )
    assert config.headers() == {"x-api-key": "k", "Accept": "application/json", "x-api-platform": "airflow"}
    assert make_config(None, extra__jogg__timeout=4).timeout == 4
    for bad in (
        {"timeout": 0},
        {"timeout": "x"},
        {"max_retries": -1},
        {"max_retries": 1.5},
        {"api_platform": 3},
    ):
        with pytest.raises(exc.JoggConfigError, match="jogg_x"):
            make_config(None, **bad)


def test_key_not_in_repr_and_fingerprint_differs():
    a, b = make_config(None, password="secret-A"), make_config(None, password="secret-B")
    assert "secret-A" not in repr(a)
    assert "secret-A" not in a.key_id
    assert a.key_id != b.key_id


@pytest.mark.parametrize(
    "url", ["", None, "/tmp/x.mp4", "file:///tmp/x.mp4", "s3://b/k.mp4", "https://", "https://a b/c"], ids=str
)
def test_media_url_must_be_http(url):
    with pytest.raises(exc.JoggConfigError, match="video_url"):
        validate_media_url(url, "video_url")


def test_media_url_ok():
    assert validate_media_url(" https://cdn.example/v.mp4 ", "video_url") == "https://cdn.example/v.mp4"


def test_playback_type_lists_allowed_values():
    assert validate_playback_type("normal_reverse") == "normal_reverse"
    with pytest.raises(exc.JoggConfigError) as info:
        validate_playback_type("reverse")
    for allowed in ("normal", "normal_reverse", "normal_reverse_by_audio"):
        assert allowed in str(info.value)


@pytest.mark.parametrize("value", ["", None, "None", "a/b", "a b", 12])
def test_invalid_task_id(value):
    with pytest.raises(exc.JoggConfigError):
        validate_task_id(value)


# --- events ------------------------------------------------------------------------------------------
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


# --- property tests: the parser only ever raises the provider's own errors ----------------------------
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
