"""JoggHook's sync path against the fake Jogg server, over real sockets (no HTTP mocks)."""

from __future__ import annotations

import os
import time

import pytest
import requests

from airflow_provider_jogg import exceptions as exc
from airflow_provider_jogg import protocol
from airflow_provider_jogg import throttle as throttle_module
from airflow_provider_jogg.hooks import sync_transport
from airflow_provider_jogg.hooks.jogg import JoggHook, LipSyncResult
from airflow_provider_jogg.testing import FakeJoggServer, Fault
from tests.conftest import FAST_EXTRA, TEST_API_KEY
from tests.unit.hooks.support import (
    AUDIO,
    CREATE,
    MAX_RETRIES,
    QUOTA,
    STATUS,
    TRANSIENT_FAULTS,
    UPLOAD,
    VIDEO,
    WHOAMI,
    WRONG_KEY,
    assert_no_secret,
    closed_port,
    step_wall_clock,
)


def times_of(server: FakeJoggServer, path: str) -> list[float]:
    return [r.time for r in server.requests if r.path.startswith(path)]


@pytest.fixture
def prefixed_jogg():
    server = FakeJoggServer(
        api_key=TEST_API_KEY, prefix="/open", pending_seconds=0.05, processing_seconds=0.25, ffmpeg=False
    )
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def put_log(monkeypatch):
    """Records every response the pooled session of a hook receives (request headers included).

    The fake server records only /v2 API requests, not the storage PUTs, so the PUT is observed on
    the client side with a ``requests`` response hook: the real request still goes over the socket.
    """

    def watch(hook: JoggHook) -> list[requests.Response]:
        seen: list[requests.Response] = []

        def record(response: requests.Response, **_: object) -> None:
            seen.append(response)

        session = hook.get_conn()
        monkeypatch.setitem(session.hooks, "response", [*session.hooks["response"], record])
        return seen

    return watch


# --------------------------------------------------------------------------------------------------
# Connection
# --------------------------------------------------------------------------------------------------
def test_hook_attributes():
    assert JoggHook.conn_type == "jogg"
    assert JoggHook.conn_name_attr == "jogg_conn_id"
    assert JoggHook.default_conn_name == "jogg_default"
    assert JoggHook.hook_name == "JoggAI"
    assert JoggHook().jogg_conn_id == "jogg_default"
    assert JoggHook("jogg_other").jogg_conn_id == "jogg_other"


def test_ui_field_behaviour():
    ui = JoggHook.get_ui_field_behaviour()
    assert sorted(ui["hidden_fields"]) == ["login", "port", "schema"]
    assert ui["relabeling"] == {"host": "Base URL", "password": "API Key"}
    assert ui["placeholders"]["host"] == "https://api.jogg.ai"
    assert ui["placeholders"]["password"]
    assert "password" not in ui["hidden_fields"]
    assert "host" not in ui["hidden_fields"]


def test_config_from_env_connection(jogg_conn):
    config = JoggHook().config
    assert config.base_url == jogg_conn.url
    assert config.api_key == TEST_API_KEY
    assert config.timeout == FAST_EXTRA["timeout"]
    assert config.max_retries == MAX_RETRIES
    assert config.retry_backoff == FAST_EXTRA["retry_backoff"]
    assert config.api_platform is None
    assert TEST_API_KEY not in repr(config)
    assert jogg_conn.count() == 0  # resolving the connection talks to nobody


def test_missing_key_names_the_connection_and_sends_nothing(fake_jogg, set_conn):
    set_conn("jogg_nokey", fake_jogg.url, key=None)
    with pytest.raises(exc.JoggConfigError, match="'jogg_nokey' has no API key"):
        _ = JoggHook("jogg_nokey").config
    with pytest.raises(exc.JoggConfigError, match="jogg_nokey") as info:
        JoggHook("jogg_nokey").create_lip_sync_video(VIDEO, AUDIO)
    assert_no_secret(info.value)
    ok, message = JoggHook("jogg_nokey").test_connection()
    assert not ok
    assert "jogg_nokey" in message
    assert fake_jogg.count() == 0


@pytest.mark.parametrize("suffix", ["\n", "\r\n", " "], ids=["lf", "crlf", "space"])
def test_key_from_a_secret_file_with_a_trailing_newline_works(fake_jogg, set_conn, suffix):
    set_conn("jogg_file_key", fake_jogg.url, key=TEST_API_KEY + suffix)
    task_id = JoggHook("jogg_file_key").create_lip_sync_video(VIDEO, AUDIO)
    assert list(fake_jogg.tasks) == [task_id]
    (request,) = fake_jogg.requests
    assert request.headers["x-api-key"] == "<valid>"


def test_key_with_inner_whitespace_fails_before_any_request(fake_jogg, set_conn):
    set_conn("jogg_split_key", fake_jogg.url, key=TEST_API_KEY[:10] + "\n" + TEST_API_KEY[10:])
    with pytest.raises(exc.JoggConfigError, match=r"'jogg_split_key'.*control character \(U\+000A\)") as info:
        JoggHook("jogg_split_key").create_lip_sync_video(VIDEO, AUDIO)
    assert not isinstance(info.value, exc.JoggCreateUncertainError)
    assert TEST_API_KEY[:10] not in str(info.value)
    assert TEST_API_KEY[10:] not in str(info.value)
    assert fake_jogg.count() == 0


