"""JoggHook's async path (aiohttp, shared session) against the fake Jogg server, over real sockets."""

from __future__ import annotations

import asyncio
import json

import pytest

from airflow_provider_jogg import exceptions as exc
from airflow_provider_jogg import registries
from airflow_provider_jogg.hooks.jogg import AsyncJoggClient, JoggHook, LipSyncResult
from airflow_provider_jogg.testing import Fault
from tests.conftest import TEST_API_KEY
from tests.unit.hooks.support import (
    AUDIO,
    MAX_RETRIES,
    STATUS,
    TRANSIENT_FAULTS,
    VIDEO,
    WHOAMI,
    WRONG_KEY,
    assert_no_secret,
    closed_port,
)


def no_session_left(base_url: str) -> bool:
    return base_url not in registries.aiohttp_leases()


@pytest.mark.asyncio
async def test_aget_success_result(jogg_conn):
    task_id = jogg_conn.add_task(VIDEO, AUDIO)
    jogg_conn.set_task(task_id, "success")
    result = await JoggHook().aget_lip_sync_video(task_id)
    assert isinstance(result, LipSyncResult)
    assert (result.task_id, result.status, result.succeeded) == (task_id, "success", True)
    assert result.result_url == f"{jogg_conn.root_url}/files/{task_id}/result.mp4"
    assert result.cover_url == f"{jogg_conn.root_url}/files/{task_id}/cover.jpg"
    assert result.duration_seconds == 12.5
    assert isinstance(result.created_at, int)
    assert isinstance(result.completed_at, int)
    (request,) = jogg_conn.requests
    assert (request.method, request.path) == ("GET", STATUS + task_id)
    assert request.headers["x-api-key"] == "<valid>"
    assert request.headers["accept"] == "application/json"
    assert no_session_left(jogg_conn.url)  # the lease was given back and the session closed


@pytest.mark.asyncio
async def test_aget_failed_and_pending_results(jogg_conn):
    failed = jogg_conn.add_task(VIDEO, AUDIO)
    jogg_conn.set_task(failed, "failed", error_message="audio duration fetch failed")
    pending = jogg_conn.add_task(VIDEO, AUDIO, status="pending")
    hook = JoggHook()
    result = await hook.aget_lip_sync_video(failed)
    assert (result.status, result.failed, result.error_message) == (
        "failed",
        True,
        "audio duration fetch failed",
    )
    result = await hook.aget_lip_sync_video(pending)
    assert (result.status, result.is_terminal, result.completed_at) == ("pending", False, None)


@pytest.mark.asyncio
async def test_api_platform_and_prefix_on_the_async_path(fake_jogg, set_conn):
    set_conn("jogg_plat", fake_jogg.url, api_platform="airflow-async")
    task_id = fake_jogg.add_task(VIDEO, AUDIO, status="success")
    assert (await JoggHook("jogg_plat").aget_lip_sync_video(task_id)).succeeded
    assert fake_jogg.requests[0].headers["x-api-platform"] == "airflow-async"


@pytest.mark.asyncio
@pytest.mark.parametrize(("fault", "cls"), TRANSIENT_FAULTS)
async def test_aget_transient_faults_are_retried(jogg_conn, fault, cls):
    task_id = jogg_conn.add_task(VIDEO, AUDIO, status="success")
    fault.path, fault.times = STATUS, MAX_RETRIES
    jogg_conn.add_fault(fault)
    result = await JoggHook().aget_lip_sync_video(task_id)
    assert result.succeeded
    assert result.task_id == task_id
    assert jogg_conn.count("GET", STATUS) == MAX_RETRIES + 1
    assert jogg_conn.requests[-1].status == 200
    assert no_session_left(jogg_conn.url)


@pytest.mark.asyncio
@pytest.mark.parametrize(("fault", "cls"), TRANSIENT_FAULTS)
async def test_aget_more_faults_than_retries_surfaces_the_transient_error(jogg_conn, fault, cls):
    task_id = jogg_conn.add_task(VIDEO, AUDIO, status="success")
    fault.path, fault.times = STATUS, None
    jogg_conn.add_fault(fault)
    with pytest.raises(exc.JoggTransientError) as info:
        await JoggHook().aget_lip_sync_video(task_id)
    assert type(info.value) is cls
    assert jogg_conn.count("GET", STATUS) == MAX_RETRIES + 1
    assert_no_secret(info.value)
    assert no_session_left(jogg_conn.url)  # released on the error path too


