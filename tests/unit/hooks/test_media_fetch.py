"""Re-hosting a DAG's media URL (upload_public_urls): only public addresses, only media.

The media hosts are real servers on loopback (127.0.0.1, and 127.0.0.2 as a second host). A public
address cannot exist offline, so where a test needs one hop to count as public, it says so by
wrapping ``is_public_address``; everything else (DNS, sockets, HTTP, the upload) is real.
"""

from __future__ import annotations

import socket

import pytest

from airflow_provider_jogg import exceptions as exc
from airflow_provider_jogg.hooks import media_fetch
from airflow_provider_jogg.hooks.jogg import JoggHook
from airflow_provider_jogg.hooks.media_fetch import MAX_MEDIA_REDIRECTS, is_public_address
from airflow_provider_jogg.testing.media import SAMPLE_VIDEO
from tests.unit.hooks.support import self_signed_cert

CLIP = SAMPLE_VIDEO.read_bytes()


def serving(content_type: str | None = "video/mp4", body: bytes = CLIP):
    headers = {} if content_type is None else {"Content-Type": content_type}
    return lambda method, path: (200, headers, body)


def redirecting(location: str):
    return lambda method, path: (302, {"Location": location}, b"")


@pytest.fixture
def no_upload(fake_jogg, set_conn):
    """``jogg_default`` without the opt-in; afterwards: nothing was uploaded to Jogg."""
    set_conn("jogg_default", fake_jogg.url)
    yield fake_jogg
    assert fake_jogg.count() == 0
    assert fake_jogg.assets == {}


@pytest.fixture
def allowed(fake_jogg, set_conn):
    """``jogg_default`` with ``allow_private_media_urls``: loopback media servers may be fetched."""
    set_conn("jogg_default", fake_jogg.url, allow_private_media_urls=True)
    return fake_jogg


@pytest.fixture
def first_hop_is_public(monkeypatch):
    """127.0.0.1 plays a public CDN; every other address is judged for real (127.0.0.2 is internal)."""
    real = media_fetch.is_public_address
    monkeypatch.setattr(media_fetch, "is_public_address", lambda a: str(a) == "127.0.0.1" or real(a))


# --------------------------------------------------------------------------------------------------
# Which addresses are public
# --------------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "address",
    [
        "127.0.0.1",
        "127.8.9.10",
        "10.1.2.3",
        "172.16.0.1",
        "192.168.1.1",
        "169.254.169.254",  # cloud metadata
        "100.64.0.1",  # shared address space (CGNAT)
        "0.0.0.0",
        "224.0.0.1",  # multicast
        "239.255.255.250",
        "240.0.0.1",  # reserved
        "255.255.255.255",
        "192.0.2.10",  # documentation
        "::1",
        "::",
        "fe80::1",
        "fc00::1",
        "ff02::1",
        "::ffff:127.0.0.1",  # IPv4-mapped
        "::ffff:169.254.169.254",
        "::ffff:100.64.0.1",
        "2002:7f00:1::",  # 6to4 of 127.0.0.1
        "2002:a9fe:a9fe::",  # 6to4 of 169.254.169.254
        "64:ff9b::a9fe:a9fe",  # NAT64 of 169.254.169.254
        "2001:db8::1",  # documentation
    ],
)
def test_internal_addresses_are_not_public(address):
    assert not is_public_address(address)


@pytest.mark.parametrize(
    "address", ["8.8.8.8", "1.1.1.1", "93.184.216.34", "2606:4700:4700::1111", "::ffff:8.8.8.8"]
)
def test_public_addresses_are_public(address):
    assert is_public_address(address)


# --------------------------------------------------------------------------------------------------
# Refused: internal addresses, first hop or any later one
# --------------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("template", "address"),
    [
        ("http://127.0.0.1:{port}/clip.mp4", "127.0.0.1"),
        ("http://localhost:{port}/clip.mp4", ""),
        ("http://[::ffff:127.0.0.1]:{port}/clip.mp4", "::ffff:127.0.0.1"),
    ],
    ids=["loopback-ip", "loopback-name", "ipv4-mapped"],
)
def test_internal_media_url_is_refused_before_connecting(no_upload, recording_server, template, address):
    media = recording_server(respond=serving())
    url = template.format(port=media.port)
    with pytest.raises(exc.JoggConfigError, match=f"video_url .*resolves to {address}") as info:
        JoggHook().rehost_url(url, role="video_url")
    assert "allow_private_media_urls" in str(info.value)
    assert media.received == []