def test_credentials_in_the_host_are_refused_and_never_shown(fake_jogg, set_conn):
    host = fake_jogg.url.replace("http://", "http://gwuser:gw-S3cret@")
    set_conn("jogg_userinfo", host)
    ok, message = JoggHook("jogg_userinfo").test_connection()
    assert not ok
    assert "jogg_userinfo" in message
    assert "password" in message
    assert "gw-S3cret" not in message
    assert fake_jogg.count() == 0  # and so never sent as Basic auth either


def test_key_and_accept_headers_are_sent(jogg_conn):
    JoggHook().whoami()
    (request,) = jogg_conn.requests
    assert request.headers["x-api-key"] == "<valid>"
    assert request.headers["accept"] == "application/json"
    assert "x-api-platform" not in request.headers


def test_api_platform_extra_is_sent(fake_jogg, set_conn):
    set_conn("jogg_plat", fake_jogg.url, api_platform="airflow-tests")
    JoggHook("jogg_plat").whoami()
    (request,) = fake_jogg.requests
    assert request.headers["x-api-platform"] == "airflow-tests"
    assert request.headers["x-api-key"] == "<valid>"


def test_path_prefix_is_kept(prefixed_jogg, set_conn):
    assert prefixed_jogg.url.endswith("/open")
    set_conn("jogg_open", prefixed_jogg.url)
    hook = JoggHook("jogg_open")
    assert hook.config.base_url == prefixed_jogg.url
    task_id = hook.create_lip_sync_video(VIDEO, AUDIO)
    assert hook.get_lip_sync_video(task_id).task_id == task_id
    assert hook.whoami()["username"] == "demo"
    # the server only routes /open/v2/...: it records the path without its prefix
    assert [(r.method, r.path) for r in prefixed_jogg.requests] == [
        ("POST", CREATE),
        ("GET", STATUS + task_id),
        ("GET", WHOAMI),
    ]
    assert list(prefixed_jogg.tasks) == [task_id]


# --------------------------------------------------------------------------------------------------
# test_connection
# --------------------------------------------------------------------------------------------------
def test_test_connection_success_names_the_user_and_only_calls_whoami(jogg_conn):
    ok, message = JoggHook().test_connection()
    assert ok is True
    assert "demo" in message
    assert jogg_conn.url in message
    assert TEST_API_KEY not in message
    assert [(r.method, r.path) for r in jogg_conn.requests] == [("GET", WHOAMI)]
    assert jogg_conn.create_count == 0


def test_test_connection_wrong_key(fake_jogg, set_conn):
    set_conn("jogg_wrong", fake_jogg.url, key=WRONG_KEY)
    ok, message = JoggHook("jogg_wrong").test_connection()
    assert ok is False
    assert "10105" in message
    assert "Invalid API key" in message
    assert WRONG_KEY not in message
    assert TEST_API_KEY not in message
    # an auth error is never retried, and nothing but whoami was asked
    assert [(r.method, r.path, r.headers["x-api-key"]) for r in fake_jogg.requests] == [
        ("GET", WHOAMI, "<invalid>")
    ]
    assert fake_jogg.create_count == 0


def test_test_connection_retries_at_most_once(jogg_conn):
    jogg_conn.add_fault(Fault("status", status=503, path=WHOAMI, times=None))
    ok, message = JoggHook().test_connection()
    assert ok is False
    assert "503" in message
    assert TEST_API_KEY not in message
    assert jogg_conn.count("GET", WHOAMI) == 2  # one retry at most, though max_retries is 3
    assert jogg_conn.count() == 2


# --------------------------------------------------------------------------------------------------
# Redirects: never followed, the key stays with the API host
# --------------------------------------------------------------------------------------------------
@pytest.fixture
def elsewhere(recording_server):
    """A second loopback host (127.0.0.2) that must never receive a request from the provider."""
    return recording_server(host="127.0.0.2")


REDIRECTED_CALLS = [
    pytest.param(WHOAMI, lambda hook, server: hook.whoami(), id="whoami"),
    pytest.param(CREATE, lambda hook, server: hook.create_lip_sync_video(VIDEO, AUDIO), id="create"),
    pytest.param(
        STATUS, lambda hook, server: hook.get_lip_sync_video(server.add_task(VIDEO, AUDIO)), id="status"
    ),
]


@pytest.mark.parametrize("status", [302, 307])
@pytest.mark.parametrize(("path", "call"), REDIRECTED_CALLS)
def test_api_redirect_is_refused_and_the_key_never_leaves(jogg_conn, elsewhere, path, call, status):
    redirect = Fault("redirect", status=status, location=elsewhere.url + path, path=path, times=None)
    jogg_conn.add_fault(redirect)
    with pytest.raises(exc.JoggRedirectError, match=r"redirect to host '127\.0\.0\.2:\d+'") as info:
        call(JoggHook(), jogg_conn)
    assert info.value.http_status == status
    assert_no_secret(info.value)
    assert elsewhere.received == []  # nothing at all reached the other host, key or not
    assert jogg_conn.count() == 1  # a misconfiguration: not retried
    assert jogg_conn.tasks == {} or path == STATUS  # a refused create is final, never "uncertain"