@pytest.mark.asyncio
@pytest.mark.parametrize("kind", ["close", "reset", "truncated", "non_json"])
async def test_aget_more_faults_than_retries_raises_the_transient_error(jogg_conn, kind):
    # the type of the error only (the exact request count is checked above)
    task_id = jogg_conn.add_task(VIDEO, AUDIO, status="success")
    jogg_conn.add_fault(Fault(kind, path=STATUS, times=None))
    with pytest.raises(exc.JoggTransientError) as info:
        await JoggHook().aget_lip_sync_video(task_id)
    if kind == "non_json":
        assert type(info.value) is exc.JoggMalformedResponseError
    else:
        assert type(info.value) is exc.JoggConnectionError
        assert info.value.request_sent is True
    assert MAX_RETRIES + 1 <= jogg_conn.count("GET", STATUS) <= 2 * (MAX_RETRIES + 1)
    assert_no_secret(info.value)


@pytest.mark.asyncio
@pytest.mark.parametrize("kind", ["close", "reset"])
async def test_async_client_poll_is_one_request_on_a_dropped_connection(jogg_conn, kind):
    task_id = jogg_conn.add_task(VIDEO, AUDIO, status="success")
    jogg_conn.add_fault(Fault(kind, path=STATUS, times=None))
    async with await AsyncJoggClient.for_connection("jogg_default") as client:
        with pytest.raises(exc.JoggConnectionError) as info:
            await client.get_lip_sync_video(task_id)
    assert_no_secret(info.value)
    assert jogg_conn.count("GET", STATUS) == 1  # actually 2


@pytest.mark.asyncio
async def test_aget_max_retries_zero_is_one_request_on_a_dropped_connection(fake_jogg, set_conn):
    set_conn("jogg_noretry", fake_jogg.url, max_retries=0)
    task_id = fake_jogg.add_task(VIDEO, AUDIO, status="success")
    fake_jogg.add_fault(Fault("reset", path=STATUS, times=None))
    with pytest.raises(exc.JoggConnectionError):
        await JoggHook("jogg_noretry").aget_lip_sync_video(task_id)
    assert fake_jogg.count("GET", STATUS) == 1  # actually 2


@pytest.mark.asyncio
async def test_aget_max_retries_zero_is_one_request(fake_jogg, set_conn):
    set_conn("jogg_noretry", fake_jogg.url, max_retries=0)
    task_id = fake_jogg.add_task(VIDEO, AUDIO, status="success")
    fake_jogg.add_fault(Fault("status", status=503, path=STATUS, times=None))
    with pytest.raises(exc.JoggServerError):
        await JoggHook("jogg_noretry").aget_lip_sync_video(task_id)
    assert fake_jogg.count("GET", STATUS) == 1


@pytest.mark.asyncio
async def test_aget_slow_answer_beyond_timeout_is_retried(fake_jogg, set_conn):
    set_conn("jogg_slow", fake_jogg.url, timeout=0.3)
    task_id = fake_jogg.add_task(VIDEO, AUDIO, status="success")
    fake_jogg.add_fault(Fault("slow", path=STATUS, delay=1.0))
    assert (await JoggHook("jogg_slow").aget_lip_sync_video(task_id)).succeeded
    assert fake_jogg.count("GET", STATUS) == 2


@pytest.mark.asyncio
async def test_aget_429_honours_retry_after(jogg_conn):
    task_id = jogg_conn.add_task(VIDEO, AUDIO, status="success")
    jogg_conn.add_fault(Fault("status", status=429, path=STATUS, retry_after="1", times=1))
    assert (await JoggHook().aget_lip_sync_video(task_id)).succeeded
    first, second = jogg_conn.requests
    assert (first.status, second.status) == (429, 200)
    assert second.time - first.time >= 1.0