def test_redirect_to_an_internal_address_is_refused(no_upload, recording_server, first_hop_is_public):
    internal = recording_server(host="127.0.0.2", respond=serving())
    cdn = recording_server(respond=redirecting(f"{internal.url}/latest/clip.mp4"))
    with pytest.raises(
        exc.JoggConfigError, match=r"redirected \(hop 1\) to 'http://127\.0\.0\.2:\d+/latest/"
    ):
        JoggHook().rehost_url(f"{cdn.url}/clip.mp4", role="video_url")
    assert len(cdn.received) == 1
    assert internal.received == []


def test_redirects_are_bounded(allowed, recording_server):
    loop = recording_server()
    loop.respond = redirecting(f"{loop.url}/clip.mp4")
    with pytest.raises(exc.JoggConfigError, match=f"more than {MAX_MEDIA_REDIRECTS} times"):
        JoggHook().rehost_url(f"{loop.url}/clip.mp4", role="video_url")
    assert len(loop.received) == MAX_MEDIA_REDIRECTS + 1
    assert allowed.assets == {}


# --------------------------------------------------------------------------------------------------
# Refused: answers that are not media for the role
# --------------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("role", "path", "content_type"),
    [
        ("video_url", "/clip.mp4", "text/html; charset=utf-8"),
        ("audio_url", "/voice.mp3", "application/json"),
        ("video_url", "/clip.mp4", "audio/mpeg"),
        ("audio_url", "/voice.mp3", "video/mp4"),
    ],
    ids=["html-login-page", "json-error", "audio-for-video", "video-for-audio"],
)
def test_an_answer_that_is_not_media_for_its_role_is_refused(
    allowed, recording_server, role, path, content_type
):
    media = recording_server(respond=serving(content_type, b"<html>please log in</html>"))
    with pytest.raises(exc.JoggConfigError, match=f"{role} .*content type '{content_type.split(';')[0]}'"):
        JoggHook().rehost_url(media.url + path, role=role)
    assert allowed.count() == 0  # no upload slot was even asked for
    assert allowed.assets == {}


# --------------------------------------------------------------------------------------------------
# Allowed
# --------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("content_type", ["video/mp4", "application/octet-stream", None])
def test_internal_media_is_rehosted_with_the_opt_in(allowed, recording_server, content_type):
    media = recording_server(respond=serving(content_type))
    asset_url = JoggHook().rehost_url(f"{media.url}/clip.mp4", role="video_url")
    assert allowed.assets[asset_url]["data"] == CLIP
    (request,) = media.received
    assert request.headers["host"] == f"127.0.0.1:{media.port}"
    assert request.headers["accept-encoding"] == "identity"
    assert "x-api-key" not in request.headers  # the key only ever goes to the API


def test_a_public_hop_redirecting_to_a_public_hop_is_followed(
    fake_jogg, set_conn, recording_server, monkeypatch
):
    set_conn("jogg_default", fake_jogg.url)
    real = media_fetch.is_public_address
    monkeypatch.setattr(
        media_fetch, "is_public_address", lambda a: str(a) in ("127.0.0.1", "127.0.0.2") or real(a)
    )
    storage = recording_server(host="127.0.0.2", respond=serving())
    cdn = recording_server(respond=redirecting(f"{storage.url}/signed/blob?sig=abc"))
    asset_url = JoggHook().rehost_url(f"{cdn.url}/clip.mp4", role="video_url")
    assert fake_jogg.assets[asset_url]["data"] == CLIP
    assert [r.path for r in storage.received] == ["/signed/blob?sig=abc"]
    assert storage.received[0].headers["host"] == f"127.0.0.2:{storage.port}"