def test_api_redirect_to_the_same_host_is_refused_too(jogg_conn):
    jogg_conn.add_fault(Fault("redirect", status=301, location="/open/v2/user/whoami", times=None))
    ok, message = JoggHook().test_connection()
    assert not ok
    assert f"'{jogg_conn.url.removeprefix('http://')}', the API host itself" in message
    assert "base URL" in message
    assert TEST_API_KEY not in message
    assert jogg_conn.count() == 1


# --------------------------------------------------------------------------------------------------
# create_lip_sync_video
# --------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("playback_type", ["normal", "normal_reverse", "normal_reverse_by_audio"])
def test_create_returns_the_task_id_and_sends_the_body(jogg_conn, playback_type):
    task_id = JoggHook().create_lip_sync_video(VIDEO, AUDIO, playback_type)
    assert list(jogg_conn.tasks) == [task_id]
    assert jogg_conn.tasks[task_id]["playback_type"] == playback_type
    (request,) = jogg_conn.requests
    assert (request.method, request.path, request.status) == ("POST", CREATE, 200)
    assert request.json == {"video_url": VIDEO, "audio_url": AUDIO, "playback_type": playback_type}
    assert request.headers["x-api-key"] == "<valid>"
    assert request.headers["content-type"] == "application/json"


def test_create_default_playback_type_is_normal(jogg_conn):
    JoggHook().create_lip_sync_video(VIDEO, AUDIO)
    assert jogg_conn.requests[0].json["playback_type"] == "normal"


@pytest.mark.parametrize(
    ("video", "audio", "playback_type", "text"),
    [
        ("file:///tmp/clip.mp4", AUDIO, "normal", "video_url"),
        (VIDEO, "voice.mp3", "normal", "audio_url"),
        ("", AUDIO, "normal", "video_url"),
        (VIDEO, AUDIO, "reverse", "playback_type"),
        (VIDEO, AUDIO, "", "playback_type"),
    ],
    ids=["video-file-url", "audio-relative", "video-empty", "bad-playback", "empty-playback"],
)
def test_create_invalid_input_sends_nothing(jogg_conn, video, audio, playback_type, text):
    with pytest.raises(exc.JoggConfigError, match=text) as info:
        JoggHook().create_lip_sync_video(video, audio, playback_type)
    assert_no_secret(info.value)
    assert jogg_conn.count() == 0
    assert jogg_conn.tasks == {}


@pytest.mark.parametrize("times", [1, 2])
def test_create_429_without_retry_after_is_sent_again_and_creates_one_task(jogg_conn, times):
    jogg_conn.add_fault(Fault("status", status=429, path=CREATE, times=times))
    task_id = JoggHook().create_lip_sync_video(VIDEO, AUDIO)
    assert list(jogg_conn.tasks) == [task_id]
    assert jogg_conn.create_count == times + 1
    assert jogg_conn.count_status(429) == times


def test_create_429_honours_retry_after(jogg_conn):
    jogg_conn.add_fault(Fault("status", status=429, path=CREATE, retry_after="1", times=1))
    task_id = JoggHook().create_lip_sync_video(VIDEO, AUDIO)
    assert list(jogg_conn.tasks) == [task_id]
    first, second = jogg_conn.requests
    assert (first.status, second.status) == (429, 200)
    assert second.time - first.time >= 1.0


def test_create_429_every_time_gives_up_after_max_retries(jogg_conn):
    jogg_conn.add_fault(Fault("status", status=429, path=CREATE, times=None))
    with pytest.raises(exc.JoggRateLimitError) as info:
        JoggHook().create_lip_sync_video(VIDEO, AUDIO)
    assert not isinstance(info.value, exc.JoggCreateUncertainError)
    assert jogg_conn.create_count == MAX_RETRIES + 1
    assert jogg_conn.tasks == {}
    assert_no_secret(info.value)


def test_create_429s_beyond_max_retries_are_waited_out_and_create_one_task(fake_jogg, set_conn):
    # a busy account (other workers, other systems on the key) answers 429 for a while: the create
    # waits it out instead of failing the task after max_retries
    set_conn("jogg_busy", fake_jogg.url, rate_limit_wait=60)
    fake_jogg.add_fault(Fault("status", status=429, path=CREATE, times=MAX_RETRIES + 3))
    task_id = JoggHook("jogg_busy").create_lip_sync_video(VIDEO, AUDIO)
    assert list(fake_jogg.tasks) == [task_id]
    assert fake_jogg.count_status(429) == MAX_RETRIES + 3
    assert fake_jogg.create_count == MAX_RETRIES + 4


def test_create_429_beyond_the_rate_limit_wait_fails_with_the_rate_limit_error(fake_jogg, set_conn):
    set_conn("jogg_busy", fake_jogg.url, rate_limit_wait=0.3, max_retries=1)
    fake_jogg.add_fault(Fault("status", status=429, path=CREATE, times=None))
    with pytest.raises(exc.JoggRateLimitError) as info:
        JoggHook("jogg_busy").create_lip_sync_video(VIDEO, AUDIO)
    assert not isinstance(info.value, exc.JoggCreateUncertainError)
    assert info.value.http_status == 429
    assert_no_secret(info.value)
    times = times_of(fake_jogg, CREATE)
    # more 429s than max_retries allows, over the 0.3 s wait; after it, the retries: at most two
    # requests sent after the wait ended (the one answered across its end, and the one retry)
    assert len(times) > 2
    assert times[-1] - times[0] >= 0.3
    assert 1 <= sum(1 for t in times if t - times[0] >= 0.3) <= 2
    assert fake_jogg.tasks == {}