@pytest.mark.asyncio
async def test_retry_after_seen_by_the_sync_path_holds_back_the_async_path(jogg_conn):
    task_id = jogg_conn.add_task(VIDEO, AUDIO, status="success")
    jogg_conn.add_fault(Fault("status", status=429, path=WHOAMI, retry_after="1", times=1))
    with pytest.raises(exc.JoggRateLimitError):
        await asyncio.to_thread(JoggHook().whoami, max_retries=0)
    assert (await JoggHook().aget_lip_sync_video(task_id)).succeeded
    limited, poll = jogg_conn.requests
    assert (limited.path, limited.status) == (WHOAMI, 429)
    assert poll.time - limited.time >= 1.0


@pytest.mark.asyncio
@pytest.mark.parametrize(
    ("setup", "cls", "text"),
    [
        ("unknown-task", exc.JoggTaskNotFoundError, "10104"),
        ("wrong-key", exc.JoggAuthError, "10105"),
        ("no-permission", exc.JoggPermissionError, "18025"),
        ("no-status", exc.JoggResponseError, "no 'status'"),
    ],
)
async def test_aget_fatal_errors_are_typed_and_not_retried(fake_jogg, set_conn, setup, cls, text):
    set_conn("jogg_a", fake_jogg.url, key=WRONG_KEY if setup == "wrong-key" else TEST_API_KEY)
    if setup == "unknown-task":
        task_id = "00000000-0000-4000-8000-000000000000"
    else:
        task_id = fake_jogg.add_task(VIDEO, AUDIO, status="success")
    if setup == "no-permission":
        fake_jogg.add_fault(Fault("business", path=STATUS, code=18025, msg="No permission", times=None))
    if setup == "no-status":
        body = '{"code": 0, "msg": "ok", "data": {"task_id": "x"}}'
        fake_jogg.add_fault(Fault("envelope", path=STATUS, body=body, times=None))
    with pytest.raises(cls) as info:
        await JoggHook("jogg_a").aget_lip_sync_video(task_id)
    assert type(info.value) is cls
    assert text in str(info.value)
    if setup == "unknown-task":
        assert task_id in str(info.value)
    assert fake_jogg.count() == 1
    assert_no_secret(info.value)
    assert no_session_left(fake_jogg.url)


@pytest.mark.asyncio
async def test_aget_redirect_is_refused_and_the_key_never_leaves(jogg_conn, recording_server):
    elsewhere = recording_server(host="127.0.0.2")
    task_id = jogg_conn.add_task(VIDEO, AUDIO, status="success")
    jogg_conn.add_fault(Fault("redirect", location=f"{elsewhere.url}{STATUS}{task_id}", times=None))
    with pytest.raises(exc.JoggRedirectError, match=r"redirect to host '127\.0\.0\.2:\d+'") as info:
        await JoggHook().aget_lip_sync_video(task_id)
    assert info.value.http_status == 302
    assert_no_secret(info.value)
    assert jogg_conn.count() == 1  # fatal: not retried
    assert elsewhere.received == []


@pytest.mark.asyncio
async def test_aget_connection_refused(set_conn):
    url = f"http://127.0.0.1:{closed_port()}"
    set_conn("jogg_closed", url)
    with pytest.raises(exc.JoggConnectionError) as info:
        await JoggHook("jogg_closed").aget_lip_sync_video("t-1")
    assert info.value.request_sent is False
    assert "could not connect" in str(info.value)
    assert_no_secret(info.value)
    assert no_session_left(url)


@pytest.mark.asyncio
async def test_aget_missing_key_sends_nothing(fake_jogg, set_conn):
    set_conn("jogg_nokey", fake_jogg.url, key=None)
    with pytest.raises(exc.JoggConfigError, match="'jogg_nokey' has no API key"):
        await JoggHook("jogg_nokey").aget_lip_sync_video("t-1")
    assert fake_jogg.count() == 0