def test_the_checked_address_is_the_one_connected_to(
    fake_jogg, set_conn, recording_server, monkeypatch, first_hop_is_public
):
    """DNS rebinding: the name resolves to a 'public' address once, then to an internal one."""
    set_conn("jogg_default", fake_jogg.url)
    cdn = recording_server(respond=serving())
    internal = recording_server(host="127.0.0.2", port=cdn.port, respond=serving(body=b"internal secrets"))
    real_getaddrinfo = socket.getaddrinfo
    answers: list[str] = []

    def rebinding(host, port, *args, **kwargs):
        if host != "media.test":
            return real_getaddrinfo(host, port, *args, **kwargs)
        answers.append("127.0.0.1" if not answers else "127.0.0.2")
        return real_getaddrinfo(answers[-1], port, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", rebinding)
    asset_url = JoggHook().rehost_url(f"http://media.test:{cdn.port}/clip.mp4", role="video_url")
    assert answers == ["127.0.0.1"]  # resolved once, for the check; the connection used its answer
    assert fake_jogg.assets[asset_url]["data"] == CLIP
    assert internal.received == []
    (request,) = cdn.received
    assert request.headers["host"] == f"media.test:{cdn.port}"  # the site is still named


def test_each_checked_address_is_tried_like_a_plain_connect_would(allowed, recording_server, monkeypatch):
    """A name with two addresses, the server listening on the second only (IPv6 and IPv4, say)."""
    media = recording_server(respond=serving())
    real_getaddrinfo = socket.getaddrinfo

    def two_addresses(host, port, *args, **kwargs):
        if host != "media.test":
            return real_getaddrinfo(host, port, *args, **kwargs)
        return [
            *real_getaddrinfo("127.0.0.3", port, *args, **kwargs),
            *real_getaddrinfo("127.0.0.1", port, *args, **kwargs),
        ]

    monkeypatch.setattr(socket, "getaddrinfo", two_addresses)
    asset_url = JoggHook().rehost_url(f"http://media.test:{media.port}/clip.mp4", role="video_url")
    assert allowed.assets[asset_url]["data"] == CLIP
    (request,) = media.received
    assert request.headers["host"] == f"media.test:{media.port}"


@pytest.fixture
def media_test_is_loopback(monkeypatch):
    """DNS: the name ``media.test`` resolves to 127.0.0.1 (names cannot be registered offline)."""
    real_getaddrinfo = socket.getaddrinfo

    def resolve(host, port, *args, **kwargs):
        return real_getaddrinfo("127.0.0.1" if host == "media.test" else host, port, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", resolve)


@pytest.mark.parametrize("certified", ["media.test", "other.test"])
def test_https_keeps_the_name_for_sni_and_the_certificate(
    allowed, recording_server, media_test_is_loopback, monkeypatch, tmp_path, certified
):
    cert, key = self_signed_cert(tmp_path, certified)
    media = recording_server(respond=serving(), tls=(cert, key))
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(cert))  # trusted like a CA bundle from the environment
    url = f"https://media.test:{media.port}/clip.mp4"
    if certified == "media.test":
        asset_url = JoggHook().rehost_url(url, role="video_url")
        assert allowed.assets[asset_url]["data"] == CLIP
        assert media.received[0].headers["host"] == f"media.test:{media.port}"
    else:  # connected to the pinned address, the certificate is still checked against the name
        with pytest.raises(exc.JoggConnectionError, match="SSLError"):
            JoggHook().rehost_url(url, role="video_url")
        assert media.received == []
        assert allowed.assets == {}
    assert set(media.server_names) == {"media.test"}  # SNI names the site, not the address


def test_proxies_from_the_environment_are_not_used(allowed, recording_server, monkeypatch):
    proxy = recording_server(respond=serving(body=b"from the proxy"))
    # API calls may go through a proxy as before (none here: the fake Jogg server is 127.0.0.1)
    monkeypatch.setenv("NO_PROXY", "127.0.0.1")
    monkeypatch.delenv("no_proxy", raising=False)
    monkeypatch.setenv("HTTP_PROXY", proxy.url)
    monkeypatch.setenv("ALL_PROXY", proxy.url)
    media = recording_server(host="127.0.0.2", respond=serving())
    asset_url = JoggHook().rehost_url(f"{media.url}/clip.mp4", role="video_url")
    assert allowed.assets[asset_url]["data"] == CLIP
    assert proxy.received == []  # a proxy would resolve the name itself, after the check
    assert len(media.received) == 1


def test_results_are_downloaded_without_the_address_check(jogg_conn, tmp_path):
    """Jogg's own result URLs (here on loopback) are not media a DAG supplied: no opt-in needed."""
    task_id = jogg_conn.add_task(
        "https://media.example/clip.mp4", "https://media.example/v.mp3", status="success"
    )
    url = JoggHook().get_lip_sync_video(task_id).result_url
    assert JoggHook().download(url, tmp_path / "result.mp4") == len(jogg_conn.task_media(task_id).video)