def test_429s_do_not_use_up_retries_but_other_failures_still_do(fake_jogg, set_conn):
    set_conn("jogg_busy", fake_jogg.url, rate_limit_wait=60)
    task_id = fake_jogg.add_task(VIDEO, AUDIO, status="success")
    fake_jogg.add_fault(Fault("status", status=429, path=STATUS, times=MAX_RETRIES + 1))
    fake_jogg.add_fault(Fault("status", status=503, path=STATUS, times=None))
    with pytest.raises(exc.JoggServerError):
        JoggHook("jogg_busy").get_lip_sync_video(task_id)
    # every 429, then the first 503 and one per retry
    assert fake_jogg.count_status(429) == MAX_RETRIES + 1
    assert fake_jogg.count_status(503) == MAX_RETRIES + 1


def test_no_retries_sends_one_request_even_when_429s_would_be_waited_out(fake_jogg, set_conn):
    # the sensor's check before it defers (max_retries=0): a 429 defers, it never waits in a worker
    set_conn("jogg_busy", fake_jogg.url, rate_limit_wait=60)
    task_id = fake_jogg.add_task(VIDEO, AUDIO, status="success")
    fake_jogg.add_fault(Fault("status", status=429, path=STATUS, times=None))
    with pytest.raises(exc.JoggRateLimitError):
        JoggHook("jogg_busy").get_lip_sync_video(task_id, max_retries=0)
    assert fake_jogg.count("GET", STATUS) == 1


def test_test_connection_does_not_wait_out_429s(fake_jogg, set_conn):
    # a person is waiting for the Test button: a 429 is the one retry, whatever rate_limit_wait says
    set_conn("jogg_busy", fake_jogg.url, rate_limit_wait=60)
    fake_jogg.add_fault(Fault("status", status=429, path=WHOAMI, times=None))
    ok, message = JoggHook("jogg_busy").test_connection()
    assert ok is False
    assert "429" in message
    assert fake_jogg.count("GET", WHOAMI) == 2


@pytest.mark.parametrize(
    "fault", [Fault("status", status=408), Fault("html", status=425)], ids=["408", "425-html"]
)
def test_create_not_processed_is_sent_again_and_creates_one_task(jogg_conn, fault):
    # 408 and 425 say the server did not process the request: sending it again cannot duplicate a task
    fault.path = CREATE
    jogg_conn.add_fault(fault)
    task_id = JoggHook().create_lip_sync_video(VIDEO, AUDIO)
    assert list(jogg_conn.tasks) == [task_id]
    assert jogg_conn.create_count == 2
    assert [r.status for r in jogg_conn.requests] == [fault.status, 200]


def test_create_connection_refused_is_retried_then_not_uncertain(set_conn, monkeypatch):
    set_conn("jogg_closed", f"http://127.0.0.1:{closed_port()}")
    hook = JoggHook("jogg_closed")
    session = hook.get_conn()
    attempts: list[str] = []
    real_request = session.request

    def counting_request(method, url, *args, **kwargs):  # passes through to the real socket
        attempts.append(f"{method} {url}")
        return real_request(method, url, *args, **kwargs)

    monkeypatch.setattr(session, "request", counting_request)
    with pytest.raises(exc.JoggConnectionError) as info:
        hook.create_lip_sync_video(VIDEO, AUDIO)
    error = info.value
    assert type(error) is exc.JoggConnectionError
    assert not isinstance(error, exc.JoggCreateUncertainError)
    assert error.request_sent is False
    assert "not sent" in str(error)
    assert len(attempts) == MAX_RETRIES + 1
    assert all(a.startswith("POST ") and a.endswith(CREATE) for a in attempts)
    assert_no_secret(error)


UNCERTAIN_FAULTS = [
    # the fake's "status" fault answers {"code": <status>, "msg": <reason>}: a 5xx with an envelope
    # code other than 50000 must not be read as a business refusal (regression: it once was)
    pytest.param(Fault("status", status=500, after_create=True), exc.JoggServerError, id="500"),
    pytest.param(Fault("status", status=503), exc.JoggServerError, id="503"),
    pytest.param(Fault("html", status=502), exc.JoggServerError, id="502-html"),
    pytest.param(Fault("raw", status=500, body=""), exc.JoggServerError, id="500-empty"),
    pytest.param(
        Fault("raw", status=500, body='{"code": 50000, "msg": "System error"}'),
        exc.JoggServerError,
        id="500-code-50000",
    ),
    pytest.param(Fault("business", code=50000, msg="System error"), exc.JoggServerError, id="code-50000"),
    pytest.param(Fault("non_json"), exc.JoggMalformedResponseError, id="non-json"),
    pytest.param(Fault("truncated", after_create=True), exc.JoggConnectionError, id="truncated"),
    pytest.param(Fault("close", after_create=True), exc.JoggConnectionError, id="closed"),
    pytest.param(Fault("reset"), exc.JoggConnectionError, id="reset"),
    pytest.param(Fault("reset", after_create=True), exc.JoggConnectionError, id="reset-after-create"),
    pytest.param(
        Fault("envelope", body='{"code": 0, "msg": "Success", "data": {"status": "pending"}}'),
        exc.JoggResponseError,
        id="no-task-id",
    ),
    pytest.param(
        Fault("envelope", body='{"code": 0, "msg": "Success", "data": {"task_id": ""}}'),
        exc.JoggResponseError,
        id="empty-task-id",
    ),
    pytest.param(
        Fault("envelope", body='{"code": 0, "msg": "Success", "data": null}'),
        exc.JoggResponseError,
        id="null-data",
    ),
]


