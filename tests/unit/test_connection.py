"""airflow_provider_jogg.connection: an Airflow connection read into a JoggConnectionConfig."""

from __future__ import annotations

import re
from urllib.parse import urlsplit

import pytest
import requests
import urllib3
import yarl
from hypothesis import given, settings
from hypothesis import strategies as st

from airflow_provider_jogg import exceptions as exc
from airflow_provider_jogg.connection import DEFAULT_RATE_LIMIT_WAIT, JoggConnectionConfig
from airflow_provider_jogg.protocol import WHOAMI_PATH


def make_config(host, password="k", port=None, **extra):
    return JoggConnectionConfig.from_connection(
        "jogg_x", host=host, password=password, port=port, extra=extra
    )


# what the HTTP clients make of a URL: ``requests`` parses with urllib3, ``aiohttp`` with yarl
def clients_see(url: str) -> set[tuple[str | None, int | None]]:
    prepared = requests.Request("GET", url + WHOAMI_PATH).prepare().url
    parsed = urllib3.util.parse_url(url)
    return {
        (urlsplit(prepared).hostname, urlsplit(prepared).port),
        ((parsed.host or "").strip("[]").lower() or None, parsed.port),
        (yarl.URL(url).host, yarl.URL(url).explicit_port),
    }


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
    assert make_config(None).rate_limit_wait == DEFAULT_RATE_LIMIT_WAIT == 300
    assert make_config(None, rate_limit_wait="0").rate_limit_wait == 0
    assert make_config(None, rate_limit_wait=12.5).rate_limit_wait == 12.5
    for bad in (
        {"rate_limit_wait": -1},
        {"rate_limit_wait": "soon"},
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