@pytest.mark.asyncio
async def test_aget_key_from_a_secret_file_with_a_trailing_newline_works(fake_jogg, set_conn):
    set_conn("jogg_file_key", fake_jogg.url, key=TEST_API_KEY + "\n")
    task_id = fake_jogg.add_task(VIDEO, AUDIO, status="success")
    assert (await JoggHook("jogg_file_key").aget_lip_sync_video(task_id)).succeeded
    assert [r.headers["x-api-key"] for r in fake_jogg.requests] == ["<valid>"]


@pytest.mark.asyncio
async def test_aget_key_that_is_not_a_header_value_is_a_config_error(fake_jogg, set_conn):
    set_conn("jogg_bad_key", fake_jogg.url, key=TEST_API_KEY + "\u00e9")
    task_id = fake_jogg.add_task(VIDEO, AUDIO, status="success")
    with pytest.raises(exc.JoggConfigError, match=r"'jogg_bad_key'.*non-ASCII") as info:
        await JoggHook("jogg_bad_key").aget_lip_sync_video(task_id)
    assert_no_secret(info.value)
    assert fake_jogg.count() == 0


@pytest.mark.asyncio
async def test_aget_invalid_task_id_sends_nothing(jogg_conn):
    with pytest.raises(exc.JoggConfigError):
        await JoggHook().aget_lip_sync_video("a b")
    assert jogg_conn.count() == 0


@pytest.mark.asyncio
async def test_async_client_outside_async_with_raises(jogg_conn):
    task_id = jogg_conn.add_task(VIDEO, AUDIO, status="success")
    client = await AsyncJoggClient.for_connection("jogg_default")
    with pytest.raises(RuntimeError, match="outside 'async with'"):
        await client.get_lip_sync_video(task_id)
    async with client:
        assert (await client.get_lip_sync_video(task_id)).succeeded
    with pytest.raises(RuntimeError, match="outside 'async with'"):
        await client.get_lip_sync_video(task_id)  # not after exit either
    assert jogg_conn.count() == 1
    assert no_session_left(jogg_conn.url)


@pytest.mark.asyncio
async def test_async_clients_share_one_session_until_the_last_leaves(jogg_conn):
    task_id = jogg_conn.add_task(VIDEO, AUDIO, status="success")
    first = await JoggHook().get_async_client()
    second = await JoggHook().get_async_client()
    async with first:
        async with second:
            assert first._session is second._session
            session = first._session
            await asyncio.gather(first.get_lip_sync_video(task_id), second.get_lip_sync_video(task_id))
        assert not session.closed  # first still holds a lease
        assert (await first.get_lip_sync_video(task_id)).succeeded
    assert session.closed
    assert no_session_left(jogg_conn.url)
    assert jogg_conn.count("GET", STATUS) == 3


@pytest.mark.asyncio
async def test_accounts_sharing_a_session_share_no_cookies(recording_server, set_conn):
    """One pooled session per loop and base URL, whatever the key: so it keeps no cookies at all."""

    def status(method, path):
        task_id = path.rsplit("/", 1)[1]
        body = json.dumps({"code": 0, "msg": "ok", "data": {"task_id": task_id, "status": "pending"}})
        headers = {"Content-Type": "application/json", "Set-Cookie": f"gw_session={task_id}; Path=/"}
        return 200, headers, body.encode()

    api = recording_server(respond=status)
    base_url = f"http://localhost:{api.port}"  # a name: aiohttp keeps no cookies for IP addresses
    set_conn("jogg_account_a", base_url, key="sk-account-a")
    set_conn("jogg_account_b", base_url, key="sk-account-b")
    first = await JoggHook("jogg_account_a").get_async_client()
    second = await JoggHook("jogg_account_b").get_async_client()
    async with first, second:
        assert first._session is second._session  # still one pool for every wait on the loop
        await first.get_lip_sync_video("task-of-a")
        await second.get_lip_sync_video("task-of-b")
        await first.get_lip_sync_video("task-of-a")
    assert [(r.headers["x-api-key"], r.headers.get("cookie")) for r in api.received] == [
        ("sk-account-a", None),
        ("sk-account-b", None),  # account A's gateway cookie is not sent with account B's key
        ("sk-account-a", None),
    ]