@pytest.mark.parametrize(("fault", "cause"), UNCERTAIN_FAULTS)
def test_create_ambiguous_failure_is_uncertain_after_one_post(jogg_conn, fault, cause):
    fault.path = CREATE
    jogg_conn.add_fault(fault)
    with pytest.raises(exc.JoggCreateUncertainError) as info:
        JoggHook().create_lip_sync_video(VIDEO, AUDIO)
    error = info.value
    assert jogg_conn.create_count == 1  # never sent again: it could create a second task
    assert jogg_conn.count() == 1
    assert "may have been created" in str(error)
    assert isinstance(error, exc.JoggFatalError)  # Airflow must not retry it either
    assert type(error.cause) is cause
    if isinstance(error.cause, exc.JoggConnectionError):
        assert error.cause.request_sent is True
    assert len(jogg_conn.tasks) == (1 if fault.after_create else 0)
    assert_no_secret(error)


def test_create_read_timeout_after_create_is_uncertain(fake_jogg, set_conn):
    set_conn("jogg_slow", fake_jogg.url, timeout=0.3)
    fake_jogg.add_fault(Fault("slow", path=CREATE, delay=1.5, after_create=True))
    started = time.monotonic()
    with pytest.raises(exc.JoggCreateUncertainError, match="may have been created") as info:
        JoggHook("jogg_slow").create_lip_sync_video(VIDEO, AUDIO)
    assert time.monotonic() - started < 1.2  # gave up at the timeout, did not wait for the answer
    assert "0.3 s timeout" in str(info.value)
    assert type(info.value.cause) is exc.JoggConnectionError
    assert info.value.cause.request_sent is True
    assert fake_jogg.create_count == 1
    assert len(fake_jogg.tasks) == 1  # the task the caller never heard of
    assert_no_secret(info.value)


@pytest.mark.parametrize(
    ("setup", "cls", "code", "msg"),
    [
        ("wrong-key", exc.JoggAuthError, 10105, "Invalid API key"),
        ("no-credit", exc.JoggInsufficientCreditError, 18020, "Insufficient credit"),
        ("no-permission", exc.JoggPermissionError, 18025, "No permission to call APIs"),
        ("bad-parameter", exc.JoggParameterError, 40000, "video_url could not be downloaded"),
    ],
)
def test_create_business_refusal_is_typed_and_sent_once(fake_jogg, set_conn, setup, cls, code, msg):
    set_conn("jogg_c", fake_jogg.url, key=WRONG_KEY if setup == "wrong-key" else TEST_API_KEY)
    if setup == "no-credit":
        fake_jogg.remaining_quota = 0
    if setup in ("no-permission", "bad-parameter"):
        fake_jogg.add_fault(Fault("business", path=CREATE, code=code, msg=msg, times=None))
    with pytest.raises(cls) as info:
        JoggHook("jogg_c").create_lip_sync_video(VIDEO, AUDIO)
    error = info.value
    assert type(error) is cls
    assert not isinstance(error, exc.JoggCreateUncertainError)
    assert isinstance(error, exc.JoggFatalError)
    assert error.code == code
    assert str(code) in str(error)
    assert msg in str(error)
    assert fake_jogg.create_count == 1
    assert fake_jogg.tasks == {}
    assert_no_secret(error)


# --------------------------------------------------------------------------------------------------
# get_lip_sync_video
# --------------------------------------------------------------------------------------------------
def test_get_success_result(jogg_conn):
    task_id = jogg_conn.add_task(VIDEO, AUDIO)
    jogg_conn.set_task(task_id, "success")
    result = JoggHook().get_lip_sync_video(task_id)
    assert isinstance(result, LipSyncResult)
    assert result.task_id == task_id
    assert result.status == "success"
    assert result.succeeded
    assert result.is_terminal
    assert not result.failed
    assert result.result_url == f"{jogg_conn.root_url}/files/{task_id}/result.mp4"
    assert result.cover_url == f"{jogg_conn.root_url}/files/{task_id}/cover.jpg"
    assert result.duration_seconds == 12.5
    assert isinstance(result.created_at, int)
    assert isinstance(result.completed_at, int)
    assert result.created_at <= result.completed_at
    assert result.error_message is None
    (request,) = jogg_conn.requests
    assert (request.method, request.path) == ("GET", STATUS + task_id)
    assert request.headers["x-api-key"] == "<valid>"


def test_get_failed_result(jogg_conn):
    task_id = jogg_conn.add_task(VIDEO, AUDIO)
    jogg_conn.set_task(task_id, "failed", error_message="audio duration fetch failed")
    result = JoggHook().get_lip_sync_video(task_id)
    assert (result.status, result.failed, result.is_terminal) == ("failed", True, True)
    assert result.error_message == "audio duration fetch failed"
    assert result.result_url is None
    assert result.duration_seconds is None
    assert isinstance(result.completed_at, int)


def test_get_follows_the_task_timeline(jogg_conn):
    task_id = JoggHook().create_lip_sync_video(VIDEO, AUDIO)
    first = JoggHook().get_lip_sync_video(task_id)
    assert first.status in ("pending", "processing")
    assert not first.is_terminal
    assert first.completed_at is None
    assert first.result_url is None
    time.sleep(0.4)
    assert JoggHook().get_lip_sync_video(task_id).succeeded


def test_get_unknown_task_is_not_found_after_one_request(jogg_conn):
    task_id = "00000000-0000-4000-8000-000000000000"
    with pytest.raises(exc.JoggTaskNotFoundError) as info:
        JoggHook().get_lip_sync_video(task_id)
    assert task_id in str(info.value)
    assert "10104" in str(info.value)
    assert info.value.code == 10104
    assert jogg_conn.count() == 1
    assert_no_secret(info.value)


def test_get_invalid_task_id_sends_nothing(jogg_conn):
    with pytest.raises(exc.JoggConfigError):
        JoggHook().get_lip_sync_video("a/b")
    assert jogg_conn.count() == 0


@pytest.mark.parametrize(("fault", "cls"), TRANSIENT_FAULTS)
def test_get_transient_faults_are_retried(jogg_conn, fault, cls):
    task_id = jogg_conn.add_task(VIDEO, AUDIO, status="success")
    fault.path, fault.times = STATUS, MAX_RETRIES
    jogg_conn.add_fault(fault)
    result = JoggHook().get_lip_sync_video(task_id)
    assert result.succeeded
    assert result.task_id == task_id
    assert jogg_conn.count("GET", STATUS) == MAX_RETRIES + 1  # every fault, then the good answer
    assert jogg_conn.requests[-1].status == 200


@pytest.mark.parametrize(("fault", "cls"), TRANSIENT_FAULTS)
def test_get_more_faults_than_retries_surfaces_the_transient_error(jogg_conn, fault, cls):
    task_id = jogg_conn.add_task(VIDEO, AUDIO, status="success")
    fault.path, fault.times = STATUS, None
    jogg_conn.add_fault(fault)
    with pytest.raises(exc.JoggTransientError) as info:
        JoggHook().get_lip_sync_video(task_id)
    assert type(info.value) is cls
    assert jogg_conn.count("GET", STATUS) == MAX_RETRIES + 1
    assert_no_secret(info.value)


def test_get_slow_answer_beyond_timeout_is_retried(fake_jogg, set_conn):
    set_conn("jogg_slow", fake_jogg.url, timeout=0.3)
    task_id = fake_jogg.add_task(VIDEO, AUDIO, status="success")
    fake_jogg.add_fault(Fault("slow", path=STATUS, delay=1.0))
    assert JoggHook("jogg_slow").get_lip_sync_video(task_id).succeeded
    assert fake_jogg.count("GET", STATUS) == 2


def test_get_max_retries_zero_sends_one_request(jogg_conn):
    task_id = jogg_conn.add_task(VIDEO, AUDIO, status="success")
    jogg_conn.add_fault(Fault("status", status=503, path=STATUS, times=None))
    with pytest.raises(exc.JoggServerError) as info:
        JoggHook().get_lip_sync_video(task_id, max_retries=0)
    assert info.value.http_status == 503
    assert jogg_conn.count() == 1
    assert_no_secret(info.value)


def test_get_fatal_answer_is_not_retried(jogg_conn):
    task_id = jogg_conn.add_task(VIDEO, AUDIO, status="success")
    jogg_conn.add_fault(Fault("envelope", path=STATUS, body='{"code": 0, "msg": "ok"}', times=None))
    with pytest.raises(exc.JoggResponseError, match="without 'data'") as info:
        JoggHook().get_lip_sync_video(task_id)
    assert jogg_conn.count() == 1
    assert_no_secret(info.value)


# --------------------------------------------------------------------------------------------------
# Retry-After gate
# --------------------------------------------------------------------------------------------------
def test_retry_after_holds_back_another_hook_on_the_same_account(jogg_conn, fake_jogg, set_conn):
    task_id = jogg_conn.add_task(VIDEO, AUDIO, status="success")
    jogg_conn.add_fault(Fault("status", status=429, path=STATUS, retry_after="1", times=1))
    with pytest.raises(exc.JoggRateLimitError) as info:
        JoggHook().get_lip_sync_video(task_id, max_retries=0)
    assert info.value.retry_after == 1.0
    assert_no_secret(info.value)
    # another account on the same server is not held back
    set_conn("jogg_other", fake_jogg.url, key=WRONG_KEY)
    with pytest.raises(exc.JoggAuthError):
        JoggHook("jogg_other").whoami()
    # a different hook instance on the same connection waits for Retry-After
    assert JoggHook().whoami()["username"] == "demo"
    limited, other_account, same_account = jogg_conn.requests
    assert limited.status == 429
    assert other_account.headers["x-api-key"] == "<invalid>"
    assert other_account.time - limited.time < 0.8
    assert (same_account.path, same_account.status) == (WHOAMI, 200)
    assert same_account.time - limited.time >= 1.0


@pytest.mark.parametrize("step", [-3600.0, 3600.0], ids=["stepped-back", "stepped-forward"])
def test_a_stepped_wall_clock_neither_stalls_requests_nor_undercuts_the_limits(
    fake_jogg, set_conn, monkeypatch, step
):
    set_conn("jogg_clock", fake_jogg.url, max_requests_per_second=2)
    clock = step_wall_clock(monkeypatch, protocol, throttle_module, sync_transport)
    fake_jogg.add_fault(Fault("status", status=429, path=WHOAMI, retry_after="1", times=1))
    hook = JoggHook("jogg_clock")
    with pytest.raises(exc.JoggRateLimitError):
        hook.whoami(max_retries=0)
    clock.step = step  # NTP steps the wall clock during the Retry-After
    assert hook.whoami()["username"] == "demo"
    assert hook.whoami()["username"] == "demo"
    limited, reopened, next_one = fake_jogg.requests
    assert limited.status == 429
    # by the server's clock: Retry-After and the rate hold (a clock stepped forward must not undercut
    # them) and nothing waited for the hour the clock moved (stepped back: the sleep refuses it)
    assert reopened.time - limited.time >= 1.0
    # measured from the 429 (a late arrival of `reopened` on a loaded machine must not shrink it):
    # Retry-After, then one 2 req/s slot
    assert next_one.time - limited.time >= 1.45
    assert max(clock.sleeps) < 1.5


def test_the_lowest_rate_set_for_an_account_holds_for_every_connection_to_it(fake_jogg, set_conn):
    # two connections with the same key are one Jogg account: the second one's higher limit (or no
    # limit at all) must not lift the first one's
    set_conn("jogg_slow", fake_jogg.url, max_requests_per_second=2)
    set_conn("jogg_fast", fake_jogg.url, max_requests_per_second=100)
    set_conn("jogg_unlimited", fake_jogg.url, max_requests_per_second=0)
    JoggHook("jogg_slow").whoami()
    for conn_id in ("jogg_fast", "jogg_unlimited", "jogg_fast"):
        JoggHook(conn_id).whoami()
    times = times_of(fake_jogg, WHOAMI)
    assert len(times) == 4
    # 2 per second, not 100: three slots of 0.5 s (at 100 req/s the span would be 0.03 s); the span,
    # not each gap, so that one request arriving late on a loaded machine does not fail the test
    assert times[-1] - times[0] >= 1.2


# --------------------------------------------------------------------------------------------------
# Sessions
# --------------------------------------------------------------------------------------------------
def test_one_session_per_process_and_account(jogg_conn, set_conn):
    session = JoggHook().get_conn()
    assert isinstance(session, requests.Session)
    assert session is JoggHook().get_conn()
    set_conn("jogg_same", jogg_conn.url)  # same URL and key under another conn id: same account
    assert JoggHook("jogg_same").get_conn() is session
    set_conn("jogg_other_key", jogg_conn.url, key="sk-jogg-another-account-key")
    assert JoggHook("jogg_other_key").get_conn() is not session
    set_conn("jogg_other_url", jogg_conn.url + "/open")
    assert JoggHook("jogg_other_url").get_conn() is not session
    # no API key as a default header of the shared session: it is sent per request only
    assert "x-api-key" not in {name.lower() for name in session.headers}


def test_requests_reuse_one_keep_alive_connection(jogg_conn):
    hook = JoggHook()
    task_id = hook.create_lip_sync_video(VIDEO, AUDIO)
    hook.get_lip_sync_video(task_id)
    JoggHook().whoami()
    JoggHook().get_remaining_quota()
    manager = hook.get_conn().get_adapter(jogg_conn.url).poolmanager
    pools = [manager.pools[key] for key in manager.pools.keys()]  # noqa: SIM118 (not a dict)
    (pool,) = [p for p in pools if p.port == jogg_conn.port]
    assert pool.num_requests == 4
    assert pool.num_connections == 1  # one TCP connection for all four requests
    assert jogg_conn.count() == 4


# --------------------------------------------------------------------------------------------------
# Account
# --------------------------------------------------------------------------------------------------
def test_whoami(jogg_conn):
    assert JoggHook().whoami() == {"email": "demo@example.com", "username": "demo"}
    assert [(r.method, r.path) for r in jogg_conn.requests] == [("GET", WHOAMI)]


def test_remaining_quota(jogg_conn):
    jogg_conn.remaining_quota = 123.5
    quota = JoggHook().get_remaining_quota()
    assert quota == 123.5
    assert isinstance(quota, float)
    assert [(r.method, r.path) for r in jogg_conn.requests] == [("GET", QUOTA)]


def test_remaining_quota_is_retried_on_transient_faults(jogg_conn):
    jogg_conn.add_fault(Fault("html", status=502, path=QUOTA, times=2))
    assert JoggHook().get_remaining_quota() == 1000.0
    assert jogg_conn.count("GET", QUOTA) == 3


def test_remaining_quota_without_the_field_is_a_response_error(jogg_conn):
    jogg_conn.add_fault(
        Fault("envelope", path=QUOTA, body='{"code": 0, "msg": "ok", "data": {}}', times=None)
    )
    with pytest.raises(exc.JoggResponseError, match="remaining_quota") as info:
        JoggHook().get_remaining_quota()
    assert jogg_conn.count() == 1
    assert_no_secret(info.value)


# --------------------------------------------------------------------------------------------------
# upload_asset
# --------------------------------------------------------------------------------------------------
def test_upload_streams_the_file_and_returns_the_asset_url(jogg_conn, tmp_path, put_log):
    data = os.urandom(300_000)
    path = tmp_path / "clip.mp4"
    path.write_bytes(data)
    hook = JoggHook()
    seen = put_log(hook)
    asset_url = hook.upload_asset(path)

    assert requests.get(asset_url, timeout=5).content == data
    asset = jogg_conn.assets[asset_url]
    assert asset["data"] == data
    assert asset["size"] == len(data)
    assert asset["content_type"] == "video/mp4"
    (post,) = jogg_conn.requests
    assert (post.method, post.path, post.status) == ("POST", UPLOAD, 200)
    assert post.json == {"filename": "clip.mp4", "content_type": "video/mp4", "file_size": len(data)}
    assert post.headers["x-api-key"] == "<valid>"
    # the PUT (not recorded by the fake server; seen through a response hook on the real session)
    puts = [r for r in seen if r.request.method == "PUT"]
    assert len(puts) == 1
    put = puts[0]
    assert put.status_code == 200
    assert put.request.url.startswith(f"{jogg_conn.root_url}/_storage/")
    assert "x-api-key" not in {name.lower() for name in put.request.headers}
    assert put.request.headers["Content-Type"] == "video/mp4"
    assert put.request.headers["Content-Length"] == str(len(data))
    assert hasattr(put.request.body, "read")  # a file object: streamed, not read into memory


def test_upload_asset_url_works_as_media_for_a_task(jogg_conn, tmp_path):
    path = tmp_path / "voice.mp3"
    path.write_bytes(os.urandom(1000))
    hook = JoggHook()
    audio_url = hook.upload_asset(path)
    assert jogg_conn.requests[0].json["content_type"] == "audio/mpeg"
    task_id = hook.create_lip_sync_video(VIDEO, audio_url)
    assert jogg_conn.tasks[task_id]["audio_url"] == audio_url


def test_upload_put_503_is_retried(jogg_conn, tmp_path, put_log):
    data = os.urandom(200_000)
    path = tmp_path / "clip.mp4"
    path.write_bytes(data)
    hook = JoggHook()
    seen = put_log(hook)
    jogg_conn.add_fault(Fault("status", status=503, path="/_storage/", times=1))
    asset_url = hook.upload_asset(path)
    assert [r.status_code for r in seen if r.request.method == "PUT"] == [503, 200]
    assert jogg_conn.assets[asset_url]["data"] == data
    assert jogg_conn.count("POST", UPLOAD) == 1  # only the PUT is sent again


def test_upload_put_refused_for_good_is_fatal(jogg_conn, tmp_path):
    path = tmp_path / "clip.mp4"
    path.write_bytes(b"x" * 10)
    jogg_conn.add_fault(Fault("status", status=403, path="/_storage/", times=None))
    with pytest.raises(exc.JoggFatalAPIError) as info:
        JoggHook().upload_asset(path)
    assert info.value.http_status == 403
    assert jogg_conn.assets == {}
    assert_no_secret(info.value)


@pytest.mark.parametrize(
    ("name", "content", "text"),
    [
        ("missing.mp4", None, "no such file"),
        ("empty.mp4", b"", "the file is empty"),
        ("blob.unknownext", b"abc", "content type"),
        ("no_suffix", b"abc", "content type"),
    ],
)
def test_upload_invalid_file_sends_nothing(jogg_conn, tmp_path, name, content, text):
    path = tmp_path / name
    if content is not None:
        path.write_bytes(content)
    with pytest.raises(exc.JoggConfigError, match=text) as info:
        JoggHook().upload_asset(path)
    assert name in str(info.value)
    assert jogg_conn.count() == 0
    assert_no_secret(info.value)


def test_upload_directory_sends_nothing(jogg_conn, tmp_path):
    with pytest.raises(exc.JoggConfigError, match="no such file"):
        JoggHook().upload_asset(tmp_path)
    assert jogg_conn.count() == 0


def test_upload_explicit_content_type_wins(jogg_conn, tmp_path):
    path = tmp_path / "blob.unknownext"
    path.write_bytes(b"abc")
    asset_url = JoggHook().upload_asset(path, content_type="audio/wav")
    assert jogg_conn.requests[0].json["content_type"] == "audio/wav"
    assert jogg_conn.assets[asset_url]["content_type"] == "audio/wav"


# --------------------------------------------------------------------------------------------------
# download
# --------------------------------------------------------------------------------------------------
def test_download_of_a_gzip_encoded_result_saves_the_real_media(jogg_conn, tmp_path, put_log):
    task_id = jogg_conn.add_task(VIDEO, AUDIO, status="success")
    url = JoggHook().get_lip_sync_video(task_id).result_url
    expected = jogg_conn.task_media(task_id).video
    jogg_conn.add_fault(Fault("gzip", path="/files/", times=None))  # a CDN that compresses anyway
    hook = JoggHook()
    seen = put_log(hook)
    destination = tmp_path / "result.mp4"
    assert hook.download(url, destination) == len(expected)
    assert destination.read_bytes() == expected  # the decoded MP4, not the gzip stream
    assert list(tmp_path.iterdir()) == [destination]  # no partial file left behind
    (response,) = seen  # one attempt: the size check compared like with like
    assert response.request.headers["Accept-Encoding"] == "identity"
    assert response.headers["Content-Encoding"] == "gzip"
    assert int(response.headers["Content-Length"]) != len(expected)
